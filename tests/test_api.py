"""init() and shutdown(): how a process finds its node (actorloop/_api.py).

Each test runs a driver in a subprocess: init() is once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import actorloop


def _run(code: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, env=env
    )


def test_first_remote_calls_init_itself() -> None:
    proc = _run(
        """
        import actorloop
        assert not actorloop.is_initialized()

        @actorloop.remote
        class A:
            def f(self):
                return 1

        a = A.remote()
        assert actorloop.is_initialized()
        print(actorloop.get(a.f.remote()))
        actorloop.shutdown()
        assert not actorloop.is_initialized()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_second_init_raises_unless_ignored() -> None:
    proc = _run(
        """
        import actorloop
        actorloop.init()
        try:
            actorloop.init()
        except RuntimeError as e:
            print("raised")
        actorloop.init(ignore_reinit_error=True)
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["raised", "ok"]


def test_auto_without_a_node_says_to_run_actorloop_start(tmp_path: object) -> None:
    proc = _run(
        """
        import actorloop
        try:
            actorloop.init(address="auto")
        except ConnectionError as e:
            print(e)
        """,
        {"ACTORLOOP_DIR": str(tmp_path)},
    )
    assert "actorloop start" in proc.stdout


def test_embedded_node_address_is_inherited_by_child_processes() -> None:
    proc = _run(
        """
        import os, subprocess, sys, actorloop
        actorloop.init(namespace="inherit")

        @actorloop.remote
        class A:
            def f(self):
                return "from parent"

        A.options(name="a").remote()
        address = os.environ["ACTORLOOP_ADDRESS"]
        child = subprocess.run([sys.executable, "-c",
            "import actorloop; actorloop.init(namespace='inherit'); "
            "print(actorloop.get(actorloop.get_actor('a').f.remote()))"],
            capture_output=True, text=True, timeout=60)
        print(child.stdout.strip(), child.stderr[-500:])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "from parent" in proc.stdout


def test_init_with_a_directory_and_local() -> None:
    proc = _run(
        """
        import actorloop
        info = actorloop.init(address="local")
        address = info["address"]
        actorloop.shutdown()
        try:
            actorloop.init(address=address)   # that embedded node ended with shutdown()
        except ConnectionError:
            print("gone")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "gone"


def test_shutdown_without_init_is_harmless() -> None:
    actorloop.shutdown()
