"""File descriptor limits: raised once per process, and named in the error when they are reached.

The node keeps about three descriptors per actor (its log pipes and its
connection), a driver one socket per actor it calls, an actor one per
caller and per HTTP client.  The usual soft limit of 1,024 would stop a node
near 335 actors, so the node, its zygote (and through it every actor) and
each driver raise their soft ``RLIMIT_NOFILE`` toward the hard limit.
"""

from __future__ import annotations

import errno
import resource
from typing import TypeGuard

__all__ = ["MAX_FD_LIMIT", "describe_fd_limit", "is_fd_exhaustion", "out_of_fds_error", "raise_fd_limit"]

#: The highest soft limit we ask for: enough for the 10,000 actors a node
#: allows, without making every descriptor table huge where the hard limit is.
MAX_FD_LIMIT = 1 << 20


def raise_fd_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to ``min(hard, MAX_FD_LIMIT)``; return the soft limit.

    Never lowers it, and leaves it as it is where the system refuses.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_FD_LIMIT if hard == resource.RLIM_INFINITY else min(hard, MAX_FD_LIMIT)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft
    return want


def describe_fd_limit() -> str:
    """This process's descriptor limits, as an error message shows them: ``RLIMIT_NOFILE soft=N, hard=M``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def show(n: int) -> str:
        return "unlimited" if n == resource.RLIM_INFINITY else str(n)

    return f"RLIMIT_NOFILE soft={show(soft)}, hard={show(hard)}"


def is_fd_exhaustion(exc: BaseException) -> TypeGuard[OSError]:
    """Whether ``exc`` says this process (EMFILE) or the system (ENFILE) ran out of descriptors."""
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


def out_of_fds_error(who: str, exc: OSError) -> OSError:
    """An ``OSError`` (same errno) that says ``who`` ran out of descriptors, names the limits and the fix."""
    if exc.errno == errno.ENFILE:
        what = f"the system ran out of file descriptors (ENFILE) while {who} needed one ({describe_fd_limit()})"
        fix = "raise fs.file-max (sysctl) or run fewer actors"
    else:
        what = f"{who} ran out of file descriptors ({describe_fd_limit()})"
        fix = "raise the hard limit (`ulimit -Hn`, or LimitNOFILE= for a service) or run fewer actors"
    err = OSError(f"{what}: {exc.strerror or exc}; {fix}")
    err.errno = exc.errno
    return err
