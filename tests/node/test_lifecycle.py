"""How actors end: crash loops back off, sys.exit ends the actor, an actor's children end with it, forks inside."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

import actorloop
from actorloop import ActorDiedError

from ._helpers import alive, run_script, wait_gone, wait_until, write_script


def _info(actor_id: str) -> actorloop.ActorInfo:
    (info,) = [a for a in actorloop.list_actors() if a.actor_id == actor_id]
    return info


# -- crash loops back off ---------------------------------------------------------


@actorloop.remote(max_restarts=-1)
class CrashInInit:
    def __init__(self) -> None:
        os._exit(7)

    def ping(self) -> None:
        return None


def test_a_crash_loop_backs_off_and_says_why(node) -> None:  # type: ignore[no-untyped-def]
    h = CrashInInit.remote()
    actor_id = h._actor_id
    try:
        assert wait_until(lambda: _info(actor_id).restarts >= 1, timeout=20)
        first = _info(actor_id).restarts
        # Watch it for two seconds: without back-off it restarts about a hundred times a second.
        window_end = time.monotonic() + 2.0
        while time.monotonic() < window_end:
            time.sleep(0.1)
        info = _info(actor_id)
        assert info.restarts - first < 15, info
        assert info.state in ("STARTING", "RESTARTING")
        assert info.death_cause == "its process exited with exit code 7"
    finally:
        actorloop.kill(h)
    info = _info(actor_id)
    assert info.state == "DEAD"
    assert info.death_cause == "it was killed with actorloop.kill()"


def test_actor_info_keeps_its_positional_fields_first() -> None:
    info = actorloop.ActorInfo("id", "C", None, "ns", "ALIVE", 1, False, 0)
    assert info.death_cause is None
    assert info.restarts == 0


CRASH_LOOP_DETACHED = """
import os
import actorloop

@actorloop.remote(max_restarts=-1)
class Looper:
    def __init__(self):
        os._exit(7)

actorloop.init(address="auto", namespace="loops")
Looper.options(name="looper", lifetime="detached").remote()
"""


def test_actorloop_list_shows_why_an_actor_restarts(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    result = run_script(write_script(tmp_path, "loop.py", CRASH_LOOP_DETACHED), daemon.env)
    assert result.returncode == 0, result.stderr

    def listed() -> str:
        out = daemon.cli("list")
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert wait_until(lambda: "exit code 7" in listed(), timeout=15), listed()
    header, row = listed().strip().splitlines()
    assert header.split()[-1] == "DEATH_CAUSE"
    assert row.endswith("its process exited with exit code 7")
    assert "looper" in row


# -- sys.exit() ends the actor, as in Ray ---------------------------------------------


@actorloop.remote
class Exiter:
    def __init__(self) -> None:
        self.calls = 0

    def ping(self) -> int:
        self.calls += 1
        return os.getpid()

    def exit_with(self, code: object) -> None:
        sys.exit(code)


@actorloop.remote
class AsyncExiter:
    async def ping(self) -> int:
        return os.getpid()

    async def exit_with(self, code: object) -> None:
        await asyncio.sleep(0)
        sys.exit(code)


@actorloop.remote
class ExitInInit:
    def __init__(self) -> None:
        raise SystemExit(4)

    def ping(self) -> None:
        return None


def test_sys_exit_in_a_method_ends_the_actor(node) -> None:  # type: ignore[no-untyped-def]
    h = Exiter.remote()
    pid = actorloop.get(h.ping.remote())
    exiting = h.exit_with.remote(3)
    queued = h.ping.remote()  # queued behind the exit: it never runs
    with pytest.raises(ActorDiedError, match=r"exit_with\(\) called sys\.exit\(3\).*exit code 3"):
        actorloop.get(exiting, timeout=20)
    with pytest.raises(ActorDiedError):
        actorloop.get(queued, timeout=20)
    assert wait_gone([pid]) == []
    with pytest.raises(ActorDiedError, match=r"sys\.exit\(3\)"):
        actorloop.get(h.ping.remote(), timeout=20)
    assert _info(h._actor_id).state == "DEAD"


def test_sys_exit_in_an_async_method_ends_the_actor(node) -> None:  # type: ignore[no-untyped-def]
    h = AsyncExiter.remote()
    pid = actorloop.get(h.ping.remote())
    with pytest.raises(ActorDiedError, match=r"sys\.exit\(None\).*exit code 0"):
        actorloop.get(h.exit_with.remote(None), timeout=20)
    assert wait_gone([pid]) == []
    assert _info(h._actor_id).state == "DEAD"


def test_sys_exit_is_a_restartable_exit(node) -> None:  # type: ignore[no-untyped-def]
    h = Exiter.options(max_restarts=1).remote()
    first = actorloop.get(h.ping.remote())
    with pytest.raises(ActorDiedError):
        actorloop.get(h.exit_with.remote("bye"), timeout=20)
    second = actorloop.get(h.ping.remote(), timeout=20)
    assert second != first
    info = _info(h._actor_id)
    assert info.restarts == 1
    assert info.death_cause is not None and "sys.exit('bye')" in info.death_cause
    assert "exit code 1" in info.death_cause  # a message, as Python's own exit gives
    with pytest.raises(ActorDiedError):
        actorloop.get(h.exit_with.remote(2), timeout=20)
    with pytest.raises(ActorDiedError, match=r"sys\.exit\(2\)"):
        actorloop.get(h.ping.remote(), timeout=20)


def test_system_exit_in_init_is_a_failed_constructor(node) -> None:  # type: ignore[no-untyped-def]
    h = ExitInInit.remote()
    with pytest.raises(ActorDiedError, match=r"constructor of ExitInInit raised(.|\n)*SystemExit: 4"):
        actorloop.get(h.ready(), timeout=20)


# -- a process forked in a method never runs the actor --------------------------------------


@actorloop.remote
class Forker:
    def fork_and_exit(self, code: int) -> int:
        pid = os.fork()
        if pid == 0:
            sys.exit(code)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def fork_and_return(self) -> int:
        pid = os.fork()
        if pid == 0:
            return -1  # the child returns too: it must end here, not answer the call
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def ping(self) -> str:
        return "pong"


@actorloop.remote
class AsyncForker:
    async def fork_and_exit(self, code: int) -> int:
        pid = os.fork()
        if pid == 0:
            sys.exit(code)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    async def ping(self) -> str:
        return "pong"


def test_a_process_forked_in_a_method_ends_with_its_exit_code(node) -> None:  # type: ignore[no-untyped-def]
    h = Forker.remote()
    assert actorloop.get(h.fork_and_exit.remote(3), timeout=20) == 3
    assert actorloop.get(h.fork_and_return.remote(), timeout=20) == 0
    assert actorloop.get([h.ping.remote() for _ in range(5)], timeout=20) == ["pong"] * 5
    assert actorloop.get(h.fork_and_exit.remote(5), timeout=20) == 5


def test_a_process_forked_in_an_async_method_ends_with_its_exit_code(node) -> None:  # type: ignore[no-untyped-def]
    h = AsyncForker.remote()
    assert actorloop.get(h.fork_and_exit.remote(4), timeout=20) == 4
    assert actorloop.get([h.ping.remote() for _ in range(5)], timeout=20) == ["pong"] * 5


# -- an actor's child processes end with it ------------------------------------------------


@actorloop.remote
class Parent:
    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start_child(self) -> int:
        child = subprocess.Popen(["sleep", "300"])
        self.children.append(child)
        return child.pid

    def crash(self) -> None:
        os._exit(1)

    def leave(self) -> None:
        actorloop.exit_actor()

    def exit_with(self, code: int) -> None:
        sys.exit(code)

    def pid(self) -> int:
        return os.getpid()


def _gone(pid: int) -> bool:
    return not alive(pid)


@pytest.mark.parametrize("how", ["kill", "crash", "exit_actor", "sys.exit", "release"])
def test_an_actors_children_end_with_it(node, how: str) -> None:  # type: ignore[no-untyped-def]
    h = Parent.remote()
    child = actorloop.get(h.start_child.remote())
    pid = actorloop.get(h.pid.remote())
    assert alive(child)
    if how == "kill":
        actorloop.kill(h)
    elif how == "crash":
        with pytest.raises(ActorDiedError):
            actorloop.get(h.crash.remote(), timeout=20)
    elif how == "exit_actor":
        actorloop.get(h.leave.remote(), timeout=20)
    elif how == "sys.exit":
        with pytest.raises(ActorDiedError):
            actorloop.get(h.exit_with.remote(0), timeout=20)
    else:
        del h
    assert wait_gone([pid], timeout=20) == []
    assert wait_until(lambda: _gone(child), timeout=20), f"the child {child} of actor {pid} outlived it"


DETACHED_PARENT = """
import subprocess
import actorloop

@actorloop.remote
class Parent:
    def start_child(self):
        self.child = subprocess.Popen(["sleep", "300"])
        return self.child.pid

actorloop.init(address="auto", namespace="kids")
p = Parent.options(name="parent", lifetime="detached").remote()
print(actorloop.get(p.start_child.remote()))
"""


def test_an_actors_children_end_with_the_node(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    result = run_script(write_script(tmp_path, "parent.py", DETACHED_PARENT), daemon.env)
    assert result.returncode == 0, result.stderr
    child = int(result.stdout.strip())
    assert alive(child)
    stopped = daemon.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_until(lambda: _gone(child), timeout=20), f"the child {child} outlived `actorloop stop`"


def test_an_actors_children_end_when_the_node_is_killed(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node_pid = daemon.start()
    result = run_script(write_script(tmp_path, "parent.py", DETACHED_PARENT), daemon.env)
    assert result.returncode == 0, result.stderr
    child = int(result.stdout.strip())
    os.kill(node_pid, signal.SIGKILL)
    # The zygote sees the node go and takes every actor's process group with it.
    assert wait_until(lambda: _gone(child), timeout=20), f"the child {child} outlived its SIGKILLed node"


OWNED_PARENT = """
import subprocess, sys
import actorloop

@actorloop.remote
class Parent:
    def start_child(self):
        self.child = subprocess.Popen(["sleep", "300"])
        return self.child.pid

p = Parent.options(name="parent").remote()
print(actorloop.get(p.start_child.remote()), flush=True)
"""


def test_an_actors_children_end_when_its_owner_exits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_script(write_script(tmp_path, "owned.py", OWNED_PARENT), dict(os.environ))
    assert result.returncode == 0, result.stderr
    child = int(result.stdout.strip())
    assert wait_until(lambda: _gone(child), timeout=20), f"the child {child} outlived its actor's owner"


def test_the_restart_back_off_doubles_up_to_its_cap_and_starts_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The schedule itself, on a node object that serves nothing: no process, no timing."""
    import socket

    from actorloop._node import _server

    loop = asyncio.new_event_loop()
    socks = [socket.socketpair() for _ in range(2)]
    try:
        node = _server.Node(loop, str(tmp_path), b"s" * 32, socks[0][0], socks[1][0], embedded_parent=None)
        actor = _server._Actor("a1", {}, "owner", "C", None, "ns", False, max_restarts=-1)
        node.actors["a1"] = actor
        delays = []
        for _ in range(10):
            actor.alive_since = time.monotonic()  # it came up, and died at once
            node._actor_exited(actor, 7 << 8)  # exit code 7
            timer = actor.restart_timer
            assert timer is not None
            delays.append(round(timer.when() - loop.time(), 1))
            timer.cancel()
            actor.restart_timer = None
        assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
        assert actor.restarts == 10 and actor.state == "RESTARTING"
        assert actor.death_cause == "its process exited with exit code 7"
        # An actor that stayed alive long enough starts over.
        actor.alive_since = time.monotonic() - _server.RESTART_BACKOFF_RESET
        node._actor_exited(actor, 7 << 8)
        assert actor.restart_timer is not None
        assert round(actor.restart_timer.when() - loop.time(), 1) == 0.0
        actor.restart_timer.cancel()
    finally:
        loop.close()
        for a, b in socks:
            a.close()
            b.close()
