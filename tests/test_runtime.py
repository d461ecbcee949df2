"""The process-global runtime: restarts seen from the caller, fork safety, finalizers, threads, quiet exits.

Each test here reproduces a bug of 0.1 (issue 10) and checks the fix.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from node._helpers import wait_gone, wait_until

import actorloop
from actorloop import _connection, _ref, _runtime
from actorloop import _protocol as proto
from actorloop._entry import EntryQueue
from actorloop.exceptions import ActorUnavailableError, ObjectLostError

pytestmark = pytest.mark.usefixtures("node")


@actorloop.remote
class Counter:
    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> int:
        self.count += 1
        return self.count

    def pid(self) -> int:
        return os.getpid()

    def wait_for(self, path: str) -> str:
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"

    def fail(self, i: int) -> None:
        raise ValueError(f"boom {i % 1}")


def _rt() -> _runtime.Runtime:
    rt = _runtime.get_runtime()
    assert rt is not None
    return rt


def _hold_home_loop(rt: _runtime.Runtime) -> threading.Event:
    """Keep the home loop busy until the returned event is set (so the connection cannot see a death yet)."""
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(30)

    rt.entry.put(block)
    assert started.wait(10)
    return release


def _wait_reaped(actor: Any, pid: int, timeout: float = 10) -> None:
    """Wait until the node has reaped ``pid`` (every thread gone, its sockets closed): a zombie leader
    of a multithreaded process may still hold its descriptors."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = [a for a in actorloop.list_actors() if a.actor_id == actor._actor_id][0]
        if info.pid != pid:
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} was not reaped")


def test_a_node_request_given_up_on_leaves_the_table() -> None:
    c = Counter.remote()
    actorloop.get(c.pid.remote())
    rt = _rt()
    node = rt.node
    assert node is not None

    async def ask_then_give_up() -> tuple[bool, bool]:
        # The actor is alive at epoch 0: a wait for epoch 1000 is answered only if it restarts that often.
        question = node.request("wait_actor", c._actor_id, 1000)
        await asyncio.sleep(0)
        asked = any(fut is question for fut in node._waiting.values())
        question.cancel()
        await asyncio.sleep(0)
        return asked, any(fut is question for fut in node._waiting.values())

    asked, still_there = rt.entry.run(ask_then_give_up()).result(timeout=10)
    assert asked and not still_there
    assert actorloop.get(c.pid.remote())  # the channel still works


def test_pending_counts_stay_exact_with_many_calling_threads() -> None:
    """What ``max_pending_calls`` counts (``_counted``, under the handle's lock) and what the pending
    tables hold return to zero after many threads' calls, with a thread switch possible almost
    anywhere.  (CPython runs ``x += 1`` on an attribute without a switch in between, so this cannot
    catch an unlocked counter on 3.10-3.13; it pins the count itself.)"""
    c = Counter.options(max_pending_calls=1_000_000).remote()
    actorloop.get(c.pid.remote())
    state = c._runtime_state
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch between nearly any two bytecodes
    try:

        def call_a_lot() -> None:
            for _ in range(150):
                actorloop.get([c.increment.remote() for _ in range(4)], timeout=60)

        threads = [threading.Thread(target=call_a_lot) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        sys.setswitchinterval(old)
    assert actorloop.get(c.increment.remote()) == 6 * 150 * 4 + 1
    assert wait_until(lambda: state._counted == 0 and state.pending == 0, timeout=10)


def test_internal_errors_go_to_the_actorloop_logger(caplog: pytest.LogCaptureFixture, capsys: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        entry = EntryQueue(loop)

        def broken_job() -> None:
            raise RuntimeError("a job that fails")

        with caplog.at_level(logging.ERROR, logger="actorloop"):
            entry.put(broken_job)
            entry.put(lambda: None)  # the queue goes on after a failed job
            loop.run_until_complete(asyncio.sleep(0.01))
    finally:
        loop.close()
    failed = [r for r in caplog.records if r.name == "actorloop" and r.exc_info]
    assert len(failed) == 1
    assert isinstance(failed[0].exc_info[1], RuntimeError)  # type: ignore[index]
    assert "a job that fails" not in capsys.readouterr().err  # no print_exc of its own


# -- restarts: only delivered calls were in flight --------------------------------------


def test_calls_sent_after_the_actor_died_wait_for_the_restarted_one() -> None:
    c = Counter.options(max_restarts=-1).remote()
    rt = _rt()
    for _ in range(3):
        pid = actorloop.get(c.pid.remote())
        release = _hold_home_loop(rt)
        try:
            os.kill(pid, signal.SIGKILL)
            _wait_reaped(c, pid)
            # The connection has not noticed yet: these are written into a dead socket.
            refs = [c.increment.remote() for _ in range(20)]
        finally:
            release.set()
        # None of them reached the old process, so none "restarted while this call ran".
        assert actorloop.get(refs, timeout=30) == list(range(1, 21))
        assert actorloop.get(c.pid.remote()) != pid


def test_calls_from_async_code_sent_after_a_death_wait_too() -> None:
    c = Counter.options(max_restarts=-1).remote()

    async def main() -> list[int]:
        pid = await c.pid.remote()
        loop = asyncio.get_running_loop()
        await c.increment.remote()  # the loop's connection is up
        os.kill(pid, signal.SIGKILL)
        await loop.run_in_executor(None, _wait_reaped, c, pid)
        # Sent before this loop read the connection's end: still not delivered.
        return await asyncio.wait_for(asyncio.gather(*[c.increment.remote() for _ in range(20)]), 30)

    assert asyncio.run(main()) == list(range(1, 21))


def test_a_call_written_straight_to_the_socket_without_retries_keeps_no_payload() -> None:
    c = Counter.remote()
    actorloop.get(c.increment.remote())  # the connection is up: a lone sync call is written straight out
    gate_path = os.path.join(_rt().node_dir, f"gate-{os.getpid()}")
    ref = c.wait_for.remote(gate_path)
    try:
        conn = c._runtime_state.conns[_rt().home_loop]
        deadline = time.monotonic() + 10

        def kept() -> bool:  # its payload for a retry, or its frame until it is in the socket
            return ref._call_id in conn._kept or ref._call_id in conn._unwritten_calls()

        while (conn.pending.get(ref._call_id) is not ref or kept()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.pending.get(ref._call_id) is ref  # in flight
        assert not kept()  # nothing kept for a retry the call cannot have
    finally:
        open(gate_path, "w").close()
    assert actorloop.get(ref, timeout=30) == "released"
    os.unlink(gate_path)


# -- a loop that ends takes its calls with it -------------------------------------------


@actorloop.remote
class Gate:
    """Async: its calls run side by side, so one held at the gate does not hold up the others."""

    def __init__(self) -> None:
        self.runs = 0

    async def wait_for(self, path: str) -> str:
        self.runs += 1
        while not os.path.exists(path):
            await asyncio.sleep(0.01)
        return "released"

    async def runs_of_wait_for(self) -> int:
        return self.runs

    async def pid(self) -> int:
        return os.getpid()

    async def first_then_crash_once(self, refs: list[Any], marker: str) -> Any:
        value = await refs[0]  # a ref sent pending: its value comes after the call
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(9)
        return value


def _leave_a_call_behind(handle: Any, gate: str) -> Any:
    """Make a call under asyncio.run and return without awaiting it: it is unanswered when the loop ends."""

    async def main() -> Any:
        await handle.pid.remote()  # the loop's connection is up (not still connecting when the loop ends)
        return handle.wait_for.remote(gate)

    return asyncio.run(main())


def test_calls_left_on_an_ended_loop_stop_counting_as_pending(tmp_path: Path) -> None:
    a = Gate.options(max_pending_calls=1).remote()
    gate = str(tmp_path / "gate")
    ref = _leave_a_call_behind(a, gate)
    # Before the fix the call counted forever: this raised PendingCallsLimitExceeded.
    second = a.wait_for.remote(gate)
    open(gate, "w").close()
    assert actorloop.get(second, timeout=30) == "released"
    # The first call's answer had nowhere to go: its ref says so instead of waiting forever.
    with pytest.raises(ObjectLostError, match="event loop"):
        actorloop.get(ref, timeout=30)


def test_an_anonymous_actor_ends_with_its_handle_after_its_callers_loop_ended(tmp_path: Path) -> None:
    a = Gate.remote()
    pid = actorloop.get(a.pid.remote(), timeout=30)
    _leave_a_call_behind(a, str(tmp_path / "never"))
    del a
    assert wait_gone([pid], timeout=30) == []


def test_calls_left_on_a_loop_closed_without_asyncio_run_stop_counting_too(tmp_path: Path) -> None:
    a = Gate.options(max_pending_calls=1).remote()
    gate = str(tmp_path / "gate")
    loop = asyncio.new_event_loop()

    async def main() -> Any:
        await a.pid.remote()
        return a.wait_for.remote(gate)

    ref = loop.run_until_complete(main())
    loop.close()  # no shutdown_asyncgens(), no cancelled tasks: nothing tells the connection
    second = a.wait_for.remote(gate)
    open(gate, "w").close()
    assert actorloop.get(second, timeout=30) == "released"
    with pytest.raises(RuntimeError, match="closed"):
        actorloop.get(ref, timeout=30)


# -- a connection lost while its actor lives on ----------------------------------------


def _home_conn(handle: Any) -> _connection.ActorConnection:
    return handle._runtime_state.conns[_rt().home_loop]  # type: ignore[no-any-return]


def _cut(conn: _connection.ActorConnection) -> None:
    """Shut the caller's socket down under it, both ways, as a reset does; the actor lives on."""
    transport = conn.transport
    assert transport is not None
    dup = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    try:
        dup.shutdown(socket.SHUT_RDWR)
    finally:
        dup.close()


def _runs(handle: Any) -> int:
    return int(actorloop.get(handle.runs_of_wait_for.remote(), timeout=30))


def test_a_connection_lost_under_a_live_actor_is_made_again(tmp_path: Path) -> None:
    a = Gate.remote()
    pid = actorloop.get(a.pid.remote(), timeout=30)
    gate = str(tmp_path / "gate")
    held = a.wait_for.remote(gate)
    assert wait_until(lambda: _runs(a) == 1, timeout=30)
    _cut(_home_conn(a))
    # Before the fix the connection waited for a restart that never came: this timed out.
    assert actorloop.get(a.pid.remote(), timeout=30) == pid  # the same process, reached again
    # The held call was in flight on the lost connection: its answer went with it.
    with pytest.raises(ActorUnavailableError, match="connection .* was lost"):
        actorloop.get(held, timeout=30)
    open(gate, "w").close()


def test_a_call_in_flight_on_a_lost_connection_is_sent_again_with_max_task_retries(tmp_path: Path) -> None:
    a = Gate.options(max_task_retries=1).remote()
    pid = actorloop.get(a.pid.remote(), timeout=30)
    gate = str(tmp_path / "gate")
    held = a.wait_for.remote(gate)
    assert wait_until(lambda: _runs(a) == 1, timeout=30)
    _cut(_home_conn(a))
    assert wait_until(lambda: _runs(a) == 2, timeout=30)  # sent again, to the same process
    open(gate, "w").close()
    assert actorloop.get(held, timeout=30) == "released"
    assert actorloop.get(a.pid.remote(), timeout=30) == pid


def test_calls_fail_clearly_when_a_live_actor_cannot_be_reached_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_connection, "UNREACHABLE_SECONDS", 0.5, raising=False)
    a = Gate.remote()
    pid = actorloop.get(a.pid.remote(), timeout=30)
    path = os.path.join(_rt().node_dir, f"a-{a._actor_id}.sock")
    os.rename(path, path + ".away")  # as a cleaner of temporary files might: the actor lives, unreachable
    try:
        _cut(_home_conn(a))
        with pytest.raises(ActorUnavailableError, match="cannot reach"):
            actorloop.get(a.pid.remote(), timeout=30)
    finally:
        os.rename(path + ".away", path)
    assert actorloop.get(a.pid.remote(), timeout=30) == pid  # a later call connects afresh


def test_a_connection_lost_again_and_again_without_an_answer_fails_its_calls(tmp_path: Path) -> None:
    a = Gate.options(max_task_retries=-1).remote()
    actorloop.get(a.pid.remote(), timeout=30)
    held = a.wait_for.remote(str(tmp_path / "never"))  # sent again after each loss: it has retries
    conn = _home_conn(a)
    assert wait_until(lambda: _runs(a) == 1, timeout=30)
    for session in range(1, _connection.MAX_SILENT_RECONNECTS + 2):
        _cut(conn)
        # Reconnected and the call sent again (or, the last time, given up on).
        assert wait_until(lambda s=session: conn.session == s and (conn.transport or held.done()), timeout=30)
    # A frame the actor cannot take would have it reconnect and resend forever: it stops instead.
    with pytest.raises(ActorUnavailableError, match="lost 4 times in a row"):
        actorloop.get(held, timeout=30)
    assert actorloop.get(a.pid.remote(), timeout=30) > 0  # a new connection serves later calls


def test_a_retried_call_gets_the_pending_ref_it_was_sent_with_again(tmp_path: Path) -> None:
    a = Gate.options(max_restarts=1, max_task_retries=1).remote()
    b = Gate.remote()
    actorloop.get(a.pid.remote(), timeout=30)  # connected: the call below is sent on an open connection
    gate = str(tmp_path / "gate")
    pending = b.wait_for.remote(gate)
    ref = a.first_then_crash_once.remote([pending], str(tmp_path / "crashed"))
    open(gate, "w").close()
    # The first run got the value and crashed; the retry, in the new process, needs the value again.
    # Before the fix it was not sent again (the send counted as already made): this timed out.
    assert actorloop.get(ref, timeout=30) == "released"


# -- finalizers and threads -----------------------------------------------------------


def test_a_handle_finalized_while_its_lock_is_held_does_not_deadlock() -> None:
    c = Counter.remote()
    state = c._runtime_state
    finished = threading.Event()

    def collect_with_the_lock_held() -> None:
        method = c.increment.options()  # a new ActorMethod: it counts as a handle
        cycle: list[Any] = [method]
        cycle.append(cycle)
        del method, cycle
        with state._lock:  # as while a call is being submitted
            gc.collect()  # runs the method's __del__ on this very thread
        finished.set()

    thread = threading.Thread(target=collect_with_the_lock_held, daemon=True)
    thread.start()
    assert finished.wait(10), "a finalizer deadlocked on a lock its own thread held"
    assert actorloop.get(c.increment.remote()) == 1


def test_two_threads_waiting_on_one_ref_both_wake(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the safety-net poll, a waiter that nobody notifies would sleep for a minute.
    monkeypatch.setattr(_ref, "FALLBACK_POLL_SECONDS", 60.0)
    c = Counter.remote()
    gate_path = os.path.join(_rt().node_dir, f"gate2-{os.getpid()}")
    ref = c.wait_for.remote(gate_path)
    results: list[Any] = []
    both_waiting = threading.Barrier(3)

    def waiter() -> None:
        both_waiting.wait(10)
        results.append(actorloop.get(ref, timeout=20))

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    both_waiting.wait(10)
    deadline = time.monotonic() + 10
    while not isinstance(_ref._sync_waiters.get(id(ref)), _ref._Waiters) and time.monotonic() < deadline:
        time.sleep(0.01)
    open(gate_path, "w").close()
    for t in threads:
        t.join(30)
    os.unlink(gate_path)
    assert results == ["released", "released"]
    assert id(ref) not in _ref._sync_waiters


def test_entry_queue_runs_jobs_in_order_from_many_threads() -> None:
    loop = asyncio.new_event_loop()
    entry = EntryQueue(loop)
    seen: list[tuple[int, int]] = []
    done = threading.Event()
    per_thread = 200

    def producer(n: int) -> None:
        for i in range(per_thread):
            entry.put(seen.append, (n, i))

    def finish() -> None:
        done.set()
        loop.stop()

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry.put(finish)
    loop.run_forever()
    assert done.is_set()
    for n in range(4):
        assert [i for m, i in seen if m == n] == list(range(per_thread))
    loop.close()
    assert entry.put(print, "dropped") is False  # a closed loop takes nothing, and put never raises


# -- errors from the node and cancel ----------------------------------------------------


def test_node_errors_keep_their_class_and_the_node_traceback() -> None:
    exc = OSError(98, "HTTP port 1 on 127.0.0.1 is already in use")
    rebuilt = proto.node_error(proto.format_node_error(exc))
    assert type(rebuilt) is OSError and rebuilt.errno == 98
    assert isinstance(rebuilt.__cause__, proto.NodeTraceback)

    class Unpicklable(Exception):
        def __reduce__(self) -> Any:
            raise TypeError("no")

    fallback = proto.node_error(proto.format_node_error(Unpicklable("x")))
    assert isinstance(fallback, RuntimeError) and "Unpicklable: x" in str(fallback)


def test_a_taken_http_port_raises_oserror_with_the_node_traceback() -> None:
    import socket

    @actorloop.remote
    class Web:
        @actorloop.http.get("/")
        def root(self, request: Any) -> str:
            return "hi"

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError, match="already in use") as info:
            Web.options(http_port=taken.getsockname()[1]).remote()
        assert isinstance(info.value.__cause__, proto.NodeTraceback)
        assert "in the actorloop node" in str(info.value.__cause__)
    finally:
        taken.close()


def test_cancel_force_raises_value_error_as_ray_does() -> None:
    c = Counter.remote()
    ref = c.increment.remote()
    with pytest.raises(ValueError, match="force=True"):
        actorloop.cancel(ref, force=True)
    assert actorloop.get(ref) == 1


# -- fork ---------------------------------------------------------------------------------


def _run_driver(tmp_path: Path, source: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    return subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )


COUNTER_SOURCE = """
    import os, sys, time
    import actorloop

    @actorloop.remote
    class Counter:
        def __init__(self):
            self.count = 0
        def increment(self):
            self.count += 1
            return self.count
        def slow(self, t):
            time.sleep(t)
            return t
        def fail(self, i):
            raise ValueError("boom")
"""


def test_a_forked_child_has_no_runtime_and_leaves_the_parents_node_alone(tmp_path: Path) -> None:
    out = _run_driver(
        tmp_path,
        COUNTER_SOURCE
        + """
    actorloop.init(address="local")
    c = Counter.remote()
    assert actorloop.get(c.increment.remote()) == 1
    pending = c.slow.remote(2)
    node_dir = os.environ["ACTORLOOP_ADDRESS"]
    pid = os.fork()
    if pid == 0:
        assert not actorloop.is_initialized()
        try:
            actorloop.get(pending, timeout=5)
        except RuntimeError as exc:
            print("child get:", "forked" in str(exc), flush=True)
        try:
            c.increment.remote()
        except RuntimeError as exc:
            print("child call:", "parent" in str(exc), flush=True)
        sys.exit(0)  # runs the child's exit handlers
    _, status = os.waitpid(pid, 0)
    print("child exit:", os.waitstatus_to_exitcode(status), flush=True)
    print("parent still works:", actorloop.get(c.increment.remote(), timeout=10), flush=True)
    print("node dir kept:", os.path.isdir(node_dir), flush=True)
    print("pending:", actorloop.get(pending, timeout=10), flush=True)
    """,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "child get: True" in lines
    assert "child call: True" in lines
    assert "child exit: 0" in lines
    assert "parent still works: 2" in lines
    assert "node dir kept: True" in lines
    assert "pending: 2" in lines


# -- quiet, truthful exits -------------------------------------------------------------------


def test_fire_and_forget_calls_at_exit_print_nothing(tmp_path: Path) -> None:
    out = _run_driver(
        tmp_path,
        COUNTER_SOURCE
        + """
    c = Counter.remote()
    actorloop.get(c.increment.remote())
    for _ in range(100):
        c.slow.remote(5)
    print("bye", flush=True)
    """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "bye"
    assert out.stderr.strip() == "", out.stderr[:2000]


def test_an_unfetched_error_is_reported_once_briefly(tmp_path: Path) -> None:
    out = _run_driver(
        tmp_path,
        COUNTER_SOURCE
        + """
    import gc
    c = Counter.remote()
    refs = [c.fail.remote(i) for i in range(100)]
    actorloop.wait(refs, num_returns=100, timeout=30)
    del refs
    gc.collect()
    print("still running", flush=True)
    """,
    )
    assert out.returncode == 0, out.stderr
    assert "still running" in out.stdout
    reports = [line for line in out.stderr.splitlines() if "nobody fetched" in line]
    assert len(reports) == 1, out.stderr[:2000]
    assert "ValueError: boom" in reports[0]
    assert len(out.stderr.splitlines()) <= 3, out.stderr[:2000]


def test_ctrl_c_during_a_big_get_prints_a_few_lines(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(
            COUNTER_SOURCE
            + """
    c = Counter.remote()
    refs = [c.slow.remote(0.001) for _ in range(10_000)]
    print("waiting", flush=True)
    actorloop.get(refs)
    """
        )
    )
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert len(err.splitlines()) < 40, err[:3000]
