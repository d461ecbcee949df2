"""The public surface: exactly the names SPEC.md promises, each documented."""

from __future__ import annotations

import actorloop
import actorloop.exceptions
import actorloop.util

SPEC_NAMES = {
    "init",
    "shutdown",
    "is_initialized",
    "remote",
    "method",
    "get",
    "wait",
    "cancel",
    "kill",
    "get_actor",
    "list_actors",
    "exit_actor",
    "put",
    "RemoteFunction",
    "ActorHandle",
    "ObjectRef",
    "ActorInfo",
    "ActorPool",
    "ActorloopError",
    "TaskError",
    "ActorDiedError",
    "GetTimeoutError",
    "TaskCancelledError",
    "SerializationError",
    "PendingCallsLimitExceeded",
    "http",
    "exceptions",
    "util",
}


def test_all_lists_the_public_names() -> None:
    assert SPEC_NAMES <= set(actorloop.__all__)
    for name in actorloop.__all__:
        assert hasattr(actorloop, name), name


def test_public_names_have_docstrings() -> None:
    for name in actorloop.__all__:
        assert getattr(actorloop, name).__doc__, name


def test_util_and_http_surfaces() -> None:
    assert actorloop.util.ActorPool is actorloop.ActorPool
    for name in ("get", "post", "route"):
        assert callable(getattr(actorloop.http, name))


def test_public_classes_show_the_public_module() -> None:
    for name in ("ActorHandle", "ObjectRef", "ActorInfo"):
        assert getattr(actorloop, name).__module__ == "actorloop"


def test_py_typed_is_shipped() -> None:
    import pathlib

    assert (pathlib.Path(actorloop.__file__).parent / "py.typed").exists()
