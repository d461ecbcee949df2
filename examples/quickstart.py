"""The quickstart: a counter actor called from sync and async code, on an embedded node.

python examples/quickstart.py
"""

import asyncio

import actorloop


@actorloop.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    def increment(self) -> int:
        self.count += 1
        return self.count


async def main(counter: "actorloop.ActorHandle[Counter]") -> None:
    refs = [counter.increment.remote() for _ in range(1000)]
    print(max(await asyncio.gather(*refs)))  # 1001 (async code)


if __name__ == "__main__":
    c = Counter.remote()  # returns at once
    print(actorloop.get(c.increment.remote()))  # 1  (sync code)
    asyncio.run(main(c))
