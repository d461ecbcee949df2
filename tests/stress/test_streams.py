"""Streams under churn: many at once, stopped at random moments in every way a consumer can stop one.

Each round starts streams with random windows and lengths on an actor whose
generator methods count themselves while they run, and ends each stream in
a random way: consumed to the end, a `break` (the generator dropped),
`actorloop.cancel(gen)`, or a cancelled consuming task; sync generators on
a threaded actor likewise. Afterwards no generator is left running in the
actors, every group slot is free (a plain call of the one-slot group is
answered), each complete stream had every item in order, and the caller's
bookkeeping is back to zero.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest

import actorloop

from ._common import rss_mib, scaled

pytestmark = pytest.mark.usefixtures("node")

ROUNDS = scaled(4, 20)
STREAMS_PER_ROUND = scaled(100, 300)


@actorloop.remote(concurrency_groups={"few": 3})
class Producer:
    def __init__(self) -> None:
        self.live = 0

    @actorloop.method(concurrency_group="few")
    async def numbers(self, n: int):
        self.live += 1
        try:
            for i in range(n):
                if i % 7 == 0:
                    await asyncio.sleep(0)
                yield i
        finally:
            self.live -= 1

    @actorloop.method(concurrency_group="few")
    async def plain(self) -> str:
        return "slot free"

    async def live_count(self) -> int:
        return self.live

    async def pid(self) -> int:
        return os.getpid()


@actorloop.remote(max_concurrency=4)
class SyncProducer:
    def __init__(self) -> None:
        self.live = 0

    def numbers(self, n: int):
        self.live += 1
        try:
            yield from range(n)
        finally:
            self.live -= 1

    def live_count(self) -> int:
        return self.live

    def ping(self) -> str:
        return "pong"


async def _one(rng: random.Random, gen: Any, n: int) -> str:
    mode = rng.choice(["full", "break", "cancel", "task"])
    stop_at = rng.randint(0, n + 5)
    if mode == "task":

        async def consume() -> None:
            async for _ in gen.values():
                await asyncio.sleep(0)

        task = asyncio.ensure_future(consume())
        for _ in range(rng.randint(0, 20)):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return mode
    got = []
    async for v in gen.values():
        got.append(v)
        if mode != "full" and len(got) >= stop_at:
            if mode == "cancel":
                actorloop.cancel(gen)
            break
    if mode == "full":
        assert got == list(range(n))
    return mode


def _wait_none_live(handle: Any) -> int:
    """Generators still running in the actor, once they had every chance to end (round trips, not sleeps)."""
    for _ in range(1000):
        live = int(actorloop.get(handle.live_count.remote()))
        if live == 0:
            break
    return live


def test_streams_stopped_at_random_leave_nothing_running(report: Any) -> None:
    seed = int(os.environ.get("ACTORLOOP_STRESS_SEED", random.randrange(1 << 30)))
    print(f"ACTORLOOP_STRESS_SEED={seed}")
    rng = random.Random(seed)
    producer = Producer.remote()
    sync_producer = SyncProducer.remote()
    pid = actorloop.get(producer.pid.remote())
    modes: dict[str, int] = {}
    rss_before = 0.0

    async def round_() -> None:
        jobs = []
        for _ in range(STREAMS_PER_ROUND):
            n = rng.randint(0, 400)
            window = rng.choice([1, 2, 8, 128, -1])
            target = producer if rng.random() < 0.8 else sync_producer
            gen = target.numbers.options(_generator_backpressure_num_objects=window).remote(n)
            jobs.append(_one(rng, gen, n))
        for mode in await asyncio.wait_for(asyncio.gather(*jobs), 300):
            modes[mode] = modes.get(mode, 0) + 1

    for r in range(ROUNDS):
        asyncio.run(round_())
        assert actorloop.get(producer.plain.remote(), timeout=60) == "slot free"
        assert actorloop.get(sync_producer.ping.remote(), timeout=60) == "pong"
        if r == 0:
            rss_before = rss_mib(pid)
    assert _wait_none_live(producer) == 0, "async generators still running in the actor"
    assert _wait_none_live(sync_producer) == 0, "sync generators still running in the actor"
    for handle in (producer, sync_producer):
        assert handle._runtime_state.pending == 0, "the caller still counts calls in flight"
    growth = rss_mib(pid) - rss_before
    report("seed (ACTORLOOP_STRESS_SEED)", seed)
    report("streams started, by how they ended", dict(sorted(modes.items())))
    report("actor RSS growth after the first round (MiB)", round(growth, 1))
    assert growth < 64
