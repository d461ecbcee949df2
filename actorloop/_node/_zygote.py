"""The zygote: a single-threaded child of the node that forks actor processes.

It is forked by the node before the node starts its event loop, after every
heavy module (actorloop, uvloop, aiohttp, cloudpickle) was imported and the
heap frozen (``gc.freeze()``), so a new actor costs one ``fork`` and shares
those pages.  It never runs an event loop or a thread, which keeps forking
it safe.  It reaps its children and reports each exit status to the node.

Each actor leads a process group of its own (``setpgid`` right after the
fork), so the processes it starts end with it: when the zygote reaps an
actor it kills what is left of the actor's group, and when the node goes
away it kills every group it started.  A spawn that fails (``fork`` or the
descriptors it needs) is reported as ``spawn_failed``, never a crash.
"""

from __future__ import annotations

import errno
import gc
import os
import pickle
import selectors
import signal
import socket
import sys
from typing import NoReturn

from .._fds import is_fd_exhaustion, out_of_fds_error

_MAX_MSG = 1 << 16
#: Test-only fault injection: the first N actor forks of a zygote fail with
#: EAGAIN (fork failures cannot be provoked with rlimits when running as root).
_TEST_FAIL_FORK_ENV = "ACTORLOOP_TEST_FAIL_FORK"


def zygote_main(
    sock: socket.socket,
    node_dir: str,
    secret: bytes,
    http_sock: socket.socket | None = None,
) -> NoReturn:
    """Serve spawn requests forever.

    ``http_sock`` is the channel of the HTTP zygote, which this one forks the
    first time the node asks for it (only once an actor with routes exists).
    """
    # The descriptor limit is the node's, raised before it forked us; actors inherit it from here.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    selector = selectors.DefaultSelector()
    gc.freeze()
    selector.register(sock, selectors.EVENT_READ, "node")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    children: set[int] = set()
    fail_forks = int(os.environ.pop(_TEST_FAIL_FORK_ENV, "0") or 0)
    while True:
        for key, _ in selector.select():
            if key.data == "node":
                try:
                    data, fds, flags, _ = socket.recv_fds(sock, _MAX_MSG, 8)
                except OSError:
                    data, fds, flags = b"", [], 0
                if not data:
                    # The node is gone (stopped, or killed): no actor may outlive it.
                    for pid in children:
                        _kill_group(pid)
                    os._exit(0)
                request = pickle.loads(data)
                if request == ("http-zygote",):
                    if http_sock is not None:
                        _fork_http_zygote(sock, selector, wake_r, wake_w, http_sock, node_dir, secret)
                        http_sock.close()
                        http_sock = None
                    continue
                actor_id, epoch, has_http = request
                try:
                    if flags & socket.MSG_CTRUNC or len(fds) < (3 if has_http else 2):
                        raise OSError(
                            errno.EMFILE,
                            "the zygote could not receive the actor's descriptors (its open-file limit is reached)",
                        )
                    if fail_forks > 0:
                        fail_forks -= 1
                        raise OSError(errno.EAGAIN, f"fork failed ({_TEST_FAIL_FORK_ENV} test hook)")
                    pid = _spawn(sock, selector, wake_r, wake_w, node_dir, secret, actor_id, epoch, fds, has_http)
                except OSError as exc:
                    for fd in fds:
                        _close(fd)
                    if is_fd_exhaustion(exc):
                        exc = out_of_fds_error("the zygote", exc)
                    sock.send(pickle.dumps(("spawn_failed", actor_id, epoch, f"could not start its process: {exc}")))
                    continue
                children.add(pid)
                sock.send(pickle.dumps(("spawned", actor_id, epoch, pid)))
            else:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                _reap(sock, children)


def _fork_http_zygote(
    sock: socket.socket,
    selector: selectors.BaseSelector,
    wake_r: int,
    wake_w: int,
    http_sock: socket.socket,
    node_dir: str,
    secret: bytes,
) -> None:
    if os.fork():
        return
    try:
        selector.close()
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        signal.set_wakeup_fd(-1)
        # aiohttp imported once here, shared by every HTTP actor; plain actors
        # and the node never carry its pages.
        import aiohttp.web  # noqa: F401

        from .. import _http, http  # noqa: F401

        gc.collect()
        zygote_main(http_sock, node_dir, secret)
    finally:
        os._exit(1)


def _reap(sock: socket.socket, children: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            children.discard(pid)
            # The actor's own children (its process group) end with it, however it ended.
            _kill_group(pid)
        sock.send(pickle.dumps(("exited", pid, status)))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:  # no such group left, or never made
        pass


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _spawn(
    sock: socket.socket,
    selector: selectors.BaseSelector,
    wake_r: int,
    wake_w: int,
    node_dir: str,
    secret: bytes,
    actor_id: str,
    epoch: int,
    fds: list[int],
    has_http: bool,
) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        try:
            # Also here, so that the group exists before the node can ask to kill it.
            os.setpgid(pid, pid)
        except OSError:
            pass
        return pid
    # The actor.
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        selector.close()
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        out_fd, err_fd = fds[0], fds[1]
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        http_fd = fds[2] if has_http else None
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            except Exception:
                pass
        from .._worker import run_actor

        run_actor(actor_id, epoch, node_dir, secret, http_fd)
    finally:
        os._exit(1)
