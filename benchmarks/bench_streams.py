"""Issue 12's stream benchmark: a thin wrapper over the suite (the ``stream`` workload).

One actor whose async generator method yields ``stream_n`` (100,000) small
ints: items/s through ``values()`` and through ``async for ref in gen: await
ref``, and the time from ``.remote()`` to the first item beside a plain
call's round trip on the same actor; on actorloop and, when it is
installed, on Ray's actor generator in the same run. Ray has no value
form, so its item rate (awaiting each ref) is the one both actorloop forms
are compared with. Any option of ``python -m benchmarks`` may be added
(``--quick``, ``--repeat``, ``--pin``, ...).

    python benchmarks/bench_streams.py [--quick]
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.run import run_with_defaults  # noqa: E402

DEFAULTS = ["--only", "stream", "--backends", "actorloop,ray", "--timeout", "600"]


def main(argv: list[str] | None = None) -> int:
    return run_with_defaults(DEFAULTS, "bench-streams", argv)


if __name__ == "__main__":
    raise SystemExit(main())
