"""A spawn that fails rolls back: the caller gets ActorDiedError with the reason, the name is free again.

Each test runs its own node (``actorloop start``): the failures are provoked by
lowering the open-file limit of its node or zygote (``prlimit``), or with the
zygote's test-only hook ``ACTORLOOP_TEST_FAIL_FORK`` (fork failures cannot be
provoked with limits when the tests run as root).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

import actorloop
from actorloop import ActorDiedError

from ._helpers import env_for
from .conftest import Daemon


@actorloop.remote
class Pinger:
    def ping(self) -> int:
        return os.getpid()


@pytest.fixture
def connected(daemon: Daemon) -> Iterator[Daemon]:
    """This process connected to the test's own node, and disconnected afterwards."""
    actorloop.shutdown()
    yield daemon
    actorloop.shutdown()


def _start(daemon: Daemon, **env: str) -> psutil.Process:
    if env:
        daemon.env = env_for(daemon.dir, **env)
    node_pid = daemon.start()
    actorloop.init(address=daemon.dir)
    actorloop.list_actors()  # opens the request channel before any limit is lowered
    return psutil.Process(node_pid)


class _FdLimit:
    """Lower a process's soft open-file limit to what it has open now; restore it on exit."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.saved = proc.rlimit(psutil.RLIMIT_NOFILE)

    def __enter__(self) -> None:
        self.proc.rlimit(psutil.RLIMIT_NOFILE, (self.proc.num_fds(), self.saved[1]))

    def __exit__(self, *exc: object) -> None:
        self.proc.rlimit(psutil.RLIMIT_NOFILE, self.saved)


def _names() -> list[tuple[str | None, str]]:
    return [(a.name, a.state) for a in actorloop.list_actors()]


def test_a_spawn_that_fails_in_the_node_raises_at_once_and_frees_the_name(connected: Daemon) -> None:
    node = _start(connected)
    with _FdLimit(node):
        with pytest.raises(ActorDiedError, match=r"could not start its process: .*Too many open files"):
            Pinger.options(name="p").remote()
    assert _names() == []  # no ghost left STARTING
    h = Pinger.options(name="p").remote()
    assert actorloop.get(h.ping.remote(), timeout=20) > 0


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _zygote_of(node: psutil.Process) -> psutil.Process:
    """The node's one lasting child (the sweep of dead runs is a child too, for the moment it runs)."""
    deadline = time.monotonic() + 20
    while True:
        children = [c for c in node.children() if _running(c)]
        if len(children) == 1 or time.monotonic() > deadline:
            (zygote,) = children
            return zygote
        time.sleep(0.01)


def test_a_spawn_that_fails_in_the_zygote_is_reported_to_the_caller(connected: Daemon) -> None:
    node = _start(connected)
    zygote = _zygote_of(node)
    with _FdLimit(zygote):
        h = Pinger.options(name="p").remote()
        with pytest.raises(ActorDiedError, match=r"could not start its process: .*open-file limit"):
            actorloop.get(h.ping.remote(), timeout=20)
    assert _names() == [("p", "DEAD")]
    again = Pinger.options(name="p").remote()
    assert actorloop.get(again.ping.remote(), timeout=20) > 0
    assert node.is_running()  # the zygote reported the failure instead of crashing (and the node with it)


def test_a_failed_fork_is_reported_and_frees_the_name(connected: Daemon) -> None:
    _start(connected, ACTORLOOP_TEST_FAIL_FORK="1")
    h = Pinger.options(name="p").remote()
    with pytest.raises(ActorDiedError, match=r"could not start its process: .*fork failed"):
        actorloop.get(h.ready(), timeout=20)
    (info,) = actorloop.list_actors()
    assert info.state == "DEAD"
    assert info.death_cause is not None and "fork failed" in info.death_cause
    again = Pinger.options(name="p").remote()
    assert actorloop.get(again.ping.remote(), timeout=20) > 0


def test_a_failed_fork_counts_as_a_restart(connected: Daemon) -> None:
    _start(connected, ACTORLOOP_TEST_FAIL_FORK="2")
    h = Pinger.options(max_restarts=2).remote()
    assert actorloop.get(h.ping.remote(), timeout=30) > 0
    (info,) = actorloop.list_actors()
    assert (info.state, info.restarts) == ("ALIVE", 2)
    assert info.death_cause is not None and "fork failed" in info.death_cause
