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
import gc
import os
import sys
import threading
import time
from typing import Any

import pytest
from node._helpers import async_wait_until

import actorloop
from actorloop import _worker
from actorloop._ref import _GATHER_DONE_CODE

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
        self.holding = getattr(self, "holding", 0) + 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def was_cancelled(self) -> bool:
        return getattr(self, "cancelled", False)

    async def holding_count(self) -> int:
        return getattr(self, "holding", 0)

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

    async def boom(self, i: int) -> int:
        raise ValueError(f"boom {i}")

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


def _with_payload(handle: Any) -> set[int]:
    """The calls whose payload the connection keeps: until delivered, or for a retry."""
    conn = handle.f._state.conns[asyncio.get_running_loop()]
    return set(conn._unwritten_calls()) | set(conn._kept)


async def test_payload_dropped_once_delivered_without_retries() -> None:
    a = Flood.remote()
    holds = [a.hold.remote() for _ in range(2)]
    refs = [a.f.remote(i) for i in range(50)]
    # Every call is delivered (the actor read it) while it waits: none keeps its payload.
    assert await async_wait_until(lambda: _async_true(not _with_payload(a) & set(_pending_of(a))))
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
    assert set(_pending_of(a)) <= set(conn._kept)  # delivered, and still kept for a retry
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


# -- what a gather keeps per ref -----------------------------------------------------

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def _contexts_alive() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is contextvars.Context)


async def test_gather_makes_no_context_per_ref() -> None:
    a = Flood.remote()
    holds = [a.hold.remote() for _ in range(2)]  # both slots: the calls below stay pending while we look
    refs = [a.f.remote(i) for i in range(2000)]
    before = _contexts_alive()
    gathered = asyncio.gather(*refs)
    assert _contexts_alive() - before < 100  # a copy of the context per ref would be 2000
    for h in holds:
        actorloop.cancel(h)
    assert await gathered == list(range(2000))


async def test_callbacks_other_than_gathers_still_get_a_copy_of_the_context() -> None:
    a = Flood.remote()
    await a.f.remote(0)  # the connection is up: it reads replies in a context made before _var was set
    _var.set("caller")
    seen: list[str] = []
    done = asyncio.Event()

    def callback(_: Any) -> None:
        seen.append(_var.get())
        _var.set("changed in the callback")  # in its own copy: not visible to the next one
        done.set()

    ref = a.f.remote(1)
    ref.add_done_callback(callback)
    ref.add_done_callback(lambda _: seen.append(_var.get()))
    _var.set("after registering")  # the callbacks run in copies made when they were registered
    assert await asyncio.gather(ref) == [1]
    await done.wait()
    await asyncio.sleep(0)
    assert seen == ["caller", "caller"]
    assert _var.get() == "after registering"


async def test_gathers_on_loops_of_several_threads_at_once() -> None:
    a = Flood.remote()
    errors: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            for _ in range(20):
                assert await asyncio.gather(*[a.f.remote(i) for i in range(200)]) == list(range(200))

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        await asyncio.to_thread(t.join, 60)
    assert errors == []


# -- gather's callbacks, called as the results are read ----------------------------------------


def _is_gathers_callback(fn: Any) -> bool:
    return _GATHER_DONE_CODE is not None and getattr(fn, "__code__", None) is _GATHER_DONE_CODE


async def test_a_gathers_callbacks_are_not_scheduled_one_by_one() -> None:
    a = Flood.remote()
    await a.f.remote(0)
    loop = asyncio.get_running_loop()
    scheduled: list[Any] = []
    real_call_soon = loop.call_soon

    def counting_call_soon(callback: Any, *args: Any, context: Any = None) -> Any:
        if _is_gathers_callback(callback):
            scheduled.append(callback)
        return real_call_soon(callback, *args, context=context)

    loop.call_soon = counting_call_soon  # type: ignore[method-assign]  # futures look it up on the loop
    try:
        refs = [a.f.remote(i) for i in range(500)]  # pending: no reply is read before gather() returns
        assert await asyncio.gather(*refs) == list(range(500))
        # The same gather with an ordinary awaitable among the refs, which asyncio wraps in a task.
        assert await asyncio.gather(*[a.f.remote(i) for i in range(50)], asyncio.sleep(0, "x")) == [
            *range(50),
            "x",
        ]
    finally:
        del loop.call_soon
    assert len(scheduled) <= 1  # the sleep's task; each ref's would be 550


async def test_two_gathers_over_one_connections_refs_at_once() -> None:
    a = Flood.remote()
    refs = [a.f.remote(i) for i in range(600)]
    evens = asyncio.gather(*refs[::2])
    odds = asyncio.gather(*refs[1::2])  # the connection now remembers this one's callback only
    first = asyncio.gather(*[a.f.remote(i) for i in range(100)])
    later = asyncio.gather(*[a.f.remote(i) for i in range(100, 200)])
    assert await evens == list(range(0, 600, 2))
    assert await odds == list(range(1, 600, 2))
    assert await first == list(range(100))
    assert await later == list(range(100, 200))


async def test_a_gathered_ref_awaited_elsewhere_and_in_two_gathers() -> None:
    a = Flood.remote()
    ref = a.f.remote(7)
    others = [a.f.remote(i) for i in range(5)]
    waiter = asyncio.ensure_future(_await(ref))
    seen: list[int] = []
    ref.add_done_callback(lambda r: seen.append(r.result()))
    one = asyncio.gather(ref, *others)
    two = asyncio.gather(*others, ref)
    assert await one == [7, 0, 1, 2, 3, 4]
    assert await two == [0, 1, 2, 3, 4, 7]
    assert await waiter == 7
    await asyncio.sleep(0)
    assert seen == [7]


async def _holding_at_least(actor: Any, count: int) -> bool:
    return bool(await actor.holding_count.remote() >= count)


async def _await(ref: Any) -> Any:
    return await ref


async def test_a_gather_with_failing_children() -> None:
    a = Flood.remote()
    calls = [a.boom.remote(i) if i % 3 == 0 else a.f.remote(i) for i in range(9)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, ValueError) and f"ValueError: boom {i}" in str(result)
        else:
            assert result == i
    with pytest.raises(ValueError, match="boom 4"):
        await asyncio.gather(*[a.f.remote(i) for i in range(4)], a.boom.remote(4), *[a.f.remote(i) for i in range(5)])
    assert await asyncio.gather(*[a.f.remote(i) for i in range(10)]) == list(range(10))


async def test_a_cancelled_gather_cancels_its_calls_and_the_connection_goes_on() -> None:
    a = Flood.remote()  # two slots: one for the held call, one to ask how many are held
    held = a.hold.remote()
    quick = [a.f.remote(i) for i in range(3)]
    gathered = asyncio.gather(held, *quick)
    assert await async_wait_until(lambda: _holding_at_least(a, 1))  # running in the actor, waiting
    assert await asyncio.gather(*quick) == [0, 1, 2]
    gathered.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gathered
    assert held.cancelled()
    assert await async_wait_until(lambda: a.was_cancelled.remote())  # the cancel reached the method
    assert await asyncio.gather(*[a.f.remote(i) for i in range(100)]) == list(range(100))


async def test_the_connection_does_not_keep_a_finished_gather() -> None:
    a = Flood.remote()
    refs = [a.f.remote(i) for i in range(200)]
    conn = a.f._state.conns[asyncio.get_running_loop()]
    gathered = asyncio.gather(*refs)
    assert conn.gather_callback() is not None  # remembered while the gather runs
    results = await gathered
    assert results == list(range(200))
    assert conn.gather_callback() is None  # weakly: the gather, its children and results are free to go


# -- the table of calls in flight ----------------------------------------------------------


def _table_with(ids: list[int]) -> tuple[Any, dict[int, Any]]:
    from actorloop._connection import CallTable

    table = CallTable()
    refs = {call_id: object() for call_id in ids}
    for call_id in ids:
        table[call_id] = refs[call_id]
    return table, refs


async def test_call_table_keeps_every_call_in_any_order() -> None:
    ids = [*range(1, 50), 70, 60, *range(80, 90), 55]  # gaps, and ids registered out of order
    table, refs = _table_with(ids)
    assert len(table) == len(ids) and list(table) == sorted(ids)
    assert all(table.get(i) is refs[i] and i in table for i in ids)
    assert table.get(50) is None and 50 not in table and table.pop(50) is None
    for call_id in reversed(ids):
        assert table.pop(call_id) is refs[call_id]
        assert table.pop(call_id) is None
    assert len(table) == 0 and not table


async def test_call_table_drops_its_ended_front_and_keeps_stragglers() -> None:
    table, refs = _table_with(list(range(1, 100_001)))
    for call_id in range(2, 100_001):  # all but the first end, in order
        table.pop(call_id)
        table.trim()
    assert len(table.refs) < 3000  # not a slot for every call made since the straggler
    assert list(table) == [1] and table.pop(1) is refs[1]
    table[100_001] = refs[1]  # later calls still go in
    assert list(table) == [100_001]


async def test_call_table_takes_a_threads_call_aside() -> None:
    table, refs = _table_with([1, 2, 3])
    ref = object()
    table.add_from_thread(7, ref)  # a sync caller's lone call, registered from its thread
    table[8] = refs[1]
    assert list(table) == [1, 2, 3, 7, 8] and len(table) == 5
    assert table.pop(7) is ref
    table.add_from_thread(9, ref)
    table.discard_from_thread(9)
    assert 9 not in table


# -- a burst of calls while the socket is full ------------------------------------------


@actorloop.remote
class Blockable:
    async def block_until(self, path: str) -> None:
        while not os.path.exists(path):  # blocks the actor's loop: it reads nothing meanwhile
            time.sleep(0.005)

    async def f(self, i: int, marker: int, seen: str) -> int:
        if i == marker:
            open(seen, "w").close()
        return i


def _burst_reaches_the_actor_while_it_lasts(a: Any, tmp: str, loop_kind: str) -> bool:
    gate, seen = os.path.join(tmp, "gate"), os.path.join(tmp, "seen")

    async def main() -> bool:
        await a.f.remote(0, -1, seen)  # this loop's connection is up
        blocked = a.block_until.remote(gate)
        # One stretch of calls without an await: the loop does not run until it ends.
        refs = [a.f.remote(i, -1, seen) for i in range(1, 30_000)]  # far more than the socket holds
        open(gate, "w").close()  # the actor reads again
        refs.append(a.f.remote(30_000, 30_000, seen))
        deadline = time.monotonic() + 20
        reached = False
        i = 30_000
        while time.monotonic() < deadline:  # still the same stretch: keep calling
            if os.path.exists(seen):
                reached = True
                break
            for _ in range(300):
                i += 1
                refs.append(a.f.remote(i, -1, seen))
            time.sleep(0.002)
        await blocked
        out = await asyncio.gather(*refs)
        assert out == [*range(1, 30_001), *range(30_001, i + 1)]  # every call, in order
        return reached

    if loop_kind == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
async def test_a_burst_keeps_feeding_the_actor_once_the_socket_was_full(loop_kind: str, tmp_path: Any) -> None:
    # Frames the socket did not take wait for the next write of the burst, not for the end of it
    # (a transport writes only when its loop runs: everything after the first full socket piled up).
    a = Blockable.remote()
    reached = await asyncio.to_thread(_burst_reaches_the_actor_while_it_lasts, a, str(tmp_path), loop_kind)
    assert reached, "a call made after the socket had been full did not reach the actor during the burst"


async def test_the_calls_among_frames_not_written_whole() -> None:
    from actorloop import _protocol as proto
    from actorloop._connection import _call_id_of, _split_frames

    ids = [1, 255, 256, 65_535, 65_536, 2**31 - 1, 2**31, 2**40]
    calls = [proto.dumps_call((proto.CALL, i, "f", (i, "x"), {}, None), (i, "x"), {}) for i in ids]
    assert [_call_id_of(p) for p in calls] == ids
    stream = proto.dumps_call((proto.STREAM_CALL, 77, "g", (), {"k": 1}, None, 8), (), {"k": 1})
    assert _call_id_of(stream) == 77
    assert _call_id_of(proto.dumps((proto.CANCEL, 5))) is None
    assert _call_id_of(proto.dumps((proto.STREAM_ACK, 5, 3))) is None
    frames = [proto.frame(p) for p in calls]
    chunk = b"".join(frames)
    assert _split_frames(chunk, 0) == calls
    # Written up to the middle of the third frame: the first two reached the socket whole.
    written = len(frames[0]) + len(frames[1]) + 3
    assert _split_frames(chunk, written) == calls[2:]
    assert _split_frames(chunk, len(chunk)) == []
