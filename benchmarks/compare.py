"""Compare two checkouts of actorloop in one interleaved run: before/after figures for a change.

``python -m benchmarks.compare BEFORE_DIR AFTER_DIR [--repeat N] [--loops asyncio,uvloop] [--only a,b]``

Each repeat runs the benchmark suite's actorloop backend once from each
checkout (``python -m benchmarks --backends actorloop --repeat 1``, with that
checkout first on ``PYTHONPATH``), alternating which goes first, for each
driver loop. The table gives the median of the repeats and after ÷ before
(for time and memory rows, lower is better). Make the BEFORE checkout with
``git worktree add /tmp/before <commit>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(checkout: Path, loop: str, only: str | None, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks", "--backends", "actorloop", "--repeat", "1", "--loop", loop]
    cmd += ["--out", str(out), "--name", "run"]
    if only:
        cmd += ["--only", only]
    env = dict(os.environ, PYTHONPATH=str(checkout))
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    result = out / "run.json"
    if not result.exists():
        raise SystemExit(f"the run from {checkout} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    metrics: dict[str, float] = json.loads(result.read_text())["runs"][0]["metrics"]
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--only", default=None)
    args = parser.parse_args(argv)
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for loop in args.loops.split(","):
            for repeat in range(args.repeat):
                order = list(sides.items()) if repeat % 2 == 0 else list(sides.items())[::-1]
                for side, checkout in order:
                    out = Path(tmp) / f"{side}-{loop}-{repeat}"
                    for metric, value in _run(checkout, loop, args.only, out).items():
                        values.setdefault((loop, metric), {}).setdefault(side, []).append(value)
                    print(f"ran {side} ({loop}, repeat {repeat + 1}/{args.repeat})", file=sys.stderr, flush=True)
    print("| loop | metric | before | after | after ÷ before |")
    print("|---|---|---|---|---|")
    for (loop, metric), by_side in sorted(values.items()):
        if "before" not in by_side or "after" not in by_side:
            continue
        before = statistics.median(by_side["before"])
        after = statistics.median(by_side["after"])
        print(f"| {loop} | {metric} | {before:,.1f} | {after:,.1f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
