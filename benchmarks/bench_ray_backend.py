"""The Ray backend's own cost: the same calls through actorloop's wrappers and through Ray directly.

Both run in one Ray instance, in turns (Ray, actorloop, Ray, actorloop ...),
on one actor each; prints the median time per call and the ratio
actorloop-on-Ray / Ray (1.0 = no overhead). Workloads: sequential
``get(a.f.remote(i))``, ``asyncio.gather`` of N calls to an async actor, and
``get`` of a list of N calls to a sync actor, and a stream of N items from an
async generator method (Ray: ``ray.get`` of each ref; actorloop: ``values()``
and the ref form), both with a window of 128 items (actorloop's default, which
the backend passes to Ray; Ray's own default is none).

    python benchmarks/bench_ray_backend.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per gather/list workload (sequential: a tenth)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    import ray

    import actorloop

    temp_dir = tempfile.mkdtemp(prefix="alray-", dir="/tmp")
    try:
        actorloop.init(backend="ray", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
        return _run(ray, actorloop, args.calls, args.rounds)
    finally:
        actorloop.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _run(ray: Any, actorloop: Any, calls: int, rounds: int) -> int:
    class Sync:
        def f(self, x: int) -> int:
            return x

    class Async:
        async def f(self, x: int) -> int:
            return x

        async def items(self, n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                yield i

    ray_sync, ray_async = ray.remote(Sync).remote(), ray.remote(Async).remote()
    al_sync, al_async = actorloop.remote(Sync).remote(), actorloop.remote(Async).remote()
    ray.get([ray_sync.f.remote(0), ray_async.f.remote(0)])
    actorloop.get([al_sync.f.remote(0), al_async.f.remote(0)])
    seq = max(1, calls // 10)

    def sequential(get: Callable[[Any], Any], actor: Any) -> Callable[[], None]:
        def run() -> None:
            for i in range(seq):
                get(actor.f.remote(i))

        return run

    def gathered(actor: Any) -> Callable[[], None]:
        async def go() -> None:
            await asyncio.gather(*[actor.f.remote(i) for i in range(calls)])

        return lambda: asyncio.run(go())

    def listed(get: Callable[[Any], Any], actor: Any) -> Callable[[], None]:
        return lambda: get([actor.f.remote(i) for i in range(calls)])

    def streamed_ray(actor: Any) -> Callable[[], None]:
        method = actor.items.options(_generator_backpressure_num_objects=128)
        return lambda: [ray.get(ref) for ref in method.remote(calls)]  # type: ignore[func-returns-value]

    def streamed_values(actor: Any) -> Callable[[], None]:
        return lambda: list(actor.items.remote(calls).values())  # type: ignore[func-returns-value]

    def streamed_refs(actor: Any) -> Callable[[], None]:
        return lambda: [actorloop.get(ref) for ref in actor.items.remote(calls)]  # type: ignore[func-returns-value]

    workloads = {
        f"sequential get x{seq}": (sequential(ray.get, ray_sync), sequential(actorloop.get, al_sync), seq),
        f"gather x{calls} (async actor)": (gathered(ray_async), gathered(al_async), calls),
        f"get list x{calls} (sync actor)": (listed(ray.get, ray_sync), listed(actorloop.get, al_sync), calls),
        f"stream x{calls}, values()": (streamed_ray(ray_async), streamed_values(al_async), calls),
        f"stream x{calls}, refs": (streamed_ray(ray_async), streamed_refs(al_async), calls),
    }
    print(f"{'workload':34} {'Ray us/call':>12} {'actorloop-on-Ray':>17} {'ratio':>6}")
    for name, (on_ray, on_actorloop, n) in workloads.items():
        times: dict[str, list[float]] = {"ray": [], "al": []}
        for _ in range(rounds):
            for key, fn in (("ray", on_ray), ("al", on_actorloop)):
                start = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - start) / n * 1e6)
        r, a = statistics.median(times["ray"]), statistics.median(times["al"])
        print(f"{name:34} {r:12.1f} {a:17.1f} {a / r:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
