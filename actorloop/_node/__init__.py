"""The node process: where it lives, how it starts, how it is found."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from ._dirs import UntrustedNodeDirError, check_node_dir, check_node_socket, make_node_dir, read_secret

__all__ = [
    "default_daemon_dir",
    "prepare_dir",
    "node_running",
    "read_secret",
    "start_node_process",
    "EmbeddedNode",
    "UntrustedNodeDirError",
    "trim_heap",
]

#: The longest path a Unix socket can have on Linux (sun_path holds 108 bytes with the final NUL).
_MAX_SOCKET_PATH = 107


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Importing compiles modules from source where no bytecode cache is written
    (``PYTHONDONTWRITEBYTECODE``, read-only installs), and the compiler's
    temporaries leave free but resident heap behind: about 1.8 MiB in the node
    before it forks the zygote (forked, those pages would be counted again in
    the zygote and every actor, and an allocation landing on one would copy
    it), about 1.3 MiB in a driver once ``init()`` has connected.
    """
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (ImportError, OSError, AttributeError):
        pass


def default_daemon_dir() -> str:
    """The directory of the node ``actorloop start`` runs for this user."""
    path = os.environ.get("ACTORLOOP_DIR")
    if path:
        return os.path.abspath(path)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "actorloop")
    return f"/tmp/actorloop-{os.getuid()}"


def prepare_dir(path: str) -> None:
    """Create ``path`` as a 0700 directory, or check that an existing one is trustworthy.

    Raises :class:`UntrustedNodeDirError` for a directory that is a symlink,
    not ours or not mode 0700 (it is never chmod'ed), and ``OSError`` for a
    path too long to hold the node's sockets.
    """
    # The longest socket inside is an actor's, a-<12 hex digits>.sock; Unix
    # socket paths end at 107 bytes.
    if len(os.fsencode(os.path.join(path, "a-000000000000.sock"))) > _MAX_SOCKET_PATH:
        raise OSError(
            f"{path} is too long for a node directory: socket paths inside it would pass the "
            f"{_MAX_SOCKET_PATH}-byte limit of Unix sockets; choose a shorter one"
        )
    make_node_dir(path)


def node_running(path: str) -> bool:
    """Whether a node answers on ``path``'s socket.

    The directory, its secret and the socket are checked before anything
    connects: a directory someone else could control raises
    :class:`UntrustedNodeDirError` instead of being connected to.
    """
    if not check_node_dir(path):
        return False
    if not check_node_socket(path):
        return False
    sock_path = os.path.join(path, "node.sock")
    try:
        read_secret(path)
    except ConnectionError:
        return False  # no secret: a node that died before (or while) writing it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2)
        sock.connect(sock_path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def start_node_process(
    node_dir: str, *, embedded: bool, log_path: str | None = None, log_format: str = "text"
) -> subprocess.Popen[bytes]:
    """Start a node serving ``node_dir`` and return once it listens.

    ``log_format`` ("text" or "json") is how the node writes the output of
    actors nobody receives (detached ones whose creator is gone) to its own log.
    """
    ready_r, ready_w = os.pipe()
    cmd = [sys.executable, "-m", "actorloop._node", "--dir", node_dir, "--ready-fd", str(ready_w)]
    if log_format != "text":
        cmd += ["--log-format", log_format]
    if embedded:
        cmd += ["--parent", str(os.getpid())]
    out = None
    if log_path is not None:
        out = open(log_path, "ab")
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    try:
        proc = subprocess.Popen(
            cmd,
            pass_fds=[ready_w],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    finally:
        os.close(ready_w)
        if out is not None:
            out.close()
    with os.fdopen(ready_r, "rb") as ready:
        line = ready.readline()
    if not line.startswith(b"READY"):
        code = proc.wait(timeout=10)
        hint = f" (see {log_path})" if log_path else ""
        raise RuntimeError(f"the actorloop node failed to start (exit code {code}){hint}")
    return proc


class EmbeddedNode:
    """A node owned by this process: a private directory, ended with the process."""

    def __init__(self, log_format: str = "text") -> None:
        # mkdtemp makes it 0700, ours, with a name nobody could guess in advance.
        self.dir = tempfile.mkdtemp(prefix="actorloop-")
        self.proc = start_node_process(self.dir, embedded=True, log_format=log_format)

    def stop(self) -> None:
        """Wait for the node to end (it does once our connections closed), then clean up."""
        proc = self.proc
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
