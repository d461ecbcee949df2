"""Ray's generator API ("Ray Generators") after `import actorloop as ray`: the documented uses, one by one."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import actorloop as ray

pytestmark = pytest.mark.usefixtures("node")


@ray.remote
def task_generator(n: int):
    yield from range(n)


@ray.remote(num_returns="streaming")
def declared_streaming(n: int):
    yield from range(n)


@ray.remote
def fails_after_two():
    yield 1
    yield 2
    raise RuntimeError("third")


@ray.remote
class Actor:
    def f(self):
        yield from range(5)


@ray.remote
class AsyncActor:
    async def f(self):
        for i in range(5):
            await asyncio.sleep(0)
            yield i


@ray.remote(max_concurrency=5)
class ThreadedActor:
    def f(self):
        yield threading.current_thread().name
        yield from range(1, 5)


def test_a_generator_task_streams_refs() -> None:
    gen = task_generator.remote(3)
    assert isinstance(gen, ray.ObjectRefGenerator)
    assert [ray.get(ref) for ref in gen] == [0, 1, 2]
    assert [ray.get(ref) for ref in declared_streaming.remote(2)] == [0, 1]
    assert [ray.get(ref) for ref in task_generator.options(num_returns="streaming").remote(2)] == [0, 1]


def test_next_then_stop_iteration() -> None:
    gen = task_generator.remote(1)
    assert ray.get(next(gen)) == 0
    with pytest.raises(StopIteration):
        next(gen)


def test_an_application_error_comes_in_order() -> None:
    gen = fails_after_two.remote()
    assert ray.get(next(gen)) == 1
    assert ray.get(next(gen)) == 2
    with pytest.raises(RuntimeError, match="third") as info:
        ray.get(next(gen))
    assert "fails_after_two() in task worker" in str(info.value)
    with pytest.raises(StopIteration):
        next(gen)


def test_every_actor_execution_model_streams() -> None:
    assert [ray.get(r) for r in Actor.remote().f.remote()] == [0, 1, 2, 3, 4]
    assert [ray.get(r) for r in AsyncActor.remote().f.remote()] == [0, 1, 2, 3, 4]
    refs = list(ThreadedActor.remote().f.remote())
    assert ray.get(refs[1:]) == [1, 2, 3, 4]


def test_asyncio_consumption() -> None:
    actor = AsyncActor.remote()

    async def main() -> list[int]:
        out = []
        async for ref in actor.f.remote():
            out.append(await ref)
        gen = actor.f.remote()
        out.append(await (await gen.__anext__()))
        return out

    assert asyncio.run(main()) == [0, 1, 2, 3, 4, 0]


def test_many_generators_at_once_from_asyncio_tasks() -> None:
    actor = AsyncActor.remote()

    async def consume() -> list[int]:
        return [await ref async for ref in actor.f.remote()]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*[consume() for _ in range(10)])

    assert asyncio.run(main()) == [[0, 1, 2, 3, 4]] * 10


def test_completed_and_wait() -> None:
    gen = task_generator.remote(3)
    assert ray.get(gen.completed()) is None
    ready, unready = ray.wait([gen], timeout=30)
    assert ready == [gen] and unready == []
    while True:
        ready, _ = ray.wait([gen], timeout=30)
        assert ready == [gen]
        try:
            ray.get(next(gen))
        except StopIteration:
            break
    assert gen.is_finished()


def test_cancel_a_generator() -> None:
    @ray.remote
    class Forever:
        async def f(self):
            yield 0
            await asyncio.Event().wait()

    gen = Forever.remote().f.remote()
    assert ray.get(next(gen)) == 0
    ray.cancel(gen)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(next(gen))


def test_a_generator_cannot_be_passed_to_a_task() -> None:
    gen = task_generator.remote(1)

    @ray.remote
    def consume(g: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="cannot be pickled"):
        ray.get(consume.remote(gen))  # raised by .remote() or by get(), as the call is sent at once or later

    @ray.remote
    class Taker:
        def take(self, g: Any) -> int:
            return 1

    with pytest.raises(TypeError, match="cannot be pickled"):
        ray.get(Taker.remote().take.remote(gen))
    assert [ray.get(r) for r in gen] == [0]
