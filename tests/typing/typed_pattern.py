"""Ray's typed pattern: ``actorloop.remote(Cls)`` called as a function, ``@actorloop.method`` on methods.

Checked by mypy (with and without the plugin) and by pyright (strict); see test_typing.py.
Lines marked ``# E: code`` must be reported with that error, and nothing else may be.
"""

from __future__ import annotations

import asyncio
from typing import Any

from typing_extensions import assert_type

import actorloop
from actorloop import ObjectRef
from actorloop.actor import ActorClass, ActorProxy


class Counter:
    def __init__(self, start: int, step: int = 1) -> None:
        self.count = start
        self.step = step

    @actorloop.method
    def incr(self, by: int) -> int:
        self.count += by * self.step
        return self.count

    @actorloop.method
    async def slow_incr(self, by: int) -> int:
        await asyncio.sleep(0)
        return self.incr(by)  # inside the actor, methods are called as usual

    @actorloop.method(concurrency_group="io")
    def name(self) -> str:
        return "counter"

    @actorloop.method(num_returns=2)
    def pair(self) -> tuple[int, int]:
        return self.count, self.step


CounterActor = actorloop.remote(Counter)
typed_class: ActorClass[Counter] = CounterActor
c = CounterActor.remote(1, step=2)
assert_type(c, ActorProxy[Counter])

ref = c.incr.remote(1)
assert_type(ref, ObjectRef[int])
assert_type(c.slow_incr.remote(2), ObjectRef[int])
assert_type(c.name.remote(), ObjectRef[str])
assert_type(c.incr.options(concurrency_group="io").remote(3), ObjectRef[int])
assert_type(actorloop.get(ref), int)
assert_type(actorloop.get([ref, c.slow_incr.remote(1)]), list[int])
assert_type(CounterActor.options(name="c").remote(1), ActorProxy[Counter])


async def use(handle: ActorProxy[Counter]) -> int:
    value = await handle.incr.remote(5)
    assert_type(value, int)
    return value


CounterActor.remote("one")  # E: arg-type
CounterActor.options(name="x").remote()  # E: call-arg
c.incr.remote("x")  # E: arg-type
c.incr.remote(1, 2)  # E: call-arg
c.missing.remote()  # E: attr-defined
ref.not_an_attribute  # noqa: B018  # E: attr-defined

first, second = c.pair.remote()  # num_returns=2: a list of refs at run time, Any here
ready, not_ready = actorloop.wait([ref], timeout=0)
assert_type(ready, list[ObjectRef[int]])
actorloop.kill(c)


def mixed(a: ObjectRef[int], b: ObjectRef[str]) -> None:
    refs = [a, b]
    assert_type(actorloop.get(refs), list[Any])
    assert_type(actorloop.get((a, a)), list[int])
