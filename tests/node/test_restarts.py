"""Supervision: restarts, task retries, kill, exit_actor, why an actor died, list_actors() (SPEC 5, 6)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import actorloop
from actorloop import ActorDiedError, ActorInfo
from actorloop import _runtime as _client

from ._helpers import alive, wait_gone, wait_until


@actorloop.remote
class Counter:
    def __init__(self, start: int = 0, marker: str | None = None) -> None:
        self.count = start
        self.marker = marker

    def increment(self) -> int:
        self.count += 1
        return self.count

    def pid(self) -> int:
        return os.getpid()

    def exit_with(self, code: int) -> None:
        os._exit(code)

    def signal_self(self, sig: int) -> None:
        os.kill(os.getpid(), sig)
        time.sleep(10)

    def crash_once(self) -> str:
        """Crash the first time (the marker file does not exist yet), succeed after the restart."""
        assert self.marker is not None
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(9)
        return "done"

    def crash_always(self) -> None:
        os._exit(9)

    def sleep(self, t: float) -> float:
        time.sleep(t)
        return t

    def leave(self) -> str:
        actorloop.exit_actor()
        return "never"


@actorloop.remote
class AsyncCounter:
    def __init__(self) -> None:
        self.count = 0
        self.sleeping = 0

    async def increment(self) -> int:
        self.count += 1
        return self.count

    async def pid(self) -> int:
        return os.getpid()

    async def sleep(self, t: float) -> float:
        self.sleeping += 1
        await asyncio.sleep(t)
        return t

    async def sleepers(self) -> int:
        """How many ``sleep`` calls have started (they run concurrently)."""
        return self.sleeping

    async def crash(self) -> None:
        os._exit(5)

    async def leave(self) -> str:
        actorloop.exit_actor()
        return "never"


@actorloop.remote
class Broken:
    def __init__(self, why: str) -> None:
        self.setup(why)

    def setup(self, why: str) -> None:
        raise ValueError(f"cannot start: {why}")

    def hello(self) -> str:
        return "hello"


@actorloop.remote
class SlowStart:
    def __init__(self, gate: str) -> None:
        """Each start (the first, each restart) waits until the test creates ``gate``, and takes it."""
        deadline = time.monotonic() + 30
        while not os.path.exists(gate):
            assert time.monotonic() < deadline, f"{gate} never appeared"
            time.sleep(0.01)
        os.unlink(gate)

    def pid(self) -> int:
        return os.getpid()

    def crash(self) -> None:
        os._exit(1)


pytestmark = pytest.mark.usefixtures("node")


def _info(handle: actorloop.ActorHandle) -> ActorInfo:  # type: ignore[type-arg]
    (info,) = [a for a in actorloop.list_actors() if a.actor_id == handle._actor_id]
    return info


# -- restarts ----------------------------------------------------------------------


def test_a_crashed_actor_restarts_with_its_constructor_arguments() -> None:
    c = Counter.options(max_restarts=2).remote(10)
    assert actorloop.get(c.increment.remote()) == 11
    first_pid = actorloop.get(c.pid.remote())
    with pytest.raises(ActorDiedError, match="exit code 7"):
        actorloop.get(c.exit_with.remote(7), timeout=10)
    # The same handle works; the state is fresh from the constructor's arguments.
    assert actorloop.get(c.increment.remote(), timeout=10) == 11
    assert actorloop.get(c.pid.remote()) != first_pid
    info = _info(c)
    assert (info.state, info.restarts) == ("ALIVE", 1)
    with pytest.raises(ActorDiedError):
        actorloop.get(c.exit_with.remote(7), timeout=10)
    assert actorloop.get(c.increment.remote(), timeout=10) == 11
    # The third crash is one too many: the actor is dead for good.
    with pytest.raises(ActorDiedError, match="exit code 7"):
        actorloop.get(c.exit_with.remote(7), timeout=10)
    with pytest.raises(ActorDiedError, match="exit code 7"):
        actorloop.get(c.increment.remote(), timeout=10)
    info = _info(c)
    assert (info.state, info.restarts, info.pid) == ("DEAD", 2, None)


def test_max_restarts_minus_one_restarts_forever() -> None:
    c = Counter.options(max_restarts=-1).remote()
    for _ in range(5):
        with pytest.raises(ActorDiedError):
            actorloop.get(c.crash_always.remote(), timeout=10)
    assert actorloop.get(c.increment.remote(), timeout=10) == 1
    assert _info(c).restarts == 5


def test_without_max_restarts_a_crash_is_final() -> None:
    c = Counter.remote()
    with pytest.raises(ActorDiedError, match="exit code 9"):
        actorloop.get(c.crash_always.remote(), timeout=10)
    with pytest.raises(ActorDiedError):
        actorloop.get(c.increment.remote(), timeout=10)
    assert _info(c).state == "DEAD"


def test_max_task_retries_runs_the_crashed_call_again(tmp_path: Path) -> None:
    c = Counter.options(max_restarts=1, max_task_retries=1).remote(0, str(tmp_path / "crashed"))
    assert actorloop.get(c.crash_once.remote(), timeout=10) == "done"
    assert _info(c).restarts == 1


def test_max_task_retries_minus_one_retries_until_restarts_run_out(tmp_path: Path) -> None:
    c = Counter.options(max_restarts=2, max_task_retries=-1).remote()
    with pytest.raises(ActorDiedError, match="exit code 9"):
        actorloop.get(c.crash_always.remote(), timeout=15)
    assert _info(c).restarts == 2


def test_calls_made_while_an_actor_restarts_wait_for_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    c = SlowStart.options(max_restarts=1).remote(str(gate))
    gate.touch()
    pid = actorloop.get(c.pid.remote(), timeout=10)
    c.crash.remote()
    assert wait_until(lambda: _info(c).state == "RESTARTING", timeout=5)  # and stays so until the gate opens
    refs = [c.pid.remote() for _ in range(5)]
    gate.touch()
    new_pids = actorloop.get(refs, timeout=10)
    assert len(set(new_pids)) == 1 and new_pids[0] != pid
    assert _info(c).state == "ALIVE"


def test_calls_in_flight_fail_at_once_when_the_actor_crashes() -> None:
    a = AsyncCounter.remote()
    slow = [a.sleep.remote(30) for _ in range(10)]
    assert wait_until(lambda: actorloop.get(a.sleepers.remote(), timeout=10) == 10, timeout=30)
    a.crash.remote()
    start = time.monotonic()
    for ref in slow:
        with pytest.raises(ActorDiedError, match="exit code 5"):
            actorloop.get(ref, timeout=10)
    assert time.monotonic() - start < 5


# -- kill --------------------------------------------------------------------------


def test_kill_returns_once_the_process_is_gone_and_later_calls_fail() -> None:
    c = Counter.remote()
    pid = actorloop.get(c.pid.remote())
    slow = c.sleep.remote(30)
    actorloop.kill(c)
    assert not alive(pid)
    with pytest.raises(ActorDiedError, match="killed"):
        actorloop.get(slow, timeout=5)
    with pytest.raises(ActorDiedError, match="killed"):
        actorloop.get(c.increment.remote(), timeout=5)
    assert _info(c).state == "DEAD"
    actorloop.kill(c)  # killing a dead actor is fine


def test_kill_without_no_restart_counts_as_a_crash() -> None:
    c = Counter.options(max_restarts=1).remote(5)
    assert actorloop.get(c.increment.remote()) == 6
    pid = actorloop.get(c.pid.remote())
    actorloop.kill(c, no_restart=False)
    assert not alive(pid)
    # Calls wait for the restarted actor, which starts afresh.
    assert actorloop.get(c.increment.remote(), timeout=10) == 6
    assert _info(c).restarts == 1
    # The restart budget is spent: the next kill is final.
    actorloop.kill(c, no_restart=False)
    with pytest.raises(ActorDiedError, match="killed"):
        actorloop.get(c.increment.remote(), timeout=10)


def test_kill_with_no_restart_ignores_max_restarts() -> None:
    c = Counter.options(max_restarts=-1).remote()
    actorloop.get(c.ready())
    actorloop.kill(c)
    with pytest.raises(ActorDiedError, match="killed"):
        actorloop.get(c.increment.remote(), timeout=10)
    assert _info(c).restarts == 0


def test_kill_an_actor_that_is_still_starting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = SlowStart.remote(str(tmp_path / "never"))
    actorloop.kill(c)
    with pytest.raises(ActorDiedError, match="killed"):
        actorloop.get(c.ready(), timeout=10)


def test_kill_from_several_threads_at_once() -> None:
    c = Counter.remote()
    pid = actorloop.get(c.pid.remote())
    threads = [threading.Thread(target=actorloop.kill, args=(c,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not alive(pid)


def test_kill_takes_an_actor_handle() -> None:
    with pytest.raises(TypeError, match="ActorHandle"):
        actorloop.kill("not a handle")  # type: ignore[arg-type]


# -- exit_actor -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Counter, AsyncCounter], ids=["sync", "async"])
def test_exit_actor_ends_the_actor_after_the_call_which_returns_none(cls) -> None:  # type: ignore[no-untyped-def]
    c = cls.options(max_restarts=3).remote()
    pid = actorloop.get(c.pid.remote())
    assert actorloop.get(c.leave.remote(), timeout=10) is None
    assert wait_gone([pid], timeout=5) == []
    with pytest.raises(ActorDiedError, match="exit_actor"):
        actorloop.get(c.increment.remote(), timeout=10)
    info = _info(c)
    # Leaving on purpose is not a crash: no restart.
    assert (info.state, info.restarts) == ("DEAD", 0)


def _slow_replies_from_threads(actor: Any) -> None:
    """In the actor: a reply made on a method thread takes 0.3 s to encode (a thread descheduled there)."""
    import actorloop._worker as worker_module

    encode_ok = worker_module.ActorWorker.encode_ok

    def slow_encode_ok(self: Any, call: Any, value: Any) -> Any:
        if threading.get_ident() != self._loop_thread:
            time.sleep(0.3)
        return encode_ok(self, call, value)

    worker_module.ActorWorker.encode_ok = slow_encode_ok  # type: ignore[method-assign]


def test_exit_actor_answers_its_call_even_when_the_reply_is_slow_to_make() -> None:
    c = Counter.remote()
    pid = actorloop.get(c.pid.remote(), timeout=10)
    actorloop.get(c.__ray_call__.remote(_slow_replies_from_threads), timeout=10)
    # The exit was requested before the reply was made: the actor shut down meanwhile, which
    # mutes replies, and the call raised ActorDiedError instead of returning None.
    assert actorloop.get(c.leave.remote(), timeout=20) is None
    assert wait_gone([pid], timeout=20) == []


def test_exit_actor_outside_an_actor_raises() -> None:
    with pytest.raises(RuntimeError, match="inside an actor"):
        actorloop.exit_actor()


# -- why it died ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "name"), [(signal.SIGKILL, "SIGKILL"), (signal.SIGTERM, "SIGTERM"), (signal.SIGSEGV, "SIGSEGV")]
)
def test_a_signal_is_named(sig: int, name: str) -> None:
    c = Counter.remote()
    with pytest.raises(ActorDiedError, match=f"signal {name}"):
        actorloop.get(c.signal_self.remote(sig), timeout=10)


def test_a_signal_from_outside_is_named_too() -> None:
    c = Counter.remote()
    pid = actorloop.get(c.pid.remote())
    ref = c.sleep.remote(30)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="signal SIGKILL") as info:
        actorloop.get(ref, timeout=10)
    assert "Counter" in str(info.value) and c._actor_id in str(info.value)
    with pytest.raises(ActorDiedError, match="signal SIGKILL"):
        actorloop.get(c.increment.remote(), timeout=10)


def test_a_constructor_error_carries_its_traceback() -> None:
    b = Broken.remote("no database")
    with pytest.raises(ActorDiedError) as ready_error:
        actorloop.get(b.ready(), timeout=10)
    text = str(ready_error.value)
    assert "ValueError: cannot start: no database" in text
    assert "Traceback" in text
    assert "in setup" in text and "in __init__" in text
    assert "_worker.py" not in text  # actorloop's own frames are left out
    with pytest.raises(ActorDiedError, match="cannot start: no database"):
        actorloop.get(b.hello.remote(), timeout=10)
    assert _info(b).state == "DEAD"


def test_a_constructor_error_is_not_restarted() -> None:
    b = Broken.options(max_restarts=-1).remote("twice")
    with pytest.raises(ActorDiedError, match="twice"):
        actorloop.get(b.hello.remote(), timeout=10)
    assert _info(b).restarts == 0


# -- list_actors ----------------------------------------------------------------------


def test_list_actors_records() -> None:
    c = Counter.options(name="listed", namespace="records").remote()
    pid = actorloop.get(c.pid.remote())
    info = _info(c)
    assert isinstance(info, ActorInfo)
    assert info.actor_id == c._actor_id
    assert info.class_name == "Counter"
    assert info.name == "listed"
    assert info.namespace == "records"
    assert info.state == "ALIVE"
    assert info.pid == pid
    assert info.detached is False
    assert info.restarts == 0
    anonymous = Counter.remote()
    actorloop.get(anonymous.ready())
    assert _info(anonymous).name is None
    detached = Counter.options(name="forever", lifetime="detached").remote()
    actorloop.get(detached.ready())
    assert _info(detached).detached is True
    actorloop.kill(c)
    actorloop.kill(detached)
    assert _info(c).state == "DEAD" and _info(c).pid is None


def test_list_actors_shows_starting_and_restarting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    c = SlowStart.options(max_restarts=1).remote(str(gate))
    assert _info(c).state == "STARTING"
    gate.touch()
    actorloop.get(c.ready(), timeout=10)
    assert _info(c).state == "ALIVE"
    c.crash.remote()
    assert wait_until(lambda: _info(c).state == "RESTARTING", timeout=5)
    assert _info(c).restarts == 1
    gate.touch()
    actorloop.get(c.ready(), timeout=10)
    assert _info(c).state == "ALIVE"
    actorloop.kill(c)


def test_a_dead_named_actor_frees_its_name() -> None:
    c = Counter.options(name="reused").remote()
    actorloop.kill(c)
    again = Counter.options(name="reused").remote(3)
    assert actorloop.get(again.increment.remote()) == 4
    actorloop.kill(again)


def test_a_dead_actor_leaves_no_socket_file_behind() -> None:
    node_dir = _client.get_runtime().node_dir  # type: ignore[union-attr]
    killed, left, crashed, restarted = (Counter.options(max_restarts=r).remote() for r in (0, 0, 0, 1))
    handles = [killed, left, crashed, restarted]
    actorloop.get([h.ready() for h in handles], timeout=10)
    paths = [os.path.join(node_dir, f"a-{h._actor_id}.sock") for h in handles]
    assert all(os.path.exists(p) for p in paths)
    actorloop.kill(killed)
    actorloop.get(left.leave.remote(), timeout=10)
    for h in (crashed, restarted):
        with pytest.raises(ActorDiedError):
            actorloop.get(h.crash_always.remote(), timeout=10)
    assert actorloop.get(restarted.increment.remote(), timeout=10) == 1
    assert wait_until(lambda: not any(os.path.exists(p) for p in paths[:3]), timeout=5)
    assert os.path.exists(paths[3])  # the restarted actor's new socket


@actorloop.remote
class FailsOnRestart:
    def __init__(self, marker: str) -> None:
        if os.path.exists(marker):
            raise RuntimeError("the second start fails")
        open(marker, "w").close()

    def crash(self) -> None:
        os._exit(1)

    def hello(self) -> str:
        return "hello"


def test_a_constructor_that_fails_on_restart_ends_the_actor(tmp_path: Path) -> None:
    a = FailsOnRestart.options(max_restarts=5).remote(str(tmp_path / "started"))
    assert actorloop.get(a.hello.remote(), timeout=10) == "hello"
    with pytest.raises(ActorDiedError):
        actorloop.get(a.crash.remote(), timeout=10)
    # Calls made meanwhile wait for the restart, which fails: they fail too, never hang.
    with pytest.raises(ActorDiedError, match="the second start fails"):
        actorloop.get(a.hello.remote(), timeout=10)
    info = _info(a)
    assert (info.state, info.restarts) == ("DEAD", 1)
