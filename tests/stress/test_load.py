"""Load: 8 actors (sync and async) called at once by 4 threads and an asyncio task group.

Every call carries a unique token; the actor records each token it ran and
answers with it.  Nothing may be lost, duplicated or answered by the wrong
actor, and a sync actor runs each caller's calls in the order submitted.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter

import pytest
from node._helpers import wait_until

import actorloop

from ._common import scaled

pytestmark = pytest.mark.usefixtures("node")

THREADS = 4
TASKS = 8
PER_THREAD = scaled(5_000, 50_000)
PER_TASK = scaled(2_500, 25_000)
BATCH = 250
#: A token is source * SOURCE_STRIDE + sequence number.
SOURCE_STRIDE = 10_000_000


@actorloop.remote
class SyncEcho:
    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.seen: list[int] = []

    def echo(self, token: int) -> tuple[int, int]:
        self.seen.append(token)
        return token, self.tag

    def log(self) -> tuple[int, list[int]]:
        return os.getpid(), self.seen


@actorloop.remote
class Busy:
    async def hog(self, t: float, started: str) -> None:
        open(started, "w").close()  # tells the test the loop is blocked from now on
        time.sleep(t)  # blocks the actor's loop: nobody is accepted meanwhile

    async def echo(self, x: int) -> int:
        return x


@actorloop.remote
class AsyncEcho:
    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.seen: list[int] = []

    async def echo(self, token: int) -> tuple[int, int]:
        self.seen.append(token)
        if token % 7 == 0:
            await asyncio.sleep(0)  # some calls suspend, so calls interleave on the loop
        return token, self.tag

    async def log(self) -> tuple[int, list[int]]:
        return os.getpid(), self.seen


def test_load_threads_and_task_group(report) -> None:  # type: ignore[no-untyped-def]
    actors = [SyncEcho.remote(i) if i % 2 == 0 else AsyncEcho.remote(i) for i in range(8)]
    actorloop.get([a.ready() for a in actors], timeout=30)
    errors: list[BaseException] = []
    sent: dict[int, list[int]] = {i: [] for i in range(8)}
    sent_lock = threading.Lock()

    def check(batch: list[tuple[int, int]], values: list[tuple[int, int]]) -> None:
        assert values == [(token, tag) for token, tag in batch]

    def thread_main(source: int) -> None:
        try:
            mine: dict[int, list[int]] = {i: [] for i in range(8)}
            for start in range(0, PER_THREAD, BATCH):
                batch = []
                refs = []
                for seq in range(start, min(start + BATCH, PER_THREAD)):
                    token = source * SOURCE_STRIDE + seq
                    tag = (seq + source) % 8
                    batch.append((token, tag))
                    mine[tag].append(token)
                    refs.append(actors[tag].echo.remote(token))
                if start % (4 * BATCH) == 0:
                    values = [actorloop.get(r, timeout=60) for r in refs]  # one at a time, too
                else:
                    values = actorloop.get(refs, timeout=60)
                check(batch, values)
            with sent_lock:
                for tag, tokens in mine.items():
                    sent[tag].extend(tokens)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    async def task_main(source: int) -> None:
        mine: dict[int, list[int]] = {i: [] for i in range(8)}
        for start in range(0, PER_TASK, BATCH):
            batch = []
            refs = []
            for seq in range(start, min(start + BATCH, PER_TASK)):
                token = source * SOURCE_STRIDE + seq
                tag = (seq * 3 + source) % 8
                batch.append((token, tag))
                mine[tag].append(token)
                refs.append(actors[tag].echo.remote(token))
            values = await asyncio.wait_for(asyncio.gather(*refs), 60)
            check(batch, list(values))
        with sent_lock:
            for tag, tokens in mine.items():
                sent[tag].extend(tokens)

    async def async_main() -> None:
        async with asyncio.TaskGroup() as group:
            for t in range(TASKS):
                group.create_task(task_main(100 + t))

    t0 = time.monotonic()
    threads = [threading.Thread(target=thread_main, args=(s,), name=f"caller-{s}") for s in range(THREADS)]
    for thread in threads:
        thread.start()
    asyncio.run(async_main())
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a calling thread hung"
    elapsed = time.monotonic() - t0
    if errors:
        raise errors[0]

    total = THREADS * PER_THREAD + TASKS * PER_TASK
    assert sum(len(v) for v in sent.values()) == total
    logs = actorloop.get([a.log.remote() for a in actors], timeout=60)
    ran = 0
    for tag, (_, seen) in enumerate(logs):
        counts = Counter(seen)
        duplicated = [token for token, n in counts.items() if n > 1]
        assert not duplicated, f"actor {tag} ran {len(duplicated)} calls twice, e.g. {duplicated[:5]}"
        assert set(seen) == set(sent[tag]), (
            f"actor {tag}: {len(set(sent[tag]) - set(seen))} calls lost, {len(set(seen) - set(sent[tag]))} unexpected"
        )
        ran += len(seen)
        if tag % 2 == 0:
            # A sync actor runs each caller's calls in the order that caller submitted them.
            by_source: dict[int, list[int]] = {}
            for token in seen:
                by_source.setdefault(token // SOURCE_STRIDE, []).append(token)
            for source, tokens in by_source.items():
                assert tokens == sorted(tokens), f"actor {tag} ran the calls of source {source} out of order"
    assert ran == total
    assert len({pid for pid, _ in logs}) == 8
    report("calls, each checked (8 actors, 4 threads + 8 asyncio tasks)", total)
    report("calls/s under mixed load", round(total / elapsed))
    for a in actors:
        actorloop.kill(a)


def test_connection_burst_to_a_busy_actor(report, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Hundreds of event loops connect to one actor while its loop is blocked, so the listen backlog
    overflows (EAGAIN): every call must still be answered once the actor is free again."""
    n = scaled(300, 1_000)
    busy = Busy.remote()
    actorloop.get(busy.echo.remote(0), timeout=30)
    started = tmp_path / "hog-started"
    hog = busy.hog.remote(1.0, str(started))
    assert wait_until(started.exists, timeout=30)
    barrier = threading.Barrier(n)
    results: dict[int, object] = {}

    def one(i: int) -> None:
        async def main() -> int:
            barrier.wait()
            return await asyncio.wait_for(busy.echo.remote(i), 30)

        try:
            results[i] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    took = time.monotonic() - t0
    wrong = {i: r for i, r in results.items() if r != i}
    assert len(results) == n and not wrong, f"{len(wrong)} of {n} calls failed, e.g. {list(wrong.values())[:3]}"
    actorloop.get(hog, timeout=10)
    report("event loops connecting at once to a blocked actor, all answered", n)
    report("seconds for all of them", round(took, 2))
    actorloop.kill(busy)
