"""Connections of a calling process: to actors (one per event loop and actor) and to the node.

``ActorConnection`` carries one loop's calls to one actor and survives the
actor's restarts by reconnecting.  What it needs of the rest of the process
is the small ``ActorLink`` protocol (how to wait for the actor, the secret,
call accounting), so this layer never imports the runtime above it.

A call is *delivered* once its bytes were accepted by the socket of a live
actor process.  When the actor dies, only delivered calls were in flight:
they are retried (``max_task_retries``) or fail with ``ActorDiedError``.
Every other call - queued on this side, or written after the actor was
already gone - waits for the restarted actor, as SPEC section 6 promises.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import socket
import threading
import weakref
from asyncio import events
from pickle import dumps as _pickle_dumps
from pickle import loads as _pickle_loads
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Protocol, cast

from . import _protocol as proto
from ._fds import is_fd_exhaustion, out_of_fds_error
from ._meta import EPOCH_PROBE, READY_METHOD, ClassMeta
from ._ref import ObjectRef, fulfil
from ._ref import _sync_waiters as sync_waiters
from ._stream import StreamState
from .exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, SerializationError, _make_task_error

__all__ = [
    "ActorConnection",
    "ActorLink",
    "NodeConnection",
    "SyncNodeChannel",
    "connect_unix",
]

_get_running_loop = events._get_running_loop


# -- node channels ---------------------------------------------------------------


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
            raise proto.node_error(value)
        return value

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class NodeConnection(proto.FrameProtocol):
    """The async channel to the node on the home loop: requests, and the node's pushes (log lines)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, secret: bytes, on_push: Callable[[tuple[Any, ...]], None]
    ) -> None:
        super().__init__(loop)
        self._secret = secret
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._on_push = on_push
        self.lost: asyncio.Future[None] = loop.create_future()
        #: Set by the node's last word when it stops (``proto.NODE_STOPPED``): why it stopped, and why
        #: each actor the stop ended is gone.  See ``actor_end``.
        self.stop_notice: tuple[str, dict[str, str]] | None = None

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
        # A request its caller gave up on (cancelled) leaves the table now, not when its answer comes:
        # a question about an actor that never answers (wait_actor) would otherwise stay for good.
        fut.add_done_callback(lambda done: self._waiting.pop(req_id, None) if done.cancelled() else None)
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
                if msg[1] == proto.NODE_STOPPED:
                    self.stop_notice = (msg[2], msg[3])
                    continue
                self._on_push(msg[1:])
                continue
            fut = self._waiting.pop(req_id, None)
            if fut is None or fut.done():
                continue
            _, ok, value = msg
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(proto.node_error(value))

    def actor_end(self, actor_id: str) -> str | None:
        """Why ``actor_id`` is gone if the node stopped (it said so before it closed): None otherwise.

        A request that the stopped node never answered (``wait_actor`` sent
        just as it closed) is answered from this instead of failing as if the
        node had crashed.  Every actor ends with its node: one the stop did not
        name was dead already, for a reason the node cannot tell any more.
        """
        notice = self.stop_notice
        if notice is None:
            return None
        why, ended = notice
        known = ended.get(actor_id)
        if known is not None:
            return known
        return f"the actor {actor_id} is gone: the actorloop node stopped ({why}), and with it every actor it ran"

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the actorloop node ended"))
        self._waiting.clear()
        if not self.lost.done():
            self.lost.set_result(None)


# -- one loop's connection to one actor ---------------------------------------------


class ActorLink(Protocol):
    """What an ActorConnection needs of the process's knowledge of its actor."""

    actor_id: str
    meta: ClassMeta
    max_task_retries: int
    secret: bytes

    async def wait_actor(self, min_epoch: int) -> tuple[Any, ...]:
        """Wait until the actor is alive at ``min_epoch`` or later; ("ALIVE", epoch, path, why) or ("DEAD", why)."""
        ...

    def calls_finished(self, count: int) -> None:
        """``count`` calls of this actor left the pending table (answered, failed or cancelled)."""
        ...

    def connection_ended(self, conn: ActorConnection) -> None:
        """``conn``'s loop is going away: forget it, so the next call there opens a new one."""
        ...

    def quiet(self) -> bool:
        """Whether the process is shutting down (refs failed now are not reported as unfetched)."""
        ...


class CallTable:
    """Call id -> ref for one connection's calls in flight: a dict's job in ~8 bytes a call, not ~42.

    Call ids count up per connection and calls mostly end in about the order
    they were made, so a ref sits in a list at ``call_id - base`` and the
    list drops its ended front (``trim``).  Calls still running when the
    front is dropped (a long call, a stream) move to a dict, ``far``, so that
    they do not keep the list of every later call.  A gather of 1,000,000
    calls held a 42 MB dict at its peak; the list is 8 MB.

    Only the loop's thread touches the list.  A sync caller's thread registers
    its lone call in ``far`` (``add_from_thread``: dict operations are atomic
    under the GIL), and ``len`` and truth may be read from any thread.
    ``frames_received`` and ``send_call`` have the list's fast path inline.
    """

    __slots__ = ("refs", "base", "live", "far")

    def __init__(self) -> None:
        self.refs: list[ObjectRef[Any] | None] = []
        self.base = 1  # the call id of refs[0]
        self.live = 0  # refs in the list that are not None
        self.far: dict[int, ObjectRef[Any]] = {}

    def __setitem__(self, call_id: int, ref: ObjectRef[Any]) -> None:
        refs = self.refs
        i = call_id - self.base
        if i == len(refs):
            refs.append(ref)
            self.live += 1
        elif i > len(refs):
            refs.extend([None] * (i - len(refs)))  # ids taken by calls that were never registered here
            refs.append(ref)
            self.live += 1
        elif i >= 0 and call_id not in self.far:
            if refs[i] is None:
                self.live += 1
            refs[i] = ref
        else:  # below the list (a call posted from a thread long ago), or there already
            self.far[call_id] = ref

    def add_from_thread(self, call_id: int, ref: ObjectRef[Any]) -> None:
        self.far[call_id] = ref

    def discard_from_thread(self, call_id: int) -> None:
        self.far.pop(call_id, None)

    def pop(self, call_id: int, default: None = None) -> ObjectRef[Any] | None:
        refs = self.refs
        i = call_id - self.base
        if 0 <= i < len(refs):
            ref = refs[i]
            if ref is not None:
                refs[i] = None
                self.live -= 1
                return ref
        return self.far.pop(call_id, None) if self.far else None

    def get(self, call_id: int) -> ObjectRef[Any] | None:
        refs = self.refs
        i = call_id - self.base
        if 0 <= i < len(refs):
            ref = refs[i]
            if ref is not None:
                return ref
        return self.far.get(call_id) if self.far else None

    def __contains__(self, call_id: object) -> bool:
        return isinstance(call_id, int) and self.get(call_id) is not None

    def __getitem__(self, call_id: int) -> ObjectRef[Any]:
        ref = self.get(call_id)
        if ref is None:
            raise KeyError(call_id)
        return ref

    def __len__(self) -> int:
        return self.live + len(self.far)

    def __bool__(self) -> bool:
        return self.live > 0 or bool(self.far)

    def keys(self) -> list[int]:
        """The call ids, lowest first."""
        ids = list(itertools.compress(range(self.base, self.base + len(self.refs)), self.refs))
        return sorted([*self.far, *ids]) if self.far else ids

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys())

    def trim(self) -> None:
        """Drop the list's ended front once at most half the list is in use (on the loop's thread)."""
        refs = self.refs
        size = len(refs)
        if size <= 2 * self.live + 1024:
            return
        base = self.base
        if not self.live:
            refs.clear()
            self.base = base + size
            return
        cut = size // 2
        # The calls still running in the front half go to far (in C: no Python step per slot).
        for call_id in itertools.compress(range(base, base + cut), refs[:cut]):
            ref = refs[call_id - base]
            assert ref is not None
            self.far[call_id] = ref
            self.live -= 1
        del refs[:cut]
        self.base = base + cut


class Kept:
    """The payload of a call that may be sent again after it was delivered: it has retries left.

    While we keep the payload, its shared-memory segments stay ours (a hold).
    """

    __slots__ = ("payload", "retries_left")

    def __init__(self, payload: bytes, retries_left: int) -> None:
        self.payload = payload
        self.retries_left = retries_left
        if payload[0] == _OOB_BYTE:
            proto.hold_payload(payload)

    def drop(self) -> None:
        """The call will not be sent again: let go of its segments."""
        if self.payload[0] == _OOB_BYTE:
            proto.unhold_payload(self.payload)


_OOB_BYTE = proto._OOB_BYTE
_remove_done_callback = asyncio.Future.remove_done_callback


def _no_gather() -> None:
    """``gather_callback`` of a connection no gather has used (a dead weak reference's answer)."""
    return None


_RESULT_OK = proto.RESULT_OK
_RESULT_ERR = proto.RESULT_ERR
_CALL_KINDS = (proto.CALL, proto.STREAM_CALL)


def _split_frames(chunk: bytes, written: int) -> list[bytes]:
    """The payloads of the frames in ``chunk`` (joined frames) that do not end within its first ``written``
    bytes: those did not reach the socket whole."""
    payloads = []
    pos = 0
    size = len(chunk)
    while size - pos >= proto.HEADER_BYTES:
        (length,) = proto.HEADER.unpack_from(chunk, pos)
        end = pos + proto.HEADER_BYTES + length
        if end > written:
            payloads.append(bytes(chunk[pos + proto.HEADER_BYTES : end]))
        pos = end
    return payloads


def _call_id_of(payload: bytes) -> int | None:
    """The call id of a call's frame (CALL or STREAM_CALL); None for any other frame.

    A call's pickle starts PROTO 5, FRAME <8 bytes>, BININT1 <kind>, then the
    id as BININT1, BININT2 or BININT: read from there; anything else (a frame
    with shared-memory segments, a long id) is read by ``peek_kind_and_id``.
    """
    if payload[:3] == b"\x80\x05\x95" and payload[11:12] == b"K":
        if payload[12] not in _CALL_KINDS:
            return None
        op = payload[13]
        if op == 0x4B:  # BININT1
            return payload[14]
        if op == 0x4D:  # BININT2
            return int.from_bytes(payload[14:16], "little")
        if op == 0x4A:  # BININT
            return int.from_bytes(payload[14:18], "little", signed=True)
    peeked = proto.peek_kind_and_id(payload)
    return peeked[1] if peeked is not None and peeked[0] in _CALL_KINDS else None


#: Seconds a caller keeps trying an actor the node reports alive whose socket refuses it, before its calls
#: fail with ActorUnavailableError.  A process that just died refuses too, for the moment until the node
#: has reaped it and reports the restart or the death: this only has to outlast that moment.
UNREACHABLE_SECONDS = 10.0
#: Connections to the same process lost in a row without a frame from it in between, before its calls
#: fail with ActorUnavailableError instead of going out once more (a frame it cannot take would loop).
MAX_SILENT_RECONNECTS = 3

#: Why calls still pending on a loop fail once that loop has ended (no answer can reach it any more).
LOOP_ENDED = (
    "the event loop this call was made on ended before its result arrived (asyncio.run() returned, or the "
    "loop was shut down), so the result has nowhere to go; await results inside the loop that made the calls"
)


#: Each event loop with actor connections: the async generator that its end closes, and those connections.
_loop_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, weakref.WeakSet[ActorConnection]]] = (
    weakref.WeakKeyDictionary()
)
_loop_watches_lock = threading.Lock()


def _watch_loop(conn: ActorConnection) -> None:
    """Have ``conn.loop_ended()`` called when ``conn``'s loop ends (on that loop, running).

    asyncio has no "loop is closing" callback.  But ``asyncio.run``,
    ``asyncio.Runner``, ``uvloop.run`` (and so pytest-asyncio and anyio) end a
    loop the same way: cancel its tasks, let them finish, then
    ``shutdown_asyncgens()``, which closes every async generator the loop saw
    start, then close it.  One async generator per loop, started here, is
    closed there: after the loop's tasks had their last word (a task's
    ``finally`` may still await a call) and while the loop still runs.
    """
    loop = conn.loop
    with _loop_watches_lock:
        watch = _loop_watches.get(loop)
        if watch is None:
            conns: weakref.WeakSet[ActorConnection] = weakref.WeakSet()
            agen = _until_loop_ends(conns)
            step: Any = agen.__anext__()  # to its first yield, now, without a task: the loop's hook records it
            try:
                step.send(None)
            except StopIteration:
                pass
            watch = _loop_watches[loop] = (agen, conns)
    watch[1].add(conn)


async def _until_loop_ends(conns: weakref.WeakSet[ActorConnection]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        loop = _get_running_loop()
        if loop is not None:
            # The generator keeps its loop alive (its finalizer hook is the loop's method): let go of it.
            _forget_loop(loop)
        for conn in list(conns):
            conn.loop_ended()


def _forget_loop(loop: asyncio.AbstractEventLoop) -> None:
    with _loop_watches_lock:
        _loop_watches.pop(loop, None)


class ActorConnection(proto.FrameProtocol):
    """One event loop's connection to one actor; survives restarts by reconnecting.

    What it keeps per call (a gather of 1,000,000 calls makes that a million
    times, see docs/internals.md, "A call's life"): the call's ref in
    ``pending``, and nothing else unless the call has retries left (its
    payload, in ``_kept``, until its answer).  The frames of calls not yet in
    the socket are where the writes left them (``_out``, the backlog,
    ``_handed``): a lost connection sends the calls found there again.
    """

    direct_writes = True

    def __init__(self, loop: asyncio.AbstractEventLoop, link: ActorLink) -> None:
        super().__init__(loop)
        self.link = link
        self.ids = itertools.count(1)
        #: Calls sent (or waiting to be sent) and not answered, by call id.
        self.pending = CallTable()
        # Delivery is counted, not flagged per call: each call sent takes the
        # next number (its seq); once the socket took a chunk of frames, every
        # call numbered up to the chunk's last number is delivered.
        self._seq = 0
        self._handed_seq = 0
        self.delivered_seq = 0
        self._confirm_scheduled = False
        # Chunks handed to the transport and not known to be written, in order: (frames, how many of their
        # first bytes we wrote ourselves, the last call number in them).  With _out and the backlog they
        # hold every frame that did not reach the socket: _recover finds the calls to send again in them.
        # No payload is kept per call for that (a gather of 1,000,000 calls kept each one's, ~80 bytes,
        # until it was delivered, and all of them while its actor fell behind).
        self._handed: collections.deque[tuple[bytes, int, int]] = collections.deque()
        # The payloads with shared-memory segments of calls not delivered yet, held until then: (seq,
        # payload).  A segment must outlive a lost connection if its call may go out again.
        self._undelivered_held: collections.deque[tuple[int, bytes]] = collections.deque()
        # Calls with retries left: their payloads, until their answers.
        self._kept: dict[int, Kept] = {}
        # Calls registered in ``pending`` but not sent yet: waiting for their ref
        # arguments, or queued behind such a call (``_blocked``).  They send
        # themselves; a reconnect does not.
        self._unsent: set[int] = set()
        self.epoch = -1
        #: Counts this connection's sockets: a pending ref's value is sent once per session
        #: (``_ref._bind_forward``), so a call sent again after a reconnect gets it again.
        self.session = 0
        #: Reconnects to the same process since a frame last came from it (see MAX_SILENT_RECONNECTS).
        self._silent_reconnects = 0
        self.dead_error: str | None = None
        #: What calls fail with once ``dead_error`` is set.
        self._dead_class: type[Exception] = ActorDiedError
        self._blocked: collections.deque[Callable[[], bool]] = collections.deque()
        #: Streams (generator calls) in flight, by call id: their items go there (see _stream).
        self.streams: dict[int, StreamState] = {}
        #: Where asyncio.gather's callbacks on this connection's refs run (see ObjectRef.add_done_callback).
        self.callback_context = contextvars.Context()
        #: The callback of the latest asyncio.gather over refs of this connection, weakly (it lives as
        #: long as a child of that gather is pending); ``frames_received`` calls it itself.
        self.gather_callback: Callable[[], Callable[[Any], object] | None] = _no_gather

    # -- connecting ----------------------------------------------------------

    def start(self) -> None:
        """Connect, on this connection's loop (running)."""
        _watch_loop(self)
        self.loop.create_task(self._guarded(self._connect(0)))

    async def _guarded(self, job: Any) -> None:
        """Run a (re)connecting job; if it is cancelled, its loop is shutting down (asyncio.run's end):
        stop for good, rather than let the closing transport start another job the loop never runs."""
        try:
            await job
        except asyncio.CancelledError:
            self.loop_ended()
            raise

    def loop_ended(self) -> None:
        """This connection's loop is shutting down (on the loop): its pending calls can never be answered.

        Their refs fail with ``ObjectLostError`` and stop counting as pending
        (``max_pending_calls``, an anonymous actor's lifetime); the calls are
        not cancelled (a fire-and-forget call runs on in the actor).  The
        socket is closed, so the actor stops the streams this loop consumed.
        """
        if self.dead_error is LOOP_ENDED:
            return
        self.link.connection_ended(self)
        if self.dead_error is None:
            self.dead_error, self._dead_class = LOOP_ENDED, ObjectLostError
        self._out = []
        self._backlog.clear()
        self._drop_undelivered()
        self._blocked.clear()
        for call_id in list(self.pending):
            self._fail(call_id, ObjectLostError(LOOP_ENDED))
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> int:
        """This connection's loop is closed and nothing told it (a loop closed without ``shutdown_asyncgens()``):
        forget its calls, from any thread; returns how many there were (the caller counts them finished).

        Their refs are left as they are: a closed loop can run no callback, and
        ``get()`` already refuses a pending ref of a closed loop.
        """
        if self.dead_error is None:
            self.dead_error, self._dead_class = LOOP_ENDED, ObjectLostError
        _forget_loop(self.loop)  # never closed by it now; the generator goes quietly (its loop is closed)
        count = len(self.pending)
        for kept in list(self._kept.values()):
            kept.drop()
        self._kept.clear()
        self.pending = CallTable()
        self.streams.clear()
        self._drop_undelivered()
        self._blocked.clear()
        self._out = []
        self._backlog.clear()
        return count

    async def _connect(self, min_epoch: int) -> None:
        found = await self._reach(min_epoch)
        if found[0] == "ALIVE":
            await self._attach(found[1], found[2])
        else:
            self._end(found[0], found[1])

    async def _reach(self, min_epoch: int, lost_epoch: int = -1) -> tuple[Any, ...]:
        """Connect a socket to the actor at ``min_epoch`` or later.

        Returns ``("ALIVE", epoch, socket with our hello sent, why it last
        restarted)``, or
        ``("DEAD", reason)`` (the node says it is gone for good), or
        ``("UNREACHABLE", reason)``: the node says it is alive, but its
        socket refused us for ``UNREACHABLE_SECONDS``.  A socket to the
        process of ``lost_epoch`` (whose connection was just lost) counts only
        once that process answers (``_open``).
        """
        # The node's word on what follows a process (its restart or its death), asked for once we may
        # need it: when the process refuses us, or at once for the process whose connection was lost (it
        # may be ending, and the node may end right after it: the question must be there before).
        early = asyncio.ensure_future(self.link.wait_actor(lost_epoch + 1)) if lost_epoch >= 0 else None
        try:
            status = await self.link.wait_actor(min_epoch)
            while True:
                if status[0] == "DEAD":
                    return ("DEAD", status[1])
                epoch, path = status[1], status[2]
                why = status[3] if len(status) > 3 else "it crashed"
                successor, early = (early, None) if epoch == lost_epoch else (None, early)
                give_up: float | None = None
                pause = 0.01
                try:
                    while True:
                        opened = await self._open_unless(path, epoch, lost_epoch, successor)
                        if opened is None:
                            break  # the node spoke first
                        if not isinstance(opened, OSError):
                            return ("ALIVE", opened[1], opened[0], why)
                        if is_fd_exhaustion(opened):  # not the actor's end: waiting for a restart would hang
                            return ("DEAD", str(out_of_fds_error("this process", opened)))
                        # Refused.  Most often the process has just ended, and the node reports its
                        # restart or its death in a moment.  But a live process whose socket we cannot
                        # reach (its file removed, say) would have us wait for that forever: meanwhile,
                        # try its socket again now and then, and give up after UNREACHABLE_SECONDS.
                        now = self.loop.time()
                        if give_up is None:
                            give_up = now + UNREACHABLE_SECONDS
                        elif now >= give_up:
                            return (
                                "UNREACHABLE",
                                f"cannot reach {self.link.meta.class_name} ({self.link.actor_id}): the node reports "
                                f"it alive, but connecting to {path} failed for {UNREACHABLE_SECONDS:g} s: {opened}",
                            )
                        if successor is None:
                            successor = asyncio.ensure_future(self.link.wait_actor(epoch + 1))
                        await asyncio.wait((successor,), timeout=pause)
                        if successor.done():
                            break
                        pause = min(pause * 2, 0.5)
                finally:
                    if successor is not None:
                        _settle(successor)  # its result, if any, is still read below
                assert successor is not None  # the loop above ends with the node's word, or returns
                status = successor.result()
        except ConnectionError as exc:
            return ("DEAD", f"the actorloop node is unreachable: {exc}")
        finally:
            if early is not None:
                _settle(early)

    async def _open_unless(
        self, path: str, epoch: int, lost_epoch: int, successor: asyncio.Future[Any] | None
    ) -> tuple[socket.socket, int] | OSError | None:
        """What ``_open`` gives, or its error; None if ``successor`` (the node's word) came first."""
        attempt = asyncio.ensure_future(self._open(path, epoch, lost_epoch))
        try:
            if successor is not None:
                await asyncio.wait((attempt, successor), return_when=asyncio.FIRST_COMPLETED)
                if not attempt.done():
                    attempt.cancel()
                    await asyncio.wait((attempt,))
                    if not attempt.cancelled() and attempt.exception() is None:
                        attempt.result()[0].close()  # opened as it was cancelled
                    return None
            return await attempt
        except OSError as exc:
            return exc
        except BaseException:
            attempt.cancel()
            raise

    async def _open(self, path: str, epoch: int, lost_epoch: int) -> tuple[socket.socket, int]:
        """A socket connected to ``path``, our hello sent on it, and the epoch of the process behind it
        (OSError if nobody answers).

        A process that is dying still takes connections for a moment (its
        listening socket closes with the rest of its descriptors, in no set
        order), and the node reports it alive until it has reaped it; so a
        socket to the process of ``lost_epoch`` counts only once that process
        answers, and its answer names its epoch (a restarted process binds the
        same path).
        """
        sock = await connect_unix(path)
        try:
            await self.loop.sock_sendall(sock, proto.make_hello(self.link.secret))
            answered = await self._epoch_of(sock) if epoch == lost_epoch else epoch
        except BaseException:
            sock.close()
            raise
        if answered is None:
            sock.close()
            raise ConnectionResetError("the actor's process did not answer (it is ending)")
        return sock, answered

    async def _epoch_of(self, sock: socket.socket) -> int | None:
        """Ask the process behind the new ``sock`` its epoch; None if it goes before it answers.

        The answer is the only frame the process sends before it hears more
        from us: it is read here, whole, before the socket becomes the transport.
        """
        loop = self.loop
        probe = next(self.ids)
        payload = proto.dumps((proto.CALL, probe, READY_METHOD, (EPOCH_PROBE,), {}, None))
        try:
            await loop.sock_sendall(sock, proto.frame(payload))
            (length,) = proto.HEADER.unpack(await _recv_exact(loop, sock, proto.HEADER_BYTES))
            if length > 1 << 16:
                return None
            reply = proto.loads(await _recv_exact(loop, sock, length))
        except Exception:  # noqa: BLE001 - a broken or garbled answer is no answer
            return None
        if reply[0] != proto.RESULT_OK or reply[1] != probe or not isinstance(reply[2], int):
            return None
        return reply[2]

    async def _attach(self, epoch: int, sock: socket.socket) -> None:
        """Make ``sock`` (our hello sent on it already) this connection's transport: what waits in ``_out``
        leaves."""
        try:
            await self.loop.create_unix_connection(lambda: self, sock=sock)
        except OSError as exc:
            sock.close()
            self._end("UNREACHABLE", f"cannot reach {self.link.meta.class_name} ({self.link.actor_id}): {exc}")
            return
        self.epoch = epoch

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.closed = False
        super().connection_made(transport)

    # -- writing and delivery (see FrameProtocol._write_out) ---------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_out(early=False)

    def _write_early(self) -> None:
        self._write_out(early=True)

    def _chunk_mark(self) -> int:
        return self._seq

    def _chunk_written(self, mark: int) -> None:
        self._delivered(mark)

    def _chunk_handed(self, chunks: list[tuple[bytes, int]], written: int) -> None:
        # The transport writes them when the socket has room (when the loop
        # runs); whether the socket took them is known only then.  Until then
        # their frames are kept: if the connection is lost they may have to go
        # out again.
        for chunk, mark in chunks:
            self._handed.append((chunk, written, mark))
            written = 0
        self._handed_seq = chunks[-1][1]
        if not self._confirm_scheduled:
            self._confirm_scheduled = True
            self.loop.call_soon(self._confirm_delivered)

    def _confirm_delivered(self) -> None:
        self._confirm_scheduled = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the write failed (the peer was already gone): those calls go to the next socket
        if transport.get_write_buffer_size():
            # Still in our buffer (the actor reads slowly): look again soon.
            self._confirm_scheduled = True
            self.loop.call_later(0.002, self._confirm_delivered)
            return
        self._delivered(self._handed_seq)

    def _delivered(self, seq: int) -> None:
        """Every call numbered up to ``seq`` is in the actor's socket: the frames and segments kept for
        them go (a call with retries left still has its own payload in ``_kept``)."""
        if seq <= self.delivered_seq:
            return
        self.delivered_seq = seq
        handed = self._handed
        while handed and handed[0][2] <= seq:
            handed.popleft()
        held = self._undelivered_held
        while held and held[0][0] <= seq:
            proto.unhold_payload(held.popleft()[1])

    def _drop_undelivered(self) -> None:
        """No call will go out again: let go of the frames and segments kept for that."""
        self._handed.clear()
        held = self._undelivered_held
        while held:
            proto.unhold_payload(held.popleft()[1])

    def _unwritten_calls(self) -> dict[int, bytes]:
        """The calls whose frames did not reach the socket whole (handed to the transport but not known to
        be written, waiting in the backlog, or queued): their payloads, by call id."""
        payloads: list[bytes] = []
        for chunk, written, _ in self._handed:
            payloads += _split_frames(chunk, written)
        written = self._backlog_written
        for chunk, _ in self._backlog:
            payloads += _split_frames(chunk, written)
            written = 0
        payloads += self._out[1::2]  # (header, payload) pairs
        calls = {}
        for payload in payloads:
            call_id = _call_id_of(payload)
            if call_id is not None:
                calls[call_id] = payload
        return calls

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_direct_fd()
        self.transport = None
        self._buffer.clear()
        unwritten = self._unwritten_calls() if self.dead_error is None else {}
        self._out = []
        self._backlog.clear()
        self._backlog_written = 0
        self._handed.clear()
        self.segments_lost()
        # What is sent from now on goes to the next socket (a pending ref's value too, see _ref).
        self.session += 1
        # Their holds are _recover's now: it takes new ones for the calls it sends again.
        held, self._undelivered_held = self._undelivered_held, collections.deque()
        if self.dead_error is not None or self.loop.is_closed():
            for _, payload in held:
                proto.unhold_payload(payload)
            return
        inflight = list(self.pending)
        self.loop.create_task(self._guarded(self._recover(inflight, unwritten, held)))

    async def _recover(
        self, inflight: list[int], unwritten: dict[int, bytes], held: Iterable[tuple[int, bytes]]
    ) -> None:
        """The socket was lost: reach the actor again, and settle the calls that were in flight on it.

        The process is either the same one (only the connection was lost: the
        node still reports the epoch we had) or a restarted one.  Calls that
        never reached the socket (``unwritten``: their frames were still on
        this side) simply go out again.  Delivered calls are sent again if they
        have ``max_task_retries`` left (a stream never is: its items are out);
        the others fail: ``ActorDiedError`` if the process restarted,
        ``ActorUnavailableError`` if it is the same one (the call may have run,
        or may still run, there).  ``held``: the segment holds of the
        undelivered calls (the calls sent again take their own).
        """
        try:
            old_epoch = self.epoch
            found = await self._reach(old_epoch, old_epoch)
            if found[0] != "ALIVE":
                self._end(found[0], found[1])
                return
            _, epoch, sock, why = found
            same = epoch == old_epoch
            if not same:
                self._silent_reconnects = 0
            elif self._silent_reconnects >= MAX_SILENT_RECONNECTS:
                sock.close()
                self._end(
                    "UNREACHABLE",
                    f"the connection to {self.link.meta.class_name} ({self.link.actor_id}) was lost "
                    f"{MAX_SILENT_RECONNECTS + 1} times in a row without an answer in between",
                )
                return
            if same:
                self._silent_reconnects += 1  # back to 0 once a frame comes (frames_received)
            resend: list[bytes] = []
            for call_id in inflight:
                if call_id not in self.pending or call_id in self._unsent:
                    continue  # answered, failed or cancelled meanwhile; or it sends itself later
                payload = unwritten.get(call_id)
                last_try = None
                if payload is None:  # delivered: it may have run there
                    kept = self._kept.get(call_id)
                    if kept is None or kept.retries_left == 0 or call_id in self.streams:  # a stream's items are out
                        self._fail(call_id, self._in_flight_error(same, why))
                        continue
                    if kept.retries_left > 0:
                        kept.retries_left -= 1
                    payload = kept.payload
                    if kept.retries_left == 0:  # its last try: its payload goes once delivered
                        last_try = kept
                # Otherwise it never reached the socket: it simply goes out again.
                self._seq += 1
                if payload[0] == _OOB_BYTE:  # held until delivered (before a hold it replaces goes)
                    proto.hold_payload(payload)
                    self._undelivered_held.append((self._seq, payload))
                if last_try is not None:
                    del self._kept[call_id]
                    last_try.drop()
                resend += (proto.HEADER.pack(len(payload)), payload)  # _out holds (header, payload) pairs
                self.track_segments(payload)
            # Numbered after any call sent while we reached the actor, though they go out before those: a
            # chunk is delivered whole or not, up to its last number, and they all leave in one chunk.
            self._out = resend + self._out
        finally:
            for _, payload in held:
                proto.unhold_payload(payload)
        await self._attach(epoch, sock)

    def _in_flight_error(self, same_process: bool, why: str) -> BaseException:
        name = self.link.meta.class_name
        if not same_process:
            return ActorDiedError(f"{name} restarted while this call ran: {why}")
        return ActorUnavailableError(
            f"the connection to {name} ({self.link.actor_id}) was lost while this call was in flight; the actor "
            "is still alive, so the call may have run (or may still run) there, but its answer is lost. "
            "Calls with max_task_retries left are sent again instead"
        )

    def _end(self, kind: str, reason: str) -> None:
        """This connection cannot go on: ``"DEAD"`` (the actor is gone for good) or ``"UNREACHABLE"``."""
        if kind == "DEAD":
            self._die(reason)
            return
        # The actor lives, but we cannot reach it: fail what is pending here, and let the next call on
        # this loop try afresh on a new connection.
        self.link.connection_ended(self)
        self._die(reason, ActorUnavailableError)

    def _die(self, reason: str, error: type[Exception] = ActorDiedError) -> None:
        self.dead_error, self._dead_class = reason, error
        self._out = []
        self._backlog.clear()
        self.segments_lost()
        self._drop_undelivered()
        for call_id in list(self.pending):
            self._fail(call_id, error(reason))
        self.pending.trim()
        while self._blocked:
            self._blocked.popleft()
        if self.transport is not None:
            self.transport.abort()

    def _forget(self, call_id: int) -> ObjectRef[Any] | None:
        """Take a call out of the tables: it will not be sent again."""
        ref = self.pending.pop(call_id)
        if self._kept:
            kept = self._kept.pop(call_id, None)
            if kept is not None:
                kept.drop()
        if self._unsent:
            self._unsent.discard(call_id)
        return ref

    def _fail(self, call_id: int, error: BaseException) -> None:
        ref = self._forget(call_id)
        if ref is None:
            return
        if not ref.done():
            ref.set_exception(error)
            if self.link.quiet():
                ref._log_traceback = False  # asyncio.Future internals
            ref._wake_waiter()
        if self.streams:
            stream = self.streams.pop(call_id, None)
            if stream is not None:
                stream.finish(ref)
        self.link.calls_finished(1)

    # -- calls -----------------------------------------------------------------

    def _register(self, call_id: int, ref: ObjectRef[Any], payload: bytes) -> None:
        self.pending[call_id] = ref
        retries = self.link.max_task_retries
        if retries:
            self._kept[call_id] = Kept(payload, retries)

    def send_call(self, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> None:
        if ref.done():  # cancelled before it left the process
            self.link.calls_finished(1)
            return
        # _register and _send_now, inline: every call of a gather comes here (two calls less:
        # ~700 of the ~60,000 instructions a gathered call costs its caller, callgrind on 3.11).
        table = self.pending
        refs = table.refs
        if call_id - table.base == len(refs):  # the next call id (the usual case): CallTable's fast path
            refs.append(ref)
            table.live += 1
        else:
            table[call_id] = ref
        retries = self.link.max_task_retries
        if retries:
            self._kept[call_id] = Kept(payload, retries)
        if self.dead_error is not None:
            self._fail(call_id, self._dead_class(self.dead_error))
        elif self._blocked:
            self._unsent.add(call_id)
            self._blocked.append(lambda: self._send_queued(call_id, payload))
        else:
            self._seq += 1
            if payload[0] == _OOB_BYTE:  # its segments are held until it is delivered
                proto.hold_payload(payload)
                self._undelivered_held.append((self._seq, payload))
            self.send(payload)

    def send_call_from_thread(self, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> None:
        """``send_call`` for a call a thread posted to this loop (see ``count_queued_from_thread``)."""
        self.count_queued_from_thread(-1)
        self.send_call(call_id, payload, ref)

    def _send_now(self, payload: bytes) -> None:
        self._seq += 1
        if payload[0] == _OOB_BYTE:  # its segments are held until it is delivered
            proto.hold_payload(payload)
            self._undelivered_held.append((self._seq, payload))
        self.send(payload)

    def _send_queued(self, call_id: int, payload: bytes) -> bool:
        """Send a call that waited behind a call with ref arguments (unless it ended meanwhile)."""
        if call_id in self._unsent:
            self._unsent.discard(call_id)
            self._send_now(payload)
        return True

    def call_from_thread(self, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> bool:
        """Send a sync caller's call straight from its thread; False if it must go through the loop.

        Only a lone call goes straight out (the sequential case, where the hop
        to the loop costs most); while others are in flight, calls go through
        the loop, which sends each batch in one write.
        """
        if self.pending or self._fd < 0 or self.dead_error is not None or self._blocked or self.queued_from_threads:
            return False
        # Registered before it is written: the answer may come back at once.
        self.pending.add_from_thread(call_id, ref)
        retries = self.link.max_task_retries
        if retries:
            self._kept[call_id] = Kept(payload, retries)
        try:
            written = self.write_from_thread(payload)
        except OSError:
            written = True  # half written on a broken socket: it may have reached the actor
        if written:
            return True  # in the socket already: delivered, nothing kept unless it may be retried
        self.pending.discard_from_thread(call_id)
        kept = self._kept.pop(call_id, None)
        if kept is not None:
            kept.drop()
        return False

    def send_call_with_refs(
        self,
        call_id: int,
        ref: ObjectRef[Any],
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group: str | None,
        stream_window: int = 0,
    ) -> None:
        """A call whose arguments include refs: it and every later call wait for them, in order.

        ``stream_window`` > 0: a stream call (see ``_stream``) with that window.
        """
        self.pending[call_id] = ref
        if self.dead_error is not None:
            self._fail(call_id, self._dead_class(self.dead_error))
            return
        task = self.loop.create_task(_resolve_refs(args, kwargs))
        self._unsent.add(call_id)

        def release() -> bool:
            if not task.done():
                return False
            if call_id not in self._unsent:  # failed meanwhile (the actor died), or cancelled
                return True
            self._unsent.discard(call_id)
            if ref.done():
                self._fail(call_id, asyncio.CancelledError())
                return True
            try:
                real_args, real_kwargs = task.result()
            except BaseException as exc:  # an argument's own call failed: so does this one
                self._fail(call_id, exc)
                return True
            try:
                msg: tuple[Any, ...] = (
                    (proto.CALL, call_id, method, real_args, real_kwargs, group)
                    if not stream_window
                    else (proto.STREAM_CALL, call_id, method, real_args, real_kwargs, group, stream_window)
                )
                payload = proto.dumps_call(msg, real_args, real_kwargs)
            except Exception as exc:
                where = f"{self.link.meta.class_name}.{method}"
                self._fail(call_id, SerializationError(f"could not pickle the arguments of {where}: {exc}"))
                return True
            self._register(call_id, ref, payload)
            self._send_now(payload)
            return True

        self._blocked.append(release)
        task.add_done_callback(lambda _: self._drain_blocked())

    def send_call_with_refs_from_thread(self, *call: Any) -> None:
        """``send_call_with_refs`` for a call a thread posted to this loop (see ``count_queued_from_thread``)."""
        self.count_queued_from_thread(-1)
        self.send_call_with_refs(*call)

    def _drain_blocked(self) -> None:
        while self._blocked:
            if not self._blocked[0]():
                return
            self._blocked.popleft()

    def cancel_call(self, call_id: int) -> None:
        """Cancel a call remotely; safe from any thread."""
        if _get_running_loop() is not self.loop:
            self.entry.put(self.cancel_call, call_id)
            return
        if self.streams:
            self.streams.pop(call_id, None)
        if self._forget(call_id) is None:
            return
        self.pending.trim()
        self.link.calls_finished(1)
        if self.dead_error is None:
            self.send(proto.dumps((proto.CANCEL, call_id)))

    def ack_stream(self, call_id: int, consumed: int) -> None:
        """Give a stream's generator credit: its caller consumed ``consumed`` items (on the loop)."""
        if call_id in self.pending and self.dead_error is None:
            self.send(_pickle_dumps((proto.STREAM_ACK, call_id, consumed), 5))

    def frames_received(self, frames: list[bytes]) -> None:
        self._silent_reconnects = 0
        pending = self.pending
        kept = self._kept
        streams = self.streams
        finished = 0
        release = self.release_later
        # asyncio.gather registers a callback on each child, which a future runs through
        # loop.call_soon: on the stdlib loop a Python Handle, a call_soon and a _run_once turn per
        # child (~0.5 us of the ~5.5 us a gathered call costs the driver, 3.11 and 3.12).  For the
        # children of the latest gather, the callback is taken off the ref before it is settled
        # and called here instead.  It only counts the child and, with the last one, settles the
        # gather's own future, whose callbacks go through call_soon as usual.
        gather_done = self.gather_callback()
        for data in frames:
            try:
                # proto.loads, inline for a frame without shared-memory segments (nearly all of them).
                msg = _pickle_loads(data) if data[0] != _OOB_BYTE else proto.loads(data, release)
            except Exception as exc:
                # A result this process cannot unpickle fails its own call, not the connection.
                msg = self._unreadable_result(data, exc)
            kind = msg[0]
            if kind != _RESULT_OK and kind != _RESULT_ERR:
                self._control_received(msg)
                continue
            call_id = msg[1]
            # CallTable.pop's fast path, inline (the table's list only changes in trim, below).
            i = call_id - pending.base
            refs = pending.refs
            ref = refs[i] if 0 <= i < len(refs) else None
            if ref is not None:
                refs[i] = None
                pending.live -= 1
            else:
                ref = pending.pop(call_id)
                if ref is None:
                    continue
            finished += 1
            if kept:
                entry = kept.pop(call_id, None)
                if entry is not None:
                    entry.drop()
            if ref.done():
                if streams:
                    streams.pop(call_id, None)
                continue
            called_here = gather_done is not None and _remove_done_callback(ref, gather_done)
            if kind == _RESULT_OK:
                ref.set_result(msg[2])
            else:
                ref.set_exception(self._error_from(msg))
            if called_here:
                try:
                    gather_done(ref)  # type: ignore[misc]
                except Exception as exc:  # as Handle._run reports a failed callback
                    self.loop.call_exception_handler(
                        {"message": f"Exception in callback {gather_done!r}", "exception": exc, "future": ref}
                    )
            if sync_waiters:  # a thread is blocked in get() on some ref
                ref._wake_waiter()
            if streams:
                stream = streams.pop(call_id, None)
                if stream is not None:
                    stream.finish(ref)
                    if kind == _RESULT_ERR and msg[5] == "" and msg[3] == "SerializationError":
                        # Made here (items we could not unpickle): the generator may still run there.
                        self.send(proto.dumps((proto.CANCEL, call_id)))
        if finished:
            pending.trim()
            self.link.calls_finished(finished)

    def _control_received(self, msg: tuple[Any, ...]) -> None:
        """A frame that answers no call: a segment released, a ref's value, a stream's items."""
        kind = msg[0]
        if kind == proto.RELEASE:
            proto.segment_pool.release(msg[1], self)
        elif kind == proto.REF_VALUE:
            fulfil(self, msg)
        elif kind == proto.STREAM_ITEMS:
            stream = self.streams.get(msg[1])
            if stream is not None:
                stream.deliver(msg[2])

    def _unreadable_result(self, data: bytes, exc: Exception) -> tuple[Any, ...]:
        peeked = proto.peek_kind_and_id(data)
        call_id = peeked[1] if peeked is not None else None
        error = SerializationError(
            f"could not unpickle the result of a call to {self.link.meta.class_name}: {type(exc).__name__}: {exc}"
        )
        return (proto.RESULT_ERR, call_id, error, "SerializationError", str(error), "")

    def _error_from(self, msg: tuple[Any, ...]) -> BaseException:
        _, _, cause, type_name, message, remote_tb = msg
        if isinstance(cause, (ActorDiedError, SerializationError)) and not remote_tb:
            return cause
        text = f"{type_name}: {message}\n\nRemote traceback:\n{remote_tb}"
        return _make_task_error(text, cause, remote_tb)


async def connect_unix(path: str) -> socket.socket:
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


def _settle(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` if it is still running; else mark its error as seen.

    A question to the node that we stop caring about may have failed already
    (the node ended): nobody reads that error, and asyncio would print
    "exception was never retrieved" at exit.
    """
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


async def _recv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise EOFError("the connection was closed")
        data += chunk
    return data


async def _resolve_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    real_args = tuple([await a if isinstance(a, ObjectRef) else a for a in args])
    real_kwargs = {k: (await v if isinstance(v, ObjectRef) else v) for k, v in kwargs.items()}
    return real_args, real_kwargs
