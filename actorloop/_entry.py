"""The one way into an event loop from other threads, finalizers and signal handlers.

Modelled on trio's entry queue.  Anything that must run on a loop but starts
elsewhere - a sync caller's call, a handle's ``__del__``, a segment release
from a worker thread, a signal - goes through ``EntryQueue.put``.  ``put``
takes no lock: it appends to a ``deque`` (atomic under the GIL) and wakes
the loop at most once per batch.  That makes it safe where a lock is not:
inside ``__del__`` (a garbage-collector pass may run a finalizer on a thread
that already holds any of our locks), in a signal handler, or from a thread
racing the loop's shutdown.  The loop drains the whole queue in one
callback, in order.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import sys
import threading
import weakref
from asyncio import events
from typing import Any, Callable, Coroutine, TypeVar

__all__ = ["EntryQueue", "entry_for", "running_here"]

T = TypeVar("T")

_log = logging.getLogger("actorloop")

_get_running_loop = events._get_running_loop

if sys.version_info >= (3, 12):

    def running_here(loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` is the loop running in this thread (``asyncio._get_running_loop() is loop``)."""
        return _get_running_loop() is loop

else:
    # Python 3.10/3.11's asyncio._get_running_loop() makes a getpid() system
    # call every time (its guard against fork): ~0.55 us here against ~0.08 us
    # for the check below (benchmarks/results/profiles/README.md), and a call
    # asks two or three times.  A stdlib loop records the thread that runs it
    # (``_thread_id``, set and cleared by run_forever, and only one loop runs
    # in a thread), so the question has an exact answer without the system
    # call.  Other loops (uvloop) and a forked child (where the parent's loop
    # only looks running) ask asyncio.
    _get_ident = threading.get_ident
    _BaseEventLoop = asyncio.BaseEventLoop
    _forked = False

    def _after_fork_in_child() -> None:
        global _forked
        _forked = True

    os.register_at_fork(after_in_child=_after_fork_in_child)

    def running_here(loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` is the loop running in this thread (``asyncio._get_running_loop() is loop``)."""
        if isinstance(loop, _BaseEventLoop) and not _forked:
            return loop._thread_id == _get_ident()  # type: ignore[attr-defined,no-any-return]
        return _get_running_loop() is loop


class EntryQueue:
    """Jobs for one loop, put from anywhere, run on the loop in the order they were put.

    Example::

        entry = EntryQueue(loop)
        entry.put(print, "runs on the loop")          # from any thread or finalizer
    """

    __slots__ = ("loop", "_jobs", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._jobs: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._scheduled = False

    def put(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop soon; False if the loop is closed (the job is dropped).

        Never blocks and never raises, so it is safe in finalizers and signal handlers.
        """
        self._jobs.append((fn, args))
        if not self._scheduled:
            # A lost race here costs one spare wake-up, never a lost job: the
            # drain clears the flag before it reads the queue.
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody will run it
                self._jobs.clear()
                return False
        return True

    def _drain(self) -> None:
        self._scheduled = False
        jobs = self._jobs
        while jobs:
            fn, args = jobs.popleft()
            try:
                fn(*args)
            except Exception:
                _log.exception("actorloop: a job posted to the event loop failed")

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` as a task on the loop; its outcome arrives in the returned future (any thread)."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            if not result.set_running_or_notify_cancel():
                coro.close()
                return
            task = self.loop.create_task(coro)

            def copy(_: Any) -> None:
                if task.cancelled():
                    result.cancel()
                elif task.exception() is not None:
                    result.set_exception(task.exception())
                else:
                    result.set_result(task.result())

            task.add_done_callback(copy)

        if not self.put(start):
            coro.close()
            result.set_exception(RuntimeError("the event loop is closed"))
        return result


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EntryQueue] = weakref.WeakKeyDictionary()
_queues_lock = threading.Lock()


def entry_for(loop: asyncio.AbstractEventLoop) -> EntryQueue:
    """The entry queue of ``loop`` (made on first use; look it up ahead of time where a finalizer will put)."""
    queue = _queues.get(loop)
    if queue is None:
        with _queues_lock:
            queue = _queues.get(loop)
            if queue is None:
                queue = _queues[loop] = EntryQueue(loop)
    return queue
