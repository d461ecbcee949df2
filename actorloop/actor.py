"""Ray's ``ray.actor`` module path: the actor classes and ``exit_actor``.

``from actorloop.actor import ActorHandle`` works where Ray code says
``from ray.actor import ActorHandle`` (and ``ActorProxy``, the handle type of
Ray's typed pattern, see docs/typing.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._handles import ActorClass as ActorClass
from ._handles import ActorHandle as ActorHandle
from ._handles import ActorMethod as ActorMethod
from ._handles import ActorProxy as ActorProxy

if TYPE_CHECKING:
    from ._worker import exit_actor as exit_actor

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "ActorProxy", "exit_actor"]


def __getattr__(name: str) -> Any:
    # exit_actor lives in the actor process's module, which a driver need not load.
    if name == "exit_actor":
        from ._worker import exit_actor

        return exit_actor
    raise AttributeError(f"module 'actorloop.actor' has no attribute {name!r}")
