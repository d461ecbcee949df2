"""Detached actors outlive their creator; init() finds the right node (SPEC sections 1 and 5)."""

from __future__ import annotations

import os
import shutil

import pytest

import actorloop

from ._helpers import alive, env_for, processes_of, run_script, short_dir, wait_gone, write_script

CREATE = """
import os
import actorloop

@actorloop.remote
class Counter:
    def __init__(self, start=0):
        self.count = start
    def increment(self):
        self.count += 1
        return self.count
    def pid(self):
        return os.getpid()

actorloop.init(address="auto", namespace="ns")
c = Counter.options(name="c", namespace="ns", lifetime="detached").remote(100)
for _ in range(3):
    actorloop.get(c.increment.remote())
print(actorloop.get(c.pid.remote()), os.getpid())
"""

USE = """
import actorloop

actorloop.init(address="auto", namespace="ns")
c = actorloop.get_actor("c")
print(actorloop.get(c.increment.remote()))
print([(a.name, a.namespace, a.state, a.detached) for a in actorloop.list_actors()])
"""


@pytest.fixture
def no_runtime() -> None:
    """These tests call init() in this process: there must be no runtime before or after."""
    actorloop.shutdown()
    yield
    actorloop.shutdown()


def test_a_detached_actor_outlives_its_creator_and_keeps_its_state(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    created = run_script(write_script(tmp_path, "create.py", CREATE), daemon.env)
    assert created.returncode == 0, created.stderr
    actor_pid, creator_pid = map(int, created.stdout.split())
    assert not alive(creator_pid)
    assert alive(actor_pid)
    use = write_script(tmp_path, "use.py", USE)
    first = run_script(use, daemon.env)
    assert first.returncode == 0, first.stderr
    count, infos = first.stdout.strip().splitlines()
    assert count == "104"
    assert infos == "[('c', 'ns', 'ALIVE', True)]"
    second = run_script(use, daemon.env)
    assert second.stdout.splitlines()[0] == "105"
    assert alive(actor_pid)


def test_get_actor_in_another_namespace_fails_naming_both(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    assert run_script(write_script(tmp_path, "create.py", CREATE), daemon.env).returncode == 0
    script = write_script(
        tmp_path,
        "other.py",
        """
        import actorloop
        actorloop.init(address="auto", namespace="other")
        try:
            actorloop.get_actor("c")
        except ValueError as exc:
            print("ValueError:", exc)
        print(actorloop.get(actorloop.get_actor("c", namespace="ns").increment.remote()))
        """,
    )
    result = run_script(script, daemon.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    error, count = "\n".join(lines[:-1]), lines[-1]
    assert error.startswith("ValueError:") and "'c'" in lines[0] and "'other'" in lines[0]
    assert "lives in namespace(s) 'ns'" in error  # the message points at where the name is
    assert count == "104"


def test_a_detached_actor_ends_with_kill(daemon, tmp_path, no_runtime) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    created = run_script(write_script(tmp_path, "create.py", CREATE), daemon.env)
    actor_pid = int(created.stdout.split()[0])
    actorloop.init(address=daemon.dir, namespace="ns")
    actorloop.kill(actorloop.get_actor("c"))
    assert not alive(actor_pid)
    with pytest.raises(ValueError):
        actorloop.get_actor("c")


def test_init_auto_without_a_node_says_to_run_actorloop_start(daemon, monkeypatch, no_runtime) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ACTORLOOP_DIR", daemon.dir)
    monkeypatch.delenv("ACTORLOOP_ADDRESS", raising=False)
    with pytest.raises(ConnectionError, match="actorloop start"):
        actorloop.init(address="auto")
    assert not actorloop.is_initialized()


def test_init_with_a_path_where_no_node_runs_fails(no_runtime) -> None:  # type: ignore[no-untyped-def]
    path = short_dir("x")
    try:
        with pytest.raises(ConnectionError, match=path):
            actorloop.init(address=path)
    finally:
        shutil.rmtree(path)
    assert not actorloop.is_initialized()


def test_init_without_address_joins_the_running_daemon(daemon, monkeypatch, no_runtime) -> None:  # type: ignore[no-untyped-def]
    node_pid = daemon.start()
    monkeypatch.setenv("ACTORLOOP_DIR", daemon.dir)
    monkeypatch.delenv("ACTORLOOP_ADDRESS", raising=False)
    context = actorloop.init(namespace="joined")
    assert context["address"] == daemon.dir
    assert context["namespace"] == "joined"

    @actorloop.remote
    class Pid:
        def pid(self) -> int:
            return os.getpid()

    handle = Pid.options(name="p").remote()
    actor_pid = actorloop.get(handle.pid.remote())
    assert actor_pid in {p.pid for p in processes_of(daemon.dir)}
    listed = daemon.cli("list").stdout
    assert "joined" in listed and "False" in listed
    # Joining a daemon sets no address for child processes: they find the daemon themselves.
    assert "ACTORLOOP_ADDRESS" not in os.environ
    actorloop.shutdown()
    # Our (non-detached) actor ends with us; the daemon lives on.
    assert wait_gone([actor_pid], timeout=5) == []
    assert alive(node_pid)


def test_actorloop_address_is_honoured(daemon, monkeypatch, no_runtime) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    monkeypatch.setenv("ACTORLOOP_DIR", os.path.join(os.path.dirname(daemon.dir), "elsewhere"))
    monkeypatch.setenv("ACTORLOOP_ADDRESS", daemon.dir)
    assert actorloop.init()["address"] == daemon.dir


def test_init_local_starts_a_fresh_embedded_node_even_with_a_daemon(daemon, monkeypatch, no_runtime) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    monkeypatch.setenv("ACTORLOOP_DIR", daemon.dir)
    monkeypatch.delenv("ACTORLOOP_ADDRESS", raising=False)
    address = actorloop.init(address="local")["address"]
    assert address != daemon.dir
    assert stat_mode(address) == 0o700
    # Processes that this driver starts inherit the embedded node's address.
    assert os.environ["ACTORLOOP_ADDRESS"] == address
    node_pids = [p.pid for p in processes_of(address)]
    assert node_pids
    with pytest.raises(RuntimeError, match="already"):
        actorloop.init()
    assert actorloop.init(ignore_reinit_error=True)["address"] == address
    actorloop.shutdown()
    assert "ACTORLOOP_ADDRESS" not in os.environ
    assert wait_gone(node_pids, timeout=5) == []
    assert not os.path.exists(address)


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_child_process_joins_its_drivers_embedded_node(tmp_path) -> None:  # type: ignore[no-untyped-def]
    parent_dir = short_dir("e")
    env = env_for(os.path.join(parent_dir, "no-daemon-here"))
    script = write_script(
        tmp_path,
        "parent.py",
        """
        import subprocess, sys
        import actorloop

        @actorloop.remote
        class Box:
            def __init__(self, v):
                self.v = v
            def get(self):
                return self.v

        address = actorloop.init(namespace="fam")["address"]
        box = Box.options(name="box").remote(42)
        actorloop.get(box.ready())
        child = (
            "import actorloop; info = actorloop.init(namespace='fam'); "
            "print(info['address']); print(actorloop.get(actorloop.get_actor('box').get.remote()))"
        )
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
        print(address)
        print(out, end="")
        """,
    )
    try:
        result = run_script(script, env)
        assert result.returncode == 0, result.stderr
        mine, childs, value = result.stdout.strip().splitlines()
        assert childs == mine
        assert value == "42"
        assert processes_of(mine) == []
    finally:
        shutil.rmtree(parent_dir, ignore_errors=True)


def test_actorloop_stop_under_a_connected_driver_fails_its_calls_not_hangs(daemon, no_runtime) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    actorloop.init(address=daemon.dir)

    @actorloop.remote
    class Slow:
        def sleep(self, t: float) -> float:
            import time

            time.sleep(t)
            return t

    handle = Slow.remote()
    actorloop.get(handle.ready(), timeout=10)
    in_flight = handle.sleep.remote(30)
    assert daemon.cli("stop").returncode == 0
    with pytest.raises(actorloop.ActorDiedError):
        actorloop.get(in_flight, timeout=10)
    with pytest.raises((actorloop.ActorDiedError, ConnectionError)):
        actorloop.get(handle.sleep.remote(0), timeout=10)
