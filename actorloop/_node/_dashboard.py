"""The node's dashboard: ``/metrics`` (Prometheus text), ``/api/actors`` (JSON) and ``/`` (a live page).

Off unless asked (``actorloop start --dashboard-port N``,
``init(dashboard_port=N)``); it listens on its own TCP port, 127.0.0.1 by
default.  Nothing here is on the call path: actors count their calls in
plain lists (``actorloop._stats``) and send a snapshot when the node asks
over its control channel.  The node asks when somebody reads a page, at
most every ``MIN_PULL_INTERVAL`` seconds, so an idle node with nobody
watching does no work.  The node adds what it knows itself: state,
restarts, death cause, and the RSS and CPU time of each actor's process
(from ``/proc``).

aiohttp and prometheus-client are imported only when the dashboard starts.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from .._stats import BOUNDS, BUCKET0, CANCELLED, FAILED, FINISHED, LATENCY_SUM, RECORD_LEN, STARTED

if TYPE_CHECKING:
    import socket

    from aiohttp import web

    from ._server import Node, NodeServerConnection, _Actor

#: A read within this many seconds of the last collection uses its figures.
MIN_PULL_INTERVAL = 0.5
#: How long a collection waits for the actors' snapshots (an actor whose loop is
#: blocked keeps its previous figures and is marked ``stale``).
PULL_TIMEOUT = 0.5
#: Calls/s and the latency percentiles of the table are taken over this window.
RATE_WINDOW = 5.0
#: Points of each actor's latency chart.
HISTORY_POINTS = 90
#: The dashboard's default host.
DEFAULT_HOST = "127.0.0.1"

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def check_dashboard_address(host: Any, port: Any) -> tuple[str, int]:
    """Check a dashboard host and port as given by a user; return them, or raise a clear error.

    >>> check_dashboard_address(None, 8265)
    ('127.0.0.1', 8265)
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(
            f"dashboard_port must be an int from 0 to 65535 (0 picks a free port), got {port!r} ({type(port).__name__})"
        )
    if not 0 <= port <= 65535:
        raise ValueError(f"dashboard_port must be from 0 to 65535 (0 picks a free port), got {port}")
    if host is None:
        host = DEFAULT_HOST
    if not isinstance(host, str) or not host.strip():
        raise TypeError(f"dashboard_host must be a host name or an IP address (a non-empty str), got {host!r}")
    return host.strip(), port


@dataclass
class _Sample:
    t: float
    calls: float  # finished + failed, all methods
    latency_sum: float
    buckets: list[float]


@dataclass
class _ActorStats:
    """What the dashboard keeps for one actor, across its restarts."""

    epoch: int = -1
    #: Counters of the current process, by method.
    current: dict[str, list[float]] = field(default_factory=dict)
    #: Counters of its earlier processes (restarts), by method.
    base: dict[str, list[float]] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    stale: bool = False
    samples: collections.deque[_Sample] = field(default_factory=collections.deque)
    history: collections.deque[tuple[float, float, float | None, float | None]] = field(
        default_factory=lambda: collections.deque(maxlen=HISTORY_POINTS)
    )
    rss: int | None = None
    cpu_seconds: float | None = None
    cpu_percent: float | None = None
    cpu_at: tuple[int, float, float] | None = None  # (pid, monotonic time, cpu seconds) of the last reading

    def methods(self) -> dict[str, list[float]]:
        """Counters by method since the actor was created (its restarts added up)."""
        out = {name: list(rec) for name, rec in self.base.items()}
        for name, rec in self.current.items():
            total = out.get(name)
            out[name] = list(rec) if total is None else [a + b for a, b in zip(total, rec, strict=True)]
        return out

    def fold_epoch(self, epoch: int) -> None:
        """A new process of this actor reports: keep the old one's counts."""
        if epoch == self.epoch:
            return
        for name, rec in self.current.items():
            total = self.base.get(name)
            self.base[name] = list(rec) if total is None else [a + b for a, b in zip(total, rec, strict=True)]
        self.current = {}
        self.queued = {}
        self.epoch = epoch


class Dashboard:
    """The node's HTTP server for metrics and the live page."""

    def __init__(self, node: Node, sock: socket.socket, host: str) -> None:
        self.node = node
        self.sock = sock
        self.host = host
        from .. import _http

        self.url = _http.http_url(sock)
        self.port: int = sock.getsockname()[1]
        self.stats: dict[str, _ActorStats] = {}
        self._runner: web.AppRunner | None = None
        self._seq = 0
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._last_pull = -1e9
        self._pulling: asyncio.Future[None] | None = None
        self._registry: Any = None
        self._node_calls: collections.deque[tuple[float, float]] = collections.deque()

    # -- life ------------------------------------------------------------------------

    async def start(self) -> None:
        from aiohttp import web
        from prometheus_client import CollectorRegistry

        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        check_host = self._check_host

        @web.middleware
        async def host_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            return await check_host(request, handler)

        app = web.Application(middlewares=[host_middleware])
        app.router.add_get("/", self._page)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/actors", self._api_actors)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        try:
            self.sock.close()
        except OSError:
            pass

    # -- collecting ----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Ask every live actor for its counters (at most every MIN_PULL_INTERVAL s) and read /proc."""
        if self._pulling is not None:
            await asyncio.shield(self._pulling)
            return
        if time.monotonic() - self._last_pull < MIN_PULL_INTERVAL:
            return
        self._pulling = self.node.loop.create_future()
        try:
            await self._pull()
        finally:
            self._last_pull = time.monotonic()
            done, self._pulling = self._pulling, None
            done.set_result(None)

    async def _pull(self) -> None:
        loop = self.node.loop
        self._seq += 1
        waiting: dict[str, asyncio.Future[None]] = {}
        for actor in self.node.actors.values():
            conn = actor.conn
            if actor.state == "ALIVE" and conn is not None and not conn.closed:
                waiting[actor.actor_id] = loop.create_future()
                conn.push("metrics", self._seq)
        self._waiting = waiting
        if waiting:
            await asyncio.wait(list(waiting.values()), timeout=PULL_TIMEOUT)
        for actor_id, fut in waiting.items():
            self.stats.setdefault(actor_id, _ActorStats()).stale = not fut.done()
        self._waiting = {}
        now = time.monotonic()
        node_total = 0.0
        for actor in self.node.actors.values():
            stats = self.stats.setdefault(actor.actor_id, _ActorStats())
            self._read_proc(actor, stats, now)
            self._sample(stats, now)
            node_total += stats.samples[-1].calls
        for gone in set(self.stats) - set(self.node.actors):
            del self.stats[gone]
        self._node_calls.append((now, node_total))
        _trim(self._node_calls, now)

    def report(self, conn: NodeServerConnection, seq: int, snapshot: Any) -> None:
        """An actor's answer to a collection (``metrics_report``)."""
        actor = self.node.actors.get(conn.actor_id or "")
        if actor is None or actor.conn is not conn or not isinstance(snapshot, dict):
            return
        stats = self.stats.setdefault(actor.actor_id, _ActorStats())
        stats.fold_epoch(actor.epoch)
        methods = snapshot.get("methods")
        if isinstance(methods, dict):
            stats.current = {
                str(k): list(v) for k, v in methods.items() if isinstance(v, list) and len(v) == RECORD_LEN
            }
        queued = snapshot.get("queued")
        if isinstance(queued, dict):
            stats.queued = {str(k): int(v) for k, v in queued.items()}
        stats.stale = False
        fut = self._waiting.get(actor.actor_id)
        if fut is not None and not fut.done() and seq == self._seq:
            fut.set_result(None)

    def _read_proc(self, actor: _Actor, stats: _ActorStats, now: float) -> None:
        pid = actor.pid
        if pid is None or actor.state == "DEAD":
            stats.rss = None
            stats.cpu_percent = None
            stats.cpu_at = None
            return
        try:
            with open(f"/proc/{pid}/statm") as f:
                stats.rss = int(f.read().split()[1]) * _PAGE_SIZE
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime, every thread
        except (OSError, ValueError, IndexError):
            return
        last = stats.cpu_at
        if last is not None and last[0] == pid and now > last[1]:
            stats.cpu_percent = 100.0 * max(0.0, cpu - last[2]) / (now - last[1])
        else:
            stats.cpu_percent = None  # a first reading, or a restarted process: no rate yet
        stats.cpu_at = (pid, now, cpu)
        stats.cpu_seconds = cpu

    def _sample(self, stats: _ActorStats, now: float) -> None:
        calls = 0.0
        lat = 0.0
        buckets = [0.0] * (len(BOUNDS) + 1)
        for rec in stats.methods().values():
            calls += rec[FINISHED] + rec[FAILED]
            lat += rec[LATENCY_SUM]
            for i in range(len(buckets)):
                buckets[i] += rec[BUCKET0 + i]
        sample = _Sample(now, calls, lat, buckets)
        prev = stats.samples[-1] if stats.samples else None
        stats.samples.append(sample)
        _trim(stats.samples, now)
        if prev is not None and now > prev.t:
            rate, mean, p99 = _window(prev, sample)
            stats.history.append((time.time(), rate, mean, p99))

    # -- reading ------------------------------------------------------------------------

    def actors_json(self) -> dict[str, Any]:
        """What ``/api/actors`` answers."""
        node = self.node
        states: dict[str, int] = {}
        actors = []
        for actor in node.actors.values():
            states[actor.state] = states.get(actor.state, 0) + 1
            stats = self.stats.get(actor.actor_id) or _ActorStats()
            methods = stats.methods()
            totals = [0.0] * RECORD_LEN
            for rec in methods.values():
                totals = [a + b for a, b in zip(totals, rec, strict=True)]
            rate = mean = p50 = p99 = None
            if len(stats.samples) >= 2:
                rate, mean, p99 = _window(stats.samples[0], stats.samples[-1])
                p50 = _quantile(stats.samples[0], stats.samples[-1], 0.5)
            actors.append(
                {
                    "actor_id": actor.actor_id,
                    "class_name": actor.class_name,
                    "name": actor.name,
                    "namespace": actor.namespace,
                    "state": actor.state,
                    "pid": actor.pid,
                    "detached": actor.detached,
                    "restarts": actor.restarts,
                    "http_url": actor.http_url,
                    "death_cause": actor.death_cause,
                    "calls": {
                        "started": int(totals[STARTED]),
                        "finished": int(totals[FINISHED]),
                        "failed": int(totals[FAILED]),
                        "cancelled": int(totals[CANCELLED]),
                    },
                    "calls_per_second": rate,
                    "queued": sum(stats.queued.values()) if actor.state == "ALIVE" else 0,
                    "queued_by_group": dict(stats.queued) if actor.state == "ALIVE" else {},
                    "latency_ms": {"mean": _ms(mean), "p50": _ms(p50), "p99": _ms(p99)},
                    "rss_bytes": stats.rss,
                    "cpu_percent": stats.cpu_percent,
                    "cpu_seconds": stats.cpu_seconds,
                    "stale": stats.stale,
                    "methods": {
                        name: {
                            "started": int(rec[STARTED]),
                            "finished": int(rec[FINISHED]),
                            "failed": int(rec[FAILED]),
                            "cancelled": int(rec[CANCELLED]),
                        }
                        for name, rec in sorted(methods.items())
                    },
                    # [unix time, calls/s, mean latency ms, p99 latency ms] per collection, oldest first.
                    "history": [[round(t, 3), r, _ms(m), _ms(p)] for t, r, m, p in stats.history],
                }
            )
        calls = self._node_calls
        node_rate = None
        if len(calls) >= 2 and calls[-1][0] > calls[0][0]:
            node_rate = max(0.0, (calls[-1][1] - calls[0][1]) / (calls[-1][0] - calls[0][0]))
        return {
            "node": {
                "address": node.dir,
                "pid": os.getpid(),
                "uptime": time.time() - node.started,
                "embedded": node.embedded_parent is not None,
                "actors_by_state": states,
                "calls_per_second": node_rate,
                "dashboard_url": self.url,
            },
            "actors": actors,
        }

    # -- HTTP --------------------------------------------------------------------------

    @property
    def _loopback(self) -> bool:
        host = self.host.strip("[]")
        return host == "localhost" or _is_loopback_ip(host)

    async def _check_host(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # Bound to loopback, only this machine's names for it are accepted in the
        # Host header: a web page that rebinds its own name to 127.0.0.1 cannot read us.
        from aiohttp import web

        if self._loopback:
            host = _host_name(request.host or "")
            if host != "localhost" and not _is_loopback_ip(host):
                return web.Response(
                    status=403, text=f"the actorloop dashboard answers only to localhost, not to {request.host!r}\n"
                )
        return await handler(request)  # type: ignore[no-any-return]

    async def _page(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        return web.Response(
            body=_page_html(), content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
        )

    async def _api_actors(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        await self.refresh()
        return web.Response(
            text=json.dumps(self.actors_json()), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        await self.refresh()
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Collector:
    """Builds the Prometheus families from the dashboard's figures at each scrape."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        dash = self.dashboard
        data = dash.actors_json()
        actor_labels = ["class", "name", "namespace", "actor_id"]
        method_labels = [*actor_labels, "method"]
        started = CounterMetricFamily(
            "actorloop_actor_calls_started",
            "Calls the actor accepted (queued ones included), by method",
            labels=method_labels,
        )
        finished = CounterMetricFamily(
            "actorloop_actor_calls_finished", "Calls that returned a value, by method", labels=method_labels
        )
        failed = CounterMetricFamily(
            "actorloop_actor_calls_failed",
            "Calls that raised (or whose result could not be sent), by method",
            labels=method_labels,
        )
        cancelled = CounterMetricFamily(
            "actorloop_actor_calls_cancelled", "Calls cancelled by their caller, by method", labels=method_labels
        )
        latency = HistogramMetricFamily(
            "actorloop_actor_call_latency_seconds",
            "Time from the actor receiving a call to its result (queueing included), by method",
            labels=method_labels,
        )
        queued = GaugeMetricFamily(
            "actorloop_actor_queue_depth",
            "Calls waiting to start, by concurrency group",
            labels=[*actor_labels, "group"],
        )
        restarts = CounterMetricFamily("actorloop_actor_restarts", "Times the actor was restarted", labels=actor_labels)
        rss = GaugeMetricFamily(
            "actorloop_actor_rss_bytes", "Resident memory of the actor's process", labels=actor_labels
        )
        cpu = CounterMetricFamily(
            "actorloop_actor_cpu_seconds",
            "CPU time of the actor's current process (user + system)",
            labels=actor_labels,
        )
        rate = GaugeMetricFamily(
            "actorloop_actor_calls_per_second",
            f"Calls ended per second over the last {RATE_WINDOW:g} s of collections",
            labels=actor_labels,
        )
        le = [floatToGoString(b) for b in BOUNDS] + ["+Inf"]  # type: ignore[no-untyped-call]
        for actor in dash.node.actors.values():
            labels = [actor.class_name, actor.name or "", actor.namespace, actor.actor_id]
            stats = dash.stats.get(actor.actor_id)
            restarts.add_metric(labels, actor.restarts)
            if stats is None:
                continue
            for method, rec in sorted(stats.methods().items()):
                ml = [*labels, method]
                started.add_metric(ml, rec[STARTED])
                finished.add_metric(ml, rec[FINISHED])
                failed.add_metric(ml, rec[FAILED])
                cancelled.add_metric(ml, rec[CANCELLED])
                cumulative = 0.0
                buckets = []
                for i, bound in enumerate(le):
                    cumulative += rec[BUCKET0 + i]
                    buckets.append((bound, cumulative))
                latency.add_metric(ml, buckets, rec[LATENCY_SUM])
            if actor.state == "ALIVE":
                for group, depth in sorted(stats.queued.items()):
                    queued.add_metric([*labels, group], depth)
            if stats.rss is not None:
                rss.add_metric(labels, stats.rss)
            if stats.cpu_seconds is not None and actor.state != "DEAD":
                cpu.add_metric(labels, stats.cpu_seconds)
        for row in data["actors"]:
            if row["calls_per_second"] is not None:
                rate.add_metric(
                    [row["class_name"], row["name"] or "", row["namespace"], row["actor_id"]], row["calls_per_second"]
                )
        by_state = GaugeMetricFamily("actorloop_actors", "Actors of this node by state", labels=["state"])
        states = data["node"]["actors_by_state"]
        for state in ("STARTING", "ALIVE", "RESTARTING", "DEAD"):
            by_state.add_metric([state], states.get(state, 0))
        node_rate = GaugeMetricFamily(
            "actorloop_calls_per_second", f"Calls ended per second on this node over the last {RATE_WINDOW:g} s"
        )
        node_rate.add_metric([], data["node"]["calls_per_second"] or 0.0)
        yield from (
            started,
            finished,
            failed,
            cancelled,
            latency,
            queued,
            restarts,
            rss,
            cpu,
            rate,
            by_state,
            node_rate,
        )


# -- helpers ------------------------------------------------------------------------------


def _trim(samples: collections.deque[Any], now: float) -> None:
    """Keep the samples of the last RATE_WINDOW seconds, and always two."""
    while len(samples) > 2 and now - _t(samples[1]) >= RATE_WINDOW:
        samples.popleft()


def _t(sample: Any) -> float:
    return sample.t if isinstance(sample, _Sample) else float(sample[0])


def _window(a: _Sample, b: _Sample) -> tuple[float, float | None, float | None]:
    """Calls/s, mean latency and p99 latency (seconds) between two samples."""
    dt = b.t - a.t
    calls = b.calls - a.calls
    if dt <= 0 or calls < 0:  # a restart lost the counts of the calls after the last collection
        return 0.0, None, None
    rate = calls / dt
    if calls == 0:
        return rate, None, None
    return rate, (b.latency_sum - a.latency_sum) / calls, _quantile(a, b, 0.99)


def _quantile(a: _Sample, b: _Sample, q: float) -> float | None:
    """The q-quantile of the latencies between two samples, interpolated inside its bucket."""
    counts = [max(0.0, y - x) for x, y in zip(a.buckets, b.buckets, strict=True)]
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = BOUNDS[i - 1] if i > 0 else 0.0
            if i >= len(BOUNDS):
                return BOUNDS[-1]  # beyond the last bound: say the last bound, as Prometheus does
            return lower + (BOUNDS[i] - lower) * (rank - seen) / count
        seen += count
    return BOUNDS[-1]


def _host_name(host_header: str) -> str:
    """The host of a Host header, without its port: ``[::1]:80`` -> ``::1``, ``a:80`` -> ``a``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 4)


_PAGE: bytes | None = None


def _page_html() -> bytes:
    global _PAGE
    if _PAGE is None:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard.html"), "rb") as f:
            _PAGE = f.read()
    return _PAGE
