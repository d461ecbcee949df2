"""``list_named_actors``: the names of the live named actors (Ray's ``ray.util.list_named_actors``)."""

from __future__ import annotations

from typing import Any

from actorloop import _backend
from actorloop._api import list_actors
from actorloop._runtime import require_runtime


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """Names of the live named actors in this process's namespace.

    With ``all_namespaces=True``, a list of ``{"name": ..., "namespace": ...}``
    for every namespace, as Ray returns it.

    Example::

        Counter.options(name="c").remote()
        actorloop.util.list_named_actors()        # ["c"]
    """
    if not isinstance(all_namespaces, bool):
        raise TypeError(f"all_namespaces must be a bool, got {type(all_namespaces).__name__}")
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.list_named_actors(all_namespaces)
    namespace = require_runtime().namespace
    live = [a for a in list_actors() if a.name is not None and a.state != "DEAD"]
    if all_namespaces:
        return [{"name": a.name, "namespace": a.namespace} for a in live]
    return [a.name for a in live if a.namespace == namespace]
