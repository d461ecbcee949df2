"""``python -m actorloop._node``: the node process (started by init() or ``actorloop start``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import shutil
import signal
import socket
import sys

# Everything a plain actor needs is imported here, before the zygote forks,
# so that forking an actor costs no imports.  aiohttp is imported only by the
# HTTP zygote (see _zygote.py), which keeps plain actors and the node lean.
import cloudpickle  # noqa: F401
import uvloop

import actorloop  # noqa: F401
from actorloop import _tasks, _worker  # noqa: F401  (actors need them; actorloop loads them on use)
from actorloop._fds import raise_fd_limit
from actorloop._node import default_daemon_dir, prepare_dir, trim_heap
from actorloop._node._logs import LOG_FORMATS
from actorloop._node._registry import register, unregister
from actorloop._node._server import Node, shutdown_timeout_from_env
from actorloop._node._sweep import sweep_leftovers
from actorloop._node._zygote import zygote_main
from actorloop._pages import fill_heap_holes, release_zero_pages
from actorloop._protocol import SECRET_BYTES


def main() -> None:
    _log_to_stderr()
    args = _parse_args(sys.argv[1:])
    try:
        shutdown_timeout_from_env()  # a bad setting fails the start, with this line in the log
    except ValueError as exc:
        print(f"actorloop node: {exc}", file=sys.stderr)
        sys.exit(2)
    node_dir = os.path.abspath(args.dir)
    # Before the fork: the zygote and every actor it forks inherit the raised limit.
    raise_fd_limit()
    prepare_dir(node_dir)
    secret = secrets.token_bytes(SECRET_BYTES)
    secret_path = os.path.join(node_dir, "secret")
    tmp = secret_path + ".tmp"
    try:
        os.unlink(tmp)  # left by a node that died while writing it
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    # The umask may have removed bits of 0600; clients refuse any other mode.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    os.replace(tmp, secret_path)

    registered: list[str | None] = []
    if args.parent is not None:
        # Listed for `actorloop status` of this user (the directory itself is a secret temp name).
        # Before the fork, not once listening: the code and objects the entry's JSON write touches
        # would otherwise be copied into the node and again into the zygote. Readers keep an entry
        # whose pid runs and whose directory exists, and check the node before they connect.
        registered.append(register(default_daemon_dir(), node_dir, args.parent))
    node_side, zygote_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    node_http_side, http_zygote_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gc.collect()
    trim_heap()  # before the fork, so that neither the zygote nor the actors carry the free pages
    try:
        # Kept for the node's life; shared with the zygote and every actor (see fill_heap_holes).
        _holes = fill_heap_holes()
    except Exception:  # noqa: BLE001 - a memory optimisation must never stop a node from starting
        _holes = []
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        node_side.close()
        node_http_side.close()
        os.close(args.ready_fd)
        zygote_main(zygote_side, node_dir, secret, http_zygote_side)
    zygote_side.close()
    http_zygote_side.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sweep = _Sweep(node_dir, [args.ready_fd, node_side.fileno(), node_http_side.fileno()])

    loop = uvloop.new_event_loop()
    release_zero_pages(loop)  # its unused receive buffer: 0.23 MiB of the node's USS
    node = Node(
        loop, node_dir, secret, node_side, node_http_side, embedded_parent=args.parent, log_format=args.log_format
    )
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(node.stop("SIGTERM")))
    sweep.reap_when_done(loop, 0.05)

    def announce() -> None:
        with open(os.path.join(node_dir, "node.pid"), "w") as f:
            f.write(str(os.getpid()))
        os.write(args.ready_fd, f"READY {os.getpid()}\n".encode())
        os.close(args.ready_fd)

    loop.call_soon(lambda: loop.create_task(_announce_when_listening(node, announce)))
    try:
        loop.run_until_complete(node.serve())
    finally:
        for entry in registered:
            unregister(entry)
        for name in ("node.sock", "node.pid"):
            try:
                os.unlink(os.path.join(node_dir, name))
            except FileNotFoundError:
                pass
        # Closing our ends ends the zygotes (also when serve() failed early),
        # so the wait below cannot hang.
        node_side.close()
        node_http_side.close()
        sweep.end()
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        if args.parent is not None:
            shutil.rmtree(node_dir, ignore_errors=True)


class _Sweep:
    """The process that removes what killed runs left behind (``_sweep``), forked as the node starts.

    A process of its own, rather than a thread of the node: the sweep's code
    and a thread's machinery would write to pages the node shares with the
    zygote, and each such page would then be copied, in the node and again in
    the zygote.  Forked before the node has a loop or a thread, it runs while
    the node starts and does not hold READY back.  It ends with the node at
    the latest: what it had not done yet, the next node start does.
    """

    def __init__(self, node_dir: str, fds: list[int]) -> None:
        self.pid: int | None = None  # until reaped (so never a pid some other process took since)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            logging.getLogger("actorloop.node").warning("could not start the sweep of dead runs: %s", exc)
            return
        if pid:
            self.pid = pid
            return
        try:
            for fd in fds:  # the ready pipe and the zygote channels: their ends must close with the node
                os.close(fd)
            sweep_leftovers(node_dir, default_daemon_dir())
            sys.stderr.flush()
        finally:
            os._exit(0)

    def reap_when_done(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """Reap it once it ended (uvloop keeps SIGCHLD for itself: a timer polls, backing off)."""
        if self.pid is None or self._reaped(os.WNOHANG):
            return
        loop.call_later(delay, self.reap_when_done, loop, min(delay * 2, 2.0))

    def end(self) -> None:
        """The node stops: end the sweep if it still runs, and reap it."""
        if self.pid is None or self._reaped(os.WNOHANG):
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reaped(0)

    def _reaped(self, flags: int) -> bool:
        assert self.pid is not None
        try:
            done, _ = os.waitpid(self.pid, flags)
        except ChildProcessError:
            done = self.pid
        if done:
            self.pid = None
        return bool(done)


class _Args:
    dir: str
    ready_fd: int
    parent: int | None = None
    log_format: str = "text"


_USAGE = "usage: python -m actorloop._node --dir DIR --ready-fd FD [--parent PID] [--log-format {text,json}]"


def _parse_args(argv: list[str]) -> _Args:
    """The node's command line, as ``start_node_process`` writes it.

    Parsed by hand: argparse (and gettext, which it imports) would be ~0.3 MiB
    of objects that the zygote and every actor forked from this process
    would carry too, for four options read once.
    """
    args = _Args()
    options = {"--dir": "dir", "--ready-fd": "ready_fd", "--parent": "parent", "--log-format": "log_format"}
    rest = list(argv)
    try:
        while rest:
            name, sep, value = rest.pop(0).partition("=")
            if name not in options:
                raise ValueError(f"unrecognized argument: {name}")
            if not sep:
                if not rest:
                    raise ValueError(f"argument {name}: expected one argument")
                value = rest.pop(0)
            attr = options[name]
            if attr in ("ready_fd", "parent"):
                try:
                    setattr(args, attr, int(value))
                except ValueError:
                    raise ValueError(f"argument {name}: invalid int value: {value!r}") from None
            elif attr == "log_format" and value not in LOG_FORMATS:
                raise ValueError(f"argument {name}: invalid choice: {value!r} (choose from {', '.join(LOG_FORMATS)})")
            else:
                setattr(args, attr, value)
        missing = [name for name, attr in options.items() if attr in ("dir", "ready_fd") and not hasattr(args, attr)]
        if missing:
            raise ValueError(f"the following arguments are required: {', '.join(missing)}")
    except ValueError as exc:
        print(f"{_USAGE}\npython -m actorloop._node: error: {exc}", file=sys.stderr)
        sys.exit(2)
    return args


async def _announce_when_listening(node: Node, announce: object) -> None:
    while node._server is None:
        await asyncio.sleep(0.001)
    announce()  # type: ignore[operator]


class _Who(logging.Filter):
    """Names the process a record comes from: the node, or an actor.

    Actors are forked (through the zygote) with the node's handler and log
    with it to their own stderr, which their creator sees.  Telling them
    apart per record, rather than giving each actor a handler of its own,
    keeps an actor's start from building one (and so from writing to the
    logging machinery's pages it shares with the zygote).
    """

    def __init__(self) -> None:
        super().__init__()
        self._node = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        record.actorloop_who = "actorloop node" if os.getpid() == self._node else "actorloop"
        return True


def _log_to_stderr() -> None:
    # Our own processes: actorloop's internal errors go to stderr (the node's: node.log for
    # `actorloop start`; an actor's: its creator).
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Who())
    handler.setFormatter(logging.Formatter("%(actorloop_who)s: %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("actorloop")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


if __name__ == "__main__":
    main()
