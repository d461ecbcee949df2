"""Crash under load: SIGKILL an actor with thousands of calls in flight.

Every ref must resolve (a result or ActorDiedError) within seconds, other
actors must not notice, and an actor with ``max_restarts`` comes back and
serves through the same handle.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

import actorloop
from actorloop import ActorDiedError

from ._common import alive, once_back, scaled, wait_gone

pytestmark = pytest.mark.usefixtures("node")

IN_FLIGHT = scaled(5_000, 50_000)
ROUNDS = scaled(3, 10)


@actorloop.remote
class Slow:
    async def work(self, token: int) -> int:
        await asyncio.sleep(0.0005 * (token % 10))
        return token

    async def pid(self) -> int:
        return os.getpid()


@actorloop.remote
class SlowSync:
    def work(self, token: int) -> int:
        if token % 50 == 0:
            time.sleep(0.001)
        return token

    def pid(self) -> int:
        return os.getpid()


@actorloop.remote
class Bystander:
    def __init__(self) -> None:
        self.n = 0

    async def bump(self) -> int:
        self.n += 1
        return self.n

    async def pid(self) -> int:
        return os.getpid()


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


async def _settle(refs: list, timeout: float) -> tuple[int, int, list[BaseException]]:  # type: ignore[type-arg]
    """Wait for every ref; count results and ActorDiedErrors, collect anything else."""
    results = await asyncio.wait_for(asyncio.gather(*refs, return_exceptions=True), timeout)
    ok = died = 0
    other: list[BaseException] = []
    for token, value in enumerate(results):
        if isinstance(value, ActorDiedError):
            died += 1
        elif isinstance(value, BaseException):
            other.append(value)
        else:
            assert value == token
            ok += 1
    return ok, died, other


@pytest.mark.parametrize("cls", [Slow, SlowSync], ids=["async", "sync"])
def test_sigkill_with_calls_in_flight(cls, report) -> None:  # type: ignore[no-untyped-def]
    victim = cls.remote()
    bystander = Bystander.remote()
    victim_pid = actorloop.get(victim.pid.remote(), timeout=30)
    bystander_pid = actorloop.get(bystander.pid.remote(), timeout=30)
    stop = threading.Event()
    bystander_calls: list[int] = []
    bystander_errors: list[BaseException] = []

    def keep_calling() -> None:  # another caller, on another thread, on another actor
        try:
            while not stop.is_set():
                bystander_calls.append(actorloop.get(bystander.bump.remote(), timeout=10))
        except BaseException as exc:  # noqa: BLE001
            bystander_errors.append(exc)

    side = threading.Thread(target=keep_calling)
    side.start()
    # Calls from sync code too: they travel on the home loop's connection, not the asyncio one.
    sync_refs = [victim.work.remote(i) for i in range(IN_FLIGHT // 5)]

    async def main() -> tuple[int, int, list[BaseException], float]:
        refs = [victim.work.remote(i) for i in range(IN_FLIGHT)]
        await refs[IN_FLIGHT // 20]  # some answered, most still queued or running
        _sigkill(victim_pid)
        t0 = time.monotonic()
        ok, died, other = await _settle(refs, timeout=20)
        return ok, died, other, time.monotonic() - t0

    try:
        ok, died, other, settle = asyncio.run(main())
    finally:
        stop.set()
        side.join(timeout=30)
    assert not other, f"refs failed with something else than ActorDiedError: {other[:3]}"
    assert ok + died == IN_FLIGHT
    ready, not_ready = actorloop.wait(sync_refs, num_returns=len(sync_refs), timeout=10)
    assert not not_ready, f"{len(not_ready)} refs of sync code never resolved"
    for token, ref in enumerate(sync_refs):
        try:
            assert actorloop.get(ref) == token
        except ActorDiedError:
            pass
    assert ok > 0 and died > 0, "the kill came too early or too late: the test proves nothing"
    assert settle < 10
    assert not bystander_errors, bystander_errors
    assert bystander_calls == list(range(1, len(bystander_calls) + 1)), "the bystander lost or repeated calls"
    assert actorloop.get(bystander.pid.remote(), timeout=10) == bystander_pid
    with pytest.raises(ActorDiedError, match="SIGKILL"):
        actorloop.get(victim.work.remote(1), timeout=10)
    assert not wait_gone([victim_pid], 5)
    report(f"{cls.__name__}: calls in flight at SIGKILL, answered / ActorDiedError", f"{ok} / {died}")
    report(f"{cls.__name__}: seconds until every ref resolved", round(settle, 2))
    actorloop.kill(bystander)


@pytest.mark.parametrize("cls", [Slow, SlowSync], ids=["async", "sync"])
def test_sigkill_with_restarts_comes_back(cls, report) -> None:  # type: ignore[no-untyped-def]
    victim = cls.options(max_restarts=-1).remote()
    pids = [actorloop.get(victim.pid.remote(), timeout=30)]
    total_died = total_ok = 0
    for _ in range(ROUNDS):

        async def main() -> tuple[int, int, list[BaseException]]:
            refs = [victim.work.remote(i) for i in range(IN_FLIGHT)]
            await refs[IN_FLIGHT // 20]
            _sigkill(pids[-1])
            return await _settle(refs, timeout=20)

        ok, died, other = asyncio.run(main())
        assert not other, other[:3]
        total_ok += ok
        total_died += died
        # Back and serving through the same handle, in a new process.
        new_pid = once_back(victim.pid.remote)
        assert new_pid not in pids and alive(new_pid)
        pids.append(new_pid)
        assert actorloop.get([victim.work.remote(i) for i in range(100)], timeout=20) == list(range(100))
    info = [a for a in actorloop.list_actors() if a.actor_id == victim._actor_id][0]
    assert info.restarts == ROUNDS and info.state == "ALIVE"
    assert not wait_gone(pids[:-1], 5)
    report(f"{cls.__name__}: SIGKILLs survived with max_restarts=-1", ROUNDS)
    report(f"{cls.__name__}: refs in flight across kills, answered / ActorDiedError", f"{total_ok} / {total_died}")
    actorloop.kill(victim)


def test_sigkill_with_task_retries_loses_nothing(report) -> None:  # type: ignore[no-untyped-def]
    """With max_task_retries=-1 every call in flight is retried on the new process: all answer."""
    victim = Slow.options(max_restarts=-1, max_task_retries=-1).remote()
    pid = actorloop.get(victim.pid.remote(), timeout=30)

    async def main() -> tuple[int, int, list[BaseException]]:
        refs = [victim.work.remote(i) for i in range(IN_FLIGHT)]
        await refs[IN_FLIGHT // 20]
        _sigkill(pid)
        return await _settle(refs, timeout=30)

    ok, died, other = asyncio.run(main())
    assert not other, other[:3]
    assert (ok, died) == (IN_FLIGHT, 0)
    assert once_back(victim.pid.remote) != pid
    report("calls in flight at SIGKILL with max_task_retries=-1, all answered", ok)
    actorloop.kill(victim)
