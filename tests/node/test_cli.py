"""The ``actorloop`` command: start, status, list, stop, with real subprocesses and a node per test."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys

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
        "HTTP_URL",
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
        actor_id, cls, got_name, got_ns, state, got_pid, restarts, detached, url, cause = row
        assert re.fullmatch(r"[0-9a-f]+", actor_id)
        assert (cls, got_name, got_ns, state, got_pid, restarts, detached, url, cause) == (
            "Counter",
            name,
            ns,
            "ALIVE",
            str(pid),
            "0",
            "True",
            "-",
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


@pytest.mark.parametrize("command", ["status", "list", "kill x", "logs x"])
def test_commands_without_a_node_fail_with_a_one_line_reason(daemon, command: str) -> None:  # type: ignore[no-untyped-def]
    line = _one_line_error(daemon.cli(*command.split()))
    command = command.split()[0]
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


# -- list: every column, JSON, filters -------------------------------------------------

MANY_ACTORS = """
import sys
import actorloop

@actorloop.remote
class Counter:
    def ping(self):
        return 1

@actorloop.remote
class Web:
    @actorloop.http.get("/")
    def root(self, request):
        return "hi"
    def ping(self):
        return 1

actorloop.init(address="auto", namespace="ns1")
a = Counter.options(name="a", lifetime="detached").remote()
w = Web.options(name="w", lifetime="detached", http_port=0).remote()
b = Counter.options(name="b", lifetime="detached", namespace="ns2").remote()
actorloop.get([a.ping.remote(), w.ping.remote(), b.ping.remote()])
print(w.http_url)
"""


def _list_json(daemon, *args: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    import json

    result = daemon.cli("list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_list_json_filters_http_url_and_death_cause(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    result = run_script(write_script(tmp_path, "many.py", MANY_ACTORS), daemon.env)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    actors = {a["name"]: a for a in _list_json(daemon)}
    assert sorted(actors) == ["a", "b", "w"]
    assert actors["w"]["http_url"] == url and actors["a"]["http_url"] is None
    assert set(actors["a"]) == {
        "actor_id",
        "class_name",
        "name",
        "namespace",
        "state",
        "pid",
        "restarts",
        "detached",
        "http_url",
        "death_cause",
    }
    # The table shows the URL too.
    table = daemon.cli("list").stdout
    assert url in table
    # Filters, alone and together.
    assert sorted(a["name"] for a in _list_json(daemon, "--namespace", "ns1")) == ["a", "w"]
    assert sorted(a["name"] for a in _list_json(daemon, "--class", "Counter")) == ["a", "b"]
    assert [a["name"] for a in _list_json(daemon, "--class", "Counter", "--namespace", "ns2")] == ["b"]
    assert _list_json(daemon, "--state", "dead") == []
    # A killed actor: DEAD, with its cause, in the table and the JSON.
    killed = daemon.cli("kill", "a")
    assert killed.returncode == 0, killed.stderr
    assert "killed the actor Counter 'a'" in killed.stdout
    dead = _list_json(daemon, "--state", "DEAD")
    assert [(a["name"], a["death_cause"]) for a in dead] == [("a", "it was killed with `actorloop kill`")]
    assert sorted(a["name"] for a in _list_json(daemon, "--state", "alive")) == ["b", "w"]
    row = next(line for line in daemon.cli("list", "--state", "DEAD").stdout.splitlines() if " a " in line)
    assert row.rstrip().endswith("it was killed with `actorloop kill`")
    bad = _one_line_error(daemon.cli("list", "--state", "SLEEPING"))
    assert "unknown state 'SLEEPING'" in bad and "ALIVE" in bad


def test_kill_by_name_needs_the_namespace_when_the_name_is_in_several(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    pid1 = _create_detached(daemon, tmp_path, "twin", "ns1")
    pid2 = _create_detached(daemon, tmp_path, "twin", "ns2")
    line = _one_line_error(daemon.cli("kill", "twin"))
    assert "several namespaces (ns1, ns2)" in line and "--namespace" in line
    assert alive(pid1) and alive(pid2)
    result = daemon.cli("kill", "twin", "--namespace", "ns2")
    assert result.returncode == 0, result.stderr
    assert wait_gone([pid2]) == [] and alive(pid1)
    # One live actor of that name is left: the name alone finds it now.
    assert daemon.cli("kill", "twin").returncode == 0
    assert wait_gone([pid1]) == []
    line = _one_line_error(daemon.cli("kill", "twin", "--namespace", "ns1"))
    assert "already dead" in line
    line = _one_line_error(daemon.cli("kill", "nobody"))
    assert "no actor named 'nobody'" in line


def test_stop_without_a_node_says_so_and_succeeds(daemon) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli("stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"no actorloop node is running at {daemon.dir}"
    assert result.stderr == ""


# -- logs ------------------------------------------------------------------------------

PRINTER = """
import sys
import actorloop

@actorloop.remote
class Printer:
    def __init__(self):
        print("constructed", flush=True)
    def say(self, text, err=False):
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
        return text
    def many(self, n, width):
        for i in range(n):
            print(f"{i:08d}" + "x" * width)
        sys.stdout.flush()
        return n

actorloop.init(address="auto", namespace="logs")
p = Printer.options(name=sys.argv[1], lifetime="detached").remote()
actorloop.get(p.say.remote("to stdout"))
actorloop.get(p.say.remote("to stderr", True))
"""

SAY = """
import sys
import actorloop
actorloop.init(address="auto", namespace="logs")
p = actorloop.get_actor(sys.argv[1])
if sys.argv[2] == "many":
    actorloop.get(p.many.remote(int(sys.argv[3]), int(sys.argv[4])))
else:
    actorloop.get(p.say.remote(sys.argv[2]))
"""


def _create_printer(daemon, tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    result = run_script(write_script(tmp_path, "printer.py", PRINTER), daemon.env, name)
    assert result.returncode == 0, result.stderr


def _say(daemon, tmp_path, name: str, *args: str) -> None:  # type: ignore[no-untyped-def]
    result = run_script(write_script(tmp_path, "say.py", SAY), daemon.env, name, *args)
    assert result.returncode == 0, result.stderr


def test_logs_of_a_detached_actor_whose_creator_is_gone(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    daemon.start()
    _create_printer(daemon, tmp_path, "p")
    result = daemon.cli("logs", "p")
    assert result.returncode == 0, result.stderr
    # The lines as the actor wrote them, each on the stream it used, without prefixes.
    assert result.stdout == "constructed\nto stdout\n"
    assert result.stderr == "to stderr\n"
    records = [json.loads(line) for line in daemon.cli("logs", "p", "--json").stdout.splitlines()]
    assert [(r["stream"], r["message"]) for r in records] == [
        ("stdout", "constructed"),
        ("stdout", "to stdout"),
        ("stderr", "to stderr"),
    ]
    actor = _list_json(daemon)[0]
    for r in records:
        assert (r["actor_id"], r["class"], r["name"], r["namespace"], r["pid"]) == (
            actor["actor_id"],
            "Printer",
            "p",
            "logs",
            actor["pid"],
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"])
    # Its creator is gone: a later line goes to node.log as before, and is kept as well.
    _say(daemon, tmp_path, "p", "orphan line")
    assert wait_until(lambda: f"(Printer pid={actor['pid']}) orphan line\n" in _node_log(daemon))
    # By id too; the output stays readable once the actor is dead.
    assert daemon.cli("kill", "p").returncode == 0
    assert daemon.cli("logs", actor["actor_id"]).stdout == "constructed\nto stdout\norphan line\n"


def _node_log(daemon) -> str:  # type: ignore[no-untyped-def]
    with open(os.path.join(daemon.dir, "node.log")) as f:
        return f.read()


def test_start_with_json_logs_writes_detached_output_as_json(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    result = daemon.cli("start", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    _create_printer(daemon, tmp_path, "p")
    _say(daemon, tmp_path, "p", "orphan line")
    assert wait_until(lambda: "orphan line" in _node_log(daemon))
    lines = [line for line in _node_log(daemon).splitlines() if "orphan line" in line]
    record = json.loads(lines[0])
    assert (record["class"], record["name"], record["stream"], record["message"]) == (
        "Printer",
        "p",
        "stdout",
        "orphan line",
    )
    bad = daemon.cli("start", "--log-format", "xml")
    assert bad.returncode == 2 and "invalid choice: 'xml'" in bad.stderr


def test_logs_keep_the_latest_output_of_a_chatty_actor(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from actorloop._node._server import LOG_FILE_BYTES

    daemon.start()
    _create_printer(daemon, tmp_path, "chatty")
    n = 3 * LOG_FILE_BYTES // 400  # ~3 files' worth: at least one rotation
    _say(daemon, tmp_path, "chatty", "many", str(n), "300")
    lines = daemon.cli("logs", "chatty").stdout.splitlines()
    numbers = [int(line[:8]) for line in lines if line.endswith("x")]
    # The newest lines, in order, without gaps; the oldest were dropped, the total is bounded.
    assert numbers[-1] == n - 1
    assert numbers == list(range(numbers[0], n))
    assert 0 < numbers[0] and len(numbers) < n
    kept = [f for f in os.listdir(os.path.join(daemon.dir, "logs"))]
    assert len(kept) == 2 and all(os.path.getsize(os.path.join(daemon.dir, "logs", f)) <= LOG_FILE_BYTES for f in kept)


def _start_follow(daemon, *args: str) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [ACTORLOOP, "logs", "-f", *args],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> list[str]:
    """Lines ``proc`` prints, up to the one equal to ``text`` (a reader thread keeps a deadline)."""
    import queue
    import threading

    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
            if line.rstrip("\n") == text:
                return
        lines.put("<EOF>")

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        line = lines.get(timeout=timeout)
        seen.append(line)
        if line in (text, "<EOF>"):
            return seen


def test_logs_follow_prints_new_output_and_ends_with_the_actor(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    _create_printer(daemon, tmp_path, "p")
    follow = _start_follow(daemon, "p")
    try:
        assert _read_until(follow, "to stdout") == ["constructed", "to stdout"]
        _say(daemon, tmp_path, "p", "later")
        assert _read_until(follow, "later") == ["later"]
        assert daemon.cli("kill", "p").returncode == 0
        assert follow.wait(timeout=30) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_logs_follow_ends_on_ctrl_c(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    _create_printer(daemon, tmp_path, "p")
    follow = _start_follow(daemon, "p")
    try:
        assert _read_until(follow, "to stdout")[-1] == "to stdout"
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=30) == 0
        assert follow.stderr is not None and "Traceback" not in follow.stderr.read()
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


# -- embedded nodes of running scripts -------------------------------------------------

DRIVER = """
import sys
import actorloop

@actorloop.remote
class Worker:
    def say(self, text):
        print(text, flush=True)
        return text

actorloop.init()
w = Worker.options(name="w").remote()
actorloop.get(w.say.remote("hello from the script"))
print("ready", flush=True)
sys.stdin.readline()  # runs until the test closes its stdin
"""


def _start_driver(daemon, tmp_path) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    script = write_script(tmp_path, "driver.py", DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=daemon.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
    )
    assert _read_until(proc, "ready")[-1] == "ready"
    return proc


def _end_driver(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_status_list_logs_and_kill_find_the_embedded_node_of_a_running_script(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    driver = _start_driver(daemon, tmp_path)
    try:
        status = daemon.cli("status")
        assert status.returncode == 0, status.stderr
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in status.stdout.splitlines())}
        assert fields["kind"].startswith(f"embedded in the driver pid {driver.pid} (")
        assert "driver.py" in fields["kind"]
        assert fields["actors"] == "1 ALIVE"
        embedded_dir = fields["address"]
        assert embedded_dir != daemon.dir and os.path.isdir(embedded_dir)
        # The only node running: the commands use it without --address, and with it too.
        assert [a["name"] for a in _list_json(daemon)] == ["w"]
        assert [a["name"] for a in _list_json(daemon, "--address", embedded_dir)] == ["w"]
        assert daemon.cli("logs", "w").stdout == "hello from the script\n"
        one = daemon.cli("status", "--address", embedded_dir).stdout
        assert f"address: {embedded_dir}\n" in one and f"kind:    {fields['kind']}\n" in one
        # `stop` without --address leaves a script's node alone, and says so.
        stop = daemon.cli("stop")
        assert stop.returncode == 0 and "1 embedded node(s) of running scripts left alone" in stop.stdout
        assert driver.poll() is None
        # With a daemon running too, status shows both; the daemon first.
        daemon.start()
        both = daemon.cli("status").stdout
        assert both.index(daemon.dir) < both.index(embedded_dir)
        assert both.count("address:") == 2
        assert daemon.cli("kill", "w", "--address", embedded_dir).returncode == 0
        assert _list_json(daemon, "--address", embedded_dir)[0]["state"] == "DEAD"
    finally:
        _end_driver(driver)
    # The script ended, and its node with it: nothing of it is listed any more.
    assert wait_until(lambda: embedded_dir not in daemon.cli("status").stdout, timeout=30)
    assert os.listdir(daemon.dir + ".nodes") == []


def test_status_ignores_and_removes_entries_of_dead_nodes(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    registry = daemon.dir + ".nodes"
    os.makedirs(registry, mode=0o700)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    with open(os.path.join(registry, str(dead_pid)), "w") as f:
        json.dump({"dir": str(tmp_path), "pid": dead_pid, "driver": 1}, f)
    with open(os.path.join(registry, "12345678"), "w") as f:
        f.write("not json")
    line = _one_line_error(daemon.cli("status"))
    assert "no actorloop node is running" in line and "no script runs an embedded one" in line
    assert os.listdir(registry) == []


def test_a_registry_others_could_write_is_refused(daemon) -> None:  # type: ignore[no-untyped-def]
    registry = daemon.dir + ".nodes"
    os.makedirs(registry)
    os.chmod(registry, 0o777)
    line = _one_line_error(daemon.cli("status"))
    assert registry in line and "not 0700" in line
