"""A starting node sweeps what killed runs left: segments of dead writers, directories of dead embedded nodes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from actorloop import _shm
from actorloop._node import _sweep

from ._helpers import PY, kill_everything_of, processes_of, short_dir, wait_until


def _dead_pid() -> int:
    proc = subprocess.Popen([PY, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: str, seconds: float = 600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


def _segment(shm_dir: str, pid: int, old: bool = True) -> str:
    name = f"actorloop-{'ab' * 8}-{'cd' * 8}-{pid:x}-{os.urandom(16).hex()}"
    path = os.path.join(shm_dir, name)
    with open(path, "wb") as f:
        f.write(b"x" * 100)
    if old:
        _age(path)
    return name


def _node_dir(tmp: str, name: str, pid: int | None, old: bool = True, extra: str | None = None) -> str:
    path = os.path.join(tmp, name)
    os.mkdir(path, 0o700)
    with open(os.path.join(path, "secret"), "wb") as f:
        f.write(os.urandom(32))
    if pid is not None:
        with open(os.path.join(path, "node.pid"), "w") as f:
            f.write(str(pid))
    if extra is not None:
        open(os.path.join(path, extra), "w").close()
    if old:
        _age(path)
    return path


def test_a_starting_node_sweeps_leftovers_of_dead_runs(daemon) -> None:  # type: ignore[no-untyped-def]
    base = short_dir("w")
    shm_dir, tmp = os.path.join(base, "shm"), os.path.join(base, "tmp")
    os.mkdir(shm_dir)
    os.mkdir(tmp)
    daemon.env.update(ACTORLOOP_SHM_DIR=shm_dir, TMPDIR=tmp)
    dead, live = _dead_pid(), os.getpid()
    try:
        gone_segments = {_segment(shm_dir, dead), _segment(shm_dir, dead)}
        kept_segments = {
            _segment(shm_dir, live),  # its writer is alive
            _segment(shm_dir, dead, old=False),  # a frame may still be in flight
        }
        kept_segments.add(_segment(shm_dir, 0xFFFFFFFF))  # no such pid: not ours to judge
        kept_segments.add(_segment(shm_dir, 0))
        foreign = os.path.join(shm_dir, "actorloop-not-ours")
        open(foreign, "w").close()
        _age(foreign)
        gone_dirs = [
            _node_dir(tmp, "actorloop-dead0000", dead),  # its node died
            _node_dir(tmp, "actorloop-nopid000", None),  # died while starting, long ago
        ]
        target = _node_dir(tmp, "actorloop-target-x", dead)
        link = os.path.join(tmp, "actorloop-symlink0")
        os.symlink(target, link)
        kept_dirs = [
            _node_dir(tmp, "actorloop-live0000", live),  # a live node
            _node_dir(tmp, "actorloop-young000", None, old=False),  # perhaps starting now
            _node_dir(tmp, "actorloop-other000", dead, extra="notes.txt"),  # not only a node's files
            _node_dir(tmp, "actorloop-tests-000", dead),  # not a name mkdtemp gives an embedded node
        ]
        daemon.start()
        assert wait_until(lambda: not (gone_segments & set(os.listdir(shm_dir))), timeout=20)
        assert wait_until(lambda: not any(os.path.exists(p) for p in gone_dirs), timeout=20)
        assert kept_segments | {"actorloop-not-ours"} <= set(os.listdir(shm_dir))
        assert all(os.path.isdir(p) for p in kept_dirs)
        # A symlink is never followed: neither it nor what it points to goes (the target itself is
        # a dead node's directory of the wrong name length, swept or not on its own merits).
        assert os.path.islink(link) and os.path.isdir(target)
    finally:
        shutil.rmtree(base, ignore_errors=True)


_DRIVER = """
import os, time
import numpy as np
import actorloop

@actorloop.remote
class Keeper:
    def __init__(self):
        self.kept = []
    def keep(self, x):
        self.kept.append(x)
        return len(x)
    def make(self, n):
        return np.ones(n // 8)

info = actorloop.init(address="local")
k = Keeper.remote()
assert actorloop.get(k.keep.remote(np.ones(1 << 18))) == 1 << 18
got = actorloop.get(k.make.remote(4 << 20))
print("READY", info["address"], flush=True)
time.sleep(600)
"""


def test_segments_and_the_node_dir_of_a_tree_killed_whole_are_swept(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = short_dir("k")
    shm_dir, tmp = os.path.join(base, "shm"), os.path.join(base, "tmp")
    os.mkdir(shm_dir)
    os.mkdir(tmp)
    daemon.env.update(ACTORLOOP_SHM_DIR=shm_dir, TMPDIR=tmp)
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_DRIVER))
    proc = subprocess.Popen([PY, str(script)], env=daemon.env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    node_dir = ""
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        assert line[:1] == ["READY"], line
        node_dir = line[1]
        assert os.path.dirname(node_dir) == tmp and processes_of(node_dir)
        # SIGKILL the whole tree at once (stopped first, so none sees another die and cleans up).
        tree = [proc.pid] + [p.pid for p in processes_of(node_dir)]
        for pid in tree:
            os.kill(pid, signal.SIGSTOP)
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        kill_everything_of(node_dir)
        left = os.listdir(shm_dir)
        assert len(left) == 2 and os.path.isdir(node_dir)  # the argument and the result
        for name in left:
            _age(os.path.join(shm_dir, name))
        daemon.start()
        assert wait_until(lambda: not os.listdir(shm_dir), timeout=20), _why(shm_dir, daemon.dir)
        assert wait_until(lambda: not os.path.exists(node_dir), timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if node_dir:
            kill_everything_of(node_dir)
        shutil.rmtree(base, ignore_errors=True)


def _why(shm_dir: str, daemon_dir: str) -> str:
    lines = []
    for name in os.listdir(shm_dir):
        pid = int(name.split("-")[3], 16)
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read()
        except OSError as exc:
            state = repr(exc)
        lines.append(f"{name}: {state}")
    log = os.path.join(daemon_dir, "node.log")
    if os.path.exists(log):
        lines.append(open(log).read())
    return "\n".join(lines)


def test_the_sweep_spares_the_daemon_and_its_own_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = _dead_pid()
    own = _node_dir(str(tmp_path), "actorloop-own00000", dead)
    daemon_dir = _node_dir(str(tmp_path), "actorloop-daemon00", dead)
    other = _node_dir(str(tmp_path), "actorloop-other000", dead)
    assert _sweep.sweep_stale_node_dirs(own, daemon_dir) == [other]
    assert os.path.isdir(own) and os.path.isdir(daemon_dir)
    assert _shm.STALE_SEGMENT_AGE <= 10 and _sweep.ORPHAN_DIR_AGE <= 120
