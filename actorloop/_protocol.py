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
import hashlib
import hmac
import mmap
import os
import pickle
import re
import secrets
import socket
import struct
import tempfile
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

# Message kinds between a caller and an actor.
CALL = 1  # (CALL, call_id, method, args, kwargs, group)
CANCEL = 2  # (CANCEL, call_id)
RESULT_OK = 3  # (RESULT_OK, call_id, value)
RESULT_ERR = 4  # (RESULT_ERR, call_id, exception_or_None, type_name, message, traceback)
RESULT_CANCELLED = 5  # (RESULT_CANCELLED, call_id)

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
# separately.  Each one above OOB_THRESHOLD is written once into a file in
# /dev/shm (tmpfs: memory, not disk); the frame carries only its name.  The
# receiver maps the file, unlinks it, and unpickles straight from the mapping,
# so an array arrives with no further copy and its memory is freed with it.

#: Buffers at least this large travel through shared memory instead of the socket.
OOB_THRESHOLD = 1 << 18
_OOB_MARK = b"B"
_SEGMENT = struct.Struct("<HQ")
_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
_shm_prefix = "actorloop-0-"
_SEGMENT_NAME = re.compile(r"^actorloop-[0-9a-f]{1,16}-[0-9a-f]{32}$")
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def shm_prefix_for(node_dir: str) -> str:
    """The name prefix of the shared-memory segments of one node (the node removes leftovers)."""
    return f"actorloop-{hashlib.sha256(node_dir.encode()).hexdigest()[:16]}-"


def set_shm_prefix(node_dir: str) -> None:
    global _shm_prefix
    _shm_prefix = shm_prefix_for(node_dir)


def remove_segments(node_dir: str) -> None:
    """Remove segments a crashed receiver never mapped."""
    prefix = shm_prefix_for(node_dir)
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
        name = _write_segment(raw).encode()
        parts.append(_SEGMENT.pack(len(name), raw.nbytes))
        parts.append(name)
    parts.append(data)
    return b"".join(parts)


def _write_segment(raw: memoryview) -> str:
    name = _shm_prefix + secrets.token_hex(16)
    fd = os.open(os.path.join(_SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        offset = 0
        total = raw.nbytes
        while offset < total:
            offset += os.write(fd, raw[offset:])
    except BaseException:
        os.close(fd)
        os.unlink(os.path.join(_SHM_DIR, name))
        raise
    os.close(fd)
    return name


def _map_segment(name: str, size: int) -> memoryview:
    if not _SEGMENT_NAME.match(name):
        raise ProtocolError(f"bad shared-memory segment name {name!r}")
    path = os.path.join(_SHM_DIR, name)
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_size != size:
            raise ProtocolError(f"shared-memory segment {name} is not what the frame announced")
        mapping = mmap.mmap(fd, size, flags=_MAP_FLAGS)
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return memoryview(mapping)


def loads(data: bytes) -> Any:
    """Unpickle a frame, mapping its shared-memory buffers if it has any."""
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
            views.append(_map_segment(name, size))
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
    server: the first bytes must be the hello.
    """

    transport: asyncio.Transport | None

    def __init__(self, loop: asyncio.AbstractEventLoop, expect_secret: bytes | None = None) -> None:
        self.loop = loop
        self.transport = None
        self._expect_secret = expect_secret
        self._buffer = bytearray()
        self._needed = HELLO_BYTES if expect_secret is not None else 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = False

    # -- writing -----------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Queue one frame; queued frames leave together at the end of this iteration."""
        out = self._out
        out.append(_pack_header(len(payload)))
        out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def send_raw(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        transport = self.transport
        if transport is None or self.closed:
            if not self.closed:
                # Not connected yet: keep everything for connection_made.
                self._out = out + self._out
            return
        if len(out) == 2:
            transport.write(out[0] + out[1])
        else:
            transport.writelines(out)

    # -- reading -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
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
        self.closed = True
        self.transport = None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._flush()
            self.transport.close()
        self.closed = True


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


def call_safely(fn: Callable[..., Any], *args: Any) -> None:
    """Run a callback, never letting its error escape into the event loop's plumbing."""
    try:
        fn(*args)
    except Exception:  # pragma: no cover - defensive
        import traceback

        traceback.print_exc()
