"""The node's /metrics and /api/actors (issue 13): content, restarts, queue depth, loopback only.

One embedded node with its dashboard on a free port serves the whole module.
The Prometheus text is read with prometheus-client's own parser.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

import actorloop

from ._helpers import wait_until


@pytest.fixture(scope="module")
def dash() -> Iterator[str]:
    """An embedded node serving its dashboard; yields its URL."""
    actorloop.shutdown()
    ctx = actorloop.init(address="local", dashboard_port=0)
    assert ctx.dashboard_url is not None
    yield ctx.dashboard_url
    actorloop.shutdown()


@actorloop.remote
class Worker:
    def ok(self, x: int) -> int:
        return x

    def boom(self) -> None:
        raise ValueError("boom")

    def actor_id(self) -> str:
        return actorloop.get_runtime_context().get_actor_id()

    def crash(self) -> None:
        os._exit(3)


@actorloop.remote(concurrency_groups={"slow": 1, "ctl": 1})
class Blocker:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    @actorloop.method(concurrency_group="slow")
    def wait(self) -> str:
        self.started.set()
        self.gate.wait(30)
        return "done"

    @actorloop.method(concurrency_group="ctl")
    def is_waiting(self) -> bool:
        return self.started.is_set()

    @actorloop.method(concurrency_group="ctl")
    def release(self) -> None:
        self.gate.set()


def _inet_connections(pid: int) -> list[Any]:
    proc = psutil.Process(pid)
    method = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6 has only the old name
    return list(method(kind="inet"))


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed: sample name -> {sorted label pairs: value}."""
    status, text, headers = _get(url + "/metrics")
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain; version=")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def scrape_until(url: str, check: Any, timeout: float = 30) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Scrape until ``check(metrics)`` holds (a read within MIN_PULL_INTERVAL of the last one sees its figures)."""
    seen: list[Any] = [None]

    def ok() -> bool:
        seen[0] = scrape(url)
        return bool(check(seen[0]))

    assert wait_until(ok, timeout=timeout), seen[0]
    return seen[0]  # type: ignore[no-any-return]


def row_until(url: str, actor_id: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    seen: list[Any] = [None]

    def ok() -> bool:
        seen[0] = row(url, actor_id)
        return bool(check(seen[0]))

    assert wait_until(ok, timeout=timeout), seen[0]
    return seen[0]  # type: ignore[no-any-return]


def value(metrics: dict[str, Any], sample: str, /, **labels: str) -> float | None:
    """The one ``sample`` whose labels include ``labels`` (None if there is none)."""
    found = [v for k, v in metrics.get(sample, {}).items() if set(labels.items()) <= set(k)]
    assert len(found) <= 1, (sample, labels, found)
    return found[0] if found else None


def api(url: str) -> dict[str, Any]:
    status, text, headers = _get(url + "/api/actors")
    assert status == 200, text
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(text)  # type: ignore[no-any-return]


def row(url: str, actor_id: str) -> dict[str, Any]:
    rows = [a for a in api(url)["actors"] if a["actor_id"] == actor_id]
    assert len(rows) == 1
    return rows[0]


def test_metrics_count_calls_by_method_with_a_latency_histogram(dash: str) -> None:
    w = Worker.options(name="counted", namespace="metrics-ns").remote()
    aid = actorloop.get(w.actor_id.remote())
    actorloop.get([w.ok.remote(i) for i in range(25)])
    for _ in range(2):
        with pytest.raises(ValueError):
            actorloop.get(w.boom.remote())
    labels = {"class": "Worker", "name": "counted", "namespace": "metrics-ns", "actor_id": aid}
    m = scrape_until(dash, lambda m: value(m, "actorloop_actor_calls_failed_total", method="boom", **labels) == 2)
    assert value(m, "actorloop_actor_calls_started_total", method="ok", **labels) == 25
    assert value(m, "actorloop_actor_calls_finished_total", method="ok", **labels) == 25
    assert value(m, "actorloop_actor_calls_failed_total", method="ok", **labels) == 0
    assert value(m, "actorloop_actor_calls_started_total", method="boom", **labels) == 2
    assert value(m, "actorloop_actor_calls_failed_total", method="boom", **labels) == 2
    assert value(m, "actorloop_actor_calls_finished_total", method="boom", **labels) == 0
    # The histogram: cumulative buckets ending at +Inf, whose count is every call that ended.
    buckets = {
        dict(k)["le"]: v
        for k, v in m["actorloop_actor_call_latency_seconds_bucket"].items()
        if set(labels.items()) <= set(k) and dict(k)["method"] == "ok"
    }
    ordered = [buckets[le] for le in sorted(buckets, key=float)]
    assert ordered == sorted(ordered) and ordered[-1] == 25
    assert value(m, "actorloop_actor_call_latency_seconds_count", method="ok", **labels) == 25
    assert (value(m, "actorloop_actor_call_latency_seconds_sum", method="ok", **labels) or 0) > 0
    assert value(m, "actorloop_actor_queue_depth", group="_default", **labels) == 0
    assert (value(m, "actorloop_actor_rss_bytes", **labels) or 0) > 1_000_000
    assert value(m, "actorloop_actor_cpu_seconds_total", **labels) is not None
    assert value(m, "actorloop_actor_restarts_total", **labels) == 0
    assert (value(m, "actorloop_actors", state="ALIVE") or 0) >= 1
    assert value(m, "actorloop_calls_per_second") is not None
    actorloop.kill(w)


def test_restarts_are_counted_and_call_counts_carry_over(dash: str) -> None:
    w = Worker.options(max_restarts=1).remote()
    aid = actorloop.get(w.actor_id.remote())
    actorloop.get([w.ok.remote(i) for i in range(10)])
    # The node has the first process's counts before it crashes.
    scrape_until(dash, lambda m: value(m, "actorloop_actor_calls_finished_total", actor_id=aid, method="ok") == 10)
    with pytest.raises(actorloop.ActorDiedError):
        actorloop.get(w.crash.remote())
    actorloop.get([w.ok.remote(i) for i in range(5)])  # waits for the restarted process
    m = scrape_until(dash, lambda m: value(m, "actorloop_actor_calls_finished_total", actor_id=aid, method="ok") == 15)
    assert value(m, "actorloop_actor_restarts_total", actor_id=aid) == 1
    r = row(dash, aid)
    assert r["restarts"] == 1 and r["state"] == "ALIVE"
    assert "exit code 3" in r["death_cause"]  # why it last ended
    actorloop.kill(w)


def test_queue_depth_per_concurrency_group(dash: str) -> None:
    b = Blocker.remote()
    first = b.wait.remote()
    assert wait_until(lambda: actorloop.get(b.is_waiting.remote()), timeout=30)
    queued = [b.wait.remote() for _ in range(3)]
    aid = row_by_class(dash, "Blocker")["actor_id"]

    def depth() -> float | None:
        return value(scrape(dash), "actorloop_actor_queue_depth", actor_id=aid, group="slow")

    assert wait_until(lambda: depth() == 3, timeout=30), depth()
    assert row(dash, aid)["queued_by_group"] == {"slow": 3, "ctl": 0, "_default": 0}
    # A queued call cancelled by its caller is counted as cancelled, never as ended.
    actorloop.cancel(queued[0])
    cancelled = "actorloop_actor_calls_cancelled_total"
    m = scrape_until(dash, lambda m: value(m, cancelled, actor_id=aid, method="wait") == 1)
    assert value(m, "actorloop_actor_calls_started_total", actor_id=aid, method="wait") == 4
    actorloop.get(b.release.remote())
    assert actorloop.get([first, *queued[1:]]) == ["done"] * 3
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(queued[0])
    assert wait_until(lambda: depth() == 0, timeout=30)
    m = scrape_until(dash, lambda m: value(m, "actorloop_actor_calls_finished_total", actor_id=aid, method="wait") == 3)
    assert value(m, "actorloop_actor_calls_failed_total", actor_id=aid, method="wait") == 0
    actorloop.kill(b)


def row_by_class(url: str, class_name: str) -> dict[str, Any]:
    rows = [a for a in api(url)["actors"] if a["class_name"] == class_name and a["state"] != "DEAD"]
    assert len(rows) == 1
    return rows[0]


def test_api_actors_lists_actors_live_and_dead_with_the_cause(dash: str) -> None:
    w = Worker.options(name="listed").remote()
    aid = actorloop.get(w.actor_id.remote())
    actorloop.get([w.ok.remote(i) for i in range(7)])
    data = api(dash)
    assert data["node"]["dashboard_url"] == dash
    assert data["node"]["actors_by_state"]["ALIVE"] >= 1
    r = row_until(dash, aid, lambda r: r["calls"]["finished"] >= 7)
    pid = r["pid"]
    assert r["class_name"] == "Worker" and r["name"] == "listed" and r["state"] == "ALIVE"
    assert psutil.pid_exists(pid)
    assert r["calls"]["finished"] >= 7 and r["methods"]["ok"]["finished"] >= 7
    assert r["rss_bytes"] > 1_000_000 and r["restarts"] == 0 and r["death_cause"] is None
    assert r["http_url"] is None
    actorloop.kill(w)
    dead = row(dash, aid)  # kill() returned: the node knows at once, no collection needed
    assert dead["state"] == "DEAD" and dead["pid"] is None
    assert "killed with actorloop.kill()" in dead["death_cause"]
    assert dead["calls"]["finished"] >= 7  # the counts stay after death


def test_calls_per_second_is_measured_between_collections(dash: str) -> None:
    w = Worker.remote()
    aid = actorloop.get(w.actor_id.remote())
    api(dash)

    def busy() -> bool:
        actorloop.get([w.ok.remote(i) for i in range(50)])
        rate = row(dash, aid)["calls_per_second"]
        return rate is not None and rate > 0

    assert wait_until(busy, timeout=30)
    r = row(dash, aid)
    assert r["history"] and len(r["history"][-1]) == 4
    assert r["latency_ms"]["mean"] is None or r["latency_ms"]["mean"] > 0
    actorloop.kill(w)


def test_actor_with_http_routes_shows_its_url(dash: str) -> None:
    @actorloop.remote
    class Web:
        @actorloop.http.get("/hi")
        def hi(self, request: Any) -> str:
            return "hi"

        def actor_id(self) -> str:
            return actorloop.get_runtime_context().get_actor_id()

    h = Web.remote()
    aid = actorloop.get(h.actor_id.remote())
    assert row(dash, aid)["http_url"] == h.http_url
    actorloop.kill(h)


def test_listens_on_loopback_only_and_refuses_foreign_host_names(dash: str) -> None:
    assert dash.startswith("http://127.0.0.1:")
    port = int(dash.rsplit(":", 1)[1])
    node_pid = api(dash)["node"]["pid"]
    listening = [c.laddr for c in _inet_connections(node_pid) if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
    # A page on another origin that rebinds its name to 127.0.0.1 sends its own Host: refused.
    status, text, _ = _get(dash + "/api/actors", {"Host": f"attacker.example:{port}"})
    assert status == 403 and "localhost" in text
    status, _, _ = _get(dash + "/metrics", {"Host": f"localhost:{port}"})
    assert status == 200


def test_page_is_self_contained(dash: str) -> None:
    status, html, headers = _get(dash + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "/api/actors" in html
    # No CDN, no external script or stylesheet: the page works offline.
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "<script src" not in html


def test_a_second_request_for_the_dashboard_returns_the_running_one(dash: str) -> None:
    from actorloop._runtime import get_runtime

    rt = get_runtime()
    assert rt is not None
    port = int(dash.rsplit(":", 1)[1])
    assert rt.node_request("dashboard", "127.0.0.1", 0) == dash
    assert rt.node_request("dashboard", "127.0.0.1", port) == dash
    with pytest.raises(ValueError, match="already serves its dashboard at"):
        rt.node_request("dashboard", "127.0.0.1", port + 1 if port < 65535 else port - 1)
    assert rt.node_request("status")["dashboard_url"] == dash


@actorloop.remote
class LoopBlocker:
    async def block_until(self, path: str) -> str:
        # Blocks the actor's loop on purpose (a bug the dashboard should make visible).
        import time

        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "unblocked"

    async def actor_id(self) -> str:
        return actorloop.get_runtime_context().get_actor_id()


def test_an_actor_whose_loop_is_blocked_is_marked_stale_and_the_rest_still_answer(dash: str, tmp_path: Any) -> None:
    b = LoopBlocker.remote()
    w = Worker.remote()
    aid, wid = actorloop.get([b.actor_id.remote(), w.actor_id.remote()])
    flag = str(tmp_path / "go")
    ref = b.block_until.remote(flag)
    # The node waits for the blocked actor's snapshot only briefly; its row says so.
    row_until(dash, aid, lambda r: r["stale"])
    actorloop.get([w.ok.remote(i) for i in range(3)])
    assert row_until(dash, wid, lambda r: r["calls"]["finished"] >= 3)["stale"] is False
    open(flag, "w").close()
    assert actorloop.get(ref) == "unblocked"
    row_until(dash, aid, lambda r: not r["stale"])
    actorloop.kill(b)
    actorloop.kill(w)
