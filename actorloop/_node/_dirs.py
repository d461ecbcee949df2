"""Trusting a node directory: the one place that decides whether a directory and its secret are ours.

A node directory holds the node's socket and its secret.  Whoever controls
the directory controls what a client connects to and what it unpickles, so
nothing is read from, connected to or created in a directory before
:func:`check_node_dir` found it to be a real directory (not a symlink) that
this user owns with mode 0700 exactly, in a parent where not everyone may
rename entries (writable by everyone only with the sticky bit, as ``/tmp``).
The secret must be a regular file (not a symlink) that this user owns with
mode 0600 exactly; it is opened with ``O_NOFOLLOW`` and checked on the open
descriptor, so it cannot be swapped between the check and the read.  The
socket ``node.sock`` must be this user's too.

Nothing here changes the mode of, or follows, a path it did not create: a
directory that fails a check is refused with an :class:`UntrustedNodeDirError`
that names the path, says what is wrong and how to fix it.
"""

from __future__ import annotations

import errno
import os
import stat

from .._protocol import SECRET_BYTES

__all__ = [
    "UntrustedNodeDirError",
    "check_node_dir",
    "check_node_socket",
    "check_secret_file",
    "make_node_dir",
    "read_secret",
]

_FIX = "remove it if it is not yours, or set $ACTORLOOP_DIR to a directory of your own"


class UntrustedNodeDirError(PermissionError):
    """Raised when a node directory or its secret might be controlled by someone else."""


def _refuse(path: str, what: str, own_fix: str = "") -> UntrustedNodeDirError:
    fix = f"{_FIX}{'; ' + own_fix if own_fix else ''}"
    return UntrustedNodeDirError(f"refusing to use the actorloop node directory {path}: {what}; {fix}")


def _check_dir_stat(path: str, st: os.stat_result) -> None:
    uid = os.getuid()
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "it is a symbolic link, not a directory")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "it is not a directory")
    if st.st_uid != uid:
        raise _refuse(path, f"it belongs to uid {st.st_uid}, not to you (uid {uid})")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        raise _refuse(
            path,
            f"its mode is {mode:04o}, not 0700 (others could reach its socket or secret)",
            f"if you made it and nobody else could have changed it, `chmod 700 {path}`",
        )


def check_node_dir(path: str) -> bool:
    """Check that ``path`` is a directory we can trust; False if it does not exist.

    Raises :class:`UntrustedNodeDirError` when it exists but is a symlink, not
    a directory, not ours, or not mode 0700 exactly.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    _check_dir_stat(path, st)
    # Whoever may rename entries of the parent could swap the directory after this check:
    # a parent writable by everyone needs the sticky bit (as /tmp has).
    parent = os.path.dirname(os.path.abspath(path))
    pmode = os.stat(parent).st_mode
    if pmode & stat.S_IWOTH and not pmode & stat.S_ISVTX:
        raise _refuse(path, f"its parent {parent} is writable by everyone without the sticky bit")
    return True


def check_node_socket(node_dir: str) -> bool:
    """Whether ``node_dir`` (already checked) holds a socket named ``node.sock``.

    Raises :class:`UntrustedNodeDirError` when that name belongs to someone else.
    """
    path = os.path.join(node_dir, "node.sock")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    uid = os.getuid()
    if st.st_uid != uid:
        raise _refuse(node_dir, f"its socket {path} belongs to uid {st.st_uid}, not to you (uid {uid})")
    # Ours but not a socket (say, a directory): nothing listens there.
    return stat.S_ISSOCK(st.st_mode)


def check_secret_file(node_dir: str, st: os.stat_result) -> None:
    """Check the ``lstat``/``fstat`` result of ``node_dir``'s secret."""
    path = os.path.join(node_dir, "secret")
    uid = os.getuid()
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(node_dir, f"its secret {path} is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(node_dir, f"its secret {path} is not a regular file")
    if st.st_uid != uid:
        raise _refuse(node_dir, f"its secret {path} belongs to uid {st.st_uid}, not to you (uid {uid})")
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        raise _refuse(
            node_dir,
            f"its secret {path} has mode {mode:04o}, not 0600",
            "a secret others could read is no secret: stop the node and remove the directory",
        )


def read_secret(node_dir: str) -> bytes:
    """The secret of the node in ``node_dir``, after checking the directory and the file.

    Raises ``ConnectionError`` when there is no node (no directory or no
    secret) and :class:`UntrustedNodeDirError` when either is not trustworthy.
    """
    if not check_node_dir(node_dir):
        raise ConnectionError(f"no actorloop node at {node_dir} (the directory does not exist)")
    path = os.path.join(node_dir, "secret")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(node_dir, f"its secret {path} is a symbolic link") from None
        raise ConnectionError(f"no actorloop node at {node_dir} (cannot read its secret: {exc.strerror})") from exc
    try:
        # Checked on the open descriptor: what we read is what we checked.
        check_secret_file(node_dir, os.fstat(fd))
        secret = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(secret) != SECRET_BYTES:
        raise ConnectionError(f"the node secret in {node_dir} is damaged (remove {path} and restart the node)")
    return secret


def make_node_dir(path: str) -> None:
    """Create ``path`` as a 0700 directory, or check that the existing one is trustworthy.

    Parent directories are created as needed (with the default mode); the
    node directory itself is never chmod'ed unless this call created it.
    """
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        check_node_dir(path)
        return
    # Ours: we just made it.  A umask may have removed owner bits; put them back through a
    # descriptor opened without following links, so only the directory we made is changed.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    check_node_dir(path)
