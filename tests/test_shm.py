"""Shared-memory segments: ownership, trimming, fallback, read-only arrival (actorloop/_shm.py)."""

from __future__ import annotations

import errno
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import actorloop
from actorloop import _protocol as proto
from actorloop import _shm

MIB = 1 << 20


def _files(prefix: str) -> set[str]:
    try:
        return {n for n in os.listdir(_shm.SHM_DIR) if n.startswith(prefix)}
    except FileNotFoundError:
        return set()


def _wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the module (and its node) ended, no segment this process wrote is left."""
    yield
    actorloop.shutdown()
    mine = [
        n for n in _files("actorloop-") if (m := _shm._SEGMENT_NAME.match(n)) and int(m.group(3), 16) == os.getpid()
    ]
    assert mine == []


def test_protocol_still_exports_the_shared_memory_names() -> None:
    for name in ("loads", "segment_pool", "set_shm_prefix", "remove_segments", "OOB_THRESHOLD", "hold_payload"):
        assert getattr(proto, name) is getattr(_shm, name)
    assert callable(proto.dumps_call) and callable(proto.dumps_value) and callable(proto.unhold_payload)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[_shm.SegmentPool]:
    """A fresh pool under a prefix of its own, closed (and checked empty) afterwards."""
    fresh = _shm.SegmentPool()
    monkeypatch.setattr(_shm, "segment_pool", fresh)
    monkeypatch.setattr(_shm, "_shm_prefix", f"actorloop-0-{os.getpid():x}-")
    prefix = f"actorloop-0-{os.getpid():x}-"
    yield fresh
    fresh.close()
    assert _files(prefix) == set()


class _Conn:
    """Stands for a FrameProtocol: the pool only needs an identity."""


def _big(n: int = MIB) -> np.ndarray:
    return np.arange(n // 8, dtype=np.int64)


def _call(*args: Any, **kwargs: Any) -> bytes:
    """A CALL payload, as the caller builds it (the message holds ``args`` and ``kwargs`` themselves)."""
    return proto.dumps_call((proto.CALL, 1, "f", args, kwargs, None), args, kwargs)


def _payload_of(value: Any) -> tuple[bytes, list[str]]:
    data = proto.dumps_value((proto.RESULT_OK, 1, value), value)
    return data, _shm.segment_names(data)


# -- ownership ------------------------------------------------------------------------


def test_segment_names_carry_the_writer_pid_and_pass_the_strict_check(pool: _shm.SegmentPool) -> None:
    _, names = _payload_of(_big())
    match = _shm._SEGMENT_NAME.match(names[0])
    assert match is not None and int(match.group(3), 16) == os.getpid()
    for bad in ("actorloop-0-0-1-" + "g" * 32, "actorloop-0-0-" + "a" * 32, names[0] + "/x", "../" + names[0]):
        assert not _shm._SEGMENT_NAME.match(bad)


def test_a_released_segment_returns_to_the_pool(pool: _shm.SegmentPool) -> None:
    conn = _Conn()
    _, names = _payload_of(_big())
    pool.sent(names, conn)
    pool.release(names[0])
    assert pool.stats()[0] == 1 and _files(names[0]) == {names[0]}


def test_segments_sent_on_a_lost_connection_are_removed(pool: _shm.SegmentPool) -> None:
    conn, other = _Conn(), _Conn()
    _, names = _payload_of(_big())
    _, kept = _payload_of(_big())
    pool.sent(names, conn)
    pool.sent(kept, other)
    pool.connection_lost(conn)
    assert _files(names[0]) == set()  # the reader died (or left): never reused, removed at once
    assert _files(kept[0]) == set(kept) and pool.stats() == (0, 0, 1)


def test_a_held_segment_survives_its_connection_until_unheld(pool: _shm.SegmentPool) -> None:
    conn = _Conn()
    data, names = _payload_of(_big())
    assert _shm.hold_payload(data)
    pool.sent(names, conn)
    pool.connection_lost(conn)
    assert _files(names[0]) == set(names)  # kept for the retry
    pool.sent(names, conn)  # resent to the restarted peer, which releases it
    pool.release(names[0])
    assert _files(names[0]) == set(names)
    _shm.unhold_payload(data)
    # a live peer of the lost connection may still map it: removed, not pooled
    assert _files(names[0]) == set() and pool.stats() == (0, 0, 0)


def test_a_write_that_never_left_is_undone_without_freeing(pool: _shm.SegmentPool) -> None:
    conn = _Conn()
    data, names = _payload_of(_big())
    _shm.hold_payload(data)  # a sync caller's pending entry
    pool.sent(names, conn)
    pool.sent(names, conn, -1)  # write_from_thread wrote nothing: the call goes through the loop...
    _shm.unhold_payload(data)  # ...with a new pending entry, this one is dropped
    assert pool.stats() == (0, 0, 1)  # still busy: its payload is on its way, never reused meanwhile
    _shm.hold_payload(data)
    pool.sent(names, conn)
    pool.release(names[0])
    _shm.unhold_payload(data)
    assert pool.stats()[:2] == (1, MIB)  # sent, released, unheld: back in the pool


def test_frame_protocol_tracks_what_it_sends_and_forgets_it_on_loss(pool: _shm.SegmentPool) -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        conn = proto.FrameProtocol(loop)
        data, names = _payload_of(_big())
        conn.send(data)
        conn.connection_lost(None)
        assert _files(names[0]) == set()
    finally:
        loop.close()


def test_unpickling_failure_gives_the_segments_back(pool: _shm.SegmentPool) -> None:
    class Bad:
        def __reduce__(self) -> Any:
            raise TypeError("no")

    with pytest.raises(TypeError):
        _shm.dumps_with_buffers((_big(), Bad()))
    assert pool.stats()[2] == 0


def test_a_frame_dropped_before_sending_frees_its_segment_later(
    pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, names = _payload_of(_big())  # e.g. a result for a call cancelled meanwhile: never sent
    pool.trim()
    assert _files(names[0]) == set(names)  # not yet: it may still be on its way to a send
    monkeypatch.setattr(_shm, "UNSENT_GRACE_SECONDS", 0.0)
    pool.trim()
    assert _files(names[0]) == set() and pool.stats() == (0, 0, 0)


# -- trimming and the cap ------------------------------------------------------------------


def test_the_pool_cap_is_lower_than_before() -> None:
    assert _shm.POOL_KEEP_BYTES == 256 * MIB


def test_idle_free_segments_are_trimmed_by_a_timer(pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shm, "POOL_IDLE_SECONDS", 0.2)
    _, names = _payload_of(_big())
    assert pool._timer is None  # no thread while nothing is free
    pool.release(names[0])
    timer = pool._timer
    assert pool.stats()[0] == 1 and timer is not None and timer.daemon
    _wait_for(lambda: _files(names[0]) == set(), "the idle segment to be removed")
    assert pool.stats() == (0, 0, 0)
    _wait_for(lambda: not timer.is_alive(), "the trim timer to end")  # not re-armed: nothing is free
    assert pool._timer is None


def test_free_segments_past_the_cap_are_removed(pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shm, "POOL_KEEP_BYTES", 2 * MIB)
    payloads = [_payload_of(_big()) for _ in range(3)]
    for _, names in payloads:
        pool.release(names[0])
    assert pool.stats()[:2] == (2, 2 * MIB)
    assert sum(len(_files(names[0])) for _, names in payloads) == 2


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_an_empty_pool(pool: _shm.SegmentPool) -> None:
    _, names = _payload_of(_big())
    pool.release(names[0])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = pool.stats() == (0, 0, 0)
        pool.close()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    assert _files(names[0]) == set(names)  # the child's close() left the parent's segment alone


# -- read-only arrival ---------------------------------------------------------------------


def test_arrays_arrive_read_only_and_bytearrays_writable(pool: _shm.SegmentPool) -> None:
    arr = _big()
    blob = bytearray(os.urandom(MIB))
    data = _call(arr, blob)
    assert len(_shm.segment_names(data)) == 2  # the bytearray travelled out of band too
    released: list[str] = []
    (got_arr, got_blob) = proto.loads(data, released.append)[3]
    assert not got_arr.flags.writeable and (got_arr == arr).all()
    with pytest.raises(ValueError, match="read-only"):
        got_arr[0] = 1
    assert type(got_blob) is bytearray and got_blob == blob
    got_blob[0] ^= 0xFF  # a real, writable copy
    del got_arr
    gc.collect()
    assert len(released) == 2


def test_large_bytes_travel_out_of_band(pool: _shm.SegmentPool) -> None:
    blob = os.urandom(MIB)
    data = _call(blob, k=blob)
    assert data[:1] == _shm.OOB_MARK and len(data) < 10_000
    msg = proto.loads(data, lambda name: None)
    assert msg[3] == (blob,) and msg[4] == {"k": blob} and type(msg[3][0]) is bytes
    value = proto.dumps_value((proto.RESULT_OK, 1, blob), blob)
    assert value[:1] == _shm.OOB_MARK and proto.loads(value, lambda name: None)[2] == blob


# -- fallback: no or full shared memory -----------------------------------------------------------


def test_no_shm_dir_sends_in_band(pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_shm, "SHM_DIR", str(tmp_path / "missing"))
    arr = _big(5 * MIB)
    data = _call(arr)
    assert data[:1] != _shm.OOB_MARK
    assert (proto.loads(data)[3][0] == arr).all()


def test_too_little_free_space_sends_in_band(pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs

    class Tiny:
        def __init__(self, st: os.statvfs_result) -> None:
            self.f_frsize = st.f_frsize
            self.f_bavail = 1

    monkeypatch.setattr(os, "statvfs", lambda path: Tiny(real(path)))
    arr = _big(2 * MIB)
    data = proto.dumps_value((proto.RESULT_OK, 1, arr), arr)
    assert data[:1] != _shm.OOB_MARK and (proto.loads(data)[2] == arr).all()


def test_a_full_shm_sends_in_band_and_leaves_no_segment(
    pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    arr = _big(2 * MIB)
    data = proto.dumps_value((proto.RESULT_OK, 1, arr), arr)
    assert data[:1] != _shm.OOB_MARK and (proto.loads(data)[2] == arr).all()
    assert pool.stats() == (0, 0, 0)


# -- the too-large error gives true advice -------------------------------------------------------


def test_too_large_error_gives_true_advice(pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proto, "MAX_FRAME_BYTES", MIB)
    text = "x" * (2 * MIB)
    with pytest.raises(actorloop.SerializationError) as info:
        _call(text)
    message = str(info.value)
    assert "over the largest frame" in message and "numpy arrays" in message and "top-level" in message
    # ...and the advice holds: a bytearray of that size now travels through shared memory.
    blob = bytearray(2 * MIB)
    data = _call(blob)
    assert len(data) < MIB and _shm.segment_names(data)


def test_too_large_error_says_when_shared_memory_was_unusable(
    pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(proto, "MAX_FRAME_BYTES", MIB)
    monkeypatch.setattr(_shm, "SHM_DIR", str(tmp_path / "missing"))
    arr = _big(2 * MIB)
    with pytest.raises(actorloop.SerializationError, match="ACTORLOOP_SHM_DIR"):
        _call(arr)


# -- end to end --------------------------------------------------------------------------------


@actorloop.remote
class Keeper:
    def __init__(self) -> None:
        self.kept: list[Any] = []

    def keep(self, x: Any) -> int:
        self.kept.append(x)  # still mapped here: no RELEASE goes back
        return len(x)

    def make(self, n: int) -> np.ndarray:
        return np.ones(n // 8)

    def pid(self) -> int:
        return os.getpid()

    def edit(self, blob: bytearray) -> tuple[str, int]:
        blob[0] = 7
        return type(blob).__name__, blob[0]


def _node_prefix() -> str:
    rt = actorloop._runtime.get_runtime()
    assert rt is not None
    return _shm.shm_prefix_for(rt.node_dir)


def _of_pid(pid: int) -> set[str]:
    return {n for n in _files(_node_prefix()) if n.split("-")[3] == f"{pid:x}"}


def test_segments_sent_to_a_killed_actor_are_freed(node: None) -> None:
    k = Keeper.remote()
    before = set(_shm.segment_pool._busy)
    assert actorloop.get([k.keep.remote(np.ones(8 * MIB // 8)) for _ in range(3)]) == [MIB] * 3
    sent = set(_shm.segment_pool._busy) - before
    assert len(sent) == 3 and sent <= _of_pid(os.getpid())  # busy: the actor maps them all
    actorloop.kill(k)
    _wait_for(lambda: not (_of_pid(os.getpid()) & sent), "the segments of the killed actor's connection to go")


def test_finished_calls_leave_no_busy_segments(node: None) -> None:
    k = Keeper.remote()
    arr = np.ones(MIB // 8)
    refs = [k.pid.remote() for _ in range(3)]
    assert actorloop.get([k.edit.remote(bytearray(MIB)) for _ in range(5)]) == [("bytearray", 7)] * 5
    assert len(set(actorloop.get(refs))) == 1
    for _ in range(5):
        assert actorloop.get(k.keep.remote(arr)) == MIB // 8
    # Every call settled (unheld); the copied bytearrays were released; the kept arrays stay busy...
    _wait_for(lambda: _shm.segment_pool.stats()[2] == 5, "only the kept arguments to stay busy")
    actorloop.kill(k)
    # ...until the actor's connection is gone.
    _wait_for(lambda: _shm.segment_pool.stats()[2] == 0, "the kept arguments to be freed")


def test_a_bytearray_argument_arrives_writable(node: None) -> None:
    k = Keeper.remote()
    assert actorloop.get(k.edit.remote(bytearray(2 * MIB))) == ("bytearray", 7)


_DRIVER = """
import os, sys, time
import numpy as np
import actorloop
from actorloop import _shm

@actorloop.remote
class Keeper:
    def __init__(self):
        self.kept = []
    def keep(self, x):
        self.kept.append(x)
        return len(x)
    def make(self, n):
        return np.ones(n // 8)
    def pid(self):
        return os.getpid()

actorloop.init(address=sys.argv[1])
k = Keeper.options(name="shm-keeper", namespace="shm-test", lifetime="detached").remote()
assert actorloop.get(k.keep.remote(np.ones(4 << 17))) == 4 << 17
got = actorloop.get(k.make.remote(4 << 20))
print("READY", os.getpid(), actorloop.get(k.pid.remote()), flush=True)
time.sleep(600)
"""


def test_a_sigkilled_driver_frees_its_segments_and_the_detached_actors(node: None, tmp_path: Path) -> None:
    rt = actorloop._runtime.get_runtime()
    assert rt is not None
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_DRIVER))
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, str(script), rt.node_dir], stdout=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        assert line[:1] == ["READY"], line
        driver_pid, actor_pid = int(line[1]), int(line[2])
        # The driver's argument (mapped by the actor) and the actor's result (mapped by the driver).
        assert _of_pid(driver_pid) and _of_pid(actor_pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The actor's connection to the driver is lost: what it sent there is removed at once;
        # the driver's own segments go a few seconds later (the node's WRITER_GONE_GRACE).
        _wait_for(lambda: not _of_pid(actor_pid), "the actor's segments sent to the dead driver")
        assert _shm.WRITER_GONE_GRACE <= 5
        _wait_for(lambda: not _of_pid(driver_pid), "the dead driver's segments", timeout=_shm.WRITER_GONE_GRACE + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        actorloop.kill(actorloop.get_actor("shm-keeper", namespace="shm-test"))


@actorloop.remote(max_restarts=1, max_task_retries=1)
class Mutator:
    async def mutate_then_crash(self, x: np.ndarray, marker: str) -> list[Any]:
        try:
            x[0] = 99  # in place: a retry must never see this
            wrote = True
        except ValueError as exc:
            wrote = str(exc)
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the first attempt dies after writing
        return [int(x[0]), int(x.sum()), wrote]


def test_a_retried_call_gets_intact_arguments(node: None, tmp_path: Path) -> None:
    m = Mutator.remote()
    arr = np.arange(1 << 16, dtype=np.int64)
    first, total, wrote = actorloop.get(m.mutate_then_crash.remote(arr, str(tmp_path / "crashed")))
    assert (tmp_path / "crashed").exists()  # the first attempt ran and died
    assert (first, total) == (0, int(arr.sum()))
    assert wrote == "assignment destination is read-only"


@actorloop.remote(max_restarts=1, max_task_retries=1)
class BytesMutator:
    def mutate_then_crash(self, data: bytearray, marker: str) -> tuple[bytes, int]:
        seen = bytes(data[:4]), sum(data)  # as it arrived
        data[:4] = b"XXXX"  # a bytearray arrives writable: a retry must never see this
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the first attempt dies after writing
        return seen


def test_a_retried_call_gets_an_intact_bytearray(node: None, tmp_path: Path) -> None:
    data = bytearray(range(256)) * 4096  # 1 MiB: sent through shared memory
    assert len(data) >= _shm.OOB_THRESHOLD
    m = BytesMutator.remote()
    head, total = actorloop.get(m.mutate_then_crash.remote(data, str(tmp_path / "crashed")))
    assert (tmp_path / "crashed").exists()  # the first attempt ran, wrote and died
    assert (head, total) == (bytes([0, 1, 2, 3]), sum(data))
    assert data[:4] == bytes([0, 1, 2, 3])  # the caller's own bytes were never touched


_NO_SHM_DRIVER = """
import hashlib, sys
import numpy as np
import actorloop

@actorloop.remote
class Echo:
    def digest(self, x):
        return hashlib.sha256(x.tobytes()).hexdigest(), x.flags.writeable

actorloop.init(address="local")
arr = np.random.default_rng(1).integers(0, 1 << 30, size=(5 << 20) // 8)
got, writeable = actorloop.get(Echo.remote().digest.remote(arr))
print(got, writeable, hashlib.sha256(arr.tobytes()).hexdigest())
actorloop.shutdown()
"""


def test_without_shared_memory_large_arguments_travel_in_band(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_NO_SHM_DRIVER))
    env = dict(os.environ, ACTORLOOP_SHM_DIR=str(tmp_path / "no-such-dir"))
    env.pop("ACTORLOOP_ADDRESS", None)
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert out.returncode == 0, out.stderr
    got, writeable, want = out.stdout.split()
    assert got == want and writeable == "True"  # in band: an ordinary (writable) array


# -- put segments and refs in payloads (docs/objects.md) ------------------------------------------


def test_one_segment_sent_on_several_connections_is_freed_after_the_last_release(pool: _shm.SegmentPool) -> None:
    a, b = _Conn(), _Conn()
    _, names = _payload_of(_big())
    pool.sent(names, a)
    pool.sent(names, b)
    pool.sent(names, b)
    pool.release(names[0], b)
    pool.release(names[0], a)
    assert pool.stats()[2] == 1  # b's second send is not released yet
    pool.release(names[0], b)
    assert pool.stats()[:1] == (1,)  # counted per connection: free (pooled, not tainted) after the last
    assert _files(names[0]) == set(names)


def test_losing_one_connection_keeps_a_segment_another_still_maps(pool: _shm.SegmentPool) -> None:
    a, b = _Conn(), _Conn()
    _, names = _payload_of(_big())
    pool.sent(names, a)
    pool.sent(names, b)
    pool.connection_lost(a)
    assert _files(names[0]) == set(names) and pool.stats()[2] == 1
    pool.release(names[0], b)
    assert _files(names[0]) == set()  # sent on a lost connection: removed, never reused


def test_a_put_segment_is_kept_by_the_owners_mapping_and_named_again_not_copied(pool: _shm.SegmentPool) -> None:
    data, names, _ = _shm.dumps_with_buffers(_big(), forwarding=False)
    pool.adopt_put(names)
    posted: list[Any] = []
    ((name, size),) = _shm.segment_table(data)
    view = _shm.map_own_put(name, size, lambda fn, *args: posted.append((fn, args)))
    value = pickle.loads(memoryview(data)[_shm.skip_table(data) :], buffers=[view])
    assert pool.is_put(name) and not value.flags.writeable
    again, made, _ = _shm.dumps_with_buffers(value)
    assert made == [] and _shm.segment_names(again) == [name]  # named, no new segment
    conn = _Conn()
    pool.sent([name], conn)
    del view, value
    gc.collect()
    assert pool.stats()[2] == 1  # the owner let go; a receiver still maps it
    pool.release(name, conn)
    assert pool.stats()[0] == 1 and not pool.is_put(name)  # back to the pool, pages kept for reuse


def test_a_slice_of_a_put_value_is_copied(pool: _shm.SegmentPool) -> None:
    data, names, _ = _shm.dumps_with_buffers(_big(), forwarding=False)
    pool.adopt_put(names)
    ((name, size),) = _shm.segment_table(data)
    view = _shm.map_own_put(name, size, lambda fn, *args: fn(*args))
    value = pickle.loads(memoryview(data)[_shm.skip_table(data) :], buffers=[view])
    _, made, _ = _shm.dumps_with_buffers(value[1:])
    assert len(made) == 1 and made != names
    pool.unused(made)
    del view, value
    gc.collect()


def test_a_reused_segment_is_written_through_a_mapping_with_the_new_bytes(pool: _shm.SegmentPool) -> None:
    conn = _Conn()
    first, names = _payload_of(_big())
    pool.sent(names, conn)
    pool.release(names[0], conn)
    second_value = _big()[::-1].copy()
    second, again = _payload_of(second_value)
    assert again == names  # the same segment (warm pages), written through our mapping
    back = _shm.loads(second, lambda name: None)
    assert (back[2] == second_value).all()
    pool.sent(again, conn)
    pool.release(again[0], conn)
    del back
    gc.collect()


def test_receivers_share_and_keep_one_mapping_per_segment(pool: _shm.SegmentPool) -> None:
    released: list[str] = []
    data, names = _payload_of(_big())
    one = _shm.loads(data, released.append)[2]
    two = _shm.loads(data, released.append)[2]
    assert _shm._live[names[0]][2] == 2  # one mapping, two users
    del one
    gc.collect()
    assert released == names and names[0] in _shm._live  # each use releases; the mapping stays in use
    del two
    gc.collect()
    assert released == names * 2 and names[0] not in _shm._live and names[0] in _shm.mapping_cache.entries
    _shm.mapping_cache.trim(idle=0)
    assert names[0] not in _shm.mapping_cache.entries
    pool.release(names[0])


def test_pending_refs_add_forward_entries_that_sent_hands_to_the_hook(
    pool: _shm.SegmentPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[tuple[int, object]] = []
    monkeypatch.setattr(_shm, "forward_hook", lambda forward_id, conn: bound.append((forward_id, conn)))

    class Pending:
        def __reduce__(self) -> Any:
            forwards = _shm.pending_forwards()
            assert forwards is not None
            forwards.append(41)
            return int, (0,)

    data, made, _ = _shm.dumps_with_buffers(["x", Pending()])
    assert made == [] and _shm.segment_names(data) == ["=41"] and _shm.segment_table(data) == []
    conn = _Conn()
    pool.sent(_shm.segment_names(data), conn)
    assert bound == [(41, conn)]
    assert _shm.loads(data) == ["x", 0]  # the receiver skips the entry
    with pytest.raises(AssertionError):
        _shm.dumps_with_buffers([Pending()], forwarding=False)
