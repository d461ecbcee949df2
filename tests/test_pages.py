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
