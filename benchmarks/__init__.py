"""actorloop's benchmark suite: actorloop beside Ray and a bare-socket floor.

Run it with ``python -m benchmarks`` (see ``docs/benchmarks.md``). The
package keeps its top level free of imports so that the floor's server
process (``python -m benchmarks._floor_server``) starts with nothing but the
standard library and uvloop loaded.

Layout:

- ``run.py``        command line, orchestration, table, result files, chart
- ``workloads.py``  the workload and metric registry (names, units, targets)
- ``_worker.py``    one backend-run in its own subprocess
- ``raylike.py``    workloads through the Ray-style API (actorloop and Ray)
- ``floor.py``      the same workloads on two bare processes
- ``_floor_proto.py`` / ``_floor_server.py``  the floor's wire format and server
- ``_actors.py``    the actor classes the Ray-style backends run
- ``_common.py``    timing, pinning and process helpers
- ``bench_calls.py`` issue 2's call benchmark, a thin wrapper over the suite
"""
