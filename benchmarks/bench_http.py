"""Requests/s of an HTTP GET served by an actor, with 32 concurrent clients.

Variants, each served by one actor process:

- ``builtin``: a route declared with ``@actorloop.http.get`` (async handler);
- ``builtin-sync``: the same with a sync handler (it runs on a thread);
- ``hand-made``: the seed's pattern, an aiohttp ``AppRunner``/``TCPSite``
  started in the actor's async ``__init__`` (the same actor as above);
- ``ray hand-made``: the seed's pattern on Ray, when ``import ray`` works;
- ``ray serve``: a Ray Serve deployment (one replica) answering the same
  body through Serve's HTTP proxy, when ``ray[serve]`` is installed (the
  bench extra). Its CPU per request is the proxy's plus the replica's.

Every variant answers the same body (the counter as text) to the same
client: one aiohttp ``ClientSession`` in this process, 32 tasks in a loop,
keep-alive connections. The measuring rounds alternate between variants
so that noise from other processes hits them alike; the table gives the
median of each figure over the rounds. Beside req/s it gives the actor
process's CPU time per request (from ``/proc``), median and best round:
on a small shared machine req/s mostly measures the client and whatever
else runs, while the best CPU per request is the server's own cost. The
target: built-in routes cost at most 10% over hand-made aiohttp
(``req/s builtin / hand-made >= 0.91``, CPU per request <= 1.1x).

Run::

    python benchmarks/bench_http.py             # 5 rounds x 1.5 s per variant
    python benchmarks/bench_http.py --quick     # a smoke run, ~1 s per variant
    python benchmarks/bench_http.py --no-ray --rounds 5 --duration 1.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

import actorloop

CLIENTS = 32
TARGET_COST = 1.10  # built-in routes may cost 10% over hand-made aiohttp
TARGET_RATIO = 1 / TARGET_COST  # ... that is, keep 91% of its req/s
TARGET_OVER_SERVE = 5.0  # built-in routes answer at least 5x the req/s of a Ray Serve deployment


class Counter:
    """The seed's actor, plus built-in routes (plain attributes to Ray)."""

    async def __init__(self) -> None:
        self.counter = 0
        app = web.Application()
        app.add_routes([web.get("/", self.get), web.post("/", self.post)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.counter))

    async def post(self, request: web.Request) -> web.Response:
        self.counter += 1
        return web.Response(text="ok")

    async def increment(self) -> None:
        self.counter += 1

    async def port(self) -> int:
        return int(self.runner.addresses[0][1])

    async def pid(self) -> int:
        return os.getpid()

    @actorloop.http.get("/")
    async def count(self, request: web.Request) -> str:
        return str(self.counter)

    @actorloop.http.get("/sync")
    def count_sync(self, request: web.Request) -> str:
        return str(self.counter)


def cpu_seconds(pids: int | tuple[int, ...]) -> float | None:
    """User + system CPU time of the processes (and their threads) (Linux ``/proc``; None elsewhere)."""
    total = 0.0
    for pid in pids if isinstance(pids, tuple) else (pids,):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def _load(url: str, pid: int | tuple[int, ...], duration: float, warmup: float) -> dict[str, float]:
    """GET ``url`` from CLIENTS tasks for ``warmup + duration`` seconds; measure the last ``duration``."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        measure_from = time.perf_counter() + warmup
        stop = measure_from + duration

        async def client() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if t0 >= measure_from:
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1

        async def server_cpu() -> float | None:
            await asyncio.sleep(warmup)
            before = cpu_seconds(pid)
            await asyncio.sleep(max(0.0, stop - time.perf_counter()))
            after = cpu_seconds(pid)
            return None if before is None or after is None else after - before

        *_, cpu = await asyncio.gather(*(client() for _ in range(CLIENTS)), server_cpu())
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / duration,
        # The actor's CPU per request: unlike req/s, barely moved by other
        # processes competing for the cores.
        "cpu_us": 1e6 * cpu / n if cpu is not None and n else float("nan"),
        "p50_ms": 1000 * latencies[n // 2] if n else float("nan"),
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else float("nan"),
        "errors": errors,
    }


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _check(url: str, expected: str) -> None:
    async def fetch() -> str:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            resp.raise_for_status()
            return await resp.text()

    got = _run(fetch())
    if got != expected:
        raise RuntimeError(f"{url} answered {got!r}, expected {expected!r}")


Target = tuple[str, "int | tuple[int, ...]"]  # (url, pids of the processes that serve it)

# The actors' handles: an anonymous actor ends when its last handle is gone.
_handles: list[Any] = []


def measure(targets: dict[str, Target], rounds: int, duration: float, warmup: float) -> dict[str, dict[str, float]]:
    """Alternate the variants for ``rounds`` rounds; give each figure's median over the rounds."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, pid) in targets.items():
            samples[name].append(_run(_load(url, pid, duration, warmup)))
    out = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in samples.items()}
    for name, rs in samples.items():
        # Other processes only ever add CPU time: the lowest round is the closest to the intrinsic cost.
        out[name]["cpu_us_best"] = min(r["cpu_us"] for r in rs)
    return out


def start_actorloop() -> dict[str, Target]:
    actorloop.init(address="local")
    counter = actorloop.remote(Counter).remote()
    _handles.append(counter)
    actorloop.get([counter.increment.remote() for _ in range(5)])
    port, pid = actorloop.get([counter.port.remote(), counter.pid.remote()])
    return {
        "builtin": (f"{counter.http_url}/", pid),
        "builtin-sync": (f"{counter.http_url}/sync", pid),
        "hand-made": (f"http://127.0.0.1:{port}/", pid),
    }


def start_ray() -> dict[str, Target] | None:
    try:
        import ray
    except ImportError:
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    counter = ray.remote(Counter).remote()
    _handles.append(counter)
    ray.get([counter.increment.remote() for _ in range(5)])
    port, pid = ray.get([counter.port.remote(), counter.pid.remote()])
    return {"ray hand-made": (f"http://127.0.0.1:{port}/", pid)}


class ServeCounter:
    """The same work as ``Counter.count``, as a Ray Serve deployment (plain class; decorated in ``start_serve``)."""

    def __init__(self) -> None:
        self.counter = 5

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse(str(self.counter))

    def pid(self) -> int:
        return os.getpid()


def start_serve() -> dict[str, Target] | None:
    """A Serve app on a free port of 127.0.0.1; None without ``ray[serve]``."""
    try:
        import psutil
        from ray import serve
    except ImportError:
        return None
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # Serve's default of 5 ongoing requests per replica would queue 27 of the 32 clients in the proxy.
    app = serve.deployment(ServeCounter, max_ongoing_requests=64).bind()
    handle = serve.run(app, name="bench_http", route_prefix="/")
    replica_pid = handle.pid.remote().result()
    proxies = [
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if any("ProxyActor" in part for part in (proc.info["cmdline"] or []))
    ]
    return {"ray serve": (f"http://127.0.0.1:{port}/", (replica_pid, *proxies))}


def stop_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        serve = sys.modules.get("ray.serve")
        if serve is not None:
            try:
                serve.shutdown()
            except Exception:  # noqa: BLE001 - the cluster goes down next anyway
                pass
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measuring rounds per variant (default 5)")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds measured per round (default 1.5)")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds of load before each round (default 0.3)")
    parser.add_argument("--quick", action="store_true", help="one round of 1 s per variant")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray variant")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.2

    # Both backends run side by side, so that every round meets the same machine.
    try:
        targets = start_actorloop()
        if not args.no_ray:
            ray_targets = start_ray()
            if ray_targets is None:
                print("ray is not installed: skipping the Ray variants", file=sys.stderr)
            else:
                targets.update(ray_targets)
                serve_targets = start_serve()
                if serve_targets is None:
                    print("ray[serve] is not installed: skipping the Ray Serve variant", file=sys.stderr)
                else:
                    targets.update(serve_targets)
        for url, _ in targets.values():
            _check(url, "5")
        results = measure(targets, args.rounds, args.duration, args.warmup)
    finally:
        _handles.clear()
        stop_ray()
        actorloop.shutdown()

    built, hand = results["builtin"], results["hand-made"]
    ratio = built["rps"] / hand["rps"]
    cpu_ratio = built["cpu_us"] / hand["cpu_us"]
    best_ratio = built["cpu_us_best"] / hand["cpu_us_best"]
    if args.json:
        summary = {
            "builtin_over_ray_serve_rps": (
                built["rps"] / results["ray serve"]["rps"] if "ray serve" in results else None
            ),
            "builtin_over_hand_made_rps": ratio,
            "builtin_over_hand_made_cpu": cpu_ratio,
            "builtin_over_hand_made_cpu_best": best_ratio,
        }
        print(json.dumps({"clients": CLIENTS, "rounds": args.rounds, "results": results, **summary}, indent=2))
        return 0
    print(f"GET, {CLIENTS} concurrent aiohttp clients, median of {args.rounds} rounds x {args.duration:g} s")
    print(f"{'variant':<16} {'req/s':>9} {'CPU/req':>10} {'best':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in results.items():
        print(
            f"{name:<16} {r['rps']:>9.0f} {r['cpu_us']:>7.1f} us {r['cpu_us_best']:>7.1f} us "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7.0f}"
        )
    if "ray serve" in results:
        serve_ratio = built["rps"] / results["ray serve"]["rps"]
        serve_verdict = "ok" if serve_ratio >= TARGET_OVER_SERVE else f"below the target {TARGET_OVER_SERVE:g}"
        print(f"req/s builtin / ray serve = {serve_ratio:.2f} ({serve_verdict})")
    verdict = "ok" if ratio >= TARGET_RATIO else f"below the target {TARGET_RATIO:.2f}"
    print(f"req/s builtin / hand-made = {ratio:.3f} ({verdict})")
    cpu_verdict = "ok" if best_ratio <= TARGET_COST else f"above the target {TARGET_COST:.2f}"
    print(
        f"actor CPU per request builtin / hand-made = {cpu_ratio:.3f} median, {best_ratio:.3f} best "
        f"(built-in costs {100 * (best_ratio - 1):+.1f}%: {cpu_verdict})"
    )
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    sys.exit(code)
