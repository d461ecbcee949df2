"""Actor classes, handles and methods on the Ray backend.

An actorloop actor class becomes a Ray actor class: a subclass of the user's
class (``ray_class_for``) that marks methods with their concurrency group and
``num_returns`` the way ``ray.method`` does, makes the actorloop backend
current inside the Ray worker (so ``actorloop.get``/``.remote()`` there go to
Ray too), and, for a class with HTTP routes, starts actorloop's own HTTP
server (``actorloop._http``) on the actor's event loop.

``RayActorHandle`` is an ``actorloop.ActorHandle`` wrapping Ray's handle.
"""

from __future__ import annotations

import inspect
import time
import weakref
from typing import Any, cast

import ray

from .. import _backend, _http
from .._handles import ActorClass, ActorHandle
from .._meta import (
    BUILTIN_METHODS,
    DEFAULT_GROUP,
    IGNORED_METHOD_OPTIONS,
    READY_METHOD,
    STREAMING,
    ClassMeta,
    check_num_returns,
)
from .._stream import DEFAULT_WINDOW, UNBOUNDED_WINDOW, check_window
from ._errors import to_ours
from ._refs import unwrap_args, wrap

#: Our actor options that Ray does not know: handled here.
OWN_OPTIONS = frozenset({"http_port", "http_host"})
#: The method that starts a routed actor's HTTP server and reports its URL.
HTTP_METHOD = "_actorloop_http_url"
#: ``handle.ready()``: resolves to None once ``__init__`` finished, as on the local node (Ray's
#: ``__ray_ready__`` resolves to True).
READY_NONE_METHOD = "_actorloop_ready"

_ray_classes: weakref.WeakKeyDictionary[ActorClass[Any], dict[Any, Any]] = weakref.WeakKeyDictionary()


def ray_class_for(actor_class: ActorClass[Any], groups: dict[str, int] | None) -> Any:
    """The Ray actor class for an actorloop actor class and its concurrency groups (made once per pair).

    Ray takes ``concurrency_groups`` only when the class is made, not in ``.options()``.
    """
    by_groups = _ray_classes.setdefault(actor_class, {})
    key = tuple(sorted((groups or {}).items()))
    made = by_groups.get(key)
    if made is None:
        subclass = _subclass_for(actor_class._cls, actor_class._meta)
        decorate: Any = ray.remote(concurrency_groups=dict(groups)) if groups else ray.remote  # type: ignore[call-overload]
        made = by_groups[key] = decorate(subclass)
    return made


def _subclass_for(cls: type, meta: ClassMeta) -> type:
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__init__": _make_init(cls),
    }
    for name, method_meta in meta.methods.items():
        if method_meta.group is None and method_meta.num_returns == 1:
            continue
        func = inspect.getattr_static(cls, name)
        if isinstance(func, (staticmethod, classmethod)):
            continue
        namespace[name] = _marked(func, method_meta.group, method_meta.num_returns, method_meta.window)
    if meta.has_routes:
        namespace[HTTP_METHOD] = _http_method
    namespace[READY_NONE_METHOD] = _ready
    return type(cls.__name__, (cls,), namespace)


def _make_init(cls: type) -> Any:
    original = cls.__init__  # type: ignore[misc]
    init: Any
    if inspect.iscoroutinefunction(original):
        # Ray runs an `async def __init__` on the actor's event loop before any call (Ray 2.60).
        async def async_init(self: Any, *args: Any, **kwargs: Any) -> None:
            _activate_in_worker()
            await original(self, *args, **kwargs)

        init = async_init
    else:

        def sync_init(self: Any, *args: Any, **kwargs: Any) -> None:
            # This runs in the Ray worker: actorloop's API there goes to Ray as well.
            _activate_in_worker()
            original(self, *args, **kwargs)

        init = sync_init
    __init__ = init

    if inspect.isfunction(original):  # not object.__init__, which Ray's signature reader cannot take
        _copy_identity(__init__, original)
    return __init__


def _copy_identity(wrapper: Any, func: Any) -> None:
    """Name, docs and signature of ``func`` on ``wrapper``; no ``__wrapped__``: Ray unwraps it and would
    read the method options from ``func`` instead of the wrapper."""
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(wrapper, attr, getattr(func, attr, None))
    try:
        wrapper.__signature__ = inspect.signature(func)
    except (TypeError, ValueError):
        pass


def _marked(func: Any, group: str | None, num_returns: int | str, window: int = 0) -> Any:
    """A forwarder to ``func`` carrying Ray's method options (what ``ray.method`` sets).

    A generator stays a generator (Ray streams what generator methods yield).
    """
    forward: Any
    if inspect.isasyncgenfunction(func):

        async def forward_async_gen(self: Any, *args: Any, **kwargs: Any) -> Any:
            agen = func(self, *args, **kwargs)
            try:
                async for item in agen:
                    yield item
            finally:
                await agen.aclose()  # cancelled or dropped: the method's own finally runs now

        forward = forward_async_gen
    elif inspect.isgeneratorfunction(func):

        def forward_gen(self: Any, *args: Any, **kwargs: Any) -> Any:
            gen = func(self, *args, **kwargs)
            try:
                # A loop, not `yield from`: Ray sends values into the generator, which `yield from`
                # would pass on to a plain iterator (range, str, ...) that cannot take them.
                for item in gen:  # noqa: UP028
                    yield item
            finally:
                gen.close()

        forward = forward_gen
    elif inspect.iscoroutinefunction(func):

        async def forward_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await func(self, *args, **kwargs)

        forward = forward_async
    else:

        def forward_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
            return func(self, *args, **kwargs)

        forward = forward_sync

    _copy_identity(forward, func)
    options: dict[str, Any] = {}
    if group is not None:
        options["concurrency_group"] = group
    if num_returns != 1:
        options["num_returns"] = num_returns
    if num_returns == STREAMING:
        options["_generator_backpressure_num_objects"] = ray_window(window or DEFAULT_WINDOW)
    return ray.method(**options)(forward)


def ray_window(window: int) -> int:
    """Our checked window (``_stream.check_window``) as Ray's ``_generator_backpressure_num_objects``."""
    return -1 if window == UNBOUNDED_WINDOW else window


def _ready(self: Any) -> None:
    return None


def _activate_in_worker() -> None:
    """Inside a Ray worker: make this backend current (Ray is initialised there, so nothing starts)."""
    if _backend.current is None:
        _backend.start("ray")


async def _http_method(self: Any, host: str | None, port: int) -> str:
    """Start the actor's HTTP server on this actor's loop (once) and return its URL."""
    server = self.__dict__.get("_actorloop_http_server")
    if server is None:
        bind_host = host if host is not None else _node_host()
        sock = _http.bind_http_socket(bind_host, port)
        routes = _http.collect_routes(type(self))

        async def run_in_group(group: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # On Ray the handler runs on the actor's loop, outside Ray's concurrency-group limits.
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        def group_of(name: str) -> str:
            opts = getattr(getattr(type(self), name, None), "__actorloop_method__", None) or {}
            return opts.get("concurrency_group") or DEFAULT_GROUP

        url = _http.http_url(sock)
        if bind_host.strip("[]") in ("0.0.0.0", "::") and _machines() > 1:
            # Every interface: name this node's address, which the other machines can reach.
            url = f"http://{ray.util.get_node_ip_address()}:{sock.getsockname()[1]}"
        server = await _http.start_http_server(self, routes, sock, run_in_group, group_of)
        # Not under the method's own name: an instance attribute would hide the method.
        self.__dict__["_actorloop_http_server"] = server
        self.__dict__["_actorloop_http_base"] = url
    return self.__dict__["_actorloop_http_base"]  # type: ignore[no-any-return]


def _machines() -> int:
    """How many distinct addresses the cluster's live nodes have."""
    return len({n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")})


def _node_host() -> str:
    """The address the actor's server binds by default: loopback while the whole cluster is on one
    machine (every node has the same address), else this node's IP, which the other machines reach."""
    if _machines() <= 1:
        return "127.0.0.1"
    return ray.util.get_node_ip_address()  # type: ignore[no-any-return]


def create_actor(
    actor_class: ActorClass[Any], options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> RayActorHandle:
    """``ActorClass.remote()`` on Ray: the same options, handed to Ray's ``.options()``."""
    meta = actor_class._meta
    if meta.has_routes and options.get("max_restarts", 0) != 0:
        raise ValueError(
            f"{meta.class_name}: on actorloop's Ray backend an actor with HTTP routes cannot have max_restarts "
            "(Ray would restart the actor but not its HTTP server); leave max_restarts at 0"
        )
    ray_cls = ray_class_for(actor_class, options.get("concurrency_groups"))
    ray_options = {
        k: v for k, v in options.items() if k not in OWN_OPTIONS and k != "concurrency_groups" and v is not None
    }
    args, kwargs = unwrap_args(args, kwargs)
    try:
        ray_handle = ray_cls.options(**ray_options).remote(*args, **kwargs)
    except ValueError as exc:  # a taken name: Ray's message says so
        raise ValueError(str(exc)) from None
    except Exception as exc:
        raise to_ours(exc) from None
    handle = RayActorHandle(ray_handle, meta, None, options.get("concurrency_groups") or {})
    if meta.has_routes:
        port = options.get("http_port") or 0
        host = options.get("http_host") if "http_host" in options else None
        handle.__dict__["_http_ref"] = ray_handle._actorloop_http_url.remote(host, port)
    return handle


class RayActorHandle(ActorHandle[Any]):
    """An ``actorloop.ActorHandle`` for a Ray actor (``handle.ray_handle``)."""

    def __init__(
        self,
        ray_handle: Any,
        meta: ClassMeta | None,
        http_url: str | None = None,
        groups: dict[str, int] | None = None,
    ) -> None:
        # ActorHandle.__init__ registers with the local runtime: not here.  meta and groups are None
        # for a handle from get_actor (Ray tells neither): calls are then checked by Ray alone.
        self.__dict__.update(
            ray_handle=ray_handle,
            _groups=groups,
            _actor_id=ray_handle._actor_id.hex(),
            _meta=meta,
            _known_http_url=http_url,
            _http_ref=None,
        )

    @property  # type: ignore[misc,unused-ignore]
    def http_url(self) -> str | None:  # type: ignore[override]
        """The base URL of the actor's HTTP routes, on the host Ray placed it on (None without routes).

        On Ray the port is chosen inside the actor, so the first read waits until the actor has started.
        """
        url = self.__dict__["_known_http_url"]
        if url is None and self.__dict__["_http_ref"] is not None:
            try:
                url = ray.get(self.__dict__["_http_ref"])
            except Exception as exc:
                raise to_ours(exc) from None
            self.__dict__["_known_http_url"] = url
        elif url is None and self._has_routes():
            url = self.__dict__["_known_http_url"] = ray.get(self.ray_handle._actorloop_http_url.remote(None, 0))
        return cast("str | None", url)

    def _has_routes(self) -> bool:
        meta = self.__dict__["_meta"]
        if meta is not None:
            return bool(meta.has_routes)
        return HTTP_METHOD in self.ray_handle._method_shells

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and name not in BUILTIN_METHODS:
            raise AttributeError(name)
        shells = self.ray_handle._method_shells
        method_name = name
        if name == "ready" and "ready" not in shells:
            method_name = READY_NONE_METHOD if READY_NONE_METHOD in shells else READY_METHOD
        elif method_name not in shells or (method_name.startswith("_") and method_name not in BUILTIN_METHODS):
            public = sorted(m for m in shells if not m.startswith("_"))
            raise AttributeError(
                f"actor {self._class_name()} has no public method {name!r}; its methods: {', '.join(public) or 'none'}"
            )
        method = RayActorMethod(self, method_name, {})
        self.__dict__[name] = method
        return method

    def _class_name(self) -> str:
        meta = self.__dict__["_meta"]
        if meta is not None:
            return meta.class_name  # type: ignore[no-any-return]
        return self.ray_handle._ray_actor_creation_function_descriptor.class_name  # type: ignore[no-any-return]

    def __del__(self) -> None:
        pass

    def __reduce__(self) -> Any:
        d = self.__dict__
        return (RayActorHandle, (self.ray_handle, d["_meta"], d["_known_http_url"], d["_groups"]))

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name()}, ray {self._actor_id})"


class RayActorMethod:
    """``handle.method`` on Ray: ``.remote()`` returns actorloop refs; ``.options()`` as on the local node."""

    __slots__ = ("_handle", "_name", "_options")

    def __init__(self, handle: RayActorHandle, name: str, options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method in the Ray actor; returns an ObjectRef (a list of them with ``num_returns``)."""
        method = getattr(self._handle.ray_handle, self._name)
        if self._options:
            method = method.options(**self._options)
        args, kwargs = unwrap_args(args, kwargs)
        try:
            out = method.remote(*args, **kwargs)
        except Exception as exc:
            raise to_ours(exc) from None
        return wrap(out, f"{self._handle._class_name()}.{self._name}")

    def options(
        self,
        *,
        concurrency_group: str | None = None,
        num_returns: int | str | None = None,
        _generator_backpressure_num_objects: int | None = None,
        **ray_options: Any,
    ) -> RayActorMethod:
        """Pick options for one call, checked as on the local node, then handed to Ray."""
        where = f"{self._handle._class_name()}.{self._name}.options()"
        unknown = [key for key in ray_options if key not in IGNORED_METHOD_OPTIONS]
        if unknown:
            raise TypeError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}")
        options = dict(self._options)
        options.update(ray_options)
        if concurrency_group is not None:
            groups = self._handle.__dict__["_groups"]
            meta = self._handle.__dict__["_meta"]
            known = groups if groups is not None else ({} if meta is not None else None)
            if known is not None and concurrency_group not in known and concurrency_group != DEFAULT_GROUP:
                raise ValueError(
                    f"unknown concurrency group {concurrency_group!r} for {self._handle._class_name()}."
                    f"{self._name}; the actor declares: {sorted(known) or 'none'}"
                )
            if concurrency_group != DEFAULT_GROUP:
                options["concurrency_group"] = concurrency_group
        if num_returns is not None:
            options["num_returns"] = check_num_returns(num_returns, where)
        if _generator_backpressure_num_objects is not None:
            window = check_window(_generator_backpressure_num_objects, where)
            options["_generator_backpressure_num_objects"] = ray_window(window)
        return RayActorMethod(self._handle, self._name, options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._name in (READY_METHOD, READY_NONE_METHOD) and not args and not kwargs:
            return self.remote()
        raise TypeError(f"actor methods cannot be called directly; use .{self._name}.remote(...) instead")

    def __repr__(self) -> str:
        return f"ActorMethod({self._handle._class_name()}.{self._name}, ray)"


def kill(handle: RayActorHandle, no_restart: bool, deadline_seconds: float = 30.0) -> None:
    """``ray.kill``, then wait until the actor is gone (Ray's kill returns at once; ours returns once it ended)."""
    ray.kill(handle.ray_handle, no_restart=no_restart)
    if not no_restart:
        return
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            ray.get(handle.ray_handle.__ray_ready__.remote(), timeout=deadline_seconds)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            break
        time.sleep(0.02)  # a call that slipped in before the kill arrived: ask again
