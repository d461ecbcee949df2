"""Cancellation that reaches the actor (SPEC section 4, end)."""

from __future__ import annotations

import asyncio
import time

import pytest

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


@actorloop.remote
class SyncWorker:
    def __init__(self) -> None:
        self.done: list[str] = []

    def work(self, tag: str, t: float) -> str:
        time.sleep(t)
        self.done.append(tag)
        return tag

    def log(self) -> list[str]:
        return list(self.done)


def _wait_for_event(
    actor: actorloop.ActorHandle, event: str, timeout: float = 10, group: str | None = None
) -> list[str]:
    deadline = time.monotonic() + timeout
    log: list[str] = []
    while time.monotonic() < deadline:
        log = actorloop.get(actor.log.options(concurrency_group=group).remote())
        if event in log:
            return log
        time.sleep(0.01)
    raise AssertionError(f"{event!r} not seen in {log}")


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
        await asyncio.sleep(0.05)
        actorloop.cancel(ref)
        with pytest.raises(actorloop.TaskCancelledError):
            await ref

    asyncio.run(main())
    _wait_for_event(s, "cancelled b")


def test_cancelling_the_awaiting_task_cancels_the_remote_call() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        task = asyncio.ensure_future(s.sleep.remote("c"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _wait_for_event(s, "cancelled c")


def test_wait_for_timeout_cancels_the_remote_call() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(s.sleep.remote("d"), 0.1)

    asyncio.run(main())
    _wait_for_event(s, "cancelled d")


def test_cancelled_gather_cancels_every_call() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        gathered = asyncio.gather(*[s.sleep.remote(f"g{i}") for i in range(5)])
        await asyncio.sleep(0.1)
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
    time.sleep(0.05)
    actorloop.cancel(queued)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(queued)
    actorloop.get(s.open_gate.options(concurrency_group="ctl").remote())
    assert actorloop.get(first) == "first"
    assert actorloop.get(s.mark.remote("after")) == "after"
    assert "ran queued" not in actorloop.get(s.log.remote())


def test_cancel_immediately_after_submit_wins() -> None:
    s = Sleeper.remote()
    for i in range(50):
        ref = s.mark.remote(f"race{i}")
        actorloop.cancel(ref)
        with pytest.raises(actorloop.TaskCancelledError):
            actorloop.get(ref)
    log = actorloop.get(s.log.remote())
    assert not [e for e in log if e.startswith("ran race")]


def test_cancel_immediately_in_async_code_wins() -> None:
    s = Sleeper.remote()

    async def main() -> None:
        for i in range(50):
            ref = s.mark.remote(f"arace{i}")
            ref.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ref

    asyncio.run(main())
    log = actorloop.get(s.log.remote())
    assert not [e for e in log if e.startswith("ran arace")]


def test_running_sync_method_finishes_and_result_is_dropped() -> None:
    w = SyncWorker.remote()
    ref = w.work.remote("slow", 0.3)
    time.sleep(0.1)
    actorloop.cancel(ref)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(ref)
    time.sleep(0.4)
    assert actorloop.get(w.log.remote()) == ["slow"]


def test_thousand_cancellations_leave_the_actor_healthy() -> None:
    s = Sleeper.remote()

    async def main() -> list[str]:
        refs = [s.sleep.remote(f"k{i}") for i in range(1000)]
        await asyncio.sleep(0.3)
        for ref in refs:
            actorloop.cancel(ref)
        # every slot of the default group (1000) must be free again
        return list(await asyncio.wait_for(asyncio.gather(*[s.sleep.remote(f"n{i}", 0.05) for i in range(1000)]), 30))

    assert len(asyncio.run(main())) == 1000
