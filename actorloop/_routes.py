"""The HTTP routes an actor class declares: the one part of HTTP every actor class needs.

``_meta`` asks each class for its routes when it is registered; the rest of
the HTTP machinery (``_http``: the server, streamed responses, WebSockets)
is imported only where routes are served.  Kept apart so that a program
whose actors serve no HTTP never loads it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["WEBSOCKET", "Route", "collect_routes"]

_ROUTES_ATTR = "__actorloop_routes__"
#: The pseudo-verb of ``@actorloop.http.websocket`` routes (served on GET with an Upgrade).
WEBSOCKET = "WEBSOCKET"


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
    by_path: dict[str, dict[str, str]] = {}
    for r in routes:
        by_path.setdefault(r.path, {})[r.method] = r.attr
    for path, verbs in by_path.items():
        if WEBSOCKET in verbs:
            plain = verbs.get("GET", verbs.get("*"))
            if plain is not None:
                raise ValueError(
                    f"{cls.__name__}: {path} is both a WebSocket ({verbs[WEBSOCKET]}()) and a GET route "
                    f"({plain}()); serve them on different paths"
                )
    return routes


def _declared_routes(obj: object) -> list[tuple[str, str]]:
    routes = getattr(obj, _ROUTES_ATTR, None)
    if routes is None and isinstance(obj, (staticmethod, classmethod)):
        # The route decorator may sit below @staticmethod/@classmethod.
        routes = getattr(obj.__func__, _ROUTES_ATTR, None)
    if not isinstance(routes, list):
        return []
    return [(str(m), str(p)) for m, p in routes]
