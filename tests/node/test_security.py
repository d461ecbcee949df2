"""A locked door (SPEC section 11): nothing from a peer without the secret is unpickled, and hostile
bytes on the node's or an actor's socket close that connection only, never the node or the actor."""

from __future__ import annotations

import os
import pickle
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import actorloop
from actorloop import _protocol as proto
from actorloop import _runtime as _client
from actorloop._node._server import Node

from ._helpers import PY, alive


@actorloop.remote
class Echo:
    def __init__(self) -> None:
        self.calls = 0

    def ping(self, value: int) -> int:
        self.calls += 1
        return value

    def pid(self) -> int:
        return os.getpid()

    def count(self) -> int:
        return self.calls


@actorloop.remote
class AsyncEcho:
    async def ping(self, value: int) -> int:
        return value


class Target:
    """The node and two actors under attack, and a way to tell they are unharmed."""

    def __init__(self) -> None:
        rt = _client.get_runtime()
        assert rt is not None and rt.embedded_node is not None
        self.dir = rt.node_dir
        self.node_pid = rt.embedded_node.proc.pid
        self.secret = open(os.path.join(self.dir, "secret"), "rb").read()
        self.echo = Echo.remote()
        self.async_echo = AsyncEcho.remote()
        self.echo_pid = actorloop.get(self.echo.pid.remote(), timeout=10)
        actorloop.get(self.async_echo.ping.remote(0), timeout=10)
        self.sockets = {
            "node": os.path.join(self.dir, "node.sock"),
            "actor": os.path.join(self.dir, f"a-{self.echo._actor_id}.sock"),
            "async-actor": os.path.join(self.dir, f"a-{self.async_echo._actor_id}.sock"),
        }

    def check_unharmed(self) -> None:
        assert alive(self.node_pid) and alive(self.echo_pid)
        assert actorloop.get(self.echo.ping.remote(7), timeout=10) == 7
        assert actorloop.get(self.async_echo.ping.remote(8), timeout=10) == 8
        assert actorloop.get(self.echo.pid.remote(), timeout=10) == self.echo_pid
        assert {a.actor_id for a in actorloop.list_actors() if a.state == "ALIVE"} >= {
            self.echo._actor_id,
            self.async_echo._actor_id,
        }


@pytest.fixture(scope="module")
def target(node) -> Iterator[Target]:  # type: ignore[no-untyped-def]
    t = Target()
    yield t
    t.check_unharmed()


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def _closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bool:
    """Whether the peer closes the connection within ``timeout`` (anything it sends first is ignored)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 16):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the peer already hung up: fine


def _hello(target: Target) -> bytes:
    return proto.make_hello(target.secret)


class _CreatesFile:
    """Unpickling this creates a file: the proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def _evil_frame(path: Path) -> bytes:
    return proto.frame(pickle.dumps((1, "hello", (_CreatesFile(str(path)),)), 5))


# -- the door -----------------------------------------------------------------------------


def test_the_directory_and_its_files_are_closed_to_others(target: Target) -> None:
    assert stat.S_IMODE(os.stat(target.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(target.dir, "secret")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(target.sockets["node"]).st_mode) & 0o077 == 0
    for path in target.sockets.values():
        assert os.path.dirname(path) == target.dir


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become another user")
def test_another_user_cannot_reach_the_sockets_or_the_secret(target: Target) -> None:
    # Open the directories above the node's to everyone for a moment, so that only
    # the node's own 0700 directory stands in the way.
    opened = []
    path = os.path.dirname(target.dir)
    while path != "/":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o001 == 0:
            opened.append((path, mode))
        path = os.path.dirname(path)
    probe = f"""
import os, socket
os.setgid(65534)
os.setuid(65534)
os.stat({target.dir!r})   # the directory itself is visible ...
results = []
for path in {sorted(target.sockets.values())!r}:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        results.append("connected")
    except PermissionError:
        results.append("refused")
for action in (lambda: open({os.path.join(target.dir, "secret")!r}, "rb"), lambda: os.listdir({target.dir!r})):
    try:
        action()
        results.append("read")
    except PermissionError:
        results.append("refused")
print(" ".join(results))
"""
    try:
        for path, mode in opened:
            os.chmod(path, mode | 0o011)
        result = subprocess.run([PY, "-I", "-c", probe], capture_output=True, text=True, timeout=30, cwd="/")
    finally:
        for path, mode in opened:
            os.chmod(path, mode)
    if "Permission denied" in result.stderr and "python" in result.stderr.lower() and not result.stdout:
        pytest.skip(f"the interpreter cannot run as another user here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused"] * (len(target.sockets) + 2)


@pytest.mark.parametrize("which", ["node", "actor", "async-actor"])
@pytest.mark.parametrize(
    "opening",
    ["no hello", "wrong secret", "wrong magic", "short secret"],
)
def test_without_the_secret_the_connection_closes_and_nothing_is_unpickled(
    target: Target, tmp_path: Path, which: str, opening: str
) -> None:
    marker = tmp_path / "unpickled"
    evil = _evil_frame(marker)
    # Control: these bytes really do create the file when unpickled.
    control = tmp_path / "control"
    pickle.loads(_evil_frame(control)[proto.HEADER_BYTES :])
    assert control.exists()
    wrong = bytes(b ^ 0xFF for b in target.secret)
    prefix = {
        "no hello": b"",
        "wrong secret": proto.MAGIC + wrong,
        "wrong magic": b"ACTRLOOP\x02" + target.secret,
        "short secret": proto.MAGIC + target.secret[:16],
    }[opening]
    sock = _connect(target.sockets[which])
    try:
        _send(sock, prefix + evil + evil)
        assert _closed_by_peer(sock)
    finally:
        sock.close()
    # The peer closed us only after it read (and refused) the hello: anything it unpickled, it already ran.
    target.check_unharmed()
    assert not marker.exists()


def test_a_correct_hello_opens_the_door(target: Target) -> None:
    """Control for the tests around it: with the secret, a raw socket is served."""
    sock = _connect(target.sockets["node"])
    try:
        hello = (1, "hello", ("raw-test-client", "cli", 0, False, ""))
        sock.sendall(_hello(target) + proto.frame(pickle.dumps(hello)) + proto.frame(pickle.dumps((2, "list", ()))))
        replies = [proto.loads(proto.recv_frame_blocking(sock)) for _ in range(2)]
        assert replies[0][:2] == (1, True)
        assert replies[1][:2] == (2, True)
        assert target.echo._actor_id in {a.actor_id for a in replies[1][2]}
    finally:
        sock.close()
    sock = _connect(target.sockets["actor"])
    try:
        call = (proto.CALL, 1, "ping", (41,), {}, None)
        sock.sendall(_hello(target) + proto.frame(pickle.dumps(call)))
        assert proto.loads(proto.recv_frame_blocking(sock)) == (proto.RESULT_OK, 1, 41)
    finally:
        sock.close()


def test_idle_connections_that_never_say_hello_do_not_block_anyone(target: Target) -> None:
    idle = []
    try:
        for path in target.sockets.values():
            for i in range(20):
                sock = _connect(path)
                sock.sendall(proto.MAGIC[: i % len(proto.MAGIC)])
                idle.append(sock)
        target.check_unharmed()
    finally:
        for sock in idle:
            sock.close()


# -- hostile frames from a peer that has the secret ---------------------------------------------


@pytest.mark.parametrize("which", ["node", "actor", "async-actor"])
@pytest.mark.parametrize(
    "length",
    [proto.MAX_FRAME_BYTES + 1, 0xFFFFFFFF, 0x80000000],
    ids=["max+1", "4GiB-1", "2GiB"],
)
def test_an_absurd_length_prefix_closes_the_connection_at_once(target: Target, which: str, length: int) -> None:
    sock = _connect(target.sockets[which])
    try:
        _send(sock, _hello(target) + proto.HEADER.pack(length) + b"x" * 100)
        assert _closed_by_peer(sock)
    finally:
        sock.close()
    target.check_unharmed()


@pytest.mark.parametrize("which", ["node", "actor", "async-actor"])
@pytest.mark.parametrize(
    "data",
    [
        b"ACTR",  # a truncated hello
        "hello",  # the hello alone
        "hello+header",  # a header cut short
        "hello+partial-frame",  # a frame cut short
        "hello+max-frame-start",  # the largest allowed frame, announced and never sent
    ],
)
def test_truncated_input_then_hang_up_harms_nobody(target: Target, which: str, data: object) -> None:
    hello = _hello(target)
    raw = {
        "hello": hello,
        "hello+header": hello + b"\x10\x00",
        "hello+partial-frame": hello + proto.HEADER.pack(100) + b"\x80\x05" + b"x" * 10,
        "hello+max-frame-start": hello + proto.HEADER.pack(proto.MAX_FRAME_BYTES) + b"x" * 1000,
    }.get(data, data)  # type: ignore[call-overload]
    sock = _connect(target.sockets[which])
    _send(sock, raw)
    sock.close()
    target.check_unharmed()


CLOSED = "closed"
NODE_SHAPES = [
    (b"\x00\x01garbage", CLOSED),
    (pickle.dumps(42), CLOSED),
    (pickle.dumps((1,)), CLOSED),
    (pickle.dumps((1, "no_such_op", ())), CLOSED),
    (pickle.dumps((1, "__init__", ())), CLOSED),
    (pickle.dumps((1, "list", ())), CLOSED),  # a request before hello
    (b"B\xff\xff\xff\xff", CLOSED),  # a shared-memory table that claims 4 billion buffers
    (b"B\x01\x00\x00\x00" + b"\x04\x00" + (8).to_bytes(8, "little") + b"../x" + b"\x80\x05N.", CLOSED),
    (b"B\x01\x00\x00\x00\x2c\x00" + (8).to_bytes(8, "little") + b"actorloop-0-" + b"0" * 32 + b"\x80\x05N.", CLOSED),
    # Well-formed frames with wrong arguments: an error reply, and the connection goes on.
    (pickle.dumps((1, "hello", "xy")), "TypeError"),  # args unpacked from a string: too few
    (pickle.dumps((1, "hello", ())), "TypeError"),
    (pickle.dumps((0, "hello", ("id", "cli", 0, False, ""))), "no reply"),
]


@pytest.mark.parametrize(("payload", "outcome"), NODE_SHAPES, ids=range(len(NODE_SHAPES)))
def test_malformed_requests_to_the_node_close_only_that_connection(
    target: Target, payload: bytes, outcome: str
) -> None:
    sock = _connect(target.sockets["node"])
    try:
        probe = proto.frame(pickle.dumps((77, "hello", ("raw-probe", "cli", 0, False, ""))))
        _send(sock, _hello(target) + proto.frame(payload) + probe)
        if outcome == CLOSED:
            assert _closed_by_peer(sock)
        else:
            replies = [proto.loads(proto.recv_frame_blocking(sock)) for _ in range(1 if outcome == "no reply" else 2)]
            if outcome != "no reply":
                assert replies[0][:2] == (1, False) and replies[0][2][1] == outcome
                assert type(proto.node_error(replies[0][2])).__name__ == outcome
            assert replies[-1][:2] == (77, True)
    finally:
        sock.close()
    target.check_unharmed()


def test_bad_arguments_after_hello_get_an_error_reply(target: Target) -> None:
    sock = _connect(target.sockets["node"])
    try:
        requests = [
            (1, "hello", ("raw-bad-args", "cli", 0, False, "")),
            (2, "list", (1, 2, 3)),
            (3, "get_actor", (["unhashable"], "ns")),
            (4, "kill", ("no-such-actor", True)),
            (5, "wait_actor", ("no-such-actor", 0)),
            (6, "list", ()),
        ]
        sock.sendall(_hello(target) + b"".join(proto.frame(pickle.dumps(r)) for r in requests))
        replies = {}
        for _ in requests:
            req_id, ok, value = proto.loads(proto.recv_frame_blocking(sock))
            replies[req_id] = (ok, value)
        assert replies[1][0] and replies[6][0] and replies[4] == (True, None)
        assert replies[2][0] is False and replies[2][1][1] == "TypeError"
        assert replies[3][0] is False
        assert replies[5][0] is True and replies[5][1][0] == "DEAD"
    finally:
        sock.close()
    target.check_unharmed()


ACTOR_SHAPES = [
    (b"\x00\x01garbage", None),
    (pickle.dumps(42), None),
    (pickle.dumps(()), None),
    (pickle.dumps((99, 1)), None),  # an unknown message kind
    (pickle.dumps((proto.CALL, 5, "no_such_method", (), {}, None)), 5),
    (pickle.dumps((proto.CALL, 6, "ping", None, None, None)), 6),
    (pickle.dumps((proto.CALL, 7, "ping", (1, 2, 3), {}, None)), 7),
    (pickle.dumps((proto.CALL, 8, "ping", (1,), {}, "no-such-group")), 8),
    (pickle.dumps((proto.CALL, 9, ["unhashable"], (), {}, None)), 9),
    (pickle.dumps((proto.CALL, 10, "ping")), 10),
    (pickle.dumps((proto.CANCEL, 12345)), "silent"),  # cancelling an unknown call: ignored
    (pickle.dumps((proto.CANCEL, ["unhashable"])), "silent"),  # no call runs: nothing to look up
    # A call whose arguments cannot be unpickled here: a class this actor cannot import.
    (b"\x80\x05(K\x01K\x0d\x8c\x04ping\x8c\x0bno_such_mod\x94\x8c\x01X\x93)}N\x87t.", 13),
]


@pytest.mark.parametrize("which", ["actor", "async-actor"])
@pytest.mark.parametrize(("payload", "answer"), ACTOR_SHAPES, ids=range(len(ACTOR_SHAPES)))
def test_malformed_frames_to_an_actor_get_an_error_or_close_only_that_connection(
    target: Target, which: str, payload: bytes, answer: object
) -> None:
    sock = _connect(target.sockets[which])
    try:
        probe = (proto.CALL, 99, "ping", (99,), {}, None)
        _send(sock, _hello(target) + proto.frame(payload) + proto.frame(pickle.dumps(probe)))
        if answer is None:
            assert _closed_by_peer(sock)
        else:
            replies = [proto.loads(proto.recv_frame_blocking(sock)) for _ in range(1 if answer == "silent" else 2)]
            if answer != "silent":
                kind, call_id, *_ = replies[0]
                assert (kind, call_id) == (proto.RESULT_ERR, answer)
            # The connection goes on serving.
            assert replies[-1] == (proto.RESULT_OK, 99, 99)
    finally:
        sock.close()
    target.check_unharmed()


def test_other_callers_carry_on_during_an_attack(target: Target) -> None:
    errors: list[BaseException] = []
    results: list[int] = []
    stop = threading.Event()

    def caller() -> None:
        i = 0
        while not stop.is_set():
            try:
                results.append(actorloop.get(target.echo.ping.remote(i), timeout=10) - i)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            i += 1

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        for i in range(60):
            sock = _connect(target.sockets["node" if i % 2 else "actor"])
            _send(sock, _hello(target) + os.urandom(200) if i % 3 else os.urandom(200))
            sock.close()
    finally:
        stop.set()
        thread.join(15)
    assert not errors
    assert results and set(results) == {0}
    target.check_unharmed()


# -- random byte streams (hypothesis) ---------------------------------------------------------------

#: ACTORLOOP_FUZZ_EXAMPLES=2000 for a longer hunt; CI runs the default.
_EXAMPLES = int(os.environ.get("ACTORLOOP_FUZZ_EXAMPLES", "50"))
_settings = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _throw(target: Target, which: str, data: bytes) -> None:
    sock = _connect(target.sockets[which])
    try:
        _send(sock, data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        assert _closed_by_peer(sock, timeout=5)
    finally:
        sock.close()
    assert alive(target.node_pid) and alive(target.echo_pid)


@_settings
@given(which=st.sampled_from(["node", "actor", "async-actor"]), data=st.binary(min_size=1, max_size=300))
def test_random_bytes_without_hello(target: Target, which: str, data: bytes) -> None:
    _throw(target, which, data)


@_settings
@given(which=st.sampled_from(["node", "actor", "async-actor"]), data=st.binary(min_size=1, max_size=300))
def test_random_bytes_after_a_correct_hello(target: Target, which: str, data: bytes) -> None:
    _throw(target, which, _hello(target) + data)


@_settings
@given(
    which=st.sampled_from(["node", "actor", "async-actor"]),
    payloads=st.lists(st.binary(max_size=120), min_size=1, max_size=4),
    cut=st.integers(min_value=0, max_value=8),
)
def test_random_frames_after_a_correct_hello(target: Target, which: str, payloads: list[bytes], cut: int) -> None:
    stream = b"".join(proto.frame(p) for p in payloads)
    _throw(target, which, _hello(target) + stream[: len(stream) - cut])


_primitive = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=16),
    st.binary(max_size=16),
)
_value = st.recursive(
    _primitive,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple), st.dictionaries(st.text(max_size=4), inner)
    ),
    max_leaves=8,
)
# Every request the node knows but "stop" (which an authenticated peer may legitimately send).
_NODE_OPS = sorted(n[3:] for n in dir(Node) if n.startswith("op_") and n != "op_stop") + ["nope", "", "_kill"]


def _ints_in(value: object) -> Iterator[int]:
    if isinstance(value, int):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _ints_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _ints_in(item)


@_settings
@given(
    with_hello=st.booleans(),
    requests=st.lists(
        st.tuples(_value, st.sampled_from(_NODE_OPS), st.lists(_value, max_size=6).map(tuple)), min_size=1, max_size=4
    ),
)
def test_random_requests_to_the_node(target: Target, with_hello: bool, requests: list[tuple[object, ...]]) -> None:
    # A peer that claims to be the driver of an embedded node ends it when it hangs up: by design.
    assume(os.getpid() not in set(_ints_in(requests)))
    frames = [pickle.dumps(r) for r in requests]
    if with_hello:
        frames.insert(0, pickle.dumps((1, "hello", ("fuzz", "cli", 0, False, ""))))
    _throw(target, "node", _hello(target) + b"".join(proto.frame(f) for f in frames))


@_settings
@given(
    which=st.sampled_from(["actor", "async-actor"]),
    messages=st.lists(
        st.tuples(
            st.sampled_from([proto.CALL, proto.CALL, proto.CANCEL, 0, 3, 99]),
            st.one_of(st.integers(min_value=0, max_value=2**64), _value),
            st.sampled_from(["ping", "pid", "count", "nope", "__init__", "__class__", "_ready"]) | _value,
            _value,
            _value,
            st.none() | _value,
        ).flatmap(lambda msg: st.integers(min_value=1, max_value=6).map(lambda n: msg[:n])),
        min_size=1,
        max_size=4,
    ),
)
def test_random_messages_to_an_actor(target: Target, which: str, messages: list[tuple[object, ...]]) -> None:
    _throw(target, which, _hello(target) + b"".join(proto.frame(pickle.dumps(m)) for m in messages))


def test_still_unharmed_after_the_random_streams(target: Target) -> None:
    target.check_unharmed()
    assert actorloop.get(target.echo.count.remote()) > 0
    assert tempfile.gettempdir() in target.dir
