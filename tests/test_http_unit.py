"""Unit tests of the built-in HTTP routes, without actor processes.

The server runs on the test's own loop; a fake ``run_in_group`` stands in
for the runtime (sync handlers are called inline, async ones awaited).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import json
import logging
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from actorloop import http
from actorloop._http import (
    DEFAULT_MAX_BODY,
    HttpServer,
    Route,
    bind_http_socket,
    collect_routes,
    http_url,
    start_http_server,
)

F = TypeVar("F", bound=Callable[..., Any])

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def method(concurrency_group: str) -> Callable[[F], F]:
    """Stand-in for @actorloop.method, which sets this attribute."""

    def decorate(func: F) -> F:
        func.__actorloop_method__ = {"concurrency_group": concurrency_group}  # type: ignore[attr-defined]
        return func

    return decorate


class Service:
    """A plain class shaped like an actor with routes."""

    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> int:
        self.count += 1
        return self.count

    @http.get("/count")
    def read_count(self, request: web.Request) -> dict[str, int]:
        return {"count": self.count}

    @http.post("/add")
    async def add(self, request: web.Request) -> str:
        body = await request.json()
        self.count += int(body["n"])
        return str(self.count)

    @http.get("/text")
    def text(self, request: web.Request) -> str:
        return "héllo"

    @http.get("/bytes")
    def raw(self, request: web.Request) -> bytes:
        return b"\x00\x01\xff"

    @http.get("/bytearray")
    def raw_bytearray(self, request: web.Request) -> bytearray:
        return bytearray(b"abc")

    @http.get("/memoryview")
    async def raw_memoryview(self, request: web.Request) -> memoryview:
        return memoryview(b"xyz")

    @http.get("/list")
    async def a_list(self, request: web.Request) -> list[int]:
        return [1, 2, 3]

    @http.get("/int")
    def an_int(self, request: web.Request) -> int:
        return 42

    @http.get("/float")
    def a_float(self, request: web.Request) -> float:
        return 1.5

    @http.get("/bool")
    def a_bool(self, request: web.Request) -> bool:
        return True

    @http.get("/none")
    def nothing(self, request: web.Request) -> None:
        return None

    @http.get("/response")
    async def response(self, request: web.Request) -> web.Response:
        return web.Response(text="<b>hi</b>", content_type="text/html", status=201)

    @http.get("/stream")
    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for part in (b"a", b"b", b"c"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    @http.get("/unsupported")
    def unsupported(self, request: web.Request) -> object:
        return {1, 2}

    @http.get("/unserialisable")
    def unserialisable(self, request: web.Request) -> object:
        return {"when": object()}

    @http.get("/boom")
    def boom(self, request: web.Request) -> None:
        raise ValueError("secret internals")

    @http.get("/aboom")
    async def aboom(self, request: web.Request) -> None:
        raise KeyError("missing")

    @http.get("/teapot")
    async def teapot(self, request: web.Request) -> None:
        raise web.HTTPBadRequest(text="no tea")

    @http.get("/redirect")
    def redirect(self, request: web.Request) -> None:
        raise web.HTTPFound("/count")

    @http.post("/upload")
    async def upload(self, request: web.Request) -> dict[str, int]:
        return {"size": len(await request.read())}

    @http.post("/text-body")
    async def text_body(self, request: web.Request) -> str:
        return await request.text()

    @http.route("put", "/items/{key}")
    async def put_item(self, request: web.Request) -> dict[str, str]:
        return {"key": request.match_info["key"], "body": await request.text()}

    @http.route("*", "/any")
    def any_verb(self, request: web.Request) -> str:
        return request.method

    @http.route("DELETE", "/count")
    def reset(self, request: web.Request) -> int:
        self.count = 0
        return self.count

    # Stacked with the method decorator, in both orders.
    @http.get("/io-outer")
    @method(concurrency_group="io")
    async def io_outer(self, request: web.Request) -> str:
        return "io-outer"

    @method(concurrency_group="compute")
    @http.get("/compute-inner")
    def compute_inner(self, request: web.Request) -> str:
        return "compute-inner"


def group_of(cls: type) -> Callable[[str], str]:
    def lookup(attr: str) -> str:
        opts = getattr(getattr(cls, attr), "__actorloop_method__", None) or {}
        return str(opts.get("concurrency_group", "_default"))

    return lookup


class FakeRuntime:
    """Records calls; runs sync handlers inline and awaits async ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def run_in_group(
        self,
        group: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        self.calls.append((group, func.__name__))
        if inspect.iscoroutinefunction(func):
            return await func(*args, **kwargs)
        return func(*args, **kwargs)


@asynccontextmanager
async def serve(instance: object | None = None, **kwargs: Any) -> AsyncIterator[tuple[str, FakeRuntime, HttpServer]]:
    obj = instance if instance is not None else Service()
    runtime = FakeRuntime()
    sock = bind_http_socket("127.0.0.1", 0)
    server = await start_http_server(
        obj,
        collect_routes(type(obj)),
        sock,
        runtime.run_in_group,
        group_of(type(obj)),
        **kwargs,
    )
    try:
        yield server.url, runtime, server
    finally:
        await server.close()


async def curl(*args: str) -> tuple[int, bytes, str]:
    """Run curl without blocking the loop that serves the request."""
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL,
        "-sS",
        "--max-time",
        "5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace")


# --- decorators -------------------------------------------------------------


def test_decorators_return_the_same_function_and_record_routes() -> None:
    def f(self: object, request: object) -> None: ...

    assert http.get("/a")(f) is f
    assert http.post("/b")(f) is f
    assert http.route("patch", "/c")(f) is f
    assert f.__actorloop_routes__ == [  # type: ignore[attr-defined]
        ("GET", "/a"),
        ("POST", "/b"),
        ("PATCH", "/c"),
    ]
    http.get("/a")(f)  # the same route twice is recorded once
    assert len(f.__actorloop_routes__) == 3  # type: ignore[attr-defined]
    assert {"get", "post", "route", "websocket", "stream", "sse"} <= set(http.__all__)


def test_decorators_stack_with_method_in_either_order() -> None:
    outer = Service.__dict__["io_outer"]
    inner = Service.__dict__["compute_inner"]
    assert outer.__actorloop_routes__ == [("GET", "/io-outer")]
    assert outer.__actorloop_method__ == {"concurrency_group": "io"}
    assert inner.__actorloop_routes__ == [("GET", "/compute-inner")]
    assert inner.__actorloop_method__ == {"concurrency_group": "compute"}
    assert inspect.iscoroutinefunction(outer)


def test_decorators_copied_by_wraps_do_not_leak_back() -> None:
    @http.get("/inner")
    def base(self: object, request: object) -> None: ...

    @http.post("/outer")
    @functools.wraps(base)
    def wrapper(self: object, request: object) -> None: ...

    assert base.__actorloop_routes__ == [("GET", "/inner")]  # type: ignore[attr-defined]
    assert wrapper.__actorloop_routes__ == [  # type: ignore[attr-defined]
        ("GET", "/inner"),
        ("POST", "/outer"),
    ]


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: http.get("count"), ValueError, "start with '/'"),
        (lambda: http.get(""), ValueError, "start with '/'"),
        (lambda: http.post(42), TypeError, "must be a str"),  # type: ignore[arg-type]
        (lambda: http.route("FETCH", "/x"), ValueError, "unknown HTTP method 'FETCH'"),
        (lambda: http.route("", "/x"), ValueError, "must not be empty"),
        (lambda: http.route(None, "/x"), TypeError, "HTTP method must be a str"),  # type: ignore[arg-type]
        (lambda: http.route("GET", b"/x"), TypeError, "must be a str"),  # type: ignore[arg-type]
        (lambda: http.get("/items/{id"), ValueError, "invalid HTTP path"),
    ],
)
def test_decorators_reject_bad_input(make: Callable[[], object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace("{", r"\{")):
        make()


def test_decorator_without_parentheses_says_how_to_use_it() -> None:
    with pytest.raises(TypeError, match=r"@actorloop.http.get\('/path'\)"):

        class Bad:
            @http.get  # type: ignore[arg-type]
            def f(self, request: object) -> None: ...  # type: ignore[misc]


def test_decorator_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="decorate methods"):
        http.get("/x")(42)  # type: ignore[type-var]


# --- collect_routes ---------------------------------------------------------


def test_collect_routes_in_definition_order() -> None:
    routes = collect_routes(Service)
    assert routes[:3] == [
        Route("GET", "/count", "read_count"),
        Route("POST", "/add", "add"),
        Route("GET", "/text", "text"),
    ]
    assert Route("PUT", "/items/{key}", "put_item") in routes
    assert Route("*", "/any", "any_verb") in routes
    assert all(r.attr != "increment" for r in routes)


def test_collect_routes_inheritance_alias_and_conflicts() -> None:
    class Base:
        @http.get("/a")
        def a(self, request: object) -> str:
            return "a"

        @http.get("/b")
        def b(self, request: object) -> str:
            return "b"

        alias = a  # the same function under a second name

    class Child(Base):
        def b(self, request: object) -> str:  # overridden without a route
            return "child"

        @http.post("/c")
        def c(self, request: object) -> str:
            return "c"

    assert collect_routes(Base) == [Route("GET", "/a", "a"), Route("GET", "/b", "b")]
    assert collect_routes(Child) == [Route("GET", "/a", "a"), Route("POST", "/c", "c")]
    assert collect_routes(object) == []

    class Clash:
        @http.get("/same")
        def one(self, request: object) -> None: ...

        @http.get("/same")
        def two(self, request: object) -> None: ...

    with pytest.raises(ValueError, match=r"GET /same of Clash .* one\(\) and two\(\)"):
        collect_routes(Clash)


# --- bind_http_socket -------------------------------------------------------


def test_bind_http_socket_picks_a_free_port() -> None:
    sock = bind_http_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert http_url(sock) == f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def test_port_in_use_names_host_and_port() -> None:
    first = bind_http_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(OSError) as info:
            bind_http_socket("127.0.0.1", port)
        assert str(info.value) == f"HTTP port {port} on 127.0.0.1 is already in use"
        assert info.value.errno == errno.EADDRINUSE
    finally:
        first.close()


def test_bind_http_socket_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="between 0 and 65535"):
        bind_http_socket("127.0.0.1", 70000)
    with pytest.raises(TypeError, match="port must be an int"):
        bind_http_socket("127.0.0.1", "80")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="port must be an int"):
        bind_http_socket("127.0.0.1", True)
    with pytest.raises(TypeError, match="host must be a str"):
        bind_http_socket(None, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        bind_http_socket("", 0)
    # TEST-NET-1: a valid address that is no interface of this machine.
    with pytest.raises(OSError, match=r"port 0 on 192\.0\.2\.1: .*not an address"):
        bind_http_socket("192.0.2.1", 0)


def test_wildcard_and_ipv6_urls() -> None:
    sock = bind_http_socket("0.0.0.0", 0)
    try:
        assert http_url(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
    if not socket.has_ipv6:
        return
    try:
        sock = bind_http_socket("[::1]", 0)
    except OSError:
        return  # IPv6 is disabled on this machine
    try:
        assert sock.family == socket.AF_INET6
        assert http_url(sock) == f"http://[::1]:{sock.getsockname()[1]}"
    finally:
        sock.close()


# --- the server ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_return_type() -> None:
    async with serve() as (url, _, _), aiohttp.ClientSession() as s:
        expected: list[tuple[str, str, bytes]] = [
            ("/text", "text/plain", "héllo".encode()),
            ("/bytes", "application/octet-stream", b"\x00\x01\xff"),
            ("/bytearray", "application/octet-stream", b"abc"),
            ("/memoryview", "application/octet-stream", b"xyz"),
            ("/count", "application/json", b'{"count": 0}'),
            ("/list", "application/json", b"[1, 2, 3]"),
            ("/int", "application/json", b"42"),
            ("/float", "application/json", b"1.5"),
            ("/bool", "application/json", b"true"),
            ("/none", "application/json", b"null"),
        ]
        for path, content_type, body in expected:
            async with s.get(url + path) as r:
                assert r.status == 200, path
                assert r.content_type == content_type, path
                assert await r.read() == body, path
        async with s.get(url + "/text") as r:
            assert r.charset == "utf-8"
        async with s.get(url + "/response") as r:
            assert (r.status, r.content_type) == (201, "text/html")
            assert await r.text() == "<b>hi</b>"
        async with s.get(url + "/stream") as r:
            assert await r.read() == b"abc"


@pytest.mark.asyncio
async def test_sync_and_async_handlers_share_state_and_groups() -> None:
    svc = Service()
    async with serve(svc) as (url, runtime, _), aiohttp.ClientSession() as s:
        svc.increment()
        async with s.post(url + "/add", json={"n": 4}) as r:  # async handler
            assert (r.status, await r.text()) == (200, "5")
        async with s.get(url + "/count") as r:  # sync handler
            assert await r.json() == {"count": 5}
        async with s.get(url + "/io-outer") as r:
            assert await r.text() == "io-outer"
        async with s.get(url + "/compute-inner") as r:
            assert await r.text() == "compute-inner"
        async with s.put(url + "/items/k1", data="v") as r:
            assert await r.json() == {"key": "k1", "body": "v"}
        for verb in ("GET", "POST", "PATCH"):
            async with s.request(verb, url + "/any") as r:
                assert await r.text() == verb
        async with s.delete(url + "/count") as r:
            assert await r.json() == 0
    assert svc.count == 0
    assert runtime.calls[:4] == [
        ("_default", "add"),
        ("_default", "read_count"),
        ("io", "io_outer"),
        ("compute", "compute_inner"),
    ]


@pytest.mark.asyncio
async def test_head_on_get_routes() -> None:
    async with (
        serve() as (url, _, _),
        aiohttp.ClientSession() as s,
        s.head(url + "/text") as r,
    ):
        assert r.status == 200
        assert r.content_length == len("héllo".encode())
        assert await r.read() == b""


@pytest.mark.asyncio
async def test_unknown_path_404_and_wrong_verb_405() -> None:
    async with serve() as (url, runtime, _), aiohttp.ClientSession() as s:
        async with s.get(url + "/nope") as r:
            assert r.status == 404
        async with s.post(url + "/count") as r:
            assert r.status == 405
            assert set(r.headers["Allow"].split(",")) == {"GET", "HEAD", "DELETE"}
        async with s.get(url + "/add") as r:
            assert r.status == 405
    assert runtime.calls == []


@pytest.mark.asyncio
async def test_raising_handler_500_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serve() as (url, _, _), aiohttp.ClientSession() as s:
        for path, error, message in [
            ("/boom", "ValueError", "secret internals"),
            ("/aboom", "KeyError", "'missing'"),
        ]:
            async with s.get(url + path, headers={"Accept": "text/html"}) as r:
                assert r.status == 500
                assert r.content_type == "application/json"
                text = await r.text()
                assert json.loads(text) == {"error": error, "message": message}
                assert "Traceback" not in text and ".py" not in text
        async with s.get(url + "/count") as r:  # still serving
            assert r.status == 200
    # ...and the traceback went to the actor's log instead.
    logged = [r for r in caplog.records if r.name == "actorloop.http"]
    assert len(logged) == 2 and logged[0].exc_info is not None
    assert "Service.boom" in logged[0].getMessage()


@pytest.mark.asyncio
async def test_unsendable_results_are_500() -> None:
    async with serve() as (url, _, _), aiohttp.ClientSession() as s:
        async with s.get(url + "/unsupported") as r:
            assert r.status == 500
            body = await r.json()
            assert body["error"] == "TypeError"
            assert "Service.unsupported() returned set" in body["message"]
        async with s.get(url + "/unserialisable") as r:
            assert r.status == 500
            assert (await r.json())["error"] == "TypeError"


@pytest.mark.asyncio
async def test_http_exceptions_pass_through() -> None:
    async with serve() as (url, _, _), aiohttp.ClientSession() as s:
        async with s.get(url + "/teapot") as r:
            assert (r.status, await r.text()) == (400, "no tea")
        async with s.get(url + "/redirect", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (302, "/count")


@pytest.mark.asyncio
async def test_malformed_bodies_are_400() -> None:
    async with serve() as (url, _, _), aiohttp.ClientSession() as s:
        for data in (b"{not json", b"", b'{"n": '):
            async with s.post(url + "/add", data=data) as r:
                assert r.status == 400, data
                body = await r.json()
                assert body["error"] == "JSONDecodeError"
                assert "Traceback" not in body["message"]
        async with s.post(
            url + "/text-body",
            data=b"\xff\xfe",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "UnicodeDecodeError"


@pytest.mark.asyncio
async def test_body_over_the_limit_is_413() -> None:
    assert DEFAULT_MAX_BODY == 16 * 1024 * 1024
    limit = 1024
    async with (
        serve(client_max_size=limit) as (url, runtime, _),
        aiohttp.ClientSession() as s,
    ):
        async with s.post(url + "/upload", data=b"x" * limit) as r:
            assert await r.json() == {"size": limit}
        # Content-Length over the limit: refused before the handler runs.
        runtime.calls.clear()
        async with s.post(url + "/upload", data=b"x" * (limit + 1)) as r:
            assert r.status == 413
        assert runtime.calls == []

        # Chunked, so no Content-Length: the handler's read hits the limit.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"y" * 512

        async with s.post(url + "/upload", data=chunks()) as r:
            assert r.status == 413
        async with s.get(url + "/count") as r:
            assert r.status == 200


@pytest.mark.asyncio
async def test_1000_malformed_requests_then_a_good_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with serve() as (url, _, _), aiohttp.ClientSession() as s:
        for _ in range(1000):
            async with s.post(url + "/add", data=b"{{{") as r:
                assert r.status == 400
        # Garbage that is not HTTP at all, on fresh connections.
        port = int(url.rsplit(":", 1)[1])
        for i in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x16\x03\x01 garbage %d\r\n\r\n" % i if i % 2 else b"GET / HTTP/9\r\n\r\n")
            reply = await reader.read()
            assert reply[:12] in (b"HTTP/1.0 400", b"HTTP/1.1 400"), reply[:40]
            writer.close()
            await writer.wait_closed()
        async with s.post(url + "/add", json={"n": 1}) as r:
            assert (r.status, await r.text()) == (200, "1")
    # A client sending garbage must not flood the actor's log.
    assert not [r for r in caplog.records if r.name.startswith("actorloop.http")]


@pytest.mark.asyncio
async def test_close_frees_the_port_and_is_idempotent() -> None:
    async with serve() as (url, _, server):
        port = int(url.rsplit(":", 1)[1])
        await server.close()
        await server.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as s, s.get(url + "/count"):
                pass
    bind_http_socket("127.0.0.1", port).close()


@pytest.mark.asyncio
async def test_failed_start_closes_the_socket() -> None:
    sock = bind_http_socket("127.0.0.1", 0)
    runtime = FakeRuntime()
    with pytest.raises(AttributeError):
        await start_http_server(
            object(),
            [Route("GET", "/x", "missing")],
            sock,
            runtime.run_in_group,
            lambda attr: "_default",
        )
    assert sock.fileno() == -1


@pytest.mark.asyncio
async def test_requests_wait_in_the_backlog_until_the_server_starts() -> None:
    # The node binds before the actor process runs; early clients must wait,
    # not be refused.
    import socket as socket_module

    sock = bind_http_socket("127.0.0.1", 0)
    runtime = FakeRuntime()
    # A connect that succeeds before any server runs: the client waits in the backlog, it is not refused.
    early = socket_module.create_connection(sock.getsockname()[:2], timeout=30)
    early.sendall(b"GET /int HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    server = await start_http_server(
        Service(),
        collect_routes(Service),
        sock,
        runtime.run_in_group,
        group_of(Service),
    )

    def read_all() -> bytes:
        chunks = []
        while chunk := early.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        answer = await asyncio.get_running_loop().run_in_executor(None, read_all)
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.split(b"\r\n\r\n", 1)[1].strip() == b"42"
    finally:
        early.close()
        await server.close()


@needs_curl
@pytest.mark.asyncio
async def test_with_real_curl() -> None:
    async with serve() as (url, _, _):
        code, out, err = await curl(url + "/count")
        assert (code, json.loads(out)) == (0, {"count": 0}), err
        code, out, _ = await curl("-X", "POST", "-d", '{"n": 3}', url + "/add")
        assert out == b"3"
        code, out, _ = await curl("-w", "%{http_code}", "-o", "/dev/null", url + "/nope")
        assert out == b"404"
        code, out, _ = await curl("-w", "%{http_code}", "-o", "/dev/null", "-X", "PATCH", url + "/count")
        assert out == b"405"
        code, out, _ = await curl("-X", "POST", "-d", "{oops", url + "/add")
        assert json.loads(out)["error"] == "JSONDecodeError"
        code, out, _ = await curl(url + "/boom")
        assert json.loads(out) == {"error": "ValueError", "message": "secret internals"}
        code, out, _ = await curl("-I", url + "/text")
        assert out.startswith(b"HTTP/1.1 200") and b"text/plain" in out
        code, out, _ = await curl(url + "/bytes")
        assert out == b"\x00\x01\xff"
        code, out, _ = await curl(url + "/count")
        assert json.loads(out) == {"count": 3}


@needs_curl
@pytest.mark.asyncio
async def test_curl_expect_100_continue_over_the_limit_gets_413() -> None:
    async with serve(client_max_size=1024) as (url, runtime, _):
        _, out, _ = await curl(
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "x" * 4096,
            url + "/upload",
        )
        assert out == b"413"
        assert runtime.calls == []


def test_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with serve() as (url, _, _), aiohttp.ClientSession() as s:
            async with s.post(url + "/add", json={"n": 2}) as r:
                assert await r.text() == "2"
            async with s.get(url + "/boom") as r:
                assert r.status == 500
            async with s.post(url + "/add", data=b"nope") as r:
                assert r.status == 400

    uvloop.run(main())
