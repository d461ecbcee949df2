"""The README's ``@actorloop.remote`` decorator with ``@actorloop.method`` on each method.

Checked by pyright (no plugins) and by mypy with the plugin. pyright applies the class
decorator, so ``Counter`` is an actor class here and ``Counter.remote(...)`` is checked against
``__init__``; it types the methods decorated with ``@actorloop.method`` (a plain method has no
``.remote`` for pyright; the mypy plugin types those too, see readme_style.py). Remote functions
need nothing more. Lines marked ``# E: code`` must be reported with that error, and nothing else
may be.
"""

from __future__ import annotations

from typing_extensions import assert_type

import actorloop
from actorloop import ObjectRef


@actorloop.remote(max_concurrency=4)
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    @actorloop.method
    def increment(self, by: int = 1) -> int:
        self.count += by
        return self.count

    @actorloop.method
    async def fetch(self, path: str) -> bytes:
        return path.encode()


@actorloop.remote
def square(x: int) -> int:
    return x * x


@actorloop.remote
async def shout(text: str) -> str:
    return text.upper()


c = Counter.remote(5)
ref = c.increment.remote(2)
assert_type(ref, ObjectRef[int])
assert_type(actorloop.get(ref), int)
assert_type(c.fetch.remote("/a"), ObjectRef[bytes])
assert_type(Counter.options(name="c").remote().increment.remote(), ObjectRef[int])
assert_type(square.remote(3), ObjectRef[int])
assert_type(square.options(max_retries=0).remote(3), ObjectRef[int])
assert_type(shout.remote("hi"), ObjectRef[str])
assert_type(actorloop.get([square.remote(1), square.remote(2)]), list[int])

Counter.remote("five")  # E: arg-type
c.increment.remote("one")  # E: arg-type
c.decrement.remote()  # E: attr-defined
square.remote("3")  # E: arg-type
shout.remote()  # E: call-arg
