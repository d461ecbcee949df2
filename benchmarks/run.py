"""Run every workload on actorloop, Ray and the floor, interleaved; report.

``python -m benchmarks [--quick] [--only NAME[,NAME]] [--backends a,b,c]
[--repeat N] [--pin same|split|none] [--loops asyncio,uvloop] [--chart]``

For each repeat, each backend runs all selected workloads in a fresh
subprocess (``benchmarks._worker``), in the order actorloop, ray, floor, so
the backends take turns on the same machine state (A B C A B C ...). The
driver's async workloads run on the first loop of ``--loops`` (the stdlib
loop by default: what ``asyncio.run`` gives users); for each further loop,
a column ``actorloop (uvloop)`` reruns actorloop's loop-dependent workloads
in the same turns. Every
process a backend-run starts carries a tag in its environment; after the
run the tag is searched for and anything left is reported (and ended). A
workload that hangs past its timeout ends its backend-run, and the rest of
the workloads go on in a new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import ENV_TAG, Params
from benchmarks.workloads import BACKENDS, BY_NAME, METRICS, METRICS_BACKEND, WORKLOADS, Metric

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- running


def column_backend(column: str, params: Params) -> tuple[str, Params]:
    """The backend and params of a table column: ``actorloop@uvloop`` is actorloop with the driver on uvloop."""
    backend, _, loop = column.partition("@")
    return backend, (dataclasses.replace(params, loop=loop) if loop else params)


def column_title(column: str) -> str:
    backend, _, loop = column.partition("@")
    name = {"actorloop": "actorloop", METRICS_BACKEND: "actorloop, metrics on", "ray": "Ray", "floor": "floor"}[backend]
    return f"{name} ({loop})" if loop else name


@dataclass
class RunRecord:
    """What one backend-run (one worker subprocess, maybe restarted) gave."""

    backend: str
    repeat: int
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    version: str = ""
    init_seconds: float | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def backend_available(name: str) -> tuple[bool, str]:
    if name == "floor":
        return True, ""
    if name == METRICS_BACKEND:
        name = "actorloop"
    if importlib.util.find_spec(name) is None:
        return False, f"{name} is not installed"
    return True, ""


def _tagged_processes(tag: str) -> list[Any]:
    import psutil

    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(ENV_TAG) == tag and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def sweep(tag: str, grace: float) -> list[str]:
    """Wait up to ``grace`` s for tagged processes to end; end the rest.

    Returns a description of each process that had to be ended.
    """
    try:
        import psutil
    except ImportError:  # without psutil the check cannot run; say so once
        return ["(psutil is not installed: leftover processes were not checked)"]

    deadline = time.monotonic() + grace
    procs = _tagged_processes(tag)
    while procs and time.monotonic() < deadline:
        time.sleep(0.2)
        procs = _tagged_processes(tag)
    left = []
    for p in procs:
        try:
            left.append(f"pid {p.pid}: {' '.join(p.cmdline())[:120]}")
            p.terminate()
        except psutil.Error:
            pass
    if procs:
        _gone, alive = psutil.wait_procs(procs, timeout=3)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=3)
    return left


class Worker:
    """One worker subprocess and its result pipe."""

    def __init__(self, backend: str, workloads: list[str], params: Params, tag: str, log: Path) -> None:
        backend, params = column_backend(backend, params)
        rfd, wfd = os.pipe()
        env = dict(os.environ)
        env[ENV_TAG] = tag
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log = log
        self.logf = open(log, "ab")  # noqa: SIM115 - closed in finish()
        cmd = [
            sys.executable,
            "-m",
            "benchmarks._worker",
            "--backend",
            backend,
            "--workloads",
            ",".join(workloads),
            "--params",
            json.dumps(dataclasses.asdict(params)),
            "--result-fd",
            str(wfd),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            pass_fds=(wfd,),
            start_new_session=True,
        )
        os.close(wfd)
        self.rfd = rfd
        self.buf = b""

    def events(self, timeout: float) -> list[dict[str, Any]] | None:
        """Events that arrive within ``timeout`` s; None once the worker is gone."""
        ready, _, _ = select.select([self.rfd], [], [], timeout)
        if ready:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                self.proc.wait()
                return self._lines(final=True) or None
            self.buf += chunk
            return self._lines()
        if self.proc.poll() is not None:
            return self._lines(final=True) or None
        return []

    def _lines(self, final: bool = False) -> list[dict[str, Any]]:
        *lines, self.buf = self.buf.split(b"\n")
        if final and self.buf:
            lines.append(self.buf)
            self.buf = b""
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def finish(self) -> None:
        os.close(self.rfd)
        self.logf.close()


def run_backend(
    backend: str,
    repeat: int,
    workloads: list[str],
    params: Params,
    timeouts: dict[str, float],
    stem: str,
    say: Any,
) -> RunRecord:
    rec = RunRecord(backend, repeat)
    todo = list(workloads)
    attempt = 0
    t_start = time.perf_counter()
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    while todo:
        attempt += 1
        tag = f"{stem}-{backend}-{repeat}-{attempt}-{uuid.uuid4().hex[:8]}"
        log = logs / f"{stem}-{backend}-r{repeat}.log"
        w = Worker(backend, todo, params, tag, log)
        stage, current = "init", None
        deadline = time.monotonic() + timeouts["init"]
        hung = False
        finished_cleanly = False
        try:
            while True:
                evs = w.events(max(0.0, min(1.0, deadline - time.monotonic())))
                if evs is None:
                    break
                for ev in evs:
                    kind = ev["event"]
                    if kind == "init":
                        if ev.get("ok"):
                            rec.init_seconds = rec.init_seconds or ev["seconds"]
                            rec.version = ev.get("version", "")
                            say(f"init {ev['seconds']:.1f}s")
                        else:
                            for name in todo:
                                rec.errors[name] = f"init failed: {ev['error']}"
                            say(f"init FAILED: {ev['error']}")
                            todo = []
                        stage, deadline = "run", time.monotonic() + timeouts["workload"]
                    elif kind == "start":
                        current = ev["workload"]
                        deadline = time.monotonic() + timeouts["workload"]
                    elif kind == "result":
                        name = ev["workload"]
                        current = None
                        if name in todo:
                            todo.remove(name)
                        if "error" in ev:
                            rec.errors[name] = ev["error"]
                            say(f"{name} ERROR")
                        else:
                            rec.metrics.update(ev["metrics"])
                            if ev.get("info"):
                                rec.info[name] = ev["info"]
                            say(f"{name} {ev['seconds']:.1f}s")
                        deadline = time.monotonic() + timeouts["workload"]
                    elif kind == "shutdown":
                        stage = "shutdown"
                        if ev.get("error"):
                            rec.problems.append(f"{backend} r{repeat}: shutdown error: {ev['error']}")
                        if ev.get("leftover"):
                            rec.problems.append(
                                f"{backend} r{repeat}: {len(ev['leftover'])} child process(es) alive "
                                f"after shutdown(): {ev['leftover'][:3]}"
                            )
                        finished_cleanly = True
                        deadline = time.monotonic() + timeouts["shutdown"]
                if time.monotonic() >= deadline:
                    hung = True
                    break
        finally:
            if hung or w.proc.poll() is None:
                w.kill()
            w.finish()
        if hung:
            what = current or stage
            msg = f"timed out after {timeouts['workload' if current else stage]:g}s in {what}"
            say(f"{what} TIMEOUT")
            if current is not None:
                rec.errors[current] = msg
                todo.remove(current)
            elif stage == "init":
                for name in todo:
                    rec.errors[name] = f"init {msg}"
                todo = []
            rec.problems.append(f"{backend} r{repeat}: {msg}; worker killed (log: {log})")
        elif not finished_cleanly:
            code = w.proc.returncode
            if current is not None:
                rec.errors[current] = f"worker died (exit {code}) during {current}"
                todo.remove(current)
                rec.problems.append(f"{backend} r{repeat}: worker died (exit {code}) in {current} (log: {log})")
            elif todo:
                for name in todo:
                    rec.errors.setdefault(name, f"worker exited ({code}) before running it")
                todo = []
        left = sweep(tag, grace=5.0 if (hung or not finished_cleanly) else 10.0)
        if left:
            rec.problems.append(
                f"{backend} r{repeat}: {len(left)} process(es) outlived the backend-run and were ended: "
                + "; ".join(left[:4])
            )
    rec.seconds = time.perf_counter() - t_start
    return rec


# ---------------------------------------------------------------- summary


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:,.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def oriented_ratio(m: Metric, ours: float | None, other: float | None) -> float | None:
    """> 1 means actorloop is better, whichever way the metric points."""
    if ours is None or other is None or ours <= 0 or other <= 0:
        return None
    return ours / other if m.higher else other / ours


def summarize(
    records: list[RunRecord], metrics: list[Metric], backends: list[str], params: Params
) -> list[dict[str, Any]]:
    rows = []
    fields = dataclasses.asdict(params)
    python = sys.version_info[:2]
    for m in metrics:
        values: dict[str, list[float]] = {b: [] for b in backends}
        for r in records:
            if m.name in r.metrics:
                values[r.backend].append(float(r.metrics[m.name]))
        stats = {}
        for b, vs in values.items():
            stats[b] = {"median": statistics.median(vs), "min": min(vs), "max": max(vs), "n": len(vs)} if vs else None

        def med(b: str, stats: dict[str, Any] = stats) -> float | None:
            s = stats.get(b)
            return s["median"] if s else None

        ours = med("actorloop")
        r_ray = oriented_ratio(m, ours, med("ray"))
        r_floor = oriented_ratio(m, ours, med("floor"))
        # Metrics on vs off: > 1 means on is better, so ~1.00 is "costs nothing measurable".
        r_metrics = oriented_ratio(m, med(METRICS_BACKEND), ours)
        met: bool | None = None
        target = m.target.for_run(python, params.pin) if m.target is not None else None
        if target is not None and ours is not None:
            checks: list[bool | None] = []
            t = target
            if t.at_least is not None:
                checks.append(ours >= t.at_least)
            if t.at_most is not None:
                checks.append(ours <= t.at_most)
            if t.x_ray is not None:
                checks.append(None if r_ray is None else r_ray >= t.x_ray)
            if t.x_floor is not None:
                checks.append(None if r_floor is None else r_floor >= t.x_floor)
            met = False if False in checks else (None if None in checks else True)
        rows.append(
            {
                "metric": m.name,
                "label": m.label.format(**fields),
                "unit": m.unit,
                "higher_is_better": m.higher,
                "values": values,
                "stats": stats,
                "ratio_vs_ray": r_ray,
                "ratio_vs_floor": r_floor,
                "ratio_metrics_on_vs_off": r_metrics,
                "target": target.describe(m.unit) if target else "",
                "target_met": met,
            }
        )
    return rows


def cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "—"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


RATIO_NOTE = (
    "Cells: median (min–max) over the repeats. Ratios compare medians and are oriented so that "
    "> 1 means actorloop is better (throughput: actorloop ÷ other; time and memory: other ÷ actorloop)."
)


def table_rows(rows: list[dict[str, Any]], backends: list[str]) -> tuple[list[str], list[list[str]]]:
    header = ["workload", "unit"] + [column_title(b) for b in backends]
    with_metrics = METRICS_BACKEND in backends and "actorloop" in backends
    if with_metrics:
        header.append("metrics on vs off (>1 on better)")
    if "ray" in backends and "actorloop" in backends:
        header.append("vs Ray (>1 better)")
    if "floor" in backends and "actorloop" in backends:
        header.append("vs floor (>1 better)")
    show_target = "actorloop" in backends
    if show_target:
        header.append("target")
    out = []
    for r in rows:
        line = [r["label"], r["unit"]] + [cell(r["stats"][b]) for b in backends]
        if with_metrics:
            line.append(fmt_ratio(r["ratio_metrics_on_vs_off"]))
        if "ray" in backends and "actorloop" in backends:
            line.append(fmt_ratio(r["ratio_vs_ray"]))
        if "floor" in backends and "actorloop" in backends:
            line.append(fmt_ratio(r["ratio_vs_floor"]))
        if show_target:
            mark = {True: "✓ ", False: "✗ ", None: ""}[r["target_met"]] if r["target"] else ""
            line.append(f"{mark}{r['target']}")
        out.append(line)
    return header, out


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("actorloop", "ray", "numpy", "uvloop", "psutil", "cloudpickle"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    info["versions"] = versions
    info["git"] = git_state()
    return info


def git_state() -> str:
    """The checkout's commit, with "+dirty" when actorloop/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "actorloop"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}+dirty" if head and dirty else head


def draw_chart(rows: list[dict[str, Any]], path: Path, title: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    labels, vs_ray, vs_floor = [], [], []
    for r in rows:
        if r["ratio_vs_ray"] is None and r["ratio_vs_floor"] is None:
            continue
        labels.append(r["label"])
        vs_ray.append(r["ratio_vs_ray"] or 0.0)
        vs_floor.append(r["ratio_vs_floor"] or 0.0)
    if not labels:
        return "chart skipped: no ratios to draw (actorloop and another backend are needed)"
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(labels) + 1.6))
    ys = list(range(len(labels)))
    h = 0.38
    if any(vs_ray):
        bars = ax.barh([y - h / 2 for y in ys], vs_ray, height=h, label="actorloop vs Ray", color="#3b7dd8")
        ax.bar_label(bars, labels=[fmt_ratio(v) if v else "" for v in vs_ray], padding=3, fontsize=8)
    if any(vs_floor):
        bars = ax.barh([y + h / 2 for y in ys], vs_floor, height=h, label="actorloop vs floor", color="#e8912d")
        ax.bar_label(bars, labels=[fmt_ratio(v) if v else "" for v in vs_floor], padding=3, fontsize=8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("ratio, > 1 = actorloop better (log scale)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [w.name for w in WORKLOADS]
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="actorloop beside Ray and a bare-socket floor, interleaved, in one run.",
        epilog="workloads: " + ", ".join(names),
    )
    ap.add_argument("--quick", action="store_true", help="CI-sized run (< 60 s): shorter loops, 1 repeat")
    ap.add_argument("--only", default="", help="comma-separated workloads to run (default: all)")
    ap.add_argument(
        "--backends",
        default="actorloop,ray,floor",
        help="comma-separated, from " + ",".join(BACKENDS) + " (actorloop-metrics: actorloop with its metrics on)",
    )
    ap.add_argument(
        "--metrics",
        action="store_true",
        help="also run actorloop with its node's metrics on (dashboard served, /metrics scraped every second), "
        "interleaved with the others, and show on vs off",
    )
    ap.add_argument("--repeat", type=int, default=None, help="backend-runs per backend (default 3, quick 1)")
    ap.add_argument(
        "--pin",
        choices=("same", "split", "none"),
        default="none",
        help="driver and actors on the same CPU, on different CPUs, or where the scheduler puts them",
    )
    ap.add_argument(
        "--loops",
        default="asyncio,uvloop",
        help="driver loops for async workloads: the first is the headline column, each other one adds an "
        "actorloop column (default asyncio,uvloop)",
    )
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default=None, help="one driver loop (= --loops LOOP)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per timed loop (default 1, quick 0.5)")
    ap.add_argument("--actors", type=int, default=None, help="actors in the start-up workload (default 50, quick 5)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds before a workload counts as hung")
    ap.add_argument("--chart", action="store_true", help="draw the ratios as a PNG (needs matplotlib)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for the result files")
    ap.add_argument("--name", default=None, help="file stem of the results (default: bench-<timestamp>)")
    ap.add_argument("--no-save", action="store_true", help="print the table only")
    ap.add_argument("--list", action="store_true", help="list the workloads and exit")
    ap.add_argument("--replot", type=Path, default=None, metavar="JSON", help="draw the chart of a saved run and exit")
    return ap.parse_args(argv)


def run_with_defaults(defaults: list[str], name: str, argv: list[str] | None = None) -> int:
    """The suite with these option defaults (pairs of ``--option value``) unless ``argv`` gives them.

    The thin per-issue wrappers (``bench_calls.py``, ``bench_streams.py``) are this call.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    extra: list[str] = []
    for i in range(0, len(defaults), 2):
        if defaults[i] not in given:
            extra += defaults[i : i + 2]
    return main(extra + args + (["--name", name] if "--name" not in given else []))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot is not None:
        saved = json.loads(args.replot.read_text())
        title = (
            f"actorloop {saved['backend_versions'].get('actorloop', '')} vs Ray "
            f"{saved['backend_versions'].get('ray', '')} and the floor — "
            f"{saved['timestamp'][:10]}, {saved['machine']['cpu']}"
        )
        print(draw_chart(saved["metrics"], args.replot.with_suffix(".png"), title))
        return 0
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:13} {w.title}: " + ", ".join(f"{m.name} ({m.unit})" for m in w.metrics))
        return 0

    workloads = [w.name for w in WORKLOADS]
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in BY_NAME]
        if unknown:
            print(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(workloads)}", file=sys.stderr)
            return 2
        workloads = [w for w in workloads if w in wanted]  # registry order: node_memory first

    backends = []
    wanted_backends = [s.strip() for s in args.backends.split(",") if s.strip()]
    if args.metrics and METRICS_BACKEND not in wanted_backends:
        wanted_backends.append(METRICS_BACKEND)
    for b in wanted_backends:
        if b not in BACKENDS:
            print(f"unknown backend {b!r}; known: {', '.join(BACKENDS)}", file=sys.stderr)
            return 2
        ok, why = backend_available(b)
        if ok:
            backends.append(b)
        else:
            print(f"skipping {b}: {why}", file=sys.stderr)
    backends.sort(key=BACKENDS.index)  # columns and turns always in the order actorloop, ray, floor
    if not backends:
        print("no backend to run", file=sys.stderr)
        return 2
    if args.pin == "split" and len(os.sched_getaffinity(0)) < 2:
        print("--pin split needs two CPUs; using --pin same", file=sys.stderr)
        args.pin = "same"

    loops = [args.loop] if args.loop else [s.strip() for s in args.loops.split(",") if s.strip()]
    bad_loops = [lp for lp in loops if lp not in ("asyncio", "uvloop")]
    if not loops or bad_loops:
        print(f"--loops: unknown loop(s) {bad_loops or loops}; known: asyncio, uvloop", file=sys.stderr)
        return 2
    if "actorloop" in backends:
        at = backends.index("actorloop") + 1
        backends[at:at] = [f"actorloop@{lp}" for lp in loops[1:]]
    columns_workloads = {
        b: [
            w
            for w in workloads
            if (BY_NAME[w].only is None or b.partition("@")[0] in BY_NAME[w].only)
            and ("@" not in b or BY_NAME[w].loop_dependent)
        ]
        for b in backends
    }

    params = Params.quick() if args.quick else Params()
    params.pin = args.pin
    params.loop = loops[0]
    if args.duration is not None:
        params.duration = args.duration
    if args.actors is not None:
        params.create_n = args.actors
    repeat = args.repeat or (1 if args.quick else 3)
    wl_timeout = args.timeout or (60.0 if args.quick else 120.0)
    timeouts = {"init": 120.0, "workload": wl_timeout, "shutdown": 60.0}

    now = dt.datetime.now().astimezone()
    stem = args.name or f"bench-{now:%Y%m%d-%H%M%S}"
    machine = machine_info()
    print(
        f"actorloop benchmarks {now:%Y-%m-%d %H:%M} on {machine['cpu']} ({machine['cpus_allowed']} CPUs), "
        f"Python {machine['python']}; backends {', '.join(backends)}; {repeat} repeat(s); pin={args.pin}"
        + ("; quick" if args.quick else ""),
        file=sys.stderr,
    )
    load = machine["loadavg_start"][0]
    if load > 0.5 * machine["cpus_allowed"]:
        print(
            f"warning: load average {load:.2f} at start: other work on this machine will skew the figures",
            file=sys.stderr,
        )
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    records: list[RunRecord] = []
    for rep in range(1, repeat + 1):
        for b in backends:
            prefix = f"[{rep}/{repeat}] {b:9}"
            print(prefix, end="", file=sys.stderr, flush=True)

            def say(msg: str) -> None:
                print(f" {msg};", end="", file=sys.stderr, flush=True)

            rec = run_backend(b, rep, columns_workloads[b], params, timeouts, stem, say)
            print(f" ({rec.seconds:.0f}s)", file=sys.stderr, flush=True)
            records.append(rec)
    elapsed = time.perf_counter() - t0
    machine["loadavg_end"] = list(os.getloadavg())

    metrics = [m for w in workloads for m in BY_NAME[w].metrics]
    rows = summarize(records, metrics, backends, params)
    header, trows = table_rows(rows, backends)
    if loops[1:] and "actorloop" in backends:
        header[header.index("actorloop")] = f"actorloop ({loops[0]})"
    versions = {b: next((r.version for r in records if r.backend == b and r.version), "") for b in backends}
    problems = [p for r in records for p in r.problems]
    memcpy = [r.info["arg_100mib"]["memcpy_mbps"] for r in records if "memcpy_mbps" in r.info.get("arg_100mib", {})]
    notes = []
    for w in workloads:
        if BY_NAME[w].why_only and any(b.partition("@")[0] not in (BY_NAME[w].only or ()) for b in backends):
            notes.append(BY_NAME[w].why_only)
    for extra in loops[1:]:
        column = f"actorloop@{extra}"
        if column not in backends:
            continue
        compared = []
        for r in rows:
            ours, theirs = r["stats"].get("actorloop"), r["stats"].get(column)
            if ours and theirs:
                metric = METRICS[r["metric"]]
                ratio = oriented_ratio(metric, theirs["median"], ours["median"])
                compared.append(f"{r['metric']} {fmt_ratio(ratio)}")
        if compared:
            notes.append(
                f"actorloop with the driver on {extra} ÷ on {loops[0]} (> 1: {extra} is better): "
                + ", ".join(compared)
                + "."
            )
    if memcpy:
        notes.append(
            f"For scale: one memcpy of 100 MiB inside one process runs at {fmt(statistics.median(memcpy))} MB/s "
            "here (measured in the floor's driver); the floor moves large buffers over the socket, not through "
            "shared memory, so it is not a ceiling for arg_100mib."
        )
    errors = [
        {"backend": r.backend, "repeat": r.repeat, "workload": w, "error": e}
        for r in records
        for w, e in r.errors.items()
    ]

    print()
    print(RATIO_NOTE)
    print()
    print(render_text(header, trows))
    print()
    for n in notes:
        print(n)
    for e in errors:
        print(f"error: {e['backend']} r{e['repeat']} {e['workload']}: {e['error']}")
    for p in problems:
        print(f"problem: {p}")
    print(f"total {elapsed:.0f}s")

    if args.no_save:
        return 1 if errors else 0

    config = {
        "quick": args.quick,
        "repeat": repeat,
        "pin": args.pin,
        "loops": loops,
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "backends": backends,
        "workloads": workloads,
        "params": dataclasses.asdict(params),
        "seconds": round(elapsed, 1),
    }
    title = f"actorloop {versions.get('actorloop', '')} vs Ray {versions.get('ray', '')} and the floor"
    md = [
        f"# {title.strip()}",
        "",
        f"Run {now:%Y-%m-%d %H:%M %Z} on {machine['cpu']}, {machine['cores']} cores "
        f"({machine['cpus_allowed']} allowed), {machine.get('memory_gib', '?')} GiB, Python {machine['python']}, "
        f"{machine['platform']}. Load average {machine['loadavg_start'][0]:.2f} at the start, "
        f"{machine['loadavg_end'][0]:.2f} at the end.",
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
        + (f" (checkout {machine['git']})" if machine.get("git") else ""),
        "",
        f"Command: `python -m benchmarks {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"{repeat} backend-run(s) per backend, interleaved; pin={args.pin}; driver loop {loops[0]}"
        + (f" (and {', '.join(loops[1:])} in its own actorloop column)" if loops[1:] else "")
        + "; "
        + ("quick sizes; " if args.quick else "")
        + f"{elapsed:.0f} s in all. "
        "Memory in MiB; MB/s in 10^6 bytes/s.",
        "",
        RATIO_NOTE,
        "",
        render_markdown(header, trows),
        "",
        *[f"{n}\n" for n in notes],
    ]
    if errors:
        md += ["Errors:", ""]
        md += [f"- {e['backend']} r{e['repeat']} {e['workload']}: {e['error']}" for e in errors] + [""]
    if problems:
        md += ["Problems:", ""] + [f"- {p}" for p in problems] + [""]
    md_path = args.out / f"{stem}.md"
    md_path.write_text("\n".join(md))
    data = {
        "format": 1,
        "timestamp": now.isoformat(timespec="seconds"),
        "machine": machine,
        "config": config,
        "backend_versions": versions,
        "ratio_orientation": RATIO_NOTE,
        "metrics": rows,
        "runs": [dataclasses.asdict(r) for r in records],
        "errors": errors,
        "problems": problems,
        "notes": notes,
    }
    json_path = args.out / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {md_path} and {json_path}")
    if args.chart:
        print(draw_chart(rows, args.out / f"{stem}.png", f"{title.strip()} — {now:%Y-%m-%d}, {machine['cpu']}"))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
