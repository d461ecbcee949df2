"""The caller's side of actorloop: one ``Runtime`` per process.

Calls go straight to the actor's Unix socket.  Each event loop of the
process has its own connection per actor (``ActorConnection``), so
``await ref`` runs on the caller's loop with no thread hop.  Sync code uses
the *home loop*: a private background thread in a driver, the actor's own
loop inside an actor.  The node is reached on two channels: an async one on
the home loop (owner identity, log lines, waiting for actors) and a blocking
one any thread can use for short requests (create, kill, look-ups).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import itertools
import os
import socket
import sys
import threading
import traceback
import uuid
from asyncio import events
from typing import Any, Callable, cast

import cloudpickle

from . import _protocol as proto
from ._actor import ActorHandle, ClassMeta
from ._node._dirs import read_secret  # checks the directory and the secret before reading it
from ._ref import ObjectRef
from .exceptions import (
    ActorDiedError,
    PendingCallsLimitExceeded,
    SerializationError,
    _make_task_error,
)

_get_running_loop = events._get_running_loop

_runtime: Runtime | None = None
_runtime_lock = threading.RLock()


def get_runtime() -> Runtime | None:
    return _runtime


def get_or_init_runtime() -> Runtime:
    """The process's runtime, calling ``init()`` first if nobody did (as Ray does)."""
    rt = _runtime
    if rt is not None:
        return rt
    from ._api import init

    with _runtime_lock:
        if _runtime is None:
            init()
    assert _runtime is not None
    return _runtime


def set_runtime(rt: Runtime | None) -> None:
    global _runtime
    _runtime = rt


class RemoteNodeError(Exception):
    """Carries an error the node answered with, to be re-raised as its own class."""


_NODE_ERRORS: dict[str, type[BaseException]] = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "RuntimeError": RuntimeError,
    "OSError": OSError,
    "ConnectionError": ConnectionError,
    "ActorDiedError": ActorDiedError,
    "KeyError": KeyError,
}


def _raise_node_error(name: str, message: str) -> None:
    raise _NODE_ERRORS.get(name, RuntimeError)(message)


# -- node channels ------------------------------------------------------------


class SyncNodeChannel:
    """A blocking request/reply socket to the node, shared by all threads under a lock."""

    def __init__(self, path: str, secret: bytes, hello: tuple[Any, ...]) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise ConnectionError(f"cannot reach the actorloop node at {path}: {exc}") from exc
        self._sock.sendall(proto.make_hello(secret))
        self.request(*hello)

    def request(self, op: str, *args: Any) -> Any:
        with self._lock:
            req_id = next(self._ids)
            try:
                proto.send_frame_blocking(self._sock, proto.dumps((req_id, op, args)))
                reply = proto.loads(proto.recv_frame_blocking(self._sock))
            except (OSError, ConnectionError) as exc:
                raise ConnectionError(f"lost the connection to the actorloop node: {exc}") from exc
        _, ok, value = reply
        if not ok:
            _raise_node_error(*value)
        return value

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class NodeConnection(proto.FrameProtocol):
    """The async channel to the node on the home loop: requests, pushed log lines."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, secret: bytes, on_push: Callable[[tuple[Any, ...]], None]
    ) -> None:
        super().__init__(loop)
        self._secret = secret
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._on_push = on_push
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.write(proto.make_hello(self._secret))
        super().connection_made(transport)

    def request(self, op: str, *args: Any) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        if self.closed:
            fut.set_exception(ConnectionError("the connection to the actorloop node is closed"))
            return fut
        req_id = next(self._ids)
        self._waiting[req_id] = fut
        self.send(proto.dumps((req_id, op, args)))
        return fut

    def notify(self, op: str, *args: Any) -> None:
        if not self.closed:
            self.send(proto.dumps((0, op, args)))

    def frames_received(self, frames: list[bytes]) -> None:
        for data in frames:
            msg = proto.loads(data)
            req_id = msg[0]
            if req_id == 0:
                self._on_push(msg[1:])
                continue
            fut = self._waiting.pop(req_id, None)
            if fut is None or fut.done():
                continue
            _, ok, value = msg
            if ok:
                fut.set_result(value)
            else:
                try:
                    _raise_node_error(*value)
                except BaseException as exc:
                    fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the actorloop node ended"))
        self._waiting.clear()
        if not self.lost.done():
            self.lost.set_result(None)


# -- per-actor state in this process -------------------------------------------


class _Pending:
    __slots__ = ("ref", "payload", "retries_left")

    def __init__(self, ref: ObjectRef[Any], payload: bytes, retries_left: int) -> None:
        self.ref = ref
        self.payload = payload
        self.retries_left = retries_left


class ActorState:
    """What this process knows of one actor; shared by all its handles here."""

    def __init__(
        self,
        runtime: Runtime,
        actor_id: str,
        meta: ClassMeta,
        caller_options: dict[str, Any],
        created_here: bool,
        anonymous: bool,
    ) -> None:
        self.runtime = runtime
        self.actor_id = actor_id
        self.meta = meta
        self.options_for_callers = caller_options
        self.max_task_retries: int = caller_options.get("max_task_retries", 0)
        self.max_pending_calls: int = caller_options.get("max_pending_calls", -1)
        self.created_here = created_here
        self.anonymous = anonymous
        self.passed_on = False
        self.handles = 0
        self.pending = 0
        self._lock = threading.Lock()
        self.conns: dict[asyncio.AbstractEventLoop, ActorConnection] = {}
        self.released = False

    # handle bookkeeping: an anonymous actor ends once its creator drops every handle
    def handle_created(self, handle: ActorHandle[Any]) -> None:
        with self._lock:
            self.handles += 1

    def handle_deleted(self) -> None:
        with self._lock:
            self.handles -= 1
            release = self.handles <= 0 and self.pending <= 0
        if release:
            self._maybe_release()

    def _call_finished(self) -> None:
        with self._lock:
            self.pending -= 1
            release = self.handles <= 0 and self.pending <= 0
        if release:
            self._maybe_release()

    def _maybe_release(self) -> None:
        if self.released or not self.created_here or not self.anonymous or self.passed_on:
            return
        self.released = True
        self.runtime.release_actor(self.actor_id)

    def submit(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], group: str | None) -> ObjectRef[Any]:
        loop = _get_running_loop()
        rt = self.runtime
        threadsafe = False
        if loop is None or loop.is_closed():
            loop = rt.home_loop
            threadsafe = True
        conn = self.conns.get(loop)
        if conn is None:
            conn = self._new_connection(loop, threadsafe)
        with self._lock:
            if self.max_pending_calls >= 0 and self.pending >= self.max_pending_calls:
                raise PendingCallsLimitExceeded(
                    f"{self.meta.class_name}.{method}: this caller already has {self.pending} calls pending "
                    f"(max_pending_calls={self.max_pending_calls})"
                )
            self.pending += 1
        call_id = next(conn.ids)
        ref: ObjectRef[Any] = ObjectRef(loop, conn, call_id, self)
        has_refs = False
        for value in args:
            if isinstance(value, ObjectRef):
                has_refs = True
                break
        else:
            if kwargs:
                for value in kwargs.values():
                    if isinstance(value, ObjectRef):
                        has_refs = True
                        break
        if has_refs:
            if threadsafe:
                conn.count_queued_from_thread(1)

                def job() -> None:
                    conn.send_call_with_refs(call_id, ref, method, args, kwargs, group)
                    conn.count_queued_from_thread(-1)

                rt.post(job)
            else:
                conn.send_call_with_refs(call_id, ref, method, args, kwargs, group)
            return ref
        try:
            payload = proto.dumps_call((proto.CALL, call_id, method, args, kwargs, group), args, kwargs)
        except Exception as exc:
            self._call_finished()
            raise SerializationError(
                f"could not pickle the arguments of {self.meta.class_name}.{method}: {exc}"
            ) from exc
        if not threadsafe:
            conn.send_call(call_id, payload, ref)
        elif not conn.call_from_thread(call_id, payload, ref):
            conn.count_queued_from_thread(1)
            rt.post_call(conn, call_id, payload, ref)
        return ref

    def _new_connection(self, loop: asyncio.AbstractEventLoop, threadsafe: bool) -> ActorConnection:
        with self._lock:
            conn = self.conns.get(loop)
            if conn is not None:
                return conn
            for old_loop in [lp for lp in self.conns if lp.is_closed()]:
                del self.conns[old_loop]
            conn = ActorConnection(loop, self)
            self.conns[loop] = conn
        if threadsafe:
            loop.call_soon_threadsafe(conn.start)
        else:
            conn.start()
        return conn


class ActorConnection(proto.FrameProtocol):
    """One event loop's connection to one actor; survives restarts by reconnecting."""

    direct_writes = True

    def __init__(self, loop: asyncio.AbstractEventLoop, state: ActorState) -> None:
        super().__init__(loop)
        self.state = state
        self.ids = itertools.count(1)
        self.pending: dict[int, _Pending] = {}
        self.epoch = -1
        self.dead_error: str | None = None
        self._blocked: collections.deque[Callable[[], bool]] = collections.deque()
        self._secret = state.runtime.secret

    # -- connecting ----------------------------------------------------------

    def start(self) -> None:
        self.loop.create_task(self._guarded(self._connect(0)))

    async def _guarded(self, job: Any) -> None:
        """Run a (re)connecting job; if it is cancelled, its loop is shutting down (asyncio.run's end):
        stop for good, rather than let the closing transport start another job the loop never runs."""
        try:
            await job
        except asyncio.CancelledError:
            with self.state._lock:
                if self.state.conns.get(self.loop) is self:
                    del self.state.conns[self.loop]  # a later call on this loop gets a new connection
            self.dead_error = "the event loop of this connection was shut down while it reconnected"
            self._out = []
            for call_id in list(self.pending):
                self._fail(call_id, ActorDiedError(self.dead_error))
            if self.transport is not None:
                self.transport.abort()
            raise

    async def _connect(self, min_epoch: int) -> None:
        rt = self.state.runtime
        while True:
            try:
                status = await rt.wait_actor(self.state.actor_id, min_epoch)
            except ConnectionError as exc:
                self._die(f"the actorloop node is unreachable: {exc}")
                return
            if status[0] == "DEAD":
                self._die(status[1])
                return
            epoch, path = status[1], status[2]
            try:
                await self.loop.create_unix_connection(lambda: self, sock=await _connect_unix(path))
            except OSError:
                # The actor ended between the node's answer and our connect:
                # wait for whatever comes next (restart or death).
                min_epoch = epoch + 1
                continue
            self.epoch = epoch
            return

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.closed = False
        transport.write(proto.make_hello(self._secret))
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_direct_fd()
        self.transport = None
        self._buffer.clear()
        if self.dead_error is not None or self.loop.is_closed():
            return
        inflight = sorted(self.pending.items())
        self._out = []
        self.loop.create_task(self._guarded(self._recover(inflight)))

    async def _recover(self, inflight: list[tuple[int, _Pending]]) -> None:
        rt = self.state.runtime
        try:
            status = await rt.wait_actor(self.state.actor_id, self.epoch + 1)
        except ConnectionError as exc:
            status = ("DEAD", f"the actorloop node is unreachable: {exc}")
        if status[0] == "DEAD":
            self._die(status[1])
            return
        why = status[3] if len(status) > 3 else "it crashed"
        resend: list[bytes] = []
        for call_id, entry in inflight:
            if self.pending.get(call_id) is not entry:
                continue
            if entry.retries_left != 0:
                entry.retries_left -= 1 if entry.retries_left > 0 else 0
                resend.append(proto.frame(entry.payload))
            else:
                self._fail(
                    call_id, ActorDiedError(f"{self.state.meta.class_name} restarted while this call ran: {why}")
                )
        self._out = resend + self._out
        await self._connect(status[1])

    def _die(self, reason: str) -> None:
        self.dead_error = reason
        self._out = []
        for call_id in list(self.pending):
            self._fail(call_id, ActorDiedError(reason))
        while self._blocked:
            self._blocked.popleft()
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, call_id: int, error: BaseException) -> None:
        entry = self.pending.pop(call_id, None)
        if entry is None:
            return
        if not entry.ref.done():
            entry.ref.set_exception(error)
            entry.ref._wake_waiter()
        self.state._call_finished()

    # -- calls -----------------------------------------------------------------

    def send_call(self, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> None:
        if ref.done():  # cancelled before it left the process
            self.state._call_finished()
            return
        self.pending[call_id] = _Pending(ref, payload, self.state.max_task_retries)
        if self.dead_error is not None:
            self._fail(call_id, ActorDiedError(self.dead_error))
            return
        if self._blocked:
            self._blocked.append(lambda: self._send_now(payload))
        else:
            self.send(payload)

    def call_from_thread(self, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> bool:
        """Send a sync caller's call straight from its thread; False if it must go through the loop.

        Only a lone call goes straight out (the sequential case, where the hop
        to the loop costs most); while others are in flight, calls go through
        the loop, which sends each batch in one write.
        """
        if self.pending or self._fd < 0 or self.dead_error is not None or self._blocked or self.queued_from_threads:
            return False
        entry = _Pending(ref, payload, self.state.max_task_retries)
        # Registered before it is written: the answer may come back at once.
        self.pending[call_id] = entry
        try:
            if self.write_from_thread(payload):
                return True
        except OSError:
            return True  # half written on a broken socket: losing the connection settles the call
        if self.pending.get(call_id) is entry:
            self.pending.pop(call_id, None)
        return False

    def _send_now(self, payload: bytes) -> bool:
        self.send(payload)
        return True

    def send_call_with_refs(
        self,
        call_id: int,
        ref: ObjectRef[Any],
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group: str | None,
    ) -> None:
        """A call whose arguments include refs: it and every later call wait for them, in order."""
        if self.dead_error is not None:
            self.pending[call_id] = _Pending(ref, b"", 0)
            self._fail(call_id, ActorDiedError(self.dead_error))
            return
        task = self.loop.create_task(_resolve_refs(args, kwargs))

        def release() -> bool:
            if not task.done():
                return False
            if ref.done():
                self.state._call_finished()
                return True
            self.pending[call_id] = _Pending(ref, b"", 0)
            try:
                real_args, real_kwargs = task.result()
            except BaseException as exc:  # an argument's own call failed: so does this one
                self._fail(call_id, exc)
                return True
            try:
                payload = proto.dumps_call(
                    (proto.CALL, call_id, method, real_args, real_kwargs, group), real_args, real_kwargs
                )
            except Exception as exc:
                where = f"{self.state.meta.class_name}.{method}"
                self._fail(call_id, SerializationError(f"could not pickle the arguments of {where}: {exc}"))
                return True
            self.pending[call_id].payload = payload
            self.send(payload)
            return True

        self._blocked.append(release)
        task.add_done_callback(lambda _: self._drain_blocked())

    def _drain_blocked(self) -> None:
        while self._blocked:
            if not self._blocked[0]():
                return
            self._blocked.popleft()

    def cancel_call(self, call_id: int) -> None:
        """Cancel a call remotely; safe from any thread."""
        if _get_running_loop() is not self.loop:
            self.loop.call_soon_threadsafe(self.cancel_call, call_id)
            return
        entry = self.pending.pop(call_id, None)
        if entry is None:
            return
        self.state._call_finished()
        if self.dead_error is None:
            self.send(proto.dumps((proto.CANCEL, call_id)))

    def frames_received(self, frames: list[bytes]) -> None:
        pending = self.pending
        finished = 0
        for data in frames:
            try:
                msg = proto.loads(data, self.release_later)
            except Exception as exc:
                # A result this process cannot unpickle fails its own call, not the connection.
                msg = self._unreadable_result(data, exc)
            if msg[0] == proto.RELEASE:
                proto.segment_pool.release(msg[1])
                continue
            entry = pending.pop(msg[1], None)
            if entry is None:
                continue
            finished += 1
            ref = entry.ref
            if ref.done():
                continue
            kind = msg[0]
            if kind == proto.RESULT_OK:
                ref.set_result(msg[2])
            elif kind == proto.RESULT_ERR:
                ref.set_exception(self._error_from(msg))
            if ref._waiter is not None:
                ref._wake_waiter()
        state = self.state
        if finished:
            with state._lock:
                state.pending -= finished
                release = state.handles <= 0 and state.pending <= 0
            if release:
                state._maybe_release()

    def _unreadable_result(self, data: bytes, exc: Exception) -> tuple[Any, ...]:
        peeked = proto.peek_kind_and_id(data)
        call_id = peeked[1] if peeked is not None else None
        error = SerializationError(
            f"could not unpickle the result of a call to {self.state.meta.class_name}: {type(exc).__name__}: {exc}"
        )
        return (proto.RESULT_ERR, call_id, error, "SerializationError", str(error), "")

    def _error_from(self, msg: tuple[Any, ...]) -> BaseException:
        _, _, cause, type_name, message, remote_tb = msg
        if isinstance(cause, (ActorDiedError, SerializationError)) and not remote_tb:
            return cause
        text = f"{type_name}: {message}\n\nRemote traceback:\n{remote_tb}"
        return _make_task_error(text, cause, remote_tb)


async def _connect_unix(path: str) -> socket.socket:
    """A connected Unix socket.  EAGAIN means the listener's backlog is full (its loop is busy while many
    callers connect): wait and try again.  asyncio's own connect takes EAGAIN for a connection in progress
    and hands back a socket that is not connected."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        while True:
            try:
                sock.connect(path)
                return sock
            except BlockingIOError:
                await asyncio.sleep(0.005)
    except BaseException:
        sock.close()
        raise


async def _resolve_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    real_args = tuple([await a if isinstance(a, ObjectRef) else a for a in args])
    real_kwargs = {k: (await v if isinstance(v, ObjectRef) else v) for k, v in kwargs.items()}
    return real_args, real_kwargs


# -- the runtime -----------------------------------------------------------------


class Runtime:
    """This process's connection to one node."""

    def __init__(
        self,
        node_dir: str,
        namespace: str,
        log_to_driver: bool,
        *,
        home_loop: asyncio.AbstractEventLoop | None = None,
        client_id: str | None = None,
        role: str = "driver",
        embedded_node: Any = None,
    ) -> None:
        self.node_dir = node_dir
        self.namespace = namespace
        self.log_to_driver = log_to_driver
        self.client_id = client_id or uuid.uuid4().hex
        self.role = role
        self.embedded_node = embedded_node
        self.secret = read_secret(node_dir)
        proto.set_shm_prefix(node_dir, self.client_id)
        self.node_socket = os.path.join(node_dir, "node.sock")
        self._actors: dict[str, ActorState] = {}
        self._actors_lock = threading.Lock()
        self._posted: collections.deque[Any] = collections.deque()
        self._post_scheduled = False
        self._sync_channel: SyncNodeChannel | None = None
        self._sync_lock = threading.Lock()
        self.closed = False
        if home_loop is None:
            self._own_home_thread = True
            self.home_loop = _new_loop()
            started = threading.Event()
            self._home_thread = threading.Thread(
                target=self._run_home_loop, args=(started,), name="actorloop-home", daemon=True
            )
            self._home_thread.start()
            started.wait()
        else:
            self._own_home_thread = False
            self.home_loop = home_loop
        self.node: NodeConnection | None = None

    def _run_home_loop(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.home_loop)
        self.home_loop.call_soon(started.set)
        try:
            self.home_loop.run_forever()
        finally:
            try:
                self.home_loop.run_until_complete(self.home_loop.shutdown_asyncgens())
            except Exception:
                pass

    # -- node channels -----------------------------------------------------

    async def connect_node(self, hello: tuple[Any, ...]) -> Any:
        """Open the async node channel on the home loop and say hello; returns the node's answer."""
        loop = self.home_loop
        _, conn = await loop.create_unix_connection(
            lambda: NodeConnection(loop, self.secret, self._on_push), sock=await _connect_unix(self.node_socket)
        )
        self.node = conn
        return await conn.request(*hello)

    def connect_node_sync(self, hello: tuple[Any, ...]) -> Any:
        return asyncio.run_coroutine_threadsafe(self.connect_node(hello), self.home_loop).result()

    def node_request(self, op: str, *args: Any) -> Any:
        """A short blocking request to the node, from any thread (the home loop's too)."""
        channel = self._sync_channel
        if channel is None:
            with self._sync_lock:
                if self._sync_channel is None:
                    self._sync_channel = SyncNodeChannel(
                        self.node_socket,
                        self.secret,
                        ("hello", self.client_id, "sync", os.getpid(), False, self.namespace),
                    )
                channel = self._sync_channel
        return channel.request(op, *args)

    async def wait_actor(self, actor_id: str, min_epoch: int) -> tuple[Any, ...]:
        """Wait until the actor is alive at ``min_epoch`` or later (or dead), from any loop."""
        loop = _get_running_loop()
        if loop is self.home_loop:
            return await self._wait_actor_home(actor_id, min_epoch)  # type: ignore[no-any-return]
        cf = asyncio.run_coroutine_threadsafe(self._wait_actor_home(actor_id, min_epoch), self.home_loop)
        return await asyncio.wrap_future(cf)  # type: ignore[no-any-return]

    async def _wait_actor_home(self, actor_id: str, min_epoch: int) -> Any:
        node = self.node
        if node is None or node.closed:
            raise ConnectionError("the actorloop node ended")
        return await node.request("wait_actor", actor_id, min_epoch)

    def _on_push(self, msg: tuple[Any, ...]) -> None:
        op = msg[0]
        if op == "log":
            _, stream_no, text = msg
            stream = sys.stdout if stream_no == 1 else sys.stderr
            try:
                stream.write(text)
                stream.flush()
            except Exception:
                pass

    # -- posting work to the home loop from other threads -------------------

    def post(self, job: Callable[[], None]) -> None:
        self._posted.append(job)
        if not self._post_scheduled:
            self._post_scheduled = True
            self.home_loop.call_soon_threadsafe(self._run_posted)

    def post_call(self, conn: ActorConnection, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> None:
        self._posted.append((conn, call_id, payload, ref))
        if not self._post_scheduled:
            self._post_scheduled = True
            self.home_loop.call_soon_threadsafe(self._run_posted)

    def _run_posted(self) -> None:
        self._post_scheduled = False
        posted = self._posted
        while posted:
            item = posted.popleft()
            try:
                if type(item) is tuple:
                    item[0].send_call(item[1], item[2], item[3])
                    item[0].count_queued_from_thread(-1)
                else:
                    item()
            except Exception:
                traceback.print_exc()

    # -- actors ------------------------------------------------------------

    def create_actor(
        self,
        cls: type,
        meta: ClassMeta,
        options: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> ActorHandle[Any]:
        from ._actor import DEFAULT_GROUP

        if any(isinstance(a, ObjectRef) for a in args) or any(isinstance(v, ObjectRef) for v in kwargs.values()):
            if _get_running_loop() is not None:
                raise TypeError(
                    f"{cls.__name__}.remote(): ObjectRef constructor arguments can't be resolved inside a running "
                    "event loop; await them first and pass the values"
                )
            from ._api import get

            args = tuple(get(a) if isinstance(a, ObjectRef) else a for a in args)
            kwargs = {k: get(v) if isinstance(v, ObjectRef) else v for k, v in kwargs.items()}
        try:
            class_blob = cloudpickle.dumps(cls, 5)
        except Exception as exc:
            raise SerializationError(f"could not pickle actor class {cls.__name__}: {exc}") from exc
        try:
            args_blob = cloudpickle.dumps((args, kwargs), 5)
        except Exception as exc:
            raise SerializationError(f"could not pickle the constructor arguments of {cls.__name__}: {exc}") from exc
        groups = dict(options.get("concurrency_groups") or {})
        max_concurrency = options.get("max_concurrency")
        if max_concurrency is None:
            max_concurrency = 1000 if meta.is_async else 1
        handle_meta = ClassMeta(meta.class_name, meta.methods, meta.is_async, groups, meta.has_routes)
        lifetime = options.get("lifetime")
        name = options.get("name")
        caller_options = {
            "max_task_retries": options.get("max_task_retries", 0),
            "max_pending_calls": options.get("max_pending_calls", -1),
        }
        http = None
        if meta.has_routes:
            http = (options.get("http_host") or "127.0.0.1", options.get("http_port") or 0)
        spec = {
            "class_blob": class_blob,
            "args_blob": args_blob,
            "meta": handle_meta,
            "class_name": meta.class_name,
            "name": name,
            "namespace": options.get("namespace") or self.namespace,
            "detached": lifetime == "detached",
            "get_if_exists": bool(options.get("get_if_exists")),
            "max_restarts": options.get("max_restarts", 0),
            "max_concurrency": max_concurrency,
            "groups": groups,
            "default_group": DEFAULT_GROUP,
            "caller_options": caller_options,
            "http": http,
            "sys_path": list(sys.path),
            "cwd": os.getcwd(),
            "owner_namespace": self.namespace,
        }
        actor_id, got_meta, http_url, got_caller_options, existed = self.node_request("create", spec)
        if existed:
            return self.handle_for(actor_id, got_meta, http_url, got_caller_options, created_here=False)
        return self.handle_for(
            actor_id,
            handle_meta,
            http_url,
            caller_options,
            created_here=True,
            anonymous=name is None and lifetime != "detached",
        )

    def handle_for(
        self,
        actor_id: str,
        meta: ClassMeta,
        http_url: str | None,
        caller_options: dict[str, Any],
        *,
        created_here: bool,
        anonymous: bool = False,
    ) -> ActorHandle[Any]:
        with self._actors_lock:
            state = self._actors.get(actor_id)
            if state is None or state.released:
                state = ActorState(self, actor_id, meta, caller_options, created_here, anonymous)
                self._actors[actor_id] = state
        return ActorHandle(actor_id, meta, http_url, state)

    def release_actor(self, actor_id: str) -> None:
        if self.closed:
            return
        with self._actors_lock:
            self._actors.pop(actor_id, None)
        try:
            self.home_loop.call_soon_threadsafe(self._notify_release, actor_id)
        except RuntimeError:
            pass

    def _notify_release(self, actor_id: str) -> None:
        if self.node is not None:
            self.node.notify("release", actor_id)

    # -- ending ------------------------------------------------------------

    def shutdown(self) -> None:
        """Say goodbye to the node (it ends our actors and sends their last log lines), then stop."""
        if self.closed:
            return
        self.closed = True
        loop = self.home_loop
        if self.node is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._bye(), loop).result(timeout=10)
            except Exception:
                pass
        if self._sync_channel is not None:
            self._sync_channel.close()
        proto.segment_pool.close()
        if self._own_home_thread and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            self._home_thread.join(timeout=5)
            try:
                loop.close()
            except Exception:
                pass
        node = self.embedded_node
        if node is not None:
            node.stop()

    async def _bye(self) -> None:
        node = self.node
        if node is None or node.closed:
            return
        try:
            await asyncio.wait_for(node.request("bye"), 8)
        except Exception:
            pass
        node.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


def _atexit_shutdown() -> None:
    rt = _runtime
    if rt is not None and rt.role == "driver":
        from ._api import shutdown

        shutdown()


atexit.register(_atexit_shutdown)
