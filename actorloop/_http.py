"""The HTTP server that runs inside an actor with ``@actorloop.http`` routes.

Three steps, split between the node and the actor process:

1. ``collect_routes(cls)`` finds the routes when the actor class is
   registered (cheap; does not import aiohttp).
2. ``bind_http_socket(host, port)`` runs in the node at registration, so a
   taken port fails ``.remote()`` and ``handle.http_url`` (``http_url``) is
   known before the actor process exists. The listening socket is then
   handed to the actor process; connections made meanwhile wait in the
   kernel's backlog instead of being refused.
3. ``start_http_server(...)`` runs in the actor process, on its loop, and
   serves the routes from that socket with aiohttp.

aiohttp is imported only by the functions that need it: importing it costs
about 0.2 s, which programs without HTTP routes should not pay.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DEFAULT_MAX_BODY",
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

_ROUTES_ATTR = "__actorloop_routes__"

_log = logging.getLogger("actorloop.http")
# aiohttp reports clients that send garbage through this logger; see
# _DemoteClientErrors.
_protocol_log = logging.getLogger("actorloop.http.protocol")

RunInGroup = Callable[[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One HTTP route: ``method`` (upper case, or ``"*"``) and ``path`` are
    served by the actor method named ``attr``."""

    method: str
    path: str
    attr: str


def collect_routes(cls: type) -> list[Route]:
    """Return the HTTP routes declared on ``cls`` and its bases.

    Routes come in definition order, base classes first, so that aiohttp
    tries overlapping patterns in the order the user wrote them. A method
    overridden in a subclass without route decorators serves no route.
    Raises ``ValueError`` when two methods claim the same verb and path.
    """
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        for name in vars(klass):
            names.setdefault(name, None)

    # An alias (`b = a` in the class body) would register a route twice;
    # keep the name the function was defined under.
    owner: dict[int, str] = {}
    found: list[tuple[str, Any]] = []
    for name in names:
        try:
            obj = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        declared = _declared_routes(obj)
        if not declared:
            continue
        key = id(obj)
        if key in owner:
            if name == getattr(obj, "__name__", None):
                owner[key] = name
            continue
        owner[key] = name
        found.append((name, obj))

    routes: list[Route] = []
    claimed: dict[tuple[str, str], str] = {}
    for _, obj in found:
        attr = owner[id(obj)]
        for method, path in _declared_routes(obj):
            other = claimed.setdefault((method, path), attr)
            if other != attr:
                raise ValueError(
                    f"HTTP route {method} {path} of {cls.__name__} is declared on both {other}() and {attr}()"
                )
            routes.append(Route(method, path, attr))
    return routes


def _declared_routes(obj: object) -> list[tuple[str, str]]:
    routes = getattr(obj, _ROUTES_ATTR, None)
    if routes is None and isinstance(obj, (staticmethod, classmethod)):
        # The route decorator may sit below @staticmethod/@classmethod.
        routes = getattr(obj.__func__, _ROUTES_ATTR, None)
    if not isinstance(routes, list):
        return []
    return [(str(m), str(p)) for m, p in routes]


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

    async def close(self) -> None:
        """Stop accepting, let running handlers finish (within the
        ``shutdown_timeout`` given to ``start_http_server``), close the
        socket. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._acceptor.close()
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
    ) -> None:
        self.loop = loop
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
            if self.open >= self.limit:
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        acceptor = self._acceptor
        self._transport = cast(asyncio.Transport, transport)
        if not self._counted:  # evicted before it was connected
            self._transport.abort()
            return
        self._inner = acceptor.factory()
        self._timer = acceptor.loop.call_later(acceptor.header_timeout, self._timed_out)
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
        self._transport = None
        self.release()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def release(self) -> None:
        """Give this connection's place back to the acceptor (once)."""
        if self._counted:
            self._counted = False
            self._acceptor.awaiting_headers.pop(self, None)
            self._acceptor.released()

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
                handler = _make_handler(
                    getattr(instance, r.attr),
                    group_of(r.attr),
                    run_in_group,
                    client_max_size,
                    f"{type(instance).__name__}.{r.attr}",
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
        acceptor = _Acceptor(asyncio.get_running_loop(), sock, server, limit, header_after)
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
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    from aiohttp import web
    from aiohttp.http_exceptions import HttpProcessingError

    async def handler(request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body:
            # Refuse before the handler runs: a sync handler on a thread
            # never reads the body, so aiohttp would never check the limit.
            raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=length)
        try:
            result = await run_in_group(group, func, (request,), {})
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
