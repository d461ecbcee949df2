"""Turning the dashboard on (issue 13): off by default, `actorloop start --dashboard-port`, bad input.

Each test starts what it needs (a daemon through the CLI, or an embedded node)
and ends it; none leaves a runtime behind.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import actorloop

from ._helpers import processes_of, run_script, write_script


@pytest.fixture(autouse=True)
def no_runtime() -> Iterator[None]:
    actorloop.shutdown()
    yield
    actorloop.shutdown()


def _inet_connections(pid: int) -> list[Any]:
    proc = psutil.Process(pid)
    method = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6 has only the old name
    return list(method(kind="inet"))


def _listening(pid: int) -> list[tuple[str, int]]:
    return [(c.laddr.ip, c.laddr.port) for c in _inet_connections(pid) if c.status == psutil.CONN_LISTEN]


def _node_pid(daemon) -> int:  # type: ignore[no-untyped-def]
    with open(f"{daemon.dir}/node.pid") as f:
        return int(f.read())


def test_off_by_default_nothing_listens_on_tcp(daemon) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    pid = _node_pid(daemon)
    assert _listening(pid) == []
    ctx = actorloop.init(address=daemon.dir)
    assert ctx.dashboard_url is None
    from actorloop._runtime import get_runtime

    rt = get_runtime()
    assert rt is not None and rt.node_request("status")["dashboard_url"] is None
    assert _listening(pid) == []
    assert "dashboard" not in daemon.cli("status").stdout


def test_start_with_dashboard_port_serves_metrics_on_loopback(daemon) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli("start", "--dashboard-port", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == daemon.dir  # stdout stays the address alone, for scripts
    line = [x for x in result.stderr.splitlines() if x.startswith("dashboard: ")]
    assert len(line) == 1, result.stderr
    url = line[0].split()[1]
    assert url.startswith("http://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    assert _listening(_node_pid(daemon)) == [("127.0.0.1", port)]
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        assert b"actorloop_actors" in resp.read()
    # `actorloop status` shows where the dashboard is.
    status = daemon.cli("status")
    assert status.returncode == 0, status.stderr
    assert f"dashboard: {url} (metrics: {url}/metrics)" in status.stdout.splitlines()
    # A driver that joins and asks for the same dashboard gets its URL.
    ctx = actorloop.init(address=daemon.dir, dashboard_port=port)
    assert ctx.dashboard_url == url


def test_a_dashboard_asked_of_a_running_node_counts_its_actors_from_then_on(daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon.start()
    script = write_script(
        tmp_path,
        "make.py",
        """
        import actorloop

        @actorloop.remote
        class Old:
            def f(self):
                return 1

        actorloop.init(address="auto", namespace="late")
        h = Old.options(name="old", lifetime="detached").remote()
        actorloop.get(h.f.remote())
        """,
    )
    assert run_script(script, daemon.env).returncode == 0
    ctx = actorloop.init(address=daemon.dir, namespace="late", dashboard_port=0)
    assert ctx.dashboard_url is not None
    h = actorloop.get_actor("old")
    import json

    from ._helpers import wait_until

    def finished() -> int:
        actorloop.get(h.f.remote())
        with urllib.request.urlopen(ctx.dashboard_url + "/api/actors", timeout=10) as resp:
            rows = [a for a in json.load(resp)["actors"] if a["name"] == "old"]
        return int(rows[0]["calls"]["finished"])

    # The actor started before the dashboard: it counts from the node's first collection on.
    assert wait_until(lambda: finished() >= 2, timeout=30)
    actorloop.kill(h)


@pytest.mark.parametrize(
    ("arg", "message"),
    [("abc", "'abc' is not a port number"), ("70000", "70000 is not a port number"), ("-1", "-1 is not a port")],
)
def test_start_refuses_a_bad_port_before_starting_anything(daemon, arg: str, message: str) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli("start", f"--dashboard-port={arg}")
    assert result.returncode == 2
    assert message in result.stderr
    assert processes_of(daemon.dir) == []


def test_start_with_a_port_in_use_fails_in_one_line_and_leaves_no_node(daemon) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = daemon.cli("start", "--dashboard-port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"dashboard port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "0 for a free one" in lines[0]
    assert processes_of(daemon.dir) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dashboard_port": "8265"}, TypeError, "dashboard_port must be an int"),
        ({"dashboard_port": True}, TypeError, "dashboard_port must be an int"),
        ({"dashboard_port": 8265.0}, TypeError, "dashboard_port must be an int"),
        ({"dashboard_port": -1}, ValueError, "from 0 to 65535"),
        ({"dashboard_port": 65536}, ValueError, "from 0 to 65535"),
        ({"dashboard_port": 0, "dashboard_host": 127}, TypeError, "dashboard_host must be"),
        ({"dashboard_port": 0, "dashboard_host": " "}, TypeError, "dashboard_host must be"),
    ],
)
def test_init_refuses_bad_dashboard_input_before_starting_a_node(kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(error, match=match):
        actorloop.init(address="local", **kwargs)
    assert not actorloop.is_initialized()
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


def test_init_with_a_port_in_use_raises_and_leaves_nothing_running() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"dashboard port {port} on 127.0.0.1 is already in use"):
            actorloop.init(address="local", dashboard_port=port)
    assert not actorloop.is_initialized()
    actorloop.init(address="local")  # and init works again afterwards


def test_init_with_an_unknown_host_says_so() -> None:
    with pytest.raises(ValueError, match="cannot bind dashboard port 0 on no-such-host.invalid: unknown host"):
        actorloop.init(address="local", dashboard_port=0, dashboard_host="no-such-host.invalid")
    assert not actorloop.is_initialized()


def test_include_dashboard_false_turns_it_off() -> None:
    ctx = actorloop.init(address="local", dashboard_port=0, include_dashboard=False)
    assert ctx.dashboard_url is None


def test_include_dashboard_true_without_a_port_uses_rays_default_port() -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8265))
        except OSError:
            pytest.skip("port 8265 is taken on this machine")
    ctx = actorloop.init(address="local", include_dashboard=True)
    assert ctx.dashboard_url == "http://127.0.0.1:8265"


def test_start_refuses_a_dashboard_host_without_a_port(daemon) -> None:  # type: ignore[no-untyped-def]
    result = daemon.cli("start", "--dashboard-host", "127.0.0.1")
    assert result.returncode == 2
    assert "--dashboard-host needs --dashboard-port" in result.stderr
    assert processes_of(daemon.dir) == []
