"""What counting calls costs an actor: CPU time per call with the node's metrics off and on.

``python benchmarks/bench_metrics.py [--rounds 5] [--calls 100000] [--quick]``

Each round starts a fresh embedded node twice, metrics off then on (the
order alternates between rounds), and in each makes ``--calls`` calls to
one sync and one async actor in batches (``get([...])``). With metrics on,
a thread reads ``/metrics`` every second, as a Prometheus server would. It
reports, per actor kind, the actor process's CPU time per call (from
``/proc``, user + system, all threads) and the calls/s, as medians over the
rounds, and the ratio on/off. CPU time per call is far less sensitive to
other work on the machine than throughput is, which is why it is the
figure to read on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actorloop  # noqa: E402
from benchmarks._actors import AsyncActor, SyncActor  # noqa: E402

_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TCK


def _scraper(url: str, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
                resp.read()
        except OSError:
            pass


def one_run(metrics: bool, calls: int, batch: int) -> dict[str, tuple[float, float]]:
    """{kind: (actor CPU µs per call, calls/s)} for one fresh node."""
    ctx = actorloop.init(address="local", dashboard_port=0) if metrics else actorloop.init(address="local")
    stop = threading.Event()
    scraper = None
    if metrics:
        scraper = threading.Thread(target=_scraper, args=(ctx.dashboard_url, stop), daemon=True)
        scraper.start()
    out = {}
    try:
        for kind, cls in (("sync", SyncActor), ("async", AsyncActor)):
            h = actorloop.remote(cls).remote()
            pid = actorloop.get(h.getpid.remote())
            actorloop.get([h.f.remote(i) for i in range(batch)])  # warm up
            cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
            for start in range(0, calls, batch):
                actorloop.get([h.f.remote(i) for i in range(start, min(calls, start + batch))])
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds(pid) - cpu0
            out[kind] = (cpu / calls * 1e6, calls / wall)
            actorloop.kill(h)
    finally:
        stop.set()
        if scraper is not None:
            scraper.join()
        actorloop.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/bench_metrics.py", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 20,000 calls")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 20_000
    results: dict[bool, list[dict[str, tuple[float, float]]]] = {False: [], True: []}
    for r in range(args.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for metrics in order:
            results[metrics].append(one_run(metrics, args.calls, args.batch))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def med(metrics: bool, kind: str, i: int) -> float:
        return statistics.median(run[kind][i] for run in results[metrics])

    def spread(metrics: bool, kind: str, i: int) -> str:
        vs = [run[kind][i] for run in results[metrics]]
        return f"{min(vs):,.1f}–{max(vs):,.1f}"

    load = os.getloadavg()[0]
    print(
        f"{args.rounds} rounds of {args.calls:,} calls per actor kind, metrics off/on alternating; "
        f"load average {load:.2f} at the end ({os.cpu_count()} CPUs)"
    )
    print()
    print("| actor | actor CPU µs/call, off | on | on ÷ off | calls/s, off | on | on ÷ off |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("sync", "async"):
        c_off, c_on = med(False, kind, 0), med(True, kind, 0)
        r_off, r_on = med(False, kind, 1), med(True, kind, 1)
        print(
            f"| {kind} | {c_off:.1f} ({spread(False, kind, 0)}) | {c_on:.1f} ({spread(True, kind, 0)}) | "
            f"{c_on / c_off:.2f} | {r_off:,.0f} | {r_on:,.0f} | {r_on / r_off:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
