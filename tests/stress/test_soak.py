"""Soak: many calls with memory measured, restarts in a row, mass cancellation."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from typing import Any

import pytest
from node._helpers import wait_until

import actorloop
from actorloop import ActorDiedError, TaskCancelledError

from ._common import once_back, rss_mib, scaled, wait_gone

pytestmark = pytest.mark.usefixtures("node")

SOAK_CALLS = scaled(200_000, 2_000_000)
RESTARTS = 10
CANCELS = scaled(1_000, 10_000)


@actorloop.remote
class Store:
    def __init__(self, start: int) -> None:
        self.start = start
        self.n = 0

    def put(self, x: int) -> int:
        self.n += 1
        return x

    def state(self) -> tuple[int, int, int]:
        return os.getpid(), self.start, self.n

    def rss(self) -> float:
        gc.collect()
        import psutil

        return psutil.Process().memory_info().rss / (1 << 20)


@actorloop.remote(concurrency_groups={"ctl": 2})
class AsyncStore:
    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self.finished = 0

    async def put(self, x: int) -> int:
        return x

    async def wait(self, t: float) -> float:
        self.started += 1
        try:
            await asyncio.sleep(t)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return t

    @actorloop.method(concurrency_group="ctl")  # answers even when the default group is full
    async def counts(self) -> tuple[int, int, int]:
        return self.started, self.cancelled, self.finished

    async def rss(self) -> float:
        gc.collect()
        import psutil

        return psutil.Process().memory_info().rss / (1 << 20)


def _bookkeeping_clear(handle: Any) -> None:
    """No call left behind in this process: counters at zero, no pending entries on any connection."""
    state = handle._runtime_state
    deadline = time.monotonic() + 5
    while state.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.pending == 0, f"{state.pending} calls still counted as pending"
    for conn in list(state.conns.values()):
        assert not conn.pending, f"{len(conn.pending)} finished calls still held by a connection"


def _soak(sync_actor: Any, async_actor: Any, calls: int) -> None:
    batch = 500
    half = calls // 2

    async def from_async() -> None:
        for start in range(0, half, batch):
            n = min(batch, half - start)
            refs = [(async_actor if i % 2 else sync_actor).put.remote(start + i) for i in range(n)]
            assert await asyncio.gather(*refs) == list(range(start, start + n))

    asyncio.run(from_async())
    for start in range(0, calls - half, batch):
        n = min(batch, calls - half - start)
        refs = [(sync_actor if i % 2 else async_actor).put.remote(start + i) for i in range(n)]
        assert actorloop.get(refs, timeout=60) == list(range(start, start + n))


def test_soak_memory_stays_flat(report: Any) -> None:
    s = Store.remote(7)
    a = AsyncStore.remote()
    _soak(s, a, 10_000)  # warm up: connections, caches, allocator arenas
    gc.collect()
    before = {
        "driver": rss_mib(os.getpid()),
        "Store": actorloop.get(s.rss.remote()),
        "AsyncStore": actorloop.get(a.rss.remote()),
    }
    t0 = time.monotonic()
    _soak(s, a, SOAK_CALLS)
    took = time.monotonic() - t0
    gc.collect()
    after = {
        "driver": rss_mib(os.getpid()),
        "Store": actorloop.get(s.rss.remote()),
        "AsyncStore": actorloop.get(a.rss.remote()),
    }
    _bookkeeping_clear(s)
    _bookkeeping_clear(a)
    assert actorloop.get(s.state.remote())[2] == (10_000 + SOAK_CALLS) // 2
    growth = {k: round(after[k] - before[k], 1) for k in before}
    report("soak calls after warm-up, every result checked", SOAK_CALLS)
    report("soak calls/s (sync get + asyncio gather, 2 actors)", round(SOAK_CALLS / took))
    report("RSS before -> after (MiB)", {k: f"{before[k]:.1f} -> {after[k]:.1f}" for k in before})
    report("RSS growth (MiB)", growth)
    for who, mib in growth.items():
        assert mib < 64, f"{who} grew by {mib} MiB over {SOAK_CALLS} calls"
    actorloop.kill(s)
    actorloop.kill(a)


def test_ten_restarts_in_a_row(report: Any) -> None:
    s = Store.options(max_restarts=RESTARTS).remote(42)
    pids: list[int] = []
    for i in range(RESTARTS + 1):
        pid, start, n = once_back(s.state.remote)
        assert start == 42 and n == 0, "a restarted actor got its original arguments, and fresh state"
        assert pid not in pids
        pids.append(pid)
        assert actorloop.get([s.put.remote(j) for j in range(100)], timeout=20) == list(range(100))
        if i == RESTARTS:
            break
        if i % 2 == 0:
            os.kill(pid, signal.SIGKILL)  # a crash
            assert not wait_gone([pid], 5)
        else:
            actorloop.kill(s, no_restart=False)  # a kill that allows the restart
    info = [x for x in actorloop.list_actors() if x.actor_id == s._actor_id][0]
    assert info.restarts == RESTARTS and info.state == "ALIVE"
    os.kill(pids[-1], signal.SIGKILL)  # one more: the restarts are used up
    with pytest.raises(ActorDiedError, match="SIGKILL"):
        actorloop.get(s.state.remote(), timeout=20)
    assert not wait_gone(pids, 5)
    report("restarts in a row, each serving with its original arguments", RESTARTS)


def test_mass_cancellation_of_running_coroutines(report: Any) -> None:
    a = AsyncStore.options(max_concurrency=CANCELS + 10).remote()

    async def main() -> float:
        refs = [a.wait.remote(60) for _ in range(CANCELS)]
        gathered = asyncio.gather(*refs)
        deadline = time.monotonic() + 20
        while (await a.counts.remote())[0] < CANCELS:
            assert time.monotonic() < deadline, "the calls never all started"
            await asyncio.sleep(0.02)
        t0 = time.monotonic()
        gathered.cancel()  # one cancel, CANCELS remote coroutines
        with pytest.raises(asyncio.CancelledError):
            await gathered
        while (await a.counts.remote())[1] < CANCELS:
            assert time.monotonic() - t0 < 10, "not every remote coroutine got CancelledError"
            await asyncio.sleep(0.02)
        took = time.monotonic() - t0
        assert all(r.cancelled() for r in refs)
        return took

    took = asyncio.run(main())
    started, cancelled, finished = actorloop.get(a.counts.remote(), timeout=10)
    assert (started, cancelled, finished) == (CANCELS, CANCELS, 0)
    _bookkeeping_clear(a)
    assert actorloop.get(a.put.remote(1), timeout=10) == 1
    report("running coroutines cancelled at once (one gather.cancel())", CANCELS)
    report("seconds until the actor saw every CancelledError", round(took, 2))
    actorloop.kill(a)


def test_mass_cancel_from_sync_code(report: Any) -> None:
    """actorloop.cancel() on each of many refs, running and queued: TaskCancelledError, nothing runs late."""
    a = AsyncStore.options(max_concurrency=CANCELS // 2).remote()  # half run, half wait in the queue
    refs = [a.wait.remote(60) for _ in range(CANCELS)]
    deadline = time.monotonic() + 20
    while actorloop.get(a.counts.remote(), timeout=10)[0] < CANCELS // 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    # The queued ones first: cancelling a running one frees its slot for the next queued call.
    for ref in reversed(refs):
        actorloop.cancel(ref)
    for ref in refs:
        with pytest.raises(TaskCancelledError):
            actorloop.get(ref, timeout=10)
    took = time.monotonic() - t0
    # Every running call saw its CancelledError...
    assert wait_until(lambda: actorloop.get(a.counts.remote(), timeout=10)[1] >= CANCELS // 2, timeout=20)
    # ...and a call queued after all of them ran: a cancelled queued call that started anyway would have
    # started before it (the group's queue is first in, first out), and taken a free slot.
    assert actorloop.get(a.put.remote(1), timeout=10) == 1
    started, cancelled, finished = actorloop.get(a.counts.remote(), timeout=10)
    assert started == CANCELS // 2, "a queued call started after it was cancelled"
    assert cancelled == CANCELS // 2 and finished == 0
    _bookkeeping_clear(a)
    report("refs cancelled with actorloop.cancel() (half running, half queued)", CANCELS)
    report("seconds to cancel them all and see TaskCancelledError", round(took, 2))
    actorloop.kill(a)


def test_mass_cancel_of_queued_sync_calls(report: Any) -> None:
    """A sync actor busy with one call, CANCELS queued behind it, all cancelled: none ever runs."""

    @actorloop.remote(concurrency_groups={"ctl": 1})
    class Busy:
        def __init__(self) -> None:
            self.ran = 0
            self.started = threading.Event()
            self.gate = threading.Event()

        def block(self) -> None:
            self.started.set()
            self.gate.wait(60)

        def work(self) -> None:
            self.ran += 1

        def count(self) -> int:
            return self.ran

        @actorloop.method(concurrency_group="ctl")
        def wait_started(self) -> bool:
            return self.started.wait(30)

        @actorloop.method(concurrency_group="ctl")
        def open_gate(self) -> None:
            self.gate.set()

    b = Busy.remote()
    blocker = b.block.remote()  # holds the only thread of the default group until the gate opens
    assert actorloop.get(b.wait_started.remote(), timeout=30)

    async def main() -> None:
        refs = [b.work.remote() for _ in range(CANCELS)]
        # A later call on the same connection answered: the actor has read every call above,
        # so they wait in its queue behind the blocker.
        assert await b.wait_started.remote()
        assert not [r for r in refs if r.done()]
        for ref in refs:
            ref.cancel()
        await asyncio.sleep(0)
        assert all(r.cancelled() for r in refs)

    asyncio.run(main())
    actorloop.get(b.open_gate.remote(), timeout=10)
    actorloop.get(blocker, timeout=10)
    assert actorloop.get(b.count.remote(), timeout=10) == 0
    _bookkeeping_clear(b)
    report("queued sync calls cancelled, none ran", CANCELS)
    actorloop.kill(b)
