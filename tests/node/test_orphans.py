"""No orphans, ever (SPEC section 5): however a driver ends, its actors and its embedded node end with it."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

import actorloop

from ._helpers import (
    PY,
    alive,
    env_for,
    kill_everything_of,
    processes_of,
    settle_handle_drops,
    short_dir,
    wait_gone,
    wait_until,
    write_script,
)

DRIVER = """
import json, os, sys, time
import actorloop

@actorloop.remote
class Worker:
    def pid(self):
        return os.getpid()
    def sleep(self, t):
        time.sleep(t)

how, address = sys.argv[1], sys.argv[2]
info = actorloop.init(address=None if address == "default" else address)
anonymous = [Worker.remote() for _ in range(2)]
named = Worker.options(name="named").remote()
actors = anonymous + [named]
report = {"address": info["address"], "pids": actorloop.get([a.pid.remote() for a in actors])}
if address == "auto":
    detached = Worker.options(name="detached", lifetime="detached").remote()
    report["detached"] = actorloop.get(detached.pid.remote())
busy = [a.sleep.remote(60) for a in actors]   # calls in flight when the driver goes
print(json.dumps(report), flush=True)
sys.stdin.readline()   # the test looks at our processes first
if how == "exit":
    sys.exit(0)
if how == "raise":
    raise RuntimeError("the driver failed")
if how == "os_exit":
    os._exit(3)   # no atexit, no shutdown()
print("kill me", flush=True)   # "sigkill": the test kills us now
time.sleep(120)
"""


def _run_driver(tmp_path: Path, how: str, env: dict[str, str], address: str) -> dict:  # type: ignore[type-arg]
    script = write_script(tmp_path, "driver.py", DRIVER)
    proc = subprocess.Popen(
        [PY, str(script), how, address],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, proc.stderr.read()  # type: ignore[union-attr]
        report = json.loads(line)
        report["node_pids"] = [p.pid for p in processes_of(report["address"])]
        report["driver"] = proc.pid
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        if how == "sigkill":
            assert proc.stdout.readline().strip() == "kill me"  # type: ignore[union-attr]
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
        report["returncode"] = proc.returncode
        report["stderr"] = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    return report


@pytest.mark.parametrize("how", ["exit", "raise", "os_exit", "sigkill"])
def test_a_driver_takes_its_actors_and_embedded_node_with_it(tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    parent = short_dir("o")
    env = env_for(os.path.join(parent, "no-daemon"))
    try:
        report = _run_driver(tmp_path, how, env, "default")
        expected_code = {"exit": 0, "raise": 1, "os_exit": 3, "sigkill": -signal.SIGKILL}[how]
        assert report["returncode"] == expected_code, report["stderr"]
        if how == "raise":
            assert "the driver failed" in report["stderr"]
        address = report["address"]
        assert address != env["ACTORLOOP_DIR"]  # no daemon: an embedded node in a directory of its own
        assert set(report["pids"]) <= set(report["node_pids"])
        assert len(report["node_pids"]) >= len(report["pids"]) + 2  # node, zygote(s) and actors
        assert wait_gone(report["node_pids"], timeout=8) == [], [p.cmdline() for p in processes_of(address)]
        assert processes_of(address) == []
        # The embedded node removes its private directory, however its driver ended.
        assert wait_until(lambda: not os.path.exists(address), timeout=5)
    finally:
        kill_everything_of(parent)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_driver_of_a_daemon_takes_its_non_detached_actors_with_it(daemon, tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    node_pid = daemon.start()
    report = _run_driver(tmp_path, how, daemon.env, "auto")
    assert report["address"] == daemon.dir
    assert wait_gone(report["pids"], timeout=5) == []
    # The detached actor and the node live on.
    assert alive(report["detached"]) and alive(node_pid)
    listing = daemon.cli("list").stdout
    states = {line.split()[2]: line.split()[4] for line in listing.splitlines()[1:]}
    assert states.get("detached") == "ALIVE"
    assert states.get("named", "DEAD") == "DEAD"


# -- anonymous actors whose creator dropped every handle (in this process) --------


@actorloop.remote
class Worker:
    def pid(self) -> int:
        return os.getpid()

    def call(self, other: actorloop.ActorHandle) -> int:  # type: ignore[type-arg]
        return actorloop.get(other.pid.remote())  # type: ignore[no-any-return]

    def keep(self, other: actorloop.ActorHandle) -> None:  # type: ignore[type-arg]
        self.kept = other

    def call_method(self, method: Any) -> Any:
        return actorloop.get(method.remote())


def _state_of(pid: int) -> str | None:
    for info in actorloop.list_actors():
        if info.pid == pid:
            return info.state
    return None


def _state_of_id(actor_id: str) -> str | None:
    for info in actorloop.list_actors():
        if info.actor_id == actor_id:
            return info.state
    return None


def test_an_anonymous_actor_ends_once_its_creator_drops_every_handle(node) -> None:  # type: ignore[no-untyped-def]
    handle = Worker.remote()
    pid = actorloop.get(handle.pid.remote())
    actor_id = handle._actor_id
    del handle  # no gc.collect(): dropping the last reference is enough
    assert wait_gone([pid], timeout=5) == []
    assert wait_until(lambda: _state_of_id(actor_id) == "DEAD", timeout=5)


def test_a_method_object_keeps_its_actor_like_a_handle(node) -> None:  # type: ignore[no-untyped-def]
    handle = Worker.remote()
    method = handle.pid
    del handle
    gc.collect()
    pid = actorloop.get(method.remote())
    settle_handle_drops(Worker)  # an anonymous actor dropped now is gone; this one is kept by `method`
    assert alive(pid)
    del method
    assert wait_gone([pid], timeout=5) == []


def test_actors_made_in_a_loop_do_not_pile_up(node) -> None:  # type: ignore[no-untyped-def]
    pids = []
    for _ in range(8):
        pids.append(actorloop.get(Worker.remote().pid.remote()))  # the handle is a temporary
    assert wait_gone(pids, timeout=5) == []


def test_a_named_actor_lives_on_without_handles_until_its_creator_exits(node) -> None:  # type: ignore[no-untyped-def]
    handle = Worker.options(name="kept").remote()
    pid = actorloop.get(handle.pid.remote())
    del handle
    gc.collect()
    settle_handle_drops(Worker)
    assert alive(pid)
    again = actorloop.get_actor("kept")
    assert actorloop.get(again.pid.remote()) == pid
    actorloop.kill(again)


def test_an_anonymous_actor_passed_to_another_actor_is_kept(node) -> None:  # type: ignore[no-untyped-def]
    holder = Worker.remote()
    passed = Worker.remote()
    pid = actorloop.get(passed.pid.remote())
    actorloop.get(holder.keep.remote(passed))
    del passed
    gc.collect()
    settle_handle_drops(Worker)
    assert alive(pid)
    assert _state_of(pid) == "ALIVE"
    actorloop.kill(holder)


def test_a_pending_call_keeps_a_dropped_anonymous_actor_until_it_finishes(node) -> None:  # type: ignore[no-untyped-def]
    handle = Worker.remote()
    other = Worker.remote()
    ref = handle.call.remote(other)  # takes a round trip through `other`
    del handle
    gc.collect()
    assert isinstance(actorloop.get(ref, timeout=10), int)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_actors_still_starting_when_their_driver_goes_end_too(daemon, tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    baseline = {p.pid for p in processes_of(daemon.dir)}  # the node and its zygotes
    script = write_script(
        tmp_path,
        "slow.py",
        """
        import sys, time
        import actorloop

        @actorloop.remote
        class Slow:
            def __init__(self):
                time.sleep(60)

        actorloop.init(address="auto")
        actors = [Slow.remote() for _ in range(3)] + [Slow.options(name="slow").remote()]
        print("created", flush=True)
        sys.stdin.readline()
        """,
    )
    proc = subprocess.Popen([PY, str(script)], env=daemon.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "created"  # type: ignore[union-attr]
        # Wait until the actors' processes exist, so that the driver goes while they are starting.
        assert wait_until(lambda: len(processes_of(daemon.dir)) >= len(baseline) + 4, timeout=10)
        if how == "sigkill":
            proc.kill()
        else:
            proc.stdin.write("\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
    assert wait_until(lambda: {p.pid for p in processes_of(daemon.dir)} == baseline, timeout=5)
    states = [line.split()[4] for line in daemon.cli("list").stdout.splitlines()[1:]]
    assert states == ["DEAD"] * 4


def test_a_method_object_can_be_passed_to_another_actor(node) -> None:  # type: ignore[no-untyped-def]
    caller = Worker.remote()
    passed = Worker.remote()
    pid = actorloop.get(passed.pid.remote())
    assert actorloop.get(caller.call_method.remote(passed.pid), timeout=10) == pid
    # Passing the method passed the actor on: dropping our handle no longer ends it.
    del passed
    gc.collect()
    settle_handle_drops(Worker)
    assert alive(pid)
    actorloop.kill(caller)
