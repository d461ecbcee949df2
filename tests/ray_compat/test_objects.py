"""Object refs as Ray has them: nested refs stay refs, ownership and owner death, put() in shared memory once.

See docs/objects.md for the model these tests check.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import time
from typing import Any

import numpy as np
import pytest

import actorloop
from actorloop import _ref, _shm
from actorloop.exceptions import ObjectLostError, OwnerDiedError

pytestmark = pytest.mark.usefixtures("node")

#: A hang guard only (a deadlock fails the test instead of stalling the run), never a timing assertion.
HANG_GUARD = 60


@actorloop.remote
class Gate:
    """``wait()`` calls stay pending until ``open()``: refs that are pending for as long as a test needs."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, value: Any = "opened") -> Any:
        await self.event.wait()
        return value

    async def open(self) -> None:
        self.event.set()


class Box:
    """A user object holding a ref, pickled by value (defined in a test module)."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref


@actorloop.remote
class Holder:
    def echo(self, value: Any) -> Any:
        return value

    def get_all(self, refs: list[Any]) -> list[Any]:
        return actorloop.get(refs, timeout=HANG_GUARD)

    async def await_all(self, refs: list[Any]) -> list[Any]:
        return list(await asyncio.gather(*refs))

    def get_deep(self, value: dict[str, Any]) -> list[Any]:
        # {"a": (ref, [ref, {"b": Box(ref)}])}
        first, (second, inner) = value["a"]
        return actorloop.get([first, second, inner["b"].ref], timeout=HANG_GUARD)

    def is_ref(self, value: list[Any]) -> bool:
        return isinstance(value[0], actorloop.ObjectRef)

    def call_and_return(self, gate: Any) -> list[Any]:
        # The ref of a call this actor made (it owns it), returned pending.
        return [gate.wait.remote("from-holder")]

    def pass_pending_on(self, gate: Any, other: Any) -> Any:
        # Passes a ref it owns, still pending, to another actor; returns that call's ref.
        return [other.wait_outcome.remote([gate.wait.remote("passed")])]

    def wait_outcome(self, refs: list[Any]) -> str:
        try:
            return f"value: {actorloop.get(refs[0], timeout=HANG_GUARD)}"
        except ObjectLostError as exc:
            return f"{type(exc).__name__}: {exc}"

    def put_and_return(self, n: int) -> list[Any]:
        return [actorloop.put(np.arange(n, dtype=np.float64))]

    def total(self, array: np.ndarray) -> tuple[float, bool]:
        return float(array.sum()), bool(array.flags.writeable)

    def total_nested(self, refs: list[Any]) -> tuple[float, bool]:
        array = actorloop.get(refs[0], timeout=HANG_GUARD)
        return float(array.sum()), bool(array.flags.writeable)

    def pid(self) -> int:
        return os.getpid()

    def return_ref(self, gate: Any) -> Any:
        return gate.wait.remote("top-level")  # a ref as the whole result: the caller gets a ref

    def put_and_keep(self, n: int) -> tuple[list[Any], list[str]]:
        self.kept = actorloop.put(np.arange(n, dtype=np.float64))
        return [self.kept], sorted(_shm._own_by_name)

    def return_put(self) -> Any:
        return actorloop.put({"k": np.arange(4)})


@actorloop.remote
def fn_get_nested(refs: list[Any]) -> list[Any]:
    return actorloop.get(refs, timeout=HANG_GUARD)


@actorloop.remote
def fn_double(x: int) -> int:
    return 2 * x


@actorloop.remote
def fn_return_ref(x: int) -> list[Any]:
    return [fn_double.remote(x)]


@actorloop.remote
def fn_total(array: np.ndarray, nested: list[Any]) -> tuple[float, float]:
    return float(array.sum()), float(actorloop.get(nested[0]).sum())


@pytest.fixture(scope="module")
def holder() -> Any:
    return Holder.remote()


@pytest.fixture(scope="module")
def other() -> Any:
    return Holder.remote()


# -- nested refs in arguments and results ---------------------------------------------------


def test_nested_refs_in_arguments_stay_refs_and_resolve_in_the_actor(holder: Any) -> None:
    gate = Gate.remote()
    pending = gate.wait.remote(1)
    done = holder.echo.remote(2)
    actorloop.get(done)
    assert actorloop.get(holder.is_ref.remote([done])) is True
    result = holder.get_all.remote([pending, done])
    gate.open.remote()
    assert actorloop.get(result, timeout=HANG_GUARD) == [1, 2]


def test_nested_refs_can_be_awaited_in_an_async_actor_method(holder: Any) -> None:
    gate = Gate.remote()
    refs = [gate.wait.remote(i) for i in range(3)]
    result = holder.await_all.remote(refs)
    gate.open.remote()
    assert actorloop.get(result, timeout=HANG_GUARD) == [0, 1, 2]


def test_refs_at_any_depth_in_dicts_tuples_and_user_objects(holder: Any) -> None:
    gate = Gate.remote()
    a, b, c = holder.echo.remote("a"), gate.wait.remote("b"), gate.wait.remote("c")
    result = holder.get_deep.remote({"a": (a, [b, {"b": Box(c)}])})
    gate.open.remote()
    assert actorloop.get(result, timeout=HANG_GUARD) == ["a", "b", "c"]


def test_top_level_refs_are_still_replaced_by_their_values(holder: Any) -> None:
    ref = holder.echo.remote(5)
    assert actorloop.get(holder.echo.remote(ref)) == 5


def test_a_pending_ref_returned_by_a_method_works_in_the_caller(holder: Any) -> None:
    gate = Gate.remote()
    (returned,) = actorloop.get(holder.call_and_return.remote(gate), timeout=HANG_GUARD)
    assert isinstance(returned, actorloop.ObjectRef) and not returned.done()
    gate.open.remote()
    assert actorloop.get(returned, timeout=HANG_GUARD) == "from-holder"


@pytest.mark.asyncio
async def test_a_returned_ref_can_be_awaited(holder: Any) -> None:
    gate = Gate.remote()
    (returned,) = await holder.call_and_return.remote(gate)
    gate.open.remote()
    assert await asyncio.wait_for(returned, HANG_GUARD) == "from-holder"


def test_a_ref_from_a_method_passed_on_to_another_actor(holder: Any, other: Any) -> None:
    gate = Gate.remote()
    (returned,) = actorloop.get(holder.call_and_return.remote(gate), timeout=HANG_GUARD)
    before = set(_ref._outbound)
    nested = other.get_all.remote([returned])  # nested: a ref there, still pending
    top = other.echo.remote(returned)  # top level: replaced by the value
    assert len(_ref._outbound) == len(before) + 1  # this process forwards the value when it has it
    gate.open.remote()
    assert actorloop.get(nested, timeout=HANG_GUARD) == ["from-holder"]
    assert actorloop.get(top, timeout=HANG_GUARD) == "from-holder"
    # Settled: the forward is kept only weakly, with the ref (no leak).
    _wait_until(lambda: set(_ref._outbound) <= before, "the forward entry is dropped")


def test_a_ref_returned_as_the_whole_result_stays_a_ref(holder: Any) -> None:
    gate = Gate.remote()
    ref = actorloop.get(holder.return_ref.remote(gate), timeout=HANG_GUARD)
    assert isinstance(ref, actorloop.ObjectRef)
    gate.open.remote()
    assert actorloop.get(ref, timeout=HANG_GUARD) == "top-level"
    put_ref = actorloop.get(holder.return_put.remote(), timeout=HANG_GUARD)
    assert actorloop.get(put_ref)["k"].tolist() == [0, 1, 2, 3]


def test_an_actor_passes_its_pending_ref_to_another_actor(holder: Any, other: Any) -> None:
    gate = Gate.remote()
    (outcome,) = actorloop.get(holder.pass_pending_on.remote(gate, other), timeout=HANG_GUARD)
    gate.open.remote()
    assert actorloop.get(outcome, timeout=HANG_GUARD) == "value: passed"


def test_failed_nested_refs_carry_their_error(holder: Any) -> None:
    @actorloop.remote
    def boom() -> None:
        raise KeyError("nested failure")

    failed = boom.remote()
    with pytest.raises(KeyError):
        actorloop.get(holder.get_all.remote([failed]), timeout=HANG_GUARD)


def test_remote_functions_take_and_return_nested_refs() -> None:
    gate = Gate.remote()
    result = fn_get_nested.remote([fn_double.remote(3), gate.wait.remote(4)])
    gate.open.remote()
    assert actorloop.get(result, timeout=HANG_GUARD) == [6, 4]
    (ref,) = actorloop.get(fn_return_ref.remote(5), timeout=HANG_GUARD)
    assert actorloop.get(ref, timeout=HANG_GUARD) == 10


def test_a_pending_ref_cannot_be_pickled_outside_a_call() -> None:
    gate = Gate.remote()
    pending = gate.wait.remote()
    with pytest.raises(TypeError, match="inside the arguments or result of a method"):
        pickle.dumps(pending)
    with pytest.raises(TypeError, match="inside the arguments or result of a method"):
        actorloop.put([pending])
    gate.open.remote()
    actorloop.get(pending, timeout=HANG_GUARD)
    assert actorloop.get(pickle.loads(pickle.dumps([pending]))[0]) == "opened"  # a done ref carries its value


# -- ownership: the owner's death -----------------------------------------------------------


def test_owner_death_fails_a_returned_pending_ref_with_owner_died_error() -> None:
    owner = Holder.remote()
    gate = Gate.remote()
    (returned,) = actorloop.get(owner.call_and_return.remote(gate), timeout=HANG_GUARD)
    actorloop.kill(owner)
    with pytest.raises(OwnerDiedError, match="exited before its value was ready") as info:
        actorloop.get(returned, timeout=HANG_GUARD)
    assert isinstance(info.value, ObjectLostError)
    gate.open.remote()  # the call itself still finishes; its value had nowhere to go


def test_owner_death_reaches_an_actor_that_borrowed_the_ref(other: Any) -> None:
    owner = Holder.remote()
    gate = Gate.remote()
    (outcome,) = actorloop.get(owner.pass_pending_on.remote(gate, other), timeout=HANG_GUARD)
    # ``outcome`` is owned by ``owner`` too: read the borrower's answer through a ref we own.
    answer = other.echo.remote(None)
    actorloop.get(answer)
    actorloop.kill(owner)
    with pytest.raises(OwnerDiedError):
        actorloop.get(outcome, timeout=HANG_GUARD)
    gate.open.remote()


def test_a_borrower_reports_owner_died_error_to_its_caller(other: Any) -> None:
    owner = Holder.remote()
    gate = Gate.remote()
    (pending,) = actorloop.get(owner.call_and_return.remote(gate), timeout=HANG_GUARD)
    result = other.wait_outcome.remote([pending])  # forwarded through this process
    actorloop.kill(owner)
    assert actorloop.get(result, timeout=HANG_GUARD).startswith("OwnerDiedError")
    gate.open.remote()


def test_a_value_that_already_arrived_outlives_its_owner_whose_segments_are_swept() -> None:
    owner = Holder.remote()
    (ref,), names = actorloop.get(owner.put_and_keep.remote(1 << 17), timeout=HANG_GUARD)  # 1 MiB: shared memory
    assert len(names) == 1 and _segment_exists(names[0])
    actorloop.kill(owner)
    # The node removes a dead process's segments (after a short grace); our mapping keeps the pages.
    _wait_until(lambda: not _segment_exists(names[0]), "the dead owner's put segment is swept")
    assert float(actorloop.get(ref).sum()) == float(np.arange(1 << 17).sum())


# -- put: one copy in shared memory -----------------------------------------------------------


@pytest.fixture
def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the large buffers this process copies into shared memory (each write is one serialization)."""
    writes: list[int] = []
    real = _shm.segment_pool.write

    def counting(raw: memoryview) -> str | None:
        writes.append(raw.nbytes)
        return real(raw)

    monkeypatch.setattr(_shm.segment_pool, "write", counting)
    return writes


def test_a_put_value_is_copied_once_for_many_calls(holder: Any, other: Any, count_writes: list[int]) -> None:
    array = np.arange(1 << 20, dtype=np.float64)  # 8 MiB
    ref = actorloop.put(array)
    assert count_writes == [array.nbytes]
    expected = float(array.sum())
    top = [h.total.remote(ref) for h in (holder, other) for _ in range(5)]
    nested = [h.total_nested.remote([ref]) for h in (holder, other) for _ in range(5)]
    assert actorloop.get(top + nested, timeout=HANG_GUARD) == [(expected, False)] * 20
    # The value got (an array in shared memory) passed on is named, not copied, too.
    assert actorloop.get(holder.total.remote(actorloop.get(ref)), timeout=HANG_GUARD) == (expected, False)
    assert count_writes == [array.nbytes]


def test_a_put_value_is_copied_once_for_remote_functions_too(count_writes: list[int]) -> None:
    array = np.ones(1 << 18)
    ref = actorloop.put(array)
    results = actorloop.get([fn_total.remote(ref, [ref]) for _ in range(4)], timeout=HANG_GUARD)
    assert results == [(float(1 << 18), float(1 << 18))] * 4
    assert count_writes == [array.nbytes]


def test_put_arrays_are_read_only_in_the_owner_and_the_receivers(holder: Any) -> None:
    ref = actorloop.put(np.ones(1 << 16))
    assert not actorloop.get(ref).flags.writeable
    assert actorloop.get(holder.total.remote(ref), timeout=HANG_GUARD) == (float(1 << 16), False)


def test_a_slice_of_a_put_array_is_copied_not_named(holder: Any, count_writes: list[int]) -> None:
    ref = actorloop.put(np.arange(1 << 16, dtype=np.float64))
    part = actorloop.get(ref)[1:]
    assert actorloop.get(holder.total.remote(part), timeout=HANG_GUARD) == (float(part.sum()), False)
    assert len(count_writes) == 2  # the put, then the slice (a different buffer)


def test_a_put_ref_made_in_an_actor_can_be_passed_on(holder: Any, other: Any) -> None:
    (ref,) = actorloop.get(holder.put_and_return.remote(1 << 16), timeout=HANG_GUARD)
    expected = float(np.arange(1 << 16).sum())
    assert actorloop.get(other.total_nested.remote([ref]), timeout=HANG_GUARD) == (expected, False)
    assert actorloop.get(other.total.remote(ref), timeout=HANG_GUARD) == (expected, False)


def _segment_exists(name: str) -> bool:
    return os.path.exists(os.path.join(_shm.SHM_DIR, name))


def _wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        gc.collect()
        time.sleep(0.01)


def _busy(name: str) -> bool:
    return name in _shm.segment_pool._busy


def test_put_segments_are_freed_when_the_last_ref_is_dropped(holder: Any, count_writes: list[int]) -> None:
    before = _shm.segment_pool.put_segments()
    known = set(_shm._own_by_name)
    ref = actorloop.put(np.zeros(1 << 18))
    names = sorted(set(_shm._own_by_name) - known)
    assert len(names) == 1 and _segment_exists(names[0])
    assert actorloop.get([holder.total.remote(ref), holder.total_nested.remote([ref])], timeout=HANG_GUARD)
    assert _shm.segment_pool.put_segments() == before + 1
    del ref
    # Freed once the actor released it: back to the pool (warm pages for the next write) ...
    _wait_until(lambda: not _busy(names[0]), "the put segment is released")
    assert _shm.segment_pool.put_segments() == before
    # ... and removed from /dev/shm once idle (the trim timer; forced here).
    _shm.segment_pool.trim(idle=0)
    assert not _segment_exists(names[0])


def test_a_value_got_from_a_put_ref_keeps_its_segment_after_the_ref_is_dropped(holder: Any) -> None:
    ref = actorloop.put(np.full(1 << 18, 7.0))
    value = actorloop.get(ref)
    del ref
    gc.collect()
    # Later puts must not reuse (overwrite) the segment the value still maps.
    others = [actorloop.put(np.full(1 << 18, 1.0)) for _ in range(3)]
    assert actorloop.get(holder.total.remote(value), timeout=HANG_GUARD) == (7.0 * (1 << 18), False)
    assert float(value.sum()) == 7.0 * (1 << 18)
    del others, value


def test_a_temporary_put_ref_lives_until_the_call_read_it(holder: Any) -> None:
    # The ref is dropped as soon as .remote() returns: the call still finds the segment.
    before = _shm.segment_pool.put_segments()
    expected = float((1 << 18) * 3)
    results = [holder.total.remote(actorloop.put(np.full(1 << 18, 3.0))) for _ in range(3)]
    assert actorloop.get(results, timeout=HANG_GUARD) == [(expected, False)] * 3
    _wait_until(lambda: _shm.segment_pool.put_segments() == before, "the temporary puts are freed")


# -- the forwarding machinery, without processes ----------------------------------------------


class _FakeConn:
    """Stands for a connection: refs received on it live on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False


def _received_on(conn: _FakeConn, forward_id: int) -> Any:
    _shm._local.inbound = conn
    try:
        return _ref._rebuild_pending(forward_id)
    finally:
        _shm._local.inbound = None


def test_a_value_that_overtakes_its_ref_is_kept_until_the_ref_arrives() -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = _FakeConn(loop)
        _ref.fulfil(conn, (7, 5, True, "early"))  # (REF_VALUE, forward id, ok, value)
        ref = _received_on(conn, 5)
        assert ref.done() and ref.result() == "early"
        later = _received_on(conn, 6)
        assert not later.done()
        _ref.fulfil(conn, (7, 6, False, KeyError("failed there")))
        with pytest.raises(KeyError):
            later.result()
    finally:
        loop.close()


def test_losing_the_connection_fails_its_pending_refs_with_owner_died_error() -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = _FakeConn(loop)
        refs = [_received_on(conn, i) for i in (1, 2)]
        _shm.segment_pool.connection_lost(conn)  # what FrameProtocol.connection_lost calls
        loop.run_until_complete(asyncio.sleep(0))  # the failure is posted to the refs' loop
        for ref in refs:
            with pytest.raises(OwnerDiedError):
                ref.result()
        conn.closed = True
        late = _received_on(conn, 3)  # a ref that arrives on a closed connection fails at once
        loop.run_until_complete(asyncio.sleep(0))
        with pytest.raises(OwnerDiedError):
            late.result()
    finally:
        loop.close()


def test_a_pending_ref_received_outside_a_connection_is_lost_not_hanging() -> None:
    ref = _ref._rebuild_pending(99)
    with pytest.raises(ObjectLostError):
        ref.result()
