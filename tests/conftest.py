"""Session-wide rules: tests never touch the user's node, and leave no process behind."""

from __future__ import annotations

import os
import tempfile
import time

import psutil
import pytest

_SESSION_DIR = tempfile.mkdtemp(prefix="actorloop-tests-")
# Tests never reach the node that `actorloop start` may run for this user.
os.environ["ACTORLOOP_DIR"] = os.path.join(_SESSION_DIR, "daemon")
os.environ.pop("ACTORLOOP_ADDRESS", None)
# Embedded nodes (ours and those of driver subprocesses) make their directories
# here, so the leftover check below sees exactly the processes of this run.
os.environ["TMPDIR"] = _SESSION_DIR
tempfile.tempdir = _SESSION_DIR


def _actorloop_processes() -> dict[int, str]:
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "actorloop._node" in cmd and _SESSION_DIR in cmd:
            found[proc.info["pid"]] = cmd
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any actorloop process started during it is still running."""
    import actorloop

    actorloop.shutdown()
    deadline = time.monotonic() + 10
    left: dict[int, str] = {}
    while time.monotonic() < deadline:
        left = _actorloop_processes()
        if not left:
            break
        time.sleep(0.1)
    if left:
        lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in left.items())
        print(f"\nERROR: actorloop processes outlived the test session:\n{lines}")
        for pid in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    import shutil

    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def node():
    """One embedded node per test module."""
    import actorloop

    actorloop.shutdown()
    actorloop.init(address="local")
    yield
    actorloop.shutdown()


_registered: set[str] = set()


def pytest_itemcollected(item: pytest.Item) -> None:
    """Ship test modules' actor classes by value, so actors need not import pytest and the test module."""
    import sys

    import cloudpickle

    module = getattr(item, "module", None)
    if module is not None and module.__name__ not in _registered and module.__name__ in sys.modules:
        _registered.add(module.__name__)
        cloudpickle.register_pickle_by_value(module)
