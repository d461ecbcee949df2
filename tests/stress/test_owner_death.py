"""Owner death: drivers SIGKILLed at random moments leave no process behind.

Each driver runs in a subprocess, reports its node and actors, and is killed
while it creates actors or while it calls them.  Whatever served it (its
embedded node, that node's zygote, every actor) must be gone within seconds;
with a shared node (``actorloop start``), the node lives on and only the
driver's actors end.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from ._common import (
    Driver,
    alive,
    node_request,
    processes_serving,
    scaled,
    start_daemon,
    stop_daemon,
    subprocess_env,
    wait_gone,
)

pytestmark = pytest.mark.usefixtures("node")

DRIVERS = scaled(12, 60)
SEED = int(os.environ.get("ACTORLOOP_STRESS_SEED", "0")) or random.randrange(1 << 30)
#: When the driver dies: (line to wait for, mode, most seconds of random delay after it).
MOMENTS = [
    ("NODE ", "calls", 0.3),  # while creating actors (some registered, some forked, none answered)
    ("CREATING", "slow-create", 0.6),  # between actors: some ready, some starting
    ("CALLING", "calls", 0.5),  # sync calls in flight
    ("CALLING", "async", 0.5),  # async calls in flight
]


@pytest.fixture
def rng(report) -> random.Random:  # type: ignore[no-untyped-def]
    report("random seed (ACTORLOOP_STRESS_SEED)", SEED)
    return random.Random(SEED)


def test_embedded_drivers_killed_at_random_moments(rng, report) -> None:  # type: ignore[no-untyped-def]
    killed = 0
    checked: list[int] = []
    for i in range(DRIVERS):
        after, mode, most = MOMENTS[i % len(MOMENTS)]
        driver = Driver(mode, "", rng.randrange(2, 6), subprocess_env())
        try:
            node_pid, node_dir = driver.node()
            driver.wait_for(after)
            time.sleep(rng.uniform(0, most))
            serving = [p.pid for p in processes_serving(node_dir)]  # the node, its zygote, actors so far
            driver.kill()
            killed += 1
            pids = sorted({node_pid, *serving, *driver.actor_pids()})
            left = wait_gone(pids, 5)
            assert not left, f"driver killed after {after!r} ({mode}): pids {left} outlived it by 5 s"
            late = [p.pid for p in processes_serving(node_dir)]
            assert not late, f"processes started after the snapshot outlived the driver: {late}"
            deadline = time.monotonic() + 5
            while os.path.exists(node_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not os.path.exists(node_dir), "the embedded node's directory outlived it"
            checked.extend(pids)
        finally:
            if driver.proc.poll() is None:
                driver.kill()
    report("embedded drivers SIGKILLed at random moments, nothing left behind", killed)
    report("processes checked gone after their driver's death", len(checked))


@pytest.fixture(scope="module")
def daemon():  # type: ignore[no-untyped-def]
    """A node started with `actorloop start` under a private ACTORLOOP_DIR."""
    import tempfile

    node_dir = tempfile.mkdtemp(prefix="d", dir=tempfile.gettempdir())
    node_pid = start_daemon(node_dir)
    try:
        yield node_dir, node_pid
    finally:
        stop_daemon(node_dir, node_pid)


def test_drivers_of_a_shared_node_killed_at_random_moments(daemon, rng, report) -> None:  # type: ignore[no-untyped-def]
    node_dir, node_pid = daemon
    killed = 0
    for i in range(DRIVERS):
        after, mode, most = MOMENTS[i % len(MOMENTS)]
        infrastructure = {p.pid for p in processes_serving(node_dir)}  # the node and its zygote(s)
        driver = Driver(mode, "auto", rng.randrange(2, 6), subprocess_env(ACTORLOOP_DIR=node_dir))
        try:
            assert driver.node() == (0, node_dir)
            driver.wait_for(after)
            time.sleep(rng.uniform(0, most))
            before = {p.pid for p in processes_serving(node_dir)}
            driver.kill()
            killed += 1
            actors = (before | set(driver.actor_pids())) - infrastructure
            left = wait_gone(sorted(actors), 5)
            assert not left, f"actors {left} outlived their driver (killed after {after!r}, {mode}) by 5 s"
        finally:
            if driver.proc.poll() is None:
                driver.kill()
        assert alive(node_pid), "the shared node died with a driver"
    # The node forgot nobody: every actor of the dead drivers is DEAD, none ALIVE or STARTING.
    deadline = time.monotonic() + 5
    while True:
        states = _states(node_dir)
        if not states.keys() - {"DEAD"} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not states.keys() - {"DEAD"}, states
    report("drivers of a shared node SIGKILLed, their actors all ended, node alive", killed)


def _states(node_dir: str) -> dict[str, int]:
    states: dict[str, int] = {}
    for info in node_request(node_dir, "list"):  # type: ignore[attr-defined]
        states[info.state] = states.get(info.state, 0) + 1
    return states
