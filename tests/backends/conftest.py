"""The ``backend`` fixture: each test here runs on the local node and on Ray (issue 15).

One embedded node, or one local Ray instance (``num_cpus=2``, its own temp
directory, no dashboard), per test module and backend: pytest groups a
module's tests by the fixture's parameter, so each module starts Ray once.
Ray is skipped where it is not installed (``pip install -e '.[test]'``
installs it).
"""

from __future__ import annotations

import builtins
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

BACKENDS = ["local", "ray"]


def start_ray(module_name: str) -> str:
    """Start Ray for this process through actorloop; returns Ray's temp directory (removed by ``stop_ray``)."""
    ray = pytest.importorskip("ray")
    import actorloop

    # Ray ships test modules' classes by value, as conftest.py does for the local node
    # (Ray's workers cannot import the test package).
    module = sys.modules.get(module_name)
    if module is not None:
        ray.cloudpickle.register_pickle_by_value(module)
    # A short private path: Ray's socket paths must stay under the Unix limit, and other
    # users of this machine may run their own Ray in /tmp/ray.
    temp_dir = tempfile.mkdtemp(prefix="alray-", dir="/tmp")
    actorloop.init(
        backend="ray",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
    )
    return temp_dir


def stop_ray(temp_dir: str) -> None:
    import actorloop

    actorloop.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend name ("local" or "ray"), with actorloop initialised on it for this module."""
    import actorloop

    actorloop.shutdown()
    if request.param == "local":
        actorloop.init(address="local")
        yield "local"
        actorloop.shutdown()
        return
    # ray.init() replaces builtins.print with a Python wrapper (its tqdm support) and leaves it there:
    # put the real one back, so that later test modules see the interpreter as it was.
    real_print = builtins.print
    temp_dir = start_ray(request.module.__name__)
    try:
        yield "ray"
    finally:
        stop_ray(temp_dir)
        builtins.print = real_print


def only_local(backend: str, why: str) -> None:
    """Skip on Ray with a reason that names the documented difference (docs/ray_backend.md)."""
    if backend != "local":
        pytest.skip(f"differs on Ray: {why}")


def on_ray_xfail(backend: str, why: str) -> None:
    if backend == "ray":
        pytest.xfail(f"differs on Ray (docs/ray_backend.md): {why}")
