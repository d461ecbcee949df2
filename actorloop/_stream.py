"""ObjectRefGenerator: the caller's side of a stream (a generator method's items, one by one).

A stream is a call whose answer comes many times (see ``_worker`` for the
actor's side): the actor sends the items its generator yields, in order,
and ends with an ordinary result (``None``, or the generator's error).
Flow control is by credit: the caller tells the actor how many items it has
*consumed* (handed out by ``next``/``__anext__``/``values()``), and the
actor's generator stays suspended at its ``yield`` while it is ``window``
items ahead of that count.  Memory stays bounded on both sides however fast
the generator and however slow the consumer.

``StreamState`` lives on the event loop that made the call (the connection
delivers items to it there); consumers may be on that loop, on another
loop, or in a thread without a loop (``next(gen)`` blocks that thread).
They wait through one-shot *wakers* that the loop calls when something
arrives; registering a waker and then re-checking the state cannot miss an
arrival, because the loop changes the state before it reads the wakers.

Dropping the ``ObjectRefGenerator`` before its end, ``actorloop.cancel(gen)``,
or cancelling a task that waits in ``__anext__`` cancels the call: the
generator in the actor gets ``GeneratorExit`` (or ``CancelledError``) and its
``finally`` runs.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from asyncio import events
from typing import Any, AsyncIterator, Callable, Generic, Iterator, Protocol, TypeVar

from ._entry import entry_for
from ._ref import FALLBACK_POLL_SECONDS, ObjectRef, _check_resolvable, make_ref
from .exceptions import TaskCancelledError

T = TypeVar("T")

__all__ = ["DEFAULT_WINDOW", "ObjectRefGenerator", "StreamOwner", "StreamState", "StreamValues", "check_window"]

#: Items a generator may run ahead of its consumer unless the call says otherwise
#: (``.options(_generator_backpressure_num_objects=N)``).
DEFAULT_WINDOW = 128
#: ``_generator_backpressure_num_objects=-1`` (Ray's "no backpressure"): a window nobody reaches.
UNBOUNDED_WINDOW = 1 << 62

_get_running_loop = events._get_running_loop


def check_window(value: Any, where: str) -> int:
    """``_generator_backpressure_num_objects``: an int >= 1, or -1 for no limit (as in Ray)."""
    if isinstance(value, bool) or not isinstance(value, int) or not (value >= 1 or value == -1):
        raise ValueError(
            f"{where}: _generator_backpressure_num_objects must be an int >= 1 (items the generator may run "
            f"ahead of its consumer) or -1 (no limit), got {value!r}"
        )
    return UNBOUNDED_WINDOW if value == -1 else value


class StreamOwner(Protocol):
    """What a stream needs of the connection that carries it."""

    def cancel_call(self, call_id: int) -> None:
        """Cancel the call in the actor (any thread)."""
        ...

    def ack_stream(self, call_id: int, consumed: int) -> None:
        """Tell the actor how many items were consumed so far (on the stream's loop)."""
        ...


def _set_none_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _release(lock: threading.Lock) -> None:
    try:
        lock.release()
    except RuntimeError:  # already released
        pass


class StreamState:
    """What arrived of one stream; the connection feeds it on its loop, consumers read it from anywhere."""

    __slots__ = (
        "loop",
        "entry",
        "owner",
        "call_id",
        "window",
        "ack_every",
        "items",
        "ended",
        "error",
        "error_taken",
        "consumed",
        "acked",
        "wakers",
        "completed",
        "where",
        "rename",
        "on_end",
        "watched",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        owner: StreamOwner,
        call_id: int,
        window: int,
        completed: ObjectRef[Any],
        where: str,
    ) -> None:
        self.loop = loop
        # Looked up now: a generator's finalizer puts here, where making one could take a lock.
        self.entry = entry_for(loop)
        self.owner = owner
        self.call_id = call_id
        self.window = window
        # Credit goes back in steps of a quarter window: few acknowledgements, and the
        # producer rarely waits for one.
        self.ack_every = max(1, min(window, 1 << 20) // 4)
        self.items: collections.deque[Any] = collections.deque()
        self.ended = False
        self.error: BaseException | None = None
        self.error_taken = False
        self.consumed = 0
        self.acked = 0
        self.wakers: list[Callable[[], Any]] = []
        self.completed = completed
        self.where = where
        #: Maps an error before the consumer sees it (remote functions name their function, not the worker).
        self.rename: Callable[[BaseException], BaseException] | None = None
        #: Called once when the stream ends, however it ends (remote functions: the worker's load).
        self.on_end: Callable[[], Any] | None = None
        #: The last task that waited for this stream: if it ends cancelled, so does the stream.
        self.watched: asyncio.Task[Any] | None = None

    # -- fed by the connection, on the loop ---------------------------------------------

    def deliver(self, items: list[Any]) -> None:
        if self.ended:
            return
        self.items.extend(items)
        if self.wakers:
            self._wake()

    def finish(self, completed: ObjectRef[Any]) -> None:
        """The call ended (its result arrived, or it failed here): no more items come."""
        if self.ended:
            return
        if completed.done() and not completed.cancelled():
            error = completed.exception()  # read here: the stream reports it, not the completion ref
            if error is not None:
                self.error = self.rename(error) if self.rename is not None else error
        self.ended = True
        self._ended()

    def _ended(self) -> None:
        on_end = self.on_end
        if on_end is not None:
            self.on_end = None
            on_end()
        self._wake()

    def _wake(self) -> None:
        wakers = self.wakers
        self.wakers = []
        for waker in wakers:
            waker()

    # -- consuming, from any thread ------------------------------------------------------

    def ready(self) -> bool:
        """Whether taking the next item would not wait."""
        return bool(self.items) or self.ended

    def exhausted(self) -> bool:
        return self.ended and not self.items and (self.error is None or self.error_taken)

    def took(self) -> None:
        """An item was handed to the consumer: count it, and give credit back now and then."""
        self.consumed += 1
        if self.consumed - self.acked >= self.ack_every:
            self.send_ack()

    def send_ack(self) -> None:
        if not self.ended:
            self.acked = self.consumed
            if _get_running_loop() is self.loop:
                self.owner.ack_stream(self.call_id, self.consumed)
            else:
                self.entry.put(self.owner.ack_stream, self.call_id, self.consumed)

    def take_end(self) -> BaseException | None:
        """At the end (nothing queued): the error to hand out once, or None for a plain end."""
        if self.error is not None and not self.error_taken:
            self.error_taken = True
            return self.error
        return None

    async def wait_async(self) -> None:
        """Wait in the running loop (any loop) until ``ready()``; a cancelled wait cancels the stream."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is not None and task is not self.watched:
            # A task cancelled anywhere (not only while it waits here) stops the stream it consumed,
            # even if a reference cycle (its traceback, say) keeps the generator alive.
            self.watched = task
            task.add_done_callback(self._consumer_done)
        fut: asyncio.Future[None] = loop.create_future()
        if loop is self.loop:
            self.wakers.append(lambda: _set_none_if_pending(fut))
        else:
            _check_resolvable(self.loop)
            here = entry_for(loop)
            self.wakers.append(lambda: here.put(_set_none_if_pending, fut))
        if self.ready():
            return
        try:
            await fut
        except asyncio.CancelledError:
            self.cancel_soon()
            raise

    def _consumer_done(self, task: asyncio.Task[Any]) -> None:
        if self.watched is task:
            self.watched = None
        if task.cancelled() and not self.ended:
            self.cancel_soon()

    def wait_sync(self, timeout: float | None) -> bool:
        """Block this thread until ``ready()`` or ``timeout``; whether it is ready."""
        if self.ready():
            return True
        running = _get_running_loop()
        if running is self.loop:
            raise RuntimeError(
                f"next() on the ObjectRefGenerator of {self.where} would block the event loop that delivers its "
                "items (and deadlock it); use `async for ref in gen`, `await gen.__anext__()`, or "
                "`async for value in gen.values()` in async code"
            )
        _check_resolvable(self.loop)
        lock = threading.Lock()
        lock.acquire()
        self.wakers.append(lambda: _release(lock))
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready():
            left = FALLBACK_POLL_SECONDS
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
            if left <= 0:
                return False
            lock.acquire(timeout=left)
        return True

    # -- cancelling ----------------------------------------------------------------------

    def cancel_soon(self, error: BaseException | None = None) -> None:
        """Cancel the call from any thread or finalizer (only posts to the loop)."""
        if self.ended:
            return
        if _get_running_loop() is self.loop:
            self.cancel(error)
        else:
            self.entry.put(self.cancel, error)

    def cancel(self, error: BaseException | None = None) -> None:
        """On the loop: cancel the call in the actor; what arrived stays, then ``error`` (if any) ends it."""
        if self.ended:
            return
        self.owner.cancel_call(self.call_id)
        completed = self.completed
        if not completed.done():
            completed.set_exception(
                TaskCancelledError(f"the stream of {self.where} was cancelled") if error is None else error
            )
            completed._log_traceback = False  # a dropped cancelled ref is no error
            completed._wake_waiter()
        self.error = error
        self.ended = True
        self._ended()


def _item_ref(loop: asyncio.AbstractEventLoop, value: Any) -> ObjectRef[Any]:
    ref: ObjectRef[Any] = make_ref(loop, None, 0)
    # A fresh future has no callbacks, so settling it from any thread schedules nothing on its loop.
    ref.set_result(value)
    return ref


def _error_ref(loop: asyncio.AbstractEventLoop, error: BaseException) -> ObjectRef[Any]:
    ref: ObjectRef[Any] = make_ref(loop, None, 0)
    ref.set_exception(error)
    return ref


class ObjectRefGenerator(Generic[T]):
    """What ``.remote()`` of a generator method returns: one ``ObjectRef`` per item yielded, in order.

    Works as Ray's ``ObjectRefGenerator``: ``for ref in gen`` / ``next(gen)``
    in sync code, ``async for ref in gen`` / ``await gen.__anext__()`` in
    async code, ``actorloop.wait([gen])`` (ready when ``next`` would not
    block), ``gen.completed()``, ``actorloop.cancel(gen)``.  An error the
    generator raised comes as a ref that raises it, after the items before it.

    ``gen.values()`` skips the refs: it iterates over the items themselves
    (``async for`` or ``for``) and raises the generator's error where it
    happened.  It is the fast path.

    Example::

        @actorloop.remote
        class Tokens:
            async def stream(self, n):
                for i in range(n):
                    yield f"token-{i}"

        t = Tokens.remote()
        for ref in t.stream.remote(3):                 # Ray's form
            print(actorloop.get(ref))
        async for token in t.stream.remote(3).values():   # the fast path (async code)
            print(token)

    The actor's generator runs at most ``_generator_backpressure_num_objects``
    items (default ``DEFAULT_WINDOW``) ahead of the consumer.  Dropping the
    generator before its end cancels it in the actor.  Not thread-safe, and
    not picklable (as in Ray).
    """

    __slots__ = ("_state", "__weakref__")

    def __init__(self, state: StreamState) -> None:
        self._state = state

    # -- Ray's interface ----------------------------------------------------------------

    def __iter__(self) -> ObjectRefGenerator[T]:
        return self

    def __next__(self) -> ObjectRef[T]:
        """The ref of the next item, blocking this thread until it arrived; StopIteration at the end."""
        state = self._state
        if not state.items and not state.ended:
            state.wait_sync(None)
        return self._next_now(StopIteration)

    def __aiter__(self) -> ObjectRefGenerator[T]:
        return self

    async def __anext__(self) -> ObjectRef[T]:
        """The ref of the next item, once it arrived; StopAsyncIteration at the end."""
        state = self._state
        if not state.items and not state.ended:
            await state.wait_async()
        return self._next_now(StopAsyncIteration)

    def _next_now(self, stop: type[Exception]) -> ObjectRef[T]:
        state = self._state
        if state.items:
            value = state.items.popleft()
            state.took()
            return _item_ref(state.loop, value)
        error = state.take_end()
        if error is not None:
            return _error_ref(state.loop, error)
        raise stop

    def completed(self) -> ObjectRef[None]:
        """A ref that resolves (to None) once the generator finished in the actor, or raises its error."""
        return self._state.completed

    def is_finished(self) -> bool:
        """Whether the generator finished and every item (and its error, if any) was taken."""
        return self._state.exhausted()

    def next_ready(self) -> bool:
        """Whether ``next(gen)`` would return at once (an item, the error, or StopIteration)."""
        return self._state.ready()

    def close(self) -> None:
        """Stop the generator in the actor (its ``finally`` runs); later ``next`` raises StopIteration."""
        self._state.cancel_soon()

    # -- the fast path ----------------------------------------------------------------------

    def values(self) -> StreamValues[T]:
        """The items themselves, without a ref each: ``async for v in gen.values()`` or ``for v in gen.values()``.

        The generator's error is raised where it happened, after the items before it.
        """
        return StreamValues(self)

    # -- the rest -------------------------------------------------------------------------

    def _cancel_by_user(self) -> None:
        """``actorloop.cancel(gen)`` (on the stream's loop): later ``next`` gives TaskCancelledError, then stops."""
        state = self._state
        state.cancel(TaskCancelledError(f"the stream of {state.where} was cancelled with actorloop.cancel()"))

    def _ready_ref(self) -> ObjectRef[None]:
        """A ref that resolves once ``next_ready()`` (for ``actorloop.wait``; call on the stream's loop)."""
        state = self._state
        probe: ObjectRef[None] = make_ref(state.loop, None, 0)

        def settle() -> None:
            if not probe.done():
                probe.set_result(None)
                probe._wake_waiter()

        if state.ready():
            settle()
        else:
            state.wakers.append(settle)
        return probe

    def __del__(self) -> None:
        try:
            state = self._state
        except AttributeError:
            return
        if not state.ended:
            state.cancel_soon()  # only posts to the loop: safe in a finalizer

    def __reduce__(self) -> Any:
        raise TypeError(
            "an ObjectRefGenerator cannot be pickled (as in Ray); consume it where it was made and pass the "
            "values (or their refs) on"
        )

    def __repr__(self) -> str:
        state = self._state
        status = "finished" if state.ended else "running"
        return f"ObjectRefGenerator({state.where}, {status}, {len(state.items)} ready)"


class StreamValues(Generic[T]):
    """``gen.values()``: the items of a stream themselves (see ``ObjectRefGenerator.values``)."""

    __slots__ = ("_gen", "_state")

    def __init__(self, gen: ObjectRefGenerator[T]) -> None:
        # Holding the generator keeps the stream alive while this iterator lives; dropping both cancels it.
        self._gen = gen
        self._state = gen._state

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        state = self._state
        items = state.items
        if not items:
            if not state.ended:
                await state.wait_async()
            if not items:
                error = state.take_end()
                if error is not None:
                    raise error
                raise StopAsyncIteration
        value = items.popleft()
        # state.took(), inlined: this is every item's path.
        state.consumed += 1
        if state.consumed - state.acked >= state.ack_every:
            state.send_ack()
        return value  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        state = self._state
        items = state.items
        if not items:
            if not state.ended:
                state.wait_sync(None)
            if not items:
                error = state.take_end()
                if error is not None:
                    raise error
                raise StopIteration
        value = items.popleft()
        state.took()
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the generator in the actor (as ``ObjectRefGenerator.close``)."""
        self._gen.close()

    def __repr__(self) -> str:
        return f"StreamValues({self._gen!r})"
