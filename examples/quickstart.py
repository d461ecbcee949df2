"""The quickstart: a counter actor called from sync and async code, on an embedded node.

python examples/quickstart.py

The README's tour as a file, plus ``@actorloop.method`` on ``increment``:
it changes nothing at run time, and lets pyright (which has no plugins)
type ``c.increment.remote()`` too. So the file type-checks cleanly under
both ``mypy --strict`` with actorloop's plugin and ``pyright --strict``
(``c.increment.remote()`` is an ``ObjectRef[int]``);
tests/typing/test_typing.py checks it. See docs/typing.md.
"""

import asyncio

import actorloop


@actorloop.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    @actorloop.method  # optional; without it mypy's plugin still types the call, pyright does not
    def increment(self) -> int:
        self.count += 1
        return self.count


async def main() -> None:
    refs = [c.increment.remote() for _ in range(1000)]
    print(max(await asyncio.gather(*refs)))  # 1001 (async code)


if __name__ == "__main__":
    c = Counter.remote()  # returns at once
    print(actorloop.get(c.increment.remote()))  # 1  (sync code)
    asyncio.run(main())
