"""The HTTP server that runs inside an actor with ``@actorloop.http`` routes.

Three steps, split between the node and the actor process:

1. ``collect_routes(cls)`` (in ``_routes``, which programs without routes
   import alone) finds the routes when the actor class is registered.
2. ``bind_http_socket(host, port)`` runs in the node at registration, so a
   taken port fails ``.remote()`` and ``handle.http_url`` (``http_url``) is
   known before the actor process exists. The listening socket is then
   handed to the actor process; connections made meanwhile wait in the
   kernel's backlog instead of being refused.
3. ``start_http_server(...)`` runs in the actor process, on its loop, and
   serves the routes from that socket with aiohttp.

The second half of the module streams: generators and async generators as
chunked responses (``Stream``/``stream``), Server-Sent Events
(``EventStream``/``sse``/``Event``) and WebSocket routes (``WebSocket``).
Each request that streams registers a ``_Disconnect`` with its connection's
``_HeaderDeadline``, whose ``connection_lost`` stops the stream; writes wait
for aiohttp's drain, so a slow client holds the generator back.

aiohttp is imported only by the functions that need it: importing it costs
about 0.2 s, which programs without HTTP routes should not pay.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import inspect
import json
import logging
import os
import re
import socket
import threading
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._routes import WEBSOCKET as WEBSOCKET
from ._routes import Route as Route
from ._routes import collect_routes as collect_routes

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DEFAULT_MAX_BODY",
    "Event",
    "EventStream",
    "Stream",
    "WebSocket",
    "WebSocketClosed",
    "sse",
    "stream",
    "HttpServer",
    "Route",
    "bind_http_socket",
    "collect_routes",
    "http_url",
    "start_http_server",
]

#: Largest request body a handler may read (16 MiB); a bigger one answers
#: 413. aiohttp's own default (1 MiB) is too small for bulk uploads, and an
#: unbounded limit would let one client exhaust the actor's memory.
DEFAULT_MAX_BODY = 16 * 1024 * 1024

#: Pending-connection queue of the listening socket: room for bursts of
#: clients, e.g. while the actor process is still starting.
LISTEN_BACKLOG = 1024

#: Seconds a client has, from connecting, to send the complete headers of its
#: first request; then the connection is closed. aiohttp has no such limit: a
#: client that sends half a request line would hold a descriptor forever.
#: ``$ACTORLOOP_HTTP_HEADER_TIMEOUT`` overrides it.
HEADER_TIMEOUT = 10.0

#: Seconds an idle keep-alive connection stays open after a response; the next
#: request's headers must be complete within it. aiohttp's default is an hour.
#: ``$ACTORLOOP_HTTP_KEEPALIVE_TIMEOUT`` overrides it.
KEEPALIVE_TIMEOUT = 15.0

#: Open HTTP connections one actor serves at once, so HTTP clients can never
#: take the descriptors the actor's callers need. At the cap a new connection
#: takes the place of the oldest one still sending its headers; if there is
#: none, accepting pauses and new connections wait in the listen backlog.
#: ``$ACTORLOOP_HTTP_MAX_CONNECTIONS`` overrides it.
MAX_CONNECTIONS = 256

#: How long accepting pauses after the process ran out of descriptors.
_ACCEPT_RETRY_DELAY = 0.5
#: accept() errors that concern one client only (as asyncio's own accept loop treats them).
_CLIENT_GAVE_UP = frozenset({errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM})

_log = logging.getLogger("actorloop.http")
# aiohttp reports clients that send garbage through this logger; see
# _DemoteClientErrors.
_protocol_log = logging.getLogger("actorloop.http.protocol")

RunInGroup = Callable[[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


def bind_http_socket(host: str, port: int) -> socket.socket:
    """Create a listening, non-blocking TCP socket on ``host:port``.

    ``port=0`` picks a free port (read it back with ``http_url`` or
    ``sock.getsockname()``). ``host`` may be an IPv4 or IPv6 address
    (``"[::1]"`` also accepted) or a name; a name that resolves to both
    families binds IPv4.

    Raises ``TypeError``/``ValueError`` for a bad host or port, and
    ``OSError`` (with ``errno`` set) when binding fails, with a message
    naming both, e.g. ``HTTP port 8080 on 127.0.0.1 is already in use``.

    The name lookup may block for a non-numeric host; call it off the
    event loop if that matters.
    """
    if not isinstance(host, str):
        raise TypeError(f"HTTP host must be a str, not {type(host).__name__}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"HTTP port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"HTTP port must be between 0 and 65535, got {port}")
    addr_host = host.strip()
    if addr_host.startswith("[") and addr_host.endswith("]"):
        addr_host = addr_host[1:-1]
    if not addr_host:
        raise ValueError("HTTP host must not be empty; use '0.0.0.0' or '::' to listen on every interface")

    try:
        infos = socket.getaddrinfo(addr_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"cannot bind HTTP port {port} on {host}: unknown host ({exc.strerror})") from None
    if not infos:  # pragma: no cover - getaddrinfo raises rather than return []
        raise ValueError(f"cannot bind HTTP port {port} on {host}: unknown host")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, proto, _, sockaddr = infos[0]

    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        if os.name == "posix":
            # Lets a restarted actor rebind while old connections sit in
            # TIME_WAIT; on POSIX it never lets two listeners share a port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, host, port) from None
    return sock


def _bind_error(exc: OSError, host: str, port: int) -> OSError:
    if exc.errno == errno.EADDRINUSE:
        message = f"HTTP port {port} on {host} is already in use"
    elif exc.errno == errno.EACCES:
        message = f"HTTP port {port} on {host}: permission denied (ports below 1024 usually need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        message = f"cannot bind HTTP port {port} on {host}: {host} is not an address of this machine"
    else:
        message = f"cannot bind HTTP port {port} on {host}: {exc.strerror or exc}"
    # errno is set after construction so that str() is the bare message, not
    # "[Errno 98] ...", while `err.errno == errno.EADDRINUSE` still works.
    err = OSError(message)
    err.errno = exc.errno
    return err


def http_url(sock: socket.socket) -> str:
    """Base URL of a socket from ``bind_http_socket``: ``http://127.0.0.1:PORT``.

    A wildcard address (``0.0.0.0``, ``::``) is given as the loopback
    address, since the URL is meant to be opened from this machine.
    """
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class HttpServer:
    """A running in-actor HTTP server; ``close()`` stops it."""

    def __init__(self, runner: web.AppRunner, url: str, acceptor: _Acceptor) -> None:
        self._runner = runner
        self._acceptor = acceptor
        self._closed = False
        #: Base URL, as ``http_url`` gives it.
        self.url = url

    @property
    def open_connections(self) -> int:
        """HTTP connections open right now (at most the ``max_connections`` cap)."""
        return self._acceptor.open

    async def stop(self, timeout: float) -> None:
        """End at once, as an actor that ends gracefully does: stop accepting,
        end streams and WebSockets as a client disconnect does (a generator's
        ``finally`` runs), cancel async handlers still running (as the actor's
        running coroutines are), and wait up to ``timeout`` seconds for all of
        them to finish. A sync handler that does not stream runs on (a thread
        cannot be interrupted), as a sync method call does. Calling it (or
        ``close``) again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._acceptor.close()
        work: set[asyncio.Future[Any]] = set()
        for guard in list(self._acceptor.guards.values()):
            watch = guard.watch
            if watch is None:
                continue
            handler = watch.handler_task
            if handler is not None and watch.task is None and not handler.done():
                handler.cancel()  # a plain async handler; a stream's or WebSocket's task is cancelled by the abort
            work.update(watch.work())
            guard.abort()  # its connection_lost fires the watch: a stream or WebSocket ends
        if work:
            await asyncio.wait(work, timeout=timeout)

    async def close(self) -> None:
        """Stop accepting, let running handlers finish (within the
        ``shutdown_timeout`` given to ``start_http_server``), close the
        socket. Calling it (or ``stop``) again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._acceptor.close()
        # Streams and WebSockets would last until the shutdown timeout: end them now (their
        # generators and handlers are cancelled, as on a client disconnect).
        for guard in list(self._acceptor.guards.values()):
            if guard.watch is not None:
                guard.abort()
        await self._runner.cleanup()


def _setting(name: str, given: float | None, default: float, kind: type[float] | type[int]) -> float:
    """``given`` if not None, else ``$name`` if set, else ``default``; must be positive."""
    value: float
    if given is not None:
        value = given
        source = name.lower().removeprefix("actorloop_http_")
    else:
        raw = os.environ.get(name, "")
        if not raw:
            return default
        source = f"${name}"
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{source} must be a positive {kind.__name__}, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{source} must be positive, got {value!r}")
    return value


class _Acceptor:
    """Accepts connections from the listening socket, at most ``limit`` open at once.

    Each connection gets a :class:`_HeaderDeadline` in front of aiohttp's
    handler. At the cap, a new connection takes the place of the oldest one
    that has not completed its first request's headers (a stalled client is
    never worth more than a new one); when every open connection is past
    its headers, accepting pauses and further clients wait in the kernel's
    backlog, without taking descriptors, until one closes.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        limit: int,
        header_timeout: float,
        guards: dict[object, _HeaderDeadline] | None = None,
    ) -> None:
        self.loop = loop
        #: The guard of each open connection by its transport, for handlers to watch for a disconnect.
        self.guards: dict[object, _HeaderDeadline] = guards if guards is not None else {}
        self.sock = sock
        self.factory = factory
        self.limit = limit
        self.header_timeout = header_timeout
        self.open = 0
        #: Connections accepted, and connections closed to make room, since the start.
        self.accepted = 0
        self.evicted = 0
        #: Open connections still waiting for their first headers, oldest first.
        self.awaiting_headers: dict[_HeaderDeadline, None] = {}
        self.closed = False
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resume()

    def _resume(self) -> None:
        self._retry = None
        if not self._reading and not self.closed and self.open < self.limit:
            self._reading = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _pause(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.sock.fileno())

    def _accept(self) -> None:
        while self.open < self.limit or self.awaiting_headers:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The socket stays readable: without a pause this would spin.
                    from ._fds import describe_fd_limit

                    _log.warning(
                        "HTTP server: cannot accept a connection (%s; %s); pausing for %.1f s",
                        exc.strerror,
                        describe_fd_limit(),
                        _ACCEPT_RETRY_DELAY,
                    )
                    self._pause()
                    if self._retry is None:
                        self._retry = self.loop.call_later(_ACCEPT_RETRY_DELAY, self._resume)
                    return
                if exc.errno in _CLIENT_GAVE_UP:
                    continue  # that client is gone; take the next one
                # The listening socket itself is broken: retrying would spin.
                _log.error("HTTP server: stopped accepting connections: %s", exc)
                self._pause()
                return
            evicting = self.open >= self.limit
            if evicting:
                # Only once a new client is really there: the oldest stalled one makes room.
                next(iter(self.awaiting_headers)).evict()
                self.evicted += 1
            self.open += 1
            self.accepted += 1
            guard = _HeaderDeadline(self)
            # Evictable from now on: even before its transport exists (which takes a loop iteration),
            # so a burst of clients can never leave the acceptor paused with only stalled ones open.
            self.awaiting_headers[guard] = None
            try:
                conn.setblocking(False)
                if conn.family in (socket.AF_INET, socket.AF_INET6):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                conn.close()
                guard.release()
                continue
            task = self.loop.create_task(self._serve(guard, conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if evicting:
                # An evicted connection's descriptor is closed in a later iteration of the loop: one eviction
                # per iteration keeps the process at most a few descriptors above the cap, where a burst of
                # stalled clients would otherwise swap through the whole backlog at once (and run out of them).
                # The listening socket stays registered: the next iteration takes the next client.
                return
        self._pause()

    async def _serve(self, guard: _HeaderDeadline, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: guard, conn)
        except Exception:  # noqa: BLE001 - the client is gone or the server closed; drop it
            conn.close()
            guard.release()

    def released(self) -> None:
        """A connection closed (or was evicted): room for one more."""
        self.open -= 1
        if not self._reading and self._retry is None:
            self._resume()

    def close(self) -> None:
        self.closed = True
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.sock.close()


class _HeaderDeadline(asyncio.Protocol):
    """Sits in front of aiohttp's handler: closes a connection whose first
    request's headers are not complete ``header_timeout`` seconds after it
    was accepted, and tells the acceptor when the connection ends.

    Later requests on a kept-alive connection are bounded by aiohttp's
    keep-alive timeout, which closes a connection that has not sent a whole
    request within it.
    """

    def __init__(self, acceptor: _Acceptor) -> None:
        self._acceptor = acceptor
        self._inner: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._tail = b""
        self._counted = True
        #: The streaming response or WebSocket using this connection now, if any.
        self.watch: _Disconnect | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        acceptor = self._acceptor
        self._transport = cast(asyncio.Transport, transport)
        if not self._counted:  # evicted before it was connected
            self._transport.abort()
            return
        self._inner = acceptor.factory()
        self._timer = acceptor.loop.call_later(acceptor.header_timeout, self._timed_out)
        acceptor.guards[transport] = self
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            # The headers end at the first empty line. Empty lines before the request line
            # are allowed (RFC 9112, 2.2) and end nothing.
            seen = self._tail + data if self._tail else data.lstrip(b"\r\n")
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._headers_done()
            else:
                self._tail = seen[-3:]
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        if self._transport is not None:
            self._acceptor.guards.pop(self._transport, None)
        self._transport = None
        self.release()
        if self._inner is not None:
            self._inner.connection_lost(exc)
        watch = self.watch
        if watch is not None:
            # After aiohttp's own handling, so a WebSocket reader already sees the end.
            self.watch = None
            watch.fire()

    def release(self) -> None:
        """Give this connection's place back to the acceptor (once)."""
        if self._counted:
            self._counted = False
            self._acceptor.awaiting_headers.pop(self, None)
            self._acceptor.released()

    def abort(self) -> None:
        """Drop this connection at once (the server is closing)."""
        if self._transport is not None:
            self._transport.abort()

    def evict(self) -> None:
        """Close this connection now to make room for a new one."""
        self._headers_done()
        self.release()
        if self._transport is not None:
            self._transport.abort()

    def _headers_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._tail = b""
        self._acceptor.awaiting_headers.pop(self, None)

    def _timed_out(self) -> None:
        self._timer = None
        self._acceptor.awaiting_headers.pop(self, None)
        if self._transport is not None:
            self._transport.close()


async def start_http_server(
    instance: object,
    routes: list[Route],
    sock: socket.socket,
    run_in_group: RunInGroup,
    group_of: Callable[[str], str],
    *,
    client_max_size: int = DEFAULT_MAX_BODY,
    shutdown_timeout: float = 5.0,
    header_timeout: float | None = None,
    keepalive_timeout: float | None = None,
    max_connections: int | None = None,
) -> HttpServer:
    """Serve ``routes`` of ``instance`` from the listening socket ``sock``.

    Must run on the loop that will serve requests. Each request calls
    ``await run_in_group(group_of(route.attr), bound_method, (request,), {})``;
    the runtime runs the handler in that concurrency group and returns its
    result, or raises what it raised. ``group_of`` and the bound methods are
    looked up once, here, so a missing method fails now.

    Takes ownership of ``sock``: the server closes it on ``close()``, and
    this function closes it if it fails.

    ``header_timeout``, ``keepalive_timeout`` and ``max_connections`` default
    to ``$ACTORLOOP_HTTP_HEADER_TIMEOUT`` etc., else to ``HEADER_TIMEOUT``,
    ``KEEPALIVE_TIMEOUT`` and ``MAX_CONNECTIONS``: a client that stalls can
    hold a connection only that long, and no more than ``max_connections``
    are open at once.
    """
    from aiohttp import web

    url = http_url(sock)
    runner: web.AppRunner | None = None
    try:
        header_after = _setting("ACTORLOOP_HTTP_HEADER_TIMEOUT", header_timeout, HEADER_TIMEOUT, float)
        keepalive_after = _setting("ACTORLOOP_HTTP_KEEPALIVE_TIMEOUT", keepalive_timeout, KEEPALIVE_TIMEOUT, float)
        limit = int(_setting("ACTORLOOP_HTTP_MAX_CONNECTIONS", max_connections, MAX_CONNECTIONS, int))
        sock.setblocking(False)
        app = web.Application(client_max_size=client_max_size)
        expect = _make_expect_handler(client_max_size)
        guards: dict[object, _HeaderDeadline] = {}
        loop = asyncio.get_running_loop()

        # One resource per path, its verbs together: aiohttp reuses only the
        # last resource added, so interleaved paths would duplicate them.
        by_path: dict[str, list[Route]] = {}
        for r in routes:
            by_path.setdefault(r.path, []).append(r)
        for path, path_routes in by_path.items():
            resource = app.router.add_resource(path)
            verbs = {r.method for r in path_routes}
            # "*" last: aiohttp refuses a verb added after a catch-all.
            for r in sorted(path_routes, key=lambda r: r.method == "*"):
                qualname = f"{type(instance).__name__}.{r.attr}"
                if r.method == WEBSOCKET:
                    ws_handler = _make_websocket_handler(
                        getattr(instance, r.attr), group_of(r.attr), run_in_group, qualname, guards
                    )
                    resource.add_route("GET", ws_handler)
                    continue
                handler = _make_handler(
                    getattr(instance, r.attr),
                    group_of(r.attr),
                    run_in_group,
                    client_max_size,
                    qualname,
                    guards,
                    loop,
                )
                resource.add_route(r.method, handler, expect_handler=expect)
                if r.method == "GET" and not verbs & {"HEAD", "*"}:
                    # As aiohttp's add_get does: curl -I should work.
                    resource.add_route("HEAD", handler, expect_handler=expect)

        _install_protocol_filter()
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=shutdown_timeout,
            logger=_protocol_log,
            keepalive_timeout=keepalive_after,
        )
        await runner.setup()
        server = runner.server
        assert server is not None
        # Our own accept loop instead of a web.SockSite: it enforces the
        # connection cap and the header deadline. The socket already
        # listens (bind_http_socket), with LISTEN_BACKLOG.
        acceptor = _Acceptor(loop, sock, server, limit, header_after, guards)
    except BaseException:
        if runner is not None:
            await runner.cleanup()
        sock.close()
        raise
    return HttpServer(runner, url, acceptor)


def _make_handler(
    func: Callable[..., Any],
    group: str,
    run_in_group: RunInGroup,
    max_body: int,
    qualname: str,
    guards: dict[object, _HeaderDeadline] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    from aiohttp import web
    from aiohttp.http_exceptions import HttpProcessingError

    guards = guards if guards is not None else {}
    # A handler that returns a stream keeps its concurrency-group slot until the stream ends, so
    # it runs inside a wrapper that streams: async code on the loop, sync code on a worker thread.
    async_gen_func = inspect.isasyncgenfunction(func)
    if async_gen_func or inspect.iscoroutinefunction(func):

        async def run(request: web.Request, watch: _Disconnect) -> Any:
            watch.handler_task = asyncio.current_task()  # for HttpServer.stop
            try:
                result = func(request) if async_gen_func else await func(request)
                if _is_stream(result):
                    return await _stream_on_loop(request, result, watch, qualname)
                return result
            finally:
                watch.handler_task = None

        target: Callable[..., Any] = run
    else:

        def run_sync(request: web.Request, watch: _Disconnect) -> Any:
            result = func(request)
            if _is_stream(result) and not _is_async_source(result):
                assert loop is not None
                return _stream_on_thread(request, result, watch, qualname, loop)
            return result  # an async stream from a sync handler: streamed on the loop, below

        target = run_sync

    async def stream_async(request: web.Request, result: Any, watch: _Disconnect) -> Any:
        return await _stream_on_loop(request, result, watch, qualname)

    # The handler's own name, for the call record the runtime keeps (logs, metrics).
    name = getattr(func, "__name__", None)
    if isinstance(name, str):
        target.__name__ = target.__qualname__ = name
        stream_async.__name__ = stream_async.__qualname__ = name

    async def handler(request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body:
            # Refuse before the handler runs: a sync handler on a thread
            # never reads the body, so aiohttp would never check the limit.
            raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=length)
        watch = _Disconnect(guards.get(request.transport))
        try:
            result = await run_in_group(group, target, (request, watch), {})
            if _is_stream(result):
                # A sync handler returned an async stream: it runs on the loop, in the group too.
                result = await run_in_group(group, stream_async, (request, result, watch), {})
            # Converting inside the try: an unserialisable result is the
            # handler's error (500), not a dropped connection.
            return _to_response(result, qualname)
        except web.HTTPException:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError, HttpProcessingError) as exc:
            # A malformed body (`await request.json()` / `.text()`, broken
            # chunked encoding) is the client's fault.
            return _error_response(400, exc)
        except Exception as exc:  # noqa: BLE001 - any handler error is a 500
            # The traceback goes to the actor's stderr (its log), never to
            # the client, which may be anyone who can reach the port.
            _log.error(
                "HTTP %s %s: %s() raised",
                request.method,
                request.path,
                qualname,
                exc_info=exc,
            )
            return _error_response(500, exc)
        finally:
            watch.release()

    return handler


def _make_websocket_handler(
    func: Callable[..., Any],
    group: str,
    run_in_group: RunInGroup,
    qualname: str,
    guards: dict[object, _HeaderDeadline],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    from aiohttp import web

    async def run(request: web.Request, watch: _Disconnect, response: web.WebSocketResponse) -> None:
        if watch.lost:
            return  # the client left while waiting for a slot
        watch.task = asyncio.current_task()
        ws = WebSocket(response, request)
        watch.websocket = ws
        try:
            # Upgraded inside the slot: the handler owns the socket from its first message.
            await response.prepare(request)
            await func(ws)
        except asyncio.CancelledError:
            if not watch.lost:
                raise
            watch.swallow()
        except WebSocketClosed as exc:
            if not ws.closed:  # another WebSocket's (e.g. a room member's): the handler's error
                _log.error("WebSocket %s: %s() raised", request.path, qualname, exc_info=exc)
                await response.close(code=1011, message=b"internal error")
            # else: its own client went away while the handler was sending; not an error
        except Exception as exc:  # noqa: BLE001 - the handler's error ends its connection
            _log.error("WebSocket %s: %s() raised", request.path, qualname, exc_info=exc)
            if response.prepared and not response.closed:
                await response.close(code=1011, message=b"internal error")
        finally:
            watch.task = None
        if response.prepared and not response.closed and not watch.lost:
            await response.close()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.WebSocketResponse()
        if not response.can_prepare(request).ok:
            return web.json_response(
                {
                    "error": "HTTPUpgradeRequired",
                    "message": f"{request.path} is a WebSocket endpoint; connect with a WebSocket client",
                },
                status=426,
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        watch = _Disconnect(guards.get(request.transport))
        try:
            await run_in_group(group, run, (request, watch, response), {})
        finally:
            watch.release()
        if not response.prepared:
            return web.Response(status=499)  # never upgraded: the client left first
        return response

    return handler


def _make_expect_handler(
    max_body: int,
) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]] | None:
    from aiohttp import web, web_urldispatcher

    # Private in aiohttp; without it, the size check in the handler still
    # answers 413, only after the client has sent the body.
    default = getattr(web_urldispatcher, "_default_expect_handler", None)
    if default is None:  # pragma: no cover - depends on the aiohttp version
        return None

    async def expect(request: web.Request) -> web.StreamResponse | None:
        # Answering 413 to "Expect: 100-continue" (curl sends it for bodies
        # over 1 MiB) saves the client from uploading a body we refuse.
        length = request.content_length
        if length is not None and length > max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=length)
        result: web.StreamResponse | None = await default(request)
        return result

    return expect


def _to_response(result: object, qualname: str) -> web.StreamResponse:
    from aiohttp import web

    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, str):
        return web.Response(text=result)
    if isinstance(result, bytes):
        return web.Response(body=result, content_type="application/octet-stream")
    if isinstance(result, (bytearray, memoryview)):
        # A copy: a sync handler's thread could mutate the buffer while
        # aiohttp is still sending it.
        return web.Response(body=bytes(result), content_type="application/octet-stream")
    if result is None or isinstance(result, (dict, list, int, float)):
        return web.json_response(result)
    raise TypeError(
        f"{qualname}() returned {type(result).__name__}, which cannot be sent "
        "over HTTP; return str, bytes, a dict, list, number, bool, None or an "
        "aiohttp.web.Response"
    )


def _error_response(status: int, exc: BaseException) -> web.Response:
    from aiohttp import web

    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the 500
        message = f"<unprintable {type(exc).__name__}>"
    return web.json_response({"error": type(exc).__name__, "message": message}, status=status)


# -- streaming -----------------------------------------------------------------------

#: Seconds without a write after which an event stream sends a keep-alive comment.
SSE_PING = 15.0


class WebSocketClosed(ConnectionError):
    """Raised when a WebSocket handler receives from, or sends to, a WebSocket that is closed."""


class Stream:
    """A chunked HTTP response whose body is the items of ``source``.

    Return it from a route handler (``actorloop.http.stream(...)`` builds
    one) to choose the status and headers; returning a generator directly
    does the same with the defaults.
    """

    __slots__ = ("source", "status", "headers", "content_type")

    def __init__(
        self,
        source: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        _check_source(source, "stream")
        self.source = source
        self.status = _check_status(status)
        self.headers = dict(headers or {})
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"Stream(status={self.status}, content_type={self.content_type!r})"


class EventStream(Stream):
    """A ``text/event-stream`` response (Server-Sent Events) built by ``actorloop.http.sse``."""

    __slots__ = ("ping", "retry")

    def __init__(
        self,
        source: Any,
        *,
        ping: float | None = SSE_PING,
        retry: int | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(source, status=status, headers=headers, content_type="text/event-stream")
        if ping is not None and (isinstance(ping, bool) or not isinstance(ping, (int, float)) or not ping > 0):
            raise ValueError(f"sse(ping=...) must be a positive number of seconds or None, got {ping!r}")
        self.ping = float(ping) if ping is not None else None
        self.retry = _check_retry(retry)

    def __repr__(self) -> str:
        return f"EventStream(status={self.status}, ping={self.ping}, retry={self.retry})"


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event, to yield from a generator given to ``actorloop.http.sse``.

    ``data`` is a ``str`` (several lines become several ``data:`` lines, as
    the format requires), ``bytes`` (UTF-8) or a JSON-able value (sent as
    JSON); ``None`` sends no data (e.g. an event carrying only ``retry``).
    ``event`` names it (``addEventListener(name, ...)`` in a browser);
    ``id`` is what a reconnecting client sends back as ``Last-Event-ID``;
    ``retry`` (milliseconds) tells the client how long to wait before
    reconnecting; ``comment`` is sent as ``:`` lines, which clients ignore.

    ::

        yield actorloop.http.Event({"token": "hi"}, event="token", id="7")
    """

    data: Any = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        for name in ("event", "id"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"Event {name} must be a str, not {type(value).__name__}")
            if "\n" in value or "\r" in value or (name == "id" and "\0" in value):
                banned = "CR, LF or NUL" if name == "id" else "CR or LF"
                raise ValueError(f"Event {name} must be one line, without {banned}: {value!r}")
        _check_retry(self.retry)
        if self.comment is not None and not isinstance(self.comment, str):
            raise TypeError(f"Event comment must be a str, not {type(self.comment).__name__}")

    def encode(self) -> bytes:
        """This event in the ``text/event-stream`` format, ending with its blank line."""
        lines: list[str] = []
        if self.comment is not None:
            lines.extend(f": {line}" if line else ":" for line in _LINE_BREAK.split(self.comment))
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        if self.data is not None:
            lines.extend(f"data: {line}" for line in _LINE_BREAK.split(_event_data(self.data)))
        if not lines:
            return b":\n\n"  # an empty event: send a bare comment rather than nothing
        lines.append("\n")
        return "\n".join(lines).encode()


def stream(
    source: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> Stream:
    """Stream the items of ``source`` as a chunked response; return this from a route handler.

    ``source`` is a generator, async generator, or any iterable or async
    iterable. Each item is sent as soon as it is yielded: ``str`` (UTF-8)
    and ``bytes`` as they are, dicts, lists, numbers, bools and ``None`` as
    one line of JSON each. ``content_type`` defaults by the first item:
    ``text/plain; charset=utf-8`` for ``str``, ``application/octet-stream``
    for ``bytes``, ``application/x-ndjson`` for JSON::

        @actorloop.http.get("/rows")
        def rows(self, request):
            return actorloop.http.stream(self.scan(), headers={"X-Total": "3"})
    """
    return Stream(source, status=status, headers=headers, content_type=content_type)


def sse(
    source: Any,
    *,
    ping: float | None = SSE_PING,
    retry: int | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> EventStream:
    """Send the items of ``source`` as Server-Sent Events; return this from a route handler.

    Each item is an :class:`Event`, or data for one: a ``str`` (multi-line
    data is split into ``data:`` lines), ``bytes`` (UTF-8) or a JSON-able
    value. A comment (``: ping``) is sent after ``ping`` seconds without an
    event, so proxies and clients keep an idle stream open (``None``: never).
    ``retry`` (milliseconds) is sent first, as the client's reconnection delay.
    The response has ``Content-Type: text/event-stream`` and
    ``Cache-Control: no-cache``; the headers are sent at once, before the
    first event::

        @actorloop.http.get("/tokens")
        def tokens(self, request):
            async def events():
                for word in ["hello", "world"]:
                    yield actorloop.http.Event(word, event="token")
            return actorloop.http.sse(events())

    A reconnecting browser sends the last ``id`` it saw in
    ``request.headers.get("Last-Event-ID")``.
    """
    return EventStream(source, ping=ping, retry=retry, status=status, headers=headers)


class WebSocket:
    """The WebSocket a ``@actorloop.http.websocket`` handler is given.

    Wraps aiohttp's ``WebSocketResponse`` (``ws.response``); ``ws.request``
    is the upgrade request. ``receive()`` returns the next message, ``str``
    for a text frame and ``bytes`` for a binary one, or ``None`` once the
    connection is closed; ``async for message in ws`` reads until then.
    ``send_text``/``send_bytes``/``send_json`` raise
    :class:`WebSocketClosed` when the client has gone. Pings are answered
    for you. Another method of the actor may send on the same WebSocket
    (e.g. broadcasting to a room) while the handler is receiving.
    """

    def __init__(self, response: web.WebSocketResponse, request: web.Request) -> None:
        #: The aiohttp ``WebSocketResponse`` underneath, for what this class does not cover.
        self.response = response
        #: The HTTP request that opened the WebSocket (headers, query, match_info).
        self.request = request
        #: The task waiting in receive(), if any: it sees the end as None, so it is not cancelled.
        self._receiver: asyncio.Task[Any] | None = None
        self._saw_close = False

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed."""
        return bool(self.response.closed) or self._saw_close

    @property
    def close_code(self) -> int | None:
        """The close code (1000 for a normal close), once closed."""
        code = self.response.close_code
        return int(code) if code is not None else None

    async def receive(self) -> str | bytes | None:
        """The next text (``str``) or binary (``bytes``) message; ``None`` once closed."""
        from aiohttp import WSMsgType

        if self._saw_close:
            return None
        self._receiver = asyncio.current_task()
        try:
            msg = await self.response.receive()
        except RuntimeError as exc:  # aiohttp: receive() after close, or two receivers at once
            if self.response.closed:
                self._saw_close = True
                return None
            raise RuntimeError(f"WebSocket.receive(): {exc}") from None
        finally:
            self._receiver = None
        if msg.type == WSMsgType.TEXT:
            return cast(str, msg.data)
        if msg.type == WSMsgType.BINARY:
            return cast(bytes, msg.data)
        # CLOSE, CLOSING, CLOSED or ERROR: the conversation is over.
        self._saw_close = True
        return None

    async def receive_text(self) -> str:
        """The next message, which must be text; raises ``WebSocketClosed`` once closed."""
        message = await self._receive_or_raise()
        if not isinstance(message, str):
            raise TypeError("WebSocket.receive_text(): the client sent a binary message; use receive_bytes()")
        return message

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary; raises ``WebSocketClosed`` once closed."""
        message = await self._receive_or_raise()
        if not isinstance(message, bytes):
            raise TypeError("WebSocket.receive_bytes(): the client sent a text message; use receive_text()")
        return message

    async def receive_json(self) -> Any:
        """The next message parsed as JSON (text or UTF-8 bytes); raises ``WebSocketClosed`` once closed."""
        return json.loads(await self._receive_or_raise())

    async def _receive_or_raise(self) -> str | bytes:
        message = await self.receive()
        if message is None:
            raise WebSocketClosed(f"the WebSocket is closed (code {self.close_code})")
        return message

    async def send_text(self, data: str) -> None:
        """Send a text message."""
        if not isinstance(data, str):
            raise TypeError(f"WebSocket.send_text() takes a str, not {type(data).__name__}")
        await self._send(self.response.send_str, data)

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"WebSocket.send_bytes() takes bytes, not {type(data).__name__}")
        await self._send(self.response.send_bytes, bytes(data))

    async def send_json(self, data: Any) -> None:
        """Send ``data`` as JSON in a text message."""
        await self._send(self.response.send_str, json.dumps(data))

    async def _send(self, send: Callable[[Any], Awaitable[None]], data: Any) -> None:
        if self.response.closed:
            raise WebSocketClosed(f"cannot send: the WebSocket is closed (code {self.close_code})")
        try:
            await send(data)
        except ConnectionError as exc:
            raise WebSocketClosed(f"cannot send: the client has gone ({exc})") from None

    async def close(self, code: int = 1000, message: str = "") -> None:
        """Close the connection with ``code`` (1000: normal) and a short reason."""
        await self.response.close(code=code, message=message.encode())

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while True:
            message = await self.receive()
            if message is None:
                return
            yield message

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<WebSocket {self.request.path} {state}>"


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _event_data(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data).decode()
    return json.dumps(data)


def _check_retry(retry: object) -> int | None:
    if retry is None:
        return None
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise ValueError(f"retry must be a whole number of milliseconds >= 0, got {retry!r}")
    return retry


def _check_status(status: object) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"a streamed response's status must be an int from 200 to 599, got {status!r}")
    return status


def _check_source(source: object, where: str) -> None:
    if isinstance(source, (str, bytes, bytearray, memoryview, dict)) or not (
        hasattr(source, "__aiter__") or hasattr(source, "__iter__")
    ):
        raise TypeError(
            f"actorloop.http.{where}() needs a generator, async generator or other (async) iterable "
            f"of items, not {type(source).__name__}"
        )


#: Results that are never streamed, checked first: a failed hasattr() costs an exception.
_PLAIN_RESULTS = (str, bytes, dict, list, int, float, type(None))


def _is_stream(result: object) -> bool:
    """Whether a handler's return value is streamed: generators and async iterators, not lists."""
    if isinstance(result, _PLAIN_RESULTS):
        return False
    return isinstance(result, (Stream, types.GeneratorType)) or hasattr(result, "__anext__")


def _is_async_source(result: object) -> bool:
    source = result.source if isinstance(result, Stream) else result
    return hasattr(source, "__aiter__")


def _chunk(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    if item is None or isinstance(item, (dict, list, tuple, int, float)):
        return json.dumps(item).encode() + b"\n"
    raise TypeError(
        f"a streamed response yielded {type(item).__name__}; yield str, bytes, or a JSON-able "
        "value (dict, list, number, bool, None)"
    )


def _event_chunk(item: object) -> bytes:
    if isinstance(item, Event):
        return item.encode()
    return Event(item).encode()


def _default_content_type(first: object) -> str:
    if isinstance(first, str):
        return "text/plain; charset=utf-8"
    if isinstance(first, (bytes, bytearray, memoryview)):
        return "application/octet-stream"
    return "application/x-ndjson"


class _Disconnect:
    """Watches one request's connection; when it is lost, stops what streams to it.

    An async stream's task is cancelled (``CancelledError`` in the generator,
    its ``finally`` runs, its concurrency-group slot is freed); a sync
    generator on a worker thread sees ``lost`` before its next item.
    """

    __slots__ = ("lost", "task", "guard", "websocket", "handler_task", "thread_end")

    def __init__(self, guard: _HeaderDeadline | None) -> None:
        self.lost = guard is None
        #: The task a stream or WebSocket handler runs in (cancelled when the connection is lost).
        self.task: asyncio.Task[Any] | None = None
        self.guard = guard
        #: Set for a WebSocket handler: not cancelled while it waits in receive(), which returns None.
        self.websocket: WebSocket | None = None
        #: The task an async handler runs in, while it runs (HttpServer.stop cancels a plain one).
        self.handler_task: asyncio.Task[Any] | None = None
        #: Set by a sync generator streaming on a thread once it ended (its ``finally`` ran).
        self.thread_end: concurrent.futures.Future[None] | None = None
        if guard is not None:
            guard.watch = self

    def work(self) -> list[asyncio.Future[Any]]:
        """What still runs for this request: its tasks, and the end of a stream on a thread (on the loop)."""
        tasks = (self.task, self.handler_task)
        running: list[asyncio.Future[Any]] = [t for t in tasks if t is not None and not t.done()]
        if self.thread_end is not None and not self.thread_end.done():
            running.append(asyncio.wrap_future(self.thread_end))
        return running

    def fire(self) -> None:
        if self.lost:
            return  # fired already (HttpServer.stop, then the connection's end): cancel once
        self.lost = True
        task = self.task
        if task is not None and not task.done():
            ws = self.websocket
            # A WebSocket handler waiting in receive() gets None there and runs on to its end;
            # one that has seen the close already is finishing; any other wait is cancelled.
            if ws is None or not (ws._receiver is task or ws._saw_close):
                task.cancel()

    def release(self) -> None:
        guard = self.guard
        if guard is not None and guard.watch is self:
            guard.watch = None
        self.guard = None
        self.task = None

    def swallow(self) -> None:
        """The cancellation came from `fire`: undo it, so the task can finish normally."""
        task = asyncio.current_task()
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()


class _Writer:
    """Writes one streamed response on the loop; also sends an event stream's pings."""

    def __init__(self, request: web.Request, spec: Stream) -> None:
        from aiohttp import web

        self.request = request
        self.spec = spec
        self.response = web.StreamResponse(status=spec.status, headers=spec.headers)
        self.event_stream = isinstance(spec, EventStream)
        self._last = 0.0
        self._writing = False
        self._pinger: asyncio.Task[None] | None = None

    async def start(self, first: object) -> None:
        response = self.response
        if "Content-Type" not in response.headers:
            response.headers["Content-Type"] = self.spec.content_type or _default_content_type(first)
        if self.event_stream:
            response.headers.setdefault("Cache-Control", "no-cache")
            # nginx buffers responses unless told not to; an event stream must not be.
            response.headers.setdefault("X-Accel-Buffering", "no")
        await response.prepare(self.request)
        self._last = asyncio.get_running_loop().time()
        spec = self.spec
        if isinstance(spec, EventStream):
            if spec.retry is not None:
                await self.write(f"retry: {spec.retry}\n\n".encode())
            if spec.ping is not None:
                self._pinger = asyncio.get_running_loop().create_task(self._ping(spec.ping))

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return  # an empty chunk would end a chunked body
        if self._pinger is None:
            # Waits while the transport's buffer is full: a slow client holds the generator back.
            await self.response.write(chunk)
            return
        self._writing = True
        try:
            await self.response.write(chunk)
        finally:
            self._writing = False
            self._last = asyncio.get_running_loop().time()

    async def finish(self) -> None:
        self.stop()
        await self.response.write_eof()

    def stop(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None

    async def _ping(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._last + every - loop.time()))
            if not self._writing and loop.time() - self._last >= every:
                try:
                    await self.write(b": ping\n\n")
                except ConnectionError:
                    return  # the client has gone; the stream notices on its own


_END = object()


async def _next_async(it: Any) -> Any:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return _END


async def _stream_on_loop(request: web.Request, result: Any, watch: _Disconnect, qualname: str) -> web.StreamResponse:
    """Stream ``result`` (a Stream, generator or async iterator) from the loop, in the current task."""
    from aiohttp import web

    spec = result if isinstance(result, Stream) else Stream(result)
    source = spec.source
    is_async = hasattr(source, "__aiter__")
    it = source.__aiter__() if is_async else iter(source)
    writer: _Writer | None = None
    watch.task = asyncio.current_task()
    try:
        if watch.lost:
            return web.Response(status=499)  # the client left while the handler waited for its slot
        encode = _event_chunk if isinstance(spec, EventStream) else _chunk
        first: Any = None
        head = b""
        if not isinstance(spec, EventStream):
            # Headers wait for the first item, so that an error (or an HTTPException, or an
            # item that cannot be sent) before it still answers with its own status; it also
            # picks the content type.
            first = await _next_async(it) if is_async else next(it, _END)
            if first is not _END:
                head = encode(first)
        writer = _Writer(request, spec)
        await writer.start(first)
        if request.method != "HEAD" and first is not _END:  # HEAD: the headers only
            await writer.write(head)
            write = writer.write
            if is_async:
                async for item in it:  # the same iterator: it goes on after the first item
                    await write(encode(item))
            else:
                for item in it:
                    await write(encode(item))
        await writer.finish()
        return writer.response
    except asyncio.CancelledError:
        if not watch.lost:
            raise
        watch.swallow()
        return writer.response if writer is not None else web.Response(status=499)
    except ConnectionError:
        if writer is None:
            raise
        return writer.response  # the client has gone
    except Exception as exc:
        if writer is None:
            raise  # nothing sent yet: the handler's usual error response
        _stream_failed(request, qualname, exc, watch)
        return writer.response
    finally:
        if writer is not None:
            writer.stop()
        watch.task = None
        await _close_source(it, is_async, request, qualname)


def _stream_on_thread(
    request: web.Request,
    result: Any,
    watch: _Disconnect,
    qualname: str,
    loop: asyncio.AbstractEventLoop,
) -> web.StreamResponse:
    """Stream a sync ``result`` from a worker thread: the generator runs where sync methods run.

    Items go to the loop through a ``_ThreadFeed``, which holds at most
    ``THREAD_WINDOW`` of them: while the client's buffer is full the thread
    waits, and the generator is not advanced.
    """
    from aiohttp import web

    def on_loop(coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]

    spec = result if isinstance(result, Stream) else Stream(result)
    it = iter(spec.source)
    writer: _Writer | None = None
    feed: _ThreadFeed | None = None
    ended: concurrent.futures.Future[None] = concurrent.futures.Future()
    watch.thread_end = ended
    try:
        if watch.lost:
            return web.Response(status=499)
        encode = _event_chunk if isinstance(spec, EventStream) else _chunk
        first: Any = None
        head = b""
        if not isinstance(spec, EventStream):
            first = next(it, _END)  # as on the loop: the headers wait for the first item
            if first is not _END:
                head = encode(first)
        writer = _Writer(request, spec)
        on_loop(writer.start(first))
        feed = _ThreadFeed(loop, writer)
        if request.method != "HEAD" and first is not _END:
            put = feed.put
            put(head)
            for item in it:
                if watch.lost:
                    break
                put(encode(item))
        feed.flush()
        if not watch.lost:
            on_loop(writer.finish())
        return writer.response
    except ConnectionError:
        if writer is None:
            raise
        return writer.response
    except Exception as exc:
        if writer is None:
            raise
        if feed is not None:
            try:
                feed.flush()  # the items before the error still reach the client
            except Exception:  # noqa: BLE001, S110 - the stream is failing anyway; the first error is logged
                pass
        loop.call_soon_threadsafe(_stream_failed, request, qualname, exc, watch)
        return writer.response
    finally:
        if writer is not None:
            loop.call_soon_threadsafe(writer.stop)
        close = getattr(it, "close", None)
        if close is not None:
            try:
                close()  # GeneratorExit at its yield: its finally runs
            except Exception:  # noqa: BLE001 - the response is over; the error goes to the log
                path = request.path
                _log.exception("HTTP %s %s: closing the generator of %s() failed", request.method, path, qualname)
        ended.set_result(None)


#: Items a sync generator's thread may hand to the loop before they are written.
THREAD_WINDOW = 16


class _ThreadFeed:
    """Hands chunks from a worker thread to the loop, in order, at most ``window`` unwritten.

    One wake-up of the loop per batch rather than a thread hop per item: the
    thread appends, and a pump task on the loop writes until the queue is
    empty. A write that fails (the client has gone) is raised in the thread
    at its next ``put`` or ``flush``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, writer: _Writer, window: int = THREAD_WINDOW) -> None:
        self._loop = loop
        self._writer = writer
        self._window = window
        self._chunks: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._pumping = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    def put(self, chunk: bytes) -> None:
        """On the thread: queue ``chunk``; waits while ``window`` chunks are unwritten."""
        with self._cond:
            while len(self._chunks) >= self._window and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            self._chunks.append(chunk)
            if self._pumping:
                return
            self._pumping = True
        self._loop.call_soon_threadsafe(self._start_pump)

    def flush(self) -> None:
        """On the thread: wait until every queued chunk is written."""
        with self._cond:
            while (self._chunks or self._pumping) and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def _start_pump(self) -> None:
        self._task = self._loop.create_task(self._pump())

    async def _pump(self) -> None:
        cond = self._cond
        write = self._writer.write
        try:
            while True:
                with cond:
                    if not self._chunks:
                        self._pumping = False
                        cond.notify_all()
                        return
                    chunk = self._chunks.popleft()
                    cond.notify_all()
                await write(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread, which decides
            with cond:
                self._error = exc if isinstance(exc, Exception) else ConnectionResetError("the stream was stopped")
                self._chunks.clear()
                self._pumping = False
                cond.notify_all()


async def _close_source(it: Any, is_async: bool, request: web.Request, qualname: str) -> None:
    close = getattr(it, "aclose" if is_async else "close", None)
    if close is None:
        return
    try:
        if is_async:
            await close()  # GeneratorExit at its yield: its finally runs
        else:
            close()
    except Exception:  # noqa: BLE001 - the response is over; the error goes to the log
        _log.exception("HTTP %s %s: closing the generator of %s() failed", request.method, request.path, qualname)


def _stream_failed(request: web.Request, qualname: str, exc: BaseException, watch: _Disconnect) -> None:
    """A generator raised after the headers went out: log it and cut the connection.

    Closing without the final empty chunk tells the client the body is
    incomplete (curl: "transfer closed with outstanding read data").
    """
    _log.error("HTTP %s %s: %s() raised while streaming", request.method, request.path, qualname, exc_info=exc)
    watch.release()  # our own close is not a client disconnect
    transport = request.transport
    if transport is not None:
        transport.close()


class _DemoteClientErrors(logging.Filter):
    """Turn aiohttp's reports of malformed requests into DEBUG records.

    aiohttp logs each one as an error with a traceback; a client sending
    garbage would otherwise flood the actor's stderr.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno > logging.DEBUG and isinstance(exc, HttpProcessingError):
            if not _protocol_log.isEnabledFor(logging.DEBUG):
                return False
            record.levelno = logging.DEBUG
            record.levelname = logging.getLevelName(logging.DEBUG)
        return True


def _install_protocol_filter() -> None:
    if not any(isinstance(f, _DemoteClientErrors) for f in _protocol_log.filters):
        _protocol_log.addFilter(_DemoteClientErrors())
