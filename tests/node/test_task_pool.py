"""The task pool is shared by the drivers of one node, and heals when the driver that made it exits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ._helpers import PY, run_script, write_script

FIRST = """
    import os, sys, time, pathlib
    import actorloop

    actorloop.init(address="auto")

    @actorloop.remote
    def pid():
        return os.getpid()

    here = pathlib.Path(sys.argv[1])
    pids = sorted(set(actorloop.get([pid.remote() for _ in range(40)])))
    (here / "first_pids").write_text(" ".join(map(str, pids)))
    deadline = time.monotonic() + 60
    while not (here / "exit").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""

SECOND = """
    import os, sys, time, pathlib
    import psutil
    import actorloop

    actorloop.init(address="auto")

    @actorloop.remote
    def pid():
        return os.getpid()

    here = pathlib.Path(sys.argv[1])
    deadline = time.monotonic() + 60
    while not (here / "first_pids").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    first = set(map(int, (here / "first_pids").read_text().split()))
    mine = set(actorloop.get([pid.remote() for _ in range(40)]))
    print("shared", mine <= first)
    (here / "exit").touch()
    # The first driver made the pool, so its workers end with it.
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in first):
        if time.monotonic() > deadline:
            raise SystemExit("the first driver's workers outlived it")
        time.sleep(0.01)
    again = set(actorloop.get([pid.remote() for _ in range(40)], timeout=60))
    print("healed", not (again & first))
"""


def test_drivers_share_one_pool_which_heals_when_its_maker_exits(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    first = write_script(tmp_path, "first.py", FIRST)
    second = write_script(tmp_path, "second.py", SECOND)
    proc = subprocess.Popen(
        [PY, str(first), str(tmp_path)],
        env=daemon.env,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = run_script(second, daemon.env, str(tmp_path), timeout=120)
    finally:
        (tmp_path / "exit").touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["shared True", "healed True"]
