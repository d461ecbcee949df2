"""Shared helpers of the node tests: short directories, the CLI, finding a node's processes.

The waiting helpers (``wait_until``, ``async_wait_until``, ``wait_gone``,
``settle_handle_drops``) are used by the other test modules too (``from node._helpers import ...``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

import actorloop

PY = sys.executable
#: The console script installed beside this interpreter.
ACTORLOOP = shutil.which("actorloop", path=os.path.dirname(PY)) or "actorloop"


def short_dir(prefix: str = "n") -> str:
    """A fresh directory under the session's temp dir, short enough for Unix socket paths (108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir=tempfile.gettempdir())


def env_for(node_dir: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a subprocess: our own, without the embedded node's address, with ``ACTORLOOP_DIR``."""
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    if node_dir is not None:
        env["ACTORLOOP_DIR"] = node_dir
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], module: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``actorloop ARGS`` (or ``python -m actorloop ARGS``) and capture its output."""
    cmd = [PY, "-m", "actorloop", *args] if module else [ACTORLOOP, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def write_script(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def run_script(path: Path, env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, str(path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(path.parent),
        stdin=subprocess.DEVNULL,
    )


def processes_of(node_dir: str) -> list[psutil.Process]:
    """The node, zygote and actor processes serving ``node_dir`` (actors are forks: same cmdline)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "actorloop._node" in cmd and node_dir in cmd:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                pass
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pids: Iterable[int], timeout: float = 10) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout``."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def wait_until(predicate, timeout: float = 10, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` passed; return its last answer.

    The way tests wait for something they cannot be told about directly: never a bare sleep.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def async_wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 10, interval: float = 0.02
) -> bool:
    """:func:`wait_until` for asyncio code: ``predicate`` is awaited (e.g. it awaits an actor call)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return bool(await predicate())


def settle_handle_drops(witness_class: Any) -> None:
    """Return once the node has acted on every actor handle this process dropped so far.

    A test that checks an actor *survives* losing its handles has no event to
    wait for. Instead it drops a fresh anonymous witness actor (``witness_class``
    needs a ``pid()`` method) after its own handles and waits until the witness
    is gone: handle drops are counted on the runtime's home loop in the order
    they happen, and the releases they cause reach the node in that order over
    one connection, so any release of an actor dropped earlier has been acted
    on (SIGKILLed) by then too.
    """
    witness = witness_class.remote()
    pid = actorloop.get(witness.pid.remote(), timeout=30)
    del witness
    gc.collect()
    assert wait_gone([pid], timeout=10) == [], "the witness actor outlived its dropped handle"


def kill_everything_of(node_dir: str) -> None:
    """Last resort of a fixture: SIGKILL whatever still serves ``node_dir``."""
    for proc in processes_of(node_dir):
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    wait_gone([p.pid for p in processes_of(node_dir)], timeout=5)
