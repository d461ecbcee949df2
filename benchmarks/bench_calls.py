"""Issue 2's call benchmark: a thin wrapper over the suite.

Runs, on one actor, sequential ``get(a.f.remote(i))``, ``asyncio.gather``
of 10,000 calls to an async and to a sync actor, and the time to create
20 actors and get one reply from each; on actorloop and, when it is
installed, on Ray in the same run, and prints the ratios. Any option of
``python -m benchmarks`` may be added (``--quick``, ``--repeat``, ``--pin``, ...).

    python benchmarks/bench_calls.py [--quick]
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.run import run_with_defaults  # noqa: E402

DEFAULTS = ["--only", "seq,gather_async,gather_sync,create", "--backends", "actorloop,ray", "--actors", "20"]


def main(argv: list[str] | None = None) -> int:
    return run_with_defaults(DEFAULTS, "bench-calls", argv)


if __name__ == "__main__":
    raise SystemExit(main())
