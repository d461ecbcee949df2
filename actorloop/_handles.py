"""Actor classes, handles and methods: what ``@actorloop.remote`` gives you.

The top of the caller's layers: a handle holds the runtime's ``ActorState``
for its actor and turns ``handle.method.remote(...)`` into
``ActorState.submit``.  Handles count themselves so that an anonymous actor
ends once its creator drops every one; a handle's ``__del__`` only posts to
the home loop (see ``_runtime.ActorState.handle_dropped``).
"""

from __future__ import annotations

import inspect
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Concatenate,
    Coroutine,
    Generic,
    Literal,
    NoReturn,
    ParamSpec,
    Protocol,
    TypeVar,
    Union,
    cast,
    overload,
)

from . import _backend
from ._meta import (
    ACTOR_OPTIONS,
    BUILTIN_METHODS,
    DEFAULT_GROUP,
    IGNORED_METHOD_OPTIONS,
    IGNORED_OPTIONS,
    READY_METHOD,
    STREAMING,
    TASK_OPTIONS,
    ClassMeta,
    check_groups,
    check_num_returns,
    collect_meta,
    is_task_option,
    validate_options,
)
from ._ref import ObjectRef, split_ref
from ._runtime import ActorState, require_runtime
from ._stream import DEFAULT_WINDOW, check_window

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
#: For type checkers: the class of a method's ``self``, what calling it in the actor returns, and
#: what ``handle.method`` is (``ActorMethod[P, R]``).
S = TypeVar("S")
Ret = TypeVar("Ret")
M = TypeVar("M")
C = TypeVar("C")
T_co = TypeVar("T_co", covariant=True)


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
        validate_options(options, f"@actorloop.remote on {cls.__name__}")
        self._cls = cls
        self._options = dict(options)
        self._meta = collect_meta(cls)
        if options.get("concurrency_groups") is not None:
            check_groups(self._meta, options["concurrency_groups"], f"@actorloop.remote on {cls.__name__}")
        try:
            self._signature: inspect.Signature | None = inspect.signature(cls)
        except (TypeError, ValueError):  # a constructor without a readable signature: the actor checks
            self._signature = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __getattr__(self, name: str) -> Any:
        # The user's class shows through, as Ray's actor classes do: class
        # attributes, static and class methods.
        cls = self.__dict__.get("_cls")
        if cls is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        try:
            return getattr(cls, name)
        except AttributeError:
            raise AttributeError(f"actor class {cls.__name__} has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | set(self.__dict__) | set(dir(self._cls)))

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        """``class Child(RemoteParent)`` subclasses the user's class, so remote classes can inherit."""
        return (self._cls,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self._cls.__name__} cannot be instantiated directly; "
            f"use {self._cls.__name__}.remote(...) instead"
        )

    def remote(self, *args: Any, **kwargs: Any) -> ActorProxy[T]:
        """Start an actor of this class with these constructor arguments; returns at once.

        Type checkers see an :data:`ActorProxy` (the handle, through which methods decorated
        with ``@actorloop.method`` are typed); the mypy plugin makes it ``ActorHandle[T]``.
        """
        return cast("ActorProxy[T]", self._create(self._options, args, kwargs))

    def options(self, **options: Any) -> _ActorClassWithOptions[T]:
        """Override options for one actor: ``Counter.options(name="c").remote()``."""
        validate_options(options, f"{self._cls.__name__}.options()")
        merged = dict(self._options)
        merged.update(options)
        return _ActorClassWithOptions(self, merged)

    def _create(self, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> ActorHandle[T]:
        check_groups(self._meta, options.get("concurrency_groups"), f"{self._cls.__name__}.remote()")
        if self._signature is not None:
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self._cls.__name__}.remote(): {exc}") from None
        backend = _backend.implied()
        if backend is not None:  # backend hook: the actor runs on Ray
            return backend.create_actor(self, options, args, kwargs)  # type: ignore[no-any-return]
        state, http_url = require_runtime().create_actor(self._cls, self._meta, options, args, kwargs)
        return ActorHandle(state.actor_id, state.meta, http_url, state)

    def __repr__(self) -> str:
        return f"ActorClass({self._cls.__module__}.{self._cls.__qualname__})"


class _ActorClassWithOptions(Generic[T]):
    def __init__(self, actor_class: ActorClass[T], options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorProxy[T]:
        """Start the actor with the options given to ``.options()``."""
        return cast("ActorProxy[T]", self._actor_class._create(self._options, args, kwargs))

    def options(self, **options: Any) -> _ActorClassWithOptions[T]:
        validate_options(options, f"{self._actor_class._cls.__name__}.options()")
        merged = dict(self._options)
        merged.update(options)
        return _ActorClassWithOptions(self._actor_class, merged)


class ActorMethod(Generic[P, R]):
    """``handle.method``: call ``.remote(*args, **kwargs)`` to get an :class:`ObjectRef`.

    For type checkers it is ``ActorMethod[P, R]``: ``.remote`` takes the method's parameters
    ``P`` and returns ``ObjectRef[R]`` (``R`` unwrapped from an ``async def``).

    With ``num_returns=N`` (``@actorloop.method(num_returns=N)`` or
    ``.options(num_returns=N)``) the method returns N values and ``.remote()``
    returns a list of N refs.  A generator method (``num_returns="streaming"``,
    its default) returns an ``ObjectRefGenerator`` of its items.
    """

    __slots__ = ("_state", "_meta", "_http_url", "_name", "_group", "_num_returns", "_window")

    def __init__(
        self,
        state: ActorState,
        meta: ClassMeta,
        http_url: str | None,
        name: str,
        group: str | None,
        num_returns: int | str | None = None,
        window: int = 0,
    ) -> None:
        # A method keeps its actor alive as a handle does, but without holding
        # the handle: handles cache their methods, and that cycle would keep an
        # anonymous actor alive until the garbage collector happened to run.
        self._state = state
        self._meta = meta
        self._http_url = http_url
        self._name = name
        self._group = group
        if num_returns is None:
            method_meta = meta.methods.get(name)
            num_returns = method_meta.num_returns if method_meta is not None else 1
        self._num_returns = num_returns
        if not window:
            method_meta = meta.methods.get(name)
            window = method_meta.window if method_meta is not None and method_meta.window else DEFAULT_WINDOW
        self._window = window
        state.handle_made()

    def __del__(self) -> None:
        try:
            state = self._state
        except AttributeError:
            return
        state.handle_dropped()

    def remote(self, *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]:
        """Call the method in the actor; returns an ObjectRef at once (a list of them with ``num_returns``)."""
        # Annotated assignments rather than typing.cast: cast is a Python call, ~2% of a gathered
        # call's driver samples (py-spy, 3.11), and submit returns Any either way.
        if self._num_returns == 1:
            ref: ObjectRef[R] = self._state.submit(self._name, args, kwargs, self._group)
            return ref
        if self._num_returns == STREAMING:
            # A generator's items (typed as ObjectRef[R] here; an ObjectRefGenerator at run time).
            items: ObjectRef[R] = self._state.submit(self._name, args, kwargs, self._group, self._window)
            return items
        whole = self._state.submit(self._name, args, kwargs, self._group)
        parts = split_ref(whole, int(self._num_returns), f"{self._meta.class_name}.{self._name}")
        return cast("ObjectRef[R]", parts or None)  # num_returns: the refs (typed as _ActorMethodOfReturns)

    @overload
    def options(
        self,
        *,
        concurrency_group: str | None = None,
        num_returns: Literal[1] | None = None,
        _generator_backpressure_num_objects: int | None = None,
        **ray_options: Any,
    ) -> ActorMethod[P, R]: ...

    @overload
    def options(
        self,
        *,
        concurrency_group: str | None = None,
        num_returns: int | str,
        _generator_backpressure_num_objects: int | None = None,
        **ray_options: Any,
    ) -> _ActorMethodOfReturns[P]: ...

    def options(
        self,
        *,
        concurrency_group: str | None = None,
        num_returns: int | str | None = None,
        _generator_backpressure_num_objects: int | None = None,
        **ray_options: Any,
    ) -> Any:
        """Pick options for one call: ``h.f.options(concurrency_group="io").remote()``.

        ``num_returns`` splits the result into that many refs (``"streaming"``: a
        generator's items, the default of generator methods).
        ``_generator_backpressure_num_objects=N``: a generator runs at most N items
        ahead of its consumer (-1: no limit).  Ray's other method options
        (``name``, ``enable_task_events``, ...) are accepted and have no effect.
        """
        where = f"{self._meta.class_name}.{self._name}.options()"
        window = self._window
        if _generator_backpressure_num_objects is not None:
            window = check_window(_generator_backpressure_num_objects, where)
        unknown = [key for key in ray_options if key not in IGNORED_METHOD_OPTIONS]
        if unknown:
            own = {"concurrency_group", "num_returns", "_generator_backpressure_num_objects"}
            known = ", ".join(sorted(own | IGNORED_METHOD_OPTIONS))
            raise TypeError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; known: {known}")
        if concurrency_group is not None:
            groups = self._meta.groups
            if concurrency_group not in groups and concurrency_group != DEFAULT_GROUP:
                raise ValueError(
                    f"unknown concurrency group {concurrency_group!r} for {self._meta.class_name}."
                    f"{self._name}; the actor declares: {sorted(groups) or 'none'}"
                )
        if num_returns is not None:
            num_returns = check_num_returns(num_returns, where)
        group = concurrency_group if concurrency_group is not None else self._group
        returns = num_returns if num_returns is not None else self._num_returns
        return ActorMethod(self._state, self._meta, self._http_url, self._name, group, returns, window)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._name == READY_METHOD and not args and not kwargs:
            return cast(Any, self.remote)()  # handle.ready(): the actorloop spelling of __ray_ready__.remote()
        raise TypeError(f"actor methods cannot be called directly; use .{self._name}.remote(...) instead")

    def __repr__(self) -> str:
        return f"ActorMethod({self._meta.class_name}.{self._name})"

    def __reduce__(self) -> Any:
        # Sent elsewhere, a method is its handle's method there (and passes the handle on).
        state = self._state
        state.passed_on = True
        args = (
            state.actor_id,
            self._meta,
            self._http_url,
            state.options_for_callers,
            self._name,
            self._group,
            self._num_returns,
            self._window,
        )
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

    def __init__(self, actor_id: str, meta: ClassMeta, http_url: str | None, state: ActorState) -> None:
        self._actor_id = actor_id
        self._meta = meta
        self.http_url = http_url
        self._runtime_state = state
        state.handle_made()

    def __getattr__(self, name: str) -> ActorMethod[..., Any]:
        # Type checkers see ActorMethod[..., Any] here; the mypy plugin (actorloop.mypy) replaces it
        # with the named method's own parameters and result, and reports an unknown method.
        if name in BUILTIN_METHODS:
            method_name = name
        elif name.startswith("_"):
            raise AttributeError(name)
        elif name in self._meta.methods:
            method_name = name
        elif name == "ready":
            # handle.ready(): a user method named `ready` wins; without one, this is __ray_ready__.
            method_name = READY_METHOD
        else:
            raise AttributeError(
                f"actor {self._meta.class_name} has no public method {name!r}; "
                f"its methods: {', '.join(sorted(self._meta.methods)) or 'none'}"
            )
        method: ActorMethod[..., Any] = ActorMethod(self._runtime_state, self._meta, self.http_url, method_name, None)
        self.__dict__[name] = method
        return method

    def __del__(self) -> None:
        state = self.__dict__.get("_runtime_state")
        if state is not None:
            state.handle_dropped()

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
    state = require_runtime().state_for(actor_id, meta, caller_options, created_here=False)
    return ActorHandle(actor_id, meta, http_url, state)


def _rebuild_method(
    actor_id: str,
    meta: ClassMeta,
    http_url: str | None,
    caller_options: dict[str, Any],
    name: str,
    group: str | None,
    num_returns: int | str | None = None,
    window: int = 0,
) -> ActorMethod[..., Any]:
    handle = _rebuild_handle(actor_id, meta, http_url, caller_options)
    return ActorMethod(handle._runtime_state, meta, http_url, name, group, num_returns, window)


if TYPE_CHECKING:
    from ._tasks import RemoteFunction

    # What type checkers see beyond the run-time classes above (docs/typing.md). None of it
    # exists at run time: ``remote`` and ``method`` return the run-time classes and functions.

    class _ProxyHandle(ActorHandle[T]):
        """The handle half of :data:`ActorProxy`: its methods come from the class half."""

        def __getattr__(self, name: str) -> NoReturn: ...

    ActorProxy = Union[_ProxyHandle[T], type[T]]

    class _ActorMethodOfReturns(ActorMethod[P, Any]):
        """A method called with ``num_returns=N``: ``.remote()`` gives N refs (a list), or None for 0."""

        def remote(self, *args: P.args, **kwargs: P.kwargs) -> Any: ...

    class _RemoteMethod(Generic[S, P, M, Ret]):
        """A method decorated with ``@actorloop.method``: ``M`` through a handle, itself in the actor."""

        @overload
        def __get__(self, instance: None, owner: Any) -> M: ...
        @overload
        def __get__(self, instance: S, owner: Any) -> Callable[P, Ret]: ...
        def __get__(self, instance: Any, owner: Any) -> Any: ...
        # Callable as the function is, so decorators typed for functions (actorloop.http.get) take it.
        def __call__(self, instance: S, /, *args: P.args, **kwargs: P.kwargs) -> Ret: ...

    class _MethodDecorator(Protocol):
        @overload
        def __call__(
            self, func: Callable[Concatenate[S, P], Coroutine[Any, Any, R]], /
        ) -> _RemoteMethod[S, P, ActorMethod[P, R], Coroutine[Any, Any, R]]: ...
        @overload
        def __call__(self, func: Callable[Concatenate[S, P], R], /) -> _RemoteMethod[S, P, ActorMethod[P, R], R]: ...
        @overload
        def __call__(self, func: F, /) -> F: ...

    class _MethodOfReturnsDecorator(Protocol):
        @overload
        def __call__(
            self, func: Callable[Concatenate[S, P], Ret], /
        ) -> _RemoteMethod[S, P, _ActorMethodOfReturns[P], Ret]: ...
        @overload
        def __call__(self, func: F, /) -> F: ...

    class _ClassLike(Protocol[P, T_co]):
        """A class (it has an ``__mro__``, which a function has not) whose constructor takes ``P``."""

        @property
        def __mro__(self) -> tuple[type, ...]: ...
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    class _TypedActorClass(ActorClass[T], Generic[T, C]):
        """``ActorClass[T]`` that knows its class's constructor ``C``, to check ``.remote()``'s arguments."""

        def remote(self: _TypedActorClass[T, Callable[P, Any]], *args: P.args, **kwargs: P.kwargs) -> ActorProxy[T]: ...
        def options(self, **options: Any) -> _TypedActorClassWithOptions[T, C]: ...

    class _TypedActorClassWithOptions(_ActorClassWithOptions[T], Generic[T, C]):
        def remote(
            self: _TypedActorClassWithOptions[T, Callable[P, Any]], *args: P.args, **kwargs: P.kwargs
        ) -> ActorProxy[T]: ...
        def options(self, **options: Any) -> _TypedActorClassWithOptions[T, C]: ...

    class _TypedRemoteFunction(RemoteFunction[R], Generic[P, R]):
        """A remote function: ``.remote`` takes the function's parameters and gives ``ObjectRef[R]``."""

        def remote(self, *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]: ...
        def options(self, **options: Any) -> _TypedRemoteFunction[P, R]: ...

    class _RemoteDecorator(Protocol):
        @overload
        def __call__(  # type: ignore[overload-overlap]
            self, target: _ClassLike[P, T], /
        ) -> _TypedActorClass[T, Callable[P, T]]: ...
        @overload
        def __call__(self, target: type[T], /) -> _TypedActorClass[T, type[T]]: ...  # type: ignore[overload-overlap]
        @overload
        def __call__(self, target: Callable[P, Coroutine[Any, Any, R]], /) -> _TypedRemoteFunction[P, R]: ...
        @overload
        def __call__(self, target: Callable[P, R], /) -> _TypedRemoteFunction[P, R]: ...

    class _RemoteOfReturnsDecorator(Protocol):
        def __call__(self, target: Callable[..., Any], /) -> RemoteFunction[Any]: ...

else:
    ActorProxy = Union[ActorHandle[T], type[T]]

# ActorProxy[T]: what type checkers see ActorClass[T].remote() return (Ray's name and meaning).
# A union of the handle and the class T, so that a checker finds each method's parameters and
# result on T (methods decorated with @actorloop.method) and an unknown method is an error; the
# mypy plugin reads it as ActorHandle[T]. At run time the value is always an ActorHandle.


class RemoteUsageError(TypeError, AssertionError):
    """``@actorloop.remote()`` with empty parentheses: a TypeError, and an AssertionError as Ray raises."""


# Classes: _ClassLike is how mypy learns the constructor's parameters, type[T] is how pyright does
# (each skips the other's overload). Coroutine functions give ObjectRef of what they return.
@overload
def remote(__cls: _ClassLike[P, T]) -> _TypedActorClass[T, Callable[P, T]]: ...  # type: ignore[overload-overlap]


@overload
def remote(__cls: type[T]) -> _TypedActorClass[T, type[T]]: ...  # type: ignore[overload-overlap]


@overload
def remote(__function: Callable[P, Coroutine[Any, Any, R]]) -> _TypedRemoteFunction[P, R]: ...


@overload
def remote(__function: Callable[P, R]) -> _TypedRemoteFunction[P, R]: ...


@overload
def remote(*, num_returns: int, **options: Any) -> _RemoteOfReturnsDecorator: ...  # pyright: ignore[reportOverlappingOverload]


@overload
def remote(**options: Any) -> _RemoteDecorator: ...


def remote(*args: Any, **options: Any) -> Any:
    """Turn a class into an actor class, or a function into a remote function; keyword options set defaults.

    Example::

        @actorloop.remote
        class A: ...

        @actorloop.remote(max_concurrency=10, concurrency_groups={"io": 2})
        class B: ...

        @actorloop.remote
        def f(x): ...

        @actorloop.remote(num_returns=2, max_retries=0)
        def g(): ...
    """
    if args:
        if len(args) != 1 or options:
            raise TypeError("@actorloop.remote takes either one class or function, or keyword options")
        return _make_remote(args[0], {}, "@actorloop.remote")
    if not options:
        # As Ray: a bare decorator is @remote, options are @remote(k=v); @remote() is neither.
        raise RemoteUsageError(
            "@actorloop.remote must be applied either with no arguments and no parentheses (@actorloop.remote) "
            "or with keyword options (@actorloop.remote(num_cpus=1)), not as @actorloop.remote()"
        )
    for key in options:
        if key not in ACTOR_OPTIONS and key not in IGNORED_OPTIONS and not is_task_option(key):
            known = sorted({*ACTOR_OPTIONS, *TASK_OPTIONS})
            raise TypeError(f"@actorloop.remote(...): unknown option {key!r}; known options: {', '.join(known)}")

    def decorate(target: Any) -> Any:
        return _make_remote(target, options, "@actorloop.remote(...)")

    return decorate


def _make_remote(target: Any, options: dict[str, Any], where: str) -> Any:
    if isinstance(target, type):
        return ActorClass(target, options)
    if inspect.isfunction(target):
        # Imported here: a program without remote functions never loads the task machinery.
        from ._tasks import RemoteFunction

        return RemoteFunction(target, options)
    raise TypeError(f"{where} takes a class or a function, got {type(target).__name__} {target!r}")


@overload
def method(
    func: Callable[Concatenate[S, P], Coroutine[Any, Any, R]], /
) -> _RemoteMethod[S, P, ActorMethod[P, R], Coroutine[Any, Any, R]]: ...


@overload
def method(func: Callable[Concatenate[S, P], R], /) -> _RemoteMethod[S, P, ActorMethod[P, R], R]: ...


@overload
def method(
    *,
    concurrency_group: str | None = None,
    num_returns: Literal[1] | None = None,
    _generator_backpressure_num_objects: int | None = None,
    **ray_options: Any,
) -> _MethodDecorator: ...


@overload
def method(
    *,
    concurrency_group: str | None = None,
    num_returns: int | str,
    _generator_backpressure_num_objects: int | None = None,
    **ray_options: Any,
) -> _MethodOfReturnsDecorator: ...


def method(
    func: Any = None,
    /,
    *,
    concurrency_group: str | None = None,
    num_returns: int | str | None = None,
    _generator_backpressure_num_objects: int | None = None,
    **ray_options: Any,
) -> Any:
    """Mark an actor method: ``@actorloop.method``, or with options ``@actorloop.method(concurrency_group="io")``.

    ``num_returns=N`` makes ``.remote()`` return N refs, one per returned value;
    ``"streaming"`` (the default of generator methods) an ``ObjectRefGenerator``.
    ``_generator_backpressure_num_objects=N``: a generator method runs at most N
    items ahead of its consumer (-1: no limit).
    Ray's other method options are accepted and have no effect.  Works above
    or below ``@actorloop.http.get(...)``.

    For type checkers, a method decorated with it is typed through a handle
    (``handle.method.remote(...)`` takes its parameters and gives an
    ``ObjectRef`` of its result), as with Ray's ``@ray.method``; see docs/typing.md.
    """
    if func is not None:
        # Bare @actorloop.method, as Ray's typed pattern writes it: a method with default options.
        if (
            ray_options
            or concurrency_group is not None
            or num_returns is not None
            or _generator_backpressure_num_objects is not None
        ):
            raise TypeError("@actorloop.method takes either a method or keyword options, not both")
        if not callable(func) and not isinstance(func, (staticmethod, classmethod)):
            raise TypeError(f"@actorloop.method decorates a method, got {func!r}")
        return cast(Any, method())(func)
    unknown = [key for key in ray_options if key not in IGNORED_METHOD_OPTIONS]
    if unknown:
        raise TypeError(f"@actorloop.method: unknown option(s) {', '.join(map(repr, unknown))}")
    if concurrency_group is not None and (not isinstance(concurrency_group, str) or not concurrency_group):
        raise ValueError(f"concurrency_group must be a non-empty string, got {concurrency_group!r}")
    opts: dict[str, Any] = {"concurrency_group": concurrency_group}
    if num_returns is not None:
        opts["num_returns"] = check_num_returns(num_returns, "@actorloop.method")
    if _generator_backpressure_num_objects is not None:
        opts["window"] = check_window(_generator_backpressure_num_objects, "@actorloop.method")

    def decorate(func: Any) -> Any:
        target: Any = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
        target.__actorloop_method__ = opts
        return func

    return decorate
