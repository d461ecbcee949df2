"""The actor process: one uvloop loop, a dispatcher, concurrency groups.

Each call runs in its concurrency group.  Async methods run as tasks on the
actor's loop, at most ``limit`` at once per group.  Sync methods never run
on the loop (it must stay free for the HTTP server and other groups): they
run on the group's worker threads.  In a sync actor each group is a FIFO
lane served by ``limit`` threads, so calls run in the order they arrived.

How an actor process ends (see ``ActorWorker.main``):

- the node asks it to stop (its handles were dropped, its owner exited, the
  node stops): running coroutines are cancelled, ``__ray_shutdown__`` runs
  within the node's shutdown timeout, then the process exits;
- ``exit_actor()``: the call returns None, then the same shutdown;
- ``sys.exit()`` in a method: the process exits with that code at once,
  without replying; the node may restart it (``max_restarts``);
- its node connection is lost: it exits.

A process forked inside a method (``os.fork()``) never runs any of this: it
exits as soon as the method returns or raises in it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import os
import queue
import socket
import sys
import threading
import traceback
from pickle import dumps as _pickle_dumps
from pickle import loads as _pickle_loads
from typing import Any, Callable, NoReturn

import cloudpickle

from . import _backend, _ref, _stats
from . import _protocol as proto
from ._meta import CALL_METHOD, DEFAULT_GROUP, EPOCH_PROBE, READY_METHOD, TERMINATE_METHOD, ClassMeta
from ._pages import release_zero_pages
from ._runtime import Runtime, current_lane, set_runtime
from ._stats import BOUNDS as _BOUNDS
from ._stats import bisect_left as _bisect_left
from ._stats import perf_counter as _perf_counter
from .exceptions import SerializationError

_OOB_BYTE = proto._OOB_BYTE
_SMALL_TYPES = proto._SMALL_TYPES
_RESULT_OK = proto.RESULT_OK
_MAX_FRAME_BYTES = proto.MAX_FRAME_BYTES
#: See ActorWorker.defer_at: ~16k calls in hand (~7 MB of _Calls and arguments) before further ones wait as frames.
_DEFER_AT = 16384
#: Start async calls as eager tasks (Python 3.12+, see ActorWorker._start).
_EAGER = sys.version_info >= (3, 12)
_Task = asyncio.Task
_current_worker: ActorWorker | None = None
#: True in a process forked inside an actor (by its user code), never in the actor itself.
_forked_in_actor = False


def _after_fork_in_child() -> None:
    global _forked_in_actor
    # The zygote forks actors before any worker exists; only a fork made by an
    # actor (os.fork() in a method) happens with a current worker.
    if _current_worker is not None:
        _forked_in_actor = True


# A flag read per call, rather than an os.getpid() system call per call.
os.register_at_fork(after_in_child=_after_fork_in_child)


class _ActorExit(BaseException):
    """Raised by ``exit_actor()``; the call returns None and the actor ends after it."""


#: How long ``__ray_shutdown__`` may run when the node did not say (exit_actor before a hello reply).
_DEFAULT_SHUTDOWN_TIMEOUT = 5.0


def exit_actor() -> NoReturn:
    """End the current actor after the current call, which returns ``None``.

    Call it from inside an actor method::

        @actorloop.remote
        class Job:
            def finish(self):
                actorloop.exit_actor()
    """
    if _current_worker is None:
        if _backend.current is not None:  # backend hook: inside a Ray actor
            _backend.current.exit_actor()
        raise RuntimeError("exit_actor() can only be called from inside an actor")
    raise _ActorExit()


class _Call:
    __slots__ = (
        "conn",
        "call_id",
        "name",
        "func",
        "args",
        "kwargs",
        "is_async",
        "group",
        "cancelled",
        "task",
        "fut",
        "stats",
        "t0",
        "stream",
    )

    def __init__(
        self,
        conn: ActorServerConnection | None,
        call_id: int,
        name: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        group: _Group,
    ) -> None:
        self.conn = conn
        self.call_id = call_id
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async
        self.group = group
        self.cancelled = False
        self.task: asyncio.Task[Any] | None = None
        self.fut: asyncio.Future[Any] | None = None
        # The method's metrics record and the time the actor got the call (metrics on only).
        self.stats: list[float] | None = None
        self.t0 = 0.0
        #: A generator call's items and credit (None for a plain call).
        self.stream: _Stream | None = None


class _StreamEnd:
    """Queued after a thread-run generator's last item: the call's final frame (None: no reply)."""

    __slots__ = ("frame",)

    def __init__(self, frame: bytes | None) -> None:
        self.frame = frame


class _Stream:
    """A generator call in this actor: the items yielded and not sent yet, and the caller's credit.

    The generator is suspended at its ``yield`` while ``produced - acked >=
    window`` (the caller's STREAM_ACK frames move ``acked``).  Items leave in
    batches: one STREAM_ITEMS frame per loop iteration, the call's result (the
    end) after them.  A generator run on a thread queues its end here too
    (``_StreamEnd``), so that it cannot overtake the items.
    """

    __slots__ = ("window", "produced", "acked", "out", "scheduled", "credit", "cond", "error")

    def __init__(self, window: int, threaded: bool) -> None:
        self.window = window
        self.produced = 0
        self.acked = 0
        self.out: collections.deque[Any] = collections.deque()
        self.scheduled = False
        #: An async producer waiting for credit.
        self.credit: asyncio.Future[None] | None = None
        #: A thread producer waits on this for credit.
        self.cond: threading.Condition | None = threading.Condition() if threaded else None
        #: Set when an item could not be pickled: the stream ends with it at that position.
        self.error: BaseException | None = None


class _Lane:
    """Worker threads for sync methods, started on demand up to ``size``; FIFO."""

    def __init__(self, worker: ActorWorker, name: str, size: int) -> None:
        self._worker = worker
        self._name = name
        self._size = size
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Threads waiting for a call: counted by the lane's threads, read by the loop.
        self._idle = 0
        self._idle_lock = threading.Lock()

    def idle_queue(self) -> bool:
        return self._queue.empty()

    def submit(self, call: _Call) -> None:
        self._queue.put(call)
        if len(self._threads) >= self._size:
            return  # all threads started (a lane of one, after its first call: no lock on this path)
        with self._idle_lock:
            start = self._idle == 0
        if start:
            thread = threading.Thread(
                target=self._run, name=f"actorloop-{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        # What get() on this thread needs to refuse waiting on a call that only this lane could run.
        current_lane.group = self._name
        current_lane.size = self._size
        current_lane.limit = self._worker.groups[self._name].limit
        get = self._queue.get
        idle_lock = self._idle_lock
        # Idle threads matter only while the lane may still start more; a lane of one never asks.
        counting = self._size > 1
        while True:
            if counting:
                with idle_lock:
                    self._idle += 1
            call = get()
            if counting:
                with idle_lock:
                    self._idle -= 1
            if call is None:
                return
            self._run_one(call)
            # Let go of the call before waiting for the next one: its arguments
            # may map shared memory that their sender wants back for reuse.
            del call

    def _run_one(self, call: _Call) -> None:
        worker = self._worker
        if call.stream is not None:
            worker.run_stream_in_thread(call)
            return
        if call.cancelled or worker.exiting:
            worker.post_done(call, None)
            return
        try:
            value = call.func(*call.args, **call.kwargs)
        except _ActorExit:
            _end_if_forked(None)
            worker.exiting = True  # no queued call starts after this one
            # The reply is handed over before the exit is requested: the request reaches the loop
            # after it, so the shutdown (which mutes replies) cannot overtake it.
            worker.post_done(call, worker.encode_ok(call, None))
            worker.exit_requested("the actor called actorloop.exit_actor()")
        except SystemExit as exc:
            _end_if_forked(exc)
            worker.system_exit(call, exc)
            worker.post_done(call, None)
        except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
            _end_if_forked(exc)
            worker.post_done(call, worker.encode_error(call, exc))
        else:
            if _forked_in_actor:  # checked inline: this is every call's path
                _end_if_forked(None)
            worker.post_done(call, worker.encode_ok(call, value))


class _Group:
    __slots__ = ("name", "limit", "active", "waiting", "lane", "direct")

    def __init__(self, name: str, limit: int, lane: _Lane, direct: bool) -> None:
        self.name = name
        self.limit = limit
        self.active = 0
        self.waiting: collections.deque[_Call] = collections.deque()
        self.lane = lane
        # direct: a sync actor's group; its lane alone enforces the limit and order.
        self.direct = direct


class ActorServerConnection(proto.FrameProtocol):
    """One caller's connection to this actor."""

    direct_writes = True

    def __init__(self, worker: ActorWorker) -> None:
        super().__init__(worker.loop, expect_secret=worker.secret)
        self.worker = worker
        self.running: dict[int, _Call] = {}
        # Calls beyond the worker's ``defer_at`` wait here as the frames they
        # came in (see frames_received), with the ids of those cancelled meanwhile.
        self.deferred: collections.deque[bytes] = collections.deque()
        self._cancelled_deferred: set[int] = set()
        self._drain_scheduled = False

    def frames_received(self, frames: list[bytes]) -> None:
        # Backpressure on calls: a caller may send far more calls than the
        # actor runs at once (a gather of 1,000,000).  Past ``defer_at`` calls
        # in hand on this connection, further calls stay the bytes they came in
        # (~80 bytes each) instead of becoming messages, _Calls and argument
        # tuples (~450 bytes); they are read in as calls finish.  Cancels,
        # credit, releases and ref values are still handled at once: calls
        # already running may wait for them.  Reading itself never stops.
        # A gather of 1,000,000 calls into an async actor peaked at +259 MiB
        # in the actor before (docs/benchmarks.md, "Where the time goes").
        room = self.worker.defer_at - len(self.running)
        if not self.deferred and len(frames) <= room:
            self._handle(frames)
        elif self.deferred or room <= 0:
            self._defer(frames)
        else:  # (counting every frame as a call: the few that are not only defer a little early)
            self._handle(frames[:room])
            self._defer(frames[room:])

    def _defer(self, frames: list[bytes]) -> None:
        deferred = self.deferred
        for data in frames:
            if _immediate_kind(data):
                try:
                    msg = proto.loads(data, self.release_later)
                    if msg[0] == proto.CANCEL and msg[1] not in self.running:
                        self._cancelled_deferred.add(msg[1])  # perhaps among the deferred: never start it
                except Exception:  # noqa: BLE001 - _handle reports it
                    pass
                self._handle([data])
            else:
                deferred.append(data)
                self.worker.frames_deferred += 1
        self.drain_soon()

    def drain_soon(self) -> None:
        """Read deferred calls in once the calls in hand fell below half of ``defer_at`` (on the loop)."""
        if self.deferred and not self._drain_scheduled and len(self.running) < self.worker.defer_at // 2:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self.closed:
            return
        deferred = self.deferred
        room = self.worker.defer_at - len(self.running)
        batch = [deferred.popleft() for _ in range(min(room, len(deferred)))]
        self._handle(batch, self._cancelled_deferred)
        if not deferred:
            self._cancelled_deferred.clear()

    def _handle(self, frames: list[bytes], cancelled: set[int] | None = None) -> None:
        if _EAGER and len(frames) > 1 and min(map(len, frames)) <= _CANCEL_MAX_BYTES:
            # A call cancelled right after it was made reaches us in the same
            # read as its cancel. On Python 3.12+ it would start (eagerly) as
            # soon as it was read, before the cancel was: such calls are
            # skipped. (Before 3.12 the cancel is read before the call's task
            # first runs, and the task gives up then.) Only short frames can
            # be cancels; the length test (~30 ns per frame, timeit on 3.12:
            # ~1% of a call) keeps the look off nearly every batch of calls.
            found = _cancels_among(frames)
            if found:
                cancelled = found if not cancelled else cancelled | found
        worker = self.worker
        release = self.release_later
        for data in frames:
            try:
                # proto.loads, inline for a frame without shared-memory segments (nearly all of them).
                msg = _pickle_loads(data) if data[0] != _OOB_BYTE else proto.loads(data, release)
                kind = msg[0]
                if kind == proto.CALL:
                    _, call_id, name, args, kwargs, group = msg
                    if cancelled and call_id in cancelled:
                        cancelled.discard(call_id)
                        continue
                    worker.dispatch(self, call_id, name, args, kwargs, group)
                elif kind == proto.CANCEL:
                    worker.cancel(self, msg[1])
                elif kind == proto.STREAM_ACK:
                    worker.stream_ack(self, msg[1], msg[2])
                elif kind == proto.STREAM_CALL:
                    _, call_id, name, args, kwargs, group, window = msg
                    if cancelled and call_id in cancelled:
                        cancelled.discard(call_id)
                        continue
                    worker.dispatch(self, call_id, name, args, kwargs, group, window)
                elif kind == proto.RELEASE:
                    proto.segment_pool.release(msg[1], self)
                elif kind == proto.REF_VALUE:
                    _ref.fulfil(self, msg)
                else:
                    raise ValueError(f"unknown message kind {kind!r}")
            except Exception as exc:
                # A frame we cannot read is either garbage or a class this actor
                # cannot import; answer the call if we can tell which one it was.
                call_id = _call_id_of(data)
                if call_id is not None:
                    self.send(worker.encode_error_for(call_id, "<arguments>", exc))
                else:
                    self.protocol_error(f"unreadable frame: {exc}")
                    return

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.deferred.clear()
        self.worker.connections.discard(self)
        # A stream's consumer is gone: stop its generator (it would wait for credit forever).
        for call in [c for c in self.running.values() if c.stream is not None]:
            self.worker.cancel(self, call.call_id)


# Message kinds handled at once even while calls are deferred (see frames_received).
_IMMEDIATE = frozenset({proto.CANCEL, proto.RELEASE, proto.REF_VALUE, proto.STREAM_ACK})


def _immediate_kind(data: bytes) -> bool:
    """Whether a frame is a message of an ``_IMMEDIATE`` kind, from its first bytes, without unpickling it.

    These messages are 2- to 4-tuples with a small int first, which pickle
    protocol 5 writes as PROTO 5, FRAME <8 bytes>, BININT1 <kind>.  A frame
    that looks different is taken for a call: at worst it waits its turn.
    """
    return len(data) > 12 and data[0] == 0x80 and data[2] == 0x95 and data[11] == 0x4B and data[12] in _IMMEDIATE


#: The longest CANCEL frame: (CANCEL, call_id) with a call id under 2**63 (LONG1 of 9 bytes) is 27 bytes;
#: a CALL frame is at least that long (no arguments, a one-letter name, an id under 256).
_CANCEL_MAX_BYTES = 27


def _cancels_among(frames: list[bytes]) -> set[int]:
    """The call ids of the CANCEL frames among ``frames`` (recognised as in ``_immediate_kind``)."""
    found: set[int] = set()
    for data in frames:
        if len(data) <= _CANCEL_MAX_BYTES and _immediate_kind(data) and data[12] == proto.CANCEL:
            try:
                found.add(_pickle_loads(data)[1])
            except Exception:  # noqa: BLE001 - _handle reports it
                pass
    return found


def _call_id_of(data: bytes) -> int | None:
    """Best effort: the call id of a CALL frame whose arguments could not be unpickled."""
    peeked = proto.peek_kind_and_id(data)
    return peeked[1] if peeked is not None and peeked[0] in (proto.CALL, proto.STREAM_CALL) else None


class ActorWorker:
    """Everything one actor process runs."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, actor_id: str, epoch: int, node_dir: str, secret: bytes
    ) -> None:
        self.loop = loop
        self.actor_id = actor_id
        self.epoch = epoch
        self.node_dir = node_dir
        self.secret = secret
        self.connections: set[ActorServerConnection] = set()
        #: Calls in hand on one connection past which its further calls are deferred (see
        #: ActorServerConnection.frames_received); above every group's limit, so none waits for a slot
        #: behind a deferred frame while a slot is free.
        self.defer_at = _DEFER_AT
        #: Frames deferred so far, all connections (tests look at it).
        self.frames_deferred = 0
        self.instance: Any = None
        self.class_name = "?"
        self.methods: dict[str, tuple[Callable[..., Any], bool, str]] = {}
        self.groups: dict[str, _Group] = {}
        self._done: collections.deque[tuple[_Call, bytes | None]] = collections.deque()
        self._done_scheduled = False
        self._exit_reason: str | None = None
        self.exit_code = 0
        self.http_server: Any = None
        self.runtime: Runtime | None = None
        #: How the actor is ending: None (it is not), "exit" (exit_actor), "sys.exit", or "stop" (the node asked).
        self.ending: str | None = None
        #: Set at once, from any thread, when the actor starts to end: no queued call starts after it.
        self.exiting = False
        self._restartable_exit = False
        #: Set once the actor shuts down: calls still running end without a reply
        #: (their callers see ActorDiedError), not with the CancelledError we caused.
        self.muted = False
        self._shutdown_timeout = _DEFAULT_SHUTDOWN_TIMEOUT
        self._exit_waiter: asyncio.Future[None] = loop.create_future()
        #: Per-method call counters (see ``_stats``), kept only while the node serves metrics.
        self.call_stats: dict[str, list[float]] | None = None
        #: name -> (method, is async, its group), for calls that name no group (see _bind_methods).
        self.routes: dict[str, tuple[Callable[..., Any], bool, _Group]] = {}

    # -- start-up ------------------------------------------------------------

    async def main(self, http_fd: int | None) -> None:
        global _current_worker
        _current_worker = self
        rt = _ActorRuntime(self, self.node_dir, "", False, home_loop=self.loop, role="actor", secret=self.secret)
        self.runtime = rt
        spec = await rt.connect_node(("hello", rt.client_id, "actor", os.getpid(), False, self.actor_id, self.epoch))
        rt.namespace = spec["owner_namespace"]
        if spec.get("metrics"):
            self.call_stats = {}
        self._shutdown_timeout = spec.get("shutdown_timeout", _DEFAULT_SHUTDOWN_TIMEOUT)
        # What actorloop.get_runtime_context() tells code in this actor.
        rt.actor_id = self.actor_id
        rt.actor_name = spec["name"]
        rt.actor_epoch = self.epoch
        rt.actor_meta = spec["meta"]
        rt.actor_caller_options = spec["caller_options"]
        rt.job_id = spec.get("job_id") or rt.client_id
        rt.env_vars = dict(spec.get("env_vars") or {})
        os.environ.update(rt.env_vars)
        set_runtime(rt)
        self.class_name = spec["class_name"]
        for entry in reversed(spec["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        try:
            os.chdir(spec["cwd"])
        except OSError:
            pass
        try:
            cls = cloudpickle.loads(spec["class_blob"])
            if spec.get("args_error"):
                raise RuntimeError(spec["args_error"])
            args, kwargs = cloudpickle.loads(spec["args_blob"])
            self._build_groups(spec["meta"], spec["groups"], spec["max_concurrency"])
            instance = cls.__new__(cls)
            init = getattr(cls, "__init__", None)
            if init is not None and inspect.iscoroutinefunction(init):
                await init(instance, *args, **kwargs)
            elif init is not None and init is not object.__init__ and spec["meta"].is_async:
                # An async actor's sync __init__ runs on its loop, as in Ray: it may create tasks.
                _run_forked_safe(init, instance, args, kwargs)
            elif init is not None and init is not object.__init__:
                # On a thread: a sync __init__ may block or call get() on other actors.
                await self.loop.run_in_executor(None, lambda: _run_forked_safe(init, instance, args, kwargs))
            self.instance = instance
            self._bind_methods(spec["meta"])
            log_name = _custom_repr(instance)
        except BaseException as exc:  # noqa: BLE001
            text = _format_user_traceback(exc)
            sys.stderr.flush()
            await rt.node.request("init_failed", f"the constructor of {self.class_name} raised:\n{text}")  # type: ignore[union-attr]
            self.exit_code = 1
            return
        path = os.path.join(self.node_dir, f"a-{self.actor_id}.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        server = await self.loop.create_unix_server(self._new_connection, path)
        if http_fd is not None:
            await self._start_http(http_fd)
        lost = rt.node.lost  # type: ignore[union-attr]
        await rt.node.request("ready", os.getpid(), log_name)  # type: ignore[union-attr]
        await asyncio.wait([lost, self._exit_waiter], return_when=asyncio.FIRST_COMPLETED)
        server.close()
        if self.ending is None:
            self.exit_code = 1  # the node is gone
            return
        if self.ending != "stop":
            # Let the last replies (exit_actor's None) leave before we go.
            for conn in list(self.connections):
                conn._flush()
                transport = conn.transport
                for _ in range(100):
                    if transport is None or transport.get_write_buffer_size() == 0:
                        break
                    await asyncio.sleep(0.005)
            if not lost.done():
                try:
                    await asyncio.wait_for(
                        rt.node.request("exiting", self._exit_reason, self._restartable_exit),  # type: ignore[union-attr]
                        2,
                    )
                except Exception:
                    pass
        if self.ending in ("exit", "stop"):
            await self._shutdown()

    async def _shutdown(self) -> None:
        """A graceful end: cancel running coroutines, then run ``__ray_shutdown__``, within the time limit."""
        self.muted = True
        limit = self._shutdown_timeout
        deadline = self.loop.time() + limit
        tasks = [
            call.task
            for conn in list(self.connections)
            for call in list(conn.running.values())
            if call.task is not None and not call.task.done()
        ]
        for task in tasks:
            task.cancel()
        for conn in list(self.connections):
            for call in list(conn.running.values()):
                stream = call.stream
                if stream is not None and stream.cond is not None:
                    call.cancelled = True  # a sync generator on a thread: closed at its next yield
                    _notify(stream.cond)
        waits: list[asyncio.Future[Any]] = list(tasks)
        if self.http_server is not None:
            # HTTP streams and WebSockets end as on a client disconnect (their finally blocks run), and
            # async handlers still running are cancelled, like the calls above.
            waits.append(self.loop.create_task(self.http_server.stop(limit)))
        if waits:
            await asyncio.wait(waits, timeout=limit)
        hook = getattr(self.instance, "__ray_shutdown__", None)
        if hook is None:
            return
        try:
            if inspect.iscoroutinefunction(hook):
                await asyncio.wait_for(hook(), max(0.0, deadline - self.loop.time()))
            else:
                # On a thread, so that the time limit holds for a hook that blocks too.
                await asyncio.wait_for(self.loop.run_in_executor(None, hook), max(0.0, deadline - self.loop.time()))
        except asyncio.TimeoutError:
            logging.getLogger("actorloop").warning(
                "%s.__ray_shutdown__() did not finish within %g s ($ACTORLOOP_SHUTDOWN_TIMEOUT of the node); "
                "the actor exits without it",
                self.class_name,
                limit,
            )
        except BaseException:  # noqa: BLE001 - the actor ends anyway; say why the hook failed
            logging.getLogger("actorloop").exception("%s.__ray_shutdown__() raised", self.class_name)

    def request_stop(self, reason: str, timeout: float) -> None:
        """The node asks this actor to end gracefully (on the loop thread)."""
        self._shutdown_timeout = timeout
        if self.instance is None:
            # Still constructing: there is nothing to shut down; end now.
            _flush_and_exit(0)
        if self.ending is None:
            self.ending = "stop"
            self.exiting = True
            self.muted = True
            self._exit_reason = reason
            _set_none_if_pending(self._exit_waiter)

    def _new_connection(self) -> ActorServerConnection:
        conn = ActorServerConnection(self)
        self.connections.add(conn)
        return conn

    def _build_groups(self, meta: ClassMeta, groups: dict[str, int], max_concurrency: int) -> None:
        is_async = meta.is_async
        all_groups = dict(groups)
        all_groups[DEFAULT_GROUP] = max_concurrency
        self.defer_at = max(_DEFER_AT, 2 * sum(limit for limit in all_groups.values() if limit > 0))
        for name, limit in all_groups.items():
            # An async actor's default group runs its sync methods one at a time,
            # as Ray runs them on the loop; other groups get `limit` threads.
            lane_size = 1 if (is_async and name == DEFAULT_GROUP) else limit
            self.groups[name] = _Group(name, limit, _Lane(self, name, lane_size), direct=not is_async)

    def _bind_methods(self, meta: ClassMeta) -> None:
        for name, mmeta in meta.methods.items():
            self.methods[name] = (getattr(self.instance, name), mmeta.is_async, mmeta.group or DEFAULT_GROUP)
        # Ray's built-in methods; a user method of the same name is not public (it starts with "_").
        self.methods[READY_METHOD] = (_ready, False, "")
        self.methods[CALL_METHOD] = (self._ray_call, False, DEFAULT_GROUP)
        self.methods[TERMINATE_METHOD] = (self._ray_terminate, False, DEFAULT_GROUP)
        # Each method that runs in its own group, with that group: dispatch's one lookup.
        # ready() answers at once and __ray_call__ may run a coroutine function: _route decides for those.
        self.routes = {
            name: (func, is_async, self.groups[group])
            for name, (func, is_async, group) in self.methods.items()
            if group in self.groups and name != CALL_METHOD
        }

    def _ray_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``handle.__ray_call__.remote(fn, *args)``: ``fn(actor, *args)`` in the actor (see ``dispatch``)."""
        return fn(self.instance, *args, **kwargs)

    def _ray_terminate(self) -> None:
        """``handle.__ray_terminate__.remote()``: end gracefully after this call, as ``exit_actor()`` does."""
        raise _ActorExit()

    async def _start_http(self, http_fd: int) -> None:
        from . import _http

        sock = socket.socket(fileno=http_fd)
        routes = _http.collect_routes(type(self.instance))
        self.http_server = await _http.start_http_server(self.instance, routes, sock, self.run_in_group, self.group_of)
        if self.runtime is not None:
            self.runtime.actor_http_url = _http.http_url(sock)

    # -- dispatch ------------------------------------------------------------

    def group_of(self, method: str) -> str:
        entry = self.methods.get(method)
        if entry is not None:
            return entry[2]
        func = getattr(type(self.instance), method, None)
        opts = getattr(func, "__actorloop_method__", None) or {}
        return opts.get("concurrency_group") or DEFAULT_GROUP

    def dispatch(
        self,
        conn: ActorServerConnection,
        call_id: int,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group_name: str | None,
        window: int = 0,
    ) -> None:
        if self.exiting:
            return  # the actor is ending: the caller sees ActorDiedError when it is gone
        # A call to a method in its own group (nearly all calls) finds everything
        # in one dict (see _bind_methods); _route handles the rest.
        route = self.routes.get(name) if group_name is None else None
        if route is not None:
            func, is_async, group = route
        else:
            other = self._route(conn, call_id, name, args, group_name)
            if other is None:
                return  # answered already
            func, is_async, group, args = other
        call = _Call(conn, call_id, name, func, args, kwargs, is_async, group)
        if self.call_stats is not None:
            self._count_started(call)
        if window:
            self._make_stream(call, window)
            is_async = call.is_async
        conn.running[call_id] = call
        # _schedule and _start, inline: this is every call's path (a call to _start
        # here cost ~0.8k more instructions per async call, ~2.5%: benchmarks/actor_path.py).
        if group.direct and not is_async:  # async here: a coroutine function given to __ray_call__
            group.lane.submit(call)
        elif group.active < group.limit:
            group.active += 1
            if not is_async:
                group.lane.submit(call)
            elif self.loop.get_task_factory() is not None:
                call.task = self.loop.create_task(self._run_async(call))
            elif _EAGER:  # see _start
                call.task = _Task(self._run_async(call), loop=self.loop, name=name, eager_start=True)  # type: ignore[call-arg]
            else:
                call.task = _Task(self._run_async(call), loop=self.loop, name=name)
        else:
            group.waiting.append(call)

    def _route(
        self, conn: ActorServerConnection, call_id: int, name: str, args: tuple[Any, ...], group_name: str | None
    ) -> tuple[Callable[..., Any], bool, _Group, tuple[Any, ...]] | None:
        """What runs a call that ``routes`` does not cover, and where; None once it was answered here."""
        entry = self.methods.get(name)
        if entry is None:
            conn.send(self.encode_error_for(call_id, name, AttributeError(f"{self.class_name} has no method {name!r}")))
            return None
        func, is_async, default_group = entry
        if not default_group:  # ready(): answers at once, we only run once __init__ finished
            value = self.epoch if args == (EPOCH_PROBE,) else None
            conn.send(proto.dumps_value((proto.RESULT_OK, call_id, value), None))
            return None
        if name == CALL_METHOD and args and inspect.iscoroutinefunction(args[0]):
            # An async function runs on the loop, with the actor as its first argument.
            func, is_async = functools.partial(args[0], self.instance), True
            args = args[1:]
        group = self.groups.get(group_name or default_group)
        if group is None:
            conn.send(
                self.encode_error_for(
                    call_id, name, ValueError(f"unknown concurrency group {group_name!r} for {self.class_name}.{name}")
                )
            )
            return None
        return func, is_async, group, args

    def _count_started(self, call: _Call) -> None:
        stats = self.call_stats
        assert stats is not None
        record = stats.get(call.name)
        if record is None:
            record = stats[call.name] = _stats.new_record()
        record[0] += 1  # _stats.STARTED
        call.stats = record
        call.t0 = _perf_counter()

    def _schedule(self, call: _Call) -> None:
        group = call.group
        if group.direct and not call.is_async:  # async here: a coroutine function given to __ray_call__
            group.lane.submit(call)
        elif group.active < group.limit:
            self._start(call, _EAGER)
        else:
            group.waiting.append(call)

    def _start(self, call: _Call, eager: bool = False) -> None:
        if self.exiting:
            return  # never started: its caller sees ActorDiedError once the actor is gone
        group = call.group
        group.active += 1
        if call.is_async:
            # The task is made here rather than by loop.create_task (unless the
            # actor set a task factory), and named after the method: on 3.11
            # that saves ~0.3 us per call, of which the default name
            # ("Task-<n>", formatted per task) is ~0.2 (a loop of 10,000
            # tasks on uvloop, 1.90 -> 1.61 us each).
            if self.loop.get_task_factory() is not None:
                call.task = self.loop.create_task(self._run_async(call))
            elif eager:
                # Python 3.12+: the method runs at once, up to its first real
                # wait, inside the task (current_task(), timeouts, contextvars
                # and cancellation as in any task); one that never waits
                # finishes here, with no trip through the loop's queue.
                # Not for calls started by _finished: a chain of them would
                # nest one call inside the other.
                call.task = _Task(self._run_async(call), loop=self.loop, name=call.name, eager_start=True)  # type: ignore[call-arg]
            else:
                call.task = _Task(self._run_async(call), loop=self.loop, name=call.name)
        else:
            group.lane.submit(call)

    def _finished(self, group: _Group) -> None:
        group.active -= 1
        if group.waiting:
            self._start_waiting(group)

    def _start_waiting(self, group: _Group) -> None:
        waiting = group.waiting
        while waiting and group.active < group.limit:
            call = waiting.popleft()
            if not call.cancelled:
                self._start(call)

    async def _run_async(self, call: _Call) -> None:
        frame: bytes | None
        if call.cancelled:  # cancelled before its task first ran (see cancel): only give back the slot
            self._complete(call, None)
            self._finished(call.group)
            return
        try:
            value = await call.func(*call.args, **call.kwargs)
        except asyncio.CancelledError as exc:
            _end_if_forked(exc)
            frame = None
            if call.fut is not None:  # an HTTP handler's (HttpServer.stop): its request ends too
                call.fut.cancel()
            elif not call.cancelled and not self.muted:
                frame = self.encode_error(call, asyncio.CancelledError("the call was cancelled inside the actor"))
        except _ActorExit:
            _end_if_forked(None)
            self.exit_requested("the actor called actorloop.exit_actor()")
            frame = self.encode_ok(call, None)
        except SystemExit as exc:
            _end_if_forked(exc)
            self.system_exit(call, exc)
            frame = None
        except BaseException as exc:  # noqa: BLE001
            _end_if_forked(exc)
            frame = self.encode_error(call, exc)
        else:
            if _forked_in_actor:  # checked inline: this is every call's path
                _end_if_forked(None)
            frame = self.encode_ok(call, value)
        # _complete and _finished, inline: every async call ends here.
        conn = call.conn
        if conn is not None:
            conn.running.pop(call.call_id, None)
            if conn.deferred:
                conn.drain_soon()
            if frame is not None and not call.cancelled and not conn.closed and not self.muted:
                conn.send(frame)
        group = call.group
        group.active -= 1
        if group.waiting:
            self._start_waiting(group)

    def _complete(self, call: _Call, frame: bytes | None) -> None:
        conn = call.conn
        if conn is not None:
            conn.running.pop(call.call_id, None)
            if conn.deferred:
                conn.drain_soon()
            if frame is not None and not call.cancelled and not conn.closed and not self.muted:
                conn.send(frame)
        # HTTP calls carry a future instead of a connection; encode_* set it.

    def cancel(self, conn: ActorServerConnection, call_id: int) -> None:
        call = conn.running.pop(call_id, None)
        if call is None:
            return
        call.cancelled = True
        if call.stats is not None:
            call.stats[_stats.CANCELLED] += 1
        if call.task is not None:
            if inspect.getcoroutinestate(call.task.get_coro()) != inspect.CORO_CREATED:  # type: ignore[arg-type]
                call.task.cancel()
            # else: not started yet.  Cancelling that task would close _run_async
            # unrun, and the call's concurrency slot would never come back; it
            # starts, sees call.cancelled and gives the slot back.
        elif call.stream is not None and call.stream.cond is not None:
            _notify(call.stream.cond)  # a thread waiting for credit: it closes the generator

    # -- streams (generator methods) ---------------------------------------------

    def _make_stream(self, call: _Call, window: int) -> None:
        """Make ``call`` a stream: an async generator runs as a task on the loop, a sync one on a thread."""
        func = call.func
        if inspect.isasyncgenfunction(func):
            call.stream = _Stream(window, threaded=False)
            call.func = functools.partial(self._run_stream_async, call, func)
            call.is_async = True
        else:
            # A sync generator runs where the actor's sync methods run (its group's threads).
            call.stream = _Stream(window, threaded=True)
            call.is_async = False

    def stream_ack(self, conn: ActorServerConnection, call_id: int, consumed: int) -> None:
        call = conn.running.get(call_id)
        stream = call.stream if call is not None else None
        if stream is None or consumed <= stream.acked:
            return
        stream.acked = consumed
        credit = stream.credit
        if credit is not None:
            stream.credit = None
            _set_none_if_pending(credit)
        elif stream.cond is not None:
            _notify(stream.cond)

    def _queue_item(self, call: _Call, stream: _Stream, item: Any) -> None:
        """An item yielded on the loop: it leaves with the others of this loop iteration."""
        stream.out.append(item)
        stream.produced += 1
        if not stream.scheduled:
            stream.scheduled = True
            self.loop.call_soon(self._flush_stream, call)

    def _flush_stream(self, call: _Call) -> None:
        """Send the items queued (on the loop); a thread's end marker completes the call after them."""
        stream = call.stream
        assert stream is not None
        stream.scheduled = False
        out = stream.out
        items: list[Any] = []
        end: _StreamEnd | None = None
        while out:
            item = out.popleft()
            if type(item) is _StreamEnd:
                end = item
                break
            items.append(item)
        conn = call.conn
        if items and stream.error is None and not call.cancelled and not self.muted and conn is not None:
            self._send_items(call, stream, conn, items)
        if end is not None:
            frame = end.frame
            if stream.error is not None and not call.cancelled:
                frame = self.encode_error(call, stream.error, with_traceback=False)
            self._complete(call, frame)
            if not call.group.direct:
                self._finished(call.group)

    def _send_items(self, call: _Call, stream: _Stream, conn: ActorServerConnection, items: list[Any]) -> None:
        if conn.closed:
            return
        try:
            conn.send(proto.dumps_items((proto.STREAM_ITEMS, call.call_id, items), items))
            return
        except Exception:
            pass
        # One of them cannot be pickled: send those before it; the stream ends with the error there.
        good: list[Any] = []
        for index, item in enumerate(items):
            try:
                proto.dumps_items((proto.STREAM_ITEMS, call.call_id, [item]), [item])
            except Exception as exc:
                stream.error = SerializationError(
                    f"could not pickle item {stream.produced - len(items) + index} of {self.class_name}.{call.name}: "
                    f"{exc}"
                )
                break
            good.append(item)
        if good:
            conn.send(proto.dumps_items((proto.STREAM_ITEMS, call.call_id, good), good))
        credit = stream.credit
        if credit is not None and not credit.done():
            stream.credit = None
            credit.set_exception(stream.error)  # type: ignore[arg-type]
        elif stream.cond is not None:
            _notify(stream.cond)

    async def _run_stream_async(self, call: _Call, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """The body of an async generator call (run by ``_run_async`` in the call's group)."""
        stream = call.stream
        assert stream is not None
        agen = func(*args, **kwargs)
        loop = self.loop
        try:
            async for item in agen:
                self._queue_item(call, stream, item)
                if stream.error is not None:
                    break
                if stream.produced - stream.acked >= stream.window:
                    # Suspended at its yield until the consumer catches up; a cancel raises here.
                    credit = stream.credit = loop.create_future()
                    await credit
        finally:
            try:
                # Left early (cancelled, an item that cannot be pickled): GeneratorExit at its yield.
                await agen.aclose()
            finally:
                # The items before the end leave before the call's result.
                if stream.out:
                    self._flush_stream(call)
        if stream.error is not None:
            raise stream.error

    def run_stream_in_thread(self, call: _Call) -> None:
        """The body of a sync generator call, on one of its group's threads."""
        stream = call.stream
        assert stream is not None
        frame: bytes | None = None
        if call.cancelled or self.exiting:
            self._end_thread_stream(call, stream, None)
            return
        gen: Any = None
        try:
            gen = call.func(*call.args, **call.kwargs)
            if not inspect.isgenerator(gen):
                if inspect.iscoroutine(gen):
                    gen.close()
                raise TypeError(
                    f"{self.class_name}.{call.name} was called as a stream (num_returns='streaming') but returned "
                    f"{type(gen).__name__}, not a generator"
                )
            loop = self.loop
            cond = stream.cond
            assert cond is not None
            for item in gen:
                stream.out.append(item)
                stream.produced += 1
                if not stream.scheduled:
                    stream.scheduled = True
                    loop.call_soon_threadsafe(self._flush_stream, call)
                if stream.produced - stream.acked >= stream.window or call.cancelled:
                    with cond:
                        while (
                            stream.produced - stream.acked >= stream.window
                            and not call.cancelled
                            and stream.error is None
                        ):
                            cond.wait(1.0)  # woken by credit or a cancel; the timeout is a safety net
                if call.cancelled or stream.error is not None:
                    break
            gen.close()  # early exit: GeneratorExit at its yield, its finally runs here
            if not call.cancelled:
                frame = self.encode_ok(call, None)
        except _ActorExit:
            _end_if_forked(None)
            self.exit_requested("the actor called actorloop.exit_actor()")
            frame = self.encode_ok(call, None)
        except SystemExit as exc:
            _end_if_forked(exc)
            self.system_exit(call, exc)
        except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
            _end_if_forked(exc)
            frame = self.encode_error(call, exc)
        else:
            if _forked_in_actor:
                _end_if_forked(None)
        finally:
            gen = None
        self._end_thread_stream(call, stream, frame)

    def _end_thread_stream(self, call: _Call, stream: _Stream, frame: bytes | None) -> None:
        stream.out.append(_StreamEnd(frame))
        # Always a flush of its own: the end completes the call, even if a flush is already scheduled.
        stream.scheduled = True
        self.loop.call_soon_threadsafe(self._flush_stream, call)

    # -- results from worker threads ----------------------------------------

    def post_done(self, call: _Call, frame: bytes | None) -> None:
        conn = call.conn
        if (
            frame is not None
            and call.group.direct
            and conn is not None
            and not call.cancelled
            and not self.muted
            and not self._done
            and call.group.lane.idle_queue()
        ):
            # A sync actor's last result for now leaves from the worker thread
            # itself; while more work is queued, results gather on the loop and
            # leave in one write.
            try:
                written = conn.write_from_thread(frame)
            except OSError:
                written = True  # the caller is gone
            if written:
                conn.running.pop(call.call_id, None)
                if conn.deferred:
                    self.loop.call_soon_threadsafe(conn.drain_soon)
                return
        self._done.append((call, frame))
        if not self._done_scheduled:
            self._done_scheduled = True
            self.loop.call_soon_threadsafe(self._drain_done)

    def _drain_done(self) -> None:
        self._done_scheduled = False
        done = self._done
        muted = self.muted
        while done:
            call, frame = done.popleft()
            # _complete, inline: while a sync actor is busy, every call ends here.
            conn = call.conn
            if conn is not None:
                conn.running.pop(call.call_id, None)
                if conn.deferred:
                    conn.drain_soon()
                if frame is not None and not call.cancelled and not conn.closed and not muted:
                    conn.send(frame)
            if not call.group.direct:
                self._finished(call.group)

    # -- encoding replies ------------------------------------------------------

    def encode_ok(self, call: _Call, value: Any) -> bytes | None:
        if type(value) in _SMALL_TYPES and call.stats is None and call.fut is None:
            # proto.dumps_value, inline for a small plain result (nearly every call); a frame
            # over the limit (a huge str or int) goes the long way below, which refuses it.
            frame = _pickle_dumps((_RESULT_OK, call.call_id, value), 5)
            if len(frame) <= _MAX_FRAME_BYTES:
                return frame
        record = call.stats
        if record is not None:  # metrics on; inline, as _stats.call_ended(record, call.t0, FINISHED)
            dt = _perf_counter() - call.t0
            record[1] += 1
            record[4] += dt
            record[5 + _bisect_left(_BOUNDS, dt)] += 1
        if call.fut is not None:
            self._resolve_future(call.fut, value, None)
            return None
        try:
            return proto.dumps_value((proto.RESULT_OK, call.call_id, value), value)
        except Exception as exc:
            error = SerializationError(f"could not pickle the result of {self.class_name}.{call.name}: {exc}")
            if call.stats is not None:  # counted as finished above: it failed after all
                call.stats[_stats.FINISHED] -= 1
                call.stats[_stats.FAILED] += 1
            return self.encode_error_for(call.call_id, call.name, error, False)

    def encode_error(self, call: _Call, exc: BaseException, with_traceback: bool = True) -> bytes | None:
        record = call.stats
        if record is not None:  # metrics on; inline, as _stats.call_ended(record, call.t0, FAILED)
            dt = _perf_counter() - call.t0
            record[2] += 1
            record[4] += dt
            record[5 + _bisect_left(_BOUNDS, dt)] += 1
        if call.fut is not None:
            self._resolve_future(call.fut, None, exc)
            return None
        return self.encode_error_for(call.call_id, call.name, exc, with_traceback)

    def encode_error_for(self, call_id: int, name: str, exc: BaseException, with_traceback: bool = True) -> bytes:
        tb = _format_user_traceback(exc) if with_traceback else ""
        tb = f"{self.class_name}.{name}() in actor pid={os.getpid()}:\n{tb}" if tb else ""
        type_name = type(exc).__name__
        message = str(exc)
        try:
            return proto.dumps((proto.RESULT_ERR, call_id, exc, type_name, message, tb))
        except Exception:
            return proto.dumps((proto.RESULT_ERR, call_id, None, type_name, message, tb))

    def _resolve_future(self, fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
        def resolve() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

        if threading.get_ident() == self._loop_thread:
            resolve()
        else:
            self.loop.call_soon_threadsafe(resolve)

    # -- in-process calls (HTTP handlers) ----------------------------------------

    async def run_in_group(
        self, group_name: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``func`` in a concurrency group as a call would run, and return its value."""
        group = self.groups.get(group_name) or self.groups[DEFAULT_GROUP]
        is_async = inspect.iscoroutinefunction(func)
        if is_async and not group.direct and group.active < group.limit:
            # A free slot: run in the request's own task, without a task and a future of
            # its own (about 10% of a small request's cost); the slot counts as any call's.
            group.active += 1
            try:
                value = await func(*args, **kwargs)
            except _ActorExit:
                _end_if_forked(None)
                self.exit_requested("the actor called actorloop.exit_actor()")
                return None
            except SystemExit as exc:
                _end_if_forked(exc)
                self.system_exit(None, exc)
                raise
            except BaseException as exc:
                _end_if_forked(exc)
                raise
            finally:
                self._finished(group)
            if _forked_in_actor:
                _end_if_forked(None)
            return value
        call = _Call(None, 0, getattr(func, "__name__", "handler"), func, args, kwargs, is_async, group)
        call.fut = self.loop.create_future()
        self._schedule(call)
        return await call.fut

    # -- ending ------------------------------------------------------------------

    def exit_requested(self, reason: str, *, code: int = 0, restartable: bool = False) -> None:
        """End the actor after the replies already made (exit_actor(), or sys.exit() when ``restartable``)."""
        self.exiting = True

        def request() -> None:
            if self.ending is None:
                self.ending = "sys.exit" if restartable else "exit"
                self._exit_reason = reason
                self._restartable_exit = restartable
                self.exit_code = code
                # Give replies queued in this iteration a chance to be written.
                self.loop.call_soon(_set_none_if_pending, self._exit_waiter)

        if threading.get_ident() == self._loop_thread:
            request()
        else:
            self.loop.call_soon_threadsafe(request)

    def system_exit(self, call: _Call | None, exc: SystemExit) -> None:
        """A method called sys.exit(): the process ends with that code, as in Ray; max_restarts applies.

        The call gets no reply: its caller sees ActorDiedError (or its retry)
        once the process has ended.
        """
        code = _exit_code(exc)
        where = f"{self.class_name}.{call.name}()" if call is not None else self.class_name
        self.exit_requested(
            f"{where} called sys.exit({exc.code!r}); its process exited with exit code {code}",
            code=code,
            restartable=True,
        )

    # -- metrics -------------------------------------------------------------------

    def metrics_snapshot(self) -> dict[str, Any]:
        """A copy of the call counters and the queue depth of each group, for the node (on the loop)."""
        if self.call_stats is None:
            self.call_stats = {}  # the node serves metrics from now on (it started its dashboard late)
        return {
            "methods": {name: list(record) for name, record in self.call_stats.items()},
            # Calls accepted and not started yet: waiting for a slot, or queued for a worker thread.
            "queued": {name: len(g.waiting) + g.lane._queue.qsize() for name, g in self.groups.items()},
        }

    _loop_thread = 0


class _ActorRuntime(Runtime):
    """The actor's runtime: its node channel also carries the node's request to stop."""

    def __init__(self, worker: ActorWorker, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._worker = worker

    def _on_push(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "stop":
            _, reason, timeout = msg
            self._worker.request_stop(reason, timeout)
        elif msg[0] == "metrics":  # the node collects: answer with a snapshot of the counters
            node = self.node
            if node is not None:
                node.notify("metrics_report", msg[1], self._worker.metrics_snapshot())
        else:
            super()._on_push(msg)


def _exit_code(exc: SystemExit) -> int:
    """The exit status Python gives ``SystemExit(code)``; a message is printed, as Python does."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _flush_and_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _end_if_forked(exc: BaseException | None) -> None:
    """In a process forked inside a method (``os.fork()``), end it as the method ended.

    The fork has one thread, the one that ran the method; were it to go on, it
    would run the actor's machinery as a second worker and deadlock the actor.
    """
    if not _forked_in_actor:
        return
    if exc is None or isinstance(exc, _ActorExit):
        code = 0
    elif isinstance(exc, SystemExit):
        code = _exit_code(exc)
    else:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        code = 1
    _flush_and_exit(code)


def _run_forked_safe(func: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run a sync ``__init__``; a process it forks ends where the constructor ends."""
    try:
        func(instance, *args, **kwargs)
    except BaseException as exc:
        _end_if_forked(exc)
        raise
    _end_if_forked(None)


_OWN_FILES = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(asyncio.__file__) + os.sep)


def _format_user_traceback(exc: BaseException) -> str:
    """The traceback without actorloop's and asyncio's own frames, which say nothing to the user."""
    te = traceback.TracebackException.from_exception(exc)
    for item in [te, *_chained(te)]:
        frames = [
            f for f in item.stack if not f.filename.startswith(_OWN_FILES) and "concurrent/futures" not in f.filename
        ]
        item.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


def _chained(te: traceback.TracebackException) -> list[traceback.TracebackException]:
    out = []
    seen = set()
    todo = [te]
    while todo:
        cur = todo.pop()
        for nxt in (cur.__cause__, cur.__context__):
            if nxt is not None and id(nxt) not in seen:
                seen.add(id(nxt))
                out.append(nxt)
                todo.append(nxt)
    return out


def _set_none_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _notify(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()


def _custom_repr(instance: Any) -> str | None:
    """The actor's own ``__repr__`` (for its log prefix, as in Ray), or None if it has none."""
    if type(instance).__repr__ is object.__repr__:  # type: ignore[comparison-overlap]  # typeshed's signatures differ
        return None
    try:
        text = repr(instance)
    except Exception:
        return None
    return text.replace("\n", " ")[:200]


def _ready() -> None:
    return None


def run_actor(actor_id: str, epoch: int, node_dir: str, secret: bytes, http_fd: int | None) -> NoReturn:
    """Entry point of a forked actor process."""
    import uvloop

    loop = uvloop.new_event_loop()
    release_zero_pages(loop)  # its unused receive buffer: 0.23 MiB of this actor's USS
    asyncio.set_event_loop(loop)
    worker = ActorWorker(loop, actor_id, epoch, node_dir, secret)
    worker._loop_thread = threading.get_ident()
    try:
        loop.run_until_complete(worker.main(http_fd))
    except BaseException:  # noqa: BLE001 - an internal error: reported through the library's logger
        logging.getLogger("actorloop").exception("the actor's event loop failed; the actor exits")
        worker.exit_code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    proto.segment_pool.close()
    os._exit(worker.exit_code)
