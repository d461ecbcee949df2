"""Actor output throughput: how fast lines an actor prints reach its driver's stdout.

One actor prints ``--lines`` lines of about 80 bytes in one call; the time
runs from the call until the driver has written the last of them (its
``sys.stdout`` is replaced by a counter). Measured for actorloop's text
prefix, actorloop's JSON lines (``init(log_format="json")``) and, when it
is installed, Ray, each in a fresh subprocess, the backends taking turns;
the table shows the median lines/s and its ratio to Ray.

``--before PYTHON`` also runs the text backend with another interpreter,
whose environment has another version of actorloop installed (not
editable), as ``before``: to compare a change with the code before it.

    python benchmarks/bench_logs.py [--lines 200000] [--repeat 3] [--backends text,json,ray] [--before PY]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

LINE = "x" * 70

CHILD = r"""
import json, os, sys, threading, time
backend, n, line = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Counter:
    # Stands in for the driver's stdout: counts lines, wakes the waiter at the last one.
    def __init__(self, real):
        self.real, self.lines, self.done = real, 0, threading.Event()
    def write(self, text):
        self.lines += text.count("\n")
        if self.lines >= n and "END-OF-RUN" in text:
            self.done.set()
        return len(text)
    def flush(self):
        pass
    def isatty(self):
        return False
    def fileno(self):
        return self.real.fileno()

if backend == "ray":
    import ray as api
    api.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
else:
    import actorloop as api
    api.init(address="local", **({"log_format": "json"} if backend == "json" else {}))

@api.remote
class Printer:
    def ready(self):
        return 1
    def run(self, n, line):
        for i in range(n - 1):
            print(i, line)
        print("END-OF-RUN", flush=True)
        return n

p = Printer.remote()
api.get(p.ready.remote())
counter = Counter(sys.stdout)
real, sys.stdout = sys.stdout, counter
start = time.perf_counter()
api.get(p.run.remote(n, line))
ok = counter.done.wait(300)
elapsed = time.perf_counter() - start
sys.stdout = real
print(json.dumps({"ok": ok, "seconds": elapsed, "lines": counter.lines}))
api.shutdown()
"""


def run_one(backend: str, lines: int, python: str) -> float | None:
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    proc = subprocess.run(
        [python, "-c", CHILD, "text" if backend == "before" else backend, str(lines), LINE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )
    last = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
    if not last:
        print(f"{backend}: failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    result = json.loads(last[0])
    if not result["ok"]:
        print(f"{backend}: only {result['lines']} of {lines} lines arrived", file=sys.stderr)
        return None
    return lines / result["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="text,json,ray")
    parser.add_argument("--before", metavar="PYTHON", help="also run the text backend with this interpreter")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    if args.before:
        backends.insert(0, "before")
    if "ray" in backends:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed: skipped", file=sys.stderr)
            backends.remove("ray")
    rates: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(args.repeat):
        for backend in backends:  # taking turns: a slow phase of the machine hits every backend
            rate = run_one(backend, args.lines, args.before if backend == "before" else sys.executable)
            if rate is not None:
                rates[backend].append(rate)
            time.sleep(0.5)  # let the previous run's processes finish exiting
    ray_median = statistics.median(rates["ray"]) if rates.get("ray") else None
    print(f"| backend | lines/s (median of {args.repeat}) | min-max | vs Ray |")
    print("|---|---|---|---|")
    for backend, values in rates.items():
        if not values:
            print(f"| {backend} | failed | | |")
            continue
        med = statistics.median(values)
        ratio = f"{med / ray_median:.2f}x" if ray_median else "-"
        print(f"| {backend} | {med:,.0f} | {min(values):,.0f}-{max(values):,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
