"""What runs that were killed whole leave behind, removed by the next node start.

SIGKILL a driver together with its embedded node and actors and nothing of
them runs again: their shared-memory segments stay in ``/dev/shm`` and the
embedded node's directory stays in the temp dir.  A starting node removes,
for the current user only:

- segments whose writer process is dead (its pid is in the name), once they
  are a few seconds old (``_shm.sweep_stale_segments``);
- embedded node directories (``<tempdir>/actorloop-XXXXXXXX``, as
  ``tempfile.mkdtemp`` names them) whose ``node.pid`` names a dead process,
  or that have no ``node.pid`` and are older than ``ORPHAN_DIR_AGE``, and
  hold nothing but what a node puts there.

It never follows a symlink, never touches another user's files, the daemon
directory, its own directory or the directory of a live node.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import time

from .. import _shm

#: A node directory without node.pid (its node died while starting) is removed once it is this old.
ORPHAN_DIR_AGE = 60.0
# What tempfile.mkdtemp(prefix="actorloop-") names (EmbeddedNode), and what a node puts inside.
_EMBEDDED_DIR = re.compile(r"^actorloop-[a-z0-9_]{8}$")
_NODE_ENTRY = re.compile(r"^(secret|secret\.tmp|node\.sock|node\.pid|a-[0-9a-f]{12}\.sock|logs)$")


def _read_pid(path: str) -> int | None:
    try:
        fd = os.open(os.path.join(path, "node.pid"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, 32)
    finally:
        os.close(fd)
    try:
        pid = int(text.strip())
    except ValueError:
        return None
    return pid if pid > 0 else None


def sweep_stale_node_dirs(own_dir: str, daemon_dir: str) -> list[str]:
    """Remove embedded node directories of dead nodes in the temp dir; returns the paths removed."""
    tmp = tempfile.gettempdir()
    keep = {os.path.abspath(own_dir), os.path.abspath(daemon_dir)}
    uid = os.getuid()
    now = time.time()
    removed: list[str] = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for name in names:
        if not _EMBEDDED_DIR.match(name):
            continue
        path = os.path.join(tmp, name)
        if path in keep:
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            entries = os.listdir(path)
        except OSError:
            continue
        if not all(_NODE_ENTRY.match(entry) for entry in entries):
            continue  # not (only) a node's: not ours to remove
        pid = _read_pid(path)
        if pid is not None:
            if _shm._pid_alive(pid):
                continue
        elif now - st.st_mtime < ORPHAN_DIR_AGE:
            continue  # perhaps a node starting right now
        shutil.rmtree(path, ignore_errors=True)  # never follows symlinks inside (fd-based on Linux)
        removed.append(path)
    return removed


def sweep_leftovers(own_dir: str, daemon_dir: str) -> None:
    """Both sweeps; errors go to the ``actorloop.node`` logger (the node's stderr), never raised."""
    for what, sweep in (
        ("segments", _shm.sweep_stale_segments),
        ("node directories", lambda: sweep_stale_node_dirs(own_dir, daemon_dir)),
    ):
        try:
            sweep()
        except Exception as exc:  # noqa: BLE001 - a sweep must never stop a node
            logging.getLogger("actorloop.node").warning("sweeping %s of dead runs failed: %r", what, exc)
