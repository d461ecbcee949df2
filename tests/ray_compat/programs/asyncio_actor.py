# expect: started 4, finished 4
# expect: 10
import asyncio

import ray


@ray.remote
class AsyncActor:
    def __init__(self):
        self.started = 0
        self.finished = 0

    async def run_task(self):
        self.started += 1
        await asyncio.sleep(0.2)
        self.finished += 1

    async def counts(self):
        return f"started {self.started}, finished {self.finished}"


@ray.remote(max_concurrency=2)
class Threaded:
    def add(self, a, b):
        return a + b


actor = AsyncActor.remote()
ray.get([actor.run_task.remote() for _ in range(4)])
print(ray.get(actor.counts.remote()))


async def main():
    t = Threaded.remote()
    return await t.add.remote(4, 6)


print(asyncio.run(main()))
