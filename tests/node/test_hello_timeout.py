"""Silent connections cannot lock anyone out (issue 10).

A peer of the node's or an actor's socket that has not presented the secret
within ``HELLO_TIMEOUT`` seconds is disconnected, and the node keeps
answering while 1,000 such connections are open, even when it was started
with the common soft descriptor limit of 1,024.
"""

from __future__ import annotations

import os
import pickle
import resource
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

import actorloop
from actorloop import _protocol as proto
from actorloop._fds import raise_fd_limit

from ._helpers import ACTORLOOP, wait_until
from .conftest import Daemon

SILENT = 1_000


@pytest.fixture(autouse=True)
def _room_for_many_sockets() -> Iterator[None]:
    """This process opens a thousand sockets: raise its own soft limit as a driver would."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_fd_limit()
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < SILENT + 200:
        pytest.skip(f"the hard descriptor limit ({before[1]}) is too low for {SILENT} sockets")
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _start_with(daemon: Daemon, soft_fd_limit: int | None = None, **env: str) -> None:
    """``actorloop start`` with extra environment, optionally under a low soft descriptor limit."""
    daemon.env.update(env)

    def lower_limit() -> None:
        if soft_fd_limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_fd_limit, hard))

    result = subprocess.run(
        [ACTORLOOP, "start"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=lower_limit,
    )
    assert result.returncode == 0, result.stderr


def _open_silent(path: str, n: int, first_bytes: bytes = b"") -> list[socket.socket]:
    socks = []
    deadline = time.monotonic() + 60
    try:
        for i in range(n):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(30)
            # A full listen backlog answers EAGAIN at once: wait for the server to accept more.
            while True:
                try:
                    sock.connect(path)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"the server stopped accepting after {i} connections") from None
                    time.sleep(0.002)
            if first_bytes:
                sock.sendall(first_bytes)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer has closed ``sock`` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_the_node_answers_while_a_thousand_silent_connections_are_open(daemon: Daemon) -> None:
    # Started under a soft limit of 1,024 (the common default): the node raises its own.
    # The hello timeout is long here, so the silent peers are all still open while status runs.
    _start_with(daemon, soft_fd_limit=1024, ACTORLOOP_HELLO_TIMEOUT="300")
    silent = _open_silent(os.path.join(daemon.dir, "node.sock"), SILENT + 100)
    try:
        for command in ("status", "list"):
            result = daemon.cli(command)
            assert result.returncode == 0, result.stderr
        assert "actors:  none" in daemon.cli("status").stdout
        assert not any(_closed_by_peer(s) for s in silent)
    finally:
        for sock in silent:
            sock.close()


def test_peers_without_a_hello_are_closed_after_the_timeout(daemon: Daemon) -> None:
    _start_with(daemon, ACTORLOOP_HELLO_TIMEOUT="1")
    node_sock = os.path.join(daemon.dir, "node.sock")
    secret = open(os.path.join(daemon.dir, "secret"), "rb").read()
    # Started before the silent ones: a peer that said hello in time stays connected.
    good = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    good.settimeout(30)
    good.connect(node_sock)
    good.sendall(proto.make_hello(secret) + proto.frame(pickle.dumps((1, "hello", ("ok", "cli", 0, False, "")))))
    assert proto.loads(proto.recv_frame_blocking(good))[:2] == (1, True)

    silent = _open_silent(node_sock, 300)
    partial = _open_silent(node_sock, 100, first_bytes=proto.MAGIC + secret[:10])
    try:
        everyone = silent + partial
        assert wait_until(lambda: all(_closed_by_peer(s) for s in everyone), timeout=60)
        # All of them were closed, so the timeout has passed for the good peer too: it is still served.
        good.settimeout(30)
        good.sendall(proto.frame(pickle.dumps((2, "status", ()))))
        req_id, ok, status = proto.loads(proto.recv_frame_blocking(good))
        assert (req_id, ok) == (2, True) and status["actors"] == {}
    finally:
        good.close()
        for sock in silent + partial:
            sock.close()


@actorloop.remote
class Echo:
    def ping(self, value: int) -> int:
        return value


def test_an_actor_closes_peers_without_a_hello_too(daemon: Daemon) -> None:
    _start_with(daemon, ACTORLOOP_HELLO_TIMEOUT="1")
    actorloop.init(address=daemon.dir)
    try:
        echo = Echo.remote()
        assert actorloop.get(echo.ping.remote(1), timeout=30) == 1
        path = os.path.join(daemon.dir, f"a-{echo._actor_id}.sock")
        silent = _open_silent(path, 200)
        try:
            assert wait_until(lambda: all(_closed_by_peer(s) for s in silent), timeout=60)
            # The caller's own connection said hello: it still works.
            assert actorloop.get(echo.ping.remote(2), timeout=30) == 2
        finally:
            for sock in silent:
                sock.close()
    finally:
        actorloop.shutdown()


def test_a_bad_hello_timeout_setting_is_refused_clearly() -> None:
    env = dict(os.environ, ACTORLOOP_HELLO_TIMEOUT="soon")
    result = subprocess.run(
        [ACTORLOOP, "status"], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode != 0
    assert "ACTORLOOP_HELLO_TIMEOUT must be a positive number of seconds, got 'soon'" in result.stderr
