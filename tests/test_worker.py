"""Concurrency inside an actor: groups, limits, order, threads (actorloop/_worker.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import actorloop

pytestmark = pytest.mark.usefixtures("node")


@actorloop.remote
class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.active = 0
        self.peak = 0

    def record(self, i: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        time.sleep(0.0005)
        self.seen.append(i)
        self.active -= 1
        return i

    def result(self) -> tuple[list[int], int]:
        return self.seen, self.peak


@actorloop.remote
class AsyncActor:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.event = asyncio.Event()
        self.running = 0
        self.peak = 0

    async def run_concurrent(self) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running >= self.expected:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), 10)
        await asyncio.sleep(0.01)
        self.running -= 1
        return self.peak

    async def hold(self, t: float) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(t)
        self.running -= 1
        return self.peak

    async def peak_seen(self) -> int:
        return self.peak


@actorloop.remote(concurrency_groups={"io": 2, "compute": 4})
class Grouped:
    def __init__(self) -> None:
        self.active: dict[str, int] = {"io": 0, "compute": 0, "default": 0}
        self.peak: dict[str, int] = {"io": 0, "compute": 0, "default": 0}
        self.blocking_started = threading.Event()
        self.gate = threading.Event()

    async def _enter(self, group: str, t: float) -> None:
        self.active[group] += 1
        self.peak[group] = max(self.peak[group], self.active[group])
        await asyncio.sleep(t)
        self.active[group] -= 1

    @actorloop.method(concurrency_group="io")
    async def io(self, t: float) -> str:
        await self._enter("io", t)
        return "io"

    @actorloop.method(concurrency_group="compute")
    async def compute(self, t: float) -> str:
        await self._enter("compute", t)
        return "compute"

    async def default(self, t: float) -> str:
        await self._enter("default", t)
        return "default"

    @actorloop.method(concurrency_group="compute")
    def blocking(self) -> str:
        """A sync method that holds its thread until the gate opens."""
        self.blocking_started.set()
        self.gate.wait(30)
        return "blocked"

    @actorloop.method(concurrency_group="io")
    def wait_blocking_started(self) -> bool:
        return self.blocking_started.wait(30)

    @actorloop.method(concurrency_group="io")
    def open_gate(self) -> None:
        self.gate.set()

    async def peaks(self) -> dict[str, int]:
        return dict(self.peak)


@actorloop.remote(max_concurrency=4)
class Threaded:
    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def work(self, t: float) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.current_thread().name)
        time.sleep(t)
        with self.lock:
            self.active -= 1

    def stats(self) -> tuple[int, int]:
        return self.peak, len(self.threads)


def test_sync_actor_runs_one_call_at_a_time_in_order() -> None:
    r = Recorder.remote()
    refs = [r.record.remote(i) for i in range(300)]
    assert actorloop.get(refs) == list(range(300))
    seen, peak = actorloop.get(r.result.remote())
    assert seen == list(range(300))
    assert peak == 1


def test_sync_actor_keeps_each_threads_order() -> None:
    r = Recorder.remote()

    def submit(base: int) -> list:
        return [r.record.remote(base + i) for i in range(100)]

    out: dict[int, list] = {}
    threads = [threading.Thread(target=lambda b=b: out.__setitem__(b, submit(b))) for b in (0, 1000, 2000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for refs in out.values():
        actorloop.get(refs)
    seen, peak = actorloop.get(r.result.remote())
    assert peak == 1
    for base in (0, 1000, 2000):
        mine = [x for x in seen if base <= x < base + 100]
        assert mine == list(range(base, base + 100))


def test_async_actor_runs_calls_concurrently() -> None:
    a = AsyncActor.remote(4)
    assert max(actorloop.get([a.run_concurrent.remote() for _ in range(4)], timeout=20)) == 4


def test_async_actor_default_limit_is_1000() -> None:
    a = AsyncActor.remote(0)

    async def main() -> int:
        return max(await asyncio.gather(*[a.hold.remote(0.5) for _ in range(1200)]))

    assert asyncio.run(main()) == 1000


def test_max_concurrency_limits_async_actor() -> None:
    a = AsyncActor.options(max_concurrency=3).remote(0)
    actorloop.get([a.hold.remote(0.05) for _ in range(12)])
    assert actorloop.get(a.peak_seen.remote()) == 3


def test_concurrency_groups_have_their_own_limits() -> None:
    g = Grouped.remote()
    refs = (
        [g.io.remote(0.1) for _ in range(6)]
        + [g.compute.remote(0.1) for _ in range(8)]
        + [g.default.remote(0.1) for _ in range(5)]
    )
    actorloop.get(refs)
    peaks = actorloop.get(g.peaks.remote())
    assert peaks == {"io": 2, "compute": 4, "default": 5}


def test_per_call_group_option() -> None:
    g = Grouped.remote()
    refs = [g.default.options(concurrency_group="io").remote(0.1) for _ in range(6)]
    actorloop.get(refs)
    # the calls were counted in "default" by the method, but limited by "io"
    assert actorloop.get(g.peaks.remote())["default"] == 2


def test_unknown_group_in_call_options_raises_value_error() -> None:
    g = Grouped.remote()
    with pytest.raises(ValueError, match="nope"):
        g.io.options(concurrency_group="nope").remote(0)


def test_unknown_group_on_method_raises_value_error_at_creation() -> None:
    with pytest.raises(ValueError, match="missing"):

        @actorloop.remote(concurrency_groups={"io": 1})
        class Bad:
            @actorloop.method(concurrency_group="missing")
            def f(self) -> None:
                pass

    @actorloop.remote
    class Later:
        @actorloop.method(concurrency_group="missing")
        def f(self) -> None:
            pass

    with pytest.raises(ValueError, match="missing"):
        Later.remote()


def test_slow_sync_method_does_not_stall_other_groups() -> None:
    g = Grouped.remote()
    slow = g.blocking.remote()
    assert actorloop.get(g.wait_blocking_started.remote(), timeout=30)
    try:
        assert actorloop.get(g.io.remote(0), timeout=10) == "io"
        assert actorloop.get(g.default.remote(0), timeout=10) == "default"
        assert not slow.done()  # both answered while the sync method still holds its thread
    finally:
        actorloop.get(g.open_gate.remote(), timeout=10)
    assert actorloop.get(slow, timeout=10) == "blocked"


def test_threaded_sync_actor_uses_that_many_threads() -> None:
    t = Threaded.remote()
    actorloop.get([t.work.remote(0.1) for _ in range(8)])
    peak, threads = actorloop.get(t.stats.remote())
    assert peak == 4
    assert threads == 4
