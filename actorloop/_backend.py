"""Which engine runs this process's actors: the local node (default) or another backend (Ray).

The public API asks ``current`` at a few marked points (``init``/``shutdown``,
``ActorClass.remote``, ``RemoteFunction.remote``, ``get``/``wait``/``put``/
``kill``/``cancel``/``get_actor``, ``exit_actor``, ``get_runtime_context``)
and hands the call to the backend when one is active.  ``None`` (the local
node) costs those points one global read.

A backend lives in a package above every layer (``actorloop._ray``); this
module names it by module path in ``BACKENDS`` and imports it only when
chosen, the way an entry point is loaded, so that ``import actorloop`` never
imports Ray.  What a backend must offer is the ``Backend`` protocol below.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any, Protocol

from ._runtime import get_runtime

#: Backend name -> the module that implements it (its ``start(**init_args)`` returns a ``Backend``).
BACKENDS = {"ray": "actorloop._ray"}
#: The environment variable that picks the backend when ``init(backend=...)`` is not given.
ENV_VAR = "ACTORLOOP_BACKEND"


class Backend(Protocol):
    """What the public API hands over to a backend other than the local node."""

    name: str

    def shutdown(self) -> None: ...
    def context(self) -> dict[str, Any]: ...
    def create_actor(
        self, actor_class: Any, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...
    def call_function(
        self, function: Any, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...
    def get(self, refs: Any, timeout: float | None) -> Any: ...
    def wait(
        self, refs: list[Any], num_returns: int, timeout: float | None, fetch_local: bool
    ) -> tuple[list[Any], list[Any]]: ...
    def put(self, value: Any) -> Any: ...
    def kill(self, handle: Any, no_restart: bool) -> None: ...
    def cancel(self, ref: Any, force: bool, recursive: bool) -> None: ...
    def get_actor(self, name: str, namespace: str | None) -> Any: ...
    def list_actors(self) -> list[Any]: ...
    def list_named_actors(self, all_namespaces: bool) -> list[Any]: ...
    def cluster_resources(self) -> dict[str, float]: ...
    def available_resources(self) -> dict[str, float]: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def exit_actor(self) -> Any: ...
    def runtime_context(self) -> Any: ...


#: The active backend, or None for the local node.  Read directly on hot paths.
current: Backend | None = None
_lock = threading.Lock()


def chosen(backend: str | None) -> str:
    """The backend ``init(backend=...)`` asks for: the argument, else ``$ACTORLOOP_BACKEND``, else ``"local"``."""
    name = backend if backend is not None else os.environ.get(ENV_VAR) or "local"
    if not isinstance(name, str) or (name != "local" and name not in BACKENDS):
        source = "backend=" if backend is not None else f"${ENV_VAR}="
        raise ValueError(
            f"unknown actorloop backend {source}{name!r}; choose 'local' (this machine's node) or "
            + ", ".join(repr(n) for n in BACKENDS)
        )
    return name


def start(name: str, **init_args: Any) -> Backend:
    """Start backend ``name`` (not "local") and make it the current one."""
    global current
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        raise ImportError(
            f"actorloop's {name!r} backend needs {name}: pip install 'actorloop[{name}]' ({exc})"
        ) from exc
    backend: Backend = module.start(**init_args)
    current = backend
    return backend


def activate(backend: Backend | None) -> None:
    """Make ``backend`` current without starting it: done inside a backend's own workers."""
    global current
    current = backend


def stop() -> None:
    """Shut the current backend down, if any; the local node is the default again."""
    global current
    backend, current = current, None
    if backend is not None:
        backend.shutdown()


def implied() -> Backend | None:
    """The backend for a call made before ``init()``: the current one, else the one ``$ACTORLOOP_BACKEND`` names.

    The first ``.remote()`` without ``init()`` starts the runtime itself; with
    ``ACTORLOOP_BACKEND=ray`` that is Ray (unless the local node already runs).
    """
    backend = current
    if backend is not None:
        return backend
    name = os.environ.get(ENV_VAR)
    if not name or name == "local" or get_runtime() is not None:
        return None
    with _lock:
        if current is None:
            start(chosen(None))
        return current
