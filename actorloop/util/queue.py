"""An actor-backed FIFO queue that any process on the node can use (Ray's ``ray.util.queue``).

The items live in one small async actor; the ``Queue`` object is only a
handle to it, so it can be passed to actors and tasks, which then put and
get on the same queue::

    from actorloop.util.queue import Queue, Empty

    q = Queue(maxsize=100)
    q.put(1)                         # blocks while the queue is full
    q.get(timeout=5)                 # 1; raises Empty after 5 s without an item
    await q.put_async(2)             # the same from async code

The actor ends with the process that created the queue (or with
``q.shutdown()``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from actorloop._api import get as _get
from actorloop._api import kill as _kill
from actorloop._handles import remote as _remote

__all__ = ["Empty", "Full", "Queue"]


class Empty(Exception):
    """Raised by ``get`` when the queue stays empty (non-blocking, or past the timeout)."""


class Full(Exception):
    """Raised by ``put`` when the queue stays full (non-blocking, or past the timeout)."""


class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def put(self, item: Any, timeout: float | None = None) -> bool:
        """False (the caller raises Full) when no room came within ``timeout``."""
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        try:
            return True, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return False, None

    async def put_nowait(self, item: Any) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def put_nowait_batch(self, items: list[Any]) -> bool:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return False
        for item in items:
            self.queue.put_nowait(item)
        return True

    async def get_nowait(self) -> tuple[bool, Any]:
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return False, None

    async def get_nowait_batch(self, num_items: int) -> tuple[bool, list[Any]]:
        if num_items > self.queue.qsize():
            return False, []
        return True, [self.queue.get_nowait() for _ in range(num_items)]


_QueueActorClass = _remote(_QueueActor)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be a non-negative number or None, got {timeout!r}")


class Queue:
    """A first-in, first-out queue shared by every process that holds it.

    ``maxsize <= 0`` means unbounded.  ``actor_options`` are passed to the
    queue actor's ``.options()`` (for example a ``name``).
    """

    actor: Any

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {type(maxsize).__name__}")
        self.maxsize = maxsize
        options = dict(actor_options or {})
        self.actor = _QueueActorClass.options(**options).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue now."""
        return int(_get(self.actor.qsize.remote()))

    def qsize(self) -> int:
        """The number of items in the queue now."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty now."""
        return self.size() == 0

    def full(self) -> bool:
        """Whether the queue is full now (never, when unbounded)."""
        return self.maxsize > 0 and self.size() >= self.maxsize

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; wait for room (up to ``timeout`` s) unless ``block=False``; raises Full."""
        if not block:
            if not _get(self.actor.put_nowait.remote(item)):
                raise Full
            return
        _check_timeout(timeout)
        if not _get(self.actor.put.remote(item, timeout)):
            raise Full

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for async code."""
        if not block:
            if not await self.actor.put_nowait.remote(item):
                raise Full
            return
        _check_timeout(timeout)
        if not await self.actor.put.remote(item, timeout):
            raise Full

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; wait (up to ``timeout`` s) unless ``block=False``; raises Empty."""
        if not block:
            ok, item = _get(self.actor.get_nowait.remote())
        else:
            _check_timeout(timeout)
            ok, item = _get(self.actor.get.remote(timeout))
        if not ok:
            raise Empty
        return item

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for async code."""
        if not block:
            ok, item = await self.actor.get_nowait.remote()
        else:
            _check_timeout(timeout)
            ok, item = await self.actor.get.remote(timeout)
        if not ok:
            raise Empty
        return item

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: list[Any]) -> None:
        """Add all of ``items`` at once, or none (raises Full if they do not all fit)."""
        if not isinstance(items, list):
            raise TypeError(f"put_nowait_batch takes a list, got {type(items).__name__}")
        if not _get(self.actor.put_nowait_batch.remote(items)):
            raise Full(f"cannot add {len(items)} items to a queue of maxsize {self.maxsize}")

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return ``num_items`` items at once, or none (raises Empty if there are fewer)."""
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 0:
            raise ValueError(f"num_items must be a non-negative int, got {num_items!r}")
        ok, items = _get(self.actor.get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(f"fewer than {num_items} items in the queue")
        return list(items)

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor; items still in it are lost."""
        if self.actor is not None:
            _kill(self.actor)
        self.actor = None
