"""Errors raised by actorloop.

Every error derives from :class:`ActorloopError`; each is also exported at
the top level (``actorloop.TaskError``)::

    ActorloopError (= RayError)
    ├── TaskError (= RayTaskError)  a method or task raised; also an instance
    │                               of the original exception's class
    ├── RayActorError               the actor could not finish the call
    │   ├── ActorDiedError          its process ended (crash, kill, failed
    │   │                           constructor, exit_actor, sys.exit)
    │   └── ActorUnavailableError   it cannot be reached for now
    ├── GetTimeoutError             (also TimeoutError) get()/wait timed out
    ├── TaskCancelledError          the call was cancelled with cancel()
    ├── ObjectLostError             a ref's value is gone
    │   └── OwnerDiedError          the process that owned it exited
    ├── SerializationError          (also TypeError) an argument or result
    │                               could not be pickled
    └── PendingCallsLimitExceeded   more calls than max_pending_calls

They are grouped by what the caller can do: ``TaskError`` means the method's
own code failed (inspect ``.cause``); ``RayActorError`` means the actor is
gone (restart it or give up); the rest are about the call itself.

Ray's names are the same classes (``RayError is ActorloopError``,
``RayTaskError is TaskError``), so ``except ray.exceptions.RayActorError``
in Ray code keeps working after ``import actorloop as ray``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorloopError",
    "TaskError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "GetTimeoutError",
    "TaskCancelledError",
    "ObjectLostError",
    "OwnerDiedError",
    "SerializationError",
    "PendingCallsLimitExceeded",
    "RayError",
    "RayTaskError",
]


class ActorloopError(Exception):
    """Raised for every failure that actorloop itself reports; the base class."""


class TaskError(ActorloopError):
    """Raised when an actor method raised.

    The object raised in the caller is also an instance of the original
    exception's class, so ``except ValueError`` still works; the remote
    traceback is in the message and the original exception is ``.cause``.
    """

    cause: BaseException | None
    remote_traceback: str

    def __init__(self, message: str = "", cause: BaseException | None = None, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.cause = cause
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> Any:
        return (_rebuild_task_error, (str(self), self.cause, self.remote_traceback))

    def __str__(self) -> str:
        return self.args[0] if self.args else ""

    def as_instanceof_cause(self) -> TaskError:
        """This error; it already is an instance of the cause's class (Ray's method of the same name)."""
        return self


class RayActorError(ActorloopError):
    """Raised when an actor could not finish a call: it died, or cannot be reached for now."""


class ActorDiedError(RayActorError):
    """Raised when the actor's process has ended, for calls in flight and later calls.

    The message says why: ``exit code N``, ``signal SIGNAME``, ``killed``, or
    the constructor's error with its traceback.
    """


class ActorUnavailableError(RayActorError):
    """Raised when an actor cannot be reached for now but may be later (Ray's name; kept for ``except``)."""


class GetTimeoutError(ActorloopError, TimeoutError):
    """Raised when ``get(..., timeout=...)`` runs out of time before the result is ready."""


class TaskCancelledError(ActorloopError):
    """Raised when a result is asked for after ``actorloop.cancel(ref)`` cancelled its call."""


class ObjectLostError(ActorloopError):
    """Raised when a ref's value is no longer available."""


class OwnerDiedError(ObjectLostError):
    """Raised when a ref's value is lost because the process that owned it exited."""


class SerializationError(ActorloopError, TypeError):
    """Raised when an argument (in the caller) or a result (as the call's error) cannot be pickled."""


class PendingCallsLimitExceeded(ActorloopError):
    """Raised by ``.remote()`` when this caller already has ``max_pending_calls`` calls unfinished."""


#: Ray's names for the same classes.
RayError = ActorloopError
RayTaskError = TaskError

_dual_classes: dict[type, type] = {}


def _task_error_class_for(cause_cls: type) -> type[TaskError]:
    """Return a class that is both a TaskError and ``cause_cls``, or TaskError if none can exist."""
    if issubclass(cause_cls, TaskError):
        return cause_cls
    cls = _dual_classes.get(cause_cls)
    if cls is None:
        try:
            cls = type(
                f"TaskError({cause_cls.__name__})",
                (TaskError, cause_cls),
                {
                    "__init__": TaskError.__init__,
                    "__str__": TaskError.__str__,
                    "__reduce__": TaskError.__reduce__,
                    "__module__": "actorloop.exceptions",
                },
            )
        except TypeError:
            cls = TaskError
        _dual_classes[cause_cls] = cls
    return cls


def _make_task_error(message: str, cause: BaseException | None, remote_traceback: str) -> TaskError:
    """Build the error raised in the caller for a method that raised ``cause``."""
    if isinstance(cause, TaskError):
        return cause
    cls = _task_error_class_for(type(cause)) if isinstance(cause, Exception) else TaskError
    try:
        error = cls.__new__(cls)
        TaskError.__init__(error, message, cause, remote_traceback)
    except Exception:
        error = TaskError(message, cause, remote_traceback)
    return error


def _rebuild_task_error(message: str, cause: BaseException | None, remote_traceback: str) -> TaskError:
    return _make_task_error(message, cause, remote_traceback)
