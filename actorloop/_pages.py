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

import functools
import mmap
import os
import re
import sys
from typing import Any

__all__ = ["fill_heap_holes", "release_zero_pages"]

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


def fill_heap_holes() -> list[object]:
    """Fill the free blocks scattered among the memory this process already uses; return what fills them.

    For the node, once, right before it forks the zygote (CPython's small-object
    pools, and glibc's heap below a page on Linux; elsewhere, or when either
    cannot be read, that part is skipped).  A forked process writes each new
    object into the first free block of its size: left as they are, the holes
    the node's start-up freed are spread over hundreds of pages that the node,
    the zygote and every actor share, and each first write to one copies the
    page into the writer.  Filled, new objects go to fresh pages, packed.  Done
    in the node before the fork, the filling writes only pages the node holds
    alone, and the zygote and the actors share them from then on.

    Measured (``python -m benchmarks --only node_memory,idle_memory``, the
    checkouts at one path, interleaved runs, medians): idle actor USS 4.53 ->
    4.14 MiB, node + driver USS 22.2 -> 21.7 MiB, their RSS +0.1 and +0.3 MiB
    (Python 3.11; 0.1: 4.28 and 22.0); on 3.12 actor USS 3.79 -> 3.54, node +
    driver 20.65 -> 20.3.  Page faults per actor start (``perf record -e
    page-faults`` following the zygote, 30 actors each started and sent one
    call, 3.11, medians): 1190 -> 1098 (0.1: 1025).
    """
    _fill_malloc_chunks()
    # Twice: the first round's own temporaries (the statistics' text, its lines) leave holes.
    return [_fill_small_blocks(), _fill_small_blocks()]


def _debug_malloc_stats() -> str:
    """What ``sys._debugmallocstats()`` writes to the C-level stderr; "" where it cannot be read."""
    stats = getattr(sys, "_debugmallocstats", None)
    memfd_create = getattr(os, "memfd_create", None)
    if stats is None or memfd_create is None:
        return ""
    fd = memfd_create("actorloop-mallocstats")
    try:
        saved = os.dup(2)
        try:
            os.dup2(fd, 2)
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0).decode("ascii", "replace")
    finally:
        os.close(fd)


def _fill_small_blocks() -> list[object]:
    """Objects that take every free block of CPython's small-object pools in use."""
    free: list[tuple[int, int]] = []  # (block size, free blocks) of each size class
    for line in _debug_malloc_stats().splitlines():
        fields = line.split()
        if len(fields) == 5 and all(f.isdigit() for f in fields):  # class, size, pools, in use, available
            free.append((int(fields[1]), int(fields[4])))
        elif free:
            break  # the table ended
    empty_bytes = sys.getsizeof(b"")
    makers: list[tuple[Any, int]] = []
    for size, count in free:
        if count == 0:
            continue
        if size - empty_bytes >= 2:  # bytes of 0 and 1 items are shared singletons
            makers.append((functools.partial(bytes, size - empty_bytes), count))
        elif sys.getsizeof(object()) == size:
            makers.append((object, count))
        elif size - 16 < sys.getsizeof(0.5) <= size:
            makers.append((functools.partial(float, "0.5"), count))
    keep: list[object] = [None] * sum(count for _, count in makers)  # made at once: no reallocation holes
    i = 0
    for make, count in makers:
        for _ in range(count):
            keep[i] = make()
            i += 1
    return keep


_MALLOC_FREE = re.compile(rb'<(?:size|unsorted) from="(\d+)" to="\d+" total="\d+" count="(\d+)"/>')


def _fill_malloc_chunks() -> None:
    """Allocate (and never free) glibc's free chunks in the main heap, smallest request of each bin."""
    if _LIBC is None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        malloc, free, malloc_info = libc.malloc, libc.free, libc.malloc_info
        open_memstream, fclose = libc.open_memstream, libc.fclose
    except (ImportError, OSError, AttributeError):  # not glibc
        return
    malloc.argtypes, malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
    free.argtypes, free.restype = (ctypes.c_void_p,), None
    open_memstream.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t))
    open_memstream.restype = ctypes.c_void_p
    malloc_info.argtypes, fclose.argtypes = (ctypes.c_int, ctypes.c_void_p), (ctypes.c_void_p,)
    # A chunk bigger than a request is split and its rest freed again: a few rounds take those too.
    for _ in range(3):
        buf, size = ctypes.c_void_p(), ctypes.c_size_t()
        stream = open_memstream(ctypes.byref(buf), ctypes.byref(size))
        if not stream:
            return
        malloc_info(0, stream)
        fclose(stream)
        text = ctypes.string_at(buf.value, size.value) if buf.value else b""
        free(buf.value)
        main_heap = text.split(b'<heap nr="0">', 1)[-1].split(b"</heap>", 1)[0]
        bins = [(int(low), int(count)) for low, count in _MALLOC_FREE.findall(main_heap)]
        if not any(count for _, count in bins):
            return
        for low, count in bins:
            if low >= _PAGE:
                # Pages that trim_heap gave back would come back to hold a header: in every process.
                continue
            # A chunk's size (reported with its flag bits) less its 8-byte header: a request it fits exactly.
            request = max((low & ~15) - 8, 24)
            for _ in range(count):
                malloc(request)
