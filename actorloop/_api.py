"""The module-level functions of actorloop: init, get, wait, kill, cancel, ...

The top layer: each function checks its arguments here, where the caller
gave them, and then asks the runtime (``_runtime``) or the refs (``_ref``).
"""

from __future__ import annotations

import os
import socket
import threading
from asyncio import events
from typing import Any, Sequence, TypeVar, overload

import cloudpickle

from . import _pickle, _runtime, _tasks
from ._entry import entry_for
from ._handles import ActorHandle
from ._meta import ActorInfo, env_vars_of
from ._ref import ObjectRef, wait_sync
from ._runtime import get_runtime, require_runtime
from ._stream import ObjectRefGenerator
from .exceptions import GetTimeoutError, SerializationError
from .runtime_context import get_runtime_context

T = TypeVar("T")


class InitContext(dict):  # type: ignore[type-arg]
    """What ``init()`` returns: the node's ``address`` and this process's ``namespace``, as a dict.

    It is also a context manager that shuts actorloop down at the end, as
    Ray's is::

        with actorloop.init():
            ...                      # actorloop.shutdown() runs on leaving the block
    """

    def __enter__(self) -> InitContext:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()

    @property
    def address_info(self) -> dict[str, Any]:
        """The same keys, as Ray's ``RayContext.address_info``."""
        return dict(self)


def init(
    address: str | None = None,
    *,
    namespace: str | None = None,
    log_to_driver: bool = True,
    ignore_reinit_error: bool = False,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: int | None = None,
    **ray_options: Any,
) -> InitContext:
    """Connect this process to a node, starting an embedded one if needed.

    ``address=None`` uses ``$ACTORLOOP_ADDRESS``, else the node that
    ``actorloop start`` runs, else starts an embedded node that ends with
    this process.  ``"auto"`` requires the started node; ``"local"`` always
    starts a new embedded node; any other string is a node's directory.

    ``runtime_env={"env_vars": {...}}`` sets environment variables in every
    actor this process creates (``.options(runtime_env=...)`` adds to them
    per actor).  ``num_cpus`` is what ``cluster_resources()`` reports and
    sizes the remote-function pool.  Ray's other options that mean nothing
    on one machine are accepted (see ``IGNORED_INIT_OPTIONS``); unknown ones
    raise ``TypeError``.

    Example::

        with actorloop.init(namespace="jobs"):
            ...
    """
    with _runtime.runtime_lock():
        if get_runtime() is not None:
            if ignore_reinit_error:
                return _context()
            raise RuntimeError(
                "actorloop.init() was already called in this process; call actorloop.shutdown() first or pass "
                "ignore_reinit_error=True"
            )
        for key in ray_options:
            if key not in IGNORED_INIT_OPTIONS:
                raise TypeError(f"actorloop.init() got an unknown option {key!r}")
        if namespace is not None:
            if not isinstance(namespace, str):
                raise TypeError(f"namespace must be None or a string, got {type(namespace).__name__}")
            if not namespace:
                raise ValueError('"" is not a valid namespace; pass None to get an anonymous one')
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a string (a node directory, 'auto' or 'local'), got {address!r}")
        env_vars = env_vars_of(runtime_env, "actorloop.init(runtime_env=...)")
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 0):
            raise ValueError(f"num_cpus must be a non-negative int, got {num_cpus!r}")
        _tasks.configure(num_cpus)
        rt = _runtime.start(address, namespace=namespace, log_to_driver=log_to_driver)
        rt.env_vars = env_vars
        rt.num_cpus = num_cpus
        return _context()


#: Ray's init() options that mean nothing on one machine: accepted, no effect.
IGNORED_INIT_OPTIONS = frozenset(
    {
        "num_gpus",
        "resources",
        "object_store_memory",
        "include_dashboard",
        "dashboard_host",
        "logging_level",
        "logging_format",
        "configure_logging",
        "local_mode",
        "job_config",
        "labels",
        "storage",
        "_temp_dir",
        "_system_config",
        "_node_ip_address",
        "_memory",
        "_redis_password",
        "_plasma_directory",
        "log_to_driver_level",
    }
)


def _context() -> InitContext:
    rt = get_runtime()
    assert rt is not None
    return InitContext(address=rt.node_dir, namespace=rt.namespace)


def shutdown() -> None:
    """Disconnect from the node; actors this process created (unless detached) end.

    An embedded node ends too.  Safe to call twice.
    """
    _runtime.stop()


def is_initialized() -> bool:
    """Whether ``init()`` was called (or implied) in this process and not shut down."""
    return get_runtime() is not None


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
        if isinstance(refs, ObjectRefGenerator):
            raise TypeError(_GET_GENERATOR)
        raise TypeError(f"actorloop.get() takes an ObjectRef or a list of them, got {type(refs).__name__}")
    for ref in ref_list:
        if not isinstance(ref, ObjectRef):
            if isinstance(ref, ObjectRefGenerator):
                raise TypeError(_GET_GENERATOR)
            raise TypeError(f"actorloop.get() takes ObjectRefs, got {type(ref).__name__} in the list")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    lending = _tasks.blocked_in_get(ref_list)  # a task lends its worker slot while it waits
    if lending is None:
        done = wait_sync(ref_list, len(ref_list), timeout)
    else:
        with lending:
            done = wait_sync(ref_list, len(ref_list), timeout)
    if done < len(ref_list):
        raise GetTimeoutError(
            f"get() timed out after {timeout} s with {len(ref_list) - done} of {len(ref_list)} not ready"
        )
    values = [ref._result_now() for ref in ref_list]
    return values[0] if single else values


_GET_GENERATOR = (
    "actorloop.get() does not take an ObjectRefGenerator (as in Ray): iterate over it (`for ref in gen: "
    "actorloop.get(ref)`), or get(gen.completed()) to wait for its end"
)


def wait(
    refs: Sequence[Any], *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True
) -> tuple[list[Any], list[Any]]:
    """Wait until ``num_returns`` refs are ready; return ``(ready, not_ready)`` in the order given.

    An ``ObjectRefGenerator`` in the list is ready when ``next(gen)`` would
    not block (an item, its error or its end arrived), as in Ray.

    Example::

        ready, not_ready = actorloop.wait(refs, num_returns=2, timeout=1.0)
    """
    _check_not_in_loop("wait")
    given = list(refs)
    if any(isinstance(ref, ObjectRefGenerator) for ref in given):
        return _wait_with_generators(given, num_returns, timeout)
    ref_list = given
    for ref in ref_list:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"actorloop.wait() takes a list of ObjectRefs, got {type(ref).__name__}")
    if len(set(map(id, ref_list))) != len(ref_list):
        raise ValueError("actorloop.wait() got the same ObjectRef twice")
    if not 0 <= num_returns <= len(ref_list) and ref_list:
        raise ValueError(f"num_returns must be between 0 and len(refs)={len(ref_list)}, got {num_returns}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    lending = _tasks.blocked_in_get(ref_list)
    if lending is None:
        wait_sync(ref_list, num_returns, timeout)
    else:
        with lending:
            wait_sync(ref_list, num_returns, timeout)
    ready: list[ObjectRef[Any]] = []
    not_ready: list[ObjectRef[Any]] = []
    for ref in ref_list:
        (ready if ref.done() and len(ready) < num_returns else not_ready).append(ref)
    return ready, not_ready


def _wait_with_generators(
    given: list[Any], num_returns: int, timeout: float | None
) -> tuple[list[Any], list[Any]]:
    """``wait`` over refs and generators: each generator is stood for by a ref ready when it is."""
    stand_ins: list[ObjectRef[Any]] = []
    for item in given:
        if isinstance(item, ObjectRefGenerator):
            loop = item._state.loop
            if item.next_ready() or loop.is_closed():
                probe: ObjectRef[None] = ObjectRef(loop, None, 0, None)
                probe.set_result(None)
            else:
                probe = entry_for(loop).run(_probe(item)).result()
            stand_ins.append(probe)
        elif isinstance(item, ObjectRef):
            stand_ins.append(item)
        else:
            raise TypeError(
                f"actorloop.wait() takes a list of ObjectRefs and ObjectRefGenerators, got {type(item).__name__}"
            )
    ready_refs, _ = wait(stand_ins, num_returns=num_returns, timeout=timeout)
    chosen = {id(r) for r in ready_refs}
    ready = [item for item, probe in zip(given, stand_ins, strict=True) if id(probe) in chosen]
    not_ready = [item for item, probe in zip(given, stand_ins, strict=True) if id(probe) not in chosen]
    return ready, not_ready


async def _probe(gen: ObjectRefGenerator[Any]) -> ObjectRef[None]:
    return gen._ready_ref()


def cancel(ref: ObjectRef[Any] | ObjectRefGenerator[Any], *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the call behind ``ref``: a running coroutine gets CancelledError, a queued call never starts.

    Afterwards ``await ref`` and ``get(ref)`` raise ``TaskCancelledError``.
    ``ref`` may be an ``ObjectRefGenerator``: its generator stops in the actor
    (its ``finally`` runs), and ``next(gen)`` gives the items already received,
    then a ref that raises ``TaskCancelledError``.
    A sync method already running finishes; its result is dropped.
    ``force=True`` raises ``ValueError``, as Ray does for actor calls; for a
    remote function's call it also ends the worker process that has it.
    """
    if isinstance(ref, ObjectRefGenerator):
        if force:
            raise ValueError(
                "actorloop.cancel(force=True) is not supported for streams; cancel without force (the generator "
                "stops in the actor), or end the actor with actorloop.kill(handle)"
            )
        _cancel_on_loop(ref._state.loop, ref._cancel_by_user)
        return
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"actorloop.cancel() takes an ObjectRef or an ObjectRefGenerator, got {type(ref).__name__}")
    force_kill = _tasks.force_cancel_target(ref) if force else None
    if force and force_kill is None:
        # Ray refuses it for actor calls too: killing the process would lose the actor's state.
        raise ValueError(
            "actorloop.cancel(force=True) is not supported for actor method calls (an actor's state would be "
            "lost); cancel without force, or end the actor with actorloop.kill(handle)"
        )
    _cancel_on_loop(ref.get_loop(), ref._cancel_by_user)
    if force_kill is not None:
        force_kill()


def _cancel_on_loop(owner: Any, cancel_by_user: Any) -> None:
    """Run ``cancel_by_user`` on ``owner`` (the loop of the ref); from sync code, wait until it ran."""
    if events._get_running_loop() is owner:
        cancel_by_user()
    elif not owner.is_closed():
        done = threading.Event()

        def run() -> None:
            try:
                cancel_by_user()
            finally:
                done.set()

        entry_for(owner).put(run)
        if events._get_running_loop() is None:
            done.wait(5)


def kill(actor: ActorHandle[Any], *, no_restart: bool = True) -> None:
    """End the actor's process; returns once it has ended.

    Later calls raise ``ActorDiedError``; with ``no_restart=False`` the actor
    restarts if its ``max_restarts`` allows, and calls wait for it.
    """
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"actorloop.kill() takes an ActorHandle, got {type(actor).__name__}")
    require_runtime().node_request("kill", actor._actor_id, bool(no_restart))


def get_actor(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """Return a handle to the actor named ``name`` in ``namespace`` (default: this process's).

    Raises ``ValueError`` naming the name and namespace if there is none.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be None or a string, got {type(namespace).__name__}")
    rt = require_runtime()
    ns = namespace if namespace is not None else rt.namespace
    try:
        actor_id, meta, http_url, caller_options = rt.node_request("get_actor", name, ns)
    except ValueError:
        raise ValueError(_missing_actor_message(name, ns, rt.namespace, namespace is None)) from None
    return ActorHandle(actor_id, meta, http_url, rt.state_for(actor_id, meta, caller_options, created_here=False))


def _missing_actor_message(name: str, namespace: str, own_namespace: str, defaulted: bool) -> str:
    lines = [f"no live actor named {name!r} in namespace {namespace!r}. Likely causes:"]
    if defaulted and own_namespace.startswith("anonymous-"):
        lines.append(
            "- this process runs in an anonymous namespace of its own, so it only sees names it created: pass "
            "namespace=... here, or actorloop.init(namespace=...) in both programs"
        )
    elsewhere = sorted({a.namespace or "" for a in list_actors() if a.name == name and a.state != "DEAD"})
    if elsewhere:
        lines.append(f"- an actor of that name lives in namespace(s) {', '.join(map(repr, elsewhere))}")
    lines.append("- it was not created yet (names are registered when .remote() returns)")
    lines.append(
        "- it ended: killed, crashed past max_restarts, or it was not detached and its creator exited "
        "(use lifetime='detached' to outlive the creator)"
    )
    return "\n".join(lines)


def list_actors() -> list[ActorInfo]:
    """Every actor of every namespace on the node, as ``ActorInfo`` records.

    The task pool's workers (namespace ``_actorloop_tasks``) are left out, as
    Ray lists no task workers; ``actorloop list`` shows them.
    """
    return [a for a in require_runtime().node_request("list") if a.namespace != _tasks.TASKS_NAMESPACE]


def cluster_resources() -> dict[str, float]:
    """This machine's resources, named as Ray names them: CPU, memory, object store, the node.

    ``CPU`` is ``init(num_cpus=...)`` if given, else the number of CPUs;
    ``memory`` is the physical memory and ``object_store_memory`` the size of
    ``/dev/shm`` (where large arguments travel), in bytes.
    """
    rt = require_runtime()
    cpus = rt.num_cpus if rt.num_cpus is not None else (os.cpu_count() or 1)
    resources: dict[str, float] = {"CPU": float(cpus)}
    try:
        resources["memory"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        pass
    try:
        shm = os.statvfs("/dev/shm")
        resources["object_store_memory"] = float(shm.f_frsize * shm.f_blocks)
    except OSError:
        pass
    resources["node:127.0.0.1"] = 1.0
    resources["node:__internal_head__"] = 1.0
    return resources


def available_resources() -> dict[str, float]:
    """The resources not in use: the same as ``cluster_resources()``.

    One machine reserves nothing for actors or tasks (``num_cpus`` and the
    like are accepted and have no effect), so nothing is ever subtracted;
    ``memory`` is what the system reports as available now.
    """
    resources = cluster_resources()
    try:
        resources["memory"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError):
        pass
    return resources


def nodes() -> list[dict[str, Any]]:
    """The one node of this machine, described with the keys of Ray's ``ray.nodes()``."""
    rt = require_runtime()
    node_id = get_runtime_context().get_node_id()
    return [
        {
            "NodeID": node_id,
            "Alive": True,
            "alive": True,
            "NodeManagerAddress": "127.0.0.1",
            "NodeManagerHostname": socket.gethostname(),
            "NodeName": "127.0.0.1",
            "RayletSocketName": os.path.join(rt.node_dir, "node.sock"),
            "Resources": cluster_resources(),
            "Labels": {},
        }
    ]


def put(value: T) -> ObjectRef[T]:
    """Store a copy of ``value`` and return a ref that resolves to it, as Ray's ``put`` does.

    The ref is already done: ``get``/``await`` return the copy, and passed as
    a top-level argument of a ``.remote()`` call (actor method or remote
    function) it is replaced by the value.  The value is copied now, so later
    changes to ``value`` are not seen through the ref.

    Example::

        ref = actorloop.put(big_array)
        results = actorloop.get([process.remote(ref, i) for i in range(10)])
    """
    if isinstance(value, ObjectRef):
        raise TypeError("actorloop.put() takes a value, not an ObjectRef (the ref already stands for its value)")
    rt = require_runtime()
    loop = events._get_running_loop()
    if loop is None or loop.is_closed():
        loop = rt.home_loop
    buffers: list[Any] = []
    try:
        data = _pickle.dumps(value, buffer_callback=buffers.append)
        snapshot = cloudpickle.loads(data, buffers=[bytearray(b.raw()) for b in buffers])
    except Exception as exc:
        raise SerializationError(f"actorloop.put(): could not pickle {type(value).__name__}: {exc}") from exc
    ref: ObjectRef[T] = ObjectRef(loop, None, 0, None)
    # A fresh future has no callbacks yet, so settling it from this thread schedules nothing on its loop.
    ref.set_result(snapshot)
    return ref
