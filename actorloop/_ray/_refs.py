"""``RayRef``: an ``actorloop.ObjectRef`` that stands for a Ray ``ObjectRef``.

It is an instance of ``actorloop.ObjectRef`` (so ``isinstance`` checks and
type hints hold on both backends), but unlike a local ref it belongs to no
event loop: it answers ``None`` to asyncio's future test, so ``await``,
``asyncio.gather``, ``asyncio.wait_for`` and ``ensure_future`` wrap it in a
task of the running loop, whose ``__await__`` awaits Ray's ref there.  The
``asyncio.Future`` base is never initialised; every method a caller uses is
overridden here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Generator, TypeVar

import ray

from .._ref import ObjectRef
from ._errors import to_ours

T = TypeVar("T")


class RayRef(ObjectRef[T]):
    """An actorloop ref for a Ray ``ObjectRef`` (``ref.ray_ref``)."""

    __slots__ = ("ray_ref",)

    #: asyncio's "is this a future?" test reads this; None means: wrap me (see the module docstring).
    _asyncio_future_blocking = None  # type: ignore[assignment,misc,override,unused-ignore]

    def __init__(self, ray_ref: ray.ObjectRef[Any]) -> None:  # no Future.__init__: no loop owns this ref
        self.ray_ref = ray_ref

    def __await__(self) -> Generator[Any, None, T]:
        return self._await().__await__()

    __iter__ = __await__

    async def _await(self) -> T:
        try:
            return await self.ray_ref  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            # The awaiting task was cancelled (wait_for, a cancelled gather): the remote call is
            # cancelled too, as on the local node.
            _cancel_quietly(self.ray_ref)
            raise
        except Exception as exc:
            raise to_ours(exc) from None

    # -- the Future methods a caller may use ---------------------------------------------

    def done(self) -> bool:
        """Whether the value (or error) is ready, without waiting."""
        ready, _ = ray.wait([self.ray_ref], num_returns=1, timeout=0, fetch_local=False)
        return bool(ready)

    def result(self) -> T:
        """The value, waiting for it (as ``actorloop.get(ref)``)."""
        try:
            return ray.get(self.ray_ref)  # type: ignore[no-any-return]
        except Exception as exc:
            raise to_ours(exc) from None

    def exception(self) -> BaseException | None:  # type: ignore[override,unused-ignore]
        """The call's error (mapped to actorloop's classes), or None; waits for the call."""
        try:
            ray.get(self.ray_ref)
        except Exception as exc:
            return to_ours(exc)
        return None

    def cancelled(self) -> bool:
        return False

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the remote call (Ray's ``ray.cancel``); the ref then raises ``TaskCancelledError``."""
        _cancel_quietly(self.ray_ref)
        return True

    def get_loop(self) -> asyncio.AbstractEventLoop:
        raise RuntimeError("a ref of the Ray backend belongs to no event loop; await it in any loop")

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        """Call ``fn(self)`` when the call finishes, on the running loop (or Ray's thread without one)."""
        loop = asyncio._get_running_loop()
        future = self.ray_ref.future()
        if loop is None:
            future.add_done_callback(lambda _: fn(self))
        else:
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(fn, self))

    def _result_now(self) -> T:
        return self.result()

    def future(self) -> concurrent.futures.Future[T]:
        """A ``concurrent.futures.Future`` completed with the value, or with the error mapped to actorloop's."""
        out: concurrent.futures.Future[T] = concurrent.futures.Future()

        def copy(inner: concurrent.futures.Future[Any]) -> None:
            try:
                out.set_result(inner.result())
            except BaseException as exc:
                out.set_exception(to_ours(exc))

        self.ray_ref.future().add_done_callback(copy)
        return out

    def hex(self) -> str:
        """The Ray object id, in hex."""
        return self.ray_ref.hex()  # type: ignore[no-any-return,unused-ignore]

    def __repr__(self) -> str:
        return f"ObjectRef(ray {self.ray_ref.hex()})"

    def __reduce__(self) -> Any:
        # Inside a Ray call's arguments or results Ray carries the inner ref (nested refs work on Ray).
        return (RayRef, (self.ray_ref,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RayRef) and other.ray_ref == self.ray_ref

    def __hash__(self) -> int:
        return hash(self.ray_ref)

    def __del__(self) -> None:
        pass


def _cancel_quietly(ray_ref: ray.ObjectRef[Any]) -> None:
    try:
        ray.cancel(ray_ref)
    except Exception:  # a put() ref, a finished call, a shut-down Ray: nothing to cancel
        pass


def wrap(out: Any) -> Any:
    """What a Ray ``.remote()`` returned, as actorloop refs: a ref, a list of refs, or None.

    This is the one place where a Ray result becomes ours: a streaming
    generator (``ray.ObjectRefGenerator``) is to be wrapped here once actorloop
    has streams.
    """
    if isinstance(out, ray.ObjectRef):
        return RayRef(out)
    if out is None:
        return None
    if isinstance(out, list):
        return [RayRef(r) for r in out]
    if isinstance(out, ray.ObjectRefGenerator):
        raise NotImplementedError(
            "generator methods (num_returns='streaming') are not supported by actorloop's Ray backend yet"
        )
    return out


def unwrap_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Top-level ``RayRef`` arguments become Ray's refs, which Ray replaces by their values (as the local node does).

    A local node's ref cannot travel to Ray: it is refused with a clear error.
    """
    if any(isinstance(a, ObjectRef) for a in args):
        args = tuple(_unwrap(a) for a in args)
    if any(isinstance(v, ObjectRef) for v in kwargs.values()):
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
    return args, kwargs


def _unwrap(value: Any) -> Any:
    if isinstance(value, RayRef):
        return value.ray_ref
    if isinstance(value, ObjectRef):
        raise TypeError(
            "this ObjectRef comes from actorloop's local node, not from the Ray backend; "
            "pass its value (actorloop.get(ref)) or make the call on Ray"
        )
    return value
