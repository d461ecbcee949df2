"""The README's style under mypy with the plugin: ``@actorloop.remote`` on the class, plain methods.

Checked by mypy with ``plugins = ["actorloop.mypy"]`` (see test_typing.py). Lines marked
``# E: code`` must be reported with that error, and nothing else may be.
"""

from __future__ import annotations

import asyncio

from typing_extensions import assert_type

import actorloop
from actorloop import ActorHandle, ObjectRef


@actorloop.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    def increment(self, by: int = 1) -> int:
        self.count += by
        return self.count

    async def slow_increment(self, by: int) -> int:
        await asyncio.sleep(0)
        return self.increment(by)

    def describe(self) -> str:
        return f"Counter({self.count})"


@actorloop.remote(max_concurrency=4)
class Worker:
    def __init__(self, url: str) -> None:
        self.url = url

    async def fetch(self, path: str) -> bytes:
        return (self.url + path).encode()


c = Counter.remote(5)
assert_type(c, ActorHandle[Counter])
ref = c.increment.remote(1)
assert_type(ref, ObjectRef[int])
assert_type(c.increment.remote(), ObjectRef[int])
assert_type(c.slow_increment.remote(2), ObjectRef[int])
assert_type(c.describe.remote(), ObjectRef[str])
assert_type(c.increment.options(concurrency_group="io").remote(by=3), ObjectRef[int])
assert_type(actorloop.get(ref), int)
assert_type(actorloop.get([ref, c.increment.remote()]), list[int])
actorloop.get(c.ready())  # None once __init__ finished
assert_type(Counter.options(name="c", lifetime="detached").remote(1), ActorHandle[Counter])

w = Worker.remote("http://x")
assert_type(w, ActorHandle[Worker])
assert_type(w.fetch.remote("/a"), ObjectRef[bytes])


async def main(counter: ActorHandle[Counter]) -> None:
    value = await counter.increment.remote()
    assert_type(value, int)
    values = await asyncio.gather(counter.increment.remote(), counter.describe.remote())
    assert_type(values, tuple[int, str])


Counter.remote("five")  # E: arg-type
Counter.remote(1, 2)  # E: call-arg
Counter.options(name="c").remote(start="x")  # E: arg-type
Worker.remote()  # E: call-arg
c.increment.remote("one")  # E: arg-type
c.incremnt.remote()  # E: attr-defined
c.count.remote()  # E: attr-defined
ref.not_an_attribute  # noqa: B018  # E: attr-defined
w.fetch.remote(1)  # E: arg-type


def pass_refs(counter: ActorHandle[Counter], start: ObjectRef[int]) -> None:
    # A ref given as an argument is replaced by its value: each parameter also takes a ref.
    assert_type(counter.increment.remote(start), ObjectRef[int])
    assert_type(Counter.remote(start), ActorHandle[Counter])
    assert_type(counter.http_url, str | None)
    counter.increment.remote(counter.describe.remote())  # E: arg-type
    assert_type(counter == counter, bool)
    assert_type(counter.__class__, type[ActorHandle[Counter]])
