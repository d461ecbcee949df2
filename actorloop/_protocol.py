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
import hmac
import pickle
import socket
import struct
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
        return pickle.dumps(msg, 5)
    return cloudpickle.dumps(msg, 5)


def dumps(obj: Any) -> bytes:
    """Pickle anything cloudpickle can, raising SerializationError naming what failed."""
    try:
        return cloudpickle.dumps(obj, 5)
    except Exception as exc:
        raise SerializationError(f"could not pickle {_describe(obj)}: {exc}") from exc


def dumps_value(msg: tuple[Any, ...], value: Any) -> bytes:
    """Pickle a result message; plain pickle on the fast path."""
    if type(value) in _PLAIN_TYPES:
        return pickle.dumps(msg, 5)
    return cloudpickle.dumps(msg, 5)


loads = pickle.loads


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
