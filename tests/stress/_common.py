"""Shared knobs and helpers of the stress suite.

``ACTORLOOP_STRESS=long`` scales every count up (see docs/stress.md); the
default, bounded mode keeps the whole suite within a few minutes on 2 cores.
"""

from __future__ import annotations

import os
import socket
import time

import psutil

from actorloop import _protocol as proto

#: "bounded" (the default, what CI runs) or "long".
MODE = "long" if os.environ.get("ACTORLOOP_STRESS", "").strip().lower() == "long" else "bounded"
LONG = MODE == "long"


def scaled(bounded: int, long: int) -> int:
    """A count for this mode."""
    return long if LONG else bounded


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1 << 20)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def processes_serving(node_dir: str) -> list[psutil.Process]:
    """Every live process whose command line names ``node_dir``: node, zygote, actors (forks of the zygote)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if any(node_dir in part for part in cmd) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def kill_all(pids: list[int]) -> None:
    """Last resort of a test that failed: SIGKILL what it started."""
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def secret_of(node_dir: str) -> bytes:
    with open(os.path.join(node_dir, "secret"), "rb") as f:
        return f.read()


def raw_connect(path: str, timeout: float = 5.0) -> socket.socket:
    """A connected Unix socket with ``timeout``; a full listen backlog (EAGAIN) is waited out."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.005)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` (whatever it sends first is dropped)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 16):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return False


def frame(payload: bytes) -> bytes:
    return proto.frame(payload)


class Driver:
    """A ``_driver.py`` subprocess and the lines it reported (read on a thread, so nothing blocks)."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_driver.py")

    def __init__(self, mode: str, address: str, count: int, env: dict[str, str]) -> None:
        import subprocess
        import sys
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, self.SCRIPT, mode, address, str(count)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stderr = ""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.strip())
                self._changed.notify_all()
        with self._changed:
            self.lines.append("EOF")
            self._changed.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        """The first line starting with ``prefix``; AssertionError if it does not come."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                if "EOF" in self.lines:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        raise AssertionError(f"the driver never said {prefix!r}; it said {self.lines}; stderr: {self.stderr[-2000:]}")

    def node(self) -> tuple[int, str]:
        _, pid, node_dir = self.wait_for("NODE ").split(" ", 2)
        return int(pid), node_dir

    def actor_pids(self) -> list[int]:
        with self._changed:
            return [int(line.split()[1]) for line in self.lines if line.startswith("ACTOR ")]

    def kill(self) -> None:
        import signal

        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def finish(self, timeout: float = 10) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)
        return code


def subprocess_env(**extra: str) -> dict[str, str]:
    """Our environment without the embedded node's address (a subprocess starts or finds its own)."""
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    env.update(extra)
    return env


def cli(*args: str, node_dir: str, timeout: float = 30):  # type: ignore[no-untyped-def]
    """``python -m actorloop ARGS`` with ``ACTORLOOP_DIR=node_dir``."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "actorloop", *args],
        env=subprocess_env(ACTORLOOP_DIR=node_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_daemon(node_dir: str) -> int:
    """``actorloop start`` for ``node_dir``; returns the node's pid."""
    out = cli("start", node_dir=node_dir)
    assert out.returncode == 0, out.stderr
    with open(os.path.join(node_dir, "node.pid")) as f:
        return int(f.read())


def stop_daemon(node_dir: str, node_pid: int) -> None:
    """``actorloop stop`` if the node still runs; SIGKILL whatever is left of it either way."""
    if alive(node_pid):
        cli("stop", node_dir=node_dir)
    left = [p.pid for p in processes_serving(node_dir)]
    kill_all(left)
    wait_gone(left, 5)


def node_request(node_dir: str, op: str, *args: object) -> object:
    """One request to the node at ``node_dir`` on a connection of its own (as the CLI does)."""
    import uuid

    from actorloop._connection import SyncNodeChannel

    channel = SyncNodeChannel(
        os.path.join(node_dir, "node.sock"),
        secret_of(node_dir),
        ("hello", uuid.uuid4().hex, "cli", os.getpid(), False, ""),
    )
    try:
        return channel.request(op, *args)
    finally:
        channel.close()


def once_back(make_ref, timeout: float = 20):  # type: ignore[no-untyped-def]
    """``get(make_ref())`` once a restarted actor serves again.

    A call sent after a crash but before this process's connection saw the
    socket drop was in flight on the dead process: as the spec says for
    calls in flight without ``max_task_retries``, it fails with
    ActorDiedError ("restarted while this call ran").  The next call waits
    for the restart.
    """
    import actorloop
    from actorloop import ActorDiedError

    for _ in range(3):
        try:
            return actorloop.get(make_ref(), timeout=timeout)
        except ActorDiedError as exc:
            if "restarted while this call ran" not in str(exc):
                raise
    raise AssertionError("the actor never served again")
