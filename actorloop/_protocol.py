"""Wire format shared by the node, actors and clients.

A connection starts with a fixed hello: ``MAGIC`` + the node's 32-byte
secret.  Nothing a peer sends is unpickled before that hello matched, so a
process that cannot read the node's secret file (0600, in a 0700 directory)
cannot make anyone unpickle its bytes.  After the hello every message is a
frame: a 4-byte little-endian length followed by a pickle.

Writes are coalesced: frames queued during one loop iteration leave in one
``writelines`` call; reads parse every whole frame in one ``data_received``.

Large buffers travel through shared-memory segments (``_shm``); a frame
then starts with their table.  ``FrameProtocol`` only records which
segments each connection carried, so that losing it frees them.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import os
import pickle
import select
import socket
import struct
import threading
import traceback
from typing import Any, Iterable, cast

from . import _pickle, _shm
from ._entry import entry_for
from ._shm import OOB_MARK as _OOB_MARK
from ._shm import OOB_THRESHOLD as OOB_THRESHOLD
from ._shm import SegmentPool as SegmentPool
from ._shm import hold_payload as hold_payload
from ._shm import loads as loads
from ._shm import remove_segments as remove_segments
from ._shm import segment_pool as segment_pool
from ._shm import set_shm_prefix as set_shm_prefix
from ._shm import shm_prefix_for as shm_prefix_for
from ._shm import unhold_payload as unhold_payload
from .exceptions import SerializationError

MAGIC = b"ACTRLOOP\x01"
SECRET_BYTES = 32
HELLO_BYTES = len(MAGIC) + SECRET_BYTES
HEADER = struct.Struct("<I")
HEADER_BYTES = HEADER.size

#: The largest frame any peer accepts; a larger length prefix closes the connection.
MAX_FRAME_BYTES = 1 << 30


def _hello_timeout_from_env() -> float:
    raw = os.environ.get("ACTORLOOP_HELLO_TIMEOUT", "")
    if not raw:
        return 5.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"ACTORLOOP_HELLO_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return value


#: Seconds a peer has to present the hello on a server socket (the node's, an actor's) before it is
#: disconnected, so silent connections cannot pile up.  ``$ACTORLOOP_HELLO_TIMEOUT`` overrides it
#: (read when this module is imported; the node's value applies to the node and its actors).
HELLO_TIMEOUT = _hello_timeout_from_env()

# Message kinds between a caller and an actor.
CALL = 1  # (CALL, call_id, method, args, kwargs, group)
CANCEL = 2  # (CANCEL, call_id)
RESULT_OK = 3  # (RESULT_OK, call_id, value)
RESULT_ERR = 4  # (RESULT_ERR, call_id, exception_or_None, type_name, message, traceback)
RELEASE = 6  # (RELEASE, segment_name): the receiver is done with a shared-memory segment
REF_VALUE = 7  # (REF_VALUE, forward_id, ok, value_or_error): a ref sent pending is settled (see _ref)
# Streams (generator methods): a call whose items come back many times, with credit (see _stream).
STREAM_CALL = 8  # (STREAM_CALL, call_id, method, args, kwargs, group, window): start a generator
STREAM_ITEMS = 9  # (STREAM_ITEMS, call_id, [item, ...]): items yielded, in order; the end is a RESULT_*
STREAM_ACK = 10  # (STREAM_ACK, call_id, consumed): the caller took `consumed` items so far (credit)

#: The node's last push on each client connection when it stops, just before it closes them:
#: ``(0, NODE_STOPPED, why, {actor_id: why that actor ended})`` for the actors the stop ended.
#: A caller that loses an actor and the node together learns from it that the node stopped (a
#: question it sends too late is never answered), instead of taking the node for crashed.
NODE_STOPPED = "node_stopped"

_OOB_BYTE = _OOB_MARK[0]
# Frames queued (two list items each: header, payload) past which send() writes
# at once instead of at the end of the loop iteration.  A gather of N calls
# queues all N before the loop runs again; writing every 256 frames lets the
# actor start on the first ones while the caller is still making the rest, so
# the two processes overlap. Gathering 10,000 calls into an async or a sync
# actor, with the stdlib loop or uvloop, went from ~9.5 to ~6.8 us of wall time
# per call, CPU time per call unchanged (benchmarks/cpu.py).
_EARLY_FLUSH_ITEMS = 512
_pack_header = HEADER.pack
_pickle_dumps = pickle.dumps
_unpack_header = HEADER.unpack_from

# Types whose values plain pickle always sends by value; anything else goes
# through cloudpickle so classes defined in __main__ or closures arrive too.
_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})
# The plain types that are always small enough for the frame (bytes may be large: shared memory).
_SMALL_TYPES = _PLAIN_TYPES - {bytes}


class ProtocolError(Exception):
    """A peer broke the wire format (bad hello, absurd length, garbage)."""


def all_plain(values: Iterable[Any]) -> bool:
    """Whether every value is small and plain: pickle sends it by value, in the frame."""
    for value in values:
        kind = type(value)
        if kind not in _SMALL_TYPES and (kind is not bytes or len(value) >= OOB_THRESHOLD):
            return False
    return True


def dumps_call(msg: tuple[Any, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle a call message; plain pickle when every argument is a small plain value.

    ``msg`` holds ``args`` and ``kwargs`` themselves; large ``bytes``/``bytearray``
    among them travel through shared memory like numpy arrays' buffers.
    (``ActorState.submit`` has the plain case inline.)
    """
    if all_plain(args) and (not kwargs or all_plain(kwargs.values())):
        data = _pickle_dumps(msg, 5)
        if len(data) > MAX_FRAME_BYTES:  # _fits, inline
            raise SerializationError(too_large(len(data)))
        return data
    big = _shm.is_big_binary
    if any(big(a) for a in args) or (kwargs and any(big(v) for v in kwargs.values())):
        wrap = _shm.wrap_big_binary
        new_args = tuple([wrap(a) for a in args])
        new_kwargs = {k: wrap(v) for k, v in kwargs.items()}
        msg = tuple([new_args if m is args else new_kwargs if m is kwargs else m for m in msg])
    return _dumps_out_of_band(msg)


def dumps(obj: Any) -> bytes:
    """Pickle anything cloudpickle can, raising SerializationError naming what failed."""
    try:
        data = _pickle.dumps(obj)
    except Exception as exc:
        raise SerializationError(f"could not pickle {_describe(obj)}: {exc}") from exc
    return _fits(data)


def dumps_value(msg: tuple[Any, ...], value: Any) -> bytes:
    """Pickle a result message (``msg`` holds ``value``); plain pickle on the fast path."""
    kind = type(value)
    if kind in _PLAIN_TYPES and not (kind is bytes and len(value) >= OOB_THRESHOLD):
        return _fits(pickle.dumps(msg, 5))
    if _shm.is_big_binary(value):
        wrapped = _shm.wrap_big_binary(value)
        msg = tuple([wrapped if m is value else m for m in msg])
    return _dumps_out_of_band(msg)


def dumps_items(msg: tuple[Any, ...], items: list[Any]) -> bytes:
    """Pickle a STREAM_ITEMS message (``msg`` holds ``items``); plain pickle when every item is small and plain."""
    if all_plain(items):
        return _fits(pickle.dumps(msg, 5))
    return _dumps_out_of_band(msg)


def _dumps_out_of_band(msg: tuple[Any, ...]) -> bytes:
    data, names, fallback = _shm.dumps_with_buffers(msg)
    if len(data) > MAX_FRAME_BYTES:
        _shm.segment_pool.unused(names)  # this frame is never sent
        raise SerializationError(too_large(len(data), fallback))
    return data


def _fits(data: bytes) -> bytes:
    """Refuse a frame the peer would refuse: better one call's clear error than a connection cut under all."""
    if len(data) > MAX_FRAME_BYTES:
        raise SerializationError(too_large(len(data), None))
    return data


def too_large(nbytes: int, fallback: str | None = None) -> str:
    """Why a frame of ``nbytes`` is refused (``fallback``: why shared memory was not used, if it was not)."""
    text = (
        f"{nbytes} bytes once pickled, over the largest frame (MAX_FRAME_BYTES = {MAX_FRAME_BYTES}). "
        f"Only buffers of {OOB_THRESHOLD} bytes or more travel through shared memory instead of the frame: "
        "those of numpy arrays (and other pickle-5 buffers) anywhere in the arguments or result, and "
        "bytes or bytearray values passed as a top-level argument or returned as the result; "
        "send large data in one of those forms"
    )
    if fallback is not None:
        text += (
            f". Shared memory was not usable ({fallback}), so such buffers travelled in the frame: "
            f"give {_shm.SHM_DIR} more room or point $ACTORLOOP_SHM_DIR at a larger tmpfs"
        )
    return text


def peek_kind_and_id(data: bytes) -> tuple[int, int] | None:
    """Best effort, for a frame that failed to unpickle: its message kind and call id (the first two ints)."""
    import pickletools

    try:
        pos = _shm.skip_table(data)
        ints: list[int] = []
        for op, arg, _ in pickletools.genops(data[pos:]):
            if op.name in ("BININT1", "BININT2", "BININT", "LONG1"):
                ints.append(int(arg))  # type: ignore[arg-type]
                if len(ints) == 2:
                    return ints[0], ints[1]
    except Exception:
        pass
    return None


def _describe(obj: Any) -> str:
    text = repr(obj)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(obj).__name__} {text}"


def make_hello(secret: bytes) -> bytes:
    return MAGIC + secret


def check_hello(data: bytes | bytearray | memoryview, secret: bytes) -> bool:
    return hmac.compare_digest(bytes(data[: len(MAGIC)]), MAGIC) and hmac.compare_digest(
        bytes(data[len(MAGIC) : HELLO_BYTES]), secret
    )


def frame(payload: bytes) -> bytes:
    return _pack_header(len(payload)) + payload


class FrameProtocol(asyncio.Protocol):
    """Length-prefixed frames with an optional hello check and coalesced writes.

    Subclasses implement :meth:`frames_received` (a list of payloads, each
    parsed in one go) and may override :meth:`connection_made` /
    :meth:`connection_lost`.  ``expect_secret`` set means this side is the
    server: the first bytes must be the hello, within ``HELLO_TIMEOUT``
    seconds of connecting, or the peer is disconnected.
    """

    transport: asyncio.Transport | None
    #: Whether threads may write frames straight to the socket (write_from_thread).
    direct_writes = False

    def __init__(self, loop: asyncio.AbstractEventLoop, expect_secret: bytes | None = None) -> None:
        self.loop = loop
        # Looked up now: release_later runs in finalizers, where making one could take a lock.
        self.entry = entry_for(loop)
        self.transport = None
        self._expect_secret = expect_secret
        self._hello_timer: asyncio.TimerHandle | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
        # Frames joined into chunks that the socket did not take yet (see _write_out), each with its mark,
        # and how many bytes of the first one it took.
        self._backlog: collections.deque[tuple[bytes, int]] = collections.deque()
        self._backlog_written = 0
        self._flush_scheduled = False
        self.closed = False
        # Threads other than the loop's may write whole frames straight to the
        # socket (a sync caller's call, a worker thread's result), saving two
        # thread wake-ups per call.  Every write, the loop's too, happens under
        # this lock; the loop never blocks on it (it retries next iteration).
        self._write_lock = threading.Lock()
        self._fd = -1
        # Frames of this connection's threads that went through the loop and
        # are not written yet: while any exist, threads must not overtake them.
        self.queued_from_threads = 0
        self._count_lock = threading.Lock()

    # -- writing -----------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Queue one frame; queued frames leave together at the end of this iteration."""
        if payload[0] == _OOB_BYTE:  # an int compare: this runs for every frame
            self.track_segments(payload)
        out = self._out
        out.append(_pack_header(len(payload)))
        out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        elif len(out) >= _EARLY_FLUSH_ITEMS:
            self._write_early()

    def _write_early(self) -> None:
        """``send`` in the middle of a burst (the loop does not run meanwhile): write what is queued now."""
        self._flush()
        self._flush_scheduled = True  # the call_soon of the burst's first send is still to come

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        transport = self.transport
        if transport is None or self.closed:
            return  # not connected yet: connection_made flushes
        if not self._write_lock.acquire(blocking=False):
            # A thread is writing (perhaps waiting for room): try again soon,
            # without blocking the loop that must keep reading.
            self._flush_scheduled = True
            self.loop.call_later(0.0005, self._flush)
            return
        try:
            out = self._out
            self._out = []
            # One bytes object, not writelines(): uvloop queues each item of a
            # writelines() as its own buffer and, once a gather of 1,000,000
            # calls had queued some millions of them, its write failed with
            # EINVAL and the connection was lost (the gather hung).  The
            # stdlib's writelines() joins them the same way on 3.10/3.11.
            transport.write(out[0] + out[1] if len(out) == 2 else b"".join(out))
        finally:
            self._write_lock.release()

    def _write_out(self, early: bool) -> None:
        """Write the queued frames: straight to the socket while it takes them, the rest to the transport.

        ``early``: written from ``send`` in the middle of a burst (a gather's
        list of a million calls), while the loop does not get to run.  The
        transport sends what it buffers only when the loop runs, so a burst
        that handed it the frames the socket could not take at once piled up
        everything after them in the transport's buffer (and every such call
        kept its payload, not known to be delivered): a gather of 1,000,000
        calls held ~37 MB of buffer and ~90 MB of payloads at its peak.  So in
        a burst the frames go straight to the socket while it takes them (on
        our own descriptor, as ``write_from_thread``), those it did not take
        wait here (``_backlog``), and the next early write tries the socket
        again; the write at the end of the iteration hands what is left to the
        transport.  A protocol that wants this calls it from ``_flush`` and
        ``_write_early`` (``ActorConnection``); the others write as before.
        """
        transport = self.transport
        if transport is None or self.closed:
            return  # not connected yet: connection_made flushes
        backlog = self._backlog
        out = self._out
        if out:
            self._out = []
            # One bytes object, not writelines() (see _flush).
            backlog.append((out[0] + out[1] if len(out) == 2 else b"".join(out), self._chunk_mark()))
        if not backlog:
            return
        if not self._write_lock.acquire(blocking=False):
            # A thread is writing (perhaps waiting for room): try again soon,
            # without blocking the loop that must keep reading.
            if not early and not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_later(0.0005, self._flush)
            return
        written = None
        handed: list[tuple[bytes, int]] | None = None
        handed_from = 0
        direct = early and self._fd >= 0
        try:
            if direct and not transport.get_write_buffer_size():
                written = self._write_direct(backlog)
            if backlog and not direct:
                handed, handed_from = list(backlog), self._backlog_written
                backlog.clear()
                self._backlog_written = 0
                if len(handed) == 1 and not handed_from:
                    transport.write(handed[0][0])
                else:
                    first = handed[0][0]
                    transport.write(b"".join([memoryview(first)[handed_from:], *[chunk for chunk, _ in handed[1:]]]))
        finally:
            self._write_lock.release()
        if written is not None:
            self._chunk_written(written)
        if handed is not None:
            self._chunk_handed(handed, handed_from)

    def _write_direct(self, backlog: collections.deque[tuple[bytes, int]]) -> int | None:
        """Write ``backlog``'s chunks to the socket while it takes them (under the write lock, with nothing
        buffered in the transport); the mark of the last chunk written whole, if any.  How much of the
        first one went out stays in ``_backlog_written``."""
        fd = self._fd
        last = None
        while backlog:
            chunk, mark = backlog[0]
            start = self._backlog_written
            try:
                n = os.write(fd, memoryview(chunk)[start:] if start else chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # a broken socket: left to the transport, whose write reports it (connection_lost)
            if start + n < len(chunk):
                self._backlog_written = start + n
                break
            backlog.popleft()
            self._backlog_written = 0
            last = mark
        return last

    def _chunk_mark(self) -> int:
        """A number for the frames queued so far, given back by ``_chunk_written``/``_chunk_handed``."""
        return 0

    def _chunk_written(self, mark: int) -> None:
        """The socket took every frame up to ``mark`` (see ``_chunk_mark``)."""

    def _chunk_handed(self, chunks: list[tuple[bytes, int]], written: int) -> None:
        """These chunks (with their marks) went to the transport, which writes them when the socket has room;
        we had written the first ``written`` bytes of the first one ourselves."""

    def write_from_thread(self, payload: bytes) -> bool:
        """Write one frame now from a thread that is not the loop's; False if it must go through the loop.

        Blocks this thread (never the loop) while the socket is full.
        """
        if self._fd < 0 or self.queued_from_threads:
            return False
        if payload[0] != _OOB_BYTE:
            return self._write_now(payload)
        # Tracked before the write: the peer's RELEASE may arrive before this thread runs again.
        self.track_segments(payload)
        if self._write_now(payload):
            return True
        self.track_segments(payload, -1)
        return False

    def _write_now(self, payload: bytes) -> bool:
        data = _pack_header(len(payload)) + payload
        with self._write_lock:
            transport = self.transport
            if (
                transport is None
                or self.closed
                or self._fd < 0
                or self._out
                or self._backlog
                or self.queued_from_threads
                or transport.get_write_buffer_size()
            ):
                return False
            view = memoryview(data)
            try:
                while view:
                    try:
                        view = view[os.write(self._fd, view) :]
                    except BlockingIOError:
                        # poll, not select: descriptors past 1023 are normal once the fd limit is raised.
                        poller = select.poll()
                        poller.register(self._fd, select.POLLOUT)
                        poller.poll(1000)
            except OSError:
                if len(view) == len(data):
                    return False  # nothing written: the loop will see the broken socket
                raise
        return True

    def count_queued_from_thread(self, delta: int) -> None:
        with self._count_lock:
            self.queued_from_threads += delta

    # -- reading -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if self._expect_secret is not None:
            self._hello_timer = self.loop.call_later(HELLO_TIMEOUT, self._hello_timed_out)
        if self.direct_writes:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Our own descriptor of the socket: it cannot be closed (and its
                # number reused) under a writing thread before connection_lost.
                self._fd = os.dup(sock.fileno())
        if self._out and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        if not buf and self._expect_secret is None and type(data) is bytes:
            # Nothing left over from the last read: cut the frames out of
            # ``data`` itself, one copy each instead of two (a bytearray slice,
            # then bytes of it); only a trailing partial frame is buffered.
            # Saves ~0.1 us per frame (benchmarks/cpu.py, both processes).
            self._frames_from(data)
            return
        buf += data
        if self._expect_secret is not None:
            if len(buf) < HELLO_BYTES:
                return
            if not check_hello(buf, self._expect_secret):
                self.protocol_error("bad hello")
                return
            del buf[:HELLO_BYTES]
            self._expect_secret = None
            self._cancel_hello_timer()
            self.authenticated()
        cut = self._whole_frames(buf)
        if cut is None:
            return
        frames, pos = cut
        if pos:
            del buf[:pos]
        if frames:
            self.frames_received(frames)

    def _frames_from(self, data: bytes) -> None:
        cut = self._whole_frames(data)
        if cut is None:
            return
        frames, pos = cut
        if pos < len(data):
            self._buffer += data[pos:] if pos else data
        if frames:
            self.frames_received(frames)

    def _whole_frames(self, data: bytes | bytearray) -> tuple[list[bytes], int] | None:
        """The whole frames at the start of ``data`` and where they end; None after a protocol error."""
        frames: list[bytes] = []
        from_bytes = type(data) is bytes  # a bytes slice is already bytes; a bytearray slice is copied into one
        pos = 0
        size = len(data)
        while size - pos >= HEADER_BYTES:
            (length,) = _unpack_header(data, pos)
            if length > MAX_FRAME_BYTES:
                self.protocol_error(f"frame of {length} bytes is over the limit of {MAX_FRAME_BYTES}")
                return None
            end = pos + HEADER_BYTES + length
            if end > size:
                break
            frame = data[pos + HEADER_BYTES : end]
            frames.append(frame if from_bytes else bytes(frame))  # type: ignore[arg-type]
            pos = end
        return frames, pos

    def _hello_timed_out(self, final: bool = False) -> None:
        self._hello_timer = None
        if self._expect_secret is None or self.closed:
            return
        if not final:
            # Timers run before reads in a loop iteration: after a stall of the loop the hello
            # may be waiting unread.  Decide one iteration later, once it was read.
            self._hello_timer = self.loop.call_later(0.01, self._hello_timed_out, True)
            return
        self.protocol_error(f"no hello within {HELLO_TIMEOUT} s")

    def _cancel_hello_timer(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def authenticated(self) -> None:
        """Called once the peer's hello matched (server side only)."""

    def frames_received(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    def protocol_error(self, why: str) -> None:
        self._buffer.clear()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_hello_timer()
        self._drop_direct_fd()
        self.closed = True
        self.transport = None
        self._backlog.clear()
        self._backlog_written = 0
        self.segments_lost()

    # -- shared-memory segments sent on this connection (ownership: see _shm) ----------

    def track_segments(self, payload: bytes, delta: int = 1) -> None:
        """``payload``'s segments are sent on this connection: the peer's RELEASE or our loss settles them.

        ``send`` and ``write_from_thread`` call it; so must code that queues a frame another way.
        """
        _shm.segment_pool.sent(_shm.segment_names(payload), self, delta)

    def segments_lost(self) -> None:
        """The peer is gone (or our queued frames were dropped): what we sent it and it did not release
        may still be mapped by a live peer, so it is never reused; removed unless held for a retry."""
        _shm.segment_pool.connection_lost(self)

    def _drop_direct_fd(self) -> None:
        with self._write_lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._flush()
            self.transport.close()
        self.closed = True

    def release_later(self, name: str) -> None:
        """Tell the peer, from any thread or finalizer, that we no longer map its segment ``name``."""
        self.entry.put(self._send_release, name)

    def _send_release(self, name: str) -> None:
        if self.transport is not None and not self.closed:
            self.send(pickle.dumps((RELEASE, name), 5))


# -- errors the node answers with ------------------------------------------------


class NodeTraceback(Exception):
    """The node's own traceback of an error it answered with; the ``__cause__`` of that error here."""


def node_error(value: tuple[Any, ...]) -> BaseException:
    """The exception to raise for a node's error answer ``(exception, type_name, message, traceback)``.

    The node sends the exception itself, so its class and arguments survive;
    its traceback (which pickling drops) comes along as text and becomes
    the ``__cause__``.
    """
    exc, type_name, message, tb = value
    if not isinstance(exc, Exception):
        exc = RuntimeError(f"{type_name}: {message}")
    if tb:
        exc.__cause__ = NodeTraceback(f"in the actorloop node:\n{tb}")
    return exc  # type: ignore[no-any-return]  # an Exception, checked above


def format_node_error(exc: BaseException) -> tuple[Any, ...]:
    """What the node sends back for ``exc`` (see ``node_error``)."""
    tb = "".join(traceback.format_exception(exc)) if not isinstance(exc, (ValueError, TypeError)) else ""
    try:
        dumps(exc)
        sendable: BaseException | None = exc
    except Exception:
        sendable = None
    return (sendable, type(exc).__name__, str(exc), tb)


# -- blocking helpers (the sync node channel, the zygote) ----------------------


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send_frame_blocking(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(frame(payload))


def recv_frame_blocking(sock: socket.socket) -> bytes:
    (length,) = HEADER.unpack(recv_exact(sock, HEADER_BYTES))
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes is over the limit")
    return recv_exact(sock, length)
