"""Utilities built on actors: :class:`ActorPool` (Ray's ``ray.util.ActorPool``, plus async),
``actorloop.util.queue.Queue`` (Ray's actor-backed queue) and ``list_named_actors``."""

from actorloop.util._named import list_named_actors as list_named_actors
from actorloop.util._pool import ActorPool as ActorPool

__all__ = ["ActorPool", "list_named_actors"]

ActorPool.__module__ = __name__
