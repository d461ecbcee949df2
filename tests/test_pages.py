"""release_zero_pages: the zeroed pages of a new object go back to the kernel, and nothing it holds changes."""

from __future__ import annotations

import asyncio
import mmap
import socket
import struct
import sys
from typing import Any

import pytest

from actorloop._pages import release_zero_pages

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="drops pages on Linux only")

PAGE = mmap.PAGESIZE


def _resident(obj: object) -> int:
    """How many of the pages that lie wholly inside ``obj`` are in memory (from /proc/self/pagemap)."""
    start = id(obj)
    first = -(-start // PAGE) * PAGE
    end = (start + type(obj).__basicsize__) // PAGE * PAGE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first // PAGE * 8)
        entries = struct.unpack(f"{(end - first) // PAGE}Q", f.read((end - first) // PAGE * 8))
    return sum(1 for e in entries if e >> 63)


def _big_slotted() -> Any:
    """A fixed-size object of about 24 KiB whose slots start empty (NULL: zero bytes)."""
    # Zero-padded names: CPython lays slots out in sorted order.
    cls = type("Big", (), {"__slots__": tuple(f"s{i:04d}" for i in range(3000))})
    return cls()


def test_only_the_pages_that_hold_zeros_are_dropped_and_the_object_is_unchanged() -> None:
    obj = _big_slotted()
    obj.s0005 = "first"
    obj.s1500 = "middle"  # 12 KiB in: in a page that lies wholly inside the object
    start = id(obj)
    whole = range(-(-start // PAGE) * PAGE, (start + type(obj).__basicsize__) // PAGE * PAGE, PAGE)
    # CPython: slot i is the pointer at 16 + 8 * i (after the reference count and the type).
    holding = {(start + 16 + 8 * i) // PAGE * PAGE for i in (5, 1500)} & set(whole)
    assert len(whole) >= 4 and _resident(obj) == len(whole)

    dropped = release_zero_pages(obj)

    assert dropped == len(whole) - len(holding)
    assert _resident(obj) == len(holding)
    assert obj.s0005 == "first"
    assert obj.s1500 == "middle"
    with pytest.raises(AttributeError):
        _ = obj.s2500  # an empty slot reads back empty
    obj.s2500 = "later"  # a dropped page is given again once written
    assert obj.s2500 == "later"


def test_a_new_uvloop_loop_gives_back_its_receive_buffer_and_still_reads() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert release_zero_pages(loop) >= 256_000 // PAGE - 2
        assert _resident(loop) <= 2

        async def echo_through_a_socket() -> bytes:
            a, b = socket.socketpair()
            reader, writer = await asyncio.open_connection(sock=a)
            b.sendall(b"x" * 100_000)  # read into the receive buffer, over the dropped pages
            b.close()
            data = await reader.read()
            writer.close()
            return data

        assert loop.run_until_complete(echo_through_a_socket()) == b"x" * 100_000
    finally:
        loop.close()


def test_an_object_of_variable_size_is_left_alone() -> None:
    assert release_zero_pages(bytes(10 * PAGE)) == 0


def _free_small_blocks() -> dict[int, int]:
    """Free blocks in the pools in use, by block size (sys._debugmallocstats)."""
    from actorloop._pages import _debug_malloc_stats

    free: dict[int, int] = {}
    for line in _debug_malloc_stats().splitlines():
        fields = line.split()
        if len(fields) == 5 and all(f.isdigit() for f in fields):
            free[int(fields[1])] = int(fields[4])
        elif free:
            break
    return free


def _free_malloc_bytes() -> int:
    """Bytes in the free chunks below a page of glibc's main heap (malloc_info), not counting its top.

    (``fill_heap_holes`` leaves larger ones: pages that trim_heap gave back would come back.)
    """
    import ctypes
    import re

    libc = ctypes.CDLL(None)
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t))
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    libc.free.argtypes = (ctypes.c_void_p,)
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    text = ctypes.string_at(buf.value, size.value)
    libc.free(buf.value)
    heap = text.split(b'<heap nr="0">', 1)[1].split(b"</heap>", 1)[0]
    bins = re.findall(rb'<(?:size|unsorted) from="(\d+)" to="\d+" total="(\d+)"', heap)
    return sum(int(total) for low, total in bins if int(low) < mmap.PAGESIZE)


@pytest.mark.skipif(not hasattr(sys, "_debugmallocstats"), reason="CPython's small-object allocator")
def test_fill_heap_holes_takes_the_free_small_blocks_scattered_among_used_pools() -> None:
    from actorloop._pages import fill_heap_holes

    size = 96
    objs = [bytes(size - sys.getsizeof(b"")) for _ in range(20_000)]
    del objs[::2]  # 10,000 holes of one size, spread over the pools of that size
    per_pool = 16384 // size
    assert _free_small_blocks()[size] > 10 * per_pool

    keep = fill_heap_holes()

    # What is left is at most the untouched end of one fresh pool.
    assert _free_small_blocks().get(size, 0) <= per_pool
    assert sum(len(part) for part in keep) >= 10_000
    del objs


@pytest.mark.skipif(sys.platform != "linux" or not hasattr(__import__("os"), "memfd_create"), reason="glibc")
def test_fill_heap_holes_takes_the_free_chunks_of_the_malloc_heap() -> None:
    import ctypes

    from actorloop._pages import fill_heap_holes

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_info"):
        pytest.skip("not glibc")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    chunks = [libc.malloc(1000) for _ in range(2000)]
    for p in chunks[::2]:
        libc.free(p)  # 1,000 holes of ~1 KiB, between chunks still in use
    assert _free_malloc_bytes() > 900_000

    fill_heap_holes()

    assert _free_malloc_bytes() < 100_000
    # The filled chunks are never freed: the zygote keeps them, as this test process does.
