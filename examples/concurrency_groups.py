"""Seed example 3: concurrency groups, each with its own limit.

python examples/concurrency_groups.py
"""

import asyncio

import actorloop


@actorloop.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    def __init__(self) -> None:
        self.running = {"io": 0, "compute": 0, "default": 0}
        self.peak = {"io": 0, "compute": 0, "default": 0}

    async def _run(self, group: str) -> None:
        self.running[group] += 1
        self.peak[group] = max(self.peak[group], self.running[group])
        await asyncio.sleep(0.1)
        self.running[group] -= 1

    @actorloop.method(concurrency_group="io")
    async def f1(self) -> None:
        await self._run("io")

    @actorloop.method(concurrency_group="io")
    async def f2(self) -> None:
        await self._run("io")

    @actorloop.method(concurrency_group="compute")
    async def f3(self) -> None:
        await self._run("compute")

    @actorloop.method(concurrency_group="compute")
    async def f4(self) -> None:
        await self._run("compute")

    async def f5(self) -> None:  # the default group
        await self._run("default")

    async def peaks(self) -> dict:
        return self.peak


if __name__ == "__main__":
    a = AsyncIOActor.remote()
    refs = [a.f1.remote() for _ in range(4)] + [a.f2.remote() for _ in range(4)]  # io: at most 2 at once
    refs += [a.f3.remote() for _ in range(4)] + [a.f4.remote() for _ in range(4)]  # compute: at most 4
    refs += [a.f5.remote() for _ in range(10)]  # default group: up to max_concurrency (1000)
    refs += [a.f5.options(concurrency_group="io").remote() for _ in range(2)]  # per-call group
    actorloop.get(refs)
    print(actorloop.get(a.peaks.remote()))  # {'io': 2, 'compute': 4, 'default': 10}
