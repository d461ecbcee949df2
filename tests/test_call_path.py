"""The fast call path keeps its promises (issue 14).

- Async methods start as eager tasks on Python 3.12+ and still behave as
  tasks: current_task(), asyncio.timeout(), TaskGroup, contextvars and
  cancellation.
- An actor reads a flood of calls in as raw frames past ``defer_at`` calls in
  hand; they still all run, in order, and cancelling one that waits there works.
- A call with no retries lets go of its payload once delivered; one with
  retries keeps it until its answer.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from typing import Any

import pytest
from node._helpers import async_wait_until

import actorloop
from actorloop import _worker

pytestmark = [pytest.mark.usefixtures("node"), pytest.mark.asyncio]


@actorloop.remote
class Tasky:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def eager_flag(self) -> bool:
        return _worker._EAGER

    async def current_task_ok(self) -> bool:
        task = asyncio.current_task()
        await asyncio.sleep(0)
        return task is not None and task is asyncio.current_task() and not task.done()

    async def timeout(self) -> str:
        if sys.version_info < (3, 11):
            try:
                await asyncio.wait_for(asyncio.sleep(30), 0.05)
            except asyncio.TimeoutError:
                return "timed out"
            return "no timeout"
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out"
        return "no timeout"

    async def task_group(self) -> list[int]:
        if sys.version_info < (3, 11):
            return [1, 2]
        async with asyncio.TaskGroup() as tg:
            a = tg.create_task(self._one(1))
            b = tg.create_task(self._one(2))
        return [a.result(), b.result()]

    async def _one(self, x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def set_var(self, value: str) -> str:
        before = self.var.get()
        self.var.set(value)  # the call's own context: not seen by later calls
        return before

    async def get_var(self) -> str:
        return self.var.get()

    async def task_name(self) -> str:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    async def wait_gate(self) -> str:
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "opened"

    async def was_cancelled(self) -> bool:
        return getattr(self, "cancelled", False)

    async def open_gate(self) -> None:
        self.gate.set()


async def test_eager_on_312_and_later() -> None:
    a = Tasky.remote()
    assert await a.eager_flag.remote() is (sys.version_info >= (3, 12))


async def test_method_is_a_task() -> None:
    a = Tasky.remote()
    assert await a.current_task_ok.remote() is True


async def test_timeout_inside_method() -> None:
    a = Tasky.remote()
    assert await a.timeout.remote() == "timed out"


async def test_task_group_inside_method() -> None:
    a = Tasky.remote()
    assert await a.task_group.remote() == [1, 2]


async def test_each_call_has_its_own_context() -> None:
    a = Tasky.remote()
    assert await a.set_var.remote("one") == "unset"
    assert await a.get_var.remote() == "unset"
    assert await asyncio.gather(*[a.set_var.remote(str(i)) for i in range(5)]) == ["unset"] * 5


async def test_each_call_task_is_named_after_its_method() -> None:
    a = Tasky.options(concurrency_groups={"one": 1}).remote()
    assert await a.task_name.remote() == "task_name"
    # In a named group, and started from the group's queue once a slot came back.
    held = a.wait_gate.options(concurrency_group="one").remote()
    queued = a.task_name.options(concurrency_group="one").remote()
    await a.current_task_ok.remote()  # both have arrived by now (calls are read in order)
    await a.open_gate.remote()
    assert await held == "opened"
    assert await queued == "task_name"


async def test_cancel_reaches_a_waiting_method() -> None:
    a = Tasky.remote()
    ref = a.wait_gate.remote()
    await a.current_task_ok.remote()  # the wait_gate call is running by now (calls start in order)
    actorloop.cancel(ref)
    with pytest.raises(actorloop.exceptions.TaskCancelledError):
        await ref
    assert await async_wait_until(lambda: a.was_cancelled.remote())


# -- deferred calls (backpressure on reading calls) -------------------------------


@actorloop.remote(max_concurrency=2)
class Flood:
    def __init__(self) -> None:
        self.ran: list[int] = []
        self.gate = asyncio.Event()

    async def set_defer_at(self, n: int) -> None:
        assert _worker._current_worker is not None
        _worker._current_worker.defer_at = n

    async def hold(self) -> None:
        await self.gate.wait()

    async def open_gate(self) -> None:
        self.gate.set()

    async def f(self, i: int) -> int:
        self.ran.append(i)
        await asyncio.sleep(0)
        return i

    async def in_hand(self) -> tuple[int, int]:
        assert _worker._current_worker is not None
        conns = _worker._current_worker.connections
        return sum(len(c.running) for c in conns), sum(len(c.deferred) for c in conns)

    async def ran_list(self) -> list[int]:
        return list(self.ran)

    async def frames_deferred(self) -> int:
        assert _worker._current_worker is not None
        return _worker._current_worker.frames_deferred


@actorloop.remote
class SyncFlood:
    def __init__(self) -> None:
        self.ran: list[int] = []
        self.gate = threading.Event()

    def set_defer_at(self, n: int) -> None:
        assert _worker._current_worker is not None
        _worker._current_worker.defer_at = n

    def f(self, i: int) -> int:
        self.ran.append(i)
        return i

    def ran_list(self) -> list[int]:
        return list(self.ran)

    def frames_deferred(self) -> int:
        assert _worker._current_worker is not None
        return _worker._current_worker.frames_deferred


async def test_deferred_calls_all_run_in_order() -> None:
    a = Flood.remote()
    await a.set_defer_at.remote(8)
    out = await asyncio.gather(*[a.f.remote(i) for i in range(500)])
    assert out == list(range(500))
    assert await a.ran_list.remote() == list(range(500))
    assert await a.frames_deferred.remote() > 0


async def test_deferred_calls_in_a_sync_actor() -> None:
    a = SyncFlood.remote()
    await a.set_defer_at.remote(8)
    out = await asyncio.gather(*[a.f.remote(i) for i in range(500)])
    assert out == list(range(500))
    assert await a.ran_list.remote() == list(range(500))
    assert await a.frames_deferred.remote() > 0


async def test_cancel_a_deferred_call() -> None:
    a = Flood.remote()
    await a.set_defer_at.remote(8)
    holds = [a.hold.remote() for _ in range(2)]  # both slots busy: the calls below wait
    refs = [a.f.remote(i) for i in range(100)]  # 6 in hand, the rest deferred as frames
    actorloop.cancel(refs[50])
    with pytest.raises(actorloop.exceptions.TaskCancelledError):
        await refs[50]
    for h in holds:  # cancels are read at once even while calls are deferred: the slots free up
        actorloop.cancel(h)
    out = await asyncio.gather(*refs[:50], *refs[51:])
    assert out == [i for i in range(100) if i != 50]
    assert 50 not in await a.ran_list.remote()
    assert await a.frames_deferred.remote() > 0


# -- payloads kept only while needed -----------------------------------------------


def _pending_of(handle: Any) -> dict[int, Any]:
    state = handle.f._state
    loop = asyncio.get_running_loop()
    return dict(state.conns[loop].pending)


async def test_payload_dropped_once_delivered_without_retries() -> None:
    a = Flood.remote()
    holds = [a.hold.remote() for _ in range(2)]
    refs = [a.f.remote(i) for i in range(50)]
    # Every call is delivered (the actor read it) while it waits: none keeps its payload.
    assert await async_wait_until(lambda: _async_true(all(e.payload is None for e in _pending_of(a).values())))
    for h in holds:
        actorloop.cancel(h)
    assert await asyncio.gather(*refs) == list(range(50))


async def test_payload_kept_while_a_retry_may_need_it() -> None:
    a = Flood.options(max_task_retries=1).remote()
    holds = [a.hold.remote() for _ in range(2)]
    refs = [a.f.remote(i) for i in range(20)]
    conn = a.f._state.conns[asyncio.get_running_loop()]
    # Delivery is recorded and payloads dropped in the same step (_delivered): once the last
    # call counts as delivered, any payload that was going to go is gone.
    assert await async_wait_until(lambda: _async_true(conn.delivered_seq >= conn._seq))
    assert all(e.payload is not None for e in _pending_of(a).values())
    for h in holds:
        actorloop.cancel(h)
    assert await asyncio.gather(*refs) == list(range(20))


async def _async_true(value: bool) -> bool:
    return value


@actorloop.remote(max_concurrency=1)
class OneSlot:
    async def hold(self) -> None:
        await asyncio.Event().wait()

    async def f(self, x: int) -> int:
        return x


async def test_cancelled_before_it_ran_gives_back_its_slot() -> None:
    a = OneSlot.remote()
    await a.f.remote(0)
    for _ in range(3):
        held = a.hold.remote()
        actorloop.cancel(held)  # leaves with the call in one write: its task never got to run
        with pytest.raises(actorloop.exceptions.TaskCancelledError):
            await held
    assert await a.f.remote(1) == 1  # the slot came back each time
