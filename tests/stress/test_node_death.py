"""Node death: kill the node under a driver that is calling its actors.

The driver must get a clear error (ActorDiedError or ConnectionError) within
seconds, never hang; every actor and the zygote(s) must end; and
``actorloop start`` must work again afterwards in the same directory.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time

import pytest

from ._common import (
    Driver,
    cli,
    kill_all,
    node_request,
    processes_serving,
    scaled,
    start_daemon,
    stop_daemon,
    subprocess_env,
    wait_gone,
)

pytestmark = pytest.mark.usefixtures("node")

ROUNDS = scaled(2, 5)
CLEAR_ERRORS = ("ActorDiedError", "ConnectionError")


def _expect_clear_error(driver: Driver, timeout: float = 15, stopping: bool = False) -> str:
    line = driver.wait_for("ERROR ", timeout)
    assert line.split()[1] in CLEAR_ERRORS, f"the driver got an unclear error: {line}"
    create = driver.wait_for("CREATE ", timeout)
    # A node that is being stopped (not killed) may still answer, and says so.
    polite = stopping and create.startswith("CREATE RuntimeError the node is stopping")
    ok = create.split()[1] in CLEAR_ERRORS or polite
    assert ok, f"creating an actor on a dead node: {create}"
    assert driver.finish(timeout=10) == 3
    return f"{line[len('ERROR ') :]}; then {create[len('CREATE ') :]}"


@pytest.mark.parametrize("mode", ["calls", "async"])
def test_daemon_killed_under_load_then_start_again(mode, report) -> None:  # type: ignore[no-untyped-def]
    node_dir = tempfile.mkdtemp(prefix="d", dir=tempfile.gettempdir())
    node_pid = start_daemon(node_dir)
    seen: list[int] = []
    try:
        for round_no in range(ROUNDS):
            drivers = [Driver(mode, "auto", 3, subprocess_env(ACTORLOOP_DIR=node_dir)) for _ in range(2)]
            for driver in drivers:
                driver.wait_for("CALLED")  # calls flow: the node dies under them
            serving = [p.pid for p in processes_serving(node_dir)]
            seen.extend(serving)
            t0 = time.monotonic()
            os.kill(node_pid, signal.SIGKILL)
            lines = [_expect_clear_error(driver) for driver in drivers]
            took = time.monotonic() - t0
            left = wait_gone(serving, 5)
            assert not left, f"processes {left} outlived their node by 5 s"
            if round_no == 0:
                report(f"{mode}: what the drivers got", " | ".join(line[:200] for line in lines))
            report(f"{mode}: seconds from node SIGKILL to every driver's error", round(took, 2))
            # The same directory serves again: a stale socket and pid file must not get in the way.
            node_pid = start_daemon(node_dir)
            status = cli("status", node_dir=node_dir)
            assert status.returncode == 0 and str(node_pid) in status.stdout, status
            driver = Driver(mode, "auto", 2, subprocess_env(ACTORLOOP_DIR=node_dir))
            driver.wait_for("CALLING")
            driver.kill()
    finally:
        stop_daemon(node_dir, node_pid)
        kill_all(seen)
    assert not processes_serving(node_dir)


def test_embedded_node_killed_under_its_driver(report) -> None:  # type: ignore[no-untyped-def]
    for mode in ("calls", "async"):
        driver = Driver(mode, "", 4, subprocess_env())
        try:
            node_pid, node_dir = driver.node()
            driver.wait_for("CALLING")
            serving = [p.pid for p in processes_serving(node_dir)]
            os.kill(node_pid, signal.SIGKILL)
            line = _expect_clear_error(driver)
            left = wait_gone(serving, 5)
            assert not left, f"processes {left} outlived their embedded node by 5 s"
            report(f"{mode}: error of a driver whose embedded node was SIGKILLed", line[:250])
        finally:
            if driver.proc.poll() is None:
                driver.kill()


def test_stop_with_callers_attached(report) -> None:  # type: ignore[no-untyped-def]
    """`actorloop stop` under load is the polite node death: same promises."""
    node_dir = tempfile.mkdtemp(prefix="d", dir=tempfile.gettempdir())
    node_pid = start_daemon(node_dir)
    try:
        driver = Driver("calls", "auto", 3, subprocess_env(ACTORLOOP_DIR=node_dir))
        driver.wait_for("CALLING")
        serving = [p.pid for p in processes_serving(node_dir)]
        assert cli("stop", node_dir=node_dir).returncode == 0
        line = _expect_clear_error(driver, stopping=True)
        assert not wait_gone(serving, 5)
        report("error of a driver whose node was stopped", line[:250])
        node_pid = start_daemon(node_dir)
        assert node_request(node_dir, "list") == []
    finally:
        stop_daemon(node_dir, node_pid)
