"""``RayRef``: an ``actorloop.ObjectRef`` that stands for a Ray ``ObjectRef``;
``RayObjectRefGenerator``: an ``actorloop.ObjectRefGenerator`` for Ray's.

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
from typing import Any, AsyncIterator, Generator, Iterator, TypeVar

import ray

from .._ref import ObjectRef
from .._stream import ObjectRefGenerator, StreamValues
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


class RayObjectRefGenerator(ObjectRefGenerator[T]):
    """An ``actorloop.ObjectRefGenerator`` for a Ray ``ObjectRefGenerator`` (``gen.ray_gen``).

    Each step gives a ``RayRef`` of the next item (``for``, ``next``, ``async
    for``, ``__anext__``); ``values()`` gives the items themselves.  An error
    of the generator (or the actor's death) comes at its position, as a ref
    that raises it (``values()`` raises it), mapped to actorloop's classes.
    The base class's local stream state is never made; every method a caller
    uses is overridden here.
    """

    __slots__ = ("ray_gen", "_where", "_ended")

    def __init__(self, ray_gen: Any, where: str = "a generator") -> None:  # no base __init__: no local state
        self.ray_gen = ray_gen
        self._where = where
        #: Set once the consumer saw the end (StopIteration) or cancelled: dropping it then cancels nothing.
        self._ended = False

    # -- Ray's interface ----------------------------------------------------------------

    def __iter__(self) -> RayObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        """The ref of the next item, blocking this thread until it arrived; StopIteration at the end."""
        try:
            ref = next(self.ray_gen)
        except StopIteration:
            self._ended = True
            raise
        except Exception as exc:
            raise to_ours(exc) from None
        return RayRef(ref)

    def __aiter__(self) -> RayObjectRefGenerator[T]:
        return self

    async def __anext__(self) -> ObjectRef[T]:
        """The ref of the next item, once it arrived; StopAsyncIteration at the end."""
        try:
            ref = await self.ray_gen.__anext__()
        except StopAsyncIteration:
            self._ended = True
            raise
        except asyncio.CancelledError:
            # The consuming task was cancelled: so is the stream, as on the local node.
            self.close()
            raise
        except Exception as exc:
            raise to_ours(exc) from None
        return RayRef(ref)

    def completed(self) -> ObjectRef[None]:
        """A ref that resolves (to None) once the generator finished in the actor, or raises its error."""
        return RayRef(self.ray_gen.completed())

    def is_finished(self) -> bool:
        """Whether the generator finished and every item (and its error, if any) was taken."""
        return bool(self.ray_gen.is_finished())

    def next_ready(self) -> bool:
        """Whether ``next(gen)`` would return at once (an item, the error, or StopIteration)."""
        return bool(self.ray_gen.next_ready())

    def close(self) -> None:
        """Stop the generator in the actor (``ray.cancel``; its ``finally`` runs)."""
        if not self._ended:
            self._ended = True
            _cancel_quietly(self.ray_gen)

    def values(self) -> StreamValues[T]:
        """The items themselves: ``for v in gen.values()`` or ``async for v in gen.values()``.

        The generator's error is raised where it happened, after the items before it.
        """
        return RayStreamValues(self)

    # -- the rest -------------------------------------------------------------------------

    def _cancel_by_user(self) -> None:
        self._ended = True
        ray.cancel(self.ray_gen)

    def __del__(self) -> None:
        # Dropping an unfinished generator stops it in the actor, as on the local node (Ray itself
        # would run the generator on to its end, held back only by backpressure).
        try:
            ended = self._ended
        except AttributeError:
            return
        if not ended and ray.is_initialized():
            _cancel_quietly(self.ray_gen)

    def __reduce__(self) -> Any:
        raise TypeError(
            "an ObjectRefGenerator cannot be pickled (as in Ray); consume it where it was made and pass the "
            "values (or their refs) on"
        )

    def __repr__(self) -> str:
        status = "finished" if self._ended else "running"
        return f"ObjectRefGenerator({self._where}, ray, {status})"


class RayStreamValues(StreamValues[T]):
    """``gen.values()`` on Ray: each item's value, fetched as its ref arrives; errors raised at their position."""

    __slots__ = ()

    def __init__(self, gen: RayObjectRefGenerator[T]) -> None:  # no base __init__: no local state
        self._gen = gen

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        ref = await self._gen.__anext__()
        return await ref

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._gen).result()

    def close(self) -> None:
        self._gen.close()

    def __repr__(self) -> str:
        return f"StreamValues({self._gen!r})"


def wrap(out: Any, where: str = "a call") -> Any:
    """What a Ray ``.remote()`` returned, as actorloop's: a ref, a list of refs, None, or a stream.

    This is the one place where a Ray result becomes ours.
    """
    if isinstance(out, ray.ObjectRef):
        return RayRef(out)
    if out is None:
        return None
    if isinstance(out, list):
        return [RayRef(r) for r in out]
    if isinstance(out, ray.ObjectRefGenerator):
        return RayObjectRefGenerator(out, where)
    return out


def ray_waitable(item: Any, what: str) -> Any:
    """The Ray object behind an actorloop ref or stream of this backend (for ``wait``, ``cancel``)."""
    if isinstance(item, RayRef):
        return item.ray_ref
    if isinstance(item, RayObjectRefGenerator):
        return item.ray_gen
    if isinstance(item, (ObjectRef, ObjectRefGenerator)):
        raise TypeError(
            f"actorloop.{what}(): this {type(item).__name__} comes from actorloop's local node, not from Ray"
        )
    raise TypeError(f"actorloop.{what}() takes ObjectRefs and ObjectRefGenerators, got {type(item).__name__}")


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
