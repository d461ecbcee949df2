"""The floor's wire format, server and clients: stdlib plus uvloop only.

A frame is ``<Q total>`` then ``<I nbuf>``, ``nbuf`` times ``<Q length>``,
a pickle (protocol 5) body, and the out-of-band buffers. Buffers of at least
``OOB_THRESHOLD`` bytes travel out of band (no copy into the pickle; the
receiver reads them straight into one bytearray and numpy arrays are built
on top of it); smaller objects are pickled in band.

Requests are ``(call_id, method, args)``; replies are ``(call_id, ok, value)``.
The server parses every whole frame of a read and answers them with one
write; async methods run eagerly (``coro.send(None)``) and become a task only
if they suspend. This is what two processes can do on this machine, and what
actorloop is measured against.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any, cast

_HDR = struct.Struct("<QI")  # total length after the first 8 bytes, nbuf
_LEN = struct.Struct("<Q")
OOB_THRESHOLD = 64 * 1024
READ_CHUNK = 256 * 1024
SOCK_BUF = 4 * 1024 * 1024


def encode(obj: Any) -> list[Any]:
    """Return the parts of one frame (bytes and memoryviews, not joined)."""
    bufs: list[memoryview] = []

    def callback(pb: pickle.PickleBuffer) -> bool:
        raw = pb.raw()
        if raw.nbytes < OOB_THRESHOLD:
            return True  # in band
        bufs.append(raw)
        return False

    body = pickle.dumps(obj, protocol=5, buffer_callback=callback)
    if not bufs:
        return [_HDR.pack(len(body) + 4, 0) + body]
    lens = b"".join(_LEN.pack(b.nbytes) for b in bufs)
    total = 4 + len(lens) + len(body) + sum(b.nbytes for b in bufs)
    return [_HDR.pack(total, len(bufs)) + lens + body, *bufs]


def encode_small(obj: Any) -> bytes:
    """One frame as bytes, for messages known to carry no large buffer."""
    body = pickle.dumps(obj, protocol=5)
    return _HDR.pack(len(body) + 4, 0) + body


def decode(frame: memoryview) -> Any:
    """Decode the part of a frame after its 8-byte length prefix."""
    (nbuf,) = struct.unpack_from("<I", frame, 0)
    if nbuf == 0:
        return pickle.loads(frame[4:])
    off = 4
    lens = []
    for _ in range(nbuf):
        lens.append(_LEN.unpack_from(frame, off)[0])
        off += 8
    body_len = len(frame) - off - sum(lens)
    body = frame[off : off + body_len]
    pos = off + body_len
    buffers = []
    for n in lens:
        buffers.append(frame[pos : pos + n])
        pos += n
    return pickle.loads(body, buffers=buffers)


def tune_socket(sock: socket.socket) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
        except OSError:
            pass


# ---------------------------------------------------------------- server


async def _aping() -> None:
    return None


async def _af(x: Any) -> Any:
    return x


async def _agetpid() -> int:
    return os.getpid()


async def _anbytes(a: Any) -> int:
    return int(a.nbytes)


async def _aecho(a: Any) -> Any:
    return a


def _nbytes(a: Any) -> int:
    return int(a.nbytes)


METHODS: dict[str, Callable[..., Any]] = {
    # the "sync actor": plain functions, run inline on the loop
    "ping": lambda: None,
    "f": lambda x: x,
    "getpid": os.getpid,
    "nbytes": _nbytes,
    "echo": lambda a: a,
    "touch": lambda a: float(a[::512].sum()),  # benchmarks._actors.touch_pages (this file imports no numpy)
    # the "async actor": coroutines, run eagerly
    "aping": _aping,
    "af": _af,
    "agetpid": _agetpid,
    "anbytes": _anbytes,
    "aecho": _aecho,
}


class ServerProtocol(asyncio.BufferedProtocol):
    """Reads straight into its own buffer; large frames into one bytearray."""

    def __init__(self, on_lost: Callable[[], None] | None = None) -> None:
        self.buf = bytearray(READ_CHUNK * 4)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.big: bytearray | None = None
        self.big_view: memoryview | None = None
        self.big_pos = 0
        self.out: list[Any] = []
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_lost is not None:
            self.on_lost()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.big_view is not None:
            return self.big_view[self.big_pos :]
        if self.end == len(self.buf):
            # compact: move the partial frame to the front (same size, no resize)
            n = self.end - self.start
            self.buf[0:n] = self.buf[self.start : self.end]
            self.start, self.end = 0, n
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.big_view is not None:
            self.big_pos += nbytes
            if self.big_pos < len(self.big_view):
                return
            frame = self.big_view
            self.big = self.big_view = None
            self.big_pos = 0
            self._handle(frame)
        else:
            self.end += nbytes
            self._parse()
        self._flush()

    def _parse(self) -> None:
        buf, view = self.buf, self.view
        while self.end - self.start >= 8:
            (n,) = _LEN.unpack_from(buf, self.start)
            have = self.end - self.start - 8
            if have >= n:
                s = self.start + 8
                self.start = s + n
                self._handle(view[s : s + n], copy=True)
                continue
            if n + 8 > len(buf):
                # a large frame: read the rest straight into its own bytearray
                self.big = bytearray(n)
                self.big_view = memoryview(self.big)
                self.big_view[:have] = view[self.start + 8 : self.end]
                self.big_pos = have
                self.start = self.end = 0
            elif self.start + 8 + n > len(buf):
                n_part = self.end - self.start
                buf[0:n_part] = buf[self.start : self.end]
                self.start, self.end = 0, n_part
            return
        if self.start == self.end:
            self.start = self.end = 0

    def _handle(self, frame: memoryview, copy: bool = False) -> None:
        (nbuf,) = struct.unpack_from("<I", frame, 0)
        if copy and nbuf:
            frame = memoryview(bytes(frame))  # buffers must outlive our read buffer
        call_id, method, args = decode(frame)
        try:
            result = METHODS[method](*args)
            if isinstance(result, Coroutine):
                try:
                    result.send(None)
                except StopIteration as stop:
                    result = stop.value
                else:  # it suspended: finish it as a task (not hit by the benchmarks)
                    raise RuntimeError("floor methods never suspend")
            self._reply(call_id, True, result)
        except Exception as exc:  # noqa: BLE001 - sent back to the caller
            self._reply(call_id, False, repr(exc))

    def _reply(self, call_id: int, ok: bool, value: Any) -> None:
        self.out.extend(encode((call_id, ok, value)))

    def _flush(self) -> None:
        if not self.out or self.transport is None:
            return
        out, self.out = self.out, []
        if len(out) == 1:
            self.transport.write(out[0])
        elif all(isinstance(p, bytes) for p in out):
            self.transport.write(b"".join(out))
        else:
            self.transport.writelines(out)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve_path(path: str, watch_fd: int = 0) -> None:
    """Serve any number of clients on a Unix socket path.

    Exits when ``watch_fd`` (the pipe from the parent on stdin) reaches EOF,
    so the server never outlives the driver that started it.
    """
    loop = new_loop()
    asyncio.set_event_loop(loop)
    done = loop.create_future()

    def on_parent() -> None:
        try:
            data = os.read(watch_fd, 4096)
        except OSError:
            data = b""
        if not data and not done.done():
            done.set_result(None)

    async def main() -> None:
        server = await loop.create_unix_server(ServerProtocol, path)
        loop.add_reader(watch_fd, on_parent)
        print("ready", flush=True)
        await done
        loop.remove_reader(watch_fd)
        server.close()

    loop.run_until_complete(main())
    loop.close()


def serve_socket(sock: socket.socket) -> None:
    """Serve one already connected socket (a forked child) until EOF."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    done = loop.create_future()

    def lost() -> None:
        if not done.done():
            done.set_result(None)

    async def main() -> None:
        await loop.connect_accepted_socket(lambda: ServerProtocol(lost), sock)
        await done

    loop.run_until_complete(main())
    loop.close()


# ---------------------------------------------------------------- clients


class SyncClient:
    """A blocking socket on the calling thread: no loop, no thread hop."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        tune_socket(sock)
        self.buf = bytearray(READ_CHUNK * 4)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.next_id = 0

    @classmethod
    def connect(cls, path: str) -> SyncClient:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return cls(s)

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, *args: Any) -> int:
        self.next_id += 1
        parts = encode((self.next_id, method, args))
        if len(parts) == 1:
            self.sock.sendall(parts[0])
        else:
            for p in parts:
                self.sock.sendall(p)
        return self.next_id

    def send_many(self, method: str, args_list: list[tuple[Any, ...]]) -> None:
        frames = []
        for args in args_list:
            self.next_id += 1
            frames.append(encode_small((self.next_id, method, args)))
        self.sock.sendall(b"".join(frames))

    def _fill(self) -> None:
        if self.end == len(self.buf):
            n = self.end - self.start
            self.buf[0:n] = self.buf[self.start : self.end]
            self.start, self.end = 0, n
        got = self.sock.recv_into(self.view[self.end :])
        if got == 0:
            raise ConnectionError("floor server closed the connection")
        self.end += got

    def read_reply(self) -> Any:
        while self.end - self.start < 8:
            if self.start == self.end:
                self.start = self.end = 0
            self._fill()
        (n,) = _LEN.unpack_from(self.buf, self.start)
        if n + 8 > len(self.buf):
            big = bytearray(n)
            bv = memoryview(big)
            have = self.end - self.start - 8
            take = min(have, n)
            bv[:take] = self.view[self.start + 8 : self.start + 8 + take]
            self.start += 8 + take
            pos = take
            while pos < n:
                got = self.sock.recv_into(bv[pos:])
                if got == 0:
                    raise ConnectionError("floor server closed the connection")
                pos += got
            frame = bv
        else:
            if self.start + 8 + n > len(self.buf):
                k = self.end - self.start
                self.buf[0:k] = self.buf[self.start : self.end]
                self.start, self.end = 0, k
            while self.end - self.start < 8 + n:
                self._fill()
            s = self.start + 8
            self.start = s + n
            frame = self.view[s : s + n]
            (nbuf,) = struct.unpack_from("<I", frame, 0)
            if nbuf:
                frame = memoryview(bytes(frame))
        _call_id, ok, value = decode(frame)
        if not ok:
            raise RuntimeError(f"floor call failed: {value}")
        return value

    def call(self, method: str, *args: Any) -> Any:
        self.send(method, *args)
        return self.read_reply()


class AsyncClient(asyncio.Protocol):
    """An asyncio client: real futures, writes flushed once per loop turn."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.out: list[bytes] = []
        self.scheduled = False
        self.next_id = 0
        self.rbuf = bytearray()
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, path: str) -> AsyncClient:
        loop = asyncio.get_running_loop()
        _t, proto = await loop.create_unix_connection(cls, path)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def call(self, method: str, *args: Any) -> asyncio.Future[Any]:
        self.next_id += 1
        fut = self.loop.create_future()
        self.pending[self.next_id] = fut
        self.out.append(encode_small((self.next_id, method, args)))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.scheduled = False
        out, self.out = self.out, []
        assert self.transport is not None
        self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buf = self.rbuf
        buf += data
        pos = 0
        end = len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= 8:
                (n,) = _LEN.unpack_from(buf, pos)
                if end - pos - 8 < n:
                    break
                call_id, ok, value = decode(view[pos + 8 : pos + 8 + n])
                pos += 8 + n
                fut = self.pending.pop(call_id)
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(RuntimeError(value))
        finally:
            view.release()
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("floor server went away"))
        self.pending.clear()
