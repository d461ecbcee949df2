"""actorloop: asyncio-native actors on one machine, with Ray's actor API.

Each actor lives in its own process with its own uvloop event loop::

    import actorloop

    @actorloop.remote
    class Counter:
        def __init__(self):
            self.count = 0
        def increment(self):
            self.count += 1
            return self.count

    c = Counter.remote()
    print(actorloop.get(c.increment.remote()))    # 1

The package's map: this module is the public API; ``exceptions`` holds the
errors, ``http`` the route decorators, ``util`` the ActorPool and the queue,
``actor`` and ``runtime_context`` Ray's module paths.  The engine is private,
in layers that import only downwards (``tests/test_layers.py`` checks it)::

    exceptions _entry _fds _pickle    errors; the one way into a loop; fd limits; pickling;
    _routes                           the HTTP routes a class declares
    _shm _http                        shared-memory segments; the HTTP server (loaded on use)
    _protocol                         frames, hello, node error answers
    _meta                             class metadata, options, ActorInfo
    _node                             the node process: dirs, names, spawning, supervision
    _ref                              ObjectRef and sync waiting
    _stream                           ObjectRefGenerator: a generator method's items, with credit
    _connection                       a loop's connection to an actor; the node channels
    _runtime                          the process-global runtime and its home loop
    _backend                          which engine runs the actors (local node, or Ray)
    _tasks                            remote functions and their worker pool
    _handles                          ActorClass, ActorHandle, ActorMethod
    _api                              init, get, wait, kill, ... (re-exported here)
    _ray/                             the Ray backend, imported only when chosen

Beside them: ``_worker`` (the actor process) and ``_cli`` (the command line).
See docs/internals.md.
"""

from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from . import actor as actor
from . import exceptions as exceptions
from ._api import InitContext as InitContext
from ._api import available_resources as available_resources
from ._api import cancel as cancel
from ._api import cluster_resources as cluster_resources
from ._api import get as get
from ._api import get_actor as get_actor
from ._api import init as init
from ._api import is_initialized as is_initialized
from ._api import kill as kill
from ._api import list_actors as list_actors
from ._api import nodes as nodes
from ._api import put as put
from ._api import shutdown as shutdown
from ._api import wait as wait
from ._handles import ActorClass as ActorClass
from ._handles import ActorHandle as ActorHandle
from ._handles import method as method
from ._handles import remote as remote
from ._meta import ActorInfo as ActorInfo
from ._ref import ObjectRef as ObjectRef
from ._stream import ObjectRefGenerator as ObjectRefGenerator
from .exceptions import ActorDiedError as ActorDiedError
from .exceptions import ActorloopError as ActorloopError
from .exceptions import ActorUnavailableError as ActorUnavailableError
from .exceptions import GetTimeoutError as GetTimeoutError
from .exceptions import ObjectLostError as ObjectLostError
from .exceptions import OwnerDiedError as OwnerDiedError
from .exceptions import PendingCallsLimitExceeded as PendingCallsLimitExceeded
from .exceptions import RayActorError as RayActorError
from .exceptions import RayError as RayError
from .exceptions import RayTaskError as RayTaskError
from .exceptions import SerializationError as SerializationError
from .exceptions import TaskCancelledError as TaskCancelledError
from .exceptions import TaskError as TaskError
from .runtime_context import get_runtime_context as get_runtime_context

if _TYPE_CHECKING:
    from . import http as http
    from . import util as util
    from ._tasks import RemoteFunction as RemoteFunction
    from ._worker import exit_actor as exit_actor
    from .util import ActorPool as ActorPool

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorDiedError",
    "ActorHandle",
    "ActorInfo",
    "ActorPool",
    "ActorUnavailableError",
    "ActorloopError",
    "GetTimeoutError",
    "InitContext",
    "ObjectLostError",
    "ObjectRef",
    "ObjectRefGenerator",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "RayActorError",
    "RayError",
    "RayTaskError",
    "RemoteFunction",
    "SerializationError",
    "TaskCancelledError",
    "TaskError",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "exit_actor",
    "get",
    "get_actor",
    "get_runtime_context",
    "http",
    "init",
    "is_initialized",
    "kill",
    "list_actors",
    "nodes",
    "method",
    "put",
    "remote",
    "shutdown",
    "util",
    "wait",
]

#: Public names imported on first use, as (module, attribute): a program that
#: never touches them does not load them (``actorloop.http`` brings the HTTP
#: machinery, ``util`` the pool, ``RemoteFunction`` the task pool, ``exit_actor`` the actor
#: process's module).
_LAZY: dict[str, tuple[str, str | None]] = {
    "RemoteFunction": ("actorloop._tasks", "RemoteFunction"),
    "http": ("actorloop.http", None),
    "util": ("actorloop.util", None),
    "ActorPool": ("actorloop.util", "ActorPool"),
    "exit_actor": ("actorloop._worker", "exit_actor"),
}


def __getattr__(name: str) -> _Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'actorloop' has no attribute {name!r}") from None
    import importlib

    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# A library logs only when the application asks it to.
_logging.getLogger("actorloop").addHandler(_logging.NullHandler())

# (RemoteFunction's is set in _tasks, which is imported on first use.)
for _name in ("ActorClass", "ActorHandle", "ActorInfo", "ObjectRef", "ObjectRefGenerator"):
    globals()[_name].__module__ = "actorloop"
del _name
