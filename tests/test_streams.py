"""Streams: generator methods and their ObjectRefGenerator (issue 12, "Generator methods").

No test here depends on timing: "as soon as yielded" is shown by a generator
that waits for the consumer's own signal before its next item, backpressure
by counting, cancellation by polling the actor with a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import threading
import time
from typing import Any, Callable

import psutil
import pytest

import actorloop
from actorloop import ObjectRefGenerator
from actorloop.exceptions import ActorDiedError, SerializationError, TaskCancelledError, TaskError

pytestmark = pytest.mark.usefixtures("node")


def _until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true (a deadline, never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@actorloop.remote(concurrency_groups={"one": 1})
class Streamer:
    def __init__(self) -> None:
        self.produced: dict[str, int] = {}
        self.events: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.active = 0
        self.max_active = 0
        self.started = 0

    async def count(self, n: int, start: int = 0):
        for i in range(start, start + n):
            yield i

    def sync_count(self, n: int):
        yield from range(n)

    async def fails_after(self, n: int):
        for i in range(n):
            yield i
        raise ValueError(f"failed after {n}")

    async def tracked(self, key: str, n: int):
        """Counts what it produced, and records how it ended."""
        self.produced[key] = 0
        try:
            for i in range(n):
                self.produced[key] += 1
                yield i
        except GeneratorExit:
            self.events.append(f"{key}:GeneratorExit")
            raise
        except asyncio.CancelledError:
            self.events.append(f"{key}:CancelledError")
            raise
        finally:
            self.events.append(f"{key}:finally")

    async def gated(self, key: str, n: int):
        """Yields an item, then waits until the consumer opens the gate for the next one."""
        try:
            for i in range(n):
                gate = self.gates[key] = asyncio.Event()
                yield i
                await gate.wait()
        except asyncio.CancelledError:
            self.events.append(f"{key}:CancelledError")
            raise
        finally:
            self.events.append(f"{key}:finally")

    async def open_gate(self, key: str) -> bool:
        gate = self.gates.get(key)
        if gate is None:
            return False
        gate.set()
        return True

    async def waits_forever(self, key: str):
        try:
            yield "first"
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.events.append(f"{key}:CancelledError")
            raise
        finally:
            self.events.append(f"{key}:finally")

    @actorloop.method(concurrency_group="one")
    async def in_group(self, n: int):
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            for i in range(n):
                await asyncio.sleep(0)
                yield i
        finally:
            self.active -= 1

    @actorloop.method(concurrency_group="one")
    async def in_group_plain(self) -> str:
        return "slot free"

    async def together(self, total: int):
        """Each of `total` streams yields once, then waits until all of them started: they run at once."""
        self.started += 1
        yield self.started
        while self.started < total:
            await asyncio.sleep(0.001)
        yield "all started"

    async def unpicklable_third(self):
        yield 1
        yield 2
        yield threading.Lock()
        yield 4

    def sync_thread_name(self):
        yield threading.current_thread().name

    async def fresh_bytes(self, n: int, size: int):
        for i in range(n):
            yield i.to_bytes(8, "little") * (size // 8)

    async def get_produced(self, key: str) -> int:
        return self.produced.get(key, 0)

    async def get_events(self) -> list[str]:
        return list(self.events)

    async def get_max_active(self) -> int:
        return self.max_active

    async def pid(self) -> int:
        return os.getpid()

    async def ping(self) -> str:
        return "pong"

    async def not_a_generator(self) -> int:
        return 1


@actorloop.remote
class SyncStreamer:
    """A sync actor (one thread): its generators run on that thread."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def count(self, n: int):
        try:
            yield from range(n)
        finally:
            self.events.append("finally")

    def thread_name(self):
        yield threading.current_thread().name

    def get_events(self) -> list[str]:
        return list(self.events)

    def ping(self) -> str:
        return "pong"


@pytest.fixture(scope="module")
def s() -> Any:
    return Streamer.remote()


@pytest.fixture(scope="module")
def sync_s() -> Any:
    return SyncStreamer.remote()


# -- the forms of iteration ------------------------------------------------------------


def test_remote_returns_an_object_ref_generator_at_once(s: Any) -> None:
    gen = s.count.remote(3)
    assert isinstance(gen, ObjectRefGenerator)
    assert actorloop.ObjectRefGenerator is ObjectRefGenerator
    assert [actorloop.get(ref) for ref in gen] == [0, 1, 2]


def test_next_and_stop_iteration(s: Any) -> None:
    gen = s.count.remote(2)
    first = next(gen)
    assert isinstance(first, actorloop.ObjectRef)
    assert actorloop.get(first) == 0
    assert actorloop.get(next(gen)) == 1
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()


def test_sync_generator_methods_stream_too(s: Any, sync_s: Any) -> None:
    assert [actorloop.get(r) for r in s.sync_count.remote(4)] == [0, 1, 2, 3]
    assert list(sync_s.count.remote(5).values()) == [0, 1, 2, 3, 4]


def test_async_for_over_refs_and_anext(s: Any) -> None:
    async def main() -> tuple[list[int], int, int]:
        values = [await ref async for ref in s.count.remote(4)]
        gen = s.count.remote(1, 7)
        one = await (await gen.__anext__())
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()
        return values, one, len(values)

    values, one, _ = asyncio.run(main())
    assert values == [0, 1, 2, 3]
    assert one == 7


def test_values_async_and_sync(s: Any) -> None:
    async def main() -> list[int]:
        return [v async for v in s.count.remote(5).values()]

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert list(s.count.remote(3, 10).values()) == [10, 11, 12]


def test_a_generator_made_in_sync_code_is_consumed_from_another_loop(s: Any) -> None:
    gen = s.count.remote(50)  # made on the home loop

    async def main() -> list[int]:
        return [v async for v in gen.values()]

    assert asyncio.run(main()) == list(range(50))


def test_a_generator_is_consumed_from_another_thread(s: Any) -> None:
    gen = s.count.remote(200)
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.extend(actorloop.get(r) for r in gen))
    thread.start()
    thread.join(30)
    assert out == list(range(200))


def test_next_on_the_generators_own_running_loop_is_a_clear_error(s: Any) -> None:
    async def main() -> None:
        gen = s.count.remote(1)
        with pytest.raises(RuntimeError, match="async for"):
            next(gen)
        assert [v async for v in gen.values()] == [0]

    asyncio.run(main())


def test_num_returns_streaming_is_accepted(s: Any) -> None:
    gen = s.count.options(num_returns="streaming").remote(2)
    assert list(gen.values()) == [0, 1]

    @actorloop.remote
    class Explicit:
        @actorloop.method(num_returns="streaming")
        def items(self):
            yield from "ab"

    assert list(Explicit.remote().items.remote().values()) == ["a", "b"]
    with pytest.raises(ValueError, match="dynamic"):
        s.count.options(num_returns="dynamic")


def test_streaming_a_method_that_is_no_generator_is_the_streams_error(s: Any) -> None:
    gen = s.not_a_generator.options(num_returns="streaming").remote()
    with pytest.raises(TypeError, match="not a generator"):
        list(gen.values())
    assert actorloop.get(s.ping.remote()) == "pong"


def test_ref_arguments_are_resolved_first(s: Any) -> None:
    n = s.count.remote(1, 3).values()
    three = next(n)
    ref = actorloop.put(three)
    assert list(s.count.remote(ref).values()) == [0, 1, 2]


def test_completed_resolves_at_the_end(s: Any) -> None:
    gen = s.count.remote(3)
    assert list(gen.values()) == [0, 1, 2]
    assert actorloop.get(gen.completed(), timeout=30) is None
    bad = s.fails_after.remote(1)
    with pytest.raises(ValueError):
        actorloop.get(bad.completed(), timeout=30)


def test_generators_are_not_picklable_nor_gettable(s: Any) -> None:
    gen = s.count.remote(1)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        actorloop.get(gen)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        actorloop.get([gen])  # type: ignore[list-item]
    assert list(gen.values()) == [0]


# -- order, errors, death ------------------------------------------------------------


def test_each_item_arrives_as_soon_as_it_is_yielded(s: Any) -> None:
    async def main() -> list[int]:
        gen = s.gated.remote("soon", 3)
        got = []
        for _ in range(3):
            # The generator waits for this consumer before its next item: had the item not been
            # sent at its yield, this would never return.
            ref = await asyncio.wait_for(gen.__anext__(), 30)
            got.append(await ref)
            await s.open_gate.remote("soon")
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(gen.__anext__(), 30)
        return got

    assert asyncio.run(main()) == [0, 1, 2]


def test_an_error_comes_at_its_position_after_the_items(s: Any) -> None:
    gen = s.fails_after.remote(2)
    refs = list(gen)
    assert len(refs) == 3
    assert actorloop.get(refs[:2]) == [0, 1]
    with pytest.raises(ValueError, match="failed after 2") as info:
        actorloop.get(refs[2])
    assert isinstance(info.value, TaskError)
    assert "fails_after" in str(info.value)

    got: list[int] = []
    with pytest.raises(ValueError, match="failed after 3"):
        for v in s.fails_after.remote(3).values():
            got.append(v)
    assert got == [0, 1, 2]

    async def main() -> list[int]:
        seen: list[int] = []
        with pytest.raises(ValueError, match="failed after 4"):
            async for v in s.fails_after.remote(4).values():
                seen.append(v)
        return seen

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_an_item_that_cannot_be_pickled_ends_the_stream_there(s: Any) -> None:
    got: list[int] = []
    with pytest.raises(SerializationError, match="item 2"):
        for v in s.unpicklable_third.remote().values():
            got.append(v)
    assert got == [1, 2]
    assert actorloop.get(s.ping.remote()) == "pong"


def test_actor_death_mid_stream_after_the_delivered_items() -> None:
    victim = Streamer.remote()
    gen = victim.gated.remote("death", 10)
    assert actorloop.get(next(gen)) == 0
    actorloop.kill(victim)
    with pytest.raises(ActorDiedError):
        actorloop.get(next(gen), timeout=30)
    with pytest.raises(StopIteration):
        next(gen)

    victim2 = Streamer.remote()
    values = victim2.gated.remote("death", 10).values()
    assert next(values) == 0
    actorloop.kill(victim2)
    with pytest.raises(ActorDiedError):
        next(values)


# -- backpressure ----------------------------------------------------------------------


def test_the_producer_stays_at_most_window_items_ahead(s: Any) -> None:
    window = 4
    gen = s.tracked.options(_generator_backpressure_num_objects=window).remote("bp", 1000)
    values = gen.values()
    assert next(values) == 0
    # One consumed (and acknowledged: with a window of 4, every item is): the producer may reach 1 + 4.
    _until(lambda: actorloop.get(s.get_produced.remote("bp")) == 1 + window, "the producer to fill the window")
    for _ in range(20):  # round trips to the actor: the producer had every chance to run ahead
        assert actorloop.get(s.get_produced.remote("bp")) == 1 + window
    assert len(gen._state.items) <= window
    assert [next(values) for _ in range(3)] == [1, 2, 3]
    _until(lambda: actorloop.get(s.get_produced.remote("bp")) == 4 + window, "the producer to move on")
    values.close()


def test_backpressure_option_is_checked(s: Any) -> None:
    for bad in (0, -2, 1.5, "4", True):
        with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
            s.count.options(_generator_backpressure_num_objects=bad)
    # -1 is Ray's "no backpressure".
    assert list(s.count.options(_generator_backpressure_num_objects=-1).remote(3).values()) == [0, 1, 2]


def test_a_million_items_to_a_slow_consumer_keep_memory_flat_on_both_sides(s: Any) -> None:
    total = 1_000_000
    window = 64
    actor = psutil.Process(actorloop.get(s.pid.remote()))
    me = psutil.Process()
    gen = s.fresh_bytes.options(_generator_backpressure_num_objects=window).remote(total, 200)
    state = gen._state
    values = gen.values()
    actor_base = actor.memory_info().rss
    my_base = me.memory_info().rss
    actor_peak = my_peak = 0
    longest_queue = 0
    count = 0
    checksum = 0
    for item in values:
        count += 1
        checksum ^= item[0]
        longest_queue = max(longest_queue, len(state.items))
        if count % 64 == 0:
            # The slow part of the consumer: the producer gets ahead of it and must wait.
            time.sleep(0)
            sum(range(200))
        if count % 100_000 == 0:
            actor_peak = max(actor_peak, actor.memory_info().rss - actor_base)
            my_peak = max(my_peak, me.memory_info().rss - my_base)
    assert count == total
    # Unbounded, the 200-byte items would take some 250 MB on a side; bounded, a window's worth.
    assert longest_queue <= window
    assert longest_queue >= window // 2, "the consumer was never behind: backpressure was not exercised"
    assert actor_peak < 40 * 2**20, f"actor RSS grew by {actor_peak / 2**20:.1f} MiB"
    assert my_peak < 40 * 2**20, f"consumer RSS grew by {my_peak / 2**20:.1f} MiB"


# -- cancellation ----------------------------------------------------------------------


def _events(s: Any) -> list[str]:
    return actorloop.get(s.get_events.remote())  # type: ignore[no-any-return]


def test_breaking_out_of_the_loop_stops_the_generator(s: Any) -> None:
    for ref in s.tracked.options(_generator_backpressure_num_objects=2).remote("brk", 10**9):
        if actorloop.get(ref) == 3:
            break
    _until(lambda: "brk:finally" in _events(s), "the generator's finally")
    assert "brk:GeneratorExit" in _events(s)


def test_breaking_out_of_async_for_over_values_stops_the_generator(s: Any) -> None:
    async def main() -> None:
        async for v in s.tracked.options(_generator_backpressure_num_objects=2).remote("abrk", 10**9).values():
            if v == 5:
                break

    asyncio.run(main())
    _until(lambda: "abrk:finally" in _events(s), "the generator's finally")


def test_dropping_the_generator_stops_it(s: Any) -> None:
    gen = s.tracked.options(_generator_backpressure_num_objects=2).remote("drop", 10**9)
    assert actorloop.get(next(gen)) == 0
    del gen
    gc.collect()
    _until(lambda: "drop:finally" in _events(s), "the generator's finally")


def test_cancelling_the_consumer_task_cancels_the_generator(s: Any) -> None:
    async def main() -> None:
        gen = s.waits_forever.remote("task")
        assert await (await gen.__anext__()) == "first"
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _until(lambda: "task:finally" in _events(s), "the generator's finally")
    assert "task:CancelledError" in _events(s)


def test_a_consumer_task_cancelled_elsewhere_stops_the_generator_it_consumed(s: Any) -> None:
    async def main() -> None:
        gen = s.tracked.options(_generator_backpressure_num_objects=2).remote("elsewhere", 10**9)
        took_one = asyncio.Event()

        async def consume() -> None:
            async for _ in gen.values():
                took_one.set()
                await asyncio.Event().wait()  # cancelled here, not while it waits for the stream

        task = asyncio.ensure_future(consume())
        await took_one.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # `gen` is still referenced here: the cancelled task alone stopped the stream.
        assert gen._state.ended
        assert await s.get_events.remote()  # a round trip
        for _ in range(200):
            if "elsewhere:finally" in await s.get_events.remote():
                break
        assert "elsewhere:finally" in await s.get_events.remote()

    asyncio.run(main())


def test_actorloop_cancel_stops_the_generator(s: Any) -> None:
    gen = s.waits_forever.remote("cancel")
    assert actorloop.get(next(gen)) == "first"
    actorloop.cancel(gen)
    with pytest.raises(TaskCancelledError):
        actorloop.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(TaskCancelledError):
        actorloop.get(gen.completed())
    _until(lambda: "cancel:finally" in _events(s), "the generator's finally")
    with pytest.raises(ValueError, match="force"):
        actorloop.cancel(s.count.remote(1), force=True)


def test_close_stops_the_generator(s: Any) -> None:
    gen = s.tracked.options(_generator_backpressure_num_objects=2).remote("close", 10**9)
    assert actorloop.get(next(gen)) == 0
    gen.close()
    _until(lambda: "close:finally" in _events(s), "the generator's finally")


def test_a_cancelled_stream_frees_its_concurrency_group_slot(s: Any) -> None:
    for _ in range(3):  # the group "one" has one slot: a leak would block the next round
        gen = s.in_group.options(_generator_backpressure_num_objects=1).remote(10**9)
        assert actorloop.get(next(gen)) == 0
        actorloop.cancel(gen)
    assert actorloop.get(s.in_group_plain.remote(), timeout=30) == "slot free"


def test_a_stream_dropped_in_the_loop_iteration_that_made_it_frees_its_group_slot(s: Any) -> None:
    """Made and dropped before the loop wrote anything, the call and its cancel reach the actor in one
    read: the cancel finds the generator's task not started yet. Its one-slot group serves on (a slot
    lost there hung every later stream of the group: the stress test's hang)."""

    async def main() -> None:
        for _ in range(5):
            gen = s.in_group.remote(10)
            del gen  # cancels the call; both frames leave in the same write
            assert await asyncio.wait_for(s.in_group_plain.remote(), 30) == "slot free"

    asyncio.run(main())


def test_breaking_out_of_a_sync_generator_frees_the_sync_actor(sync_s: Any) -> None:
    for v in sync_s.count.options(_generator_backpressure_num_objects=2).remote(10**9).values():
        if v == 3:
            break
    # The actor's one thread is free again (else this would wait forever).
    assert actorloop.get(sync_s.ping.remote(), timeout=30) == "pong"
    _until(lambda: "finally" in actorloop.get(sync_s.get_events.remote()), "the generator's finally")


# -- concurrency ----------------------------------------------------------------------


def test_many_streams_run_at_once_on_the_actors_loop() -> None:
    a = Streamer.remote()
    total = 50

    async def main() -> list[list[Any]]:
        gens = [a.together.remote(total) for _ in range(total)]

        async def consume(gen: Any) -> list[Any]:
            return [v async for v in gen.values()]

        return await asyncio.wait_for(asyncio.gather(*[consume(g) for g in gens]), 60)

    results = asyncio.run(main())
    assert all(r[-1] == "all started" for r in results)
    assert sorted(r[0] for r in results) == list(range(1, total + 1))


def test_streams_respect_concurrency_groups() -> None:
    a = Streamer.remote()

    async def main() -> list[list[int]]:
        gens = [a.in_group.remote(20) for _ in range(4)]
        return await asyncio.gather(*[_collect(g) for g in gens])

    results = asyncio.run(main())
    assert results == [list(range(20))] * 4
    assert actorloop.get(a.get_max_active.remote()) == 1  # the group "one" has one slot


async def _collect(gen: Any) -> list[Any]:
    return [v async for v in gen.values()]


def test_sync_generators_run_on_the_actors_threads(s: Any, sync_s: Any) -> None:
    name = next(sync_s.thread_name.remote().values())
    assert name.startswith("actorloop-") and name != "MainThread"
    assert next(s.sync_thread_name.remote().values()).startswith("actorloop-")


# -- wait ------------------------------------------------------------------------------


def test_wait_takes_generators_as_ray_does(s: Any) -> None:
    gen = s.gated.remote("wait", 2)
    ready, not_ready = actorloop.wait([gen], timeout=30)
    assert ready == [gen] and not_ready == []
    assert gen.next_ready()
    assert actorloop.get(next(gen)) == 0
    # The next item comes only once the gate opens.
    ready, not_ready = actorloop.wait([gen], timeout=0)
    assert ready == [] and not_ready == [gen]
    plain = s.ping.remote()
    ready, not_ready = actorloop.wait([gen, plain], num_returns=1, timeout=30)
    assert ready == [plain] and not_ready == [gen]
    actorloop.get(s.open_gate.remote("wait"))
    ready, _ = actorloop.wait([gen], timeout=30)
    assert ready == [gen]
    assert actorloop.get(next(gen)) == 1
    actorloop.get(s.open_gate.remote("wait"))
    ready, _ = actorloop.wait([gen], timeout=30)  # the end is ready too: next() raises StopIteration at once
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)


# -- ActorPool -------------------------------------------------------------------------


def test_actor_pool_over_a_generator_method_is_a_clear_type_error() -> None:
    pool = actorloop.ActorPool([Streamer.remote()])
    with pytest.raises(TypeError, match="ActorPool does not stream"):
        list(pool.map(lambda a, v: a.count.remote(v), [1, 2]))

    async def main() -> None:
        with pytest.raises(TypeError, match="ActorPool does not stream"):
            async for _ in pool.map_async(lambda a, v: a.count.remote(v), [1]):
                pass

    asyncio.run(main())


# -- remote functions (generator tasks) -------------------------------------------------


@actorloop.remote
def task_count(n: int):
    yield from range(n)


@actorloop.remote
async def async_task_count(n: int):
    for i in range(n):
        yield i


@actorloop.remote
def task_marks_its_end(path: str, n: int):
    """Writes a line per item produced, and one when its finally runs (the test reads the file)."""
    try:
        for i in range(n):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i
    finally:
        with open(path, "a") as f:
            f.write("finally\n")


@actorloop.remote
async def async_task_marks_its_end(path: str):
    try:
        yield 0
        await asyncio.Event().wait()
    finally:
        with open(path, "a") as f:
            f.write("finally\n")


def _lines(path: Any) -> list[str]:
    try:
        return path.read_text().split()  # type: ignore[no-any-return]
    except FileNotFoundError:
        return []


def test_generator_tasks_stream_sync_and_async() -> None:
    gen = task_count.remote(5)
    assert isinstance(gen, ObjectRefGenerator)
    assert [actorloop.get(r) for r in gen] == [0, 1, 2, 3, 4]

    async def main() -> list[int]:
        return [v async for v in async_task_count.remote(4).values()]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert list(task_count.remote(actorloop.put(3)).values()) == [0, 1, 2]


def test_a_sync_generator_task_is_held_back_by_its_consumer(tmp_path: Any) -> None:
    path = tmp_path / "bp"
    window = 2
    gen = task_marks_its_end.options(_generator_backpressure_num_objects=window).remote(str(path), 10**6)
    values = gen.values()
    assert next(values) == 0
    # The task's thread hands items over through a buffer of _PUMP_ROOM, on top of the window.
    from actorloop._tasks import _PUMP_ROOM

    bound = 1 + window + _PUMP_ROOM + 1
    _until(lambda: len(_lines(path)) >= bound - 2, "the generator task to run ahead")
    for _ in range(20):
        assert len(_lines(path)) <= bound
        assert list(task_count.remote(1).values()) == [0]  # time passes in round trips, not sleeps
    values.close()
    _until(lambda: "finally" in _lines(path), "the generator task's finally")


def test_dropping_a_generator_task_stops_it(tmp_path: Any) -> None:
    path = tmp_path / "drop"
    for v in task_marks_its_end.options(_generator_backpressure_num_objects=1).remote(str(path), 10**6).values():
        if v == 2:
            break
    _until(lambda: "finally" in _lines(path), "the generator task's finally")
    path2 = tmp_path / "drop-async"
    gen = async_task_marks_its_end.remote(str(path2))
    assert actorloop.get(next(gen)) == 0
    actorloop.cancel(gen)
    _until(lambda: "finally" in _lines(path2), "the async generator task's finally")


# -- more ways in ---------------------------------------------------------------------


@actorloop.remote(max_concurrency=2)
class ThreadedStreamer:
    def __init__(self) -> None:
        self.go = threading.Event()

    def waits_for_go(self):
        yield "waiting"
        self.go.wait(30)
        yield "went"

    def release(self) -> str:
        self.go.set()
        return "released"


def test_a_threaded_actor_streams_and_serves_calls_at_once() -> None:
    a = ThreadedStreamer.remote()
    values = a.waits_for_go.remote().values()
    assert next(values) == "waiting"
    # The generator holds one of the two threads; the other serves this call.
    assert actorloop.get(a.release.remote(), timeout=30) == "released"
    assert next(values) == "went"


@actorloop.remote
class Relay:
    """An actor that consumes another actor's stream on its own loop."""

    async def total(self, source: Any, n: int) -> int:
        return sum([v async for v in source.count.remote(n).values()])

    async def relay(self, source: Any, n: int):
        async for ref in source.count.remote(n):
            yield await ref * 2


def test_an_actor_consumes_and_relays_another_actors_stream(s: Any) -> None:
    relay = Relay.remote()
    assert actorloop.get(relay.total.remote(s, 100)) == sum(range(100))
    assert list(relay.relay.remote(s, 5).values()) == [0, 2, 4, 6, 8]


def test_the_window_can_be_set_per_method() -> None:
    @actorloop.remote
    class PerMethod:
        def __init__(self) -> None:
            self.produced = 0

        @actorloop.method(_generator_backpressure_num_objects=3)
        async def items(self):
            while True:
                self.produced += 1
                yield self.produced

        async def count(self) -> int:
            return self.produced

    a = PerMethod.remote()
    gen = a.items.remote()
    assert actorloop.get(next(gen)) == 1
    _until(lambda: actorloop.get(a.count.remote()) == 1 + 3, "the producer to fill its window of 3")
    for _ in range(10):
        assert actorloop.get(a.count.remote()) == 1 + 3
    gen.close()


def test_a_remote_function_takes_the_window_option(tmp_path: Any) -> None:
    @actorloop.remote(_generator_backpressure_num_objects=1)
    async def slow_start(path: str):
        for i in range(10**6):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i

    path = tmp_path / "window"
    gen = slow_start.remote(str(path))
    assert actorloop.get(next(gen)) == 0
    _until(lambda: len(_lines(path)) == 2, "the producer to fill its window of 1")
    for _ in range(10):
        assert len(_lines(path)) == 2
        assert list(task_count.remote(1).values()) == [0]
    gen.close()
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        task_count.options(_generator_backpressure_num_objects=0)


def test_a_caller_that_exits_stops_its_streams() -> None:
    import subprocess
    import sys
    import textwrap

    target = Streamer.options(name="stream-target", namespace="streams-test").remote()
    code = textwrap.dedent(
        """
        import os, actorloop
        actorloop.init()
        a = actorloop.get_actor("stream-target", namespace="streams-test")
        gen = a.tracked.options(_generator_backpressure_num_objects=2).remote("exit", 10**9)
        assert actorloop.get(next(gen)) == 0
        print("got one", flush=True)
        os._exit(0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "got one" in proc.stdout, proc.stderr
    _until(lambda: "exit:finally" in _events(target), "the generator's finally after its caller exited")
    actorloop.kill(target)
