"""HTTP abuse of an actor's built-in server: malformed requests, huge headers and
bodies, slow clients.  Each gets a 4xx (or a closed connection), never a 5xx
from the framework, never a dead or stuck actor; everyone else carries on.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actorloop
from actorloop import _http

from ._common import rss_mib, scaled

pytestmark = pytest.mark.usefixtures("node")

MAX_BODY = _http.DEFAULT_MAX_BODY
EXAMPLES = scaled(500, 5_000)


@actorloop.remote
class Web:
    def __init__(self) -> None:
        self.hits = 0

    @actorloop.http.get("/ping")
    async def ping(self, request: Any) -> dict[str, int]:
        self.hits += 1
        return {"pid": os.getpid(), "hits": self.hits}

    @actorloop.http.post("/json")
    async def json_in(self, request: Any) -> Any:
        return {"got": await request.json()}

    @actorloop.http.post("/size")
    async def size(self, request: Any) -> int:
        return len(await request.read())

    @actorloop.http.get("/sync")
    def sync_get(self, request: Any) -> str:
        return "sync"

    def pid(self) -> int:
        return os.getpid()


class Server:
    def __init__(self) -> None:
        self.handle = Web.remote()
        self.pid = actorloop.get(self.handle.pid.remote(), timeout=30)
        parts = urlsplit(self.handle.http_url)
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port = parts.hostname, parts.port

    def get(self, path: str = "/ping", timeout: float = 5) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 5, half_close: bool = True) -> bytes:
        """Send raw bytes, then end our side and return all the server answered; or, without
        ``half_close``, keep our side open and return once the first response's head arrived."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            chunks = []
            try:
                while True:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    if not half_close and b"\r\n\r\n" in b"".join(chunks):
                        break
            except (TimeoutError, ConnectionResetError):
                pass
            return b"".join(chunks)

    def check_alive(self) -> None:
        status, body = self.get()
        assert status == 200 and f'"pid": {self.pid}'.encode() in body, (status, body)
        assert actorloop.get(self.handle.pid.remote(), timeout=10) == self.pid


@pytest.fixture(scope="module")
def server() -> Any:
    s = Server()
    yield s
    s.check_alive()
    actorloop.kill(s.handle)


def _statuses(answer: bytes) -> list[int]:
    """The status of every response in ``answer`` (pipelined requests get several)."""
    out = []
    for part in answer.split(b"HTTP/1.")[1:]:
        try:
            out.append(int(part[2:5]))
        except ValueError:
            pass
    return out


def _assert_refused_politely(answer: bytes, what: object) -> None:
    statuses = _statuses(answer)
    assert all(s < 500 for s in statuses), f"{what!r} got {statuses}: {answer[:300]!r}"


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"\x00\x01\x02\xff" * 100,
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n",  # a header without a colon
    b"GET /ping HTTP/1.1\r\nHost: \x00\x7f\r\n\r\n",
    b"G\x00T /ping HTTP/1.1\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # cut short
    b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, bogus\r\n\r\n0\r\n\r\n",
    b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope",
    b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc",
    b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
    b"DELETE /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" * 50 + b"BROKEN\r\n\r\n",  # pipelined, then garbage
    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # an absurd URL
    b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 200_000 + b"\r\n\r\n",  # one huge header
    b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5_000)) + b"\r\n",
    b"GET /ping HTTP/1.1\r\n" + b" folded\r\n" * 10 + b"\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 preface
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
]


def test_malformed_requests(server: Server, report: Any) -> None:
    for data in MALFORMED:
        answer = server.raw(data)
        _assert_refused_politely(answer, data[:60])
    server.check_alive()
    report("hand-written malformed HTTP requests, all 4xx or closed", len(MALFORMED))


_TEMPLATES = [
    b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    b'POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"a": 1}\n',
    b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /sync HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_TEMPLATES)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        chunk = draw(
            st.one_of(
                st.binary(min_size=1, max_size=20),
                st.sampled_from(
                    [b"\r\n", b":", b" ", b"\x00", b"\r\n\r\n", b"Content-Length: 99999999999\r\n", b"-1", b"chunked"]
                ),
            )
        )
        if action == "insert":
            data[pos:pos] = chunk
        elif action == "delete":
            del data[pos : pos + len(chunk)]
        elif action == "replace":
            data[pos : pos + len(chunk)] = chunk
        else:
            data[pos:pos] = bytes(data[pos : pos + 20]) * draw(st.integers(2, 50))
    return bytes(data)


def test_fuzzed_requests(server: Server, report: Any) -> None:
    tried = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.one_of(_mutated(), st.binary(max_size=2_000)))
    def one(data: bytes) -> None:
        nonlocal tried
        tried += 1
        _assert_refused_politely(server.raw(data, timeout=10), data[:80])

    one()
    server.check_alive()
    report("hypothesis-mutated HTTP requests, none got a 5xx, actor alive", tried)


def _post_size(server: Server, body_len: int, headers: bytes = b"", send_body: bool = True) -> bytes:
    head = b"POST /size HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n%s\r\n" % (body_len, headers)
    if not send_body:  # the answer must come while we still "upload"
        return server.raw(head, timeout=5, half_close=False)
    return server.raw(head + b"b" * body_len, timeout=30)


def test_body_limit(server: Server, report: Any) -> None:
    assert MAX_BODY == 16 * (1 << 20)
    # At the limit: served.
    answer = _post_size(server, MAX_BODY)
    assert _statuses(answer) == [200] and answer.endswith(str(MAX_BODY).encode()), answer[:200]
    # One byte over, declared: 413 before the body is read.
    assert _statuses(_post_size(server, MAX_BODY + 1, send_body=False)) == [413]
    # Absurd declared lengths: 413 at once, no upload needed.
    t0 = time.monotonic()
    assert _statuses(_post_size(server, 10 << 30, send_body=False)) == [413]
    assert _statuses(_post_size(server, 10 << 30, b"Expect: 100-continue\r\n", send_body=False)) == [413]
    assert time.monotonic() - t0 < 5
    # A chunked body that grows past the limit: 413 when the handler reads past it.
    chunk = b"x" * (1 << 20)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    answer = server.raw(
        b"POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body,
        timeout=30,
    )
    assert _statuses(answer) == [413], answer[:200]
    server.check_alive()
    report("HTTP body limit (bytes), 413 past it (declared, Expect, chunked)", MAX_BODY)


def test_huge_headers(server: Server) -> None:
    for size in (8_190, 100_000, 1_000_000):
        answer = server.raw(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * size + b"\r\n\r\n")
        statuses = _statuses(answer)
        assert all(400 <= s < 500 for s in statuses) or statuses == [200], (size, statuses)
    server.check_alive()


def test_slow_clients_do_not_block_others(server: Server, report: Any) -> None:
    """Clients that send half a request and stall; one that trickles a byte at a time."""
    count = scaled(100, 500)
    halves = [
        b"GET /pi",
        b"GET /ping HTTP/1.1\r\nHost: x\r\n",  # headers never end
        b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc",  # body never ends
        b"POST /json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{",
    ]
    rss_before = rss_mib(server.pid)
    stalled = []
    stop = threading.Event()

    def trickle() -> None:
        with socket.create_connection((server.host, server.port), timeout=30) as sock:
            for byte in b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n":
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.02)
            assert sock.recv(100).startswith(b"HTTP/1.1 200")

    trickler = threading.Thread(target=trickle)
    try:
        for i in range(count):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            sock.sendall(halves[i % len(halves)])
            stalled.append(sock)
        trickler.start()
        latencies = []
        for _ in range(50):
            t0 = time.monotonic()
            assert server.get(timeout=5)[0] == 200
            latencies.append(time.monotonic() - t0)
        assert actorloop.get([server.handle.pid.remote() for _ in range(100)], timeout=10) == [server.pid] * 100
        trickler.join(timeout=30)
        assert not trickler.is_alive()
    finally:
        stop.set()
        for sock in stalled:
            sock.close()
    server.check_alive()
    latencies.sort()
    report("stalled HTTP clients held open while others were served", count)
    report("p50 / max latency of a GET meanwhile (ms)", f"{latencies[25] * 1000:.1f} / {latencies[-1] * 1000:.1f}")
    report("actor RSS growth with them (MiB)", round(rss_mib(server.pid) - rss_before, 1))


def test_concurrent_good_and_bad_clients(server: Server, report: Any) -> None:
    per_thread = scaled(100, 2_000)
    errors: list[BaseException] = []

    def good() -> None:
        try:
            for _ in range(per_thread):
                assert server.get()[0] == 200
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def bad(offset: int) -> None:
        try:
            for i in range(per_thread):
                _assert_refused_politely(server.raw(MALFORMED[(i + offset) % 12]), i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=good) for _ in range(3)] + [
        threading.Thread(target=bad, args=(k,)) for k in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    server.check_alive()
    report("good + malformed HTTP requests from 6 threads at once", 6 * per_thread)
