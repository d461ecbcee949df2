"""The module-level functions of actorloop: init, get, wait, kill, cancel, ..."""

from __future__ import annotations

import os
import uuid
from asyncio import events
from typing import Any, Sequence, TypeVar, overload

from . import _client
from ._actor import ActorHandle, ActorInfo
from ._client import Runtime, get_runtime, set_runtime
from ._fds import raise_fd_limit
from ._node import EmbeddedNode, default_daemon_dir, node_running
from ._ref import ObjectRef, wait_sync
from .exceptions import GetTimeoutError

T = TypeVar("T")


def init(
    address: str | None = None,
    *,
    namespace: str | None = None,
    log_to_driver: bool = True,
    ignore_reinit_error: bool = False,
    **ray_options: Any,
) -> dict[str, Any]:
    """Connect this process to a node, starting an embedded one if needed.

    ``address=None`` uses ``$ACTORLOOP_ADDRESS``, else the node that
    ``actorloop start`` runs, else starts an embedded node that ends with
    this process.  ``"auto"`` requires the started node; ``"local"`` always
    starts a new embedded node; any other string is a node's directory.

    Example::

        actorloop.init(namespace="jobs")
    """
    with _client._runtime_lock:
        if get_runtime() is not None:
            if ignore_reinit_error:
                return _context()
            raise RuntimeError(
                "actorloop.init() was already called in this process; call actorloop.shutdown() first or pass "
                "ignore_reinit_error=True"
            )
        for key in ray_options:
            if key not in _IGNORED_INIT_OPTIONS:
                raise TypeError(f"actorloop.init() got an unknown option {key!r}")
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
        # Each actor this driver calls holds a socket here: the usual soft limit of 1,024 is too few.
        raise_fd_limit()
        embedded: EmbeddedNode | None = None
        if address is None:
            address = os.environ.get("ACTORLOOP_ADDRESS") or None
            if address is None:
                daemon = default_daemon_dir()
                address = daemon if node_running(daemon) else "local"
        elif address == "auto":
            daemon = default_daemon_dir()
            if not node_running(daemon):
                raise ConnectionError(
                    f"no actorloop node is running at {daemon}; start one with `actorloop start` "
                    "(or call init() without an address to use an embedded node)"
                )
            address = daemon
        if address == "local":
            embedded = EmbeddedNode()
            node_dir = embedded.dir
        else:
            node_dir = os.path.abspath(address)
            if not node_running(node_dir):
                raise ConnectionError(f"no actorloop node answers at {node_dir}")
        try:
            rt = Runtime(
                node_dir,
                namespace or f"anonymous-{uuid.uuid4().hex[:12]}",
                log_to_driver,
                embedded_node=embedded,
            )
            rt.connect_node_sync(("hello", rt.client_id, "driver", os.getpid(), log_to_driver, rt.namespace))
        except BaseException:
            if embedded is not None:
                embedded.proc.kill()
                embedded.stop()
            raise
        if embedded is not None:
            # Processes this driver starts join its embedded node.
            os.environ["ACTORLOOP_ADDRESS"] = node_dir
        set_runtime(rt)
        return _context()


_IGNORED_INIT_OPTIONS = frozenset(
    {"num_cpus", "num_gpus", "resources", "object_store_memory", "include_dashboard", "logging_level", "runtime_env"}
)


def _context() -> dict[str, Any]:
    rt = get_runtime()
    assert rt is not None
    return {"address": rt.node_dir, "namespace": rt.namespace}


def shutdown() -> None:
    """Disconnect from the node; actors this process created (unless detached) end.

    An embedded node ends too.  Safe to call twice.
    """
    with _client._runtime_lock:
        rt = get_runtime()
        if rt is None or rt.role != "driver":
            return
        set_runtime(None)
        if rt.embedded_node is not None and os.environ.get("ACTORLOOP_ADDRESS") == rt.node_dir:
            del os.environ["ACTORLOOP_ADDRESS"]
        rt.shutdown()


def is_initialized() -> bool:
    """Whether ``init()`` was called (or implied) in this process and not shut down."""
    return get_runtime() is not None


def _runtime() -> Runtime:
    return _client.get_or_init_runtime()


def _check_not_in_loop(what: str) -> None:
    if events._get_running_loop() is not None:
        raise RuntimeError(
            f"actorloop.{what}() would block the running event loop (and deadlock it); use `await ref` "
            f"(or `await asyncio.gather(*refs)`) in async code instead"
        )


@overload
def get(refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...


@overload
def get(refs: Sequence[ObjectRef[Any]], *, timeout: float | None = None) -> list[Any]: ...


def get(refs: Any, *, timeout: float | None = None) -> Any:
    """Block until the ref(s) resolve and return their value(s), for sync code.

    Raises ``GetTimeoutError`` after ``timeout`` seconds, the call's error
    (``TaskError``, ``ActorDiedError``, ...) if it failed, and
    ``RuntimeError`` on a thread that is running an event loop.

    Example::

        values = actorloop.get([c.increment.remote() for _ in range(3)])
    """
    _check_not_in_loop("get")
    single = isinstance(refs, ObjectRef)
    ref_list = [refs] if single else list(refs) if isinstance(refs, (list, tuple)) else None
    if ref_list is None:
        raise TypeError(f"actorloop.get() takes an ObjectRef or a list of them, got {type(refs).__name__}")
    for ref in ref_list:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"actorloop.get() takes ObjectRefs, got {type(ref).__name__} in the list")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    done = wait_sync(ref_list, len(ref_list), timeout)
    if done < len(ref_list):
        raise GetTimeoutError(
            f"get() timed out after {timeout} s with {len(ref_list) - done} of {len(ref_list)} not ready"
        )
    values = [ref._result_now() for ref in ref_list]
    return values[0] if single else values


def wait(
    refs: Sequence[ObjectRef[Any]], *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True
) -> tuple[list[ObjectRef[Any]], list[ObjectRef[Any]]]:
    """Wait until ``num_returns`` refs are ready; return ``(ready, not_ready)`` in the order given.

    Example::

        ready, not_ready = actorloop.wait(refs, num_returns=2, timeout=1.0)
    """
    _check_not_in_loop("wait")
    ref_list = list(refs)
    for ref in ref_list:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"actorloop.wait() takes a list of ObjectRefs, got {type(ref).__name__}")
    if len(set(map(id, ref_list))) != len(ref_list):
        raise ValueError("actorloop.wait() got the same ObjectRef twice")
    if not 0 <= num_returns <= len(ref_list) and ref_list:
        raise ValueError(f"num_returns must be between 0 and len(refs)={len(ref_list)}, got {num_returns}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    wait_sync(ref_list, num_returns, timeout)
    ready: list[ObjectRef[Any]] = []
    not_ready: list[ObjectRef[Any]] = []
    for ref in ref_list:
        (ready if ref.done() and len(ready) < num_returns else not_ready).append(ref)
    return ready, not_ready


def cancel(ref: ObjectRef[Any], *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the call behind ``ref``: a running coroutine gets CancelledError, a queued call never starts.

    Afterwards ``await ref`` and ``get(ref)`` raise ``TaskCancelledError``.
    A sync method already running finishes; its result is dropped.
    """
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"actorloop.cancel() takes an ObjectRef, got {type(ref).__name__}")
    owner = ref.get_loop()
    if events._get_running_loop() is owner:
        ref._cancel_by_user()
    elif not owner.is_closed():
        done = _client.threading.Event()

        def run() -> None:
            try:
                ref._cancel_by_user()
            finally:
                done.set()

        owner.call_soon_threadsafe(run)
        if events._get_running_loop() is None:
            done.wait(5)


def kill(actor: ActorHandle[Any], *, no_restart: bool = True) -> None:
    """End the actor's process; returns once it has ended.

    Later calls raise ``ActorDiedError``; with ``no_restart=False`` the actor
    restarts if its ``max_restarts`` allows, and calls wait for it.
    """
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"actorloop.kill() takes an ActorHandle, got {type(actor).__name__}")
    _runtime().node_request("kill", actor._actor_id, bool(no_restart))


def get_actor(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """Return a handle to the actor named ``name`` in ``namespace`` (default: this process's).

    Raises ``ValueError`` naming the name and namespace if there is none.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}")
    rt = _runtime()
    ns = namespace if namespace is not None else rt.namespace
    actor_id, meta, http_url, caller_options = rt.node_request("get_actor", name, ns)
    return rt.handle_for(actor_id, meta, http_url, caller_options, created_here=False)


def list_actors() -> list[ActorInfo]:
    """Every actor of every namespace on the node, as ``ActorInfo`` records."""
    return list(_runtime().node_request("list"))
