"""ActorPool: spread calls over a fixed set of actors, Ray's interface plus async.

How it works: every submitted value becomes an *item* with an index in
submission order. An item waits in a queue until one of the pool's actors has
a free slot (``max_calls_per_actor`` slots each), then ``fn(actor, value)``
launches the call and the item runs until its ``ObjectRef`` resolves. Whenever
a caller waits for results (``get_next*``, ``map*``), every call that has
finished is collected, not only the one asked for, so the actors that finished
early get new work at once. An actor whose call raised ``ActorDiedError`` is
taken out of the pool; an item the caller gave up on (``ignore_if_timedout``)
keeps its actor busy until its call has really ended, so no actor ever runs
more calls at once than the pool allows.

The bookkeeping is one set of plain methods (``_poll``, ``_complete``,
``_time_out``); the sync and async entry points differ only in how they wait:
``actorloop.wait`` on the calling thread, or ``asyncio.wait`` on the running
loop.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import actorloop
from actorloop.exceptions import ActorDiedError, GetTimeoutError, TaskCancelledError, TaskError

if TYPE_CHECKING:
    from actorloop import ObjectRef

__all__ = ["ActorPool"]

A = TypeVar("A")
V = TypeVar("V")

_TIMEOUT_MESSAGE = "Timed out waiting for result"


class _TextBar:
    """The progress bar of ``map*(progress=True)`` when tqdm is not installed: one line on stderr.

    ``label: 3/10 [30%] 1.2s``, rewritten in place at most ten times a second
    (and once at the end); a newline when the map ends.  It has the part of
    tqdm's interface the pool uses: ``update(n)`` and ``close()``.
    """

    def __init__(self, total: int, desc: str) -> None:
        self.total = total
        self.desc = desc
        self.n = 0
        self._start = time.monotonic()
        self._shown = 0.0
        self._closed = False
        self._show()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.n >= self.total or now - self._shown >= 0.1:
            self._show()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._show()
        _write_stderr("\n")

    def _show(self) -> None:
        self._shown = time.monotonic()
        pct = 100 * self.n // self.total if self.total else 100
        _write_stderr(f"\r{self.desc}: {self.n}/{self.total} [{pct}%] {self._shown - self._start:.1f}s")


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a closed stderr must not fail the map
        pass


def _progress_bar(progress: bool, total: int, desc: str) -> Any:
    """A tqdm bar for ``total`` results when tqdm is installed, else a :class:`_TextBar`; None without progress."""
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, desc)
    return tqdm(total=total, desc=desc)


def _check_progress(progress: object) -> None:
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")


class _NoMoreResults(Exception):
    """Every submitted item has been returned; the public methods turn this into StopIteration."""


class _Member:
    """One actor of the pool and the number of its calls in flight."""

    __slots__ = ("actor", "busy", "in_pool")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.busy = 0
        self.in_pool = True


class _Item:
    """One submitted value, from the queue to the caller."""

    __slots__ = ("dropped", "fn", "future", "future_loop", "index", "loop", "member", "ok", "ref", "result", "value")

    def __init__(self, index: int, fn: Callable[[Any, Any], Any], value: Any) -> None:
        self.index = index
        self.fn: Callable[[Any, Any], Any] | None = fn
        self.value: Any = value
        self.loop = asyncio._get_running_loop()  # where it was submitted; None in sync code
        self.member: _Member | None = None
        self.ref: ObjectRef[Any] | None = None
        self.ok = False
        self.result: Any = None
        self.dropped = False  # the caller gave up on it; its outcome is thrown away
        self.future: asyncio.Future[Any] | None = None
        self.future_loop: asyncio.AbstractEventLoop | None = None


def _is_death(error: BaseException) -> bool:
    # A TaskError that is also an ActorDiedError means the method itself raised
    # it (say, it called another actor that died): the actor is still alive.
    return isinstance(error, ActorDiedError) and not isinstance(error, TaskError)


def _check_fn(fn: object) -> None:
    if not callable(fn):
        raise TypeError(
            "fn must be a callable that takes (actor, value) and returns the ObjectRef of an actor call, "
            f"such as `lambda a, v: a.method.remote(v)`; got {type(fn).__name__}"
        )


_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _call_outside_loop(fn: Callable[[Any, Any], Any], actor: Any, value: Any) -> Any:
    """Run ``fn(actor, value)`` on a thread without an event loop and return what it returns.

    A call made on an event loop belongs to that loop, and its result is lost
    if the loop ends first. An item submitted from sync code may start while
    some short-lived loop (``asyncio.run``) is collecting results; starting it
    from sync code keeps it alive as long as the runtime.
    """
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(1, thread_name_prefix="actorloop-pool")
    return _helper.submit(fn, actor, value).result()


def _check_no_running_loop(name: str) -> None:
    if asyncio._get_running_loop() is None:
        return
    raise RuntimeError(
        f"ActorPool.{name}() blocks, and this thread is running an event loop; in async code use "
        f"`await pool.{name}_async(...)`, `async for v in pool.map_async(...)` or "
        "`pool.map_unordered_async(...)` instead"
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Mark the error of a future nobody may look at again as seen, so asyncio
    # does not log "exception was never retrieved" for it.
    if not future.cancelled():
        future.exception()


def _outcome_of_future(future: asyncio.Future[Any]) -> tuple[bool, Any]:
    if future.cancelled():
        return False, TaskCancelledError("the call was cancelled before the pool collected its result")
    error = future.exception()
    if error is None:
        return True, future.result()
    return False, error


def _outcome_of_ref(ref: ObjectRef[Any]) -> tuple[bool, Any]:
    try:
        return True, actorloop.get(ref)
    except asyncio.CancelledError:
        return False, TaskCancelledError("the call was cancelled before the pool collected its result")
    except Exception as error:
        return False, error


def _ready_refs(refs: list[ObjectRef[Any]], timeout: float | None) -> list[ObjectRef[Any]]:
    """Wait until one of ``refs`` is ready; return every one that is by then."""
    ready: list[ObjectRef[Any]]
    ready, _ = actorloop.wait(refs, num_returns=1, timeout=timeout)
    if ready and len(refs) > 1:
        ready, _ = actorloop.wait(refs, num_returns=len(refs), timeout=0)
    return ready


def _unwaitable(refs: list[ObjectRef[Any]]) -> list[tuple[ObjectRef[Any], Exception]]:
    """The refs that ``actorloop.wait`` raises for, each with its error."""
    broken = []
    for ref in refs:
        try:
            actorloop.wait([ref], timeout=0)
        except Exception as error:
            broken.append((ref, error))
    return broken


def _deadline(timeout: float | None, now: float) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    return now + timeout


def _unwrap(item: _Item) -> Any:
    if item.ok:
        return item.result
    raise item.result


class ActorPool(Generic[A]):
    """Spread calls over a fixed set of actors, from sync or async code.

    Follows Ray's ``ray.util.ActorPool``: ``map``, ``map_unordered``,
    ``submit``, ``has_next``, ``get_next``, ``get_next_unordered``,
    ``has_free``, ``pop_idle`` and ``push`` behave as there. Beyond Ray:

    - ``map_async``, ``map_unordered_async``, ``get_next_async`` and
      ``get_next_unordered_async`` for async code, on any event loop (the
      driver's, a thread's, another actor's).
    - Each actor has at most ``max_calls_per_actor`` calls in flight (1 by
      default, as in Ray); a call the caller gave up on with
      ``ignore_if_timedout=True`` still counts until it has really ended.
    - An actor whose call fails with ``ActorDiedError`` leaves the pool and is
      never given work again; that item raises the ``ActorDiedError``. When no
      actor is left, the items still queued raise ``ActorDiedError`` instead
      of waiting forever (``push()`` a live actor to run them instead).
    - ``ignore_if_timedout`` works in ``get_next_unordered`` too.
    - An item whose call raised raises that error when its turn comes; the
      other items are kept and the next ``get_next`` goes on with them.
    - ``get_next`` and ``get_next_unordered`` may be mixed freely.
    - Actors that finish early get new work at once, not only when their
      result is fetched.

    The pool is safe to use from several threads and event loops at once.

    Args:
        actors: The actor handles to use; at least one, each once.
        max_calls_per_actor: How many calls one actor may have in flight at
            once. Raise it for async actors that serve many calls at a time.

    Raises:
        ValueError: ``actors`` is empty or names an actor twice, or
            ``max_calls_per_actor`` is below 1.
        TypeError: ``actors`` holds something other than actor handles.

    Example::

        import actorloop as ray
        from actorloop.util import ActorPool

        @ray.remote
        class Actor:
            def double(self, v):
                return 2 * v

        pool = ActorPool([Actor.remote(), Actor.remote()])
        print(list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])))
        # [2, 4, 6, 8]

        async def main():
            async for v in pool.map_async(lambda a, v: a.double.remote(v), [5, 6]):
                print(v)  # 10, then 12
    """

    def __init__(self, actors: Iterable[A], *, max_calls_per_actor: int = 1) -> None:
        if isinstance(max_calls_per_actor, bool) or not isinstance(max_calls_per_actor, int):
            raise TypeError(f"max_calls_per_actor must be an int, got {type(max_calls_per_actor).__name__}")
        if max_calls_per_actor < 1:
            raise ValueError(f"max_calls_per_actor must be at least 1, got {max_calls_per_actor}")
        if isinstance(actors, actorloop.ActorHandle):
            raise TypeError("ActorPool takes a list of actor handles, got one handle: use ActorPool([handle])")
        actors = list(actors)
        if not actors:
            raise ValueError("ActorPool needs at least one actor handle, got an empty list")
        self._lock = threading.RLock()
        self._slots_per_actor = max_calls_per_actor
        self._members: list[_Member] = []
        # One entry per free call slot; entries of actors that left the pool
        # are skipped when they come up.
        self._free: deque[_Member] = deque()
        self._items: OrderedDict[int, _Item] = OrderedDict()  # not yet returned, by index
        self._pending: deque[_Item] = deque()  # waiting for a free actor, by index
        self._running: dict[int, _Item] = {}  # call in flight (dropped ones too)
        self._ready: OrderedDict[int, _Item] = OrderedDict()  # finished, not returned; in finishing order
        self._next_index = 0
        self._generation = 0  # bumped by map*(), which ends the iterators of earlier map*() calls
        self._deaths = 0
        self._last_death: BaseException | None = None
        for actor in actors:
            self._check_new_actor(actor)
            self._members.append(_Member(actor))
        for _ in range(max_calls_per_actor):
            self._free.extend(self._members)

    def __repr__(self) -> str:
        return (
            f"<ActorPool actors={len(self._members)} running={len(self._running)} "
            f"queued={len(self._pending)} unreturned={len(self._items)}>"
        )

    @property
    def actors(self) -> list[A]:
        """The actors now in the pool, busy or idle; dead and popped ones are gone.

        Example::

            pool = ActorPool([a1, a2])
            assert pool.actors == [a1, a2]
        """
        with self._lock:
            return [member.actor for member in self._members]

    # ------------------------------------------------------------------ Ray's interface

    def map(
        self, fn: Callable[[A, V], ObjectRef[Any]], values: Iterable[V], *, progress: bool = False
    ) -> Iterator[Any]:
        """Apply ``fn`` over the actors and values; iterate the results in order.

        Every value is submitted before this returns; results not yet fetched
        from earlier ``submit``/``map`` calls are discarded (as in Ray), and
        iterators of earlier ``map`` calls stop. If one item raises, the
        iterator raises that error and ends; the later items stay in the pool
        for ``get_next``.

        Args:
            fn: Takes ``(actor, value)`` and returns the ``ObjectRef`` of one
                call, like ``lambda a, v: a.double.remote(v)``. The actor is
                busy until that call ends.
            values: The values to apply ``fn`` to.
            progress: Show a progress bar of the results returned so far: a
                tqdm bar when tqdm is installed (``pip install
                actorloop[progress]``), else a one-line text bar on stderr.

        Returns:
            An iterator over the results, in the order of ``values``.

        Example::

            gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
            print(list(gen))  # [2, 4, 6, 8]
        """
        _check_progress(progress)
        values = list(values)
        generation = self._start_map(fn, values)
        return self._results(True, generation, (progress, len(values), "ActorPool.map"))

    def map_unordered(
        self, fn: Callable[[A, V], ObjectRef[Any]], values: Iterable[V], *, progress: bool = False
    ) -> Iterator[Any]:
        """Like :meth:`map`, but yield each result as soon as it is ready (``progress`` as there).

        Example::

            results = pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
            assert sorted(results) == [2, 4, 6, 8]
        """
        _check_progress(progress)
        values = list(values)
        generation = self._start_map(fn, values)
        return self._results(False, generation, (progress, len(values), "ActorPool.map_unordered"))

    def submit(self, fn: Callable[[A, V], ObjectRef[Any]], value: V) -> None:
        """Schedule one call; fetch its result with ``get_next*``.

        The call starts at once if an actor has a free slot, otherwise as soon
        as one has. If ``fn`` itself raises (or returns something other than
        an ``ObjectRef``), that error is this item's result.

        Raises:
            TypeError: ``fn`` is not callable.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            pool.submit(lambda a, v: a.double.remote(v), 2)
            print(pool.get_next(), pool.get_next())  # 2 4
        """
        _check_fn(fn)
        with self._lock:
            self._enqueue(fn, value)
            self._dispatch()

    def has_next(self) -> bool:
        """Whether some submitted item's result has not been returned yet.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert pool.has_next()
            assert pool.get_next() == 2
            assert not pool.has_next()
        """
        return bool(self._items)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Return the next result in submission order, waiting for it.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.
            ignore_if_timedout: On timeout, give up on this item (its result
                will never be returned) before raising, instead of keeping it
                for the next call. Its call still runs to its end, and its
                actor gets no other work until then.

        Returns:
            The item's result.

        Raises:
            StopIteration: No item is left (``has_next()`` is false).
            actorloop.GetTimeoutError: ``timeout`` passed first (a
                ``TimeoutError``).
            Exception: The item's own error: a ``TaskError`` if the method
                raised, ``ActorDiedError`` if its actor died (the actor leaves
                the pool), or what ``fn`` raised.
            RuntimeError: Called on a thread that runs an event loop (use
                :meth:`get_next_async`).
            ValueError: ``timeout`` is negative.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            print(pool.get_next(timeout=10))  # 2
        """
        _check_no_running_loop("get_next")
        try:
            return self._fetch(True, timeout, ignore_if_timedout)
        except _NoMoreResults:
            raise StopIteration("No more results to get") from None

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Return whichever result is ready first, waiting for one.

        Same arguments and errors as :meth:`get_next`. With
        ``ignore_if_timedout=True`` the item given up on is the oldest one not
        returned yet.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            pool.submit(lambda a, v: a.double.remote(v), 2)
            assert {pool.get_next_unordered(), pool.get_next_unordered()} == {2, 4}
        """
        _check_no_running_loop("get_next_unordered")
        try:
            return self._fetch(False, timeout, ignore_if_timedout)
        except _NoMoreResults:
            raise StopIteration("No more results to get") from None

    def has_free(self) -> bool:
        """Whether an actor could start a call now (and no submitted item waits).

        Example::

            pool = ActorPool([a1])
            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert not pool.has_free()
            pool.get_next()
            assert pool.has_free()
        """
        with self._lock:
            while self._free and not self._free[0].in_pool:
                self._free.popleft()
            return bool(self._free) and not self._pending

    def pop_idle(self) -> A | None:
        """Take an actor with no call in flight out of the pool and return it.

        Returns ``None`` if items are waiting for an actor or every actor has
        a call in flight.

        Example::

            pool = ActorPool([a1])
            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert pool.pop_idle() is None
            assert pool.get_next() == 2
            assert pool.pop_idle() is a1
        """
        with self._lock:
            if self._pending:
                return None
            for member in reversed(self._members):
                if member.busy == 0:
                    self._members.remove(member)
                    member.in_pool = False
                    return member.actor  # type: ignore[no-any-return]  # one of the actors given
            return None

    def push(self, actor: A) -> None:
        """Add an actor to the pool; items waiting for an actor start on it.

        Raises:
            ValueError: The actor is in the pool already.
            TypeError: ``actor`` is not an actor handle.

        Example::

            pool = ActorPool([a1])
            pool.push(a2)
        """
        with self._lock:
            self._check_new_actor(actor)
            member = _Member(actor)
            self._members.append(member)
            self._free.extend([member] * self._slots_per_actor)
            self._dispatch()

    # ------------------------------------------------------------------ async interface

    def map_async(
        self, fn: Callable[[A, V], ObjectRef[Any]], values: Iterable[V], *, progress: bool = False
    ) -> AsyncIterator[Any]:
        """Async :meth:`map`: ``async for`` over the results, in order, on any event loop.

        ``progress=True`` shows a progress bar as :meth:`map` does.

        Every value is submitted before this returns, as with :meth:`map`. If
        one item raises, the iteration raises that error and ends; the later
        items stay in the pool for :meth:`get_next_async`.

        Example::

            async def main():
                results = [v async for v in pool.map_async(lambda a, v: a.double.remote(v), [1, 2, 3])]
                assert results == [2, 4, 6]
        """
        _check_progress(progress)
        values = list(values)
        generation = self._start_map(fn, values)
        return self._results_async(True, generation, (progress, len(values), "ActorPool.map_async"))

    def map_unordered_async(
        self, fn: Callable[[A, V], ObjectRef[Any]], values: Iterable[V], *, progress: bool = False
    ) -> AsyncIterator[Any]:
        """Async :meth:`map_unordered`: results as they become ready, on any event loop (``progress`` as :meth:`map`).

        Example::

            async def main():
                results = [v async for v in pool.map_unordered_async(lambda a, v: a.double.remote(v), [1, 2])]
                assert sorted(results) == [2, 4]
        """
        _check_progress(progress)
        values = list(values)
        generation = self._start_map(fn, values)
        return self._results_async(False, generation, (progress, len(values), "ActorPool.map_unordered_async"))

    async def get_next_async(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Async :meth:`get_next`; waits on the running loop, never blocking it.

        Raises ``StopAsyncIteration`` when no item is left; otherwise as
        :meth:`get_next`. Cancelling the awaiting task leaves the item in the
        pool and its call running.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert await pool.get_next_async(timeout=10) == 2
        """
        try:
            return await self._fetch_async(True, timeout, ignore_if_timedout)
        except _NoMoreResults:
            raise StopAsyncIteration("No more results to get") from None

    async def get_next_unordered_async(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Async :meth:`get_next_unordered`; waits on the running loop, never blocking it.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert await pool.get_next_unordered_async() == 2
        """
        try:
            return await self._fetch_async(False, timeout, ignore_if_timedout)
        except _NoMoreResults:
            raise StopAsyncIteration("No more results to get") from None

    # ------------------------------------------------------------------ iterators

    def _start_map(self, fn: Callable[[A, V], ObjectRef[Any]], values: Iterable[V]) -> int:
        _check_fn(fn)
        values = list(values)
        with self._lock:
            self._drop_all()
            self._generation += 1
            for value in values:
                self._enqueue(fn, value)
            self._dispatch()
            return self._generation

    def _results(self, ordered: bool, generation: int, progress: tuple[bool, int, str]) -> Iterator[Any]:
        name = "get_next" if ordered else "get_next_unordered"
        # Made at the first next(): a map nobody iterates shows no bar.
        bar = _progress_bar(*progress)
        try:
            while self._generation == generation and self._items:
                _check_no_running_loop(name)
                try:
                    value = self._fetch(ordered, None, False)
                except _NoMoreResults:  # another thread took the last item
                    return
                if bar is not None:
                    bar.update(1)
                yield value
        finally:
            if bar is not None:
                bar.close()

    async def _results_async(
        self, ordered: bool, generation: int, progress: tuple[bool, int, str]
    ) -> AsyncIterator[Any]:
        bar = _progress_bar(*progress)
        try:
            while self._generation == generation and self._items:
                try:
                    value = await self._fetch_async(ordered, None, False)
                except _NoMoreResults:  # another task took the last item
                    return
                if bar is not None:
                    bar.update(1)
                yield value
        finally:
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------ waiting

    def _fetch(self, ordered: bool, timeout: float | None, ignore: bool) -> Any:
        deadline = _deadline(timeout, time.monotonic())
        while True:
            with self._lock:
                found = self._poll(ordered)
                if isinstance(found, _Item):
                    break
                by_ref = {item.ref: item for item in found if item.ref is not None}
            refs = list(by_ref)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready = _ready_refs(refs, remaining)
            except Exception:
                # Some ref cannot be waited for (its event loop has closed, say):
                # that is the outcome of its item; wait again for the others.
                broken = [(by_ref[ref], error) for ref, error in _unwaitable(refs)]
                if not broken:
                    raise
                with self._lock:
                    for item, error in broken:
                        self._complete(item, False, error)
                continue
            if not ready:
                if remaining is None:
                    continue
                with self._lock:
                    found = self._time_out(ordered, ignore)
                break
            outcomes = [(by_ref[ref], _outcome_of_ref(ref)) for ref in ready]
            with self._lock:
                for item, (ok, result) in outcomes:
                    self._complete(item, ok, result)
        return _unwrap(found)

    async def _fetch_async(self, ordered: bool, timeout: float | None, ignore: bool) -> Any:
        loop = asyncio.get_running_loop()
        deadline = _deadline(timeout, loop.time())
        while True:
            with self._lock:
                found = self._poll(ordered)
                if isinstance(found, _Item):
                    break
                by_future = {self._future_of(item, loop): item for item in found}
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(by_future, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if remaining is None:
                    continue
                with self._lock:
                    found = self._time_out(ordered, ignore)
                break
            with self._lock:
                for future in done:
                    self._complete(by_future[future], *_outcome_of_future(future))
        return _unwrap(found)

    def _future_of(self, item: _Item, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """A future of ``loop`` for the item's call; one per item and loop.

        A ref that is a future of ``loop`` itself is used as is. Any other is
        bridged with ``ref.future()``, not wrapped in a task: a task would be
        cancelled (and cancel the remote call) when its loop shuts down, and
        the pool must not cancel calls a later caller may still want.
        """
        future = item.future
        if future is None or item.future_loop is not loop:
            ref = item.ref
            assert ref is not None
            if asyncio.isfuture(ref) and ref.get_loop() is loop:
                future = ref
            else:
                try:
                    future = asyncio.wrap_future(ref.future(), loop=loop)
                except Exception as error:  # the result can never arrive (its loop has closed, say)
                    future = loop.create_future()
                    future.set_exception(error)
            future.add_done_callback(_retrieve)
            item.future, item.future_loop = future, loop
        return future

    # ------------------------------------------------------------------ bookkeeping (under self._lock)

    def _poll(self, ordered: bool) -> _Item | list[_Item]:
        """Take the item to return if there is one, else list the calls to wait for."""
        if not self._items:
            raise _NoMoreResults
        if ordered:
            item = next(iter(self._items.values()))
            if item.index in self._ready:
                return self._take(item)
        elif self._ready:
            return self._take(next(iter(self._ready.values())))
        if self._running:
            return list(self._running.values())
        # Nothing runs, so the items not returned all wait for an actor with a
        # free slot, and there is none: no actor is left in the pool.
        item = self._pending.popleft()
        self._finish(item, False, self._no_actor_error())
        return self._take(item)

    def _time_out(self, ordered: bool, ignore: bool) -> _Item:
        """Return an item that became ready meanwhile, or raise GetTimeoutError."""
        found = self._poll(ordered)
        if isinstance(found, _Item):
            return found
        if not ignore:
            raise GetTimeoutError(_TIMEOUT_MESSAGE)
        item = next(iter(self._items.values()))
        del self._items[item.index]
        if item.index in self._running:
            item.dropped = True
        else:
            self._pending.remove(item)
        raise GetTimeoutError(f"{_TIMEOUT_MESSAGE}; item {item.index} was given up on (ignore_if_timedout=True)")

    def _take(self, item: _Item) -> _Item:
        del self._items[item.index]
        del self._ready[item.index]
        return item

    def _drop_all(self) -> None:
        for item in self._running.values():
            item.dropped = True
        self._items.clear()
        self._pending.clear()
        self._ready.clear()

    def _enqueue(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        item = _Item(self._next_index, fn, value)
        self._next_index += 1
        self._items[item.index] = item
        self._pending.append(item)

    def _dispatch(self) -> None:
        """Start waiting items on free slots of live actors."""
        while self._pending:
            while self._free and not self._free[0].in_pool:
                self._free.popleft()
            if not self._free:
                return
            self._launch(self._pending.popleft(), self._free.popleft())

    def _launch(self, item: _Item, member: _Member) -> None:
        fn, value, submitted_in_loop = item.fn, item.value, item.loop is not None
        assert fn is not None
        item.fn = item.value = item.loop = None
        try:
            if not submitted_in_loop and asyncio._get_running_loop() is not None:
                ref = _call_outside_loop(fn, member.actor, value)
            else:
                ref = fn(member.actor, value)
            if isinstance(ref, actorloop.ObjectRefGenerator):
                ref.close()  # stop the generator we started
                raise TypeError(
                    "ActorPool does not stream: fn called a generator method, whose .remote() returns an "
                    "ObjectRefGenerator, not one ObjectRef. Iterate over the generators yourself (`async for v in "
                    "actor.method.remote(x).values()`), or call a method that returns a list of the items"
                )
            if not isinstance(ref, actorloop.ObjectRef):
                raise TypeError(
                    "fn must return the ObjectRef of an actor call, such as "
                    f"`lambda a, v: a.method.remote(v)`; it returned {type(ref).__name__}"
                )
        except Exception as error:
            self._free.appendleft(member)
            if _is_death(error):
                self._remove_dead(member, error)
            self._finish(item, False, error)
            return
        member.busy += 1
        item.member = member
        item.ref = ref
        self._running[item.index] = item

    def _complete(self, item: _Item, ok: bool, result: Any) -> None:
        """Record the end of an item's call; a no-op if another waiter did already."""
        if self._running.pop(item.index, None) is None:
            return
        member = item.member
        assert member is not None
        member.busy -= 1
        item.ref = item.future = item.future_loop = None
        if not ok and _is_death(result):
            self._remove_dead(member, result)
        elif member.in_pool:
            self._free.append(member)
        self._finish(item, ok, result)
        self._dispatch()

    def _finish(self, item: _Item, ok: bool, result: Any) -> None:
        if not item.dropped:
            item.ok, item.result = ok, result
            self._ready[item.index] = item

    def _remove_dead(self, member: _Member, error: BaseException) -> None:
        if member.in_pool:
            member.in_pool = False
            self._members.remove(member)
            self._deaths += 1
            self._last_death = error

    def _no_actor_error(self) -> Exception:
        if self._deaths:
            return ActorDiedError(
                f"ActorPool has no actor left to run this item: {self._deaths} actor(s) of the pool died "
                f"(the last: {self._last_death}). push() a live actor to run the items still queued."
            )
        return RuntimeError("ActorPool has no actor to run this item (pop_idle() took them all); push() one first.")

    def _check_new_actor(self, actor: object) -> None:
        if not isinstance(actor, actorloop.ActorHandle):
            raise TypeError(f"ActorPool takes actor handles (from Cls.remote()), got {type(actor).__name__}")
        for member in self._members:
            if member.actor is actor or member.actor == actor:
                raise ValueError("Actor already belongs to current ActorPool")
