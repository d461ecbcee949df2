"""The workloads and the metrics they report, with units and targets.

Each workload is implemented twice: through the Ray-style API (``raylike``,
shared by actorloop and Ray) and on the floor (``floor``). A workload may
report several metrics. ``higher`` says which way is better; ratios are
always oriented so that > 1 means actorloop is better.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """What the issues ask of actorloop for one metric (any field may be unset)."""

    at_least: float | None = None  # absolute, for higher-is-better metrics
    at_most: float | None = None  # absolute, for lower-is-better metrics
    x_ray: float | None = None  # ratio against Ray, oriented (> 1 = better)
    x_floor: float | None = None  # ratio against the floor, oriented
    at_least_py312: float | None = None  # replaces at_least on Python 3.12+ (eager tasks in the actor)
    x_floor_same_cpu: float | None = None  # replaces x_floor when driver and actor share one CPU (--pin same)

    def for_run(self, python: tuple[int, int], pin: str) -> Target:
        """The target that applies to a run on this Python with this pinning."""
        at_least = self.at_least
        if self.at_least_py312 is not None and python >= (3, 12):
            at_least = self.at_least_py312
        x_floor = self.x_floor
        if self.x_floor_same_cpu is not None and pin == "same":
            x_floor = self.x_floor_same_cpu
        return Target(at_least=at_least, at_most=self.at_most, x_ray=self.x_ray, x_floor=x_floor)

    def describe(self, unit: str) -> str:
        parts = []
        if self.at_least is not None:
            parts.append(f"≥ {self.at_least:,.0f} {unit}")
        if self.at_most is not None:
            parts.append(f"≤ {self.at_most:g} {unit}")
        if self.x_ray is not None:
            parts.append(f"≥ {self.x_ray:g}× Ray")
        if self.x_floor is not None:
            parts.append(f"≥ {self.x_floor:g} of floor")
        return "; ".join(parts)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # may name Params fields: "{gather_n:,} calls"
    unit: str
    higher: bool
    target: Target | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    metrics: tuple[Metric, ...]
    #: Its figures depend on the driver's event loop: run once per loop of ``--loops``.
    loop_dependent: bool = False
    #: The backends that run it (None: all); the others show "—" and the note says why.
    only: tuple[str, ...] | None = None
    why_only: str = ""


WORKLOADS: tuple[Workload, ...] = (
    # node_memory first: it must see a node with no actor ever created
    Workload(
        "node_memory",
        "node + driver, no actors",
        (
            Metric("node_rss", "node + driver RSS, no actors", "MiB", False, Target(at_most=80)),
            Metric("node_pss", "node + driver PSS, no actors", "MiB", False),
            Metric("node_uss", "node + driver USS, no actors", "MiB", False),
        ),
    ),
    Workload(
        "idle_memory",
        "idle actor memory",
        (
            Metric("idle_rss", "idle actor RSS", "MiB", False, Target(at_most=25)),
            Metric("idle_uss", "idle actor USS", "MiB", False, Target(at_most=8)),
        ),
    ),
    Workload(
        "seq",
        "sequential get(a.f.remote(i)), sync actor",
        (
            Metric(
                "seq_sync",
                "sequential get(a.f.remote(i)), sync actor",
                "calls/s",
                True,
                Target(x_ray=15, x_floor=0.6, x_floor_same_cpu=0.5),
            ),
        ),
    ),
    Workload(
        "gather_async",
        "await gather of N calls, async actor",
        (
            Metric(
                "gather_async",
                "await gather({gather_n:,} calls), async actor",
                "calls/s",
                True,
                Target(at_least=150_000, at_least_py312=200_000, x_ray=60),
            ),
        ),
        loop_dependent=True,
    ),
    Workload(
        "gather_sync",
        "await gather of N calls, sync actor",
        (
            Metric(
                "gather_sync",
                "await gather({gather_n:,} calls), sync actor",
                "calls/s",
                True,
                Target(at_least=150_000, at_least_py312=200_000, x_ray=60),
            ),
        ),
        loop_dependent=True,
    ),
    Workload(
        "gather_1m",
        "peak memory of one gather of 1,000,000 calls",
        (
            Metric(
                "gather_1m_driver",
                "gather({gather_1m_n:,} calls): driver peak above its baseline",
                "MiB",
                False,
                Target(at_most=300),
            ),
            Metric(
                "gather_1m_actor",
                "gather({gather_1m_n:,} calls): async actor peak above its baseline",
                "MiB",
                False,
                Target(at_most=150),
            ),
        ),
        loop_dependent=True,
        only=("actorloop",),
        why_only="Ray is not run on gather_1m: at its ~2,000 calls/s a million calls take about 8 minutes.",
    ),
    Workload(
        "get_list",
        "get([N refs]) from sync code",
        (
            Metric(
                "get_list",
                "get([{gather_n:,} refs]) from sync code",
                "calls/s",
                True,
                Target(at_least=50_000),
            ),
        ),
    ),
    Workload(
        "threads",
        "4 actors x 2 caller threads",
        (Metric("threads", "4 actors × 2 caller threads", "calls/s", True, Target(x_ray=20)),),
    ),
    Workload(
        "tasks",
        "get([N remote-function calls]) from sync code",
        (
            Metric(
                "tasks",
                "get([{tasks_n:,} remote-function calls]) from sync code",
                "calls/s",
                True,
                Target(x_ray=20),
            ),
        ),
    ),
    Workload(
        "stream",
        "a generator method's stream of N small items",
        (
            Metric(
                "stream_values",
                "stream of {stream_n:,} items, values() (Ray: await each ref)",
                "items/s",
                True,
                Target(x_ray=50),
            ),
            Metric("stream_refs", "stream of {stream_n:,} items, await each ref", "items/s", True, Target(x_ray=20)),
            Metric("stream_first", "stream: .remote() to the first item", "ms", False),
            Metric("stream_call", "stream: a plain call's round trip (same actor)", "ms", False),
            Metric("stream_first_x_call", "stream: first item ÷ plain call round trip", "×", False, Target(at_most=2)),
        ),
    ),
    Workload(
        "create",
        "actor start",
        (
            Metric("create_1", "1 actor: .remote() to first reply", "ms", False),
            Metric("create_n", "{create_n} actors, one reply each, per actor", "ms", False, Target(at_most=10)),
        ),
    ),
    Workload(
        "arg_1mib",
        "1 MiB numpy argument",
        (Metric("arg_1mib", "1 MiB numpy argument", "MB/s", True, Target(at_least=1000)),),
    ),
    Workload(
        "arg_100mib",
        "100 MiB numpy argument and return",
        (
            Metric(
                "arg_100mib",
                "100 MiB numpy argument and return",
                "MB/s",
                True,
                Target(at_least=2500),
            ),
        ),
    ),
    Workload(
        "put_10",
        "put 100 MiB then pass it to 10 calls that read it",
        (
            Metric(
                "put_10",
                "put(100 MiB array), then 10 calls that read it",
                "ms",
                False,
                Target(x_ray=2),
            ),
        ),
    ),
)

BY_NAME: dict[str, Workload] = {w.name: w for w in WORKLOADS}
METRICS: dict[str, Metric] = {m.name: m for w in WORKLOADS for m in w.metrics}
BACKENDS: tuple[str, ...] = ("actorloop", "actorloop-metrics", "ray", "floor")
#: actorloop with its node's metrics on (``--metrics``): the dashboard served and /metrics scraped every second.
METRICS_BACKEND = "actorloop-metrics"
