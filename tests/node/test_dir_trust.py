"""Never trust a node directory you did not make (issue 10).

Another local user can pre-create the default node directory
(``/tmp/actorloop-<uid>``) with a readable secret and a fake ``node.sock``.
Every way into a node directory (``init()``, ``actorloop start/stop/status/
list``, ``node_running``, ``read_secret``) must refuse such a directory
before connecting to anything in it, with an error that names the path,
what is wrong and how to fix it, and must never chmod it.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import actorloop
from actorloop._node import node_running, prepare_dir, read_secret
from actorloop._node._dirs import UntrustedNodeDirError

from ._helpers import env_for, short_dir

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files of another user")

OTHER_UID = 65534


@dataclass
class FakeNode:
    """A directory that looks like a node's: a 32-byte secret and a listening ``node.sock``."""

    path: str  # what the victim is pointed at
    real: str  # where the files are (differs from path when path is a symlink)
    listener: socket.socket

    def connections(self) -> int:
        """How many connections reached the fake socket (accepting them all)."""
        self.listener.setblocking(False)
        n = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1


def _squat_foreign_dir(node: FakeNode) -> None:
    os.chown(node.real, OTHER_UID, OTHER_UID)
    os.chown(os.path.join(node.real, "secret"), OTHER_UID, OTHER_UID)
    os.chown(os.path.join(node.real, "node.sock"), OTHER_UID, OTHER_UID)


def _mode(mode: int) -> Callable[[FakeNode], None]:
    def squat(node: FakeNode) -> None:
        os.chmod(node.real, mode)

    return squat


def _secret_mode(mode: int) -> Callable[[FakeNode], None]:
    def squat(node: FakeNode) -> None:
        os.chmod(os.path.join(node.real, "secret"), mode)

    return squat


def _foreign_secret(node: FakeNode) -> None:
    os.chown(os.path.join(node.real, "secret"), OTHER_UID, OTHER_UID)


def _symlinked_secret(node: FakeNode) -> None:
    secret = os.path.join(node.real, "secret")
    os.rename(secret, secret + ".real")
    os.symlink(secret + ".real", secret)


def _secret_is_a_directory(node: FakeNode) -> None:
    secret = os.path.join(node.real, "secret")
    os.unlink(secret)
    os.mkdir(secret, 0o700)


def _foreign_socket(node: FakeNode) -> None:
    os.chown(os.path.join(node.real, "node.sock"), OTHER_UID, OTHER_UID)


def _open_parent(node: FakeNode) -> None:
    os.chmod(os.path.dirname(node.real), 0o777)


#: Each way to plant a node directory, and the words of the error it must get.
SQUATS: dict[str, tuple[Callable[[FakeNode], None] | None, str]] = {
    "another user's directory": (_squat_foreign_dir, f"belongs to uid {OTHER_UID}, not to you"),
    "a symlinked directory": (None, "is a symbolic link"),  # made by the fixture
    "mode 0755": (_mode(0o755), "mode is 0755, not 0700"),
    "mode 0750": (_mode(0o750), "mode is 0750, not 0700"),
    "mode 0701": (_mode(0o701), "mode is 0701, not 0700"),
    "mode 0500": (_mode(0o500), "mode is 0500, not 0700"),
    "another user's secret": (_foreign_secret, f"secret {{}}/secret belongs to uid {OTHER_UID}"),
    "a symlinked secret": (_symlinked_secret, "secret {}/secret is a symbolic link"),
    "a secret of mode 0644": (_secret_mode(0o644), "secret {}/secret has mode 0644, not 0600"),
    "a secret of mode 0400": (_secret_mode(0o400), "secret {}/secret has mode 0400, not 0600"),
    "a secret that is a directory": (_secret_is_a_directory, "secret {}/secret is not a regular file"),
    "another user's socket": (_foreign_socket, f"socket {{}}/node.sock belongs to uid {OTHER_UID}"),
    "a parent anyone may rename in": (_open_parent, "writable by everyone without the sticky bit"),
}


def _make_fake_node(symlinked: bool) -> tuple[str, FakeNode]:
    parent = short_dir("t")
    real = os.path.join(parent, "real" if symlinked else "node")
    os.mkdir(real, 0o700)
    with open(os.path.join(real, "secret"), "wb") as f:
        f.write(os.urandom(32))
    os.chmod(os.path.join(real, "secret"), 0o600)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(real, "node.sock"))
    listener.listen(64)
    path = real
    if symlinked:
        path = os.path.join(parent, "node")
        os.symlink(real, path)
    return parent, FakeNode(path, real, listener)


@pytest.fixture
def planted(request: pytest.FixtureRequest) -> Iterator[tuple[FakeNode, Callable[[FakeNode], None] | None, str]]:
    """A fake node directory planted in one of the ways of SQUATS (the parameter)."""
    name = request.param
    squat, words = SQUATS[name]
    parent, node = _make_fake_node(symlinked=name == "a symlinked directory")
    try:
        if squat is not None:
            squat(node)
        yield node, squat, words
    finally:
        node.listener.close()
        shutil.rmtree(parent, ignore_errors=True)


def _assert_refusal(text: str, node: FakeNode, words: str) -> None:
    assert f"refusing to use the actorloop node directory {node.path}" in text, text
    assert words.format(node.path) in text, text
    assert "remove it" in text and "$ACTORLOOP_DIR" in text, text


@pytest.mark.parametrize("planted", list(SQUATS), indirect=True)
def test_a_planted_node_directory_is_refused_and_never_connected_to(
    planted: tuple[FakeNode, Callable[[FakeNode], None] | None, str],
) -> None:
    fake_node, squat, words = planted
    before = os.lstat(fake_node.real)
    env = env_for(fake_node.path)

    calls = [
        lambda: node_running(fake_node.path),
        lambda: read_secret(fake_node.path),
        lambda: actorloop.init(address=fake_node.path),
    ]
    if "node.sock" in words:
        calls.remove(calls[1])  # the secret itself is fine: only connecting is refused
    elif "secret" not in words:
        # Only the directory itself matters to prepare_dir (a new node replaces the secret and socket).
        calls.append(lambda: prepare_dir(fake_node.path))
    for call in calls:
        with pytest.raises(UntrustedNodeDirError) as info:
            call()
        _assert_refusal(str(info.value), fake_node, words)
    assert not actorloop.is_initialized()

    for command in ("status", "list", "stop", "start"):
        result = _cli(command, env)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "already running" not in result.stderr
        _assert_refusal(result.stderr, fake_node, words)

    assert fake_node.connections() == 0
    # Nothing was chmod'ed, chown'ed or created in it.
    after = os.lstat(fake_node.real)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert sorted(os.listdir(fake_node.real)) == sorted(_listing_of(squat))


def test_init_without_an_address_refuses_a_planted_default_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack of the issue: ``/tmp/actorloop-<uid>`` made by someone else, found by ``init()``."""
    parent, node = _make_fake_node(symlinked=False)
    try:
        _squat_foreign_dir(node)
        monkeypatch.setenv("ACTORLOOP_DIR", node.path)
        monkeypatch.delenv("ACTORLOOP_ADDRESS", raising=False)
        for address in (None, "auto"):
            with pytest.raises(UntrustedNodeDirError) as info:
                actorloop.init(address=address)
            _assert_refusal(str(info.value), node, f"belongs to uid {OTHER_UID}")
        assert not actorloop.is_initialized()
        assert node.connections() == 0
    finally:
        node.listener.close()
        shutil.rmtree(parent, ignore_errors=True)


def test_control_a_trustworthy_fake_node_is_connected_to() -> None:
    """Control for the tests above: the same fake node, correctly made, is reached (and seen to be)."""
    parent, node = _make_fake_node(symlinked=False)
    try:
        assert node_running(node.path)
        assert len(read_secret(node.path)) == 32
        assert node.connections() == 1
    finally:
        node.listener.close()
        shutil.rmtree(parent, ignore_errors=True)


def test_start_makes_a_private_directory_and_parents() -> None:
    parent = short_dir("m")
    try:
        path = os.path.join(parent, "a", "b", "node")
        old = os.umask(0o177)  # even with a umask that takes the owner's x bit away
        try:
            prepare_dir(path)
        finally:
            os.umask(old)
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
        prepare_dir(path)  # ours: accepted again
        assert not node_running(path)  # no socket: not running, and nothing refused
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_a_node_started_under_any_umask_is_accepted(umask: int) -> None:
    """The node's directory is 0700 and its secret 0600 whatever the umask; clients check for exactly that."""
    from ._helpers import cli, kill_everything_of

    parent = short_dir("u")
    path = os.path.join(parent, "node")
    env = env_for(path)
    old = os.umask(umask)
    try:
        result = cli("start", env=env)
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700
        assert stat.S_IMODE(os.lstat(os.path.join(path, "secret")).st_mode) == 0o600
        result = cli("status", env=env)
        assert result.returncode == 0, result.stderr
    finally:
        os.umask(old)
        cli("stop", env=env)
        kill_everything_of(path)
        shutil.rmtree(parent, ignore_errors=True)


# -- helpers ------------------------------------------------------------------------------------


def _listing_of(squat: Callable[[FakeNode], None] | None) -> list[str]:
    names = ["secret", "node.sock"]
    if squat is _symlinked_secret:
        names.append("secret.real")
    return names


def _cli(command: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    from ._helpers import cli

    return cli(command, env=env)
