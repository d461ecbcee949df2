"""Actor classes and a task function for the Ray-style backends (actorloop and Ray).

Plain classes, decorated at run time with the backend's ``remote``, so both
backends load them by reference from this importable module.
"""

from __future__ import annotations

import os
from typing import Any


class SyncActor:
    """Sync methods: a sync actor runs one call at a time."""

    def ping(self) -> None:
        return None

    def f(self, x: Any) -> Any:
        return x

    def getpid(self) -> int:
        return os.getpid()

    def nbytes(self, a: Any) -> int:
        return int(a.nbytes)

    def echo(self, a: Any) -> Any:
        return a

    def touch(self, a: Any) -> float:
        return touch_pages(a)


def touch_pages(a: Any) -> float:
    """Read one float64 of every 4 KiB page of ``a``: the whole array is read in, little is computed."""
    return float(a[::512].sum())


class AsyncActor:
    """The same methods as coroutines: an async actor."""

    async def ping(self) -> None:
        return None

    async def f(self, x: Any) -> Any:
        return x

    async def getpid(self) -> int:
        return os.getpid()

    async def nbytes(self, a: Any) -> int:
        return int(a.nbytes)

    async def echo(self, a: Any) -> Any:
        return a


class StreamActor:
    """An async generator method (a stream) and a plain method, for the ``stream`` workload."""

    async def items(self, n: int) -> Any:
        for i in range(n):
            yield i

    async def ping(self) -> None:
        return None

    async def getpid(self) -> int:
        return os.getpid()


def task_f(x: Any) -> Any:
    """The remote function of the ``tasks`` workload (decorated with the backend's ``remote``)."""
    return x
