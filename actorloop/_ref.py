"""ObjectRef: the result of one remote call.

An ``ObjectRef`` *is* an asyncio future of the event loop that sent the
call, so ``asyncio.gather`` and ``asyncio.wait`` take it without wrapping
it in a task.  Awaited from another loop (a ref made in sync code and
awaited under ``asyncio.run``, or handed to a thread's own loop), it stops
claiming to be a future of that loop, so asyncio wraps it, and its
``__await__`` bridges the result across loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import itertools
import pickle
import threading
import time
import weakref
from asyncio import events
from typing import TYPE_CHECKING, Any, Callable, Generator, Generic, Protocol, TypeVar

from . import _protocol as proto
from . import _shm
from ._entry import entry_for, running_here
from .exceptions import ObjectLostError, OwnerDiedError, TaskCancelledError

T = TypeVar("T")


class CallOwner(Protocol):
    """What a ref needs of whoever sent its call: a way to cancel it (from any thread).

    An owner whose refs all belong to one loop may also have ``callback_context`` (see
    ``ObjectRef.add_done_callback``).
    """

    def cancel_call(self, call_id: int) -> None: ...


#: Loops whose thread does not exist in this process (the home loop of the
#: parent, after a fork): their refs can never resolve here.
abandoned_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

#: A blocked get() re-checks its refs this often even without a wake-up (a safety net, never the mechanism).
FALLBACK_POLL_SECONDS = 0.25

#: Set while the process shuts down: refs dropped then fail quietly.
_quiet = False
#: Errors already reported as never fetched (type name, message): each is reported once.
_reported: set[tuple[str, str]] = set()
_REPORTED_MAX = 1000


def set_quiet(quiet: bool) -> None:
    """Silence (or not) the report of errors nobody fetched; on while the runtime shuts down."""
    global _quiet
    _quiet = quiet


def _check_resolvable(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed():
        raise RuntimeError(
            "this ObjectRef belongs to an event loop that has been closed; its result can no longer arrive"
        )
    if abandoned_loops and loop in abandoned_loops:  # empty unless this process was forked
        raise RuntimeError(
            "this ObjectRef was made before this process was forked; its result goes to the parent process. "
            "Call actorloop.init() in the child and make the call again"
        )


_FutureBase: Any = asyncio.Future
_blocking = _FutureBase.__dict__["_asyncio_future_blocking"]
_future_await = _FutureBase.__await__
_future_cancel = _FutureBase.cancel
_future_set_exception = _FutureBase.set_exception
_future_add_done_callback = _FutureBase.add_done_callback
_get_running_loop = events._get_running_loop

# The done callback asyncio.gather registers on each child (its nested function ``_done_callback``;
# None if a Python version has no such thing, and then nothing below applies).
_GATHER_DONE_CODE = next(
    (c for c in asyncio.tasks.gather.__code__.co_consts if getattr(c, "co_name", None) == "_done_callback"), None
)


if TYPE_CHECKING:
    # Type checkers see a ref as the asyncio future of its value (so a misspelt attribute is an
    # error); at run time the base is the same class, read through ``_FutureBase``.
    _RefBase = asyncio.Future
else:
    _RefBase = _FutureBase


class ObjectRef(_RefBase[T], Generic[T]):
    """A handle on the result of ``handle.method.remote(...)``.

    Await it in any event loop (``await ref``), pass it to
    ``asyncio.gather``/``asyncio.wait_for``, fetch it from sync code with
    ``actorloop.get(ref)``, or pass it as an argument to another call.

    Example::

        ref = counter.increment.remote()
        value = actorloop.get(ref)          # sync code
        value = await ref                   # async code, any loop
    """

    # Two slots on top of asyncio's Future: 160 bytes a ref on 3.11/3.12.  A
    # gather of 1,000,000 calls holds a million of them at its peak, so what a
    # ref needs rarely lives elsewhere: the threads blocked on it in
    # ``_sync_waiters`` (a third and fourth slot, waiter and actor, made it
    # 176: +16 MB at that peak).
    __slots__ = ("_conn", "_call_id")

    # No __init__ of its own: a ref is made by ``make_ref`` (or ``submit``, inline), asyncio's Future
    # __init__ (C) and then its two slots.  A Python __init__ cost ~1,500 of the ~55,000 instructions a
    # gathered call costs its caller (callgrind, 3.11).
    _conn: CallOwner | None
    _call_id: int

    # asyncio treats an object as a future of the running loop when this is
    # not None; from another loop we answer None so asyncio wraps us instead.
    @property  # type: ignore[override]  # bool on the base; None tells asyncio to wrap us
    def _asyncio_future_blocking(self) -> bool | None:
        if running_here(self._loop):  # asyncio.Future internals: cheaper than get_loop()
            return _blocking.__get__(self)  # type: ignore[no-any-return]
        return None

    @_asyncio_future_blocking.setter
    def _asyncio_future_blocking(self, value: bool) -> None:
        _blocking.__set__(self, value)

    def __await__(self) -> Generator[Any, None, T]:
        owner = self._loop  # asyncio.Future internals: cheaper than get_loop()
        if running_here(owner):
            return _future_await(self)  # type: ignore[no-any-return]
        loop = _get_running_loop()
        if loop is None:
            return _future_await(self)  # type: ignore[no-any-return]
        return self._await_from(loop, owner).__await__()

    __iter__ = __await__

    async def _await_from(self, loop: asyncio.AbstractEventLoop, owner: asyncio.AbstractEventLoop) -> T:
        if not self.done():
            _check_resolvable(owner)
            bridge: asyncio.Future[None] = loop.create_future()
            to_here = entry_for(loop)
            to_owner = entry_for(owner)

            def wake(_: Any) -> None:
                to_here.put(_set_none_if_pending, bridge)

            to_owner.put(self.add_done_callback, wake)
            try:
                await bridge
            except asyncio.CancelledError:
                to_owner.put(self.cancel)
                raise
        return self._result_now()

    def add_done_callback(self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None) -> None:
        """``asyncio.Future.add_done_callback``; gather's own callback runs in its connection's context.

        Given no context, a future runs each callback in a copy of the current
        one: a 64-byte ``Context`` per child of a gather, 64 MB at the peak of
        a gather of 1,000,000 refs (of ~390 MiB then, 3.11).  asyncio.gather's
        callback reads no context variable and runs no user code (it counts,
        and settles the gather's future, whose own callbacks keep their own
        contexts), so for the refs of a connection it runs in that
        connection's one ``callback_context``.  The refs of a connection
        belong to one loop, whose thread runs all their callbacks: that context
        is never entered twice at once.  Measured as no slower per child
        (``gather`` + ``set_result`` + the callback, timed on 3.11): the
        override's Python call costs about what the copies cost to make and
        to collect.

        The connection also remembers (weakly) the latest gather's callback,
        ``gather_callback``: as it reads a result it takes that callback off
        the ref and calls it itself (see ``ActorConnection.frames_received``).
        """
        if context is None:
            try:
                if fn.__code__ is _GATHER_DONE_CODE:
                    conn: Any = self._conn
                    context = conn.callback_context
                    if conn.gather_callback() is not fn:
                        # The connection calls this gather's callback itself as it reads the results.
                        conn.gather_callback = weakref.ref(fn)
            except AttributeError:  # not a plain function, or a ref with no connection
                pass
            if context is None:
                # Not context=None: the C future would keep None and copy the context only when it runs the
                # callback (a copy of the reading callback's, not of the caller's).
                _future_add_done_callback(self, fn)
                return
        _future_add_done_callback(self, fn, context=context)

    def _result_now(self) -> T:
        if self.cancelled():
            raise asyncio.CancelledError()
        return self.result()

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the remote call too (called when an awaiting task is cancelled)."""
        if self.done():
            return False
        conn = self._conn
        if conn is not None:
            conn.cancel_call(self._call_id)
        cancelled: bool = _future_cancel(self, msg)
        self._wake_waiter()
        return cancelled

    def _cancel_by_user(self) -> None:
        """``actorloop.cancel(ref)``: cancel remotely, then raise TaskCancelledError on fetch."""
        if self.done():
            return
        conn = self._conn
        if conn is not None:
            conn.cancel_call(self._call_id)
        self.set_exception(TaskCancelledError(f"the call was cancelled with actorloop.cancel() ({self!r})"))
        self._log_traceback = False  # a dropped cancelled ref is no error
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        """Called by whoever settles this ref: wakes a thread blocked on it in get()/wait()."""
        if _sync_waiters:
            waiter = _sync_waiters.get(id(self))
            if waiter is not None:
                waiter.notify(self)

    def future(self) -> concurrent.futures.Future[T]:
        """Return a ``concurrent.futures.Future`` that completes with this ref."""
        cf: concurrent.futures.Future[T] = concurrent.futures.Future()

        def copy(_: Any) -> None:
            if cf.done():
                return
            if self.cancelled():
                cf.cancel()
            elif self.exception() is not None:
                cf.set_exception(self.exception())
            else:
                cf.set_result(self.result())

        owner = self.get_loop()
        if self.done():
            copy(None)
        elif _get_running_loop() is owner:
            self.add_done_callback(copy)
        else:
            entry_for(owner).put(self.add_done_callback, copy)
        return cf

    def as_future(self) -> asyncio.Future[T]:
        """This ref as an asyncio future of the running loop (Ray's ``ObjectRef.as_future``)."""
        return asyncio.ensure_future(self)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"ObjectRef(call={self._call_id}, {state})"

    def set_exception(self, exception: Any) -> None:
        """Settle this ref with an error (the error path only: a ref that succeeds never comes here)."""
        _future_set_exception(self, exception)
        # Only a failed ref pays for a finalizer (see _FailedRef).
        self.__class__ = _FailedRef

    def __reduce__(self) -> Any:
        # Refs inside arguments and results stay refs on the other side (see docs/objects.md):
        # a settled ref carries its value (or error); a pending one is fulfilled later by the
        # process that sends it, over the same connection.
        if self.done():
            if self.cancelled():
                return _rebuild_failed, (TaskCancelledError(f"the call behind this ref was cancelled ({self!r})"),)
            exc = self.exception()
            if exc is not None:
                return _rebuild_failed, (exc,)
            return _rebuild_done, (self.result(),)
        forwards = _shm.pending_forwards()
        if forwards is None:
            raise TypeError(
                "a pending ObjectRef can be pickled only inside the arguments or result of a method or remote "
                "function call (not in actor constructor arguments, actorloop.put() or pickle.dumps(), where "
                "nobody could deliver its value later); wait for it first (actorloop.get / await) and pass the "
                "done ref or its value"
            )
        forward_id = next(_forward_ids)
        _outbound[forward_id] = _Outbound(self)
        # Once it settles the entry is kept only while the ref lives (a frame never sent, say a
        # cancelled call's, must not keep it forever).
        entry_for(self.get_loop()).put(self.add_done_callback, functools.partial(_settled, forward_id))
        forwards.append(forward_id)
        return _rebuild_pending, (forward_id,)


R = TypeVar("R", bound=ObjectRef[Any])


def make_ref(loop: asyncio.AbstractEventLoop, conn: CallOwner | None, call_id: int, cls: type[R] = ObjectRef) -> R:  # type: ignore[assignment]
    """A new pending ref of ``loop`` (of class ``cls``) for call ``call_id`` of ``conn``."""
    ref = cls(loop=loop)
    ref._conn = conn
    ref._call_id = call_id
    return ref


class _FailedRef(ObjectRef[T]):
    """An ObjectRef whose call failed.  A ref becomes one in ``set_exception``, so that only
    failed refs carry a Python finalizer (a finalizer on every ref costs each call about 0.35 us).
    """

    __slots__ = ()

    def __del__(self) -> None:
        # Replaces asyncio's "exception was never retrieved" (a traceback per
        # ref: thousands of lines when many calls fail at once) with one line
        # per distinct error, and silence while the process shuts down.
        if _quiet or not self._log_traceback:
            return
        exc = self._exception
        key = (type(exc).__name__, str(exc).split("\n", 1)[0][:300])
        if key in _reported:
            return
        if len(_reported) < _REPORTED_MAX:
            _reported.add(key)
        message = f"actorloop: a call failed and nobody fetched its result: {key[0]}: {key[1]}"
        try:
            self.get_loop().call_exception_handler({"message": message})
        except Exception:
            pass


class _SplitOwner:
    """Cancelling one of a call's ``num_returns`` refs cancels the call (and so all of them)."""

    __slots__ = ("whole",)

    def __init__(self, whole: ObjectRef[Any]) -> None:
        self.whole = whole

    def cancel_call(self, call_id: int) -> None:
        entry_for(self.whole.get_loop()).put(self.whole.cancel)


def split_ref(whole: ObjectRef[Any], count: int, where: str) -> list[ObjectRef[Any]]:
    """``count`` refs, one per value of the sequence ``whole`` resolves to (``num_returns=count``)."""
    loop = whole.get_loop()
    owner = _SplitOwner(whole)
    parts: list[ObjectRef[Any]] = [make_ref(loop, owner, whole._call_id) for _ in range(count)]

    def settle(_: Any) -> None:
        if whole.cancelled():
            for part in parts:
                if not part.done():
                    _future_cancel(part)
                    part._wake_waiter()
            return
        error = whole.exception()
        values: Any = None
        if error is None:
            values = whole.result()
            try:
                values = list(values)
            except TypeError:
                values = None
            if values is None or len(values) != count:
                error = ValueError(
                    f"{where} was called with num_returns={count} but returned "
                    f"{'a ' + type(whole.result()).__name__ if values is None else f'{len(values)} values'}"
                )
        for i, part in enumerate(parts):
            if part.done():
                continue
            if error is not None:
                part.set_exception(error)
            else:
                part.set_result(values[i])
            part._wake_waiter()

    entry_for(loop).put(whole.add_done_callback, settle)
    return parts


# -- refs inside payloads ------------------------------------------------------------------

#: A loop for refs unpickled where no loop runs (they arrive settled, so nothing ever runs on it).
_idle_loop: asyncio.AbstractEventLoop | None = None


def _rebuild_loop() -> asyncio.AbstractEventLoop:
    global _idle_loop
    loop = _get_running_loop()
    if loop is not None:
        return loop
    if _idle_loop is None:
        _idle_loop = asyncio.new_event_loop()
    return _idle_loop


def _rebuild_done(value: Any) -> ObjectRef[Any]:
    ref: ObjectRef[Any] = make_ref(_rebuild_loop(), None, 0)
    ref.set_result(value)
    return ref


def _rebuild_failed(exc: BaseException) -> ObjectRef[Any]:
    ref: ObjectRef[Any] = make_ref(_rebuild_loop(), None, 0)
    ref.set_exception(exc)
    return ref


class _Outbound:
    """A pending ref we pickled into a payload: fulfilled on every connection that payload is sent on."""

    __slots__ = ("ref", "conns", "outcome", "__weakref__")

    def __init__(self, ref: ObjectRef[Any] | None) -> None:
        self.ref = ref
        # (connection, its session): a peer reached again on a new socket (restarted, or the same process
        # after a lost connection) is fulfilled again.
        self.conns: set[tuple[int, int]] = set()
        self.outcome: tuple[bool, Any] | None = None  # (ok, value or error), once settled


_forward_ids = itertools.count(1)
#: Forward id -> the pending ref it stands for, until it settles.
_outbound: dict[int, _Outbound] = {}
#: Forward id -> the settled outcome, while the ref lives (``_kept``): a resend (a retry) still finds it.
_forwarded: weakref.WeakValueDictionary[int, _Outbound] = weakref.WeakValueDictionary()
_kept: weakref.WeakKeyDictionary[ObjectRef[Any], _Outbound] = weakref.WeakKeyDictionary()
#: Connection -> forward id -> the ref we received pending on it, until its value arrives.
_inbound: weakref.WeakKeyDictionary[Any, dict[int, ObjectRef[Any]]] = weakref.WeakKeyDictionary()
#: Connection -> forward id -> a REF_VALUE that overtook the payload naming its ref (kept until it arrives).
_early: weakref.WeakKeyDictionary[Any, dict[int, tuple[Any, ...]]] = weakref.WeakKeyDictionary()
_forward_lock = threading.Lock()


def _rebuild_pending(forward_id: int) -> ObjectRef[Any]:
    """A ref that was pending when it was sent: its sender sends the value later on the same connection."""
    conn: Any = _shm.inbound_connection()
    if conn is None:
        return _rebuild_failed(ObjectLostError("this ref was sent pending outside a connection; its value is lost"))
    ref: ObjectRef[Any] = make_ref(conn.loop, None, forward_id)
    with _forward_lock:
        early = _early.get(conn)
        msg = early.pop(forward_id, None) if early else None
        if msg is None:
            _inbound.setdefault(conn, {})[forward_id] = ref
    if msg is not None:
        _settle_from(ref, msg)
    elif getattr(conn, "closed", False):
        _fail_inbound(conn)
    return ref


def _settle_from(ref: ObjectRef[Any], msg: tuple[Any, ...]) -> None:
    if ref.done():
        return
    _, _, ok, value = msg
    if ok:
        ref.set_result(value)
    else:
        ref.set_exception(value)
    ref._wake_waiter()


def fulfil(conn: Any, msg: tuple[Any, ...]) -> None:
    """A ``REF_VALUE`` frame arrived on ``conn``: settle the ref it fulfils (on ``conn``'s loop)."""
    forward_id = msg[1]
    with _forward_lock:
        pending = _inbound.get(conn)
        ref = pending.pop(forward_id, None) if pending else None
        if ref is None:
            _early.setdefault(conn, {})[forward_id] = msg
            return
    _settle_from(ref, msg)


def _fail_inbound(conn: Any) -> None:
    """``conn`` is lost: the refs its peer still had to fulfil never will (their owner is gone)."""
    with _forward_lock:
        pending = _inbound.pop(conn, None)
        _early.pop(conn, None)
    if not pending:
        return
    loop = conn.loop

    def fail() -> None:
        for ref in pending.values():
            if not ref.done():
                ref.set_exception(
                    OwnerDiedError(
                        "the process that sent this ref while it was pending (its owner, or a process that "
                        "passed it on) exited before its value was ready, so the value is lost; "
                        "get the value in the owner and pass the value, or keep the owner alive"
                    )
                )
                ref._wake_waiter()

    if _get_running_loop() is loop or loop.is_closed():
        fail()
    else:
        entry_for(loop).put(fail)


def _outcome(ref: ObjectRef[Any]) -> tuple[bool, Any]:
    if ref.cancelled():
        return False, TaskCancelledError(f"the call behind this ref was cancelled ({ref!r})")
    exc = ref.exception()
    return (False, exc) if exc is not None else (True, ref.result())


def _bind_forward(forward_id: int, conn: Any) -> None:
    """A payload naming pending ref ``forward_id`` was sent on ``conn``: send the value there once ready."""
    key = (id(conn), getattr(conn, "session", 0))
    with _forward_lock:
        out = _outbound.get(forward_id) or _forwarded.get(forward_id)
        if out is not None:
            if key in out.conns:
                return  # the same send counted twice (a direct write that fell back to the loop)
            out.conns.add(key)
    if out is None:
        # Sent again (a retry) after its value went out and the ref was dropped: the receiver must not wait.
        error = ObjectLostError("this pending ref was sent again after its value had been forwarded and dropped")
        conn.entry.put(_send_value, conn, forward_id, False, error)
        return
    if out.outcome is not None:
        conn.entry.put(_send_value, conn, forward_id, *out.outcome)
        return
    ref = out.ref
    assert ref is not None

    def on_done(_: Any) -> None:
        conn.entry.put(_send_value, conn, forward_id, *_outcome(ref))

    entry_for(ref.get_loop()).put(ref.add_done_callback, on_done)


def _settled(forward_id: int, ref: ObjectRef[Any]) -> None:
    """A pending ref we sent settled: keep its outcome for later sends only while the ref lives."""
    with _forward_lock:
        out = _outbound.pop(forward_id, None)
        if out is None:
            return
        settled = _Outbound(None)
        settled.conns, settled.outcome = out.conns, _outcome(ref)
        _kept[ref] = settled
        _forwarded[forward_id] = settled


def _send_value(conn: Any, forward_id: int, ok: bool, value: Any) -> None:
    # A connection still connecting queues it (sent after the frame that named the ref).
    if conn.closed:
        return
    try:
        if ok:
            payload = proto.dumps_value((proto.REF_VALUE, forward_id, True, value), value)
        else:
            payload = proto.dumps((proto.REF_VALUE, forward_id, False, value))
    except Exception as exc:  # noqa: BLE001 - the receiver gets the reason instead of the value
        error = ObjectLostError(f"the value of this ref could not be sent: {type(exc).__name__}: {exc}")
        payload = pickle.dumps((proto.REF_VALUE, forward_id, False, error), 5)
    conn.send(payload)


_shm.forward_hook = _bind_forward
_shm.connection_lost_hooks.append(_fail_inbound)


class PutRef(ObjectRef[T]):
    """The ref ``actorloop.put`` returns: done at once; its value's large buffers live in shared memory.

    Pickled into a call's arguments or result it sends the value's pickle
    with its segments named, not copied (``_load_put`` rebuilds it).
    """

    __slots__ = ("_inner", "_views")

    _inner: bytes
    _views: list[memoryview]

    def __reduce__(self) -> Any:
        return _load_put, (self._inner, *[pickle.PickleBuffer(v) for v in self._views])


def _load_put(inner: bytes, *buffers: Any) -> ObjectRef[Any]:
    return _rebuild_done(pickle.loads(inner, buffers=buffers))


def _set_none_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Waiters:
    """Several threads blocked on one ref: each gets the notification."""

    __slots__ = ("waiters",)

    def __init__(self, waiters: tuple[SyncWaiter, ...]) -> None:
        self.waiters = waiters

    def notify(self, ref: ObjectRef[Any]) -> None:
        for waiter in self.waiters:
            waiter.notify(ref)


#: The threads blocked in get()/wait() on a ref, by ``id(ref)`` (a ref is alive while a thread waits on
#: it): its ``SyncWaiter``, or ``_Waiters`` for several.  Whoever settles a ref calls ``_wake_waiter``,
#: which finds it here; the loop reads this without the lock (one dict lookup, atomic under the GIL).
_sync_waiters: dict[int, SyncWaiter | _Waiters] = {}
# Taken only by threads that start or stop waiting (never on the loop's path, never in a finalizer).
_waiters_lock = threading.Lock()


def _add_waiter(refs: list[ObjectRef[Any]], waiter: SyncWaiter) -> None:
    with _waiters_lock:
        for ref in refs:
            key = id(ref)
            current = _sync_waiters.get(key)
            if current is None:
                _sync_waiters[key] = waiter
            elif isinstance(current, _Waiters):
                _sync_waiters[key] = _Waiters((*current.waiters, waiter))
            else:
                _sync_waiters[key] = _Waiters((current, waiter))


def _remove_waiter(refs: list[ObjectRef[Any]], waiter: SyncWaiter) -> None:
    with _waiters_lock:
        for ref in refs:
            key = id(ref)
            current = _sync_waiters.get(key)
            if current is waiter:
                del _sync_waiters[key]
            elif isinstance(current, _Waiters):
                rest = tuple(w for w in current.waiters if w is not waiter)
                if not rest:
                    del _sync_waiters[key]
                else:
                    _sync_waiters[key] = rest[0] if len(rest) == 1 else _Waiters(rest)


class SyncWaiter:
    """Wakes a thread blocked in get()/wait() once enough of its refs are done.

    The connection that resolves a ref calls ``notify`` right after setting
    its result, on the ref's own loop: no extra hop to that loop to register
    a callback.  Under the GIL, "set result, then look the ref up in ``_sync_waiters``" on one
    side and "add it there, then read ``ref.done()``" on the other
    cannot both miss each other.
    """

    __slots__ = ("_lock", "_pending", "_enough")

    def __init__(self, refs: list[ObjectRef[Any]], still_needed: int) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._pending = {id(r) for r in refs}
        # Wake when at most this many of `refs` are still pending.
        self._enough = len(refs) - still_needed

    def notify(self, ref: ObjectRef[Any]) -> None:
        pending = self._pending
        pending.discard(id(ref))
        if len(pending) <= self._enough:
            try:
                self._lock.release()
            except RuntimeError:  # already woken
                pass

    def wait(self, timeout: float) -> None:
        self._lock.acquire(timeout=timeout)


def wait_sync(refs: list[ObjectRef[Any]], num_returns: int, timeout: float | None) -> int:
    """Block this thread until ``num_returns`` of ``refs`` are done; return how many are."""
    pending = [r for r in refs if not r.done()]
    done_count = len(refs) - len(pending)
    if done_count >= num_returns or not pending:
        return done_count
    for ref in pending:
        _check_resolvable(ref.get_loop())
    waiter = SyncWaiter(pending, num_returns - done_count)
    registered = pending
    _add_waiter(registered, waiter)
    # A ref that finished before its waiter was in place never notifies it: count it now, or the
    # waiter would wait for it until the fallback poll.
    for ref in registered:
        if ref.done():
            waiter.notify(ref)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            # Refs that finished before the waiter was installed never notify it.
            still = [r for r in pending if not r.done()]
            if len(refs) - len(still) >= num_returns:
                break
            pending = still
            poll = FALLBACK_POLL_SECONDS
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            if left <= 0:
                break
            waiter.wait(left)
    finally:
        _remove_waiter(registered, waiter)
    return sum(1 for r in refs if r.done())
