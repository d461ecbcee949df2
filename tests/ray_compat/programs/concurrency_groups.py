# expect: io ok
# expect: compute ok
import asyncio

import ray


@ray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    @ray.method(concurrency_group="io")
    async def f1(self):
        await asyncio.sleep(0)
        return "io ok"

    @ray.method(concurrency_group="compute")
    async def f2(self):
        return "compute ok"

    async def f3(self):
        return "default"


a = AsyncIOActor.remote()
print(ray.get(a.f1.remote()))
print(ray.get(a.f2.options(concurrency_group="compute").remote()))
assert ray.get(a.f3.options(concurrency_group="io").remote()) == "default"
