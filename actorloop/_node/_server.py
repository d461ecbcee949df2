"""The node: names, spawning, supervision, owners, log fan-out, status.

One node serves one directory.  It never sits on the call path: callers
talk to actors directly.  Every way an actor ends (return from
``exit_actor``, kill, crash, owner exit, node stop, a spawn that failed)
goes through one place, ``_actor_exited``, driven by the zygote's report of
the exit status.  Ending an actor has two modes (``_end``): graceful asks
the actor to stop (it cancels its coroutines, runs ``__ray_shutdown__`` and
exits) and kills its process group if it has not ended in time; force kills
the group at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import _protocol as proto
from .._fds import is_fd_exhaustion, out_of_fds_error
from .._meta import ActorInfo
from .._shm import WRITER_GONE_GRACE
from ..exceptions import ActorDiedError
from ._logs import LOG_FORMATS, json_head, json_line, kept_chunk

if TYPE_CHECKING:
    from ._dashboard import Dashboard

_log = logging.getLogger("actorloop.node")

#: How many actors (alive, starting or restarting) one node runs at most.
MAX_ACTORS = 10_000
#: Dead actors remembered for list_actors() and error messages.
MAX_DEAD_REMEMBERED = 1_000
#: How long an actor's ``__ray_shutdown__`` may run when it is stopped gracefully
#: (seconds; ``$ACTORLOOP_SHUTDOWN_TIMEOUT`` in the node's environment overrides it).
SHUTDOWN_TIMEOUT = 5.0
#: How much longer than the shutdown timeout the node waits for an actor it asked
#: to stop before it kills the actor's process group.
STOP_GRACE = 1.0
#: Restarts back off: the first restart is immediate, the next ones wait this long,
#: doubling up to RESTART_BACKOFF_MAX; the delay starts over once an actor stayed
#: alive for RESTART_BACKOFF_RESET seconds.
RESTART_BACKOFF_FIRST = 0.1
RESTART_BACKOFF_MAX = 10.0
RESTART_BACKOFF_RESET = 10.0
#: Each actor's output is kept in ``<node dir>/logs/<actor id>.log`` (see _logs.py) for
#: ``actorloop logs``: a file that passes this size becomes ``.log.1`` (the one before is
#: dropped), so an actor's kept output is at most twice this.
LOG_FILE_BYTES = 512 * 1024
#: The logs of this many dead actors are kept; older ones are removed.
MAX_DEAD_LOGS = 100
#: The roles whose node channel reads pushes (an async ``NodeConnection``); the others are
#: blocking request/reply channels that would take a push for the reply they wait for.
PUSHED_ROLES = frozenset({"driver", "actor"})


def shutdown_timeout_from_env() -> float:
    """The shutdown timeout of this node: ``$ACTORLOOP_SHUTDOWN_TIMEOUT`` or :data:`SHUTDOWN_TIMEOUT`."""
    raw = os.environ.get("ACTORLOOP_SHUTDOWN_TIMEOUT", "").strip()
    if not raw:
        return SHUTDOWN_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ValueError(
            f"ACTORLOOP_SHUTDOWN_TIMEOUT={raw!r} is not a number of seconds from 0 to 3600; "
            f"fix it or unset it (the default is {SHUTDOWN_TIMEOUT})"
        )
    return value


@dataclass
class _Client:
    client_id: str
    pid: int
    namespace: str
    conns: set[NodeServerConnection] = field(default_factory=set)
    primary: NodeServerConnection | None = None
    log_to_driver: bool = True
    #: How actor output pushed to this client is formatted (one of LOG_FORMATS).
    log_format: str = "text"
    #: Set for an actor's own client: its output goes on to the actor's owner (one prefix, not two).
    actor_id: str | None = None


@dataclass
class _Actor:
    actor_id: str
    spec: dict[str, Any]
    owner: str
    class_name: str
    name: str | None
    namespace: str
    detached: bool
    max_restarts: int
    http_sock: socket.socket | None = None
    http_url: str | None = None
    log_name: str | None = None
    #: Set while the constructor arguments are still being resolved by the creator (refs among them).
    args_ready: asyncio.Future[None] | None = None
    state: str = "STARTING"
    pid: int | None = None
    epoch: int = 0
    restarts: int = 0
    waiters: list[tuple[int, asyncio.Future[Any]]] = field(default_factory=list)
    death_reason: str | None = None
    last_reason: str = ""
    #: Why the actor last ended (it may have restarted since), for list_actors().
    death_cause: str | None = None
    init_error: str | None = None
    exit_reason: str | None = None
    #: The actor's own exit may restart it (sys.exit), unlike exit_actor().
    exit_restartable: bool = False
    kill_reason: str | None = None
    no_restart: bool = False
    ended: asyncio.Future[None] | None = None
    pipes_open: int = 0
    pipes_closed: asyncio.Future[None] | None = None
    #: The current process's own connection to the node (graceful stops go through it).
    conn: NodeServerConnection | None = None
    #: The SIGKILL that follows a graceful stop request if the actor does not end in time.
    kill_timer: asyncio.TimerHandle | None = None
    #: A restart waiting out its back-off (no process meanwhile).
    restart_timer: asyncio.TimerHandle | None = None
    backoff: float = 0.0
    alive_since: float | None = None
    #: Bytes in the actor's current log file; None once writing it failed (see _keep_lines).
    log_bytes: int | None = 0


class Node:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        node_dir: str,
        secret: bytes,
        zygote_sock: socket.socket,
        http_zygote_sock: socket.socket,
        *,
        embedded_parent: int | None,
        log_format: str = "text",
    ) -> None:
        self.loop = loop
        self.dir = node_dir
        self.secret = secret
        self.zygote = zygote_sock
        # A second zygote has aiohttp imported, for actors with HTTP routes; the
        # plain one stays lean so plain actors do not carry aiohttp's pages.
        self.http_zygote = http_zygote_sock
        self._http_zygote_asked = False
        self.embedded_parent = embedded_parent
        self.started = time.time()
        self.clients: dict[str, _Client] = {}
        self.actors: dict[str, _Actor] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.by_pid: dict[int, _Actor] = {}
        self.dead_order: list[str] = []
        self.stopping = False
        self.shutdown_timeout = shutdown_timeout_from_env()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self._server: asyncio.AbstractServer | None = None
        self._parent_seen = False
        self._zygote_gone = False
        #: How lines of actors nobody receives (detached ones) are written to the node's own output.
        self.log_format = log_format
        self.logs_dir = os.path.join(node_dir, "logs")
        self._dead_logs: list[str] = []
        #: The metrics and dashboard server, once asked for (``op_dashboard``).
        self.dashboard: Dashboard | None = None

    # -- life ------------------------------------------------------------------

    async def serve(self) -> None:
        path = os.path.join(self.dir, "node.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            try:
                os.mkdir(self.logs_dir, 0o700)
            except FileExistsError:
                # Inside our own checked directory; the logs of the node that ran here before are
                # unreachable now (their actors are gone), so they go.  rmtree follows no links.
                # (Only then: a new node directory has none, and rmtree's code is left untouched.)
                shutil.rmtree(self.logs_dir, ignore_errors=True)
                os.mkdir(self.logs_dir, 0o700)
        except OSError as exc:  # the node runs on; actors' output reaches drivers, `actorloop logs` finds none
            _log.warning("cannot keep actor output in %s: %s", self.logs_dir, exc)
        self._server = await self.loop.create_unix_server(lambda: NodeServerConnection(self), path)
        os.chmod(path, 0o600)
        for zygote in (self.zygote, self.http_zygote):
            zygote.setblocking(False)
            self.loop.add_reader(zygote.fileno(), self._zygote_readable, zygote)
        if self.embedded_parent is not None:
            self.loop.call_later(1.0, self._check_parent)
        await self.stopped

    def _check_parent(self) -> None:
        if self.stopping:
            return
        if os.getppid() != self.embedded_parent:
            self.loop.create_task(self.stop("the driver that started this embedded node exited"))
            return
        self.loop.call_later(1.0, self._check_parent)

    async def stop(self, why: str = "") -> None:
        if self.stopping:
            await self.stopped
            return
        self.stopping = True
        if self._server is not None:
            self._server.close()
        # Every actor is asked at once and waited for at once: a node stop takes as
        # long as the slowest actor's shutdown, never the sum.
        ending = [actor for actor in self.actors.values() if actor.state != "DEAD"]
        for actor in ending:
            self._end(actor, "the node stopped", no_restart=True, graceful=True)
        waits = [a.ended for a in self.actors.values() if a.ended is not None and not a.ended.done()]
        if waits and not self._zygote_gone:  # without a zygote no exit is ever reported
            await asyncio.wait(waits, timeout=self.shutdown_timeout + STOP_GRACE + 2)
        for zygote in (self.zygote, self.http_zygote):
            try:
                self.loop.remove_reader(zygote.fileno())
                zygote.close()
            except Exception:
                pass
        # A caller learns that an actor died by asking us (wait_actor) once its socket to the actor
        # is lost; that question may reach us only after we closed its connection, and it would then
        # fail as if the node had crashed.  So every client hears why first: the same stream carries
        # this notice ahead of the end of the connection (close() flushes it).  Only the channels
        # that take pushes get it: the blocking ones ("sync", "cli") read nothing but replies.
        notice = proto.dumps((0, proto.NODE_STOPPED, why or "the node stopped", self._stop_reasons(ending)))
        for client in list(self.clients.values()):
            for conn in list(client.conns):
                if conn.role in PUSHED_ROLES and not conn.closed:
                    conn.send(notice)
                conn.close()
        proto.remove_segments(self.dir)
        if self.dashboard is not None:
            await self.dashboard.close()
        if not self.stopped.done():
            self.stopped.set_result(None)

    @staticmethod
    def _stop_reasons(ended: list[_Actor]) -> dict[str, str]:
        """Why each actor a node stop ended is gone, as a wait_actor answer would say it.

        A buried actor has its death reason (an owner exit that came first
        keeps its own); one whose exit was never reported (the zygote is gone,
        or the wait ran out) gets the reason it was ended with.
        """
        return {
            a.actor_id: a.death_reason
            or f"the actor {a.class_name} ({a.actor_id}) died: {a.kill_reason or 'the node stopped'}"
            for a in ended
        }

    # -- zygote ----------------------------------------------------------------

    def _spawn(self, actor: _Actor) -> None:
        """Ask the zygote for a process for ``actor``'s current epoch.

        Raises OSError (having closed what it opened) when the request cannot
        be made, e.g. EMFILE; a fork that fails in the zygote comes back later
        as ``spawn_failed``.
        """
        opened: list[int] = []
        try:
            out_r, out_w = os.pipe()
            opened += (out_r, out_w)
            err_r, err_w = os.pipe()
            opened += (err_r, err_w)
        except OSError:
            for fd in opened:
                os.close(fd)
            raise
        fds = [out_w, err_w]
        if actor.http_sock is not None:
            fds.append(actor.http_sock.fileno())
        actor.pipes_open = 2
        actor.pipes_closed = self.loop.create_future()
        # From here the readers own the read ends: they close them at EOF, which
        # comes once the write ends are closed below (and in the actor, if any).
        for fd, stream_no in ((out_r, 1), (err_r, 2)):
            self.loop.create_task(self._read_logs(actor, fd, stream_no, actor.epoch))
        msg = pickle.dumps((actor.actor_id, actor.epoch, actor.http_sock is not None))
        zygote = self.zygote if actor.http_sock is None else self.http_zygote
        try:
            if zygote is self.http_zygote and not self._http_zygote_asked:
                self.zygote.setblocking(True)
                try:
                    self.zygote.send(pickle.dumps(("http-zygote",)))
                finally:
                    self.zygote.setblocking(False)
                self._http_zygote_asked = True
            zygote.setblocking(True)
            try:
                socket.send_fds(zygote, [msg], fds)
            finally:
                zygote.setblocking(False)
        finally:
            os.close(out_w)
            os.close(err_w)

    def _respawn(self, actor: _Actor, epoch: int) -> None:
        actor.restart_timer = None
        if actor.epoch != epoch or actor.state == "DEAD":
            return
        try:
            self._spawn(actor)
        except OSError as exc:
            self._actor_exited(actor, None, spawn_error=f"could not start its process: {_spawn_failure(exc)}")

    def _zygote_readable(self, zygote: socket.socket) -> None:
        while True:
            try:
                data = zygote.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(zygote.fileno())
                if not self.stopping:
                    self._zygote_gone = True
                    _log.error("the zygote ended; stopping")
                    for actor in self.actors.values():
                        if actor.pid:
                            _kill_group(actor.pid)
                    self.loop.create_task(self.stop("zygote ended"))
                return
            msg = pickle.loads(data)
            if msg[0] == "spawned":
                _, actor_id, epoch, pid = msg
                spawned = self.actors.get(actor_id)
                if spawned is None or spawned.epoch != epoch:
                    _kill_group(pid)
                    continue
                spawned.pid = pid
                self.by_pid[pid] = spawned
                if spawned.kill_reason is not None:
                    # Ended before it started: nothing to stop gracefully yet.
                    _kill_group(pid)
            elif msg[0] == "spawn_failed":
                _, actor_id, epoch, reason = msg
                failed = self.actors.get(actor_id)
                if failed is not None and failed.epoch == epoch and failed.state != "DEAD":
                    self._actor_exited(failed, None, spawn_error=reason)
            elif msg[0] == "exited":
                _, pid, status = msg
                exited = self.by_pid.pop(pid, None)
                if exited is not None:
                    self._actor_exited(exited, status)

    # -- the one place where actors end ------------------------------------------

    def _actor_exited(self, actor: _Actor, status: int | None, *, spawn_error: str | None = None) -> None:
        """The actor's process ended with ``status``, or never started (``spawn_error``): restart or bury it.

        The zygote has already killed what was left of the actor's process group.
        """
        actor.pid = None
        actor.conn = None
        actor.alive_since, alive_since = None, actor.alive_since
        if actor.kill_timer is not None:
            actor.kill_timer.cancel()
            actor.kill_timer = None
        # The dead process cannot remove its socket file; a restarted one binds a new one.
        try:
            os.unlink(self._actor_path(actor))
        except OSError:
            pass
        restartable = False
        if actor.init_error is not None:
            reason = actor.init_error
        elif actor.exit_reason is not None:
            reason = actor.exit_reason
            restartable = actor.exit_restartable
        elif actor.kill_reason is not None:
            reason = actor.kill_reason
            restartable = not actor.no_restart
        elif spawn_error is not None or status is None:
            reason = spawn_error or "its process could not be started"
            restartable = True
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            reason = f"its process was killed by signal {name}"
            restartable = True
        else:
            reason = f"its process exited with exit code {os.WEXITSTATUS(status)}"
            restartable = True
        actor.death_cause = reason
        can_restart = actor.max_restarts == -1 or actor.restarts < actor.max_restarts
        if restartable and can_restart and not self.stopping:
            actor.restarts += 1
            actor.epoch += 1
            actor.state = "RESTARTING"
            actor.last_reason = reason
            actor.kill_reason = None
            actor.no_restart = False
            actor.exit_reason = None
            actor.exit_restartable = False
            # Back off, so that an actor that dies at once (a crash loop) does not
            # burn a core: immediate, then 0.1 s doubling up to the cap; an actor
            # that stayed alive a while starts over.
            if alive_since is not None and time.monotonic() - alive_since >= RESTART_BACKOFF_RESET:
                actor.backoff = 0.0
            delay = actor.backoff
            actor.backoff = min(max(delay * 2, RESTART_BACKOFF_FIRST), RESTART_BACKOFF_MAX)
            actor.restart_timer = self.loop.call_later(delay, self._respawn, actor, actor.epoch)
            self._resolve_ended(actor)
            return
        self._bury(actor, reason)

    def _bury(self, actor: _Actor, reason: str) -> None:
        """The actor is dead for good: free its name, answer its waiters, remember why."""
        actor.state = "DEAD"
        actor.death_cause = reason
        actor.death_reason = f"the actor {actor.class_name} ({actor.actor_id}) died: {reason}"
        if actor.name is not None and self.names.get((actor.namespace, actor.name)) == actor.actor_id:
            del self.names[(actor.namespace, actor.name)]
        if actor.http_sock is not None:
            actor.http_sock.close()
            actor.http_sock = None
        for _, fut in actor.waiters:
            if not fut.done():
                fut.set_result(("DEAD", actor.death_reason))
        actor.waiters.clear()
        actor.spec = {}
        self._resolve_ended(actor)
        self.dead_order.append(actor.actor_id)
        while len(self.dead_order) > MAX_DEAD_REMEMBERED:
            self.actors.pop(self.dead_order.pop(0), None)
        self._dead_logs.append(actor.actor_id)
        while len(self._dead_logs) > MAX_DEAD_LOGS:
            self._remove_logs(self._dead_logs.pop(0))

    def _resolve_ended(self, actor: _Actor) -> None:
        if actor.ended is not None and not actor.ended.done():
            actor.ended.set_result(None)
        actor.ended = None

    def _end(self, actor: _Actor, reason: str, *, no_restart: bool, graceful: bool) -> asyncio.Future[None]:
        """End the actor (its process group); the future resolves once ``_actor_exited`` ran.

        Graceful: ask the actor to stop (it cancels its coroutines, runs
        ``__ray_shutdown__`` within the shutdown timeout, exits) and kill its
        group if it has not ended STOP_GRACE later.  Force: kill the group now.
        """
        if actor.ended is None:
            actor.ended = self.loop.create_future()
        ended = actor.ended
        if actor.state == "DEAD":
            self._resolve_ended(actor)
            return ended
        if actor.restart_timer is not None:
            # Waiting out a restart back-off: there is no process to end.
            if no_restart:
                actor.restart_timer.cancel()
                actor.restart_timer = None
                self._bury(actor, reason)
            else:
                self._resolve_ended(actor)
            return ended
        if actor.kill_reason is None or not graceful:
            # The first reason stays (an owner exit is not renamed by the node stop that follows).
            actor.kill_reason = reason
            actor.no_restart = no_restart or actor.no_restart
        if actor.pid is None:
            return ended  # not forked yet: the "spawned" report kills it
        conn = actor.conn
        if graceful and conn is not None and not conn.closed:
            conn.push("stop", actor.kill_reason, self.shutdown_timeout)
            if actor.kill_timer is None:
                actor.kill_timer = self.loop.call_later(
                    self.shutdown_timeout + STOP_GRACE, self._kill_now, actor, actor.epoch
                )
        else:
            _kill_group(actor.pid)
        return ended

    def _kill_now(self, actor: _Actor, epoch: int) -> None:
        actor.kill_timer = None
        if actor.epoch == epoch and actor.pid is not None:
            _kill_group(actor.pid)

    # -- logs -----------------------------------------------------------------------

    async def _read_logs(self, actor: _Actor, fd: int, stream_no: int, epoch: int) -> None:
        pending = b""
        prefix_pid: int | None = None
        try:
            while True:
                try:
                    chunk = await self._read_fd(fd)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                if prefix_pid is None:
                    prefix_pid = actor.pid
                data = pending + chunk
                lines = data.split(b"\n")
                pending = lines.pop()
                if lines:
                    self._forward_lines(actor, stream_no, lines, prefix_pid)
            if pending:
                self._forward_lines(actor, stream_no, [pending], prefix_pid)
        finally:
            os.close(fd)
            if actor.epoch == epoch:
                actor.pipes_open -= 1
                if actor.pipes_open <= 0 and actor.pipes_closed is not None and not actor.pipes_closed.done():
                    actor.pipes_closed.set_result(None)

    def _read_fd(self, fd: int) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = self.loop.create_future()

        def readable() -> None:
            self.loop.remove_reader(fd)
            try:
                fut.set_result(os.read(fd, 1 << 16))
            except OSError as exc:
                fut.set_exception(exc)

        self.loop.add_reader(fd, readable)
        return fut

    def _forward_lines(self, actor: _Actor, stream_no: int, lines: list[bytes], pid: int | None) -> None:
        texts = [line.decode("utf-8", "replace") for line in lines]
        now = time.time()
        self._keep_lines(actor, stream_no, texts, pid, now)
        client = self._log_receiver(actor)
        if client is not None and client.primary is not None and not client.primary.closed:
            if client.log_to_driver:
                text = _format_lines(actor, stream_no, texts, pid, now, client.log_format)
                client.primary.push("log", stream_no, text)
        elif client is None:
            # Detached actors outlive their creators: their lines go to the node's own log
            # (and are kept for `actorloop logs`).
            stream = sys.stdout if stream_no == 1 else sys.stderr
            try:
                stream.write(_format_lines(actor, stream_no, texts, pid, now, self.log_format))
                stream.flush()
            except Exception:
                pass

    def _log_receiver(self, actor: _Actor) -> _Client | None:
        """The driver that shows ``actor``'s output: its owner, or its owner's owner for an actor's actor.

        An actor's output would otherwise reach the driver through its creator's
        own output, prefixed twice; None when the chain ends at a creator that is gone.
        """
        client = self.clients.get(actor.owner)
        for _ in range(1000):  # an owner chain is a tree path; the bound only guards against a cycle
            if client is None or client.actor_id is None:
                return client
            parent = self.actors.get(client.actor_id)
            if parent is None:
                return None
            client = self.clients.get(parent.owner)
        return None

    def _keep_lines(self, actor: _Actor, stream_no: int, texts: list[str], pid: int | None, now: float) -> None:
        """Append the lines to the actor's log file (for ``actorloop logs``), rotating it at LOG_FILE_BYTES."""
        if actor.log_bytes is None:
            return
        data = kept_chunk(now, pid, stream_no, texts)
        path = os.path.join(self.logs_dir, f"{actor.actor_id}.log")
        try:
            if actor.log_bytes and actor.log_bytes + len(data) > LOG_FILE_BYTES:
                os.replace(path, path + ".1")
                actor.log_bytes = 0
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            actor.log_bytes += len(data)
        except OSError as exc:
            # A full disk must not stop the node: the actor's lines still reach its driver.
            actor.log_bytes = None
            _log.warning("cannot keep the output of actor %s: %s", actor.actor_id, exc)

    def _remove_logs(self, actor_id: str) -> None:
        for suffix in (".log", ".log.1"):
            try:
                os.unlink(os.path.join(self.logs_dir, actor_id + suffix))
            except OSError:
                pass

    # -- clients ----------------------------------------------------------------------

    def client_gone(self, conn: NodeServerConnection) -> None:
        client = self.clients.get(conn.client_id or "")
        if client is None:
            return
        client.conns.discard(conn)
        if client.primary is conn:
            client.primary = None
        if client.conns:
            return
        del self.clients[client.client_id]
        # Segments it sent and nobody released; late enough that frames in flight have been mapped.
        self.loop.call_later(WRITER_GONE_GRACE, proto.remove_segments, self.dir, client.client_id)
        for actor in list(self.actors.values()):
            if actor.owner == client.client_id and not actor.detached and actor.state != "DEAD":
                self._end(actor, "its owner exited", no_restart=True, graceful=True)
        if self.embedded_parent is not None and client.pid == self.embedded_parent:
            self.loop.create_task(self.stop("the driver that started this embedded node exited"))

    # -- requests ----------------------------------------------------------------------

    def op_hello(
        self, conn: NodeServerConnection, client_id: str, role: str, pid: int, log_to_driver: bool, *rest: Any
    ) -> Any:
        if not isinstance(client_id, str) or not isinstance(role, str) or type(pid) is not int:
            # Checked before anything is kept: client_gone() looks the id up when the peer leaves.
            raise TypeError("hello takes a client id (str), a role (str) and a pid (int)")
        conn.client_id = client_id
        conn.role = role
        if role == "actor":
            actor_id, epoch = rest
            actor = self.actors.get(actor_id)
            if actor is None or actor.epoch != epoch or actor.state == "DEAD":
                raise RuntimeError("no such actor to start")
            conn.actor_id = actor_id
            actor.conn = conn
            client = self.clients.setdefault(client_id, _Client(client_id, pid, actor.spec["owner_namespace"]))
            client.actor_id = actor_id
            client.conns.add(conn)
            client.primary = conn
            client.log_to_driver = True
            if actor.args_ready is not None and not actor.args_ready.done():
                return self._spec_when_args_ready(actor)
            return {**actor.spec, "shutdown_timeout": self.shutdown_timeout, "metrics": self.dashboard is not None}
        namespace = rest[0] if rest else ""
        known = self.clients.get(client_id)
        if known is None:
            known = self.clients[client_id] = _Client(client_id, pid, namespace)
        known.conns.add(conn)
        client = known
        if role == "driver":
            client.primary = conn
            client.log_to_driver = log_to_driver
            if len(rest) > 1 and rest[1] in LOG_FORMATS:
                client.log_format = rest[1]
        return {"pid": os.getpid(), "dir": self.dir}

    async def _spec_when_args_ready(self, actor: _Actor) -> dict[str, Any]:
        assert actor.args_ready is not None
        await actor.args_ready
        return {**actor.spec, "shutdown_timeout": self.shutdown_timeout, "metrics": self.dashboard is not None}

    def op_set_args(self, conn: NodeServerConnection, actor_id: str, blob: bytes | None, error: str | None) -> None:
        """The creator resolved the refs among the constructor arguments (or one of them failed)."""
        actor = self.actors.get(actor_id)
        if actor is None or actor.owner != conn.client_id or actor.args_ready is None or actor.args_ready.done():
            return
        if isinstance(blob, bytes):
            actor.spec["args_blob"] = blob
        else:
            actor.spec["args_error"] = str(error)
        actor.args_ready.set_result(None)

    def op_create(self, conn: NodeServerConnection, spec: dict[str, Any]) -> Any:
        if self.stopping:
            raise RuntimeError("the node is stopping")
        name = spec["name"]
        namespace = spec["namespace"]
        if name is not None:
            existing_id = self.names.get((namespace, name))
            if existing_id is not None:
                existing = self.actors[existing_id]
                if spec["get_if_exists"]:
                    return (
                        existing.actor_id,
                        existing.spec["meta"],
                        existing.http_url,
                        existing.spec["caller_options"],
                        True,
                    )
                raise ValueError(f"the actor name {name!r} is already taken in namespace {namespace!r}")
        alive = sum(1 for a in self.actors.values() if a.state != "DEAD")
        if alive >= MAX_ACTORS:
            raise RuntimeError(f"this node already runs {alive} actors, its limit (MAX_ACTORS={MAX_ACTORS})")
        actor_id = secrets.token_hex(6)
        actor = _Actor(
            actor_id=actor_id,
            spec=spec,
            owner=conn.client_id or "",
            class_name=spec["class_name"],
            name=name,
            namespace=namespace,
            detached=spec["detached"],
            max_restarts=spec["max_restarts"],
        )
        if spec.get("args_blob") is None:
            actor.args_ready = self.loop.create_future()
        if spec["http"] is not None:
            from .. import _http

            host, port = spec["http"]
            actor.http_sock = _http.bind_http_socket(host, port)
            actor.http_url = _http.http_url(actor.http_sock)
        try:
            self._spawn(actor)
        except OSError as exc:
            # Roll back: the actor never existed, its name stays free.
            if actor.http_sock is not None:
                actor.http_sock.close()
            raise ActorDiedError(
                f"the actor {actor.class_name} ({actor_id}) died: could not start its process: {_spawn_failure(exc)}"
            ) from exc
        self.actors[actor_id] = actor
        if name is not None:
            self.names[(namespace, name)] = actor_id
        return actor_id, spec["meta"], actor.http_url, spec["caller_options"], False

    def op_wait_actor(self, conn: NodeServerConnection, actor_id: str, min_epoch: int) -> Any:
        actor = self.actors.get(actor_id)
        if actor is None:
            return ("DEAD", f"the actor {actor_id} is unknown to this node (it ended long ago, or the node restarted)")
        if actor.state == "DEAD":
            return ("DEAD", actor.death_reason)
        if actor.state == "ALIVE" and actor.epoch >= min_epoch:
            return ("ALIVE", actor.epoch, self._actor_path(actor), actor.last_reason)
        fut: asyncio.Future[Any] = self.loop.create_future()
        actor.waiters.append((min_epoch, fut))
        return fut

    def _actor_path(self, actor: _Actor) -> str:
        return os.path.join(self.dir, f"a-{actor.actor_id}.sock")

    def op_get_actor(self, conn: NodeServerConnection, name: str, namespace: str) -> Any:
        actor_id = self.names.get((namespace, name))
        actor = self.actors.get(actor_id) if actor_id else None
        if actor is None or actor.state == "DEAD":
            raise ValueError(f"no actor named {name!r} in namespace {namespace!r}")
        return actor.actor_id, actor.spec["meta"], actor.http_url, actor.spec["caller_options"]

    async def op_kill(
        self, conn: NodeServerConnection, actor_id: str, no_restart: bool, reason: str | None = None
    ) -> None:
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == "DEAD":
            return
        why = reason if isinstance(reason, str) and reason else "it was killed with actorloop.kill()"
        await self._end(actor, why, no_restart=no_restart, graceful=False)

    def op_release(self, conn: NodeServerConnection, actor_id: str) -> None:
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == "DEAD" or actor.detached or actor.name is not None:
            return
        if actor.owner != conn.client_id:
            return
        self._end(actor, "its creator dropped every handle to it", no_restart=True, graceful=True)

    def op_list(self, conn: NodeServerConnection) -> list[ActorInfo]:
        return [
            ActorInfo(
                a.actor_id, a.class_name, a.name, a.namespace, a.state, a.pid, a.detached, a.restarts, a.death_cause
            )
            for a in self.actors.values()
        ]

    def op_actors(self, conn: NodeServerConnection) -> list[dict[str, Any]]:
        """Every actor with all the CLI shows (``actorloop list``, ``logs``, ``kill``), as plain dicts."""
        return [
            {
                "actor_id": a.actor_id,
                "class_name": a.class_name,
                "name": a.name,
                "namespace": a.namespace,
                "state": a.state,
                "pid": a.pid,
                "restarts": a.restarts,
                "detached": a.detached,
                "http_url": a.http_url,
                "death_cause": a.death_cause,
                # All its output has been read (and kept): `actorloop logs -f` stops once a dead actor's is.
                "output_closed": a.pipes_open <= 0,
            }
            for a in self.actors.values()
        ]

    def op_status(self, conn: NodeServerConnection) -> dict[str, Any]:
        states: dict[str, int] = {}
        for a in self.actors.values():
            states[a.state] = states.get(a.state, 0) + 1
        return {
            "address": self.dir,
            "pid": os.getpid(),
            "uptime": time.time() - self.started,
            "actors": states,
            "embedded": self.embedded_parent is not None,
            "driver": self.embedded_parent,
            "dashboard_url": self.dashboard.url if self.dashboard is not None else None,
        }

    async def op_bye(self, conn: NodeServerConnection) -> None:
        """A client leaves: end its non-detached actors and deliver their last log lines first."""
        client = self.clients.get(conn.client_id or "")
        if client is None:
            return
        ended = []
        for actor in list(self.actors.values()):
            if actor.owner == client.client_id and not actor.detached and actor.state != "DEAD":
                pipes = actor.pipes_closed
                ended.append(self._end(actor, "its owner exited", no_restart=True, graceful=True))
                if pipes is not None:
                    ended.append(pipes)
        if ended:
            await asyncio.wait(ended, timeout=self.shutdown_timeout + STOP_GRACE + 0.5)

    async def op_dashboard(self, conn: NodeServerConnection, host: Any, port: Any) -> str:
        """Serve /metrics, /api/actors and the dashboard page on ``host:port``; returns the URL.

        A node serves one dashboard: asking again for the same host and port
        (or port 0) returns the running one's URL.
        """
        from . import _dashboard

        host, port = _dashboard.check_dashboard_address(host, port)
        if self.stopping:
            raise RuntimeError("the node is stopping")
        running = self.dashboard
        if running is not None:
            if port in (0, running.port) and host == running.host:
                return running.url
            raise ValueError(
                f"this node already serves its dashboard at {running.url}; a node has one dashboard "
                f"(ask for port {running.port} or 0, or stop the node to move it)"
            )
        from .. import _http

        try:
            sock = _http.bind_http_socket(host, port)
        except OSError as exc:
            err = OSError(
                str(exc).replace("HTTP port", "dashboard port") + "; choose another dashboard port, or 0 for a free one"
            )
            err.errno = exc.errno
            raise err from None
        except ValueError as exc:
            raise ValueError(str(exc).replace("HTTP", "dashboard")) from None
        # Set before it starts: a second request meanwhile gets this one (its socket already listens).
        dashboard = self.dashboard = _dashboard.Dashboard(self, sock, host)
        try:
            await dashboard.start()
        except BaseException:
            self.dashboard = None
            await dashboard.close()
            raise
        return dashboard.url

    def op_metrics_report(self, conn: NodeServerConnection, seq: int, snapshot: Any) -> None:
        """An actor's counters, asked for by the dashboard (a push "metrics")."""
        if self.dashboard is not None:
            self.dashboard.report(conn, seq, snapshot)

    async def op_stop(self, conn: NodeServerConnection) -> None:
        self.loop.call_later(0.05, lambda: self.loop.create_task(self.stop("actorloop stop")))

    # actor-only requests
    def op_ready(self, conn: NodeServerConnection, pid: int, log_name: str | None = None) -> None:
        actor = self.actors.get(conn.actor_id or "")
        if actor is None or actor.state == "DEAD":
            return
        if isinstance(log_name, str):
            actor.log_name = log_name  # the actor's own __repr__, for its log prefix (as Ray does)
        actor.state = "ALIVE"
        actor.alive_since = time.monotonic()
        path = self._actor_path(actor)
        keep = []
        for min_epoch, fut in actor.waiters:
            if fut.done():
                continue
            if actor.epoch >= min_epoch:
                fut.set_result(("ALIVE", actor.epoch, path, actor.last_reason))
            else:
                keep.append((min_epoch, fut))
        actor.waiters = keep

    def op_init_failed(self, conn: NodeServerConnection, reason: str) -> None:
        actor = self.actors.get(conn.actor_id or "")
        if actor is not None:
            actor.init_error = reason

    def op_exiting(self, conn: NodeServerConnection, reason: str, restartable: bool = False) -> None:
        """The actor is about to end on its own: exit_actor() (final) or sys.exit() (max_restarts applies)."""
        actor = self.actors.get(conn.actor_id or "")
        if actor is not None and actor.conn is conn:
            actor.exit_reason = reason
            actor.exit_restartable = bool(restartable)


class NodeServerConnection(proto.FrameProtocol):
    def __init__(self, node: Node) -> None:
        super().__init__(node.loop, expect_secret=node.secret)
        self.node = node
        self.client_id: str | None = None
        self.role = ""
        self.actor_id: str | None = None

    def frames_received(self, frames: list[bytes]) -> None:
        for data in frames:
            try:
                req_id, op, args = proto.loads(data)
                handler: Callable[..., Any] = getattr(self.node, "op_" + op)
            except Exception as exc:
                self.protocol_error(f"bad request: {exc}")
                return
            if self.client_id is None and op != "hello":
                self.protocol_error("a request before hello")
                return
            try:
                result = handler(self, *args)
            except Exception as exc:
                self._reply_error(req_id, exc)
                continue
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                self.node.loop.create_task(self._reply_later(req_id, result))
            elif req_id:
                self.send(proto.dumps((req_id, True, result)))

    async def _reply_later(self, req_id: int, awaitable: Any) -> None:
        try:
            result = await awaitable
        except Exception as exc:
            self._reply_error(req_id, exc)
            return
        if req_id and not self.closed:
            self.send(proto.dumps((req_id, True, result)))

    def _reply_error(self, req_id: int, exc: Exception) -> None:
        if is_fd_exhaustion(exc):
            exc = out_of_fds_error("the node", exc)
        if not isinstance(exc, (ValueError, TypeError, RuntimeError, OSError, KeyError, ActorDiedError)):
            _log.error("actorloop node: a request failed", exc_info=exc)
        if req_id and not self.closed:
            self.send(proto.dumps((req_id, False, proto.format_node_error(exc))))

    def push(self, *msg: Any) -> None:
        self.send(proto.dumps((0, *msg)))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.client_id is not None:
            self.node.client_gone(self)


def _kill_group(pid: int) -> None:
    """SIGKILL an actor and the processes it started: it leads a process group of its own."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _format_lines(actor: _Actor, stream_no: int, texts: list[str], pid: int | None, now: float, log_format: str) -> str:
    """Lines of an actor's output as its receiver wants them: prefixed text or JSON records."""
    if log_format == "json":
        head = json_head(
            t=now,
            actor_id=actor.actor_id,
            class_name=actor.class_name,
            name=actor.name,
            namespace=actor.namespace,
            pid=pid,
            stream_no=stream_no,
        )
        return "".join(json_line(head, text) for text in texts)
    prefix = f"({actor.log_name or actor.class_name} pid={pid if pid is not None else '?'}) "
    return "".join(prefix + text + "\n" for text in texts)


def _spawn_failure(exc: OSError) -> OSError:
    """Why a spawn failed; out of descriptors, the text names the limit and the fix."""
    return out_of_fds_error("the node", exc) if is_fd_exhaustion(exc) else exc
