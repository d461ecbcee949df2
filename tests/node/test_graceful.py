"""Graceful ends: `__ray_shutdown__` runs after running coroutines are cancelled, on each graceful path; not on kill."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import actorloop
from actorloop import ActorDiedError

from ._helpers import run_script, wait_gone, wait_until, write_script

#: This module's node cuts __ray_shutdown__ off after this long (the default is 5 s).
LIMIT = 1.0


@pytest.fixture(scope="module")
def node() -> Iterator[None]:
    """An embedded node with a short shutdown timeout ($ACTORLOOP_SHUTDOWN_TIMEOUT)."""
    actorloop.shutdown()
    os.environ["ACTORLOOP_SHUTDOWN_TIMEOUT"] = str(LIMIT)
    try:
        actorloop.init(address="local")
    finally:
        del os.environ["ACTORLOOP_SHUTDOWN_TIMEOUT"]
    yield
    actorloop.shutdown()


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


@actorloop.remote
class Closer:
    def __init__(self, path: str) -> None:
        self.path = path

    def pid(self) -> int:
        return os.getpid()

    def leave(self) -> None:
        actorloop.exit_actor()

    def __ray_shutdown__(self) -> None:
        with open(self.path, "a") as f:
            f.write("shutdown\n")


@actorloop.remote
class AsyncCloser:
    def __init__(self, path: str) -> None:
        self.path = path

    def _log(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line + "\n")

    async def pid(self) -> int:
        return os.getpid()

    async def wait_forever(self) -> None:
        self._log("started")
        try:
            await asyncio.sleep(300)
        except asyncio.CancelledError:
            self._log("cancelled")
            raise

    async def leave(self) -> None:
        actorloop.exit_actor()

    async def __ray_shutdown__(self) -> None:
        await asyncio.sleep(0)
        self._log("shutdown")


@actorloop.remote
class Hanger:
    def __init__(self, path: str) -> None:
        self.path = path

    def pid(self) -> int:
        return os.getpid()

    def __ray_shutdown__(self) -> None:
        with open(self.path, "a") as f:
            f.write("hanging\n")
        time.sleep(300)


@actorloop.remote
class LoopBlocker:
    """A __ray_shutdown__ that blocks the actor's loop itself: only the node's SIGKILL ends it."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def pid(self) -> int:
        return os.getpid()

    async def __ray_shutdown__(self) -> None:
        with open(self.path, "a") as f:
            f.write("hanging\n")
        time.sleep(300)


@actorloop.remote(concurrency_groups={"io": 2})
class Streamer:
    """Streams over HTTP until the client or the actor goes; the generators log how they ended."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _log(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line + "\n")

    async def pid(self) -> int:
        return os.getpid()

    async def leave(self) -> None:
        actorloop.exit_actor()

    @actorloop.http.get("/async")
    async def feed(self, request: Any) -> AsyncIterator[str]:
        try:
            for i in range(100_000):
                yield f"{i}\n"
                await asyncio.sleep(0.02)
        finally:
            self._log("async stream closed")

    @actorloop.http.get("/sync")
    @actorloop.method(concurrency_group="io")
    def ticks(self, request: Any) -> Iterator[str]:
        try:
            for i in range(100_000):
                yield f"{i}\n"
                time.sleep(0.02)
        finally:
            self._log("sync stream closed")

    @actorloop.http.get("/wait")
    async def wait(self, request: Any) -> str:
        self._log("handler started")
        try:
            await asyncio.sleep(300)
        finally:
            self._log("handler cancelled")
        return "never"

    async def __ray_shutdown__(self) -> None:
        self._log("shutdown")


def _open_stream(url: str, path: str) -> socket.socket:
    """A raw HTTP request whose response has started (its first body line came), left open."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or data.split(b"\r\n\r\n", 1)[1].count(b"\n") < 2:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return sock


@pytest.mark.parametrize("how", ["exit_actor", "last handle dropped"])
def test_open_http_streams_are_closed_before_shutdown(node, tmp_path: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = Streamer.remote(str(out))
    pid = actorloop.get(h.pid.remote(), timeout=20)
    url = str(h.http_url)
    clients = [_open_stream(url, "/async"), _open_stream(url, "/sync")]
    try:
        if how == "exit_actor":
            assert actorloop.get(h.leave.remote(), timeout=20) is None
        else:
            del h
        assert wait_gone([pid], timeout=30) == []
    finally:
        for sock in clients:
            sock.close()
    # Before the fix only "shutdown" was there: the generators never heard of the end.
    lines = _lines(out)
    assert sorted(lines[:2]) == ["async stream closed", "sync stream closed"], lines
    assert lines[2:] == ["shutdown"], lines


def test_a_running_http_handler_is_cancelled_before_shutdown(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = Streamer.remote(str(out))
    pid = actorloop.get(h.pid.remote(), timeout=20)
    parts = urlsplit(str(h.http_url))
    client = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        client.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: _lines(out) == ["handler started"], timeout=20), _lines(out)
        assert actorloop.get(h.leave.remote(), timeout=20) is None
        assert wait_gone([pid], timeout=30) == []
    finally:
        client.close()
    assert _lines(out) == ["handler started", "handler cancelled", "shutdown"]


def test_shutdown_runs_when_the_last_handle_is_dropped(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = Closer.remote(str(out))
    actor_id = h._actor_id
    pid = actorloop.get(h.pid.remote())
    del h
    assert wait_until(lambda: _lines(out) == ["shutdown"], timeout=20), _lines(out)
    assert wait_gone([pid]) == []
    info = [a for a in actorloop.list_actors() if a.actor_id == actor_id][0]
    assert info.state == "DEAD"
    assert info.death_cause == "its creator dropped every handle to it"


def test_shutdown_runs_after_exit_actor(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = Closer.remote(str(out))
    pid = actorloop.get(h.pid.remote())
    assert actorloop.get(h.leave.remote(), timeout=20) is None
    assert wait_gone([pid]) == []
    assert _lines(out) == ["shutdown"]
    with pytest.raises(ActorDiedError, match="exit_actor"):
        actorloop.get(h.pid.remote(), timeout=20)


def test_shutdown_does_not_run_on_kill(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = Closer.remote(str(out))
    pid = actorloop.get(h.pid.remote())
    actorloop.kill(h)
    assert wait_gone([pid]) == []
    assert _lines(out) == []


def test_running_coroutines_are_cancelled_before_shutdown(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = AsyncCloser.remote(str(out))
    pid = actorloop.get(h.pid.remote())
    waiting = h.wait_forever.remote()
    assert wait_until(lambda: _lines(out) == ["started"], timeout=20), _lines(out)
    assert actorloop.get(h.leave.remote(), timeout=20) is None
    assert wait_gone([pid]) == []
    assert _lines(out) == ["started", "cancelled", "shutdown"]
    # The stopped call reports the actor's end, not a cancellation it never asked for.
    with pytest.raises(ActorDiedError):
        actorloop.get(waiting, timeout=20)


@pytest.mark.parametrize("actor_class", [Hanger, LoopBlocker], ids=["blocks-a-thread", "blocks-the-loop"])
def test_a_hanging_shutdown_is_cut_off(node, tmp_path: Path, actor_class) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    h = actor_class.remote(str(out))
    pid = actorloop.get(h.pid.remote())
    del h
    assert wait_until(lambda: _lines(out) == ["hanging"], timeout=20), _lines(out)
    # Cut off by the actor itself after LIMIT, or killed by the node a moment later.
    assert wait_gone([pid], timeout=30) == []


OWNER = """
import os, sys
import actorloop

@actorloop.remote
class Closer:
    def __init__(self, path):
        self.path = path
    def pid(self):
        return os.getpid()
    def __ray_shutdown__(self):
        print("closing", flush=True)
        with open(self.path, "a") as f:
            f.write("shutdown\\n")

actorloop.init(address=sys.argv[1] if len(sys.argv) > 1 else None)
c = Closer.options(name="closer").remote(os.environ["OUT"])
print(actorloop.get(c.pid.remote()), flush=True)
if os.environ.get("SHUTDOWN"):
    actorloop.shutdown()
    print("after shutdown", flush=True)
"""


@pytest.mark.parametrize("explicit", [False, True], ids=["at-exit", "shutdown()"])
def test_shutdown_runs_when_the_owner_exits(tmp_path: Path, explicit: bool) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out))
    if explicit:
        env["SHUTDOWN"] = "1"
    result = run_script(write_script(tmp_path, "owner.py", OWNER), env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    pid = int(lines[0])
    assert wait_gone([pid]) == []
    assert _lines(out) == ["shutdown"]
    # The actor's last line reached its driver before the driver went.
    assert "closing" in result.stdout
    if explicit:
        assert result.stdout.strip().splitlines()[-1] == "after shutdown"


DETACHED = """
import os, sys
import actorloop

@actorloop.remote
class Closer:
    def __init__(self, path):
        self.path = path
    def pid(self):
        return os.getpid()
    def __ray_shutdown__(self):
        with open(self.path, "a") as f:
            f.write("shutdown\\n")

actorloop.init(address="auto", namespace="graceful")
c = Closer.options(name="closer", lifetime="detached").remote(os.environ["OUT"])
print(actorloop.get(c.pid.remote()), flush=True)
"""

LIST_CAUSES = """
import actorloop
actorloop.init(address="auto", namespace="graceful")
for a in actorloop.list_actors():
    print(a.name, a.state, a.death_cause)
"""

OWNER_OF_NAMED = """
import os
import actorloop

@actorloop.remote
class Plain:
    def pid(self):
        return os.getpid()

actorloop.init(address="auto", namespace="graceful")
p = Plain.options(name="owned").remote()
print(actorloop.get(p.pid.remote()), flush=True)
"""


def test_shutdown_runs_on_actorloop_stop(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    out = tmp_path / "out"
    env = dict(daemon.env, OUT=str(out))
    result = run_script(write_script(tmp_path, "detached.py", DETACHED), env)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    owned = run_script(write_script(tmp_path, "owned.py", OWNER_OF_NAMED), daemon.env)
    assert owned.returncode == 0, owned.stderr
    assert wait_gone([int(owned.stdout.strip())]) == []
    causes = run_script(write_script(tmp_path, "list.py", LIST_CAUSES), daemon.env)
    assert "owned DEAD its owner exited" in causes.stdout, causes
    assert _lines(out) == []
    stopped = daemon.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_gone([pid]) == []
    assert _lines(out) == ["shutdown"]


def test_a_bad_shutdown_timeout_fails_the_start_and_says_why(daemon) -> None:  # type: ignore[no-untyped-def]
    daemon.env["ACTORLOOP_SHUTDOWN_TIMEOUT"] = "soon"
    result = daemon.cli("start")
    assert result.returncode != 0
    assert "node.log" in result.stderr
    log = Path(daemon.dir, "node.log").read_text()
    assert "ACTORLOOP_SHUTDOWN_TIMEOUT='soon' is not a number of seconds" in log


OWNER_THAT_WAITS = """
import os, sys, time
import actorloop

@actorloop.remote
class Closer:
    def __init__(self, path):
        self.path = path
    def pid(self):
        return os.getpid()
    def __ray_shutdown__(self):
        with open(self.path, "a") as f:
            f.write("shutdown\\n")

actorloop.init(address="auto", namespace="graceful")
c = Closer.options(name="killed-owner").remote(os.environ["OUT"])
print(actorloop.get(c.pid.remote()), flush=True)
time.sleep(300)
"""


def test_shutdown_runs_when_the_owner_is_sigkilled(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    out = tmp_path / "out"
    script = write_script(tmp_path, "owner.py", OWNER_THAT_WAITS)
    driver = subprocess.Popen(
        [sys.executable, str(script)], env=dict(daemon.env, OUT=str(out)), stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None
        pid = int(driver.stdout.readline())
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    assert wait_gone([pid]) == []
    assert _lines(out) == ["shutdown"]
    causes = run_script(write_script(tmp_path, "list.py", LIST_CAUSES), daemon.env)
    assert "killed-owner DEAD its owner exited" in causes.stdout, causes


CALLER_DURING_STOP = """
import time
import actorloop

@actorloop.remote
class Slow:
    def wait(self):
        time.sleep(300)

actorloop.init(address="auto", namespace="graceful")
s = Slow.options(name="slow", lifetime="detached").remote()
ref = s.wait.remote()
print("calling", flush=True)
try:
    actorloop.get(ref, timeout=60)
except actorloop.ActorDiedError as exc:
    print(exc, flush=True)
"""


def test_a_call_cut_by_actorloop_stop_says_the_node_stopped(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    script = write_script(tmp_path, "caller.py", CALLER_DURING_STOP)
    driver = subprocess.Popen([sys.executable, str(script)], env=daemon.env, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout is not None
        assert driver.stdout.readline().strip() == "calling"
        assert wait_until(lambda: "ALIVE" in daemon.cli("list").stdout, timeout=20)
        stopped = daemon.cli("stop")
        assert stopped.returncode == 0, stopped.stderr
        rest = driver.stdout.read()
    finally:
        driver.kill()
        driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    assert "died: the node stopped" in rest, rest


CALLER_AFTER_STOP = """
import sys
import actorloop

@actorloop.remote
class Idle:
    def ping(self):
        return "pong"

actorloop.init(address="auto", namespace="graceful")
idle = Idle.options(name="idle", lifetime="detached").remote()  # no call yet: no connection to it
print("created", flush=True)
sys.stdin.readline()  # the node has stopped by now
try:
    actorloop.get(idle.ping.remote(), timeout=60)
except actorloop.ActorDiedError as exc:
    print(exc, flush=True)
"""


def test_a_call_made_after_actorloop_stop_says_the_node_stopped(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The first call asks the node about its actor only after the node closed: the node's parting notice answers."""
    daemon.start()
    script = write_script(tmp_path, "caller.py", CALLER_AFTER_STOP)
    driver = subprocess.Popen(
        [sys.executable, str(script)], env=daemon.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdin is not None and driver.stdout is not None
        assert driver.stdout.readline().strip() == "created"
        assert wait_until(lambda: "ALIVE" in daemon.cli("list").stdout, timeout=20)
        stopped = daemon.cli("stop")
        assert stopped.returncode == 0, stopped.stderr
        driver.stdin.write("go\n")
        driver.stdin.flush()
        rest = driver.stdout.read()
    finally:
        driver.kill()
        driver.wait()
        for pipe in (driver.stdin, driver.stdout):
            if pipe is not None:
                pipe.close()
    assert "Idle" in rest and "died: the node stopped" in rest, rest
