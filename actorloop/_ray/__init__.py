"""actorloop's Ray backend: the same program, run on a Ray cluster.

Chosen with ``actorloop.init(backend="ray", address=...)`` or
``ACTORLOOP_BACKEND=ray``; ``actorloop._backend`` imports this package only
then, so ``import actorloop`` never imports Ray.  It sits above every layer of
the local engine and uses only their public shapes: ``ActorClass`` (class,
options, metadata), ``RemoteFunction``, ``ObjectRef``/``ActorHandle`` (which
``RayRef``/``RayActorHandle`` subclass) and the error classes.

Where things are:
- ``_errors``: Ray's exceptions -> actorloop's.
- ``_refs``: ``RayRef``, ``RayObjectRefGenerator`` (streams), argument
  unwrapping, and ``wrap``, the one place a Ray ``.remote()`` result becomes ours.
- ``_actors``: actor classes, handles, methods, HTTP routes, ``kill``.
- this module: ``RayBackend``, the functions of the public API.

See docs/ray_backend.md for what differs from the local node.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
from typing import Any

import ray

from .._meta import STREAMING, ActorInfo
from .._ref import ObjectRef
from .._stream import DEFAULT_WINDOW, ObjectRefGenerator
from ._actors import RayActorHandle, _activate_in_worker, create_actor, kill
from ._errors import to_ours
from ._refs import RayObjectRefGenerator, RayRef, ray_waitable, unwrap_args, wrap

__all__ = ["RayBackend", "RayRef", "RayActorHandle", "RayObjectRefGenerator", "start"]

_GET_GENERATOR = (
    "actorloop.get() does not take an ObjectRefGenerator (as in Ray): iterate over it (`for ref in gen: "
    "actorloop.get(ref)`), or get(gen.completed()) to wait for its end"
)


def start(
    address: str | None = None,
    *,
    namespace: str | None = None,
    log_to_driver: bool = True,
    ignore_reinit_error: bool = False,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: int | None = None,
    **ray_options: Any,
) -> RayBackend:
    """Connect to Ray (``ray.init``) unless this process already did; returns the backend."""
    if ray.is_initialized():
        return RayBackend(owned=False)
    if not _is_a_terminal(sys.stdout):
        # Ray colours the "(Actor pid=N)" prefix of forwarded output even into files and pipes; the
        # local node writes it plain there, so a program's output is the same on both backends.
        # RAY_COLOR_PREFIX=1 (or any value the user set) keeps Ray's choice.
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    args: dict[str, Any] = dict(ray_options)
    args.update(
        address=address,
        namespace=namespace,
        log_to_driver=log_to_driver,
        ignore_reinit_error=ignore_reinit_error,
        runtime_env=runtime_env,
    )
    if num_cpus is not None:
        args["num_cpus"] = num_cpus
    ray.init(**args)
    return RayBackend(owned=True)


def _is_a_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


class RayBackend:
    """The public API's functions on Ray (the ``actorloop._backend.Backend`` protocol)."""

    name = "ray"

    def __init__(self, owned: bool) -> None:
        #: Whether this process called ray.init (and so ends Ray at shutdown); False inside Ray workers.
        self.owned = owned

    def shutdown(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()

    def context(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {"address": ctx.gcs_address, "namespace": ctx.namespace, "backend": "ray"}

    # -- creating actors and calling functions ---------------------------------------------

    def create_actor(
        self, actor_class: Any, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> RayActorHandle:
        return create_actor(actor_class, options, args, kwargs)

    def call_function(
        self, function: Any, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        remote = _ray_function_for(function, options)
        args, kwargs = unwrap_args(args, kwargs)
        try:
            out = remote.remote(*args, **kwargs)
        except Exception as exc:
            raise to_ours(exc) from None
        return wrap(out, f"remote function {function.__name__}")

    # -- refs ---------------------------------------------------------------------------

    def get(self, refs: Any, timeout: float | None) -> Any:
        single = isinstance(refs, ObjectRef)
        ref_list = [refs] if single else list(refs) if isinstance(refs, (list, tuple)) else None
        if ref_list is None or any(isinstance(r, ObjectRefGenerator) for r in ref_list):
            if isinstance(refs, ObjectRefGenerator) or ref_list is not None:
                raise TypeError(_GET_GENERATOR)
            raise TypeError(f"actorloop.get() takes an ObjectRef or a list of them, got {type(refs).__name__}")
        inner = [_ray_ref_of(r, "get") for r in ref_list]
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        try:
            values = ray.get(inner, timeout=timeout)
        except Exception as exc:
            raise to_ours(exc) from None
        return values[0] if single else values

    def wait(
        self, refs: list[Any], num_returns: int, timeout: float | None, fetch_local: bool
    ) -> tuple[list[Any], list[Any]]:
        """``ray.wait`` over refs and streams (a stream is ready when ``next`` would not block, as in Ray)."""
        inner = [ray_waitable(r, "wait") for r in refs]
        if not inner:
            return [], []
        if len(set(map(id, refs))) != len(refs):
            raise ValueError("actorloop.wait() got the same ObjectRef twice")
        if not 0 <= num_returns <= len(refs):
            raise ValueError(f"num_returns must be between 0 and len(refs)={len(refs)}, got {num_returns}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        try:
            ready, _ = ray.wait(inner, num_returns=num_returns, timeout=timeout, fetch_local=fetch_local)
        except Exception as exc:
            raise to_ours(exc) from None
        # Ray's refs compare by id; its generators by identity.
        ready_ids = {id(x) for x in ready if isinstance(x, ray.ObjectRefGenerator)}
        ready_refs = {x for x in ready if not isinstance(x, ray.ObjectRefGenerator)}

        def is_ready(x: Any) -> bool:
            return id(x) in ready_ids if isinstance(x, ray.ObjectRefGenerator) else x in ready_refs

        # In the order given, as on the local node.
        flags = [is_ready(x) for x in inner]
        ready_items = [r for r, f in zip(refs, flags, strict=True) if f]
        return ready_items, [r for r, f in zip(refs, flags, strict=True) if not f]

    def put(self, value: Any) -> RayRef[Any]:
        try:
            return RayRef(ray.put(value))
        except Exception as exc:
            raise to_ours(exc) from None

    def cancel(self, ref: Any, force: bool, recursive: bool) -> None:
        inner = ray_waitable(ref, "cancel")
        if isinstance(ref, RayObjectRefGenerator):
            ref._ended = True  # dropping it later cancels nothing more
        try:
            ray.cancel(inner, force=force, recursive=recursive)
        except ValueError:
            raise
        except Exception as exc:
            raise to_ours(exc) from None

    # -- actors -------------------------------------------------------------------------

    def kill(self, handle: Any, no_restart: bool) -> None:
        if not isinstance(handle, RayActorHandle):
            raise TypeError(f"actorloop.kill() takes an ActorHandle of the Ray backend, got {handle!r}")
        kill(handle, no_restart)

    def get_actor(self, name: str, namespace: str | None) -> RayActorHandle:
        try:
            ray_handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            ns = namespace if namespace is not None else ray.get_runtime_context().namespace
            raise ValueError(f"no live actor named {name!r} in namespace {ns!r} (Ray backend)") from None
        return RayActorHandle(ray_handle, None)

    def list_actors(self) -> list[ActorInfo]:
        try:
            from ray.util.state import list_actors
        except ImportError as exc:
            raise RuntimeError(
                f"actorloop.list_actors() on the Ray backend needs Ray's state API: pip install 'ray[default]' ({exc})"
            ) from None
        infos = []
        for a in list_actors(detail=True, limit=10_000, raise_on_missing_output=False):
            state = {"PENDING_CREATION": "STARTING", "DEPENDENCIES_UNREADY": "STARTING"}.get(a.state, a.state)
            infos.append(
                ActorInfo(
                    actor_id=a.actor_id,
                    class_name=a.class_name,
                    name=a.name or None,
                    namespace=a.ray_namespace,
                    state=str(state),
                    pid=a.pid,
                    detached=bool(a.is_detached),
                    restarts=int(a.num_restarts or 0),
                    death_cause=str(a.death_cause) if a.death_cause else None,
                )
            )
        return infos

    def list_named_actors(self, all_namespaces: bool) -> list[Any]:
        return list(ray.util.list_named_actors(all_namespaces=all_namespaces))

    def cluster_resources(self) -> dict[str, float]:
        return dict(ray.cluster_resources())

    def available_resources(self) -> dict[str, float]:
        return dict(ray.available_resources())

    def nodes(self) -> list[dict[str, Any]]:
        return list(ray.nodes())

    def exit_actor(self) -> Any:
        ray.actor.exit_actor()

    def runtime_context(self) -> Any:
        return RayRuntimeContext(ray.get_runtime_context())


class RayRuntimeContext:
    """``actorloop.get_runtime_context()`` on Ray: Ray's context, with ``current_actor`` as an actorloop handle."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def current_actor(self) -> RayActorHandle:
        return RayActorHandle(self._inner.current_actor, None)

    @property
    def namespace(self) -> str:
        return self._inner.namespace  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _ray_ref_of(ref: Any, what: str) -> Any:
    if isinstance(ref, RayRef):
        return ref.ray_ref
    if isinstance(ref, ObjectRef):
        raise TypeError(f"actorloop.{what}(): this ObjectRef comes from actorloop's local node, not from Ray")
    raise TypeError(f"actorloop.{what}() takes ObjectRefs, got {type(ref).__name__}")


def _async_generator_task(fn: Any) -> Any:
    """A sync generator running the async generator function ``fn`` on a loop of its own (Ray refuses async tasks)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        _activate_in_worker()
        loop = asyncio.new_event_loop()
        agen = fn(*args, **kwargs)
        try:
            while True:
                try:
                    item = loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            # Closed early (cancelled, dropped): the async generator's finally runs too.
            try:
                loop.run_until_complete(agen.aclose())
            finally:
                loop.close()

    return run


def _ray_function_for(function: Any, options: dict[str, Any]) -> Any:
    """The Ray remote function for an actorloop one with these options (made once per function and options)."""
    shared = function._shared
    key = repr(sorted(options.items(), key=lambda kv: kv[0]))
    cache = shared.setdefault("ray", {})
    remote = cache.get(key)
    if remote is None:
        fn = function._function
        run: Any
        if inspect.isasyncgenfunction(fn):
            run = _async_generator_task(fn)
        elif inspect.isgeneratorfunction(fn):
            # Items go through a loop of our own: Ray sends values into the generator, which
            # `yield from` a plain iterator would pass on (and fail on).
            def run(*args: Any, **kwargs: Any) -> Any:
                _activate_in_worker()
                for item in fn(*args, **kwargs):  # noqa: UP028 (see above)
                    yield item
        elif inspect.iscoroutinefunction(fn):
            # Ray refuses `async def` tasks: each call runs the coroutine on a loop of its own.
            def run(*args: Any, **kwargs: Any) -> Any:
                _activate_in_worker()
                return asyncio.run(fn(*args, **kwargs))
        else:

            def run(*args: Any, **kwargs: Any) -> Any:
                _activate_in_worker()
                return fn(*args, **kwargs)

        functools.update_wrapper(run, fn)
        ray_options = {k: v for k, v in options.items() if v is not None}
        if ray_options.get("num_returns") == STREAMING:
            # The local node's default window, so that memory stays bounded the same way (Ray's is none).
            ray_options.setdefault("_generator_backpressure_num_objects", DEFAULT_WINDOW)
        remote = cache[key] = ray.remote(**ray_options)(run) if ray_options else ray.remote(run)
    return remote
