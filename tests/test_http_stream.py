"""Streaming over HTTP (issue 12): chunked generators, Server-Sent Events, WebSockets.

Real actors and real clients: ``curl -N`` for chunked and SSE output, an
aiohttp WebSocket client, and an EventSource-style client (the SSE parsing
rules of the HTML standard, over aiohttp; a real browser's EventSource is in
tests/test_sse_browser.py). The connection-limit tests run
the server in this process, with short timeouts, to stay fast.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

import actorloop
from actorloop import _http
from actorloop._http import Route, bind_http_socket, collect_routes, start_http_server

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module", autouse=True)
def node() -> Iterator[None]:
    actorloop.init(address="local")
    yield
    actorloop.shutdown()


@actorloop.remote(concurrency_groups={"one": 1, "one_sync": 1, "bulk": 2})
class Streamer:
    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.log: dict[str, list[str]] = {}
        self.produced: dict[str, int] = {}
        self.count = 0
        self.room: set[actorloop.http.WebSocket] = set()

    # -- plain .remote() methods the tests drive the streams with ----------------

    def _gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    async def release(self, key: str) -> None:
        self._gate(key).set()

    async def events_of(self, key: str) -> list[str]:
        return list(self.log.get(key, []))

    async def produced_of(self, key: str) -> int:
        return self.produced.get(key, 0)

    async def add(self, n: int) -> int:
        self.count += n
        return self.count

    @actorloop.method(concurrency_group="one")
    async def in_group_one(self) -> str:
        return "ran"

    def _record(self, key: str, what: str) -> None:
        self.log.setdefault(key, []).append(what)

    # -- chunked streams ----------------------------------------------------------

    @actorloop.http.get("/ndjson")
    async def ndjson(self, request: web.Request) -> AsyncIterator[Any]:
        for i in range(int(request.query.get("n", "3"))):
            yield {"i": i}

    @actorloop.http.get("/text")
    def text(self, request: web.Request) -> Iterator[str]:
        for i in range(3):
            yield f"line {i}\n"

    @actorloop.http.get("/custom")
    async def custom(self, request: web.Request) -> actorloop.http.Stream:
        def rows() -> Iterator[str]:
            yield "a,b\n"
            yield "1,2\n"

        return actorloop.http.stream(rows(), status=201, headers={"X-Rows": "1"}, content_type="text/csv")

    @actorloop.http.get("/bytes")
    def raw(self, request: web.Request) -> Any:
        return (bytes([i]) * 3 for i in range(65, 68))

    @actorloop.http.get("/gated")
    @actorloop.method(concurrency_group="one")
    async def gated(self, request: web.Request) -> AsyncIterator[str]:
        key = request.query["key"]
        try:
            yield "first\n"
            await self._gate(key).wait()
            yield "second\n"
        except BaseException as exc:
            self._record(key, type(exc).__name__)
            raise
        finally:
            self._record(key, "finally")

    @actorloop.http.get("/gated-sse")
    @actorloop.method(concurrency_group="one")
    def gated_sse(self, request: web.Request) -> actorloop.http.EventStream:
        key = request.query["key"]

        async def feed() -> AsyncIterator[str]:
            yield "first"
            await self._gate(key).wait()
            yield "second"

        return actorloop.http.sse(feed())  # an async stream from a sync handler: in the group too

    @actorloop.http.get("/ticks")
    @actorloop.method(concurrency_group="one_sync")
    def ticks(self, request: web.Request) -> Iterator[str]:
        key = request.query["key"]
        try:
            for i in range(100_000):
                yield f"tick {i}\n"
                time.sleep(0.005)
        except BaseException as exc:
            self._record(key, type(exc).__name__)
            raise
        finally:
            self._record(key, "finally")

    @actorloop.http.get("/bulk/async")
    @actorloop.method(concurrency_group="bulk")
    async def bulk_async(self, request: web.Request) -> AsyncIterator[bytes]:
        key, n, size = request.query["key"], int(request.query["n"]), int(request.query["size"])
        try:
            for i in range(n):
                self.produced[key] = i + 1
                yield i.to_bytes(4, "big") * (size // 4)
        except BaseException as exc:
            self._record(key, type(exc).__name__)
            raise

    @actorloop.http.get("/bulk/sync")
    @actorloop.method(concurrency_group="bulk")
    def bulk_sync(self, request: web.Request) -> Iterator[bytes]:
        key, n, size = request.query["key"], int(request.query["n"]), int(request.query["size"])
        try:
            for i in range(n):
                self.produced[key] = i + 1
                yield i.to_bytes(4, "big") * (size // 4)
        except BaseException as exc:
            self._record(key, type(exc).__name__)
            raise

    @actorloop.http.get("/fail/early")
    async def fail_early(self, request: web.Request) -> AsyncIterator[str]:
        raise ValueError("no data today")
        yield "never"  # pragma: no cover

    @actorloop.http.get("/fail/missing")
    async def fail_missing(self, request: web.Request) -> AsyncIterator[str]:
        raise web.HTTPNotFound(text="no such feed\n")
        yield "never"  # pragma: no cover

    @actorloop.http.get("/fail/late")
    def fail_late(self, request: web.Request) -> Iterator[str]:
        yield "partial\n"
        raise RuntimeError("broke mid-stream")

    @actorloop.http.get("/fail/item")
    async def fail_item(self, request: web.Request) -> AsyncIterator[Any]:
        yield "ok\n"
        yield object()

    @actorloop.http.get("/fail/first-item")
    def fail_first_item(self, request: web.Request) -> Iterator[Any]:
        yield {1, 2}

    # -- Server-Sent Events --------------------------------------------------------

    @actorloop.http.get("/events")
    def events(self, request: web.Request) -> actorloop.http.EventStream:
        start = int(request.headers.get("Last-Event-ID", "-1")) + 1

        async def feed() -> AsyncIterator[Any]:
            yield actorloop.http.Event(comment="hello")
            for i in range(start, start + 3):
                yield actorloop.http.Event(f"event {i}\nsecond line", event="tick", id=str(i))
            yield {"done": True}
            yield "plain\r\nCRLF\rCR"

        return actorloop.http.sse(feed(), retry=1500)

    @actorloop.http.get("/quiet")
    async def quiet(self, request: web.Request) -> actorloop.http.EventStream:
        key = request.query["key"]

        async def feed() -> AsyncIterator[str]:
            await self._gate(key).wait()
            yield "woke"

        return actorloop.http.sse(feed(), ping=0.05)

    # -- WebSockets ---------------------------------------------------------------

    @actorloop.http.websocket("/ws/echo")
    async def ws_echo(self, ws: actorloop.http.WebSocket) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                await ws.send_bytes(message[::-1])
            elif message == "json":
                await ws.send_json({"json": await ws.receive_json()})
            else:
                await ws.send_text(f"echo: {message}")

    @actorloop.http.websocket("/ws/counter")
    async def ws_counter(self, ws: actorloop.http.WebSocket) -> None:
        async for message in ws:
            self.count += int(message)
            await ws.send_json({"count": self.count})

    @actorloop.http.websocket("/ws/hold")
    @actorloop.method(concurrency_group="one")
    async def ws_hold(self, ws: actorloop.http.WebSocket) -> None:
        key = ws.request.query["key"]
        try:
            await ws.send_text("hello")
            await self._gate(key).wait()  # not receiving: only a cancellation ends this
        except BaseException as exc:
            self._record(key, type(exc).__name__)
            raise
        finally:
            self._record(key, "finally")

    @actorloop.http.websocket("/ws/reader")
    async def ws_reader(self, ws: actorloop.http.WebSocket) -> None:
        key = ws.request.query["key"]

        async def read() -> None:
            async for _ in ws:
                pass
            self._record(key, "reader saw the end")

        reader = asyncio.create_task(read())
        try:
            await ws.send_text("hello")
            await self._gate(key).wait()  # the handler itself is not receiving: it is cancelled
        except asyncio.CancelledError:
            self._record(key, "handler cancelled")
            raise
        finally:
            await reader

    @actorloop.http.websocket("/ws/room")
    async def ws_room(self, ws: actorloop.http.WebSocket) -> None:
        name = ws.request.query["name"]
        self.room.add(ws)
        try:
            await ws.send_text(f"welcome {name}")
            async for message in ws:
                for member in list(self.room):
                    try:
                        await member.send_text(f"{name}: {message}")
                    except actorloop.http.WebSocketClosed:
                        self.room.discard(member)  # gone; its own handler ends too
        finally:
            self.room.discard(ws)
        self._record("room", f"{name} left")

    @actorloop.http.websocket("/ws/fail")
    async def ws_fail(self, ws: actorloop.http.WebSocket) -> None:
        await ws.receive()
        raise RuntimeError("handler broke")


@pytest.fixture(scope="module")
def actor() -> Any:
    return Streamer.remote()


@pytest.fixture(scope="module")
def url(actor: Any) -> str:
    return str(actor.http_url)


_keys = iter(range(1_000_000))


def new_key() -> str:
    return f"k{next(_keys)}"


def wait_until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


def curl(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "-N", "--max-time", "20", *args], capture_output=True, timeout=timeout)


def headers_and_body(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


# -- chunked streams with curl -N --------------------------------------------------------


@needs_curl
def test_async_generator_streams_json_lines(url: str) -> None:
    done = curl("-i", f"{url}/ndjson?n=4")
    assert done.returncode == 0, done.stderr
    status, headers, body = headers_and_body(done.stdout)
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in body.splitlines()] == [{"i": i} for i in range(4)]


@needs_curl
def test_sync_generator_streams_text(url: str) -> None:
    done = curl("-i", f"{url}/text")
    status, headers, body = headers_and_body(done.stdout)
    assert (status, headers["content-type"]) == (200, "text/plain; charset=utf-8")
    assert body == b"line 0\nline 1\nline 2\n"


@needs_curl
def test_stream_helper_sets_status_headers_and_content_type(url: str) -> None:
    status, headers, body = headers_and_body(curl("-i", f"{url}/custom").stdout)
    assert status == 201
    assert headers["x-rows"] == "1" and headers["content-type"] == "text/csv"
    assert body == b"a,b\n1,2\n"


@needs_curl
def test_bytes_items_are_sent_as_they_are(url: str) -> None:
    status, headers, body = headers_and_body(curl("-i", f"{url}/bytes").stdout)
    assert headers["content-type"] == "application/octet-stream"
    assert body == b"AAABBBCCC"


@needs_curl
def test_items_reach_curl_as_they_are_yielded(actor: Any, url: str) -> None:
    """curl -N prints the first item while the generator still waits for the second."""
    assert CURL is not None
    key = new_key()
    proc = subprocess.Popen([CURL, "-sS", "-N", "--max-time", "30", f"{url}/gated?key={key}"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"  # before release: the stream is live
        actorloop.get(actor.release.remote(key))
        assert proc.stdout.read() == b"second\n"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: actorloop.get(actor.events_of.remote(key)) == ["finally"], "the generator's finally")


@needs_curl
def test_head_of_a_stream_route_sends_headers_only(url: str) -> None:
    done = curl("-I", f"{url}/text")
    status, headers, body = headers_and_body(done.stdout)
    assert (done.returncode, status, body) == (0, 200, b"")
    assert headers["content-type"] == "text/plain; charset=utf-8"


# -- errors ----------------------------------------------------------------------------


def test_error_before_the_first_item_answers_500(url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/fail/early") as resp:
                assert resp.status == 500
                assert await resp.json() == {"error": "ValueError", "message": "no data today"}
            async with session.get(f"{url}/fail/missing") as resp:
                assert resp.status == 404
                assert await resp.text() == "no such feed\n"
            async with session.get(f"{url}/fail/first-item") as resp:
                assert resp.status == 500
                assert "yielded set" in (await resp.json())["message"]

    asyncio.run(main())


@needs_curl
def test_error_mid_stream_cuts_the_body_short(actor: Any, url: str) -> None:
    done = curl(f"{url}/fail/late")
    assert done.stdout == b"partial\n"
    assert done.returncode == 18, done.stderr  # "transfer closed with outstanding read data remaining"
    done = curl(f"{url}/fail/item")
    assert done.stdout == b"ok\n" and done.returncode == 18
    # The actor serves on.
    assert actorloop.get(actor.add.remote(0)) >= 0
    assert curl(f"{url}/text").stdout == b"line 0\nline 1\nline 2\n"


# -- Server-Sent Events -------------------------------------------------------------------


class EventSourceClient:
    """Reads a text/event-stream as a browser's EventSource does (HTML standard, 9.2.6)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.retry: int | None = None
        self.last_event_id = ""
        self.comments: list[str] = []

    async def events(self) -> AsyncIterator[tuple[str, str, str]]:
        """Yields (event type, data, last event id) per dispatched event."""
        data: list[str] = []
        event = ""
        buffer = b""
        while True:
            chunk = await self.response.content.readany()
            if not chunk:
                return
            buffer += chunk
            # Lines end with CRLF, LF or CR.
            while True:
                cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
                if cut < 0 or (buffer[cut : cut + 1] == b"\r" and cut + 1 == len(buffer)):
                    break  # no whole line yet (a CR at the end may be half of a CRLF)
                line = buffer[:cut].decode()
                step = 2 if buffer[cut : cut + 2] == b"\r\n" else 1
                buffer = buffer[cut + step :]
                if line == "":
                    if data:
                        yield (event or "message", "\n".join(data), self.last_event_id)
                    data, event = [], ""
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                elif name == "id" and "\0" not in value:
                    self.last_event_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)


def test_event_source_client_reads_events_and_resumes_from_last_event_id(url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/events", headers={"Accept": "text/event-stream"}) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/event-stream"
                assert resp.headers["Cache-Control"] == "no-cache"
                client = EventSourceClient(resp)
                got = [e async for e in client.events()]
            assert client.retry == 1500
            assert client.comments == ["hello"]
            assert got == [
                ("tick", "event 0\nsecond line", "0"),
                ("tick", "event 1\nsecond line", "1"),
                ("tick", "event 2\nsecond line", "2"),
                ("message", '{"done": true}', "2"),
                ("message", "plain\nCRLF\nCR", "2"),
            ]
            # A reconnecting EventSource sends the last id it saw.
            async with session.get(f"{url}/events", headers={"Last-Event-ID": client.last_event_id}) as resp:
                again = [e async for e in EventSourceClient(resp).events()]
            assert [data.split("\n")[0] for _, data, _ in again[:3]] == ["event 3", "event 4", "event 5"]

    asyncio.run(main())


@needs_curl
def test_curl_reads_sse_with_keepalive_comments(actor: Any, url: str) -> None:
    assert CURL is not None
    key = new_key()
    proc = subprocess.Popen([CURL, "-sS", "-N", "--max-time", "30", f"{url}/quiet?key={key}"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        # Headers go out at once; while the feed is quiet, pings keep the stream alive.
        assert proc.stdout.readline() == b": ping\n"
        assert proc.stdout.readline() == b"\n"
        actorloop.get(actor.release.remote(key))
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert rest.endswith(b"data: woke\n\n")
    assert set(rest.replace(b"data: woke\n\n", b"").split(b"\n\n")) <= {b": ping", b""}


def test_event_encoding() -> None:
    Event = actorloop.http.Event
    assert Event("a\nb\r\nc\rd").encode() == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert Event("x\n").encode() == b"data: x\ndata: \n\n"  # the client reads back "x\n"
    assert Event(" lead").encode() == b"data:  lead\n\n"  # the client strips one space only
    assert Event([1, 2], event="n", id="7", retry=10).encode() == b"event: n\nid: 7\nretry: 10\ndata: [1, 2]\n\n"
    assert Event(comment="two\nlines").encode() == b": two\n: lines\n\n"
    assert Event(b"\xc3\xa9").encode() == "data: é\n\n".encode()
    assert Event().encode() == b":\n\n"


def test_bad_events_and_streams_are_refused_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="event must be one line"):
        actorloop.http.Event("x", event="a\nb")
    with pytest.raises(ValueError, match="id must be one line"):
        actorloop.http.Event("x", id="1\x002")
    with pytest.raises(ValueError, match="retry must be"):
        actorloop.http.Event("x", retry=-1)
    with pytest.raises(TypeError, match="event must be a str"):
        actorloop.http.Event("x", event=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a generator"):
        actorloop.http.stream("not an iterable of chunks")
    with pytest.raises(TypeError, match="needs a generator"):
        actorloop.http.sse(42)
    with pytest.raises(ValueError, match="ping"):
        actorloop.http.sse(iter([]), ping=0)
    with pytest.raises(ValueError, match="status"):
        actorloop.http.stream(iter([]), status=99)


# -- WebSockets --------------------------------------------------------------------------


def test_websocket_sends_and_receives_text_bytes_and_json(url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws/echo") as ws:
                await ws.send_str("hi")
                assert await ws.receive_str() == "echo: hi"
                await ws.send_bytes(b"\x00\x01\x02")
                assert await ws.receive_bytes() == b"\x02\x01\x00"
                await ws.send_str("json")
                await ws.send_json({"a": [1, 2]})
                assert await ws.receive_json() == {"json": {"a": [1, 2]}}
                await ws.close()
                assert ws.close_code == 1000

    asyncio.run(main())


def test_websocket_shares_state_with_remote_methods(actor: Any, url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws/counter") as ws:
                before = await actor.add.remote(0)
                await ws.send_str("5")
                assert await ws.receive_json() == {"count": before + 5}
                assert await actor.add.remote(10) == before + 15
                await ws.send_str("1")
                assert await ws.receive_json() == {"count": before + 16}

    asyncio.run(main())


def test_websocket_chat_room_broadcasts_and_sees_clients_leave(actor: Any, url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            ann = await session.ws_connect(f"{url}/ws/room?name=ann")
            assert await ann.receive_str() == "welcome ann"
            bob = await session.ws_connect(f"{url}/ws/room?name=bob")
            assert await bob.receive_str() == "welcome bob"
            await ann.send_str("hello")
            assert await ann.receive_str() == "ann: hello"
            assert await bob.receive_str() == "ann: hello"
            transport = bob._response.connection.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()  # bob vanishes without a close frame: his handler's receive() ends
            await ann.send_str("still here")
            assert await ann.receive_str() == "ann: still here"
            await ann.close()

    asyncio.run(main())
    wait_until(
        lambda: sorted(actorloop.get(actor.events_of.remote("room"))) == ["ann left", "bob left"],
        "both handlers ran to their end",
    )


def test_plain_request_to_a_websocket_route_answers_426(url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/ws/echo") as resp:
                assert resp.status == 426
                assert "WebSocket endpoint" in (await resp.json())["message"]

    asyncio.run(main())


def test_websocket_handler_error_closes_with_1011_and_actor_serves_on(actor: Any, url: str) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws/fail") as ws:
                await ws.send_str("boom")
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011
            async with session.ws_connect(f"{url}/ws/echo") as ws:
                await ws.send_str("after")
                assert await ws.receive_str() == "echo: after"

    asyncio.run(main())


def test_websocket_decorator_errors() -> None:
    with pytest.raises(TypeError, match="needs an async def"):

        class Sync:
            @actorloop.http.websocket("/ws")
            def handler(self, ws: Any) -> None: ...

    with pytest.raises(TypeError, match=r"websocket\('/path'\)"):
        actorloop.http.websocket(lambda self, ws: None)  # type: ignore[arg-type]

    class Both:
        @actorloop.http.websocket("/x")
        async def ws(self, ws: Any) -> None: ...

        @actorloop.http.get("/x")
        def page(self, request: Any) -> str:
            return ""

    with pytest.raises(ValueError, match="both a WebSocket"):
        collect_routes(Both)


# -- disconnects free the generator and the slot -----------------------------------------


def _read_first_line_then_drop(url: str, path: str) -> bytes:
    """Raw HTTP: read up to the first body line, then reset the connection."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or data.split(b"\r\n\r\n", 1)[1].count(b"\n") < 2:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        return data
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with linger 0: an RST, as a killed client sends


@pytest.mark.parametrize(("path", "first"), [("/gated", b"first\n"), ("/gated-sse", b"data: first\n")])
def test_a_stream_holds_its_concurrency_group_slot(actor: Any, url: str, path: str, first: bytes) -> None:
    assert CURL is not None
    key = new_key()
    proc = subprocess.Popen([CURL, "-sS", "-N", "--max-time", "30", f"{url}{path}?key={key}"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == first
        # The group "one" has one slot, and the open stream holds it: a call waits its turn.
        queued = actor.in_group_one.remote()
        ready, _ = actorloop.wait([queued], timeout=0.5)
        assert ready == []
        actorloop.get(actor.release.remote(key))
        assert actorloop.get(queued, timeout=30) == "ran"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_disconnect_cancels_an_async_generator_and_frees_its_slot(actor: Any, url: str) -> None:
    for _ in range(3):  # the group "one" has one slot: each round needs the last one freed
        key = new_key()
        assert b"first" in _read_first_line_then_drop(url, f"/gated?key={key}")
        wait_until(
            lambda key=key: actorloop.get(actor.events_of.remote(key)) == ["CancelledError", "finally"],
            "CancelledError and finally in the generator",
        )
    assert actorloop.get(actor.in_group_one.remote(), timeout=30) == "ran"


def test_disconnect_closes_a_sync_generator_and_frees_its_slot(actor: Any, url: str) -> None:
    for _ in range(3):  # the group "one_sync" has one thread
        key = new_key()
        assert b"tick 0" in _read_first_line_then_drop(url, f"/ticks?key={key}")
        wait_until(
            lambda key=key: actorloop.get(actor.events_of.remote(key)) == ["GeneratorExit", "finally"],
            "GeneratorExit and finally in the generator",
        )


def test_disconnect_cancels_a_websocket_handler_and_frees_its_slot(actor: Any, url: str) -> None:
    async def round_trip(key: str) -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{url}/ws/hold?key={key}")
            assert await ws.receive_str() == "hello"
            # While its handler runs, the WebSocket holds the group's one slot: a call waits...
            queued = asyncio.ensure_future(actor.in_group_one.remote())
            done, _ = await asyncio.wait({queued}, timeout=0.5)
            assert not done
            transport = ws._response.connection.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()  # gone without a close frame
            # ...until the client has gone.
            assert await asyncio.wait_for(queued, 30) == "ran"

    for _ in range(3):  # in the group "one": each needs the last one's slot
        key = new_key()
        asyncio.run(round_trip(key))
        wait_until(
            lambda key=key: actorloop.get(actor.events_of.remote(key)) == ["CancelledError", "finally"],
            "CancelledError and finally in the handler",
        )


def test_disconnect_cancels_a_websocket_handler_whose_reader_is_another_task(actor: Any, url: str) -> None:
    key = new_key()

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{url}/ws/reader?key={key}")
            assert await ws.receive_str() == "hello"
            transport = ws._response.connection.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()

    asyncio.run(main())
    wait_until(
        lambda: sorted(actorloop.get(actor.events_of.remote(key))) == ["handler cancelled", "reader saw the end"],
        "the handler cancelled, its reader task ended",
    )


# -- backpressure ---------------------------------------------------------------------------


def _buffer_bound(item_size: int, rcvbuf: int) -> int:
    """Items that may sit in buffers between a stalled reader and the generator: the
    kernel's largest send buffer, the reader's receive buffer, asyncio's and aiohttp's."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            wmem_max = int(f.read().split()[2])
    except OSError:
        pytest.skip("needs Linux's /proc/sys/net/ipv4/tcp_wmem to bound the socket buffers")
    return (wmem_max + 2 * rcvbuf + 1024 * 1024) // item_size + 8


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_slow_client_holds_the_generator_back(actor: Any, url: str, kind: str) -> None:
    item, total = 16 * 1024, 1200  # 19 MiB in all, far more than the buffers
    rcvbuf = 64 * 1024
    bound = _buffer_bound(item, rcvbuf)
    assert bound < total // 2
    key = new_key()
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect((parts.hostname, parts.port))
    try:
        sock.sendall(f"GET /bulk/{kind}?key={key}&n={total}&size={item} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = sock.recv(item)
        assert received.startswith(b"HTTP/1.1 200")

        # Stop reading: the producer advances only as far as the buffers allow, then stalls.
        def settled() -> bool:
            seen = [actorloop.get(actor.produced_of.remote(key)) for _ in range(3)]
            time.sleep(0.1)
            return seen[0] > 0 and seen[0] == actorloop.get(actor.produced_of.remote(key))

        wait_until(settled, "the producer stalls")
        ahead = actorloop.get(actor.produced_of.remote(key))
        assert ahead <= bound, f"{ahead} items produced for a client that read none (bound {bound})"

        # Read it all, slowly (a look at the producer every 1 MiB): it stays within the bound
        # of what the client has read. Every item arrives, in order.
        header_end = received.index(b"\r\n\r\n") + 4
        next_check = 1 << 20
        while not received.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(256 * 1024)
            if not chunk:
                break
            received += chunk
            if len(received) >= next_check:
                next_check += 1 << 20
                consumed = (len(received) - header_end) // (item + len(f"{item:x}\r\n\r\n"))
                produced = actorloop.get(actor.produced_of.remote(key))
                assert produced - consumed <= bound, f"{produced} produced, {consumed} read (bound {bound})"
    finally:
        sock.close()
    assert actorloop.get(actor.produced_of.remote(key)) == total
    body = _dechunk(received.split(b"\r\n\r\n", 1)[1])
    assert len(body) == total * item
    assert body == b"".join(i.to_bytes(4, "big") * (item // 4) for i in range(total))  # all, in order


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_stalled_client_that_drops_stops_the_generator(actor: Any, url: str, kind: str) -> None:
    """The generator waits for the full buffer to drain; the client vanishing ends that wait."""
    key = new_key()
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        sock.sendall(f"GET /bulk/{kind}?key={key}&n=1000000&size=16384 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        wait_until(lambda: actorloop.get(actor.produced_of.remote(key)) > 0, "the producer starts")
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    # Where it stopped (at its yield, or in the write under it) decides GeneratorExit or CancelledError.
    wait_until(
        lambda: actorloop.get(actor.events_of.remote(key)) in (["GeneratorExit"], ["CancelledError"]),
        "the generator is stopped",
    )
    assert actorloop.get(actor.produced_of.remote(key)) < 1_000_000


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


# -- limits: timeouts spare streams, the connection cap counts them (server in-process) ----------


#: The header and keep-alive timeouts of the test below, and a wait well past both.
SHORT_TIMEOUT = 0.4
LONGER_THAN_TIMEOUTS = 3 * SHORT_TIMEOUT


class _Service:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.finished = 0

    async def slow(self, request: web.Request) -> AsyncIterator[str]:
        yield "one\n"
        # Longer than the header and keep-alive timeouts below: they must not end the stream.
        await asyncio.sleep(LONGER_THAN_TIMEOUTS)
        yield "two\n"

    async def held(self, request: web.Request) -> AsyncIterator[str]:
        try:
            yield "held\n"
            await self.gate.wait()
        finally:
            self.finished += 1

    async def ws(self, ws: actorloop.http.WebSocket) -> None:
        await asyncio.sleep(LONGER_THAN_TIMEOUTS)
        await ws.send_text(await ws.receive_text())


async def _run_in_group(group: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    return await asyncio.to_thread(func, *args, **kwargs)  # sync code runs off the loop, as in an actor


async def _start(service: _Service, **limits: Any) -> _http.HttpServer:
    routes = [Route("GET", "/slow", "slow"), Route("GET", "/held", "held"), Route(_http.WEBSOCKET, "/ws", "ws")]
    return await start_http_server(
        service, routes, bind_http_socket("127.0.0.1", 0), _run_in_group, lambda a: "_default", **limits
    )


def test_long_streams_and_websockets_outlive_the_header_and_keepalive_timeouts() -> None:
    async def main() -> None:
        server = await _start(_Service(), header_timeout=SHORT_TIMEOUT, keepalive_timeout=SHORT_TIMEOUT)
        try:
            # A fresh connection per request: a kept-alive one may be closed by the server as it is reused.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                async with session.get(f"{server.url}/slow") as resp:
                    assert await resp.read() == b"one\ntwo\n"
                async with session.ws_connect(f"{server.url}/ws") as ws:
                    await ws.send_str("still open")
                    assert await ws.receive_str() == "still open"
        finally:
            await server.close()

    asyncio.run(main())


def test_open_streams_count_against_the_connection_cap() -> None:
    async def main() -> None:
        service = _Service()
        server = await _start(service, max_connections=2)
        acceptor = server._acceptor
        port = urlsplit(server.url).port
        streams = []
        try:
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
                await asyncio.wait_for(reader.readuntil(b"held\n"), 30)
                streams.append((reader, writer))
            assert server.open_connections == 2
            # A third client waits in the listen backlog while both streams are open...
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /held HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for _ in range(20):
                await asyncio.sleep(0)
            assert acceptor.accepted == 2 and server.open_connections == 2
            # ...and is served once one of them ends.
            streams[0][1].close()
            reply = await asyncio.wait_for(reader.readuntil(b"held\n"), 30)
            assert reply.startswith(b"HTTP/1.1 200")
            assert acceptor.accepted == 3
            service.gate.set()
            assert (await asyncio.wait_for(reader.read(), 30)).endswith(b"0\r\n\r\n")
            writer.close()
        finally:
            for _, w in streams:
                w.close()
            await server.close()
        assert service.finished == 3

    asyncio.run(main())


def test_closing_the_server_ends_open_streams_at_once() -> None:
    async def main() -> None:
        service = _Service()
        # A shutdown timeout far past the deadline below: the held stream must not wait it out.
        server = await _start(service, shutdown_timeout=600)
        port = urlsplit(server.url).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"held\n"), 30)
        await asyncio.wait_for(server.close(), 30)
        assert service.finished == 1
        rest = await asyncio.wait_for(reader.read(), 30)
        assert not rest.endswith(b"0\r\n\r\n")  # cut: no final chunk
        writer.close()

    asyncio.run(main())


# -- a sync actor -------------------------------------------------------------------------


@actorloop.remote
class SyncFeed:
    """No async methods: its one thread runs .remote() calls and sync generators alike."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    @actorloop.http.get("/feed")
    def feed(self, request: web.Request) -> Iterator[str]:
        try:
            for i in range(100_000):
                yield f"{i}\n"
                time.sleep(0.005)
        except GeneratorExit:
            self.stopped.append("GeneratorExit")
            raise

    def stopped_streams(self) -> list[str]:
        return self.stopped


def test_sync_actor_streams_and_gets_its_thread_back_on_disconnect() -> None:
    feed = SyncFeed.remote()
    try:
        url = str(feed.http_url)
        for n in (1, 2):
            assert b"\r\n0\n\r\n" in _read_first_line_then_drop(url, "/feed")
            # The call needs the actor's only thread, which the stream holds until the client has left.
            wait_until(
                lambda n=n: actorloop.get(feed.stopped_streams.remote(), timeout=30) == ["GeneratorExit"] * n,
                "the stream ended",
            )
    finally:
        actorloop.kill(feed)
