"""Every script in examples/ runs and prints what its docstring promises."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, env: dict[str, str] | None = None) -> str:
    full_env = dict(os.environ)
    full_env.pop("ACTORLOOP_ADDRESS", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120, env=full_env, cwd=EXAMPLES
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_quickstart() -> None:
    assert _run("quickstart.py").split() == ["1", "1001"]


def test_named_actor() -> None:
    assert _run("named_actor.py").strip() == "1"


def test_async_actor() -> None:
    out = _run("async_actor.py")
    assert out.count("['done', 'done', 'done', 'done']") == 2
    assert "(AsyncActor pid=" in out and "4 running" in out


def test_concurrency_groups() -> None:
    assert _run("concurrency_groups.py").strip() == "{'io': 2, 'compute': 4, 'default': 10}"


def test_remote_functions() -> None:
    assert _run("remote_functions.py").splitlines() == ["[0, 1, 4, 9]", "(3, 7)", "55", "6", "caught: no luck"]


def test_detached_scripts(tmp_path: pathlib.Path) -> None:
    env = {"ACTORLOOP_DIR": str(tmp_path / "node")}
    cli = [sys.executable, "-m", "actorloop"]
    full_env = {**os.environ, **env}
    subprocess.run([*cli, "start"], check=True, env=full_env, capture_output=True, timeout=60)
    try:
        assert "count: 1" in _run("detached_create.py", env)
        assert "count: 2" in _run("detached_use.py", env)
    finally:
        subprocess.run([*cli, "stop"], env=full_env, capture_output=True, timeout=60)


def _check_streaming(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].rstrip() == "reply: you said hello and here is a reply"
    assert lines[1] == "as refs: you said hi"
    assert lines[2] == "stopped early: 1"
    tokens = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert tokens == ["you", "said", "stream", "me", "and", "here", "is", "a", "[DONE]"]
    assert "/lines?prompt=lines\nyou\nsaid\nlines\nand\nhere\nis\na\nreply\n" in out
    assert lines[-6:] == [
        "bob sees: ann: hi bob",
        "ann sees: ann: hi bob",
        "bob sees: [room] closing soon",
        "ann sees: [room] closing soon",
        "ann sees: bob left",
        "history: ['ann joined', 'bob joined', 'ann: hi bob', '[room] closing soon', 'bob left']",
    ]


def test_streaming() -> None:
    """Tokens to ``async for``, the same tokens to ``curl -N`` (SSE and chunked), a WebSocket chat."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (test_streaming_without_curl covers the aiohttp fallback)")
    _check_streaming(_run("streaming.py"))


def test_streaming_without_curl(tmp_path: pathlib.Path) -> None:
    """With no curl on PATH the example makes the same requests with aiohttp and prints the same."""
    _check_streaming(_run("streaming.py", {"PATH": str(tmp_path)}))


@pytest.mark.parametrize("name", ["actor_pool.py", "http_counter.py", "http_routes.py"])
def test_other_examples_run(name: str) -> None:
    if not (EXAMPLES / name).exists():
        pytest.skip(f"{name} is not written yet")
    _run(name)


def test_dashboard() -> None:
    out = _run("dashboard.py").splitlines()
    assert out[0].startswith("dashboard: http://127.0.0.1:")
    assert out[1].startswith("counted ") and int(out[1].split()[1]) >= 300
    assert out[2] == "[('doomed', 'DEAD'), ('greeter', 'ALIVE'), ('slow', 'ALIVE'), ('web', 'ALIVE')]"
