"""Actor classes, handles and methods: what ``@actorloop.remote`` gives you."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar, overload

from ._ref import ObjectRef

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

READY_METHOD = "__actorloop_ready__"
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
}
#: Ray's resource options: accepted, no effect on one machine.
IGNORED_OPTIONS = frozenset({"num_cpus", "num_gpus", "resources", "memory", "object_store_memory", "accelerator_type"})


@dataclass(frozen=True)
class MethodMeta:
    is_async: bool
    group: str | None


@dataclass
class ClassMeta:
    """What a caller needs to know of an actor class, without the class itself."""

    class_name: str
    methods: dict[str, MethodMeta]
    is_async: bool
    groups: dict[str, int] = field(default_factory=dict)
    has_routes: bool = False


def _validate_options(opts: dict[str, Any], where: str) -> None:
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


def _collect_meta(cls: type) -> ClassMeta:
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
        if coroutine:
            is_async = True
        if name.startswith("_"):
            continue
        opts = getattr(func, "__actorloop_method__", None) or {}
        methods[name] = MethodMeta(coroutine, opts.get("concurrency_group"))
    from ._http import collect_routes

    # The worker serves the same collect_routes(cls); a route declared twice fails here, not in the actor.
    has_routes = bool(collect_routes(cls))
    return ClassMeta(cls.__name__, methods, is_async, has_routes=has_routes)


def _check_groups(meta: ClassMeta, groups: dict[str, int] | None, where: str) -> None:
    known = groups or {}
    for mname, mmeta in meta.methods.items():
        if mmeta.group is not None and mmeta.group not in known:
            raise ValueError(
                f"{where}: method {mname!r} is in concurrency group {mmeta.group!r}, which the actor does not "
                f"declare (declared: {sorted(known) or 'none'})"
            )


class ActorClass(Generic[T]):
    """An actor class: call ``.remote(...)`` to start an actor, ``.options(...)`` to change options.

    Example::

        @actorloop.remote
        class Counter:
            def __init__(self, start=0):
                self.count = start
            def increment(self):
                self.count += 1
                return self.count

        c = Counter.remote(5)
        actorloop.get(c.increment.remote())   # 6
    """

    def __init__(self, cls: type[T], options: dict[str, Any]) -> None:
        if not isinstance(cls, type):
            raise TypeError(f"@actorloop.remote takes a class, got {cls!r}")
        _validate_options(options, f"@actorloop.remote on {cls.__name__}")
        self._cls = cls
        self._options = dict(options)
        self._meta = _collect_meta(cls)
        if options.get("concurrency_groups") is not None:
            _check_groups(self._meta, options["concurrency_groups"], f"@actorloop.remote on {cls.__name__}")
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self._cls.__name__} cannot be instantiated directly; "
            f"use {self._cls.__name__}.remote(...) instead"
        )

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        """Start an actor of this class with these constructor arguments; returns at once."""
        return self._create(self._options, args, kwargs)

    def options(self, **options: Any) -> _ActorClassWithOptions[T]:
        """Override options for one actor: ``Counter.options(name="c").remote()``."""
        _validate_options(options, f"{self._cls.__name__}.options()")
        merged = dict(self._options)
        merged.update(options)
        return _ActorClassWithOptions(self, merged)

    def _create(self, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> ActorHandle[T]:
        from ._client import get_or_init_runtime

        _check_groups(self._meta, options.get("concurrency_groups"), f"{self._cls.__name__}.remote()")
        return get_or_init_runtime().create_actor(self._cls, self._meta, options, args, kwargs)

    def __repr__(self) -> str:
        return f"ActorClass({self._cls.__module__}.{self._cls.__qualname__})"


class _ActorClassWithOptions(Generic[T]):
    def __init__(self, actor_class: ActorClass[T], options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        """Start the actor with the options given to ``.options()``."""
        return self._actor_class._create(self._options, args, kwargs)

    def options(self, **options: Any) -> _ActorClassWithOptions[T]:
        _validate_options(options, f"{self._actor_class._cls.__name__}.options()")
        merged = dict(self._options)
        merged.update(options)
        return _ActorClassWithOptions(self._actor_class, merged)


class ActorMethod:
    """``handle.method``: call ``.remote(*args, **kwargs)`` to get an :class:`ObjectRef`."""

    __slots__ = ("_state", "_meta", "_http_url", "_name", "_group")

    def __init__(self, state: Any, meta: ClassMeta, http_url: str | None, name: str, group: str | None) -> None:
        # A method keeps its actor alive as a handle does, but without holding
        # the handle: handles cache their methods, and that cycle would keep an
        # anonymous actor alive until the garbage collector happened to run.
        self._state = state
        self._meta = meta
        self._http_url = http_url
        self._name = name
        self._group = group
        state.handle_created(self)

    def __del__(self) -> None:
        try:
            state = self._state
        except AttributeError:
            return
        state.handle_deleted()

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef[Any]:
        """Call the method in the actor; returns an ObjectRef at once."""
        return self._state.submit(self._name, args, kwargs, self._group)

    def options(self, *, concurrency_group: str | None = None, **unknown: Any) -> ActorMethod:
        """Pick options for one call: ``h.f.options(concurrency_group="io").remote()``."""
        if unknown:
            raise TypeError(f"unknown method option(s) {', '.join(map(repr, unknown))}; known: 'concurrency_group'")
        if concurrency_group is not None:
            groups = self._meta.groups
            if concurrency_group not in groups and concurrency_group != DEFAULT_GROUP:
                raise ValueError(
                    f"unknown concurrency group {concurrency_group!r} for {self._meta.class_name}."
                    f"{self._name}; the actor declares: {sorted(groups) or 'none'}"
                )
        return ActorMethod(self._state, self._meta, self._http_url, self._name, concurrency_group)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor methods cannot be called directly; use .{self._name}.remote(...) instead")

    def __repr__(self) -> str:
        return f"ActorMethod({self._meta.class_name}.{self._name})"

    def __reduce__(self) -> Any:
        # Sent elsewhere, a method is its handle's method there (and passes the handle on).
        state = self._state
        state.passed_on = True
        args = (state.actor_id, self._meta, self._http_url, state.options_for_callers, self._name, self._group)
        return (_rebuild_method, args)


class ActorHandle(Generic[T]):
    """A reference to a running actor: call its methods with ``handle.method.remote(...)``.

    Handles are picklable: pass them to other actors, which can call them too.
    ``handle.http_url`` is the base URL of the actor's built-in HTTP routes,
    or ``None`` when its class declares none.
    """

    _actor_id: str
    _meta: ClassMeta
    http_url: str | None

    def __init__(self, actor_id: str, meta: ClassMeta, http_url: str | None, state: Any) -> None:
        self._actor_id = actor_id
        self._meta = meta
        self.http_url = http_url
        self._runtime_state = state
        state.handle_created(self)

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") and name != READY_METHOD:
            raise AttributeError(name)
        meta = self._meta.methods.get(name)
        if meta is None:
            raise AttributeError(
                f"actor {self._meta.class_name} has no public method {name!r}; "
                f"its methods: {', '.join(sorted(self._meta.methods)) or 'none'}"
            )
        method = ActorMethod(self._runtime_state, self._meta, self.http_url, name, None)
        self.__dict__[name] = method
        return method

    def ready(self) -> ObjectRef[None]:
        """A ref that resolves to None once ``__init__`` finished (ActorDiedError if it failed)."""
        return self._runtime_state.submit(READY_METHOD, (), {}, None)

    def __del__(self) -> None:
        state = self.__dict__.get("_runtime_state")
        if state is not None:
            state.handle_deleted()

    def __reduce__(self) -> Any:
        self._runtime_state.passed_on = True
        return (_rebuild_handle, (self._actor_id, self._meta, self.http_url, self._runtime_state.options_for_callers))

    def __repr__(self) -> str:
        return f"ActorHandle({self._meta.class_name}, {self._actor_id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)


def _rebuild_handle(actor_id: str, meta: ClassMeta, http_url: str | None, caller_options: dict[str, Any]) -> Any:
    from ._client import get_or_init_runtime

    return get_or_init_runtime().handle_for(actor_id, meta, http_url, caller_options, created_here=False)


def _rebuild_method(
    actor_id: str, meta: ClassMeta, http_url: str | None, caller_options: dict[str, Any], name: str, group: str | None
) -> ActorMethod:
    handle = _rebuild_handle(actor_id, meta, http_url, caller_options)
    return ActorMethod(handle._runtime_state, meta, http_url, name, group)


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


@overload
def remote(__cls: type[T]) -> ActorClass[T]: ...


@overload
def remote(**options: Any) -> Callable[[type[T]], ActorClass[T]]: ...


def remote(*args: Any, **options: Any) -> Any:
    """Turn a class into an actor class; with keyword options, set its defaults.

    Example::

        @actorloop.remote
        class A: ...

        @actorloop.remote(max_concurrency=10, concurrency_groups={"io": 2})
        class B: ...
    """
    if args:
        if len(args) != 1 or options:
            raise TypeError("@actorloop.remote takes either one class or keyword options")
        target = args[0]
        if not isinstance(target, type):
            raise TypeError(
                f"@actorloop.remote takes a class, got {type(target).__name__} {target!r}; "
                "actorloop runs actors (classes), not remote functions"
            )
        return ActorClass(target, {})
    _validate_options(options, "@actorloop.remote(...)")

    def decorate(cls: type[T]) -> ActorClass[T]:
        if not isinstance(cls, type):
            raise TypeError(f"@actorloop.remote(...) takes a class, got {cls!r}")
        return ActorClass(cls, options)

    return decorate


def method(*, concurrency_group: str | None = None) -> Callable[[F], F]:
    """Set options of an actor method: ``@actorloop.method(concurrency_group="io")``.

    Works above or below ``@actorloop.http.get(...)``.
    """
    if concurrency_group is not None and (not isinstance(concurrency_group, str) or not concurrency_group):
        raise ValueError(f"concurrency_group must be a non-empty string, got {concurrency_group!r}")

    def decorate(func: F) -> F:
        target = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
        target.__actorloop_method__ = {"concurrency_group": concurrency_group}  # type: ignore[attr-defined]
        return func

    return decorate
