"""CPU time per call in the caller and in the actor: a figure that a busy machine barely moves.

``python -m benchmarks.cpu [--kind async|sync|seq|getseq] [--calls N] [--rounds R] [--loop asyncio|uvloop]``

Kinds: ``async``/``sync`` gather ``--calls`` calls into an async/sync actor;
``seq`` awaits one call after the other into an async actor; ``getseq`` is
the suite's sequential workload: ``actorloop.get(a.f.remote(i))`` one after
the other from plain sync code into a sync actor.

Wall-clock rates on a shared 2-core machine move with whatever else runs;
the CPU seconds each process spent per call move far less, so they show what
a change to the call path costs even while other work runs. The wall time
per call is printed too: when it equals the caller's CPU time, the two
processes overlap fully and the caller is the bottleneck. Run it against two
checkouts from outside both (the current directory comes first on
``sys.path``): ``cd /tmp && PYTHONPATH=CHECKOUT python /path/to/benchmarks/cpu.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from typing import Any

import psutil

import actorloop


@actorloop.remote
class AsyncEcho:
    async def f(self, x: Any) -> Any:
        return x

    async def pid(self) -> int:
        return os.getpid()


@actorloop.remote
class SyncEcho:
    def f(self, x: Any) -> Any:
        return x

    def pid(self) -> int:
        return os.getpid()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def _per_call(caller0: float, actor0: float, start: float, actor: psutil.Process, n: int) -> dict[str, float]:
    """CPU microseconds per call of this process and of the actor since the marks, and the wall time per call."""
    wall = time.perf_counter() - start
    caller1, actor1 = _own_cpu(), sum(actor.cpu_times()[:2])
    return {
        "caller_us": 1e6 * (caller1 - caller0) / n,
        "actor_us": 1e6 * (actor1 - actor0) / n,
        "wall_us": 1e6 * wall / n,
    }


async def _measure(kind: str, calls: int, rounds: int) -> dict[str, float]:
    handle: Any = (SyncEcho if kind == "sync" else AsyncEcho).remote()
    actor = psutil.Process(await handle.pid.remote())
    await asyncio.gather(*[handle.f.remote(i) for i in range(1000)])  # warm up
    caller0, actor0 = _own_cpu(), sum(actor.cpu_times()[:2])
    start = time.perf_counter()
    for _ in range(rounds):
        if kind == "seq":
            for i in range(calls):
                await handle.f.remote(i)
        else:
            await asyncio.gather(*[handle.f.remote(i) for i in range(calls)])
    return _per_call(caller0, actor0, start, actor, rounds * calls)


def _measure_getseq(calls: int, rounds: int) -> dict[str, float]:
    handle: Any = SyncEcho.remote()
    actor = psutil.Process(actorloop.get(handle.pid.remote()))
    for i in range(1000):  # warm up
        actorloop.get(handle.f.remote(i))
    caller0, actor0 = _own_cpu(), sum(actor.cpu_times()[:2])
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(calls):
            actorloop.get(handle.f.remote(i))
    return _per_call(caller0, actor0, start, actor, rounds * calls)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu")
    parser.add_argument("--kind", choices=("async", "sync", "seq", "getseq"), default="async")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    actorloop.init(address="local")  # not as a context manager: older checkouts are measured too
    try:
        if args.kind == "getseq":  # plain sync code: no caller loop (--loop does not apply)
            result = _measure_getseq(args.calls, args.rounds)
        elif args.loop == "uvloop":
            import uvloop

            result = uvloop.run(_measure(args.kind, args.calls, args.rounds))
        else:
            result = asyncio.run(_measure(args.kind, args.calls, args.rounds))
    finally:
        actorloop.shutdown()
    figures = " ".join(f"{key}={value:.2f}" for key, value in result.items())
    print(f"{args.kind} ({args.loop} caller, {args.calls:,} calls x {args.rounds}): {figures}")


if __name__ == "__main__":
    main()
