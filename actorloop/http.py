"""Serve actor methods over HTTP: ``@actorloop.http.get``, ``post``, ``route``.

An actor whose class has at least one route runs one aiohttp server on its
own event loop. ``handle.http_url`` gives its base URL as soon as
``.remote()`` returns::

    import actorloop

    @actorloop.remote
    class Counter:
        def __init__(self):
            self.count = 0

        def increment(self):
            self.count += 1
            return self.count

        @actorloop.http.get("/count")
        def read(self, request):
            return {"count": self.count}          # sent as JSON

        @actorloop.http.post("/add")
        async def add(self, request):
            body = await request.json()           # malformed body -> 400
            self.count += int(body["n"])
            return str(self.count)                # sent as text/plain

    c = Counter.options(http_port=8080).remote()
    print(c.http_url)                             # http://127.0.0.1:8080

A handler takes ``(self, request)`` (an ``aiohttp.web.Request``), may be
sync or async, runs in its method's concurrency group like a ``.remote()``
call, and returns an ``aiohttp.web.Response``, a ``str``, ``bytes`` or a
JSON-able value (dict, list, number, bool, ``None``). A handler that raises
answers 500 with ``{"error": "<ExceptionClass>", "message": "..."}``; an
``aiohttp.web.HTTPException`` it raises is sent as that status.

Sync handlers run on a worker thread, where the request body cannot be
awaited: read bodies in ``async def`` handlers.

Streaming: a handler that returns a generator or an async generator (or is a
generator function itself) streams its items as they are yielded, chunked
(``str``/``bytes`` as they are, dicts and lists as JSON lines);
``stream(...)`` sets the status and headers, ``sse(...)`` sends Server-Sent
Events, and ``@websocket(path)`` serves a WebSocket. See docs/streaming.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ._http import WEBSOCKET as _WEBSOCKET
from ._http import Event, EventStream, Stream, WebSocket, WebSocketClosed, sse, stream

__all__ = [
    "Event",
    "EventStream",
    "Stream",
    "WebSocket",
    "WebSocketClosed",
    "get",
    "post",
    "route",
    "sse",
    "stream",
    "websocket",
]

for _cls in (Event, EventStream, Stream, WebSocket, WebSocketClosed, sse, stream):
    # Tracebacks and reprs show the public path.
    _cls.__module__ = __name__
del _cls

F = TypeVar("F", bound=Callable[..., Any])

#: The verbs aiohttp routes; ``"*"`` matches any verb.
HTTP_METHODS: frozenset[str] = frozenset(
    {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "TRACE",
        "CONNECT",
        "*",
    }
)

# Attribute names shared with the runtime (actorloop._routes reads the first).
_ROUTES_ATTR = "__actorloop_routes__"


def _check_method(method: object) -> str:
    if not isinstance(method, str):
        raise TypeError(f"HTTP method must be a str such as 'GET', not {type(method).__name__}")
    verb = method.strip().upper()
    if not verb:
        raise ValueError("HTTP method must not be empty; use e.g. 'GET' or 'POST'")
    if verb not in HTTP_METHODS:
        known = ", ".join(sorted(HTTP_METHODS))
        raise ValueError(f"unknown HTTP method {method!r}; use one of {known}")
    return verb


def _check_path(path: object, decorator: str) -> str:
    if callable(path) and not isinstance(path, str):
        # The commonest slip: the decorator used without its argument.
        raise TypeError(
            f"@actorloop.http.{decorator} needs a path: write "
            f"@actorloop.http.{decorator}('/path'), not @actorloop.http.{decorator}"
        )
    if not isinstance(path, str):
        raise TypeError(f"HTTP path must be a str, not {type(path).__name__}")
    if not path.startswith("/"):
        raise ValueError(f"HTTP path must start with '/', got {path!r}")
    _check_pattern(path)
    return path


def _check_pattern(path: str) -> None:
    # Let aiohttp judge the pattern ('/items/{id}', '/{tail:.*}') now, at class
    # definition, instead of in the actor process at start-up. aiohttp is
    # imported only here so that `import actorloop` stays cheap for programs
    # without HTTP routes.
    from aiohttp import web

    async def _noop(request: web.Request) -> web.StreamResponse:  # pragma: no cover
        raise NotImplementedError

    try:
        web.UrlDispatcher().add_route("GET", path, _noop)
    except ValueError as exc:
        raise ValueError(f"invalid HTTP path {path!r}: {exc}") from None


def route(method: str, path: str) -> Callable[[F], F]:
    """Serve the decorated actor method at ``method path`` over HTTP.

    ``method`` is an HTTP verb (any case) or ``"*"`` for every verb;
    ``path`` starts with ``/`` and may hold aiohttp patterns such as
    ``/items/{id}``, read back with ``request.match_info["id"]``. One method
    may carry several routes, and the decorator stacks with
    ``@actorloop.method`` in either order::

        @actorloop.http.route("PUT", "/items/{id}")
        @actorloop.method(concurrency_group="io")
        async def put_item(self, request):
            self.items[request.match_info["id"]] = await request.read()
            return {"stored": True}

    Returns the same function, with ``(METHOD, path)`` recorded in its
    ``__actorloop_routes__`` list. Raises ``TypeError`` or ``ValueError``
    for a bad verb or path.
    """
    verb = _check_method(method)
    checked = _check_path(path, "route")
    return _decorator(verb, checked)


def get(path: str) -> Callable[[F], F]:
    """Serve the decorated actor method at ``GET path`` (and ``HEAD path``).

    ::

        @actorloop.http.get("/count")
        def count(self, request):
            return {"count": self.count}
    """
    return _decorator("GET", _check_path(path, "get"))


def post(path: str) -> Callable[[F], F]:
    """Serve the decorated actor method at ``POST path``.

    ::

        @actorloop.http.post("/echo")
        async def echo(self, request):
            return await request.json()
    """
    return _decorator("POST", _check_path(path, "post"))


def websocket(path: str) -> Callable[[F], F]:
    """Serve the decorated ``async def`` actor method as a WebSocket at ``path``.

    The method takes ``(self, ws)``, where ``ws`` is an
    :class:`actorloop.http.WebSocket`; it runs on the actor's loop, in its
    concurrency group, for as long as the connection lasts::

        @actorloop.http.websocket("/echo")
        async def echo(self, ws):
            async for message in ws:          # str or bytes, until the client closes
                await ws.send_text(f"echo: {message}")

    The connection closes when the method returns. Raises ``TypeError`` for
    a method that is not ``async def``, ``ValueError`` for a bad path.
    """
    checked = _check_path(path, "websocket")
    inner = _decorator(_WEBSOCKET, checked)

    def decorate(func: F) -> F:
        target = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
        if callable(target) and not inspect.iscoroutinefunction(target):
            raise TypeError(
                f"@actorloop.http.websocket({path!r}) needs an async def method "
                f"taking (self, ws); {getattr(target, '__name__', target)!r} is not async"
            )
        return inner(func)

    return decorate


def _decorator(verb: str, path: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@actorloop.http routes decorate methods, not {type(func).__name__}")
        existing = list(getattr(func, _ROUTES_ATTR, ()))
        if (verb, path) not in existing:
            existing.append((verb, path))
        # A fresh list, because functools.wraps copies __dict__ by reference:
        # appending in place would add the route to the wrapped original too.
        setattr(func, _ROUTES_ATTR, existing)
        return func

    return decorate
