"""Choosing the backend: init(backend=...), $ACTORLOOP_BACKEND, and the clear errors around them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

import actorloop
from actorloop import _backend


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'spark'.*'local'.*'ray'"):
        actorloop.init(backend="spark")
    monkeypatch.setenv("ACTORLOOP_BACKEND", "dask")
    with pytest.raises(ValueError, match=r"\$ACTORLOOP_BACKEND='dask'"):
        actorloop.init()
    assert not actorloop.is_initialized()


def test_local_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTORLOOP_BACKEND", raising=False)
    assert _backend.chosen(None) == "local"
    monkeypatch.setenv("ACTORLOOP_BACKEND", "ray")
    assert _backend.chosen(None) == "ray"
    assert _backend.chosen("local") == "local"  # the argument wins over the environment


def test_ray_cannot_start_while_the_local_node_runs(node: None) -> None:
    with pytest.raises(RuntimeError, match="shutdown"):
        actorloop.init(backend="ray")
    assert _backend.current is None


def test_the_environment_variable_alone_runs_a_program_on_ray() -> None:
    """No init() at all: the first .remote() starts Ray because ACTORLOOP_BACKEND=ray."""
    pytest.importorskip("ray")
    code = (
        "import actorloop, sys\n"
        "@actorloop.remote\n"
        "class A:\n"
        "    def where(self):\n"
        "        return type(actorloop.get_runtime_context()).__name__\n"
        "a = A.remote()\n"
        "print(type(a).__name__, actorloop.get(a.where.remote()))\n"
        "print('ray' in sys.modules)\n"
        "actorloop.shutdown()\n"
    )
    temp_dir = tempfile.mkdtemp(prefix="alray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("ACTORLOOP_ADDRESS", "RAY_ADDRESS")}
    env.update(ACTORLOOP_BACKEND="ray", RAY_TMPDIR=temp_dir)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
        )
    finally:
        import shutil

        shutil.rmtree(temp_dir, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["RayActorHandle RayRuntimeContext", "True"]
