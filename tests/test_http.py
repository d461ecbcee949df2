"""End-to-end tests of out-of-band HTTP (SPEC section 7) with real actors.

One node for the module; every actor is a real process with its own loop.
The driver talks HTTP with ``http.client`` (and ``curl`` where it exists),
so these tests check what a user of ``handle.http_url`` sees.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

import actorloop

CURL = shutil.which("curl")


@pytest.fixture(scope="module", autouse=True)
def node() -> Iterator[None]:
    actorloop.init(address="local")
    yield
    actorloop.shutdown()


# -- helpers -----------------------------------------------------------------------


def request(
    url: str,
    method: str = "GET",
    path: str = "/",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; returns (status, headers with lower-case names, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(url: str, path: str) -> Any:
    status, _, data = request(url, "GET", path)
    assert status == 200, data
    return json.loads(data)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than 127.x, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


# -- actors --------------------------------------------------------------------------


@actorloop.remote
class SeedCounter:
    """The seed's pattern: a hand-made aiohttp server started in async __init__."""

    async def __init__(self, port: int) -> None:
        self.counter = 0
        app = web.Application()
        app.add_routes([web.get("/", self.get), web.post("/", self.post)])
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", port)
        await self.site.start()

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.counter))

    async def post(self, request: web.Request) -> web.Response:
        self.counter += 1
        return web.Response(text="ok")

    async def increment(self) -> None:
        self.counter += 1


@actorloop.remote(concurrency_groups={"io": 2, "slow": 1, "one": 1})
class Service:
    def __init__(self) -> None:
        self.count = 0
        self.items: dict[str, bytes] = {}
        self.inside = 0
        self.most_inside = 0
        self.slow_started = threading.Event()
        self.gate = threading.Event()

    # state shared with .remote() calls
    def increment(self) -> int:
        self.count += 1
        return self.count

    def value(self) -> int:
        return self.count

    @actorloop.http.get("/count")
    def read_count(self, request: web.Request) -> dict[str, int]:
        return {"count": self.count}

    @actorloop.http.post("/add")
    async def add(self, request: web.Request) -> dict[str, int]:
        body = await request.json()
        self.count += int(body["n"])
        return {"count": self.count}

    # return types
    @actorloop.http.get("/text")
    def text(self, request: web.Request) -> str:
        return "hello, actor"

    @actorloop.http.get("/bytes")
    async def raw(self, request: web.Request) -> bytes:
        return b"\x00\x01binary"

    @actorloop.http.get("/response")
    async def response(self, request: web.Request) -> web.Response:
        return web.Response(status=201, text="made", headers={"X-Actor": "yes"})

    @actorloop.http.get("/list")
    def as_list(self, request: web.Request) -> list[int]:
        return [1, 2, 3]

    @actorloop.http.get("/none")
    def none(self, request: web.Request) -> None:
        return None

    @actorloop.http.get("/float")
    def number(self, request: web.Request) -> float:
        return 2.5

    @actorloop.http.get("/bool")
    def boolean(self, request: web.Request) -> bool:
        return True

    @actorloop.http.route("PUT", "/items/{key}")
    async def put_item(self, request: web.Request) -> dict[str, int]:
        data = await request.read()
        self.items[request.match_info["key"]] = data
        return {"stored": len(data)}

    @actorloop.http.get("/items/{key}")
    def get_item(self, request: web.Request) -> bytes:
        key = request.match_info["key"]
        if key not in self.items:
            raise web.HTTPNotFound(text=f"no item {key}")
        return self.items[key]

    @actorloop.http.get("/query")
    def query(self, request: web.Request) -> dict[str, str]:
        return dict(request.query)

    # where handlers run
    @actorloop.http.get("/where-sync")
    def where_sync(self, request: web.Request) -> dict[str, Any]:
        return {"thread": threading.current_thread().name, "on_loop": _on_loop()}

    @actorloop.http.get("/where-async")
    async def where_async(self, request: web.Request) -> dict[str, Any]:
        return {"thread": threading.current_thread().name, "on_loop": _on_loop()}

    # errors
    @actorloop.http.get("/boom")
    def boom(self, request: web.Request) -> str:
        raise ValueError("the handler failed")

    @actorloop.http.get("/teapot")
    def teapot(self, request: web.Request) -> str:
        raise web.HTTPForbidden(text="not for you")

    @actorloop.http.get("/unsendable")
    def unsendable(self, request: web.Request) -> object:
        return object()

    # concurrency groups: both decorator orders
    @actorloop.http.get("/io")
    @actorloop.method(concurrency_group="io")
    async def io(self, request: web.Request) -> str:
        return "io"

    @actorloop.method(concurrency_group="io")
    @actorloop.http.get("/io-sync")
    def io_sync(self, request: web.Request) -> str:
        return "io-sync"

    @actorloop.method(concurrency_group="slow")
    def slow(self) -> str:
        """Holds the "slow" group's thread until the gate opens."""
        self.slow_started.set()
        self.gate.wait(30)
        return "slept"

    @actorloop.method(concurrency_group="io")
    def wait_slow_started(self) -> bool:
        return self.slow_started.wait(30)

    @actorloop.method(concurrency_group="io")
    def open_gate(self) -> None:
        self.gate.set()

    @actorloop.http.get("/one")
    @actorloop.method(concurrency_group="one")
    async def one_http(self, request: web.Request) -> int:
        return await self.one_call()

    @actorloop.method(concurrency_group="one")
    async def one_call(self) -> int:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        await asyncio.sleep(0.1)
        self.inside -= 1
        return self.most_inside


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@actorloop.remote
class SlowStart:
    async def __init__(self, gate: str) -> None:
        # The constructor ends only once the test creates `gate`.
        deadline = time.monotonic() + 30
        while not os.path.exists(gate):
            assert time.monotonic() < deadline, f"{gate} never appeared"
            await asyncio.sleep(0.01)
        self.started = time.time()

    @actorloop.http.get("/started")
    def started_at(self, request: web.Request) -> float:
        return self.started


@actorloop.remote
class Tiny:
    @actorloop.http.get("/ping")
    def ping(self, request: web.Request) -> str:
        return "pong"

    def hello(self) -> str:
        return "hello"


@actorloop.remote
class NoRoutes:
    def hello(self) -> str:
        return "hello"


@pytest.fixture(scope="module")
def service() -> Any:
    handle = Service.remote()
    assert actorloop.get(handle.value.remote(), timeout=30) == 0
    return handle


# -- the seed's pattern ----------------------------------------------------------------


def test_seed_pattern_hand_made_aiohttp() -> None:
    port = free_port()
    counter = SeedCounter.remote(port)
    assert counter.http_url is None  # no built-in routes
    actorloop.get([counter.increment.remote() for _ in range(5)], timeout=30)
    url = f"http://127.0.0.1:{port}"
    assert request(url, "GET", "/")[2] == b"5"
    assert request(url, "POST", "/")[0] == 200
    assert request(url, "GET", "/")[2] == b"6"
    actorloop.kill(counter)


# -- built-in routes -------------------------------------------------------------------


def test_http_url_before_the_actor_is_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"
    handle = SlowStart.remote(str(gate))
    returned = time.time()
    url = handle.http_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    # The socket already listens: the request, sent while __init__ still waits, waits for the actor.
    conn = http.client.HTTPConnection(urlsplit(url).hostname, port_of(url), timeout=30)
    try:
        conn.request("GET", "/started")
        gate.touch()
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 200
    assert json.loads(body) > returned  # .remote() returned before __init__ ended
    actorloop.kill(handle)


def test_handle_from_get_actor_keeps_http_url() -> None:
    handle = Tiny.options(name="http-tiny").remote()
    again = actorloop.get_actor("http-tiny")
    assert again.http_url == handle.http_url
    assert request(again.http_url, "GET", "/ping")[2] == b"pong"
    actorloop.kill(handle)


def test_return_types(service: Any) -> None:
    url = service.http_url
    status, headers, body = request(url, "GET", "/text")
    assert (status, body) == (200, b"hello, actor")
    assert headers["content-type"].startswith("text/plain")

    status, headers, body = request(url, "GET", "/bytes")
    assert (status, body) == (200, b"\x00\x01binary")
    assert headers["content-type"] == "application/octet-stream"

    status, headers, body = request(url, "GET", "/response")
    assert (status, body, headers["x-actor"]) == (201, b"made", "yes")

    for path, expected in [("/list", [1, 2, 3]), ("/none", None), ("/float", 2.5), ("/bool", True)]:
        status, headers, body = request(url, "GET", path)
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body) == expected


def test_sync_handlers_run_off_the_loop_async_on_it(service: Any) -> None:
    sync = get_json(service.http_url, "/where-sync")
    async_ = get_json(service.http_url, "/where-async")
    assert sync["on_loop"] is False
    assert async_["on_loop"] is True
    assert async_["thread"] == "MainThread"
    assert sync["thread"] != "MainThread"


def test_handlers_share_state_with_remote_calls(service: Any) -> None:
    base = actorloop.get(service.value.remote())
    actorloop.get([service.increment.remote() for _ in range(5)])
    assert get_json(service.http_url, "/count") == {"count": base + 5}
    status, _, body = request(
        service.http_url, "POST", "/add", body=json.dumps({"n": 10}), headers={"Content-Type": "application/json"}
    )
    assert status == 200 and json.loads(body) == {"count": base + 15}
    assert actorloop.get(service.value.remote()) == base + 15


def test_path_parameters_and_query(service: Any) -> None:
    url = service.http_url
    status, _, body = request(url, "PUT", "/items/k1", body=b"payload")
    assert (status, json.loads(body)) == (200, {"stored": 7})
    assert request(url, "GET", "/items/k1")[2] == b"payload"
    status, _, body = request(url, "GET", "/items/missing")
    assert (status, body) == (404, b"no item missing")  # an HTTPException passes through
    assert get_json(url, "/query?a=1&b=two") == {"a": "1", "b": "two"}


def test_head_is_served_with_get(service: Any) -> None:
    status, headers, body = request(service.http_url, "HEAD", "/text")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len(b"hello, actor"))


def test_handler_in_a_group_answers_while_another_group_is_busy(service: Any) -> None:
    slow = service.slow.remote()
    assert actorloop.get(service.wait_slow_started.remote(), timeout=30)
    try:
        assert request(service.http_url, "GET", "/io")[2] == b"io"
        assert request(service.http_url, "GET", "/io-sync")[2] == b"io-sync"
        assert request(service.http_url, "GET", "/text")[2] == b"hello, actor"  # default group
        assert not actorloop.wait([slow], timeout=0)[0]  # still held: the groups did overlap
    finally:
        actorloop.get(service.open_gate.remote(), timeout=10)
    assert actorloop.get(slow, timeout=10) == "slept"


def test_group_limit_holds_for_handlers_and_calls_together(service: Any) -> None:
    # Group "one" runs one call at a time, whether it came over HTTP or by .remote().
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(get_json(service.http_url, "/one"))) for _ in range(3)]
    start = time.time()
    for t in threads:
        t.start()
    refs = [service.one_call.remote() for _ in range(2)]
    results.extend(actorloop.get(refs, timeout=10))
    for t in threads:
        t.join(10)
    assert len(results) == 5
    assert max(results) == 1
    assert time.time() - start >= 0.45


# -- errors ----------------------------------------------------------------------------


def test_unknown_path_404_wrong_verb_405(service: Any) -> None:
    assert request(service.http_url, "GET", "/nope")[0] == 404
    status, headers, _ = request(service.http_url, "DELETE", "/count")
    assert status == 405
    assert "GET" in headers["allow"]


def test_raising_handler_500_json_without_traceback(service: Any) -> None:
    status, headers, body = request(service.http_url, "GET", "/boom")
    assert status == 500
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": "ValueError", "message": "the handler failed"}
    assert b"Traceback" not in body and b".py" not in body
    # An HTTPException is the handler's chosen answer, not an error.
    assert request(service.http_url, "GET", "/teapot")[:3:2] == (403, b"not for you")
    # A value that cannot be sent is the handler's error too.
    status, _, body = request(service.http_url, "GET", "/unsendable")
    assert status == 500 and json.loads(body)["error"] == "TypeError"
    # The actor lives on.
    assert actorloop.get(service.value.remote()) >= 0
    assert request(service.http_url, "GET", "/text")[0] == 200


def test_malformed_json_400(service: Any) -> None:
    before = actorloop.get(service.value.remote())
    status, headers, body = request(
        service.http_url, "POST", "/add", body=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "JSONDecodeError"
    assert b"Traceback" not in body
    assert actorloop.get(service.value.remote()) == before


def test_body_over_the_limit_413(service: Any) -> None:
    from actorloop._http import DEFAULT_MAX_BODY

    conn = http.client.HTTPConnection("127.0.0.1", port_of(service.http_url), timeout=10)
    try:
        # Only the header claims the size: the server refuses before reading the body.
        conn.putrequest("PUT", "/items/big")
        conn.putheader("Content-Length", str(DEFAULT_MAX_BODY + 1))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_a_thousand_malformed_requests_do_not_hurt(service: Any) -> None:
    url = service.http_url
    port = port_of(url)
    garbage = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /count HTTP/9.9\r\n\r\n",
        b"GET /count HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
    ]

    async def send_all() -> dict[str, int]:
        statuses: dict[str, int] = {}
        sem = asyncio.Semaphore(32)

        async def raw(payload: bytes) -> None:
            async with sem:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(payload)
                    await writer.drain()
                    line = await asyncio.wait_for(reader.readline(), 10)
                finally:
                    writer.close()
                key = line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "closed"
                statuses[key] = statuses.get(key, 0) + 1

        bad_json = (
            b"POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 9\r\nConnection: close\r\n\r\n{not json"
        )
        payloads = [garbage[i % len(garbage)] for i in range(500)] + [bad_json] * 500
        await asyncio.gather(*(raw(p) for p in payloads))
        return statuses

    before = actorloop.get(service.value.remote())
    statuses = asyncio.run(send_all())
    assert sum(statuses.values()) == 1000
    assert set(statuses) <= {"400", "413", "closed"}, statuses  # never a 500
    assert statuses.get("400", 0) >= 500
    # Both ways in still answer, and no malformed request changed the state.
    assert get_json(url, "/count") == {"count": before}
    assert actorloop.get(service.value.remote(), timeout=10) == before
    assert actorloop.get(service.increment.remote(), timeout=10) == before + 1


# -- curl ------------------------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_session(service: Any) -> None:
    assert CURL is not None
    url = service.http_url

    def curl(*args: str) -> str:
        done = subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = json.loads(curl(f"{url}/count"))["count"]
    added = json.loads(curl("-X", "POST", "-H", "Content-Type: application/json", "-d", '{"n": 3}', f"{url}/add"))
    assert added == {"count": before + 3}
    assert curl(f"{url}/text") == "hello, actor"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/nope") == "404"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", f"{url}/count") == "405"
    error = curl("-w", "\n%{http_code}", f"{url}/boom")
    body, code = error.rsplit("\n", 1)
    assert code == "500" and json.loads(body)["error"] == "ValueError"
    head = curl("-I", f"{url}/text")
    assert head.startswith("HTTP/1.1 200")
    assert actorloop.get(service.value.remote()) == before + 3


# -- binding ---------------------------------------------------------------------------


def test_binds_loopback_by_default() -> None:
    handle = Tiny.remote()
    assert urlsplit(handle.http_url).hostname == "127.0.0.1"
    assert request(handle.http_url, "GET", "/ping")[2] == b"pong"
    other = non_loopback_ipv4()
    if other is not None:
        with pytest.raises(OSError):
            request(f"http://{other}:{port_of(handle.http_url)}", "GET", "/ping", timeout=2)
    actorloop.kill(handle)


def test_http_host_and_port_options() -> None:
    port = free_port()
    handle = Tiny.options(http_host="0.0.0.0", http_port=port).remote()
    assert handle.http_url == f"http://127.0.0.1:{port}"
    assert request(handle.http_url, "GET", "/ping")[2] == b"pong"
    other = non_loopback_ipv4()
    if other is not None:
        assert request(f"http://{other}:{port}", "GET", "/ping")[2] == b"pong"
    actorloop.kill(handle)


def test_port_in_use_fails_remote_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"HTTP port {port} .*already in use"):
            Tiny.options(http_port=port).remote()
        # Nothing half-made is left behind: the next actor starts normally.
        handle = Tiny.remote()
        assert actorloop.get(handle.hello.remote(), timeout=30) == "hello"
        actorloop.kill(handle)


def test_two_actors_cannot_share_a_port() -> None:
    first = Tiny.remote()
    with pytest.raises(OSError, match=str(port_of(first.http_url))):
        Tiny.options(http_port=port_of(first.http_url)).remote()
    assert request(first.http_url, "GET", "/ping")[2] == b"pong"
    actorloop.kill(first)


def test_actor_without_routes_has_no_http_url() -> None:
    handle = NoRoutes.remote()
    assert handle.http_url is None
    assert actorloop.get(handle.hello.remote(), timeout=30) == "hello"
    actorloop.kill(handle)


# -- lifecycle -------------------------------------------------------------------------


@actorloop.remote(max_restarts=1)
class Restartable:
    def __init__(self) -> None:
        self.pid = os.getpid()

    @actorloop.http.get("/pid")
    def read_pid(self, request: web.Request) -> int:
        return self.pid

    def crash(self) -> None:
        os._exit(3)

    def get_pid(self) -> int:
        return self.pid


def test_restarted_actor_serves_the_same_url() -> None:
    handle = Restartable.remote()
    first = get_json(handle.http_url, "/pid")
    with pytest.raises(actorloop.ActorDiedError):
        actorloop.get(handle.crash.remote(), timeout=30)
    second = actorloop.get(handle.get_pid.remote(), timeout=30)
    assert second != first
    assert get_json(handle.http_url, "/pid") == second
    actorloop.kill(handle)


def test_failed_constructor_refuses_connections() -> None:
    @actorloop.remote
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("no")

        @actorloop.http.get("/x")
        def x(self, request: web.Request) -> str:
            return "x"

        def hello(self) -> str:
            return "hello"

    handle = Broken.remote()
    with pytest.raises(actorloop.ActorDiedError):
        actorloop.get(handle.hello.remote(), timeout=30)
    with pytest.raises(OSError):  # reset or refused, never a hang
        request(handle.http_url, "GET", "/x", timeout=5)


def test_route_declared_twice_fails_at_decoration() -> None:
    class Base:
        @actorloop.http.get("/a")
        def a(self, request: web.Request) -> str:
            return "a"

    with pytest.raises(ValueError, match=r"GET /a .* both a\(\) and b\(\)"):

        @actorloop.remote
        class Twice(Base):
            @actorloop.http.get("/a")
            def b(self, request: web.Request) -> str:
                return "b"
