"""One backend-run: ``python -m benchmarks._worker --backend B --workloads a,b``.

Runs in its own subprocess (so Ray's and actorloop's processes never share
a driver), pins itself first when asked, starts the backend, runs the
workloads in order and reports each as one JSON line on ``--result-fd``
(stdout and stderr stay free for the backend's own logs). At the end it
shuts the backend down and reports any child process still alive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any

from benchmarks._common import Params, pin_driver, wait_children_gone


class Reporter:
    def __init__(self, fd: int) -> None:
        self.f = os.fdopen(fd, "w", buffering=1)

    def send(self, event: str, **data: Any) -> None:
        self.f.write(json.dumps({"event": event, **data}) + "\n")
        self.f.flush()


def make_backend(name: str, params: Params) -> Any:
    if name == "floor":
        from benchmarks.floor import Floor

        return Floor(params)
    from benchmarks.raylike import RayLike

    if name == "actorloop-metrics":
        return RayLike("actorloop", params, metrics=True)
    return RayLike(name, params)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", required=True)
    ap.add_argument("--workloads", required=True)
    ap.add_argument("--params", required=True, help="JSON of Params fields")
    ap.add_argument("--result-fd", type=int, required=True)
    args = ap.parse_args(argv)

    params = Params(**json.loads(args.params))
    pin_driver(params.pin)  # before any thread or child exists
    rep = Reporter(args.result_fd)
    backend = make_backend(args.backend, params)

    t0 = time.perf_counter()
    try:
        backend.init()
    except BaseException as exc:  # noqa: BLE001 - reported, then we stop
        rep.send("init", ok=False, error=_describe(exc), seconds=time.perf_counter() - t0)
        _shutdown(backend, rep)
        return 2
    rep.send(
        "init",
        ok=True,
        seconds=time.perf_counter() - t0,
        version=backend.version(),
        affinity=sorted(os.sched_getaffinity(0)),
    )

    for name in args.workloads.split(","):
        rep.send("start", workload=name)
        t1 = time.perf_counter()
        try:
            result = backend.run(name)
        except BaseException as exc:  # noqa: BLE001 - reported per workload
            rep.send("result", workload=name, error=_describe(exc), seconds=time.perf_counter() - t1)
            if isinstance(exc, KeyboardInterrupt):
                break
            continue
        info = result.pop("_info", {})
        rep.send(
            "result",
            workload=name,
            metrics=result,
            info=info,
            seconds=time.perf_counter() - t1,
        )

    _shutdown(backend, rep)
    return 0


def _shutdown(backend: Any, rep: Reporter) -> None:
    t0 = time.perf_counter()
    error = None
    try:
        backend.shutdown()
    except BaseException as exc:  # noqa: BLE001 - reported
        error = _describe(exc)
    left = wait_children_gone(15.0)
    rep.send("shutdown", seconds=time.perf_counter() - t0, error=error, leftover=left)


def _describe(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.write("".join(tb))
    sys.stderr.flush()
    return f"{type(exc).__name__}: {exc}".strip()[:500]


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: atexit hooks of a backend must not hang us.
    os._exit(code)
