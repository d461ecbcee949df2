"""File descriptor limits (issue 10): raised in node, zygote, actors and driver; named when reached.

The node keeps about three descriptors per actor, so under the common soft
limit of 1,024 ``.remote()`` failed with EMFILE near 335 actors.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest

from actorloop._fds import MAX_FD_LIMIT, describe_fd_limit, out_of_fds_error, raise_fd_limit

from ._helpers import ACTORLOOP, PY, env_for, write_script
from .conftest import Daemon

ACTORS = 400

DRIVER = f"""
import json, os, resource, sys

# The common default: a soft limit of 1,024 (the hard one stays as it is).
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

import actorloop


@actorloop.remote
class Idle:
    def limit(self):
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def ping(self, i):
        return i


actorloop.init(address="local")
driver_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
actors = [Idle.remote() for _ in range({ACTORS})]
answers = actorloop.get([a.ping.remote(i) for i, a in enumerate(actors)], timeout=600)
assert answers == list(range({ACTORS})), answers
rt = actorloop._runtime.get_runtime()
node_pid = rt.embedded_node.proc.pid
with open(f"/proc/{{node_pid}}/limits") as f:
    node_line = [line for line in f if line.startswith("Max open files")][0]
print(json.dumps({{
    "driver": driver_limit,
    "actor": actorloop.get(actors[-1].limit.remote(), timeout=60),
    "node": int(node_line.split()[3]),
    "node_fds": len(os.listdir(f"/proc/{{node_pid}}/fd")),
    "alive": sum(1 for a in actorloop.list_actors() if a.state == "ALIVE"),
}}))
actorloop.shutdown()
"""


def _expected_soft() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return MAX_FD_LIMIT if hard == resource.RLIM_INFINITY else min(hard, MAX_FD_LIMIT)


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4 * ACTORS,
    reason="the hard descriptor limit is too low for this many actors",
)
def test_hundreds_of_actors_under_a_soft_limit_of_1024(tmp_path: Path) -> None:
    script = write_script(tmp_path, "driver.py", DRIVER)
    result = subprocess.run(
        [PY, str(script)], env=env_for(), capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    want = _expected_soft()
    assert seen["alive"] == ACTORS
    # Every process raised its soft limit (the actors through the zygote they are forked from).
    assert (seen["driver"], seen["node"], seen["actor"]) == (want, want, want)
    # About three descriptors per actor in the node (two log pipes, one connection): more than
    # the old soft limit of 1,024 allowed.
    assert seen["node_fds"] > 1024


def test_raise_fd_limit_raises_toward_the_hard_limit_and_never_lowers() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, before[1]))
        assert raise_fd_limit() == _expected_soft()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (_expected_soft(), before[1])
        assert raise_fd_limit() == _expected_soft()  # a second call changes nothing
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_out_of_descriptors_error_names_the_limits() -> None:
    import errno

    err = out_of_fds_error("the node", OSError(errno.EMFILE, "Too many open files"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert err.errno == errno.EMFILE
    assert str(err).startswith(f"the node ran out of file descriptors (RLIMIT_NOFILE soft={soft}, hard={hard}")
    assert describe_fd_limit() in str(err) and "ulimit -Hn" in str(err)


@pytest.mark.skipif(os.getuid() != 0 and resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 64, reason="limit too low")
def test_a_node_at_its_hard_limit_says_so_when_an_actor_is_created(daemon: Daemon, tmp_path: Path) -> None:
    """A node whose hard limit is tiny runs out: creating an actor fails naming the limit."""

    def tiny_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    result = subprocess.run(
        [ACTORLOOP, "start"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=tiny_limit,
    )
    assert result.returncode == 0, result.stderr
    script = write_script(
        tmp_path,
        "fill.py",
        f"""
        import actorloop

        @actorloop.remote
        class Idle:
            pass

        actorloop.init(address={daemon.dir!r})
        try:
            for i in range(200):
                Idle.remote()
        except Exception as exc:
            print(type(exc).__name__, exc)
        else:
            print("no error after 200 actors")
        """,
    )
    out = subprocess.run(
        [PY, str(script)], env=daemon.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert "the node ran out of file descriptors (RLIMIT_NOFILE soft=64, hard=64)" in out.stdout, (
        out.stdout,
        out.stderr[-2000:],
    )
