"""``python -m benchmarks``: see ``benchmarks/run.py`` and ``docs/benchmarks.md``."""

from benchmarks.run import main

raise SystemExit(main())
