"""The call counters an actor keeps for the node's metrics (``/metrics``, the dashboard).

An actor counts only while its node serves a dashboard.  On the call path
it touches plain lists, never a Prometheus object or a lock: one list per
method, ``[started, finished, failed, cancelled, latency_sum, bucket_0, ...]``.
The node asks for a copy (a snapshot) over its control channel when someone
reads ``/metrics`` or the dashboard, and builds the Prometheus families
there.  Increments from the worker threads of a sync actor are plain ``+=``
without a lock: two threads ending calls of one method at the same instant
(a sync actor with ``max_concurrency > 1``) may, rarely, lose one count.
These are figures for watching a system, not for accounting.
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import Callable

#: Upper bounds (seconds) of the call-latency histogram's buckets; one more bucket holds the rest (+Inf).
BOUNDS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# Where each count sits in a method's record.
STARTED = 0
FINISHED = 1
FAILED = 2
CANCELLED = 3
LATENCY_SUM = 4
BUCKET0 = 5
RECORD_LEN = BUCKET0 + len(BOUNDS) + 1
assert (LATENCY_SUM, BUCKET0) == (4, 5)  # call_ended() uses them as literals

__all__ = [
    "BOUNDS",
    "STARTED",
    "FINISHED",
    "FAILED",
    "CANCELLED",
    "LATENCY_SUM",
    "BUCKET0",
    "RECORD_LEN",
    "new_record",
    "call_ended",
    "perf_counter",
    "bisect_left",
]


def new_record() -> list[float]:
    """A method's record, all zero."""
    return [0] * RECORD_LEN


def call_ended(
    record: list[float],
    t0: float,
    outcome: int,
    _clock: Callable[[], float] = perf_counter,
    _bucket: Callable[[tuple[float, ...], float], int] = bisect_left,
    _bounds: tuple[float, ...] = BOUNDS,
) -> None:
    """A call that started at ``t0`` (``perf_counter()``) ended: ``outcome`` is FINISHED or FAILED.

    The worker inlines the same few lines on its call path (``encode_ok``,
    ``encode_error``); keep them in step.
    """
    dt = _clock() - t0
    record[outcome] += 1
    record[4] += dt  # LATENCY_SUM
    record[5 + _bucket(_bounds, dt)] += 1  # BUCKET0 + the bucket
