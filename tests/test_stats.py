"""An actor's call counters (``actorloop._stats``): where each call lands."""

from __future__ import annotations

import pytest

from actorloop import _stats


@pytest.mark.parametrize(
    ("seconds", "upper_bound"),
    [(0.000001, 0.00001), (0.00001, 0.00001), (0.003, 0.005), (0.005, 0.005), (9.0, 10.0), (11.0, None)],
)
def test_a_call_lands_in_the_first_bucket_it_fits(seconds: float, upper_bound: float | None) -> None:
    rec = _stats.new_record()
    _stats.call_ended(rec, 0.0, _stats.FINISHED, _clock=lambda: seconds)
    buckets = rec[_stats.BUCKET0 :]
    index = len(_stats.BOUNDS) if upper_bound is None else _stats.BOUNDS.index(upper_bound)  # None: +Inf
    assert buckets == [1 if i == index else 0 for i in range(len(_stats.BOUNDS) + 1)]
    assert rec[_stats.FINISHED] == 1 and rec[_stats.FAILED] == 0
    assert rec[_stats.LATENCY_SUM] == pytest.approx(seconds)


def test_failed_calls_count_apart_and_the_latency_adds_up() -> None:
    rec = _stats.new_record()
    _stats.call_ended(rec, 0.0, _stats.FAILED, _clock=lambda: 0.25)
    _stats.call_ended(rec, 0.0, _stats.FINISHED, _clock=lambda: 0.5)
    assert rec[_stats.FAILED] == 1 and rec[_stats.FINISHED] == 1
    assert rec[_stats.LATENCY_SUM] == pytest.approx(0.75)
    assert len(rec) == _stats.RECORD_LEN and _stats.BOUNDS == tuple(sorted(_stats.BOUNDS))
