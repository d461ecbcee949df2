"""Helpers shared by the backends: timing, CPU pinning, process memory."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

MIB = 1024 * 1024
ENV_TAG = "ACTORLOOP_BENCH_TAG"


@dataclass
class Params:
    """Sizes and durations of one run; ``quick`` shrinks them for CI."""

    duration: float = 1.0  # seconds per time-bounded loop
    gather_n: int = 10_000  # calls per gather / get([...]) round
    create_n: int = 50  # actors created at once
    create_1_samples: int = 3  # single-actor start samples
    batch_per_actor: int = 25  # calls per actor per batch (threads workload)
    settle: float = 1.0  # seconds idle before a memory reading
    big_min_calls: int = 3  # 100 MiB round trips at least
    tasks_n: int = 1_000  # remote-function calls per get([...]) round
    gather_1m_n: int = 1_000_000  # calls in the one big gather of the memory workload
    stream_n: int = 100_000  # items of one stream (stream workload)
    stream_first_samples: int = 20  # first-item and plain-call samples (stream workload)
    loop: str = "asyncio"  # event loop of the driver's async workloads
    pin: str = "none"  # same | split | none
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> Params:
        return cls(
            duration=0.5,
            gather_n=1_000,
            create_n=5,
            create_1_samples=1,
            batch_per_actor=10,
            settle=0.5,
            big_min_calls=2,
            gather_1m_n=100_000,
            stream_n=10_000,
            stream_first_samples=5,
        )


def run_async(coro: Coroutine[Any, Any, T], loop: str) -> T:
    """Run ``coro`` on a fresh loop of the requested kind."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def timed_loop(fn: Callable[[int], object], duration: float, min_iters: int = 1) -> tuple[int, float]:
    """Call ``fn(i)`` until ``duration`` elapsed; return (iterations, seconds)."""
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + duration
    while True:
        fn(n)
        n += 1
        if n >= min_iters and time.perf_counter() >= deadline:
            break
    return n, time.perf_counter() - t0


async def timed_loop_async(
    fn: Callable[[int], Awaitable[object]], duration: float, min_iters: int = 1
) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + duration
    while True:
        await fn(n)
        n += 1
        if n >= min_iters and time.perf_counter() >= deadline:
            break
    return n, time.perf_counter() - t0


# ---------------------------------------------------------------- pinning


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def driver_cpus(pin: str) -> set[int] | None:
    cpus = allowed_cpus()
    if pin in ("same", "split"):
        return {cpus[0]}
    return None


def actor_cpus(pin: str) -> set[int] | None:
    cpus = allowed_cpus_at_start()
    if pin == "same":
        return {cpus[0]}
    if pin == "split":
        return {cpus[1] if len(cpus) > 1 else cpus[0]}
    return None


_START_CPUS: list[int] = []


def allowed_cpus_at_start() -> list[int]:
    return _START_CPUS or allowed_cpus()


def pin_driver(pin: str) -> None:
    """Pin this process (before it starts any thread or child) for ``pin``."""
    _START_CPUS[:] = allowed_cpus()
    cpus = driver_cpus(pin)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def pin_process(pid: int, pin: str) -> None:
    """Pin every thread of process ``pid`` where ``pin`` puts actors."""
    cpus = actor_cpus(pin)
    if cpus is None:
        return
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


# ---------------------------------------------------------------- memory


def reset_peak_rss(pid: int) -> bool:
    """Start a new peak-RSS reading (VmHWM) of a process of ours; False where Linux cannot."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss(pid: int) -> float | None:
    """Peak RSS (VmHWM) of a process in MiB since the last ``reset_peak_rss``; None where unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_memory(pid: int) -> tuple[float, float]:
    """(RSS, USS) of one process in MiB."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return info.rss / MIB, info.uss / MIB


def tree_memory(pid: int | None = None) -> tuple[float, float, float, int]:
    """Summed (RSS, PSS, USS) in MiB of a process and all its descendants, and their count.

    RSS counts a page shared by several processes once in each of them;
    PSS shares it out between them; USS counts only the pages no other
    process maps.
    """
    import psutil

    root = psutil.Process(pid or os.getpid())
    procs = [root, *root.children(recursive=True)]
    rss = pss = uss = 0.0
    n = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += info.pss
        uss += info.uss
        n += 1
    return rss / MIB, pss / MIB, uss / MIB, n


def wait_children_gone(timeout: float) -> list[str]:
    """Wait until this process has no descendants; describe the ones left."""
    try:
        import psutil
    except ImportError:
        return []

    me = psutil.Process()
    deadline = time.monotonic() + timeout
    while True:
        kids = [k for k in me.children(recursive=True) if _alive(k)]
        if not kids or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    out = []
    for k in kids:
        try:
            out.append(f"{k.pid} {' '.join(k.cmdline())[:100]}")
        except psutil.Error:
            pass
    return out


def _alive(p: Any) -> bool:
    import psutil

    try:
        return bool(p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
