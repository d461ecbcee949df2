"""Each of Ray's exceptions maps to actorloop's class of the same meaning (no Ray instance needed)."""

from __future__ import annotations

import pytest

from actorloop import exceptions as ours

rex = pytest.importorskip("ray.exceptions")
from actorloop._ray._errors import to_ours  # noqa: E402  (needs Ray)


@pytest.mark.parametrize(
    ("ray_error", "our_class"),
    [
        (lambda: rex.GetTimeoutError("late"), ours.GetTimeoutError),
        (lambda: rex.TaskCancelledError(), ours.TaskCancelledError),
        (lambda: rex.ActorDiedError(), ours.ActorDiedError),
        (lambda: rex.ActorUnavailableError("restarting", None), ours.ActorUnavailableError),
        (lambda: rex.RayActorError(), ours.ActorDiedError),
        (lambda: rex.OwnerDiedError("ab" * 28, "", ""), ours.OwnerDiedError),
        (lambda: rex.ObjectLostError("ab" * 28, "", ""), ours.ObjectLostError),
        (lambda: rex.PendingCallsLimitExceeded("too many"), ours.PendingCallsLimitExceeded),
        (lambda: rex.RaySystemError("system"), ours.ActorloopError),
        (lambda: TypeError("Could not serialize the argument x"), ours.SerializationError),
    ],
)
def test_ray_errors_map_to_ours(ray_error, our_class) -> None:  # type: ignore[no-untyped-def]
    mapped = to_ours(ray_error())
    assert type(mapped) is our_class or isinstance(mapped, our_class)
    assert isinstance(mapped, ours.ActorloopError)


def test_a_task_error_is_also_the_cause_class() -> None:
    cause = KeyError("k")
    ray_error = rex.RayTaskError("f", "Traceback ...\nKeyError: 'k'", cause)
    mapped = to_ours(ray_error)
    assert isinstance(mapped, ours.TaskError) and isinstance(mapped, KeyError)
    assert mapped.cause is cause
    assert "KeyError" in str(mapped)


def test_other_errors_pass_through() -> None:
    error = ValueError("plain")
    assert to_ours(error) is error


def test_a_cancelled_stream_is_a_plain_task_cancelled_error() -> None:
    # Ray wraps the cancellation of a streaming call in a task error; actorloop's is plain.
    ray_error = rex.RayTaskError("gen", "Traceback ...\nTaskCancelledError", rex.TaskCancelledError())
    mapped = to_ours(ray_error)
    assert type(mapped) is ours.TaskCancelledError
