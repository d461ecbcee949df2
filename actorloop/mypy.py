"""A mypy plugin that types actorloop code written as the README writes it.

Enable it in the project's mypy configuration::

    [tool.mypy]              # pyproject.toml (or plugins = actorloop.mypy under [mypy] in mypy.ini)
    plugins = ["actorloop.mypy"]

What it adds to mypy (docs/typing.md has the whole picture):

- ``@actorloop.remote`` on a class gives the class ``remote`` and ``options``
  (mypy keeps a decorated class's own type), so ``Counter.remote(...)`` checks
  its arguments against ``Counter.__init__`` and is an ``ActorHandle[Counter]``.
- ``handle.incr`` on an ``ActorHandle[Counter]`` is an ``ActorMethod[P, R]``
  with ``incr``'s parameters and result (an ``async def``'s result
  unwrapped), so ``handle.incr.remote(1)`` is checked and is ``ObjectRef[int]``;
  an unknown method is an error.
- ``ActorClass[T].remote(...)`` (Ray's typed pattern, and ``.options(...)``)
  checks its arguments against ``T``'s constructor, and ``ActorProxy[T]`` is
  ``ActorHandle[T]``.

mypy imports this module; actorloop itself never does.
"""

from __future__ import annotations

from typing import Callable

from mypy import errorcodes
from mypy.nodes import ARG_STAR, ARG_STAR2, Argument, TypeInfo, Var
from mypy.plugin import (
    AnalyzeTypeContext,
    AttributeContext,
    ClassDefContext,
    MethodSigContext,
    Plugin,
)
from mypy.plugins.common import add_method_to_class
from mypy.subtypes import find_member
from mypy.typevars import fill_typevars_with_any

try:
    from mypy.typeops import type_object_type
except ImportError:  # older mypy kept it in checkmember
    from mypy.checkmember import type_object_type  # type: ignore[attr-defined,no-redef]
from mypy.types import (
    AnyType,
    CallableType,
    FunctionLike,
    Instance,
    Parameters,
    Type,
    TypeOfAny,
    UnionType,
    get_proper_type,
)

_HANDLES = "actorloop._handles"
_REMOTE = f"{_HANDLES}.remote"
_ACTOR_HANDLE = f"{_HANDLES}.ActorHandle"
_ACTOR_METHOD = f"{_HANDLES}.ActorMethod"
_ACTOR_PROXY = f"{_HANDLES}.ActorProxy"
_REMOTE_METHOD = f"{_HANDLES}._RemoteMethod"
_WITH_OPTIONS = f"{_HANDLES}._ActorClassWithOptions"
#: Handle classes whose ``__getattr__`` gives the actor's methods.
_HANDLE_CLASSES = (_ACTOR_HANDLE, f"{_HANDLES}._ProxyHandle")
#: Actor-class types whose ``remote`` starts an actor of their first type argument.
_CLASS_TYPES = (
    f"{_HANDLES}.ActorClass",
    _WITH_OPTIONS,
    f"{_HANDLES}._TypedActorClass",
    f"{_HANDLES}._TypedActorClassWithOptions",
)
#: Whose ``remote`` takes the parameters of a method or function: each may also be given as a ref.
_CALL_TYPES = (_ACTOR_METHOD, f"{_HANDLES}._ActorMethodOfReturns", f"{_HANDLES}._TypedRemoteFunction")
_OBJECT_REF = "actorloop._ref.ObjectRef"
#: Methods every actor has (``handle.ready()`` among them), from actorloop._meta.
_BUILTIN_METHODS = frozenset({"__ray_ready__", "__ray_call__", "__ray_terminate__", "ready"})
#: Marks a class decorated with ``@actorloop.remote`` (in its TypeInfo's metadata).
_KEY = "actorloop"


class ActorloopPlugin(Plugin):
    """The hooks; each returns None for names that are not actorloop's."""

    def get_class_decorator_hook_2(self, fullname: str) -> Callable[[ClassDefContext], bool] | None:
        return _add_actor_class_methods if fullname == _REMOTE else None

    def get_method_signature_hook(self, fullname: str) -> Callable[[MethodSigContext], FunctionLike] | None:
        owner, _, name = fullname.rpartition(".")
        if name != "remote":
            return None
        if owner in _CLASS_TYPES:
            return lambda ctx: _actor_class_remote(ctx, self._instance)
        if owner in _CALL_TYPES:
            return lambda ctx: _refs_accepted(ctx.default_signature, self._instance)
        sym = self.lookup_fully_qualified(owner)
        if sym is not None and isinstance(sym.node, TypeInfo) and _KEY in sym.node.metadata:
            info = sym.node
            return lambda ctx: _remote_signature(ctx, info, self._instance)
        return None

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        owner, _, name = fullname.rpartition(".")
        if owner in _HANDLE_CLASSES:
            return lambda ctx: _handle_attribute(ctx, name, self._instance)
        return None

    def get_type_analyze_hook(self, fullname: str) -> Callable[[AnalyzeTypeContext], Type] | None:
        return _proxy_is_handle if fullname == _ACTOR_PROXY else None

    def _instance(self, fullname: str, args: list[Type]) -> Instance:
        # Not the checker's named_generic_type: it finds only names that a parent package imports.
        sym = self.lookup_fully_qualified(fullname)
        assert sym is not None and isinstance(sym.node, TypeInfo), fullname
        return Instance(sym.node, args)


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point: the plugin class."""
    return ActorloopPlugin


def _add_actor_class_methods(ctx: ClassDefContext) -> bool:
    """``@actorloop.remote`` on a class: give it ``remote`` and ``options`` (typed in the checker)."""
    info = ctx.cls.info
    instance = fill_typevars_with_any(info)
    for name in (_ACTOR_HANDLE, _WITH_OPTIONS):
        sym = ctx.api.lookup_fully_qualified_or_none(name)
        if sym is None or not isinstance(sym.node, TypeInfo):
            return False  # actorloop._handles not analysed yet: mypy calls again
    handle = ctx.api.named_type(_ACTOR_HANDLE, [instance])
    with_options = ctx.api.named_type(_WITH_OPTIONS, [instance])
    any_type = AnyType(TypeOfAny.explicit)
    star_args = [
        Argument(Var("args"), any_type, None, ARG_STAR),
        Argument(Var("kwargs"), any_type, None, ARG_STAR2),
    ]
    info.metadata[_KEY] = {"actor_class": True}
    add_method_to_class(ctx.api, ctx.cls, "remote", star_args, handle, is_classmethod=True)
    add_method_to_class(
        ctx.api,
        ctx.cls,
        "options",
        [Argument(Var("options"), any_type, None, ARG_STAR2)],
        with_options,
        is_classmethod=True,
    )
    return True


#: Makes ``Instance`` of an actorloop class by its full name (the plugin's ``_instance``).
MakeInstance = Callable[[str, list[Type]], Instance]


def _actor_class_remote(ctx: MethodSigContext, make: MakeInstance) -> FunctionLike:
    """``ActorClass[T].remote`` (and ``.options(...).remote``): ``T``'s constructor's parameters."""
    own = get_proper_type(ctx.type)
    if isinstance(own, Instance) and own.args:
        target = get_proper_type(own.args[0])
        if isinstance(target, Instance):
            return _remote_signature(ctx, target.type, make)
    return ctx.default_signature


def _remote_signature(ctx: MethodSigContext, info: TypeInfo, make: MakeInstance) -> FunctionLike:
    """``.remote`` of an actor class: the parameters of its constructor, an ``ActorHandle`` of it."""
    constructor = get_proper_type(type_object_type(info, lambda name: ctx.api.named_generic_type(name, [])))
    if not isinstance(constructor, CallableType):  # an overloaded constructor: any arguments
        return ctx.default_signature
    handle = make(_ACTOR_HANDLE, [constructor.ret_type])
    signature = ctx.default_signature.copy_modified(
        arg_types=constructor.arg_types,
        arg_kinds=constructor.arg_kinds,
        arg_names=constructor.arg_names,
        ret_type=handle,
        variables=constructor.variables,
    )
    return _refs_accepted(signature, make)


def _refs_accepted(signature: FunctionLike, make: MakeInstance) -> FunctionLike:
    """Each parameter ``X`` of a ``.remote()`` also takes an ``ObjectRef[X]``: a ref passed as an
    argument is replaced by its value before the call runs."""
    if not isinstance(signature, CallableType):
        return signature
    arg_types = [
        t if isinstance(get_proper_type(t), AnyType) else UnionType.make_union([t, make(_OBJECT_REF, [t])])
        for t in signature.arg_types
    ]
    return signature.copy_modified(arg_types=arg_types)


def _handle_attribute(ctx: AttributeContext, name: str, make: MakeInstance) -> Type:
    """``handle.name``: ``ActorMethod[P, R]`` of the actor class's method ``name``, or an error."""
    handle = get_proper_type(ctx.type)
    if not isinstance(handle, Instance) or not handle.args:
        return ctx.default_attr_type
    actor = get_proper_type(handle.args[0])
    if not isinstance(actor, Instance):  # ActorHandle[Any], from get_actor(): nothing to check
        return ctx.default_attr_type
    if handle.type.get(name) is not None:
        return ctx.default_attr_type  # the handle's own attribute (http_url, ...), not __getattr__
    member = None if name.startswith("_") else actor.type.get(name)
    if member is None:
        if name in _BUILTIN_METHODS:
            return make(_ACTOR_METHOD, [Parameters([], [], []), AnyType(TypeOfAny.explicit)])
        ctx.api.fail(
            f'Actor class "{actor.type.name}" has no method "{name}"', ctx.context, code=errorcodes.ATTR_DEFINED
        )
        return AnyType(TypeOfAny.from_error)
    found = find_member(name, actor, actor)
    member_type = get_proper_type(found) if found is not None else None
    if isinstance(member_type, Instance) and member_type.type.fullname == _REMOTE_METHOD:
        return member_type.args[2]  # decorated with @actorloop.method: what it says a handle gives
    if isinstance(member_type, CallableType):
        params = Parameters(
            member_type.arg_types, member_type.arg_kinds, member_type.arg_names, variables=member_type.variables
        )
        return make(_ACTOR_METHOD, [params, _awaited(member_type.ret_type)])
    if member_type is None or isinstance(member_type, (AnyType, FunctionLike)):
        return ctx.default_attr_type  # not known yet, or overloaded: any arguments
    ctx.api.fail(
        f'"{name}" of actor class "{actor.type.name}" is not a method; actors are called through methods',
        ctx.context,
        code=errorcodes.ATTR_DEFINED,
    )
    return AnyType(TypeOfAny.from_error)


def _awaited(result: Type) -> Type:
    """What an ``async def`` method's call resolves to: ``R`` of its ``Coroutine[Any, Any, R]``."""
    proper = get_proper_type(result)
    if isinstance(proper, Instance) and proper.type.fullname == "typing.Coroutine" and len(proper.args) == 3:
        return proper.args[2]
    return result


def _proxy_is_handle(ctx: AnalyzeTypeContext) -> Type:
    """``ActorProxy[T]`` is ``ActorHandle[T]`` under the plugin: the handle types each method itself."""
    args = [ctx.api.analyze_type(arg) for arg in ctx.type.args] or [AnyType(TypeOfAny.special_form)]
    return ctx.api.named_type(_ACTOR_HANDLE, args[:1])
