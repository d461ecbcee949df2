"""Zeroed pages a process holds for nothing, given back to the kernel (Linux; elsewhere nothing).

A uvloop loop object carries its 256,000-byte stream receive buffer inline
(``Loop._recv_buffer``), and CPython zeroes every new object: creating the
loop writes about 250 KiB that nothing has read or needed yet.  Each of our
processes makes one such loop (an actor, the node, a driver's loop thread),
and paid those pages in its USS and RSS.

Handing back a page that holds only zeros changes nothing the process can
see: on Linux, a private anonymous page dropped with ``MADV_DONTNEED`` reads
back as zeros, and the kernel supplies it again only once it is written.
"""

from __future__ import annotations

import mmap
import sys
from typing import Any

__all__ = ["release_zero_pages"]

_PAGE = mmap.PAGESIZE


def _load_libc() -> tuple[Any, Any, int, Any] | None:
    """``madvise``, ``memcmp``, the address of a page of zeros and that page; None where they are missing."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        madvise, memcmp = libc.madvise, libc.memcmp
    except (ImportError, OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    memcmp.restype = ctypes.c_int
    zero_page = ctypes.create_string_buffer(_PAGE)
    zero = ctypes.addressof(zero_page)
    # A first call of each, with nothing to compare or drop: what ctypes sets up on
    # a function's first call is then made here, before the node forks the zygote.
    memcmp(zero, zero, 0)
    madvise(zero, 0, mmap.MADV_DONTNEED)
    return madvise, memcmp, zero, zero_page


#: Made once, at import: the node imports this module before it forks the
#: zygote, so every actor shares these objects.  Made in an actor (the
#: library handle, its function objects, their first calls), they would copy
#: more pages than the loop's buffer gives back.  Measured in forked children
#: of a process that imported what the node imports: -240 KiB with them made
#: before the fork, +24 KiB net made after it; ``memcmp`` rather than reading
#: each page into ``bytes`` (``ctypes.string_at``) copies about 60 KiB fewer.
_LIBC = _load_libc()


def release_zero_pages(obj: object) -> int:
    """Drop the whole pages inside ``obj`` that hold only zeros; return how many were dropped.

    For a large fixed-size object just made by this thread (a new uvloop
    loop), which no other thread can write to yet: a write between the check
    and the drop would be lost.  Its memory comes from ``malloc`` (private
    and anonymous), where a dropped page reads back as zeros.
    """
    if _LIBC is None or type(obj).__itemsize__:  # no libc; or its size is not its type's
        return 0
    madvise, memcmp, zero, _ = _LIBC
    start = id(obj)  # CPython: the object's address
    first = -(-start // _PAGE) * _PAGE  # the first page that begins inside the object
    end = (start + type(obj).__basicsize__) // _PAGE * _PAGE  # the end of the last page that ends inside it
    size = end - first
    if size > _PAGE and memcmp(first, zero, _PAGE) == 0 and memcmp(first, first + _PAGE, size - _PAGE) == 0:
        # Every page equals the one after it and the first is zeros: all are zeros (a new uvloop
        # loop's are).  Two comparisons and one drop instead of a ctypes call per page (61 for a
        # loop): 127 -> 88 us per new actor, median of 200 children forked from a process that
        # imported actorloop, each making a uvloop loop and releasing it.
        if madvise(first, size, mmap.MADV_DONTNEED) == 0:
            return size // _PAGE
    dropped = 0
    run: int | None = None  # where the current run of zero pages began
    for addr in range(first, end + _PAGE, _PAGE):
        if addr < end and memcmp(addr, zero, _PAGE) == 0:
            if run is None:
                run = addr
            continue
        # The run ends at a page that is not zero, or at the object's end.
        if run is not None:
            if madvise(run, addr - run, mmap.MADV_DONTNEED) == 0:
                dropped += (addr - run) // _PAGE
            run = None
    return dropped
