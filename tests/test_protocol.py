"""The wire format: hello, frames, shared-memory buffers (actorloop/_protocol.py)."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pytest

import actorloop
from actorloop import _protocol as proto
from actorloop import _shm


def _segments() -> list[str]:
    return [n for n in os.listdir(_shm.SHM_DIR) if n.startswith(_shm._shm_prefix)]


def test_hello_check() -> None:
    secret = os.urandom(proto.SECRET_BYTES)
    assert proto.check_hello(proto.make_hello(secret), secret)
    assert not proto.check_hello(proto.make_hello(os.urandom(proto.SECRET_BYTES)), secret)
    assert not proto.check_hello(b"X" * proto.HELLO_BYTES, secret)


def test_plain_calls_use_plain_pickle() -> None:
    data = proto.dumps_call((proto.CALL, 1, "f", (1, "a"), {"k": 2.0}), (1, "a"), {"k": 2.0})
    assert pickle.loads(data) == (proto.CALL, 1, "f", (1, "a"), {"k": 2.0})


def test_small_buffers_stay_in_band() -> None:
    arr = np.arange(10)
    data = proto.dumps_value((proto.RESULT_OK, 1, arr), arr)
    assert data[:1] != proto._OOB_MARK
    assert (proto.loads(data)[2] == arr).all()


@pytest.fixture
def own_prefix() -> object:
    saved = _shm._shm_prefix
    proto.set_shm_prefix("/test-node", "feedface")
    yield
    _shm._shm_prefix = saved


def test_large_buffer_travels_through_a_segment_and_is_reused(own_prefix: None) -> None:
    released: list[str] = []
    arr = np.arange(proto.OOB_THRESHOLD // 8 * 4, dtype=np.int64)
    data = proto.dumps_value((proto.RESULT_OK, 1, arr), arr)
    assert data[:1] == proto._OOB_MARK and len(data) < 1000  # only the segment's name is in the frame
    out = proto.loads(data, released.append)[2]
    assert (out == arr).all() and not out.flags.owndata  # no copy on arrival
    name = _segments()[0]
    del out
    gc.collect()
    assert released == [name]
    proto.segment_pool.release(name)
    again = proto.dumps_value((proto.RESULT_OK, 2, arr), arr)
    assert name.encode() in again  # the released segment is used again
    proto.segment_pool.close()
    assert _segments() == []


def test_bad_segment_names_are_refused() -> None:
    with pytest.raises(_shm.SegmentError):
        _shm.map_segment("../../etc/passwd", 10, None)


def test_oversized_frames_are_refused_by_the_sender() -> None:
    with pytest.raises(actorloop.SerializationError):
        proto._fits(_Huge())


class _Huge(bytes):
    def __len__(self) -> int:
        return proto.MAX_FRAME_BYTES + 1


def test_big_arrays_leave_no_segments_behind(node: None) -> None:
    @actorloop.remote
    class Echo:
        def echo(self, x: np.ndarray) -> np.ndarray:
            return x

    e = Echo.remote()
    arr = np.ones(4 << 20)
    for _ in range(5):
        assert (actorloop.get(e.echo.remote(arr)) == 1).all()
    # reused, not piling up: a handful of segments for 10 transfers
    runtime = actorloop._runtime.get_runtime()
    assert runtime is not None
    prefix = proto.shm_prefix_for(runtime.node_dir)
    mine = [n for n in os.listdir(_shm.SHM_DIR) if n.startswith(prefix)]
    assert len(mine) <= 4
