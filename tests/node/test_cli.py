"""The ``actorloop`` command: start, status, list, stop, with real subprocesses and a node per test."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess

import psutil
import pytest

from ._helpers import ACTORLOOP, alive, cli, processes_of, run_script, wait_gone, wait_until, write_script

CREATE_DETACHED = """
import os, sys
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

actorloop.init(address="auto", namespace=sys.argv[2])
c = Counter.options(name=sys.argv[1], lifetime="detached").remote(10)
print(actorloop.get(c.increment.remote()), actorloop.get(c.pid.remote()))
"""


def _create_detached(daemon, tmp_path, name: str, namespace: str = "ns") -> int:  # type: ignore[no-untyped-def]
    script = write_script(tmp_path, "create.py", CREATE_DETACHED)
    result = run_script(script, daemon.env, name, namespace)
    assert result.returncode == 0, result.stderr
    count, pid = result.stdout.split()
    assert count == "11"
    return int(pid)


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_start_prints_the_address_and_the_node_outlives_the_starter(daemon) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli("start")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == daemon.dir
    pid = int(open(os.path.join(daemon.dir, "node.pid")).read())
    # The starting process has exited; the node runs on in a session of its own,
    # so closing the terminal that started it (SIGHUP to that session) does not reach it.
    assert alive(pid)
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)
    # Still serving after its starter is gone: a full round trip, not a look after a pause.
    status = daemon.cli("status")
    assert status.returncode == 0
    assert f"pid:     {pid}" in status.stdout
    assert alive(pid)


def test_the_directory_is_private_and_the_secret_too(daemon) -> None:  # type: ignore[no-untyped-def]
    # A directory someone else made open is refused, never chmod'ed (see test_dir_trust.py) ...
    os.makedirs(daemon.dir, mode=0o755)
    os.chmod(daemon.dir, 0o755)
    result = daemon.cli("start")
    assert result.returncode == 1 and "mode is 0755, not 0700" in result.stderr
    assert stat.S_IMODE(os.stat(daemon.dir).st_mode) == 0o755
    # ... one that start makes itself is closed to others.
    os.rmdir(daemon.dir)
    daemon.start()
    assert stat.S_IMODE(os.stat(daemon.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(daemon.dir, "secret")).st_mode) == 0o600
    assert len(open(os.path.join(daemon.dir, "secret"), "rb").read()) == 32
    sock_mode = stat.S_IMODE(os.stat(os.path.join(daemon.dir, "node.sock")).st_mode)
    assert sock_mode & 0o077 == 0


def test_status_shows_address_pid_uptime_and_actors(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pid = daemon.start()
    result = daemon.cli("status")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.strip().splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["address"] == daemon.dir
    assert fields["pid"] == str(pid)
    assert re.fullmatch(r"(\d+h )?\d+m \d\ds", fields["uptime"]), fields["uptime"]
    assert fields["actors"] == "none"
    _create_detached(daemon, tmp_path, "c")
    result = daemon.cli("status")
    assert "actors:  1 ALIVE" in result.stdout


def test_list_prints_every_actor_of_every_namespace_as_a_table(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    empty = daemon.cli("list")
    assert empty.returncode == 0
    assert empty.stdout.split() == [
        "ACTOR_ID",
        "CLASS",
        "NAME",
        "NAMESPACE",
        "STATE",
        "PID",
        "RESTARTS",
        "DETACHED",
        "DEATH_CAUSE",
    ]
    pid_a = _create_detached(daemon, tmp_path, "first", "ns1")
    pid_b = _create_detached(daemon, tmp_path, "second", "ns2")
    result = daemon.cli("list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split()[:3] == ["ACTOR_ID", "CLASS", "NAME"]
    assert len(rows) == 2
    parsed = sorted((row.split() for row in rows), key=lambda fields: fields[2])
    for row, name, ns, pid in zip(parsed, ["first", "second"], ["ns1", "ns2"], [pid_a, pid_b], strict=True):
        actor_id, cls, got_name, got_ns, state, got_pid, restarts, detached, cause = row
        assert re.fullmatch(r"[0-9a-f]+", actor_id)
        assert (cls, got_name, got_ns, state, got_pid, restarts, detached, cause) == (
            "Counter",
            name,
            ns,
            "ALIVE",
            str(pid),
            "0",
            "True",
            "-",
        )
    # The columns line up under the header.
    assert all(row.index(row.split()[1]) == header.index("CLASS") for row in rows)


def test_stop_ends_the_node_and_every_actor_detached_ones_too(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node_pid = daemon.start()
    actor_pid = _create_detached(daemon, tmp_path, "c")
    pids = {p.pid for p in processes_of(daemon.dir)}
    assert {node_pid, actor_pid} <= pids and len(pids) >= 3  # node, zygote(s), actor
    result = daemon.cli("stop")
    assert result.returncode == 0, result.stderr
    assert not alive(node_pid)  # stop returns once the node is gone
    assert wait_gone(pids, timeout=5) == []
    assert processes_of(daemon.dir) == []
    assert not os.path.exists(os.path.join(daemon.dir, "node.sock"))
    line = _one_line_error(daemon.cli("status"))
    assert "no actorloop node is running" in line


@pytest.mark.parametrize("command", ["stop", "status", "list"])
def test_commands_without_a_node_fail_with_a_one_line_reason(daemon, command: str) -> None:  # type: ignore[no-untyped-def]
    line = _one_line_error(daemon.cli(command))
    assert line.startswith(f"actorloop {command}: ")
    assert daemon.dir in line
    assert "actorloop start" in line


def test_start_when_a_node_already_runs_fails_and_leaves_it_alone(daemon) -> None:  # type: ignore[no-untyped-def]
    pid = daemon.start()
    line = _one_line_error(daemon.cli("start"))
    assert "already running" in line and daemon.dir in line
    assert alive(pid)
    assert int(open(os.path.join(daemon.dir, "node.pid")).read()) == pid
    assert daemon.cli("status").returncode == 0


def test_python_dash_m_actorloop_works_too(daemon) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli("start", module=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == daemon.dir
    assert daemon.cli("status", module=True).returncode == 0
    assert daemon.cli("list", module=True).stdout.startswith("ACTOR_ID")
    assert daemon.cli("stop", module=True).returncode == 0
    assert _one_line_error(daemon.cli("status", module=True))


def test_no_command_is_a_usage_error(daemon) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli()
    assert result.returncode == 2
    assert "usage: actorloop" in result.stderr


def test_a_killed_node_takes_its_actors_and_start_works_afterwards(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node_pid = daemon.start()
    _create_detached(daemon, tmp_path, "c")
    pids = {p.pid for p in processes_of(daemon.dir)}
    os.kill(node_pid, signal.SIGKILL)
    # The zygotes and the actors notice that the node is gone and end.
    assert wait_gone(pids, timeout=10) == []
    # The socket file is stale now: nobody answers on it.
    line = _one_line_error(daemon.cli("status"))
    assert "no actorloop node is running" in line
    new_pid = daemon.start()
    assert new_pid != node_pid
    assert "actors:  none" in daemon.cli("status").stdout


def test_start_in_a_directory_too_long_for_sockets_fails_at_once(daemon) -> None:  # type: ignore[no-untyped-def]
    long_dir = os.path.join(os.path.dirname(daemon.dir), "x" * 100)
    env = dict(daemon.env, ACTORLOOP_DIR=long_dir)
    line = _one_line_error(cli("start", env=env, timeout=20))
    assert "too long" in line
    assert not os.path.exists(long_dir)


def test_start_fails_cleanly_when_the_node_cannot_listen(daemon) -> None:  # type: ignore[no-untyped-def]
    # A directory where the socket should go: the node cannot bind; start must
    # say so (not hang) and leave no process behind.
    os.makedirs(os.path.join(daemon.dir, "node.sock"))
    os.chmod(daemon.dir, 0o700)  # a directory of ours, or start would refuse it before trying
    line = _one_line_error(daemon.cli("start"))
    assert "failed to start" in line
    assert wait_until(lambda: processes_of(daemon.dir) == [], timeout=5)


def test_stop_waits_for_a_busy_actor(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    script = write_script(
        tmp_path,
        "busy.py",
        """
        import os, time
        import actorloop

        @actorloop.remote
        class Busy:
            def pid(self):
                return os.getpid()
            def spin(self):
                while True:
                    time.sleep(0.01)

        actorloop.init(address="auto")
        b = Busy.options(name="busy", lifetime="detached").remote()
        print(actorloop.get(b.pid.remote()))
        b.spin.remote()
        """,
    )
    result = run_script(script, daemon.env)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout)
    assert psutil.pid_exists(pid)
    assert daemon.cli("stop").returncode == 0
    assert wait_gone([pid], timeout=5) == []


def test_concurrent_starts_run_one_node(daemon) -> None:  # type: ignore[no-untyped-def]
    starters = [
        subprocess.Popen(
            [ACTORLOOP, "start"], env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outcomes = []
    for proc in starters:
        out, err = proc.communicate(timeout=30)
        outcomes.append((proc.returncode, out, err))
    assert sorted(code for code, _, _ in outcomes) == [0, 1, 1], outcomes
    assert all("already running" in err for code, _, err in outcomes if code)
    pid = int(open(os.path.join(daemon.dir, "node.pid")).read())
    assert daemon.cli("status").stdout.count(f"pid:     {pid}") == 1
    assert daemon.cli("stop").returncode == 0
    # Only one node ran: stopping it leaves nothing behind.
    assert wait_until(lambda: processes_of(daemon.dir) == [], timeout=5)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hand the directory to another user")
def test_start_refuses_a_directory_of_another_user(daemon) -> None:  # type: ignore[no-untyped-def]
    os.makedirs(daemon.dir, mode=0o700)
    os.chown(daemon.dir, 65534, 65534)
    line = _one_line_error(daemon.cli("start"))
    assert "belongs to uid 65534, not to you" in line
    assert processes_of(daemon.dir) == []
