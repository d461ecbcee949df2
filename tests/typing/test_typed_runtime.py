"""Ray's typed pattern runs as written: the typing files' shapes, at run time."""

from __future__ import annotations

import asyncio

import pytest

import actorloop
from actorloop import ActorHandle, ObjectRef
from actorloop.actor import ActorClass, ActorMethod, ActorProxy


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
        return self.incr(by)

    @actorloop.method(num_returns=2)
    def pair(self) -> tuple[int, int]:
        return self.count, self.step


def test_typed_pattern_runs(node: None) -> None:
    counter_actor: ActorClass[Counter] = actorloop.remote(Counter)
    c: ActorProxy[Counter] = counter_actor.remote(1, step=2)
    assert isinstance(c, ActorHandle)
    assert actorloop.get(c.incr.remote(1)) == 3
    assert actorloop.get(c.slow_incr.remote(1)) == 5
    first, second = c.pair.remote()
    assert actorloop.get([first, second]) == [5, 2]
    named = counter_actor.options(name="typed-counter").remote(0)
    assert actorloop.get(named.incr.remote(4)) == 4
    actorloop.kill(named)  # named: it would live on after the test


def test_bare_method_decorator_keeps_the_function() -> None:
    assert Counter.__dict__["incr"].__actorloop_method__ == {"concurrency_group": None}
    assert Counter.__dict__["pair"].__actorloop_method__["num_returns"] == 2
    with pytest.raises(TypeError, match="either a method or keyword options"):
        actorloop.method(Counter.incr, num_returns=2)  # type: ignore[call-overload]


def test_generic_classes_stay_subscriptable() -> None:
    # Annotations are evaluated by some libraries (pydantic, typer): the run-time classes take them.
    for alias in (ActorHandle[Counter], ObjectRef[int], ActorClass[Counter], ActorProxy[Counter]):
        assert alias is not None
    assert ActorMethod[[int], int].__origin__ is ActorMethod
