"""Cancellation that reaches the actor (SPEC section 4, end)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from node._helpers import async_wait_until, wait_until

import actorloop

pytestmark = pytest.mark.usefixtures("node")


@actorloop.remote
class Sleeper:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.gate = asyncio.Event()

    async def sleep(self, tag: str, t: float = 60) -> str:
        self.events.append(f"start {tag}")
        try:
            await asyncio.sleep(t)
        except asyncio.CancelledError:
            self.events.append(f"cancelled {tag}")
            raise
        finally:
            self.events.append(f"finally {tag}")
        return tag

    async def mark(self, tag: str) -> str:
        self.events.append(f"ran {tag}")
        return tag

    async def wait_gate(self, tag: str) -> str:
        self.events.append(f"start {tag}")
        await self.gate.wait()
        return tag

    async def open_gate(self) -> None:
        self.gate.set()

    async def log(self) -> list[str]:
        return list(self.events)


@actorloop.remote(concurrency_groups={"ctl": 1})
class SyncWorker:
    """A sync actor whose ``work`` holds until the test opens its gate; ``ctl`` answers meanwhile."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.started = threading.Event()
        self.gate = threading.Event()

    def work(self, tag: str) -> str:
        self.started.set()
        self.gate.wait(30)
        self.done.append(tag)
        return tag

    @actorloop.method(concurrency_group="ctl")
    def wait_started(self) -> bool:
        return self.started.wait(30)

    @actorloop.method(concurrency_group="ctl")
    def open_gate(self) -> None:
        self.gate.set()

    def log(self) -> list[str]:
        return list(self.done)


def _wait_for_event(
    actor: actorloop.ActorHandle, event: str, timeout: float = 10, group: str | None = None
) -> list[str]:
    log: list[str] = []

    def seen() -> bool:
        nonlocal log
        log = actorloop.get(actor.log.options(concurrency_group=group).remote())
        return event in log

    assert wait_until(seen, timeout, interval=0.01), f"{event!r} not seen in {log}"
    return log


async def _await_events(
    actor: actorloop.ActorHandle, *events: str, timeout: float = 10, group: str | None = None
) -> None:
    """Poll the actor's log from asyncio code until every one of ``events`` is in it."""
    log: list[str] = []

    async def seen() -> bool:
        nonlocal log
        log = await actor.log.options(concurrency_group=group).remote()
        return set(events) <= set(log)

    assert await async_wait_until(seen, timeout, interval=0.01), f"{set(events) - set(log)} not seen in {log}"


def test_cancel_reaches_running_coroutine() -> None:
    s = Sleeper.remote()
    ref = s.sleep.remote("a")
    _wait_for_event(s, "start a")
    actorloop.cancel(ref)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(ref)
    log = _wait_for_event(s, "finally a")
    assert "cancelled a" in log


def test_await_after_cancel_raises_task_cancelled_error() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        ref = s.sleep.remote("b")
        await _await_events(s, "start b")
        actorloop.cancel(ref)
        with pytest.raises(actorloop.TaskCancelledError):
            await ref

    asyncio.run(main())
    _wait_for_event(s, "cancelled b")


def test_cancelling_the_awaiting_task_cancels_the_remote_call() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        task = asyncio.ensure_future(s.sleep.remote("c"))
        await _await_events(s, "start c")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _wait_for_event(s, "cancelled c")


def test_wait_for_timeout_cancels_the_remote_call() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        ref = s.sleep.remote("d")
        await _await_events(s, "start d")  # the timeout hits a running call, not one still on its way
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ref, 0.1)

    asyncio.run(main())
    _wait_for_event(s, "cancelled d")


def test_cancelled_gather_cancels_every_call() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        gathered = asyncio.gather(*[s.sleep.remote(f"g{i}") for i in range(5)])
        await _await_events(s, *[f"start g{i}" for i in range(5)])
        gathered.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gathered

    asyncio.run(main())
    for i in range(5):
        _wait_for_event(s, f"cancelled g{i}")


def test_queued_call_never_starts() -> None:
    s = Sleeper.options(max_concurrency=1, concurrency_groups={"ctl": 1}).remote()
    first = s.wait_gate.remote("first")
    _wait_for_event(s, "start first", group="ctl")
    queued = s.mark.remote("queued")
    # A call on the same connection answered: the actor has read (and queued) the call sent before it.
    actorloop.get(s.log.options(concurrency_group="ctl").remote())
    actorloop.cancel(queued)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(queued)
    actorloop.get(s.open_gate.options(concurrency_group="ctl").remote())
    assert actorloop.get(first) == "first"
    assert actorloop.get(s.mark.remote("after")) == "after"
    assert "ran queued" not in actorloop.get(s.log.remote())


def test_cancel_immediately_after_submit_wins() -> None:
    """A call cancelled right after submit, while it waits for the group's slot, never runs."""
    s = Sleeper.options(max_concurrency=1, concurrency_groups={"ctl": 1}).remote()
    first = s.wait_gate.remote("first")  # holds the default group's only slot until the gate opens
    _wait_for_event(s, "start first", group="ctl")
    refs = []
    for i in range(50):
        ref = s.mark.remote(f"race{i}")
        actorloop.cancel(ref)
        refs.append(ref)
    actorloop.get(s.open_gate.options(concurrency_group="ctl").remote())
    assert actorloop.get(first) == "first"
    for ref in refs:
        with pytest.raises(actorloop.TaskCancelledError):
            actorloop.get(ref)
    assert actorloop.get(s.mark.remote("after")) == "after"  # queued behind the cancelled calls
    log = actorloop.get(s.log.remote())
    assert not [e for e in log if e.startswith("ran race")], log


def test_cancel_immediately_in_async_code_wins() -> None:
    """The same from asyncio code, with ``ref.cancel()``."""
    s = Sleeper.options(max_concurrency=1, concurrency_groups={"ctl": 1}).remote()

    async def main() -> None:
        first = s.wait_gate.remote("first")
        await _await_events(s, "start first", group="ctl")
        refs = []
        for i in range(50):
            ref = s.mark.remote(f"arace{i}")
            ref.cancel()
            refs.append(ref)
        await s.open_gate.options(concurrency_group="ctl").remote()
        assert await first == "first"
        for ref in refs:
            with pytest.raises(asyncio.CancelledError):
                await ref
        assert await s.mark.remote("after") == "after"

    asyncio.run(main())
    log = actorloop.get(s.log.remote())
    assert not [e for e in log if e.startswith("ran arace")], log


def test_cancel_right_after_submit_to_an_idle_actor_is_cancelled_or_done_and_leaves_it_healthy() -> None:
    """From sync code the cancel races the call: ``cancel()`` hands over to the ref's loop, and an idle
    actor's answer may settle the ref first (cancelling a finished call does nothing, as in Ray). So the
    caller sees TaskCancelledError, or the result of a call that really ran; never anything else, and
    the actor serves on."""
    s = Sleeper.remote()
    returned = []
    for i in range(50):
        ref = s.mark.remote(f"race{i}")
        actorloop.cancel(ref)
        try:
            assert actorloop.get(ref, timeout=10) == f"race{i}"
            returned.append(f"ran race{i}")
        except actorloop.TaskCancelledError:
            pass
    assert actorloop.get(s.mark.remote("after")) == "after"
    log = actorloop.get(s.log.remote())
    assert set(returned) <= set(log)
    assert log[-1] == "ran after"


def test_cancel_right_after_submit_in_async_code_always_raises_and_leaves_the_actor_healthy() -> None:
    """On the ref's own loop nothing can settle the ref between ``.remote()`` and ``ref.cancel()``."""
    s = Sleeper.remote()

    async def main() -> None:
        for i in range(50):
            ref = s.mark.remote(f"arace{i}")
            ref.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ref
        assert await s.mark.remote("after") == "after"

    asyncio.run(main())
    assert actorloop.get(s.log.remote())[-1] == "ran after"


def test_a_call_cancelled_before_it_left_gives_its_group_slot_back() -> None:
    """A call cancelled in the loop iteration that made it reaches the actor together with its cancel, so
    the cancel finds the call's task not started yet; the call never runs and its one-slot group's slot
    comes back (a lost slot would leave the next call of the group queued forever)."""
    s = Sleeper.options(concurrency_groups={"ctl": 1}).remote()

    async def main() -> None:
        for i in range(10):
            ref = s.mark.options(concurrency_group="ctl").remote(f"gone{i}")
            ref.cancel()  # the call and its cancel leave in one write
            with pytest.raises(asyncio.CancelledError):
                await ref
            after = s.mark.options(concurrency_group="ctl").remote(f"after{i}")
            assert await asyncio.wait_for(after, 30) == f"after{i}"

    asyncio.run(main())
    assert not [e for e in actorloop.get(s.log.remote()) if e.startswith("ran gone")]


def test_running_sync_method_finishes_and_result_is_dropped() -> None:
    w = SyncWorker.remote()
    ref = w.work.remote("slow")
    assert actorloop.get(w.wait_started.remote(), timeout=30)
    actorloop.cancel(ref)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(ref)
    actorloop.get(w.open_gate.remote())
    # One call at a time in the default group: the log is read once `work` has returned.
    assert actorloop.get(w.log.remote(), timeout=30) == ["slow"]
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(ref)  # its result was dropped


def test_thousand_cancellations_leave_the_actor_healthy() -> None:
    s = Sleeper.options(concurrency_groups={"ctl": 1}).remote()

    async def main() -> list[str]:
        refs = [s.sleep.remote(f"k{i}") for i in range(1000)]
        await _await_events(s, *[f"start k{i}" for i in range(1000)], timeout=30, group="ctl")
        for ref in refs:
            actorloop.cancel(ref)
        # every slot of the default group (1000) must be free again
        return list(await asyncio.wait_for(asyncio.gather(*[s.sleep.remote(f"n{i}", 0.05) for i in range(1000)]), 30))

    assert len(asyncio.run(main())) == 1000
