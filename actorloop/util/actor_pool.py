"""Ray's ``ray.util.actor_pool`` module path: ``from actorloop.util.actor_pool import ActorPool``."""

from actorloop.util._pool import ActorPool as ActorPool

__all__ = ["ActorPool"]
