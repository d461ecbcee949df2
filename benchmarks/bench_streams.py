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

from benchmarks.run import main as suite_main  # noqa: E402

DEFAULTS = ["--only", "stream", "--backends", "actorloop,ray", "--timeout", "600"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    extra: list[str] = []
    for i in range(0, len(DEFAULTS), 2):
        if DEFAULTS[i] not in given:
            extra += DEFAULTS[i : i + 2]
    return suite_main(extra + args + (["--name", "bench-streams"] if "--name" not in given else []))


if __name__ == "__main__":
    raise SystemExit(main())
