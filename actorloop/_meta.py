"""What the node, the actor process and callers know of an actor class, without the class itself.

The bottom of the actor layers: option names and their checks, per-class
metadata (methods, groups, routes), and ``ActorInfo``.  It imports nothing
of actorloop but the route collector, so the node and the worker use it
without pulling in handles or the runtime.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from ._routes import collect_routes

#: Ray's built-in actor methods.
READY_METHOD = "__ray_ready__"
CALL_METHOD = "__ray_call__"
TERMINATE_METHOD = "__ray_terminate__"
BUILTIN_METHODS = frozenset({READY_METHOD, CALL_METHOD, TERMINATE_METHOD})
#: ``READY_METHOD`` called with this one argument answers the process's epoch (a caller that lost its
#: connection asks it, to learn whether it reached the same process again: see ``_connection``).
EPOCH_PROBE = "__actorloop_epoch__"
DEFAULT_GROUP = "_default"

#: Options an actor class accepts, and their defaults.
ACTOR_OPTIONS: dict[str, Any] = {
    "name": None,
    "namespace": None,
    "lifetime": None,
    "get_if_exists": False,
    "max_concurrency": None,
    "concurrency_groups": None,
    "max_restarts": 0,
    "max_task_retries": 0,
    "max_pending_calls": -1,
    "http_port": 0,
    "http_host": "127.0.0.1",
    "runtime_env": None,
}
#: Ray's placement and resource options, for actors and tasks alike: on one machine they mean nothing.
NO_EFFECT_ON_ONE_NODE = frozenset(
    {
        "num_gpus",
        "resources",
        "memory",
        "object_store_memory",
        "accelerator_type",
        "scheduling_strategy",
        "placement_group",
        "placement_group_bundle_index",
        "placement_group_capture_child_tasks",
        "enable_task_events",
        "label_selector",
        "fallback_strategy",
        "_metadata",
    }
)
#: Ray's actor options that mean nothing on one machine: accepted, no effect.
IGNORED_OPTIONS = NO_EFFECT_ON_ONE_NODE | {"num_cpus", "allow_out_of_order_execution"}

#: Options a remote function accepts and their defaults (Ray's names).  Here rather than in
#: ``_tasks``, which is imported only once a function is made remote: ``remote(**options)``
#: checks option names for classes too.
TASK_OPTIONS: dict[str, Any] = {
    "num_returns": 1,
    "num_cpus": 1,
    "max_retries": 3,
    "retry_exceptions": False,
    "runtime_env": None,
    "name": None,
    "_generator_backpressure_num_objects": None,
}
#: Ray's task options that mean nothing on one node without GPUs: accepted, no effect.
IGNORED_TASK_OPTIONS = NO_EFFECT_ON_ONE_NODE | {"max_calls", "_labels"}
#: The reserved namespace of the task pool's actors (``list_actors`` leaves them out).
TASKS_NAMESPACE = "_actorloop_tasks"


def is_task_option(key: str) -> bool:
    return key in TASK_OPTIONS or key in IGNORED_TASK_OPTIONS


def env_vars_of(runtime_env: Any, where: str) -> dict[str, str]:
    """The environment variables of a Ray ``runtime_env``; any other key is refused (nothing is installed here)."""
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise TypeError(f"{where}: runtime_env must be a dict, got {type(runtime_env).__name__}")
    unsupported = sorted(set(runtime_env) - {"env_vars"})
    if unsupported:
        raise ValueError(
            f"{where}: runtime_env key(s) {', '.join(map(repr, unsupported))} are not supported: actorloop runs "
            "on this machine's own Python environment and supports only runtime_env={'env_vars': {...}}"
        )
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise TypeError(f"{where}: runtime_env['env_vars'] must be a dict of str to str, got {env_vars!r}")
    return dict(env_vars)


#: ``num_returns`` of a generator method: ``.remote()`` returns an ``ObjectRefGenerator`` (Ray's value).
STREAMING = "streaming"


@dataclass(frozen=True)
class MethodMeta:
    is_async: bool
    group: str | None
    #: An int, or ``STREAMING`` (the default of generator methods).
    num_returns: int | str = 1
    #: A generator method's ``_generator_backpressure_num_objects`` (0: the default).
    window: int = 0


@dataclass
class ClassMeta:
    """What a caller needs to know of an actor class, without the class itself."""

    class_name: str
    methods: dict[str, MethodMeta]
    is_async: bool
    groups: dict[str, int] = field(default_factory=dict)
    has_routes: bool = False


#: Ray's per-call method options that mean nothing here: accepted, no effect.
IGNORED_METHOD_OPTIONS = frozenset(
    {
        "name",
        "enable_task_events",
        "max_task_retries",
        "retry_exceptions",
        "tensor_transport",
        "_metadata",
    }
)


def check_num_returns(num_returns: Any, where: str) -> int | str:
    """A method's ``num_returns``: an int >= 0, or ``"streaming"`` (a generator method's items, one by one)."""
    if num_returns == STREAMING:
        return STREAMING
    if num_returns == "dynamic":
        raise ValueError(
            f"{where}: num_returns='dynamic' (Ray's deprecated generator API) is not supported; "
            "use num_returns='streaming' (the default of generator methods)"
        )
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"{where}: num_returns must be an int >= 0, got {num_returns!r}")
    return num_returns


def validate_options(opts: dict[str, Any], where: str) -> None:
    for key in opts:
        if key not in ACTOR_OPTIONS and key not in IGNORED_OPTIONS:
            raise TypeError(f"{where}: unknown option {key!r}; known options: {', '.join(sorted(ACTOR_OPTIONS))}")
    name = opts.get("name")
    if name is not None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: name must be a non-empty string, got {name!r}")
        if len(name) > 256:
            raise ValueError(f"{where}: name is {len(name)} characters long; the limit is 256")
    namespace = opts.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace or len(namespace) > 256):
        raise ValueError(f"{where}: namespace must be a non-empty string of at most 256 characters, got {namespace!r}")
    lifetime = opts.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"{where}: lifetime must be None or 'detached', got {lifetime!r}")
    mc = opts.get("max_concurrency")
    if mc is not None and (not isinstance(mc, int) or isinstance(mc, bool) or mc < 1):
        raise ValueError(f"{where}: max_concurrency must be a positive integer, got {mc!r}")
    groups = opts.get("concurrency_groups")
    if groups is not None:
        if not isinstance(groups, dict):
            raise TypeError(f"{where}: concurrency_groups must be a dict of name -> limit, got {type(groups).__name__}")
        for gname, limit in groups.items():
            if not isinstance(gname, str) or not gname:
                raise ValueError(f"{where}: concurrency group names must be non-empty strings, got {gname!r}")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"{where}: concurrency group {gname!r} needs a positive integer limit, got {limit!r}")
    for key in ("max_restarts", "max_task_retries", "max_pending_calls"):
        value = opts.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < -1):
            raise ValueError(f"{where}: {key} must be an integer >= -1, got {value!r}")
    port = opts.get("http_port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535):
        raise ValueError(f"{where}: http_port must be an integer from 0 to 65535, got {port!r}")
    host = opts.get("http_host")
    if host is not None and (not isinstance(host, str) or not host):
        raise ValueError(f"{where}: http_host must be a non-empty string, got {host!r}")
    env_vars_of(opts.get("runtime_env"), where)


def collect_meta(cls: type) -> ClassMeta:
    methods: dict[str, MethodMeta] = {}
    is_async = False
    for name, attr in inspect.getmembers(cls):
        func = attr
        static = inspect.getattr_static(cls, name, None)
        if isinstance(static, (staticmethod, classmethod)):
            func = static.__func__
        if not (inspect.isfunction(func) or inspect.ismethod(func)):
            continue
        coroutine = inspect.iscoroutinefunction(func)
        async_generator = inspect.isasyncgenfunction(func)
        if coroutine or async_generator:
            is_async = True  # as in Ray: an async generator method makes an async actor
        if name.startswith("_"):
            continue
        opts = getattr(func, "__actorloop_method__", None) or {}
        generator = async_generator or inspect.isgeneratorfunction(func)
        num_returns = opts.get("num_returns", STREAMING if generator else 1)
        methods[name] = MethodMeta(coroutine, opts.get("concurrency_group"), num_returns, opts.get("window", 0))
    # The worker serves the same collect_routes(cls); a route declared twice fails here, not in the actor.
    has_routes = bool(collect_routes(cls))
    return ClassMeta(cls.__name__, methods, is_async, has_routes=has_routes)


def check_groups(meta: ClassMeta, groups: dict[str, int] | None, where: str) -> None:
    known = groups or {}
    for mname, mmeta in meta.methods.items():
        if mmeta.group is not None and mmeta.group not in known:
            raise ValueError(
                f"{where}: method {mname!r} is in concurrency group {mmeta.group!r}, which the actor does not "
                f"declare (declared: {sorted(known) or 'none'})"
            )


@dataclass(frozen=True)
class ActorInfo:
    """One actor as ``actorloop.list_actors()`` reports it.

    ``death_cause`` says why the actor last ended: why it is ``"DEAD"``, or
    why it is restarting or was restarted; ``None`` if it never ended.
    """

    actor_id: str
    class_name: str
    name: str | None
    namespace: str | None
    state: str
    pid: int | None
    detached: bool
    restarts: int
    death_cause: str | None = None
