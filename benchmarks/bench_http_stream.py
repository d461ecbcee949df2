"""Streaming over HTTP into one actor: chunked items/s, time to first item, WebSocket round trips/s.

Variants, each served by one actor process:

- ``builtin``: an ``@actorloop.http.get`` async generator route, and an
  ``@actorloop.http.websocket`` route (issue 12);
- ``builtin-sync``: the same with a sync generator, which runs on a worker
  thread and hands each item to the loop (its WebSocket is ``builtin``'s);
- ``hand-made``: aiohttp's own ``StreamResponse`` and ``WebSocketResponse``
  in a server the same actor starts in its async ``__init__`` (Ray's pattern,
  the floor for what the built-in routes add);
- ``ray hand-made``: the same hand-made server in a Ray actor, when
  ``import ray`` works.

Figures, from one aiohttp client in this process:

- ``items/s``: one GET streaming ``ITEMS`` small text items (16 bytes), read
  to the end; the actor's CPU time per item beside it;
- ``first ms``: a GET whose stream yields one item, request to first byte
  of the body, median over ``FIRSTS`` sequential requests;
- ``ws rt/s``: sequential echo round trips on one WebSocket.

Rounds alternate between variants; the table gives medians over rounds.

Run::

    python benchmarks/bench_http_stream.py              # 5 rounds
    python benchmarks/bench_http_stream.py --quick      # 1 round, smaller
    python benchmarks/bench_http_stream.py --no-ray
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
from aiohttp import web

import actorloop

ITEMS = 20_000
FIRSTS = 200
ROUND_TRIPS = 2_000
ITEM = "0123456789abcde\n"  # 16 bytes


class Streamer:
    """Both servers in one class: Ray sees the route decorators as plain attributes."""

    async def __init__(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/stream", self.hand_stream), web.get("/ws", self.hand_ws)])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()

    async def hand_stream(self, request: web.Request) -> web.StreamResponse:
        n = int(request.query["n"])
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        for _ in range(n):
            await resp.write(ITEM.encode())
        await resp.write_eof()
        return resp

    async def hand_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    async def port(self) -> int:
        return int(self.runner.addresses[0][1])

    async def pid(self) -> int:
        return os.getpid()

    @actorloop.http.get("/stream")
    async def stream(self, request: web.Request) -> AsyncIterator[str]:
        for _ in range(int(request.query["n"])):
            yield ITEM

    @actorloop.http.get("/stream-sync")
    def stream_sync(self, request: web.Request) -> Iterator[str]:
        for _ in range(int(request.query["n"])):
            yield ITEM

    @actorloop.http.websocket("/ws")
    async def echo(self, ws: Any) -> None:
        async for message in ws:
            await ws.send_text(message)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux ``/proc``; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _round(target: Target, items: int, firsts: int, round_trips: int) -> dict[str, float]:
    base, stream, pid = target
    out: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        async with session.get(f"{base}{stream}?n={items}") as resp:
            body = await resp.read()
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(pid)
        if len(body) != items * len(ITEM):
            raise RuntimeError(f"{base}{stream} sent {len(body)} bytes, expected {items * len(ITEM)}")
        out["items_s"] = items / elapsed
        out["cpu_us_item"] = 1e6 * (cpu1 - cpu0) / items if cpu0 is not None and cpu1 is not None else float("nan")

        firsts_ms = []
        for _ in range(firsts):
            t0 = time.perf_counter()
            async with session.get(f"{base}{stream}?n=1") as resp:
                await resp.content.readany()
                firsts_ms.append(1000 * (time.perf_counter() - t0))
                await resp.read()
        out["first_ms"] = statistics.median(firsts_ms)

        async with session.ws_connect(f"{base}/ws") as ws:
            t0 = time.perf_counter()
            for _ in range(round_trips):
                await ws.send_str("ping")
                await ws.receive_str()
            out["ws_rt_s"] = round_trips / (time.perf_counter() - t0)
    return out


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


Target = tuple[str, str, int]  # (base url, stream path, pid of the serving process)
_handles: list[Any] = []


def start_actorloop() -> dict[str, Target]:
    actorloop.init(address="local")
    actor = actorloop.remote(Streamer).remote()
    _handles.append(actor)
    port, pid = actorloop.get([actor.port.remote(), actor.pid.remote()])
    return {
        "builtin": (str(actor.http_url), "/stream", pid),
        "builtin-sync": (str(actor.http_url), "/stream-sync", pid),
        "hand-made": (f"http://127.0.0.1:{port}", "/stream", pid),
    }


def start_ray() -> dict[str, Target] | None:
    try:
        import ray
    except ImportError:
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actor = ray.remote(Streamer).remote()
    _handles.append(actor)
    port, pid = ray.get([actor.port.remote(), actor.pid.remote()])
    return {"ray hand-made": (f"http://127.0.0.1:{port}", "/stream", pid)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="one round, a quarter of the work")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray variant")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    rounds, scale = (1, 4) if args.quick else (args.rounds, 1)

    started = time.perf_counter()
    targets = start_actorloop()
    try:
        if not args.no_ray:
            targets.update(start_ray() or {})
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, target in targets.items():
                samples[name].append(_run(_round(target, ITEMS // scale, FIRSTS // scale, ROUND_TRIPS // scale)))
    finally:
        _handles.clear()
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        actorloop.shutdown()
    results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in samples.items()}

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"streaming over HTTP, one client, median of {rounds} round(s)")
    print(f"{'variant':<15} {'items/s':>9} {'CPU/item':>10} {'first ms':>9} {'ws rt/s':>8}")
    for name, r in results.items():
        print(f"{name:<15} {r['items_s']:>9.0f} {r['cpu_us_item']:>8.2f}us {r['first_ms']:>9.2f} {r['ws_rt_s']:>8.0f}")
    for other in ("hand-made", "ray hand-made"):
        if other in results:
            b, o = results["builtin"], results[other]
            print(
                f"builtin / {other}: items/s {b['items_s'] / o['items_s']:.2f}x, "
                f"first item {b['first_ms'] / o['first_ms']:.2f}x the time, "
                f"ws round trips/s {b['ws_rt_s'] / o['ws_rt_s']:.2f}x"
            )
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
