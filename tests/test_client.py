"""The caller's side: names, namespaces, handles, pending limits, logs (actorloop/_runtime.py, _connection.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time

import pytest
from node._helpers import alive, settle_handle_drops, wait_gone

import actorloop

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

    def sleep(self, t: float) -> None:
        time.sleep(t)

    def wait_for_file(self, path: str) -> None:
        """Hold the actor until the test creates ``path`` (a gate a sync actor can wait on)."""
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            assert time.monotonic() < deadline, f"{path} never appeared"
            time.sleep(0.01)


def test_named_actor_and_get_actor() -> None:
    Counter.options(name="some_name").remote()
    c = actorloop.get_actor("some_name")
    assert actorloop.get(c.increment.remote()) == 1
    assert actorloop.get(actorloop.get_actor("some_name").increment.remote()) == 2
    actorloop.kill(c)


def test_taken_name_raises_value_error() -> None:
    first = Counter.options(name="taken").remote()
    with pytest.raises(ValueError, match="taken"):
        Counter.options(name="taken").remote()
    actorloop.kill(first)


def test_get_if_exists_returns_existing() -> None:
    a = Counter.options(name="shared", get_if_exists=True).remote()
    actorloop.get(a.increment.remote())
    b = Counter.options(name="shared", get_if_exists=True).remote()
    assert actorloop.get(b.increment.remote()) == 2
    actorloop.kill(a)


def test_missing_name_raises_value_error_naming_name_and_namespace() -> None:
    with pytest.raises(ValueError, match="ghost.*elsewhere"):
        actorloop.get_actor("ghost", namespace="elsewhere")


def test_namespaces_separate_names() -> None:
    a = Counter.options(name="n", namespace="ns1").remote()
    b = Counter.options(name="n", namespace="ns2").remote()
    actorloop.get(a.increment.remote())
    assert actorloop.get(actorloop.get_actor("n", namespace="ns1").increment.remote()) == 2
    assert actorloop.get(actorloop.get_actor("n", namespace="ns2").increment.remote()) == 1
    assert actorloop.get(b.increment.remote()) == 2
    with pytest.raises(ValueError):
        actorloop.get_actor("n")  # not in this driver's namespace
    actorloop.kill(a)
    actorloop.kill(b)


def test_list_actors_reports_every_namespace() -> None:
    a = Counter.options(name="listed", namespace="other").remote()
    pid = actorloop.get(a.pid.remote())
    infos = {i.name: i for i in actorloop.list_actors() if i.name}
    info = infos["listed"]
    assert isinstance(info, actorloop.ActorInfo)
    assert (info.class_name, info.namespace, info.state, info.pid, info.detached, info.restarts) == (
        "Counter",
        "other",
        "ALIVE",
        pid,
        False,
        0,
    )
    actorloop.kill(a)


def test_max_pending_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = Counter.options(max_pending_calls=2).remote()
    gate = tmp_path / "gate"
    first = c.wait_for_file.remote(str(gate))  # pending until the gate opens
    second = c.sleep.remote(0)
    with pytest.raises(actorloop.PendingCallsLimitExceeded):
        c.increment.remote()
    gate.touch()
    actorloop.get([first, second], timeout=30)
    assert actorloop.get(c.increment.remote()) == 1


def test_anonymous_actor_ends_when_its_handles_are_dropped() -> None:
    c = Counter.remote()
    pid = actorloop.get(c.pid.remote())
    del c
    gc.collect()
    assert wait_gone([pid], timeout=10) == []


def test_pending_call_keeps_a_dropped_actor_alive() -> None:
    assert actorloop.get(Counter.remote().increment.remote()) == 1


def test_named_actor_survives_dropped_handles() -> None:
    c = Counter.options(name="keeper").remote()
    actorloop.get(c.increment.remote())
    pid = actorloop.get(c.pid.remote())
    del c
    gc.collect()
    settle_handle_drops(Counter)  # an anonymous actor dropped now is gone, the named one is not
    assert alive(pid)
    assert actorloop.get(actorloop.get_actor("keeper").increment.remote()) == 2
    actorloop.kill(actorloop.get_actor("keeper"))


def _run_driver(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_actor_output_is_prefixed_in_the_driver() -> None:
    proc = _run_driver(
        """
        import sys, actorloop

        @actorloop.remote
        class Printer:
            def say(self, text):
                print(text)
                print("to stderr", file=sys.stderr)
                return 1
            def last(self):
                print("last words")
                return 2

        p = Printer.remote()
        actorloop.get(p.say.remote("hello"))
        actorloop.get(p.last.remote())
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    hello = [line for line in lines if line.endswith("hello")]
    assert hello and hello[0].startswith("(Printer pid=")
    assert any(line.startswith("(Printer pid=") and line.endswith("last words") for line in lines)
    assert any(line.startswith("(Printer pid=") and line.endswith("to stderr") for line in proc.stderr.splitlines())


def test_log_to_driver_false_hides_actor_output() -> None:
    proc = _run_driver(
        """
        import actorloop
        actorloop.init(log_to_driver=False)

        @actorloop.remote
        class Printer:
            def say(self):
                print("hidden")

        actorloop.get(Printer.remote().say.remote())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "hidden" not in proc.stdout
