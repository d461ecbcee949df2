"""Where the CLI finds the embedded nodes of this user's running drivers.

An embedded node (started by ``init()`` in a script) lives in a temp
directory nobody could guess; ``actorloop status`` and the other commands
find it through a per-user registry directory beside the daemon's
(``<daemon dir>.nodes``, mode 0700, checked like a node directory by
``_dirs.check_node_dir``).  Each running embedded node writes one entry
there, a small JSON file named after its pid, and removes it when it ends.
An entry a killed node left behind names a dead pid or a directory without
a node: readers skip it and remove it.

Nothing read from the registry is trusted on its own: the directory an
entry names is trust-checked (``node_running``) before anything connects.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from ._dirs import check_node_dir, make_node_dir

__all__ = ["EmbeddedEntry", "registry_dir", "register", "unregister", "embedded_nodes"]

#: An entry is a few hundred bytes; anything larger is not one of ours.
_MAX_ENTRY = 4096


@dataclass(frozen=True)
class EmbeddedEntry:
    """One running embedded node: its directory, its pid and the driver that started it."""

    dir: str
    pid: int
    driver: int


def registry_dir(daemon_dir: str) -> str:
    """The registry of embedded nodes that belongs with the daemon directory ``daemon_dir``."""
    return os.path.abspath(daemon_dir) + ".nodes"


def register(daemon_dir: str, node_dir: str, driver: int) -> str | None:
    """Record this process as the embedded node of ``node_dir``; returns the entry's path.

    Returns None (and registers nothing) when the registry cannot be made or
    is not trustworthy: the node then runs unlisted, which only `actorloop
    status` notices.
    """
    reg = registry_dir(daemon_dir)
    pid = os.getpid()
    path = os.path.join(reg, str(pid))
    tmp = f"{path}.tmp"
    try:
        make_node_dir(reg)
        try:
            os.unlink(tmp)  # left by a process of the same pid that was killed while writing
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"dir": os.path.abspath(node_dir), "pid": pid, "driver": driver}, f)
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def unregister(path: str | None) -> None:
    """Remove an entry :func:`register` wrote."""
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process now has that pid: not our node
    return True


def _read_entry(path: str) -> EmbeddedEntry | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return None
        raw = os.read(fd, _MAX_ENTRY + 1)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw)
        entry = EmbeddedEntry(str(data["dir"]), int(data["pid"]), int(data["driver"]))
    except (ValueError, KeyError, TypeError):
        return None
    return entry if os.path.isabs(entry.dir) and entry.pid > 0 else None


def embedded_nodes(daemon_dir: str) -> list[EmbeddedEntry]:
    """The registered embedded nodes whose process runs, oldest pid first; stale entries are removed.

    Raises ``UntrustedNodeDirError`` when the registry directory exists but
    could be controlled by someone else.
    """
    reg = registry_dir(daemon_dir)
    if not check_node_dir(reg):
        return []
    found = []
    for name in os.listdir(reg):
        if not name.isdigit():
            continue
        path = os.path.join(reg, name)
        entry = _read_entry(path)
        if entry is None or entry.pid != int(name) or not _pid_alive(entry.pid) or not os.path.isdir(entry.dir):
            # A killed node's entry (or garbage): nobody will ever remove it otherwise.
            unregister(path)
            continue
        found.append(entry)
    return sorted(found, key=lambda e: e.pid)
