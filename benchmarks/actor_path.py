"""The actor's side of a call, in one process: what ``_worker`` spends per call, without a node or a caller.

``python -m benchmarks.actor_path [--kind async|sync] [--calls N] [--rounds R] [--instructions]``

An ``ActorWorker`` with an ``Echo`` instance gets pickled CALL frames fed
to one server connection, ``--chunk`` frames per read (the caller's early
flush sends 256), as a gather of ``--calls`` calls; its replies go to a
transport that only counts bytes. So the figure is the actor's own Python
and C work per call - frame parsing, unpickling, dispatch, tasks, result
pickling, reply framing - with no socket, no kernel and no other process.

Timings on a shared machine move with everything else that runs;
``--instructions`` runs the same thing twice under valgrind (``cachegrind``,
no cache simulation; ``apt-get install valgrind``) with 1 and 1 + R rounds
and prints the difference per call: instructions per call, which move by
well under 1% between runs of the same code (the sync kind, whose two
threads take turns as valgrind schedules them, by ~5%). Compare two
checkouts from outside both:
``cd /tmp && PYTHONPATH=CHECKOUT python /path/to/benchmarks/actor_path.py --instructions``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
from typing import Any

from actorloop import _protocol as proto
from actorloop import _worker


class _CountingTransport(asyncio.Transport):
    """Takes every write at once and keeps only the byte count; no socket, so no thread writes directly."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class Echo:
    async def f(self, x: Any) -> Any:
        return x

    def g(self, x: Any) -> Any:
        return x


def _worker_and_connection(
    loop: asyncio.AbstractEventLoop, is_async: bool
) -> tuple[_worker.ActorWorker, _worker.ActorServerConnection]:
    worker = _worker.ActorWorker(loop, "bench", 0, tempfile.gettempdir(), b"\0" * proto.SECRET_BYTES)
    worker._loop_thread = threading.get_ident()
    methods = {
        "f": types.SimpleNamespace(is_async=True, group=None),
        "g": types.SimpleNamespace(is_async=False, group=None),
    }
    meta: Any = types.SimpleNamespace(is_async=is_async, methods=methods)
    worker._build_groups(meta, {}, 1000 if is_async else 1)
    worker.instance = Echo()
    worker._bind_methods(meta)
    conn = worker._new_connection()
    conn._expect_secret = None  # no hello: the frames follow at once
    conn.connection_made(_CountingTransport())
    return worker, conn


def _reads(calls: int, method: str, chunk: int) -> list[bytes]:
    frames = []
    for i in range(calls):
        frames.append(proto.frame(proto.dumps_call((proto.CALL, i, method, (i,), {}, None), (i,), {})))
    return [b"".join(frames[i : i + chunk]) for i in range(0, calls, chunk)]


async def _gather(conn: _worker.ActorServerConnection, reads: list[bytes], pause: float) -> None:
    for data in reads:
        conn.data_received(data)
        await asyncio.sleep(0)  # one read per loop iteration, as from a socket
    while conn.running:
        await asyncio.sleep(pause)
    await asyncio.sleep(0)  # the last flush


def measure(kind: str, calls: int, rounds: int, chunk: int) -> list[float]:
    """Microseconds of CPU per call of each round after a warm-up round."""
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    _, conn = _worker_and_connection(loop, kind == "async")
    reads = _reads(calls, "f" if kind == "async" else "g", chunk)
    # A sync actor's lane thread works while the loop waits: the loop sleeps rather than spins meanwhile.
    pause = 0.005 if kind == "sync" else 0.0
    loop.run_until_complete(_gather(conn, reads, pause))  # warm up
    figures = []
    for _ in range(rounds):
        start = time.process_time()
        loop.run_until_complete(_gather(conn, reads, pause))
        figures.append(1e6 * (time.process_time() - start) / calls)
    loop.close()
    return figures


def _instructions(argv: list[str]) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable, *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.actor_path")
    parser.add_argument("--kind", choices=("async", "sync"), default="async")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=256, help="frames per read")
    parser.add_argument("--instructions", action="store_true", help="instructions per call, under valgrind")
    args = parser.parse_args(argv)
    if args.instructions:
        base = [os.path.abspath(__file__), "--kind", args.kind, "--calls", str(args.calls), "--chunk", str(args.chunk)]
        one = _instructions([*base, "--rounds", "1"])
        more = _instructions([*base, "--rounds", str(1 + args.rounds)])
        per_call = (more - one) / (args.rounds * args.calls)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        print(f"{args.kind} (Python {version}): {per_call:,.0f} instructions per call")
        return
    figures = measure(args.kind, args.calls, args.rounds, args.chunk)
    figures.sort()
    print(
        f"{args.kind} (Python {sys.version_info[0]}.{sys.version_info[1]}, {args.calls:,} calls x {args.rounds}): "
        f"min {figures[0]:.2f} median {figures[len(figures) // 2]:.2f} us of CPU per call"
    )


if __name__ == "__main__":
    main()
