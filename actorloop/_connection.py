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
from asyncio import events
from pickle import dumps as _pickle_dumps
from pickle import loads as _pickle_loads
from typing import Any, Callable, Iterator, Protocol, cast

from . import _protocol as proto
from ._fds import is_fd_exhaustion, out_of_fds_error
from ._meta import ClassMeta
from ._ref import ObjectRef, fulfil
from ._ref import _sync_waiters as sync_waiters
from ._stream import StreamState
from .exceptions import ActorDiedError, SerializationError, _make_task_error

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
                fut.set_exception(proto.node_error(value))

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
    #: Whether the actor may restart: if not, no call is ever sent again and no payload is kept.
    restartable: bool
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
        _unhold(self.payload)


def _unhold(payload: bytes) -> None:
    if payload[0] == _OOB_BYTE:
        proto.unhold_payload(payload)


_OOB_BYTE = proto._OOB_BYTE
_RESULT_OK = proto.RESULT_OK
_RESULT_ERR = proto.RESULT_ERR


class ActorConnection(proto.FrameProtocol):
    """One event loop's connection to one actor; survives restarts by reconnecting.

    What it keeps per call (a gather of 1,000,000 calls makes that a million
    times, see docs/internals.md, "A call's life"): the call's ref in
    ``pending``, nothing else once the call is delivered and cannot be
    retried.  Until then its payload waits in ``_undelivered``; a call with
    retries left keeps it in ``_kept`` until its answer.
    """

    direct_writes = True

    def __init__(self, loop: asyncio.AbstractEventLoop, link: ActorLink) -> None:
        super().__init__(loop)
        self.link = link
        self.ids = itertools.count(1)
        #: Calls sent (or waiting to be sent) and not answered, by call id.
        self.pending = CallTable()
        # Delivery is counted, not flagged per call: each send takes the next
        # number (its seq); once the socket took a chunk of frames, every call
        # numbered up to the chunk's last number is delivered.
        self._seq = 0
        self._handed_seq = 0
        self.delivered_seq = 0
        self._confirm_scheduled = False
        # Calls sent and not known to be delivered, in number order: their ids
        # and payloads (what a restarted actor is sent; empty if it cannot
        # restart, see _resendable).  Every number taken adds one to each, so
        # the last has number ``_seq``: no number, and no tuple, is kept per
        # call (a gather whose actor falls behind keeps hundreds of thousands).
        # Once delivered they leave (a gather of 1,000,000 calls kept every
        # payload, ~80 bytes each, until its reply).
        self._undelivered_ids: collections.deque[int] = collections.deque()
        self._undelivered: collections.deque[bytes] = collections.deque()
        # Those of them with shared-memory segments, held until delivered: (seq, payload).
        self._undelivered_held: collections.deque[tuple[int, bytes]] = collections.deque()
        # Calls with retries left: their payloads, until their answers.
        self._kept: dict[int, Kept] = {}
        # A call is sent again only to a restarted actor: to one that cannot restart (max_restarts=0,
        # the default) no call is, and no payload is kept at all, neither until delivery nor for
        # retries (max_task_retries needs a restart).
        self._resendable = link.restartable
        self._retries = link.max_task_retries if link.restartable else 0
        # Calls registered in ``pending`` but not sent yet: waiting for their ref
        # arguments, or queued behind such a call (``_blocked``).  They send
        # themselves; a restart does not.
        self._unsent: set[int] = set()
        self.epoch = -1
        self.dead_error: str | None = None
        self._blocked: collections.deque[Callable[[], bool]] = collections.deque()
        #: Streams (generator calls) in flight, by call id: their items go there (see _stream).
        self.streams: dict[int, StreamState] = {}
        #: Where asyncio.gather's callbacks on this connection's refs run (see ObjectRef.add_done_callback).
        self.callback_context = contextvars.Context()

    # -- connecting ----------------------------------------------------------

    def start(self) -> None:
        self.loop.create_task(self._guarded(self._connect(0)))

    async def _guarded(self, job: Any) -> None:
        """Run a (re)connecting job; if it is cancelled, its loop is shutting down (asyncio.run's end):
        stop for good, rather than let the closing transport start another job the loop never runs."""
        try:
            await job
        except asyncio.CancelledError:
            self.link.connection_ended(self)
            self.dead_error = "the event loop of this connection was shut down while it reconnected"
            self._out = []
            self._backlog.clear()
            self.segments_lost()
            self._drop_undelivered(self._undelivered)
            for call_id in list(self.pending):
                self._fail(call_id, ActorDiedError(self.dead_error))
            if self.transport is not None:
                self.transport.abort()
            raise

    async def _connect(self, min_epoch: int) -> None:
        while True:
            try:
                status = await self.link.wait_actor(min_epoch)
            except ConnectionError as exc:
                self._die(f"the actorloop node is unreachable: {exc}")
                return
            if status[0] == "DEAD":
                self._die(status[1])
                return
            epoch, path = status[1], status[2]
            try:
                await self.loop.create_unix_connection(lambda: self, sock=await connect_unix(path))
            except OSError as exc:
                if is_fd_exhaustion(exc):  # not the actor's end: waiting for a restart would hang
                    self._die(str(out_of_fds_error("this process", exc)))
                    return
                # The actor ended between the node's answer and our connect:
                # wait for whatever comes next (restart or death).
                min_epoch = epoch + 1
                continue
            self.epoch = epoch
            return

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.closed = False
        transport.write(proto.make_hello(self.link.secret))
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

    def _chunk_handed(self, mark: int) -> None:
        # The transport writes it when the socket has room (uvloop: at the end
        # of this iteration); whether the socket took it is known only then.
        self._handed_seq = mark
        if not self._confirm_scheduled:
            self._confirm_scheduled = True
            self.loop.call_soon(self._confirm_delivered)

    def _confirm_delivered(self) -> None:
        self._confirm_scheduled = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the write failed (the peer was already gone): those calls go to the next process
        if transport.get_write_buffer_size():
            # Still in our buffer (the actor reads slowly): look again soon.
            self._confirm_scheduled = True
            self.loop.call_later(0.002, self._confirm_delivered)
            return
        self._delivered(self._handed_seq)

    def _delivered(self, seq: int) -> None:
        """Every call numbered up to ``seq`` is in the actor's socket: the payloads kept for its
        undelivered calls go (a call with retries left still has its own in ``_kept``)."""
        if seq <= self.delivered_seq:
            return
        self.delivered_seq = seq
        payloads = self._undelivered
        ids = self._undelivered_ids
        if seq >= self._seq:
            # All of them (a chunk is written whole, the usual case): at once, not one by one
            # (~700 of the ~60,000 instructions a gathered call costs its caller, callgrind on 3.11).
            payloads.clear()
            ids.clear()
        else:
            for _ in range(len(payloads) - (self._seq - seq)):
                payloads.popleft()
                ids.popleft()
        held = self._undelivered_held
        while held and held[0][0] <= seq:
            proto.unhold_payload(held.popleft()[1])

    def _drop_undelivered(self, sent: collections.deque[bytes]) -> None:
        """Let go of the payloads of ``sent`` (``_undelivered``, or what it was at a connection's loss)."""
        for payload in sent:
            _unhold(payload)
        sent.clear()
        if sent is self._undelivered:
            self._undelivered_ids.clear()
            self._undelivered_held.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_direct_fd()
        self.transport = None
        self._buffer.clear()
        self._backlog.clear()
        self.segments_lost()
        if self.dead_error is not None or self.loop.is_closed():
            return
        inflight = sorted(self.pending)
        # What was queued or written on the lost connection and not known to
        # have arrived: _recover sends it to the next process.
        lost = dict(zip(self._undelivered_ids, self._undelivered, strict=True))
        self._undelivered_ids = collections.deque()
        self._undelivered = collections.deque()
        self._undelivered_held = collections.deque()  # their holds are lost's now (see _recover)
        self._out = []
        self.loop.create_task(self._guarded(self._recover(inflight, lost)))

    async def _recover(self, inflight: list[int], lost: dict[int, bytes]) -> None:
        """Send the calls in flight at a connection's loss to the next process, or fail them.

        ``lost``: the payloads of the calls that were not known to be delivered, by call id (their
        holds pass to the resend, or go).
        """
        try:
            status = await self.link.wait_actor(self.epoch + 1)
        except ConnectionError as exc:
            status = ("DEAD", f"the actorloop node is unreachable: {exc}")
        if status[0] == "DEAD":
            for left in lost.values():
                _unhold(left)
            self._die(status[1])
            return
        why = status[3] if len(status) > 3 else "it crashed"
        resend: list[bytes] = []
        for call_id in inflight:
            if call_id not in self.pending or call_id in self._unsent:
                continue  # answered, failed or cancelled meanwhile; or it sends itself later
            payload = lost.pop(call_id, None)
            if payload is None:  # delivered: it may have run there
                kept = self._kept.get(call_id)
                if kept is None or kept.retries_left == 0 or call_id in self.streams:  # a stream's items are out
                    message = f"{self.link.meta.class_name} restarted while this call ran: {why}"
                    self._fail(call_id, ActorDiedError(message))
                    continue
                if kept.retries_left > 0:
                    kept.retries_left -= 1
                payload = kept.payload
                if kept.retries_left == 0:
                    # Its last try: its payload goes once delivered (its hold passes to _undelivered).
                    del self._kept[call_id]
                elif payload[0] == _OOB_BYTE:
                    proto.hold_payload(payload)  # one hold for _kept, one for _undelivered
            # Otherwise it never reached the old process: it simply goes to the new one.
            # Numbered after the calls sent while we waited, though they go out before them: a
            # delivery covers every number up to its chunk's last, and they all leave in one chunk.
            self._seq += 1
            self._undelivered_ids.append(call_id)
            self._undelivered.append(payload)
            if payload[0] == _OOB_BYTE:
                self._undelivered_held.append((self._seq, payload))
            resend.append(proto.frame(payload))
            self.track_segments(payload)
        for left in lost.values():  # not resent: answered or cancelled meanwhile
            _unhold(left)
        self._out = resend + self._out
        await self._connect(status[1])

    def _die(self, reason: str) -> None:
        self.dead_error = reason
        self._out = []
        self._backlog.clear()
        self.segments_lost()
        self._drop_undelivered(self._undelivered)
        for call_id in list(self.pending):
            self._fail(call_id, ActorDiedError(reason))
        self.pending.trim()
        while self._blocked:
            self._blocked.popleft()
        if self.transport is not None:
            self.transport.abort()

    def _forget(self, call_id: int) -> ObjectRef[Any] | None:
        """Take a call out of the tables: it will not be sent again."""
        ref = self.pending.pop(call_id, None)
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
        retries = self._retries
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
        retries = self._retries
        if retries:
            self._kept[call_id] = Kept(payload, retries)
        if self.dead_error is not None:
            self._fail(call_id, ActorDiedError(self.dead_error))
        elif self._blocked:
            self._unsent.add(call_id)
            self._blocked.append(lambda: self._send_queued(call_id, payload))
        else:
            self._seq += 1
            if self._resendable:
                self._undelivered_ids.append(call_id)
                self._undelivered.append(payload)
                if payload[0] == _OOB_BYTE:  # kept until delivered: its segments with it
                    proto.hold_payload(payload)
                    self._undelivered_held.append((self._seq, payload))
            self.send(payload)

    def send_call_from_thread(self, call_id: int, payload: bytes, ref: ObjectRef[Any]) -> None:
        """``send_call`` for a call a thread posted to this loop (see ``count_queued_from_thread``)."""
        self.count_queued_from_thread(-1)
        self.send_call(call_id, payload, ref)

    def _send_now(self, call_id: int, payload: bytes) -> None:
        self._seq += 1
        if self._resendable:
            self._undelivered_ids.append(call_id)
            self._undelivered.append(payload)
            if payload[0] == _OOB_BYTE:  # kept until delivered: its segments with it
                proto.hold_payload(payload)
                self._undelivered_held.append((self._seq, payload))
        self.send(payload)

    def _send_queued(self, call_id: int, payload: bytes) -> bool:
        """Send a call that waited behind a call with ref arguments (unless it ended meanwhile)."""
        if call_id in self._unsent:
            self._unsent.discard(call_id)
            self._send_now(call_id, payload)
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
        retries = self._retries
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
            self._fail(call_id, ActorDiedError(self.dead_error))
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
            self._send_now(call_id, payload)
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
        pending = self.pending
        kept = self._kept
        streams = self.streams
        finished = 0
        release = self.release_later
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
            if kind == _RESULT_OK:
                ref.set_result(msg[2])
            else:
                ref.set_exception(self._error_from(msg))
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


async def _resolve_refs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    real_args = tuple([await a if isinstance(a, ObjectRef) else a for a in args])
    real_kwargs = {k: (await v if isinstance(v, ObjectRef) else v) for k, v in kwargs.items()}
    return real_args, real_kwargs
