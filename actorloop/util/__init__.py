"""Utilities built on actors: :class:`ActorPool` (Ray's ``ray.util.ActorPool``, plus async)."""

from actorloop.util._pool import ActorPool as ActorPool

__all__ = ["ActorPool"]

ActorPool.__module__ = __name__
