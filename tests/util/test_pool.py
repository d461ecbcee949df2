"""ActorPool: Ray's interface and semantics, the async iterators, and what it does better than Ray."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node._helpers import async_wait_until

import actorloop
import actorloop.util
from actorloop.exceptions import ActorDiedError, GetTimeoutError, TaskError
from actorloop.util import ActorPool

ROOT = Path(__file__).resolve().parents[2]


class _Doubler:
    def double(self, v: int) -> int:
        return 2 * v

    def slow_double(self, v: int, delay: float) -> int:
        time.sleep(delay)
        return 2 * v

    def gated_double(self, v: int, started: str, gate: str) -> int:
        """Create ``started``, then hold until the test creates ``gate``."""
        open(started, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(gate):
            assert time.monotonic() < deadline, f"{gate} never appeared"
            time.sleep(0.01)
        return 2 * v

    def fail_on(self, v: int, bad: int) -> int:
        if v == bad:
            raise ValueError(f"bad value {v}")
        return 2 * v

    def crash_on(self, v: int, bad: int) -> int:
        if v == bad:
            os._exit(1)
        return 2 * v

    def raise_died(self) -> None:
        raise ActorDiedError("raised by the method itself; the actor is fine")


Doubler = actorloop.remote(_Doubler)


class _Tracker:
    """An async actor that records how many calls it ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0

    async def work(self, v: int, delay: float = 0.05) -> int:
        self.running += 1
        self.calls += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(delay)
            return v
        finally:
            self.running -= 1

    async def stats(self) -> tuple[int, int]:
        return self.peak, self.calls


Tracker = actorloop.remote(_Tracker)


class _Coordinator:
    """Uses a pool of other actors from inside its own event loop."""

    async def double_all(self, actors: list[Any], values: list[int]) -> list[int]:
        pool = ActorPool(actors)
        return [v async for v in pool.map_async(lambda a, v: a.double.remote(v), values)]


Coordinator = actorloop.remote(_Coordinator)


@pytest.fixture(scope="module", autouse=True)
def node() -> Iterator[None]:
    actorloop.init(address="local")
    yield
    actorloop.shutdown()


def double(a: Any, v: int) -> Any:
    return a.double.remote(v)


def pool_of(n: int, cls: Any = Doubler, **kwargs: Any) -> ActorPool[Any]:
    return ActorPool([cls.remote() for _ in range(n)], **kwargs)


def started_pool_of(n: int) -> ActorPool[Any]:
    """A pool whose actors have started, for tests that compare how long calls take."""
    pool = pool_of(n)
    actorloop.get([a.double.remote(0) for a in pool.actors])
    return pool


# ---------------------------------------------------------------- Ray's interface


def test_map_in_order() -> None:
    pool = pool_of(2)
    gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
    assert list(gen) == [2, 4, 6, 8]
    assert not pool.has_next()


def test_map_accepts_any_iterable_and_many_items() -> None:
    pool = pool_of(3)
    assert list(pool.map(double, range(200))) == [2 * v for v in range(200)]


def test_map_unordered() -> None:
    pool = pool_of(2)
    assert sorted(pool.map_unordered(double, [1, 2, 3, 4])) == [2, 4, 6, 8]


def test_submit_get_next_has_next() -> None:
    pool = pool_of(2)
    assert not pool.has_next()
    pool.submit(double, 1)
    pool.submit(double, 2)
    pool.submit(double, 3)  # waits for a free actor
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_get_next_unordered_returns_the_first_ready() -> None:
    pool = started_pool_of(2)
    pool.submit(lambda a, v: a.slow_double.remote(v, 0.5), 1)
    pool.submit(lambda a, v: a.slow_double.remote(v, 0.0), 2)
    assert pool.get_next_unordered() == 4
    assert pool.get_next_unordered() == 2


def test_has_free_pop_idle_push() -> None:
    a1, a2 = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a1])
    assert pool.has_free()
    pool.submit(double, 1)
    assert not pool.has_free()
    assert pool.pop_idle() is None
    assert pool.get_next() == 2
    assert pool.has_free()
    assert pool.pop_idle() is a1
    assert pool.actors == []
    assert pool.pop_idle() is None
    pool.push(a2)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a2)
    pool.submit(double, 5)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a2)  # busy counts too
    assert pool.get_next() == 10
    assert pool.actors == [a2]


def test_push_starts_waiting_items() -> None:
    a1, a2 = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a1])
    pool.submit(lambda a, v: a.slow_double.remote(v, 1.5), 1)
    pool.submit(double, 2)  # waits for a1...
    pool.push(a2)  # ...or starts on a2 at once, so it ends first
    assert pool.get_next_unordered() == 4
    assert pool.get_next() == 2


def test_get_next_after_get_next_unordered() -> None:
    # Ray raises ValueError here; the pool returns the oldest result left.
    pool = started_pool_of(3)
    pool.submit(lambda a, v: a.slow_double.remote(v, 1.0), 1)
    pool.submit(double, 2)
    pool.submit(double, 3)
    assert pool.get_next_unordered() in (4, 6)
    assert pool.get_next() == 2
    assert pool.get_next() in (4, 6)
    assert not pool.has_next()


def test_a_new_map_discards_the_previous_one() -> None:
    pool = pool_of(2)
    first = pool.map(lambda a, v: a.slow_double.remote(v, 0.2), [1, 2, 3])
    second = pool.map(double, [10, 20])
    assert list(first) == []  # ended, it does not steal the second map's results
    assert list(second) == [20, 40]


def test_map_from_running_loop_points_to_async() -> None:
    pool = pool_of(1)

    async def main() -> None:
        pool.submit(double, 1)
        with pytest.raises(RuntimeError, match="get_next_async"):
            pool.get_next()
        assert await pool.get_next_async() == 2

    asyncio.run(main())


# ---------------------------------------------------------------- timeouts


def test_get_next_timeout_keeps_the_item() -> None:
    pool = pool_of(1)
    pool.submit(lambda a, v: a.slow_double.remote(v, 0.5), 1)
    with pytest.raises(GetTimeoutError) as info:
        pool.get_next(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert pool.has_next()
    assert pool.get_next() == 2


def test_get_next_timeout_ignore_drops_the_item() -> None:
    pool = pool_of(2)
    pool.submit(lambda a, v: a.slow_double.remote(v, 0.5), 1)
    pool.submit(double, 2)
    with pytest.raises(TimeoutError, match="given up"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert pool.get_next() == 4
    assert not pool.has_next()


def test_get_next_unordered_timeout() -> None:
    pool = pool_of(2)
    pool.submit(lambda a, v: a.slow_double.remote(v, 0.6), 1)
    pool.submit(lambda a, v: a.slow_double.remote(v, 0.3), 2)
    with pytest.raises(GetTimeoutError):
        pool.get_next_unordered(timeout=0.05)
    assert pool.has_next()
    # With ignore_if_timedout the oldest item is given up on (Ray's raises UnboundLocalError).
    with pytest.raises(GetTimeoutError, match="item 0"):
        pool.get_next_unordered(timeout=0.05, ignore_if_timedout=True)
    assert pool.get_next_unordered() == 4
    assert not pool.has_next()


def test_timeout_zero_returns_a_ready_result() -> None:
    pool = pool_of(1)
    pool.submit(double, 21)
    actorloop.get(pool.actors[0].double.remote(0))  # the pool's call ran before this one
    assert pool.get_next(timeout=0) == 42


def test_ignored_call_keeps_its_actor_busy_until_it_ends() -> None:
    tracker = Tracker.remote()
    pool = ActorPool([tracker])
    pool.submit(lambda a, v: a.work.remote(v, 0.5), 1)
    with pytest.raises(GetTimeoutError):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next()
    assert not pool.has_free()  # Ray hands the actor out again here
    pool.submit(lambda a, v: a.work.remote(v, 0.05), 2)
    assert pool.get_next() == 2
    assert actorloop.get(tracker.stats.remote()) == (1, 2)  # never two calls at once


# ---------------------------------------------------------------- errors


def test_an_error_in_one_item_keeps_the_others() -> None:
    pool = pool_of(2)
    gen = pool.map(lambda a, v: a.fail_on.remote(v, 2), [1, 2, 3, 4])
    assert next(gen) == 2
    with pytest.raises(ValueError, match="bad value 2") as info:
        next(gen)
    assert isinstance(info.value, TaskError)
    assert pool.get_next() == 6
    assert pool.get_next() == 8
    assert not pool.has_next()


def test_an_error_in_one_unordered_item_keeps_the_others() -> None:
    pool = pool_of(2)
    for v in [1, 2, 3, 4]:
        pool.submit(lambda a, v: a.fail_on.remote(v, 3), v)
    results, errors = [], []
    while pool.has_next():
        try:
            results.append(pool.get_next_unordered())
        except ValueError as error:
            errors.append(error)
    assert sorted(results) == [2, 4, 8]
    assert len(errors) == 1


def test_fn_that_raises_fails_only_its_item() -> None:
    def fn(a: Any, v: int) -> Any:
        if v == 2:
            raise KeyError("no such thing")
        return a.double.remote(v)

    pool = pool_of(1)
    for v in [1, 2, 3]:
        pool.submit(fn, v)
    assert pool.get_next() == 2
    with pytest.raises(KeyError):
        pool.get_next()
    assert pool.get_next() == 6


def test_fn_must_return_a_ref() -> None:
    def not_a_ref(a: Any, v: Any) -> Any:
        return v

    pool = pool_of(1)
    pool.submit(not_a_ref, 1)
    with pytest.raises(TypeError, match="ObjectRef"):
        pool.get_next()
    assert list(pool.map(double, [1])) == [2]


def test_bad_input() -> None:
    a = Doubler.remote()
    with pytest.raises(ValueError, match="at least one"):
        ActorPool([])
    with pytest.raises(TypeError, match="actor handles"):
        ActorPool([1, 2])
    with pytest.raises(TypeError, match="list of actor handles"):
        ActorPool(a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already belongs"):
        ActorPool([a, a])
    with pytest.raises(ValueError, match="max_calls_per_actor"):
        ActorPool([a], max_calls_per_actor=0)
    pool = ActorPool([a])
    with pytest.raises(TypeError, match="callable"):
        pool.submit(None, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        pool.map("double", [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        pool.map_async(3, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="actor handles"):
        pool.push("not an actor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        pool.get_next(timeout=-1)
    assert not pool.has_next()


# ---------------------------------------------------------------- dead actors


def test_dead_actor_leaves_the_pool() -> None:
    pool = pool_of(2)
    results, died = [], []
    for v in range(1, 9):
        pool.submit(lambda a, v: a.crash_on.remote(v, 3), v)
    while pool.has_next():
        try:
            results.append(pool.get_next(timeout=30))
        except ActorDiedError as error:
            died.append(error)
    # Only the item that crashed its actor fails: no later item went to the dead actor.
    assert len(died) == 1
    assert results == [2 * v for v in range(1, 9) if v != 3]
    assert len(pool.actors) == 1
    assert list(pool.map(double, [1, 2])) == [2, 4]


def test_killed_actor_leaves_the_pool() -> None:
    fast, victim = Doubler.remote(), Doubler.remote()
    actorloop.get([fast.double.remote(0), victim.double.remote(0)])
    pool = ActorPool([victim, fast])
    pool.submit(lambda a, v: a.slow_double.remote(v, 5), 1)  # goes to victim, the first free actor
    pool.submit(double, 2)
    pool.submit(double, 3)
    actorloop.kill(victim)
    with pytest.raises(ActorDiedError):
        pool.get_next(timeout=30)
    assert pool.get_next(timeout=30) == 4
    assert pool.get_next(timeout=30) == 6
    assert pool.actors == [fast]


def test_all_actors_dead_fails_waiting_items() -> None:
    pool = pool_of(2)
    for v in range(4):
        pool.submit(lambda a, v: a.crash_on.remote(v, v), v)  # every call crashes its actor
    errors = []
    while pool.has_next():
        with pytest.raises(ActorDiedError) as info:
            pool.get_next(timeout=30)  # never hangs
        errors.append(str(info.value))
    assert len(errors) == 4
    assert "no actor left" in errors[-1]
    assert pool.actors == []
    # push() revives the pool.
    pool.submit(double, 5)
    pool.push(Doubler.remote())
    assert pool.get_next(timeout=30) == 10


def test_all_actors_dead_async() -> None:
    pool = pool_of(1)

    async def main() -> list[str]:
        errors = []
        for v in range(3):
            pool.submit(lambda a, v: a.crash_on.remote(v, 0), v)
        while pool.has_next():
            try:
                await asyncio.wait_for(pool.get_next_unordered_async(), 30)
            except ActorDiedError as error:
                errors.append(str(error))
        return errors

    errors = asyncio.run(main())
    assert len(errors) == 3
    assert "no actor left" in errors[-1]


def test_method_raising_actor_died_error_keeps_the_actor() -> None:
    pool = pool_of(1)
    pool.submit(lambda a, v: a.raise_died.remote(), None)
    with pytest.raises(ActorDiedError) as info:
        pool.get_next()
    assert isinstance(info.value, TaskError)
    assert len(pool.actors) == 1
    assert list(pool.map(double, [1])) == [2]


# ---------------------------------------------------------------- calls per actor


def test_one_call_per_actor_by_default() -> None:
    trackers = [Tracker.remote(), Tracker.remote()]
    pool = ActorPool(trackers)
    assert sorted(pool.map_unordered(lambda a, v: a.work.remote(v, 0.05), range(8))) == list(range(8))
    stats = actorloop.get([t.stats.remote() for t in trackers])
    assert [peak for peak, _ in stats] == [1, 1]
    assert sum(calls for _, calls in stats) == 8


def test_max_calls_per_actor() -> None:
    trackers = [Tracker.remote(), Tracker.remote()]
    pool = ActorPool(trackers, max_calls_per_actor=2)

    async def main() -> list[int]:
        return [v async for v in pool.map_async(lambda a, v: a.work.remote(v, 0.3), range(8))]

    assert asyncio.run(main()) == list(range(8))
    stats = actorloop.get([t.stats.remote() for t in trackers])
    assert [peak for peak, _ in stats] == [2, 2]
    assert sum(calls for _, calls in stats) == 8

    pool.submit(lambda a, v: a.work.remote(v, 0.3), 0)
    idle = pool.pop_idle()  # the actor without a call
    assert idle in trackers
    assert pool.pop_idle() is None  # the other one has a call in flight...
    assert pool.has_free()  # ...and a free slot
    pool.submit(lambda a, v: a.work.remote(v, 0.0), 1)
    assert not pool.has_free()
    assert [pool.get_next(), pool.get_next()] == [0, 1]
    assert pool.actors == [t for t in trackers if t is not idle]


# ---------------------------------------------------------------- async


def test_map_async_in_order() -> None:
    pool = pool_of(2)

    async def main() -> list[int]:
        return [v async for v in pool.map_async(double, [1, 2, 3, 4])]

    assert asyncio.run(main()) == [2, 4, 6, 8]


def test_map_unordered_async_yields_as_ready() -> None:
    pool = started_pool_of(2)

    async def main() -> list[int]:
        delays = {1: 0.5, 2: 0.0}

        def fn(a: Any, v: int) -> Any:
            return a.slow_double.remote(v, delays[v])

        return [v async for v in pool.map_unordered_async(fn, [1, 2])]

    assert asyncio.run(main()) == [4, 2]


def test_map_async_error_keeps_the_others() -> None:
    pool = pool_of(2)

    async def main() -> list[int]:
        got = []
        with pytest.raises(ValueError, match="bad value 2"):
            async for v in pool.map_async(lambda a, v: a.fail_on.remote(v, 2), [1, 2, 3]):
                got.append(v)
        got.append(await pool.get_next_async())
        with pytest.raises(StopAsyncIteration):
            await pool.get_next_async()
        return got

    assert asyncio.run(main()) == [2, 6]


def test_async_timeouts() -> None:
    pool = pool_of(2)

    async def main() -> None:
        pool.submit(lambda a, v: a.slow_double.remote(v, 0.5), 1)
        pool.submit(double, 2)
        with pytest.raises(GetTimeoutError):
            await pool.get_next_async(timeout=0.05)
        assert pool.has_next()
        with pytest.raises(GetTimeoutError, match="given up"):
            await pool.get_next_async(timeout=0.05, ignore_if_timedout=True)
        assert await pool.get_next_async() == 4
        pool.submit(lambda a, v: a.slow_double.remote(v, 0.5), 3)
        with pytest.raises(GetTimeoutError, match="given up"):
            await pool.get_next_unordered_async(timeout=0.05, ignore_if_timedout=True)
        assert not pool.has_next()

    asyncio.run(main())


def test_cancelling_the_consumer_keeps_the_item(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pool = pool_of(1)
    started, gate = tmp_path / "started", tmp_path / "gate"

    async def call_runs() -> bool:
        return started.exists()

    async def main() -> int:
        pool.submit(lambda a, v: a.gated_double.remote(v, str(started), str(gate)), 1)
        waiter = asyncio.ensure_future(pool.get_next_async())
        # Polling yields to the loop, so the waiter is waiting for the call by the time it runs;
        # and it cannot have the result, the gate is shut.
        assert await async_wait_until(call_runs, timeout=30)
        assert not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.touch()
        return await pool.get_next_async()  # the call went on

    assert asyncio.run(main()) == 2


def test_map_async_from_a_threads_loop() -> None:
    pool = pool_of(2)
    out: list[Any] = []

    def run() -> None:
        async def main() -> list[int]:
            return [v async for v in pool.map_async(double, [1, 2, 3])]

        out.append(asyncio.run(main()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert out == [[2, 4, 6]]


def test_map_async_inside_an_actor() -> None:
    workers = [Doubler.remote(), Doubler.remote()]
    coordinator = Coordinator.remote()
    assert actorloop.get(coordinator.double_all.remote(workers, [1, 2, 3, 4]), timeout=60) == [2, 4, 6, 8]


def test_sync_submit_async_consume_and_back() -> None:
    pool = pool_of(2)
    for v in [1, 2, 3]:
        pool.submit(double, v)  # refs made outside any loop

    async def take_one() -> int:
        return await pool.get_next_async()

    assert asyncio.run(take_one()) == 2
    assert pool.get_next() == 4
    assert asyncio.run(take_one()) == 6


def test_leaving_map_async_early_then_using_the_pool_again() -> None:
    pool = pool_of(2)

    async def first_only() -> int:
        async for v in pool.map_async(lambda a, v: a.slow_double.remote(v, 0.2), [1, 2, 3, 4]):
            return v
        raise AssertionError("no result")

    assert asyncio.run(first_only()) == 2
    # Calls made on that (now closed) loop are still outstanding; the pool goes on.
    assert list(pool.map(double, [5, 6, 7])) == [10, 12, 14]


# ---------------------------------------------------------------- threads, example, exports


def test_threads_share_a_pool() -> None:
    pool = pool_of(2)
    for v in range(40):
        pool.submit(double, v)
    got: list[int] = []
    lock = threading.Lock()

    def drain() -> None:
        while True:
            try:
                value = pool.get_next_unordered(timeout=30)
            except StopIteration:
                return
            with lock:
                got.append(value)

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(got) == [2 * v for v in range(40)]


def test_seed_example() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "actor_pool.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "list(gen)=[2, 4, 6, 8]" in proc.stdout.splitlines(), proc.stdout


def test_exported() -> None:
    assert "ActorPool" in actorloop.util.__all__
    assert actorloop.ActorPool is ActorPool  # type: ignore[attr-defined]
