"""The process-global runtime: this process's link to one node, and the home loop.

This module owns the one global (``get_runtime``); ``init()`` and
``shutdown()`` of the public API come down to ``start`` and ``stop`` here.
The *home loop* runs the node channel and sync callers' calls: a private
background thread in a driver (the "blocking portal" pattern: sync code
drives a loop in another thread), the actor's own loop inside an actor.
Other threads reach it only through its ``EntryQueue``.

After ``os.fork()`` the child starts with no runtime: the parent's home
loop thread does not exist there, so its refs raise instead of hanging, its
handles refuse calls, and its exit handlers never touch the parent's node,
segments or files.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import threading
import uuid
import weakref
from asyncio import events
from pickle import dumps as _pickle_dumps
from typing import TYPE_CHECKING, Any, Callable

from . import _pickle, _ref
from . import _protocol as proto
from ._connection import ActorConnection, NodeConnection, SyncNodeChannel, connect_unix
from ._entry import entry_for, running_here
from ._fds import raise_fd_limit
from ._meta import DEFAULT_GROUP, ClassMeta, env_vars_of
from ._node import EmbeddedNode, default_daemon_dir, node_running, trim_heap
from ._node._dirs import read_secret  # checks the directory and the secret before reading it
from ._pages import release_zero_pages
from ._ref import ObjectRef
from ._stream import ObjectRefGenerator, StreamState
from .exceptions import PendingCallsLimitExceeded, SerializationError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "ActorState",
    "Runtime",
    "current_lane",
    "get_runtime",
    "require_runtime",
    "self_call_of",
    "set_runtime",
    "start",
]

_get_running_loop = events._get_running_loop
_all_plain = proto.all_plain

_runtime: Runtime | None = None
_runtime_lock = threading.RLock()
#: In a task worker only (set by ``_tasks.TaskWorker``): what ``get``/``wait`` wrap a blocking wait
#: in, so that the task lends its worker slot meanwhile.  None elsewhere: get() pays one check.
task_lending: Callable[[list[ObjectRef[Any]]], AbstractContextManager[None]] | None = None


def get_runtime() -> Runtime | None:
    """This process's runtime, or None before ``init()`` (and after ``shutdown()``)."""
    return _runtime


def set_runtime(rt: Runtime | None) -> None:
    global _runtime
    _runtime = rt


def runtime_lock() -> threading.RLock:
    return _runtime_lock


def require_runtime() -> Runtime:
    """The process's runtime, calling ``init()`` first if nobody did (as Ray does)."""
    rt = _runtime
    if rt is not None:
        return rt
    with _runtime_lock:
        if _runtime is None:
            start()
    assert _runtime is not None
    return _runtime


def start(
    address: str | None = None,
    *,
    namespace: str | None = None,
    log_to_driver: bool = True,
    log_format: str = "text",
) -> Runtime:
    """Connect this process to a node (see ``actorloop.init``) and make it the process's runtime."""
    with _runtime_lock:
        if _runtime is not None:
            raise RuntimeError("actorloop is already initialized in this process")
        # Each actor this process calls holds a socket here: the usual soft limit of 1,024 is too few.
        raise_fd_limit()
        embedded: EmbeddedNode | None = None
        if address is None:
            address = os.environ.get("ACTORLOOP_ADDRESS") or None
            if address is None:
                daemon = default_daemon_dir()
                address = daemon if node_running(daemon) else "local"
        elif address == "auto":
            daemon = default_daemon_dir()
            if not node_running(daemon):
                raise ConnectionError(
                    f"no actorloop node is running at {daemon}; start one with `actorloop start` "
                    "(or call init() without an address to use an embedded node)"
                )
            address = daemon
        if address == "local":
            embedded = EmbeddedNode(log_format)
            node_dir = embedded.dir
        else:
            node_dir = os.path.abspath(address)
            if not node_running(node_dir):
                raise ConnectionError(f"no actorloop node answers at {node_dir}")
        try:
            rt = Runtime(
                node_dir,
                namespace or f"anonymous-{uuid.uuid4().hex[:12]}",
                log_to_driver,
                embedded_node=embedded,
            )
            rt.connect_node_sync(
                ("hello", rt.client_id, "driver", os.getpid(), log_to_driver, rt.namespace, log_format)
            )
        except BaseException:
            if embedded is not None:
                embedded.proc.kill()
                embedded.stop()
            raise
        if embedded is not None:
            # Processes this driver starts join its embedded node.
            os.environ["ACTORLOOP_ADDRESS"] = node_dir
        _ref.set_quiet(False)
        set_runtime(rt)
        # What actorloop needed is imported by now: the free heap its compilation left goes back
        # (about 1.3 MiB of the driver's USS without a bytecode cache; ~1 ms).
        trim_heap()
        return rt


def stop() -> None:
    """Disconnect the driver's runtime from its node (its actors end; an embedded node ends too)."""
    with _runtime_lock:
        rt = _runtime
        if rt is None or rt.role != "driver":
            return
        set_runtime(None)
        if rt.embedded_node is not None and os.environ.get("ACTORLOOP_ADDRESS") == rt.node_dir:
            del os.environ["ACTORLOOP_ADDRESS"]
        rt.shutdown()


# -- what a blocking get() needs to know to refuse a self-deadlock ---------------


class _CurrentLane(threading.local):
    """Set by an actor's method threads (``_worker._Lane``): which concurrency group this thread serves.

    ``get()`` reads it to tell a call that can only run on this very thread
    (a sync actor waiting on itself) from one that merely takes a while.
    """

    group: str | None = None
    #: Threads of the lane (sync methods of the group run on them, one call per thread).
    size = 0
    #: Calls of the group that may run at once (async methods of the group count against it).
    limit = 0


current_lane = _CurrentLane()

#: Calls an actor made to itself: ref -> (method, concurrency group, whether the method is async).
#: Only self-calls are recorded (a string compare per call elsewhere); entries go with their refs.
_self_calls: weakref.WeakKeyDictionary[ObjectRef[Any], tuple[str, str, bool]] = weakref.WeakKeyDictionary()


def self_call_of(ref: ObjectRef[Any]) -> tuple[str, str, bool] | None:
    """``(method, group, is_async)`` if ``ref`` is a call this actor made to itself, else None."""
    if not _self_calls:
        return None
    return _self_calls.get(ref)


# -- per-actor state in this process -------------------------------------------


class ActorState:
    """What this process knows of one actor; shared by all its handles here (an ``ActorLink``)."""

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
        self.secret = runtime.secret
        self.options_for_callers = caller_options
        self.max_task_retries: int = caller_options.get("max_task_retries", 0)
        self.max_pending_calls: int = caller_options.get("max_pending_calls", -1)
        self.created_here = created_here
        self.anonymous = anonymous
        self.passed_on = False
        # Handles made (any thread, under the lock) and dropped (counted on the
        # home loop only: a handle's __del__ may run inside any lock we hold).
        self.handles_made = 0
        self.handles_dropped = 0
        # Calls not finished, counted under the lock only for an actor with max_pending_calls (see pending).
        self._counted = 0
        self._lock = threading.Lock()
        self.conns: dict[asyncio.AbstractEventLoop, ActorConnection] = {}
        # The connection of the loop that called last: while that loop is still
        # the one running, submit need not ask asyncio which loop runs (see
        # _entry.running_here: a system call per ask on Python 3.10/3.11).
        self._last_conn: ActorConnection | None = None
        self.released = False

    # -- handle bookkeeping: an anonymous actor ends once its creator drops every handle

    def handle_made(self) -> None:
        with self._lock:
            self.handles_made += 1

    def handle_dropped(self) -> None:
        """Called from ``__del__``: takes no lock, only posts to the home loop."""
        self.runtime.entry.put(self._count_dropped)

    def _count_dropped(self) -> None:
        self.handles_dropped += 1
        self._release_if_unused()

    @property
    def pending(self) -> int:
        """Calls of this process to the actor not finished yet: in flight, or on their way to a loop.

        Read from the connections' tables rather than counted in ``submit``: a
        count shared by every calling thread needed a lock per call (~0.18 us
        of the ~7 us a gathered call costs its caller, timed on 3.11); only an
        actor with ``max_pending_calls`` counts them so (``_counted``).  A call
        is in its connection's table (or counted as queued from a thread)
        before ``.remote()`` returns, so a handle dropped after it sees it.
        """
        return sum(len(conn.pending) + conn.queued_from_threads for conn in list(self.conns.values()))

    def calls_finished(self, count: int) -> None:
        if self.max_pending_calls >= 0:
            with self._lock:
                self._counted -= count
        # A handle still alive keeps the actor: no lock, no count of pending calls per answer (a
        # sequential get() pays this per call).  A handle dropped meanwhile checks for itself
        # (_count_dropped), after its count went up: one of the two sees the other's work.
        if self.created_here and self.anonymous and self.handles_made <= self.handles_dropped:
            self._release_if_unused()

    def _release_if_unused(self) -> None:
        with self._lock:
            if self.pending > 0:
                self._forget_closed_loops()  # their calls must not keep the actor alive
            if not self._unused_now():
                return
            self.released = True
        self.runtime.release_actor(self.actor_id)

    def _forget_closed_loops(self) -> None:
        """Stop counting the calls of connections whose loop was closed without telling them (under the lock).

        A loop that ends as ``asyncio.run`` ends it tells its connections
        (``ActorConnection.loop_ended``); one closed without
        ``shutdown_asyncgens()`` does not, and their calls would count as
        pending forever.  Looked at where that count matters: the last handle
        dropped, ``max_pending_calls`` reached, a new connection made.  Each
        connection leaves the table here, under the lock: only one thread
        abandons it.
        """
        closed = [conn for loop, conn in self.conns.items() if loop.is_closed()]
        for conn in closed:
            del self.conns[conn.loop]  # out of the table, its calls no longer count (see pending)
            if self._last_conn is conn:
                self._last_conn = None
            abandoned = conn.abandon()
            if self.max_pending_calls >= 0:
                self._counted -= abandoned

    def _unused_now(self) -> bool:
        """An anonymous actor this process made, with no handle and no call left here (under the lock)."""
        return (
            not self.released
            and self.created_here
            and self.anonymous
            and not self.passed_on
            and self.handles_made <= self.handles_dropped
            and self.pending <= 0
        )

    # -- ActorLink -------------------------------------------------------------

    async def wait_actor(self, min_epoch: int) -> tuple[Any, ...]:
        return await self.runtime.wait_actor(self.actor_id, min_epoch)

    def connection_ended(self, conn: ActorConnection) -> None:
        with self._lock:
            if self.conns.get(conn.loop) is conn:
                del self.conns[conn.loop]
            if self._last_conn is conn:
                self._last_conn = None

    def quiet(self) -> bool:
        return self.runtime.closed

    # -- calls -----------------------------------------------------------------

    def submit(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group: str | None,
        stream_window: int = 0,
    ) -> Any:
        """Send a call; its ObjectRef (an ObjectRefGenerator when ``stream_window`` > 0: a generator method)."""
        rt = self.runtime
        if rt.closed:
            raise RuntimeError(rt.closed_reason())
        threadsafe = False
        conn = self._last_conn
        loop: asyncio.AbstractEventLoop | None
        if conn is not None and running_here(conn.loop):
            loop = conn.loop
        else:
            loop = _get_running_loop()
            if loop is None or loop.is_closed():
                loop = rt.home_loop
                threadsafe = True
            conn = self.conns.get(loop)
            if conn is None:
                conn = self._new_connection(loop, threadsafe)
            if not threadsafe:
                self._last_conn = conn
        if self.max_pending_calls >= 0:
            with self._lock:
                if self._counted >= self.max_pending_calls:
                    self._forget_closed_loops()
                    if self._counted >= self.max_pending_calls:
                        raise PendingCallsLimitExceeded(
                            f"{self.meta.class_name}.{method}: this caller already has {self._counted} calls "
                            f"pending (max_pending_calls={self.max_pending_calls})"
                        )
                self._counted += 1
        call_id = next(conn.ids)
        ref: ObjectRef[Any] = ObjectRef(loop=loop)  # _ref.make_ref, inline
        ref._conn = conn
        ref._call_id = call_id
        if rt.actor_id == self.actor_id:  # an actor calling itself: get() must know (see _CurrentLane)
            method_meta = self.meta.methods.get(method)
            target_group = group or (method_meta.group if method_meta else None) or DEFAULT_GROUP
            _self_calls[ref] = (method, target_group, bool(method_meta and method_meta.is_async))
        if stream_window:
            return self._submit_stream(conn, loop, threadsafe, call_id, ref, method, args, kwargs, group, stream_window)
        msg = (proto.CALL, call_id, method, args, kwargs, group)
        if _all_plain(args) and (not kwargs or _all_plain(kwargs.values())):
            # Small plain values, the usual arguments (and no ref among them): proto.dumps_call's
            # fast path, inline (two calls less: ~1,100 of the ~60,000 instructions a gathered
            # call costs its caller, callgrind on 3.11).
            payload = _pickle_dumps(msg, 5)
            if len(payload) > proto.MAX_FRAME_BYTES:
                self.calls_finished(1)
                where = f"{self.meta.class_name}.{method}"
                raise SerializationError(f"could not pickle the arguments of {where}: {proto.too_large(len(payload))}")
        elif _has_refs(args, kwargs):
            if threadsafe:
                conn.count_queued_from_thread(1)
                rt.entry.put(conn.send_call_with_refs_from_thread, call_id, ref, method, args, kwargs, group)
            else:
                conn.send_call_with_refs(call_id, ref, method, args, kwargs, group)
            return ref
        else:
            try:
                payload = proto.dumps_call(msg, args, kwargs)
            except Exception as exc:
                self.calls_finished(1)
                raise SerializationError(
                    f"could not pickle the arguments of {self.meta.class_name}.{method}: {exc}"
                ) from exc
        if not threadsafe:
            conn.send_call(call_id, payload, ref)
        elif not conn.call_from_thread(call_id, payload, ref):
            conn.count_queued_from_thread(1)
            rt.entry.put(conn.send_call_from_thread, call_id, payload, ref)
        return ref

    def _submit_stream(
        self,
        conn: ActorConnection,
        loop: asyncio.AbstractEventLoop,
        threadsafe: bool,
        call_id: int,
        ref: ObjectRef[Any],
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group: str | None,
        window: int,
    ) -> ObjectRefGenerator[Any]:
        """``submit`` of a generator method: ``ref`` completes when the generator ends (see ``_stream``)."""
        stream = StreamState(loop, conn, call_id, window, ref, f"{self.meta.class_name}.{method}")
        # Registered before the call leaves: its first items may come back at once.
        conn.streams[call_id] = stream
        gen: ObjectRefGenerator[Any] = ObjectRefGenerator(stream)
        if _has_refs(args, kwargs):
            if threadsafe:
                conn.count_queued_from_thread(1)
                self.runtime.entry.put(
                    conn.send_call_with_refs_from_thread, call_id, ref, method, args, kwargs, group, window
                )
            else:
                conn.send_call_with_refs(call_id, ref, method, args, kwargs, group, window)
            return gen
        try:
            payload = proto.dumps_call((proto.STREAM_CALL, call_id, method, args, kwargs, group, window), args, kwargs)
        except Exception as exc:
            conn.streams.pop(call_id, None)
            stream.ended = True
            self.calls_finished(1)
            raise SerializationError(
                f"could not pickle the arguments of {self.meta.class_name}.{method}: {exc}"
            ) from exc
        if not threadsafe:
            conn.send_call(call_id, payload, ref)
        elif not conn.call_from_thread(call_id, payload, ref):
            conn.count_queued_from_thread(1)
            self.runtime.entry.put(conn.send_call_from_thread, call_id, payload, ref)
        return gen

    def _new_connection(self, loop: asyncio.AbstractEventLoop, threadsafe: bool) -> ActorConnection:
        with self._lock:
            conn = self.conns.get(loop)
            if conn is not None:
                return conn
            self._forget_closed_loops()
            conn = ActorConnection(loop, self)
            self.conns[loop] = conn
        if threadsafe:
            self.runtime.entry.put(conn.start)
        else:
            conn.start()
        return conn


def _has_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a ref is among the arguments (it is sent once its value is there, see send_call_with_refs)."""
    for value in args:
        if isinstance(value, ObjectRef):
            return True
    return any(isinstance(value, ObjectRef) for value in kwargs.values()) if kwargs else False


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
        secret: bytes | None = None,
    ) -> None:
        self.node_dir = node_dir
        self.namespace = namespace
        self.log_to_driver = log_to_driver
        # 32 random hex digits, as uuid4().hex gives, without running uuid's code in each new actor.
        self.client_id = client_id or os.urandom(16).hex()
        self.role = role
        self.embedded_node = embedded_node
        # An actor is handed its node's secret by the zygote: it need not check and read the file.
        self.secret = secret if secret is not None else read_secret(node_dir)
        proto.set_shm_prefix(node_dir, self.client_id)
        self.node_socket = os.path.join(node_dir, "node.sock")
        self._actors: dict[str, ActorState] = {}
        self._actors_lock = threading.Lock()
        self._sync_channel: SyncNodeChannel | None = None
        self._sync_lock = threading.Lock()
        self.closed = False
        self.forked_away = False
        #: Set by init(): environment variables for every actor this process creates, and Ray's num_cpus.
        self.env_vars: dict[str, str] = {}
        self.num_cpus: int | None = None
        #: In an actor process: what the actor knows of itself (see actorloop.get_runtime_context()).
        self.actor_id: str | None = None
        self.actor_name: str | None = None
        self.actor_epoch = 0
        self.actor_meta: ClassMeta | None = None
        self.actor_http_url: str | None = None
        self.actor_caller_options: dict[str, Any] = {}
        self.job_id: str = self.client_id
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
        #: The one way into the home loop from other threads and finalizers.
        self.entry = entry_for(self.home_loop)
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

    def closed_reason(self) -> str:
        if self.forked_away:
            return (
                "this actor handle was made before this process was forked; it belongs to the parent. "
                "Call actorloop.init() in the child and get a handle there (actorloop.get_actor for named actors)"
            )
        return "actorloop.shutdown() was called: this handle's runtime is gone; call actorloop.init() again"

    # -- node channels -----------------------------------------------------

    async def connect_node(self, hello: tuple[Any, ...]) -> Any:
        """Open the async node channel on the home loop and say hello; returns the node's answer."""
        loop = self.home_loop
        _, conn = await loop.create_unix_connection(
            lambda: NodeConnection(loop, self.secret, self._on_push), sock=await connect_unix(self.node_socket)
        )
        self.node = conn
        return await conn.request(*hello)

    def connect_node_sync(self, hello: tuple[Any, ...]) -> Any:
        return self.entry.run(self.connect_node(hello)).result()

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
        cf = self.entry.run(self._wait_actor_home(actor_id, min_epoch))
        return await asyncio.wrap_future(cf)

    async def _wait_actor_home(self, actor_id: str, min_epoch: int) -> Any:
        node = self.node
        try:
            if node is None or node.closed:
                raise ConnectionError("the actorloop node ended")
            return await node.request("wait_actor", actor_id, min_epoch)
        except ConnectionError:
            # The node may have closed our channel before our question reached it; if it stopped
            # (rather than crashed), it told us why every actor of it ended before it closed.
            end = node.actor_end(actor_id) if node is not None else None
            if end is None:
                raise
            return ("DEAD", end)

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

    # -- actors ------------------------------------------------------------

    def create_actor(
        self,
        cls: type,
        meta: ClassMeta,
        options: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[ActorState, str | None]:
        """Register a new actor with the node; returns its state here and its HTTP URL."""
        try:
            class_blob = _pickle.dumps(cls)
        except Exception as exc:
            raise SerializationError(f"could not pickle actor class {cls.__name__}: {exc}") from exc
        # Refs among the arguments are resolved in the background: .remote() never waits for them.
        has_refs = any(isinstance(a, ObjectRef) for a in (*args, *kwargs.values()))
        args_blob: bytes | None = None
        if not has_refs:
            try:
                args_blob = _pickle.dumps((args, kwargs))
            except Exception as exc:
                raise SerializationError(
                    f"could not pickle the constructor arguments of {cls.__name__}: {exc}"
                ) from exc
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
            "env_vars": {**self.env_vars, **env_vars_of(options.get("runtime_env"), f"{cls.__name__}.options()")},
            "sys_path": list(sys.path),
            "cwd": os.getcwd(),
            "owner_namespace": self.namespace,
            "job_id": self.job_id,
        }
        actor_id, got_meta, http_url, got_caller_options, existed = self.node_request("create", spec)
        if has_refs and not existed:
            self.entry.run(self._send_args_when_ready(actor_id, cls.__name__, args, kwargs))
        if existed:
            return self.state_for(actor_id, got_meta, got_caller_options, created_here=False), http_url
        state = self.state_for(
            actor_id,
            handle_meta,
            caller_options,
            created_here=True,
            anonymous=name is None and lifetime != "detached",
        )
        return state, http_url

    async def _send_args_when_ready(
        self, actor_id: str, class_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Resolve the refs among an actor's constructor arguments, then hand the arguments to the node."""
        blob: bytes | None = None
        error: str | None = None
        try:
            real_args = tuple([await a if isinstance(a, ObjectRef) else a for a in args])
            real_kwargs = {k: (await v if isinstance(v, ObjectRef) else v) for k, v in kwargs.items()}
            blob = _pickle.dumps((real_args, real_kwargs))
        except BaseException as exc:  # noqa: BLE001 - the actor's constructor fails with it
            error = f"a constructor argument of {class_name} failed: {type(exc).__name__}: {exc}"
        node = self.node
        if node is not None:
            try:
                await node.request("set_args", actor_id, blob, error)
            except ConnectionError:
                pass

    def state_for(
        self,
        actor_id: str,
        meta: ClassMeta,
        caller_options: dict[str, Any],
        *,
        created_here: bool,
        anonymous: bool = False,
    ) -> ActorState:
        """The state shared by this process's handles to ``actor_id`` (made on first use)."""
        with self._actors_lock:
            state = self._actors.get(actor_id)
            if state is None or state.released:
                state = ActorState(self, actor_id, meta, caller_options, created_here, anonymous)
                self._actors[actor_id] = state
        return state

    def release_actor(self, actor_id: str) -> None:
        if self.closed:
            return
        with self._actors_lock:
            self._actors.pop(actor_id, None)
        self.entry.put(self._notify_release, actor_id)

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
                self.entry.run(self._bye()).result(timeout=10)
            except Exception:
                pass
        if self._sync_channel is not None:
            self._sync_channel.close()
        proto.segment_pool.close()
        if self._own_home_thread and not loop.is_closed():
            self.entry.put(loop.stop)
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

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
    release_zero_pages(loop)  # its unused receive buffer: 0.23 MiB of the driver's USS
    return loop


def _atexit_stop() -> None:
    _ref.set_quiet(True)  # refs failed or dropped from here on are part of exiting, not errors to report
    rt = _runtime
    if rt is not None and rt.role == "driver":
        stop()


def _after_fork_in_child() -> None:
    global _runtime
    # Reset in place, as _shm does its own (see _shm._forget_after_fork).
    _runtime_lock._at_fork_reinit()  # type: ignore[attr-defined]
    rt = _runtime
    _runtime = None
    if rt is None:
        return
    rt.closed = True
    rt.forked_away = True
    _ref.abandoned_loops.add(rt.home_loop)


atexit.register(_atexit_stop)
os.register_at_fork(after_in_child=_after_fork_in_child)
