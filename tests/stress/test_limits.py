"""The documented limits (README, "Limits") are enforced, each with a clear error.

- largest frame: a peer announcing more is cut off; an argument or a result
  that would need a bigger frame fails that call (SerializationError) instead
  of leaving the connection stuck;
- HTTP body: see test_http_abuse.py (413);
- max_pending_calls: PendingCallsLimitExceeded from .remote(), and room again
  once calls finish or are cancelled;
- actors per node: a node with a lowered MAX_ACTORS (the module constant is
  read at each registration) refuses the next .remote() with RuntimeError.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import pytest

import actorloop
from actorloop import PendingCallsLimitExceeded, SerializationError, TaskCancelledError
from actorloop import _protocol as proto
from actorloop import _runtime as _client

from ._common import (
    closed_by_peer,
    kill_all,
    processes_serving,
    raw_connect,
    scaled,
    secret_of,
    subprocess_env,
    wait_gone,
)

pytestmark = pytest.mark.usefixtures("node")

GiB = 1 << 30


@actorloop.remote
class Sink:
    def size(self, data: Any) -> int:
        return len(data)

    def make(self, n: int) -> str:
        # A str always travels in-band (bytes and bytearrays this large go through shared memory).
        return "\x00" * n

    def ping(self) -> str:
        return "pong"


@actorloop.remote
class Sleepy:
    async def nap(self, t: float) -> float:
        await asyncio.sleep(t)
        return t


def _node_dir() -> str:
    rt = _client.get_runtime()
    assert rt is not None
    return rt.node_dir


def test_frame_limit_is_the_documented_one() -> None:
    assert proto.MAX_FRAME_BYTES == GiB


@pytest.mark.parametrize("where", ["node", "actor"])
def test_announcing_a_frame_over_the_limit_closes_the_connection(where: str) -> None:
    sink = Sink.remote()
    actorloop.get(sink.ping.remote(), timeout=30)
    node_dir = _node_dir()
    path = os.path.join(node_dir, "node.sock" if where == "node" else f"a-{sink._actor_id}.sock")
    for length in (proto.MAX_FRAME_BYTES + 1, 0xFFFFFFFF):
        with raw_connect(path) as sock:
            sock.sendall(proto.make_hello(secret_of(node_dir)) + struct.pack("<I", length))
            assert closed_by_peer(sock, 3), f"the {where} kept a connection announcing {length} bytes"
    assert actorloop.get(sink.ping.remote(), timeout=10) == "pong"
    actorloop.kill(sink)


def test_argument_over_the_frame_limit_fails_in_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller checks the size itself (with the limit lowered here, so the test stays small)."""
    sink = Sink.remote()
    monkeypatch.setattr(proto, "MAX_FRAME_BYTES", 1 << 20)
    with pytest.raises(SerializationError, match="MAX_FRAME_BYTES"):
        sink.size.remote("x" * (2 << 20))

    async def from_async() -> None:
        with pytest.raises(SerializationError, match="MAX_FRAME_BYTES"):
            sink.size.remote("x" * (2 << 20))
        assert await sink.size.remote("x" * 1000) == 1000

    asyncio.run(from_async())
    monkeypatch.undo()
    assert actorloop.get(sink.size.remote("x" * (2 << 20)), timeout=10) == 2 << 20
    actorloop.kill(sink)


def test_real_argument_and_result_over_one_gib(report: Any) -> None:
    """An in-band (str) argument or result one byte over 1 GiB: a clear error, the connection lives."""
    import psutil

    if psutil.virtual_memory().available < 8 * GiB:
        pytest.skip("needs 8 GiB of free memory")
    sink = Sink.remote()
    big = "\x00" * (GiB + 1)
    with pytest.raises(SerializationError, match="MAX_FRAME_BYTES"):
        sink.size.remote(big)
    del big
    ref = sink.make.remote(GiB + 1)
    after = sink.ping.remote()  # same connection, sent behind it
    with pytest.raises(SerializationError, match="MAX_FRAME_BYTES"):
        actorloop.get(ref, timeout=60)
    assert actorloop.get(after, timeout=60) == "pong"
    report("str argument / result of 1 GiB + 1", "SerializationError in the caller / as the call's error")
    actorloop.kill(sink)


def test_max_pending_calls(report: Any) -> None:
    limit = scaled(50, 1_000)
    s = Sleepy.options(max_pending_calls=limit).remote()
    refs = [s.nap.remote(0.3) for _ in range(limit)]
    with pytest.raises(PendingCallsLimitExceeded, match=f"max_pending_calls={limit}"):
        s.nap.remote(0)
    # The limit counts this caller's unfinished calls: once they finish there is room again.
    assert actorloop.get(refs, timeout=20) == [0.3] * limit
    refs = [s.nap.remote(60) for _ in range(limit)]
    with pytest.raises(PendingCallsLimitExceeded):
        s.nap.remote(0)
    for ref in refs:
        actorloop.cancel(ref)
    for ref in refs:
        with pytest.raises(TaskCancelledError):
            actorloop.get(ref, timeout=10)
    assert actorloop.get([s.nap.remote(0) for _ in range(limit)], timeout=20) == [0] * limit

    async def from_async() -> int:
        refs = [s.nap.remote(0.2) for _ in range(limit)]
        refused = 0
        for _ in range(10):
            try:
                s.nap.remote(0)
            except PendingCallsLimitExceeded:
                refused += 1
        await asyncio.gather(*refs)
        return refused

    assert asyncio.run(from_async()) == 10
    report("max_pending_calls enforced at", limit)
    actorloop.kill(s)


_LIMITED_NODE = textwrap.dedent(
    """
    import runpy, sys
    import actorloop._node._server as server
    server.MAX_ACTORS = int(sys.argv[1])
    sys.argv = ["actorloop._node"] + sys.argv[2:]
    runpy.run_module("actorloop._node", run_name="__main__", alter_sys=True)
    """
)

_FILL_NODE = textwrap.dedent(
    """
    import sys
    import actorloop

    @actorloop.remote
    class A:
        def ping(self):
            return 1

    actorloop.init(address=sys.argv[1], log_to_driver=False)
    limit = int(sys.argv[2])
    actors = [A.remote() for _ in range(limit)]
    assert actorloop.get([a.ping.remote() for a in actors], timeout=60) == [1] * limit
    try:
        A.remote()
    except RuntimeError as exc:
        print("REFUSED", exc)
    else:
        print("ACCEPTED")
    actorloop.kill(actors[0])
    again = A.remote()  # room again once one has ended
    print("AGAIN", actorloop.get(again.ping.remote(), timeout=30))
    """
)


def test_actors_per_node(report: Any) -> None:
    limit = scaled(5, 100)
    node_dir = tempfile.mkdtemp(prefix="m", dir=tempfile.gettempdir())
    ready_r, ready_w = os.pipe()
    node = subprocess.Popen(
        [sys.executable, "-c", _LIMITED_NODE, str(limit), "--dir", node_dir, "--ready-fd", str(ready_w)],
        pass_fds=[ready_w],
        stdin=subprocess.DEVNULL,
        env=subprocess_env(),
        start_new_session=True,
    )
    os.close(ready_w)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            assert ready.readline().startswith(b"READY")
        out = subprocess.run(
            [sys.executable, "-c", _FILL_NODE, node_dir, str(limit)],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert out.returncode == 0, out.stderr
        assert "REFUSED" in out.stdout, out.stdout
        assert f"MAX_ACTORS={limit}" in out.stdout, out.stdout
        assert "AGAIN 1" in out.stdout, out.stdout
        report("actors per node (lowered MAX_ACTORS) refused past", limit)
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        left = [p.pid for p in processes_serving(node_dir)]
        kill_all(left)
        assert not wait_gone(left, 5)
