"""The workloads through the Ray-style API, for actorloop and for Ray.

``import actorloop as ray`` runs Ray actor code, so one implementation
serves both backends: ``RayLike("actorloop")`` and ``RayLike("ray")``.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._actors import AsyncActor, StreamActor, SyncActor, task_f
from benchmarks._common import (
    MIB,
    Params,
    peak_rss,
    pin_process,
    process_memory,
    reset_peak_rss,
    run_async,
    timed_loop,
    timed_loop_async,
    tree_memory,
)

Result = dict[str, Any]


class RayLike:
    """One backend that speaks Ray's actor API (``actorloop`` or ``ray``)."""

    def __init__(self, module: str, params: Params, *, metrics: bool = False) -> None:
        self.name = module
        self.params = params
        self.mod: Any = None
        self._classes: dict[str, Any] = {}
        # actorloop with metrics on: its node serves the dashboard and a scraper
        # reads /metrics every second (each read collects every actor's counters).
        self.metrics = metrics
        self._scraper: threading.Thread | None = None
        self._stop_scraping = threading.Event()

    # ------------------------------------------------------------ life

    def init(self) -> None:
        self.mod = importlib.import_module(self.name)
        # "local" starts a fresh node owned by this driver on both backends.
        if not self.metrics:
            self.mod.init(address="local")
            return
        url = self.mod.init(address="local", dashboard_port=0).dashboard_url
        self._scraper = threading.Thread(target=self._scrape, args=(url + "/metrics",), daemon=True)
        self._scraper.start()

    def _scrape(self, url: str) -> None:
        import urllib.request

        while not self._stop_scraping.wait(1.0):
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    resp.read()
            except OSError:
                pass

    def shutdown(self) -> None:
        self._stop_scraping.set()
        if self._scraper is not None:
            self._scraper.join(timeout=15)
        if self.mod is not None:
            self.mod.shutdown()

    def version(self) -> str:
        mod = self.mod or importlib.import_module(self.name)
        return str(getattr(mod, "__version__", "?"))

    # ------------------------------------------------------------ helpers

    def cls(self, kind: str) -> Any:
        if kind not in self._classes:
            raw = {"sync": SyncActor, "async": AsyncActor, "stream": StreamActor}[kind]
            self._classes[kind] = self.mod.remote(raw)
        return self._classes[kind]

    def new_actor(self, kind: str = "sync") -> tuple[Any, int]:
        """Create an actor, wait for it, pin it; return (handle, pid)."""
        h = self.cls(kind).remote()
        pid = int(self.mod.get(h.getpid.remote()))
        pin_process(pid, self.params.pin)
        return h, pid

    def kill(self, handles: list[Any], pids: list[int], timeout: float = 15.0) -> None:
        """Kill actors and wait until their processes are gone."""
        import psutil

        for h in handles:
            try:
                self.mod.kill(h)
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            try:
                p = psutil.Process(pid)
                p.wait(max(0.0, deadline - time.monotonic()))
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                pass  # reported by the end-of-run process check if it lingers

    # ------------------------------------------------------------ workloads

    def run(self, workload: str) -> Result:
        fn: Callable[[], Result] = getattr(self, f"w_{workload}")
        return fn()

    def w_node_memory(self) -> Result:
        time.sleep(self.params.settle * 2)
        rss, pss, uss, n = tree_memory()
        return {"node_rss": rss, "node_pss": pss, "node_uss": uss, "_info": {"processes": n}}

    def w_idle_memory(self) -> Result:
        h, pid = self.new_actor("sync")
        time.sleep(self.params.settle)
        rss, uss = process_memory(pid)
        self.kill([h], [pid])
        return {"idle_rss": rss, "idle_uss": uss}

    def w_seq(self) -> Result:
        h, pid = self.new_actor("sync")
        get = self.mod.get
        for i in range(50):
            get(h.f.remote(i))
        n, dt = timed_loop(lambda i: get(h.f.remote(i)), self.params.duration, 10)
        self.kill([h], [pid])
        return {"seq_sync": n / dt, "_info": {"calls": n}}

    def _gather(self, kind: str) -> Result:
        h, pid = self.new_actor(kind)
        n_calls = self.params.gather_n

        async def main() -> tuple[int, float]:
            await asyncio.gather(*[h.f.remote(i) for i in range(min(1000, n_calls))])

            async def one_round(_: int) -> None:
                out = await asyncio.gather(*[h.f.remote(i) for i in range(n_calls)])
                assert out[-1] == n_calls - 1

            return await timed_loop_async(one_round, self.params.duration, 1)

        rounds, dt = run_async(main(), self.params.loop)
        self.kill([h], [pid])
        return {f"gather_{kind}": rounds * n_calls / dt, "_info": {"rounds": rounds}}

    def w_gather_async(self) -> Result:
        return self._gather("async")

    def w_gather_sync(self) -> Result:
        return self._gather("sync")

    def w_gather_1m(self) -> Result:
        import os

        import psutil

        h, pid = self.new_actor("async")
        n_calls = self.params.gather_1m_n
        me = os.getpid()

        async def main() -> None:
            await asyncio.gather(*[h.f.remote(i) for i in range(1000)])
            out = await asyncio.gather(*[h.f.remote(i) for i in range(n_calls)])
            assert len(out) == n_calls and out[-1] == n_calls - 1

        # Baselines and peaks from the kernel's VmHWM, reset just before the gather.
        base_driver = psutil.Process(me).memory_info().rss / MIB
        base_actor = psutil.Process(pid).memory_info().rss / MIB
        if not (reset_peak_rss(me) and reset_peak_rss(pid)):
            raise RuntimeError("this kernel cannot reset peak RSS (/proc/PID/clear_refs)")
        run_async(main(), self.params.loop)
        driver, actor = peak_rss(me), peak_rss(pid)
        self.kill([h], [pid])
        assert driver is not None and actor is not None
        return {
            "gather_1m_driver": driver - base_driver,
            "gather_1m_actor": actor - base_actor,
            "_info": {"calls": n_calls, "driver_base_mib": base_driver, "actor_base_mib": base_actor},
        }

    def w_get_list(self) -> Result:
        h, pid = self.new_actor("sync")
        get = self.mod.get
        n_calls = self.params.gather_n
        get([h.f.remote(i) for i in range(min(1000, n_calls))])

        def one_round(_: int) -> None:
            out = get([h.f.remote(i) for i in range(n_calls)])
            assert out[-1] == n_calls - 1

        rounds, dt = timed_loop(one_round, self.params.duration, 1)
        self.kill([h], [pid])
        return {"get_list": rounds * n_calls / dt, "_info": {"rounds": rounds}}

    def w_tasks(self) -> Result:
        # Remote functions: the backend's pool of task workers (one per CPU on both backends).
        f = self.mod.remote(task_f)
        get = self.mod.get
        n_calls = self.params.tasks_n
        for _ in range(3):  # warm-up: the pool's processes start, the function reaches each of them
            get([f.remote(i) for i in range(n_calls)])

        def one_round(_: int) -> None:
            out = get([f.remote(i) for i in range(n_calls)])
            assert out[-1] == n_calls - 1

        rounds, dt = timed_loop(one_round, self.params.duration, 1)
        return {"tasks": rounds * n_calls / dt, "_info": {"rounds": rounds}}

    def w_threads(self) -> Result:
        actors = [self.new_actor("sync") for _ in range(4)]
        hs = [a[0] for a in actors]
        get = self.mod.get
        batch = self.params.batch_per_actor
        get([h.f.remote(0) for h in hs])
        counts = [0, 0]
        errors: list[BaseException] = []
        barrier = threading.Barrier(3)
        duration = self.params.duration

        def caller(k: int) -> None:
            try:
                barrier.wait()
                deadline = time.perf_counter() + duration
                while time.perf_counter() < deadline:
                    refs = [h.f.remote(i) for h in hs for i in range(batch)]
                    get(refs)
                    counts[k] += len(refs)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        self.kill(hs, [a[1] for a in actors])
        if errors:
            raise errors[0]
        return {"threads": sum(counts) / dt}

    def w_create(self) -> Result:
        cls = self.cls("sync")
        get = self.mod.get
        samples = []
        for _ in range(self.params.create_1_samples):
            t0 = time.perf_counter()
            h = cls.remote()
            get(h.ping.remote())
            samples.append((time.perf_counter() - t0) * 1000)
            self.kill([h], [int(get(h.getpid.remote()))])
        n = self.params.create_n
        t0 = time.perf_counter()
        hs = [cls.remote() for _ in range(n)]
        get([h.ping.remote() for h in hs])
        dt = time.perf_counter() - t0
        pids = [int(p) for p in get([h.getpid.remote() for h in hs])]
        self.kill(hs, pids, timeout=30.0)
        return {
            "create_1": statistics.median(samples),
            "create_n": dt * 1000 / n,
            "_info": {"actors": n, "create_1_samples": samples},
        }

    def w_stream(self) -> Result:
        """Items/s of one stream of ``stream_n`` small items (values and refs), and the time to its first item.

        Ray has no value form: its fastest way to the items is awaiting each ref, so its
        ``stream_values`` is that same measurement.  The first item is timed from ``.remote()``
        to the value of the first item, beside a plain call's round trip on the same actor.
        """
        h, pid = self.new_actor("stream")
        n = self.params.stream_n
        samples = self.params.stream_first_samples
        values_form = self.name != "ray"

        async def by_values(count: int) -> int:
            got = 0
            if values_form:
                async for _ in h.items.remote(count).values():
                    got += 1
            else:
                async for ref in h.items.remote(count):
                    await ref
                    got += 1
            return got

        async def by_refs(count: int) -> int:
            got = 0
            async for ref in h.items.remote(count):
                await ref
                got += 1
            return got

        async def main() -> dict[str, float]:
            await by_values(min(n, 1000))  # warm-up: connections, the actor's first stream
            await by_refs(min(n, 1000))
            t0 = time.perf_counter()
            assert await by_values(n) == n
            values_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            assert await by_refs(n) == n
            refs_s = time.perf_counter() - t0
            first: list[float] = []
            plain: list[float] = []
            for _ in range(samples):  # interleaved, so that both see the same noise
                t0 = time.perf_counter()
                gen = h.items.remote(1)
                await (await gen.__anext__())
                first.append(time.perf_counter() - t0)
                async for _ in gen:  # let it end before the next sample
                    pass
                t0 = time.perf_counter()
                await h.ping.remote()
                plain.append(time.perf_counter() - t0)
            return {
                "stream_values": n / values_s,
                "stream_refs": n / refs_s,
                "stream_first": statistics.median(first) * 1000,
                "stream_call": statistics.median(plain) * 1000,
            }

        out = run_async(main(), self.params.loop)
        self.kill([h], [pid])
        result: Result = dict(out)
        result["stream_first_x_call"] = out["stream_first"] / out["stream_call"]
        result["_info"] = {"items": n, "samples": samples, "values_form": values_form}
        return result

    def w_arg_1mib(self) -> Result:
        import numpy as np

        h, pid = self.new_actor("sync")
        get = self.mod.get
        arr = np.ones(MIB // 8)
        for _ in range(20):
            assert get(h.nbytes.remote(arr)) == arr.nbytes
        n, dt = timed_loop(lambda _: get(h.nbytes.remote(arr)), self.params.duration, 10)
        self.kill([h], [pid])
        return {"arg_1mib": n * arr.nbytes / dt / 1e6, "_info": {"calls": n}}

    def w_arg_100mib(self) -> Result:
        import numpy as np

        h, pid = self.new_actor("sync")
        get = self.mod.get
        arr = np.ones(100 * MIB // 8)
        for _ in range(2):
            out = get(h.echo.remote(arr))
            assert out.nbytes == arr.nbytes and out[-1] == 1.0
        info: dict[str, Any] = {
            "result_writeable": bool(out.flags.writeable),
            "result_owndata": bool(out.flags.owndata),
        }
        del out

        def one(_: int) -> None:
            res = get(h.echo.remote(arr))
            assert res.nbytes == arr.nbytes

        n, dt = timed_loop(one, self.params.duration, self.params.big_min_calls)
        self.kill([h], [pid])
        info["calls"] = n
        return {"arg_100mib": 2 * n * arr.nbytes / dt / 1e6, "_info": info}

    def w_put_10(self) -> Result:
        """``put`` a 100 MiB array, pass the ref to 10 calls (over 2 actors) that read every page of it."""
        import numpy as np

        actors = [self.new_actor("sync") for _ in range(2)]
        handles = [h for h, _ in actors]
        get, put = self.mod.get, self.mod.put
        arr = np.ones(100 * MIB // 8)
        expected = float(arr[::512].sum())

        def one(_: int) -> None:
            ref = put(arr)
            out = get([handles[i % 2].touch.remote(ref) for i in range(10)])
            assert out == [expected] * 10

        for _ in range(2):
            one(0)
        n, dt = timed_loop(one, self.params.duration, self.params.big_min_calls)
        self.kill(handles, [pid for _, pid in actors])
        return {"put_10": dt * 1000 / n, "_info": {"rounds": n}}
