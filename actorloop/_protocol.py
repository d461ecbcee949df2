"""Wire format shared by the node, actors and clients.

A connection starts with a fixed hello: ``MAGIC`` + the node's 32-byte
secret.  Nothing a peer sends is unpickled before that hello matched, so a
process that cannot read the node's secret file (0600, in a 0700 directory)
cannot make anyone unpickle its bytes.  After the hello every message is a
frame: a 4-byte little-endian length followed by a pickle.

Writes are coalesced: frames queued during one loop iteration leave in one
``writelines`` call; reads parse every whole frame in one ``data_received``.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import mmap
import os
import pickle
import re
import secrets
import select
import socket
import struct
import tempfile
import threading
import weakref
from typing import Any, Callable, cast

import cloudpickle

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

_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from

# Types whose values plain pickle always sends by value; anything else goes
# through cloudpickle so classes defined in __main__ or closures arrive too.
_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})


class ProtocolError(Exception):
    """A peer broke the wire format (bad hello, absurd length, garbage)."""


def _all_plain(values: tuple[Any, ...] | list[Any]) -> bool:
    for value in values:
        if type(value) not in _PLAIN_TYPES:
            return False
    return True


def dumps_call(msg: tuple[Any, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle a call message; plain pickle when every argument is a plain value."""
    if _all_plain(args) and (not kwargs or _all_plain(list(kwargs.values()))):
        return _fits(pickle.dumps(msg, 5))
    return _fits(_dumps_with_buffers(msg))


def dumps(obj: Any) -> bytes:
    """Pickle anything cloudpickle can, raising SerializationError naming what failed."""
    try:
        data = cloudpickle.dumps(obj, 5)
    except Exception as exc:
        raise SerializationError(f"could not pickle {_describe(obj)}: {exc}") from exc
    return _fits(data)


def dumps_value(msg: tuple[Any, ...], value: Any) -> bytes:
    """Pickle a result message; plain pickle on the fast path."""
    if type(value) in _PLAIN_TYPES:
        return _fits(pickle.dumps(msg, 5))
    return _fits(_dumps_with_buffers(msg))


def _fits(data: bytes) -> bytes:
    """Refuse a frame the peer would refuse: better one call's clear error than a connection cut under all."""
    if len(data) > MAX_FRAME_BYTES:
        raise SerializationError(
            f"{len(data)} bytes once pickled, over the largest frame (MAX_FRAME_BYTES = {MAX_FRAME_BYTES}); "
            "send large binary data as a bytearray or numpy array, which travel through shared memory"
        )
    return data


# -- large buffers through shared memory ------------------------------------------
#
# Pickle protocol 5 hands us big contiguous buffers (numpy arrays, bytearrays)
# separately.  Each one above OOB_THRESHOLD is copied once into a segment: a
# file in /dev/shm (tmpfs: memory, not disk) from this process's pool; the
# frame carries only its name.  The receiver maps the file and unpickles
# straight from the mapping, so an array arrives with no further copy.  When
# the receiver's mapping is freed it sends RELEASE back, and the segment is
# reused: its pages are already allocated, which on small VMs costs more
# than the copy itself.

#: Buffers at least this large travel through shared memory instead of the socket.
OOB_THRESHOLD = 1 << 18
#: Free segments a process keeps for reuse, in bytes; beyond this they are removed.
POOL_KEEP_BYTES = 1 << 30
_OOB_MARK = b"B"
_SEGMENT = struct.Struct("<HQ")
_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
_shm_prefix = "actorloop-0-"
_SEGMENT_NAME = re.compile(r"^actorloop-[0-9a-f]{1,16}-[0-9a-f]{1,16}-[0-9a-f]{32}$")
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_SEGMENT_ROUND = 1 << 20


def shm_prefix_for(node_dir: str) -> str:
    """The name prefix of the shared-memory segments of one node (the node removes leftovers)."""
    return f"actorloop-{hashlib.sha256(node_dir.encode()).hexdigest()[:16]}-"


def _client_tag(client_id: str) -> str:
    return "".join(c for c in client_id if c in "0123456789abcdef")[:16] or "0"


def set_shm_prefix(node_dir: str, client_id: str) -> None:
    global _shm_prefix
    _shm_prefix = f"{shm_prefix_for(node_dir)}{_client_tag(client_id)}-"


def remove_segments(node_dir: str, client_id: str | None = None) -> None:
    """Remove the segments of a node (or of one of its clients, once it left)."""
    prefix = shm_prefix_for(node_dir) + (f"{_client_tag(client_id)}-" if client_id is not None else "")
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(_SHM_DIR, name))
            except OSError:
                pass


class _Segment:
    __slots__ = ("name", "fd", "size")

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name = name
        self.fd = fd
        self.size = size


class SegmentPool:
    """This process's shared-memory segments: handed out for sending, taken back on RELEASE."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[_Segment] = []
        self._free_bytes = 0
        self._busy: dict[str, _Segment] = {}
        self._pid = os.getpid()

    def write(self, raw: memoryview) -> str:
        """Copy ``raw`` into a segment and return its name; the segment is busy until released."""
        nbytes = raw.nbytes
        segment = self._take(nbytes)
        try:
            offset = 0
            while offset < nbytes:
                offset += os.pwrite(segment.fd, raw[offset:], offset)
        except BaseException:
            self._discard(segment)
            raise
        with self._lock:
            self._busy[segment.name] = segment
        return segment.name

    def _take(self, nbytes: int) -> _Segment:
        with self._lock:
            if self._pid != os.getpid():  # forked: the segments are the parent's
                self.__init__()  # type: ignore[misc]
            best = None
            for seg in self._free:
                if nbytes <= seg.size <= 2 * nbytes + _SEGMENT_ROUND and (best is None or seg.size < best.size):
                    best = seg
            if best is not None:
                self._free.remove(best)
                self._free_bytes -= best.size
                return best
        size = -(-nbytes // _SEGMENT_ROUND) * _SEGMENT_ROUND
        name = f"{_shm_prefix}{secrets.token_hex(16)}"
        fd = os.open(os.path.join(_SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            os.unlink(os.path.join(_SHM_DIR, name))
            raise
        return _Segment(name, fd, size)

    def release(self, name: object) -> None:
        """The receiver no longer maps ``name``: keep it for reuse, or remove it past the cap."""
        if not isinstance(name, str):
            return
        with self._lock:
            segment = self._busy.pop(name, None)
            if segment is None:
                return
            if self._free_bytes + segment.size <= POOL_KEEP_BYTES:
                self._free.append(segment)
                self._free_bytes += segment.size
                return
        self._discard(segment)

    def _discard(self, segment: _Segment) -> None:
        try:
            os.close(segment.fd)
            os.unlink(os.path.join(_SHM_DIR, segment.name))
        except OSError:
            pass

    def close(self) -> None:
        """Remove every segment (receivers keep the mappings they hold)."""
        with self._lock:
            segments = self._free + list(self._busy.values())
            self._free, self._busy, self._free_bytes = [], {}, 0
        for segment in segments:
            self._discard(segment)


segment_pool = SegmentPool()
atexit.register(segment_pool.close)


def _dumps_with_buffers(msg: tuple[Any, ...]) -> bytes:
    big: list[pickle.PickleBuffer] = []

    def keep_small_in_band(buf: pickle.PickleBuffer) -> bool:
        try:
            if buf.raw().nbytes >= OOB_THRESHOLD:
                big.append(buf)
                return False
        except BufferError:  # not contiguous: pickle copies it in-band
            pass
        return True

    data = cloudpickle.dumps(msg, 5, buffer_callback=keep_small_in_band)
    if not big:
        return data
    parts = [_OOB_MARK, struct.pack("<I", len(big))]
    for buf in big:
        raw = buf.raw()
        name = segment_pool.write(raw).encode()
        parts.append(_SEGMENT.pack(len(name), raw.nbytes))
        parts.append(name)
    parts.append(data)
    return b"".join(parts)


def _map_segment(name: str, size: int, on_release: Callable[[str], None] | None) -> memoryview:
    if not _SEGMENT_NAME.match(name):
        raise ProtocolError(f"bad shared-memory segment name {name!r}")
    path = os.path.join(_SHM_DIR, name)
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_size < size:
            raise ProtocolError(f"shared-memory segment {name} is not what the frame announced")
        mapping = mmap.mmap(fd, size, flags=_MAP_FLAGS)
    finally:
        os.close(fd)
    if on_release is None:
        os.unlink(path)
    else:
        # Freed with the last object that uses it (the array, often much later).
        weakref.finalize(mapping, on_release, name).atexit = False
    return memoryview(mapping)


def loads(data: bytes, on_release: Callable[[str], None] | None = None) -> Any:
    """Unpickle a frame, mapping its shared-memory buffers if it has any.

    ``on_release(name)`` runs (on any thread) once a mapped segment is no
    longer used, to hand it back to its sender; without it the segment is
    removed at once.
    """
    if data[:1] != _OOB_MARK:
        return pickle.loads(data)
    (count,) = struct.unpack_from("<I", data, 1)
    pos = 5
    views = []
    try:
        for _ in range(count):
            name_len, size = _SEGMENT.unpack_from(data, pos)
            pos += _SEGMENT.size
            name = data[pos : pos + name_len].decode()
            pos += name_len
            views.append(_map_segment(name, size, on_release))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad buffer table: {exc}") from exc
    return pickle.loads(memoryview(data)[pos:], buffers=views)


def peek_kind_and_id(data: bytes) -> tuple[int, int] | None:
    """Best effort, for a frame that failed to unpickle: its message kind and call id (the first two ints)."""
    import pickletools

    try:
        pos = 0
        if data[:1] == _OOB_MARK:
            (count,) = struct.unpack_from("<I", data, 1)
            pos = 5
            for _ in range(count):
                name_len, _size = _SEGMENT.unpack_from(data, pos)
                pos += _SEGMENT.size + name_len
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
        self.transport = None
        self._expect_secret = expect_secret
        self._hello_timer: asyncio.TimerHandle | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
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
        out = self._out
        out.append(_pack_header(len(payload)))
        out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

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
            if len(out) == 2:
                transport.write(out[0] + out[1])
            else:
                transport.writelines(out)
        finally:
            self._write_lock.release()

    def write_from_thread(self, payload: bytes) -> bool:
        """Write one frame now from a thread that is not the loop's; False if it must go through the loop.

        Blocks this thread (never the loop) while the socket is full.
        """
        if self._fd < 0 or self.queued_from_threads:
            return False
        data = _pack_header(len(payload)) + payload
        with self._write_lock:
            transport = self.transport
            if (
                transport is None
                or self.closed
                or self._fd < 0
                or self._out
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
        frames: list[bytes] = []
        pos = 0
        size = len(buf)
        while size - pos >= HEADER_BYTES:
            (length,) = _unpack_header(buf, pos)
            if length > MAX_FRAME_BYTES:
                self.protocol_error(f"frame of {length} bytes is over the limit of {MAX_FRAME_BYTES}")
                return
            end = pos + HEADER_BYTES + length
            if end > size:
                break
            frames.append(bytes(buf[pos + HEADER_BYTES : end]))
            pos = end
        if pos:
            del buf[:pos]
        if frames:
            self.frames_received(frames)

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
        """Tell the peer, from any thread, that we no longer map its segment ``name``."""
        loop = self.loop
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._send_release, name)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _send_release(self, name: str) -> None:
        if self.transport is not None and not self.closed:
            self.send(pickle.dumps((RELEASE, name), 5))


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
