"""The floor: the same workloads on two bare processes over a Unix socket.

The "actor" is ``python -m benchmarks._floor_server`` (a fresh interpreter
with the standard library and uvloop), or, for the start-up workload, a
plain ``os.fork()`` of the driver serving one end of a socketpair. Sync
callers use a blocking socket of their own; async callers an
``asyncio.Protocol`` on uvloop that hands ``gather`` real futures and flushes
once per loop turn. See ``_floor_proto`` for the wire format.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    MIB,
    Params,
    pin_process,
    process_memory,
    run_async,
    timed_loop,
    timed_loop_async,
    tree_memory,
)
from benchmarks._floor_proto import AsyncClient, SyncClient, serve_socket

Result = dict[str, Any]


class FloorServer:
    """One fresh server process listening on a socket path."""

    def __init__(self, path: str, pin: str) -> None:
        self.path = path
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._floor_server", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"floor server did not start: {line!r}")
        pin_process(self.proc.pid, pin)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the server exits by itself
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Floor:
    """The floor backend."""

    name = "floor"

    def __init__(self, params: Params) -> None:
        self.params = params
        self.dir = ""
        self.count = 0
        self.forked: list[socket.socket] = []  # parent ends a forked child must close

    def init(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-floor-")

    def shutdown(self) -> None:
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def version(self) -> str:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        return f"uvloop {uvloop.__version__}"

    def server(self) -> FloorServer:
        self.count += 1
        return FloorServer(os.path.join(self.dir, f"s{self.count}.sock"), self.params.pin)

    def run(self, workload: str) -> Result:
        fn: Callable[[], Result] = getattr(self, f"w_{workload}")
        return fn()

    # ------------------------------------------------------------ workloads

    def w_node_memory(self) -> Result:
        # There is no node: the floor's overhead is the driver alone.
        time.sleep(self.params.settle * 2)
        rss, pss, uss, n = tree_memory()
        return {"node_rss": rss, "node_pss": pss, "node_uss": uss, "_info": {"processes": n}}

    def w_idle_memory(self) -> Result:
        srv = self.server()
        c = SyncClient.connect(srv.path)
        assert c.call("getpid") == srv.pid
        time.sleep(self.params.settle)
        rss, uss = process_memory(srv.pid)
        c.close()
        srv.stop()
        return {"idle_rss": rss, "idle_uss": uss}

    def w_seq(self) -> Result:
        srv = self.server()
        c = SyncClient.connect(srv.path)
        for i in range(50):
            c.call("f", i)
        n, dt = timed_loop(lambda i: c.call("f", i), self.params.duration, 10)
        c.close()
        srv.stop()
        return {"seq_sync": n / dt, "_info": {"calls": n}}

    def _gather(self, kind: str) -> Result:
        srv = self.server()
        method = "af" if kind == "async" else "f"
        n_calls = self.params.gather_n

        async def main() -> tuple[int, float]:
            c = await AsyncClient.connect(srv.path)
            await asyncio.gather(*[c.call(method, i) for i in range(min(1000, n_calls))])

            async def one_round(_: int) -> None:
                out = await asyncio.gather(*[c.call(method, i) for i in range(n_calls)])
                assert out[-1] == n_calls - 1

            try:
                return await timed_loop_async(one_round, self.params.duration, 1)
            finally:
                c.close()

        rounds, dt = run_async(main(), self.params.loop)
        srv.stop()
        return {f"gather_{kind}": rounds * n_calls / dt, "_info": {"rounds": rounds}}

    def w_gather_async(self) -> Result:
        return self._gather("async")

    def w_gather_sync(self) -> Result:
        return self._gather("sync")

    def w_get_list(self) -> Result:
        srv = self.server()
        c = SyncClient.connect(srv.path)
        n_calls = self.params.gather_n

        def one_round(_: int) -> None:
            c.send_many("f", [(i,) for i in range(n_calls)])
            out = [c.read_reply() for _ in range(n_calls)]
            assert out[-1] == n_calls - 1

        one_round(0)
        rounds, dt = timed_loop(one_round, self.params.duration, 1)
        c.close()
        srv.stop()
        return {"get_list": rounds * n_calls / dt, "_info": {"rounds": rounds}}

    def w_stream(self) -> Result:
        # The floor's wire format has one reply per request: no stream to compare with.
        return {"_info": {"skipped": "the floor has no streams; the stream workload compares actorloop with Ray"}}

    def w_tasks(self) -> Result:
        # No task pool: one server per CPU, the calls of a round split evenly over them.
        servers = [self.server() for _ in os.sched_getaffinity(0)]
        clients = [SyncClient.connect(srv.path) for srv in servers]
        n_calls = self.params.tasks_n

        def one_round(_: int) -> None:
            share = [list(range(k, n_calls, len(clients))) for k in range(len(clients))]
            for c, xs in zip(clients, share, strict=True):
                c.send_many("f", [(i,) for i in xs])
            out = [c.read_reply() for c, xs in zip(clients, share, strict=True) for _ in xs]
            assert len(out) == n_calls

        one_round(0)
        rounds, dt = timed_loop(one_round, self.params.duration, 1)
        for c in clients:
            c.close()
        for srv in servers:
            srv.stop()
        return {"tasks": rounds * n_calls / dt, "_info": {"rounds": rounds}}

    def w_threads(self) -> Result:
        servers = [self.server() for _ in range(4)]
        batch = self.params.batch_per_actor
        duration = self.params.duration
        counts = [0, 0]
        errors: list[BaseException] = []
        barrier = threading.Barrier(3)

        def caller(k: int) -> None:
            clients = [SyncClient.connect(s.path) for s in servers]
            try:
                for c in clients:
                    c.call("f", 0)
                barrier.wait()
                deadline = time.perf_counter() + duration
                args = [(i,) for i in range(batch)]
                while time.perf_counter() < deadline:
                    for c in clients:
                        c.send_many("f", args)
                    for c in clients:
                        for _ in range(batch):
                            c.read_reply()
                    counts[k] += batch * len(clients)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
                barrier.abort()
            finally:
                for c in clients:
                    c.close()

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        for s in servers:
            s.stop()
        if errors:
            raise errors[0]
        return {"threads": sum(counts) / dt}

    def _fork_actor(self) -> tuple[int, SyncClient]:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the child: serve until the parent closes its end
            code = 0
            try:
                parent.close()
                for s in self.forked:
                    s.close()
                serve_socket(child)
            except BaseException:  # noqa: BLE001 - a child must never return
                code = 1
            finally:
                os._exit(code)
        child.close()
        self.forked.append(parent)
        return pid, SyncClient(parent)

    def w_create(self) -> Result:
        samples = []
        for _ in range(self.params.create_1_samples):
            t0 = time.perf_counter()
            pid, c = self._fork_actor()
            c.call("ping")
            samples.append((time.perf_counter() - t0) * 1000)
            c.close()
            self.forked.clear()
            os.waitpid(pid, 0)
        n = self.params.create_n
        t0 = time.perf_counter()
        actors = [self._fork_actor() for _ in range(n)]
        for _, c in actors:
            c.send("ping")
        for _, c in actors:
            c.read_reply()
        dt = time.perf_counter() - t0
        for _pid, c in actors:
            c.close()
        self.forked.clear()
        for pid, _ in actors:
            os.waitpid(pid, 0)
        return {
            "create_1": statistics.median(samples),
            "create_n": dt * 1000 / n,
            "_info": {"actors": n, "create_1_samples": samples},
        }

    def w_arg_1mib(self) -> Result:
        import numpy as np

        srv = self.server()
        c = SyncClient.connect(srv.path)
        arr = np.ones(MIB // 8)
        for _ in range(20):
            assert c.call("nbytes", arr) == arr.nbytes
        n, dt = timed_loop(lambda _: c.call("nbytes", arr), self.params.duration, 10)
        c.close()
        srv.stop()
        return {"arg_1mib": n * arr.nbytes / dt / 1e6, "_info": {"calls": n}}

    def w_arg_100mib(self) -> Result:
        import numpy as np

        srv = self.server()
        c = SyncClient.connect(srv.path)
        arr = np.ones(100 * MIB // 8)
        for _ in range(2):
            out = c.call("echo", arr)
            assert out.nbytes == arr.nbytes and out[-1] == 1.0
        info: dict[str, Any] = {
            "result_writeable": bool(out.flags.writeable),
            "result_owndata": bool(out.flags.owndata),
        }
        del out

        def one(_: int) -> None:
            res = c.call("echo", arr)
            assert res.nbytes == arr.nbytes

        n, dt = timed_loop(one, self.params.duration, self.params.big_min_calls)
        c.close()
        srv.stop()
        info["calls"] = n
        dst = np.empty_like(arr)
        best = float("inf")
        for _ in range(4):  # the first copy also faults the destination's pages in
            t0 = time.perf_counter()
            np.copyto(dst, arr)
            best = min(best, time.perf_counter() - t0)
        info["memcpy_mbps"] = arr.nbytes / best / 1e6
        return {"arg_100mib": 2 * n * arr.nbytes / dt / 1e6, "_info": info}

    def w_put_10(self) -> Result:
        """No object store: the 100 MiB array travels with each of the 10 calls (2 servers, 5 each)."""
        import numpy as np

        servers = [self.server() for _ in range(2)]
        clients = [SyncClient.connect(srv.path) for srv in servers]
        arr = np.ones(100 * MIB // 8)
        expected = float(arr[::512].sum())

        def one(_: int) -> None:
            out = [clients[i % 2].call("touch", arr) for i in range(10)]
            assert out == [expected] * 10

        one(0)
        n, dt = timed_loop(one, self.params.duration, self.params.big_min_calls)
        for c in clients:
            c.close()
        for srv in servers:
            srv.stop()
        return {"put_10": dt * 1000 / n, "_info": {"rounds": n}}
