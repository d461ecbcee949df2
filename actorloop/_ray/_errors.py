"""Ray's exceptions mapped to actorloop's, so ``except actorloop.exceptions.X`` works on both backends."""

from __future__ import annotations

from typing import Any

import ray.exceptions as rex

from .. import exceptions as ours
from ..exceptions import _make_task_error

# Most specific first: the first class that matches wins.
_MAP: list[tuple[type[BaseException], type[BaseException]]] = [
    (rex.GetTimeoutError, ours.GetTimeoutError),
    (rex.TaskCancelledError, ours.TaskCancelledError),
    (rex.ActorUnavailableError, ours.ActorUnavailableError),
    (rex.ActorDiedError, ours.ActorDiedError),
    # Ray raises the bare RayActorError for a few deaths (the worker exited mid-call): on the local
    # node each of them is an ActorDiedError, so a caller's `except ActorDiedError` sees it here too.
    (rex.RayActorError, ours.ActorDiedError),
    (rex.OwnerDiedError, ours.OwnerDiedError),
    (rex.ObjectLostError, ours.ObjectLostError),
    (rex.PendingCallsLimitExceeded, ours.PendingCallsLimitExceeded),
]


def to_ours(exc: BaseException) -> BaseException:
    """The actorloop error for a Ray error (``exc`` itself if it is no Ray error).

    A ``RayTaskError`` becomes a ``TaskError`` that is also an instance of the
    cause's class, carrying Ray's message (with the remote traceback) and
    ``.cause``, as on the local node.
    """
    if isinstance(exc, ours.ActorloopError) and not isinstance(exc, rex.RayError):
        return exc
    if type(exc) is TypeError and str(exc).startswith("Could not serialize"):
        # Ray's words for an argument it cannot pickle (raised by .remote() in the caller).
        return ours.SerializationError(str(exc))
    if isinstance(exc, rex.RayTaskError):
        cause: Any = getattr(exc, "cause", None)
        if isinstance(cause, rex.RayError):
            # A call that failed because a call it made failed: the inner failure is what counts.
            cause = to_ours(cause)
        if isinstance(cause, (ours.TaskError, ours.TaskCancelledError)):
            # A cancelled stream: Ray wraps its TaskCancelledError in a task error; ours is plain.
            return cause
        message = str(exc)
        return _make_task_error(message, cause, getattr(exc, "traceback_str", "") or message)
    if isinstance(exc, rex.RaySystemError) or isinstance(exc, rex.RayError):
        for ray_cls, our_cls in _MAP:
            if isinstance(exc, ray_cls):
                return our_cls(str(exc))
        return ours.ActorloopError(f"{type(exc).__name__}: {exc}")
    return exc
