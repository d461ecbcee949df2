"""Errors raised by actorloop.

Every error derives from :class:`ActorloopError`; each is also exported at
the top level (``actorloop.TaskError``)::

    ActorloopError
    ├── TaskError                   a method raised; also an instance of the
    │                               original exception's class
    ├── ActorDiedError              the actor's process ended (crash, kill,
    │                               failed constructor, exit_actor)
    ├── GetTimeoutError             (also TimeoutError) get()/wait timed out
    ├── TaskCancelledError          the call was cancelled with cancel()
    ├── SerializationError          (also TypeError) an argument or result
    │                               could not be pickled
    └── PendingCallsLimitExceeded   more calls than max_pending_calls

They are grouped by what the caller can do: ``TaskError`` means the method's
own code failed (inspect ``.cause``); ``ActorDiedError`` means the actor is
gone (restart it or give up); the rest are about the call itself.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorloopError",
    "TaskError",
    "ActorDiedError",
    "GetTimeoutError",
    "TaskCancelledError",
    "SerializationError",
    "PendingCallsLimitExceeded",
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


class ActorDiedError(ActorloopError):
    """Raised when the actor's process has ended, for calls in flight and later calls.

    The message says why: ``exit code N``, ``signal SIGNAME``, ``killed``, or
    the constructor's error with its traceback.
    """


class GetTimeoutError(ActorloopError, TimeoutError):
    """Raised when ``get(..., timeout=...)`` runs out of time before the result is ready."""


class TaskCancelledError(ActorloopError):
    """Raised when a result is asked for after ``actorloop.cancel(ref)`` cancelled its call."""


class SerializationError(ActorloopError, TypeError):
    """Raised when an argument (in the caller) or a result (as the call's error) cannot be pickled."""


class PendingCallsLimitExceeded(ActorloopError):
    """Raised by ``.remote()`` when this caller already has ``max_pending_calls`` calls unfinished."""


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
