"""Actor programs written the way Ray's docs write them run after the mechanical rename (issue 11).

Each file in ``programs/`` is plain Ray code (``import ray``) of our own, in
the style of one of Ray's actor pages. The test renames it exactly as a user
would (``import ray`` -> ``import actorloop as ray``, ``from ray.X`` ->
``from actorloop.X``), runs it in a fresh interpreter and checks the output
the docs promise, listed in the file's ``# expect:`` lines, in order.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = sorted((Path(__file__).parent / "programs").glob("*.py"))


def rename(source: str) -> str:
    """The mechanical rename of the README: nothing else changes."""
    source = re.sub(r"^import ray$", "import actorloop as ray", source, flags=re.M)
    source = re.sub(r"^from ray\.", "from actorloop.", source, flags=re.M)
    return re.sub(r"^from ray import ", "from actorloop import ", source, flags=re.M)


def run_renamed(program: Path, tmp_path: Path, **env_changes: str) -> None:
    """Rename ``program`` as a user would, run it in a fresh interpreter, and check its ``# expect:`` lines."""
    source = program.read_text()
    expected = [line.split("# expect: ", 1)[1] for line in source.splitlines() if line.startswith("# expect: ")]
    assert expected, f"{program.name} lists no expected output"
    renamed = tmp_path / program.name
    renamed.write_text(rename(source))
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    env.update(env_changes)
    out = subprocess.run(
        [sys.executable, str(renamed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    position = 0
    for want in expected:
        found = out.stdout.find(want, position)
        assert found >= 0, f"{want!r} not in the output (after position {position}):\n{out.stdout}"
        position = found + len(want)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_ray_style_program_runs_after_the_rename(program: Path, tmp_path: Path) -> None:
    run_renamed(program, tmp_path)


def test_the_rename_is_mechanical() -> None:
    assert rename("import ray\nfrom ray.util import ActorPool\nx = ray.get(r)\n") == (
        "import actorloop as ray\nfrom actorloop.util import ActorPool\nx = ray.get(r)\n"
    )
