"""Seed example 2: an async actor running four calls at once.

Each call waits on an asyncio.Event until four are running together, so
this only finishes if the actor really runs them concurrently.

    python examples/async_actor.py
"""

import asyncio

import actorloop


@actorloop.remote
class AsyncActor:
    def __init__(self, expected_num_tasks: int) -> None:
        self.expected = expected_num_tasks
        self.running = 0
        self.all_running = asyncio.Event()

    async def run_concurrent(self) -> str:
        self.running += 1
        print(f"started, {self.running} running")
        if self.running == self.expected:
            self.all_running.set()
        await self.all_running.wait()
        await asyncio.sleep(0.1)
        self.running -= 1
        print("finished")
        return "done"


if __name__ == "__main__":
    actor = AsyncActor.remote(4)
    # All 4 calls start at once; none finishes until all four run.
    print(actorloop.get([actor.run_concurrent.remote() for _ in range(4)]))

    async def async_get() -> None:
        actor2 = AsyncActor.remote(4)
        print(await asyncio.gather(*[actor2.run_concurrent.remote() for _ in range(4)]))

    asyncio.run(async_get())
