"""Instructions the caller executes per gathered call, counted by valgrind.

``python -m benchmarks.caller_path [--kind async|sync] [--loop asyncio|uvloop] [--calls N]``

The driver gathers ``--calls`` calls into one actor once, then six times;
valgrind (callgrind, the driver process and its threads only: the node and
the actor run natively) counts the instructions of each run, and the
difference divided by the extra calls is what one gathered call costs the
caller. Unlike calls/s or CPU seconds, the figure moves by well under 1%
between runs on a busy machine, so it judges a change to the caller's path
(``benchmarks/actor_path.py`` does the same for the actor's side). Run it
against two checkouts from outside both: ``cd /tmp && PYTHONPATH=CHECKOUT
python -m benchmarks.caller_path`` (``-m`` needs the checkout on the path).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

_ROUNDS = (1, 6)


async def _gather(kind: str, calls: int, rounds: int) -> None:
    from benchmarks.cpu import AsyncEcho, SyncEcho

    handle: Any = (SyncEcho if kind == "sync" else AsyncEcho).remote()
    method = handle.f
    await asyncio.gather(*[method.remote(i) for i in range(500)])  # connected and warm
    for _ in range(rounds):
        await asyncio.gather(*[method.remote(i) for i in range(calls)])


def _driver(kind: str, loop: str, calls: int, rounds: int) -> None:
    import actorloop

    if loop == "uvloop":
        import uvloop

        uvloop.run(_gather(kind, calls, rounds))
    else:
        asyncio.run(_gather(kind, calls, rounds))
    actorloop.shutdown()


def _count(args: argparse.Namespace, rounds: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={os.path.join(tmp, 'out')}",
            sys.executable,
            "-m",
            "benchmarks.caller_path",
            "--driver",
            str(rounds),
            "--kind",
            args.kind,
            "--loop",
            args.loop,
            "--calls",
            str(args.calls),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("async", "sync"), default="async")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--calls", type=int, default=2000, help="calls per gather")
    parser.add_argument("--driver", type=int, metavar="ROUNDS", help=argparse.SUPPRESS)  # the process valgrind runs
    args = parser.parse_args()
    if args.driver is not None:
        _driver(args.kind, args.loop, args.calls, args.driver)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    few, many = (_count(args, rounds) for rounds in _ROUNDS)
    per_call = (many - few) / ((_ROUNDS[1] - _ROUNDS[0]) * args.calls)
    print(
        f"caller path ({args.kind} actor, {args.loop} driver, Python {sys.version.split()[0]}): "
        f"{per_call:,.0f} instructions per gathered call"
    )


if __name__ == "__main__":
    main()
