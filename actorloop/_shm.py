"""Large pickle-5 buffers through shared-memory segments, and who frees them.

Pickle protocol 5 hands us big contiguous buffers (numpy arrays, and the
top-level ``bytes``/``bytearray`` arguments and results we wrap) separately.
Each one of at least ``OOB_THRESHOLD`` bytes is copied once into a
*segment*: a file in ``SHM_DIR`` (``/dev/shm``, tmpfs: memory, not disk)
taken from this process's pool; the frame carries only its name.  The
receiver maps the file read-only and unpickles straight from the mapping, so
an array arrives with no further copy (and read-only, as in Ray).  When the
receiver's mapping is freed it sends RELEASE back and the writer reuses the
segment: its pages are already allocated, which on small VMs costs more than
the copy itself.

Ownership (DESIGN-shm.md has the full table): the writer's pool owns every
segment it made.  A segment is *busy* from the write until every receiver it
was sent to released it, no caller holds it for a retry, and it is not
waiting to be sent; then it returns to the pool (or, if a connection it was
sent on was lost, so a live peer may still map it, it is removed).  Free
segments idle for ``POOL_IDLE_SECONDS`` are removed by a timer thread, and
the pool keeps at most ``POOL_KEEP_BYTES``.  When the writer dies, the node
removes its segments after ``WRITER_GONE_GRACE``; segments of runs that
were killed whole are swept by the next node start (``sweep_stale_segments``).
When a segment cannot be made (no or full ``/dev/shm``), the buffer travels
in the frame instead.

``actorloop.put`` values (docs/objects.md) use the same segments: the putter
keeps a hold while it maps one itself, a buffer that is exactly such a
mapping is named again instead of copied, and sends are counted per
connection since one put goes to many.  Receivers keep one mapping per
segment and reuse it when the writer reuses the segment (``_MappingCache``).
Pending refs inside a payload add ``=<id>`` entries to its table, which
``SegmentPool.sent`` hands to ``_ref`` (through ``forward_hook``).
"""

from __future__ import annotations

import atexit
import hashlib
import io
import mmap
import os
import pickle
import re
import secrets
import stat
import struct
import sys
import threading
import time
import weakref
from typing import Any, Callable

from ._pickle import Pickler

#: Buffers at least this large travel through shared memory instead of the socket.
OOB_THRESHOLD = 1 << 18
#: Free segments a process keeps for reuse, in bytes; beyond this, released segments are removed.
POOL_KEEP_BYTES = 256 << 20
#: A free segment unused for this long is removed (by a timer thread, armed only while free segments exist).
POOL_IDLE_SECONDS = 5.0
#: A segment written but neither sent nor held after this long is removed (its frame was dropped).
UNSENT_GRACE_SECONDS = 60.0
#: How long the node waits, once a writer left, before removing its segments: frames still in flight
#: to a receiver must be mapped by then (a receiver that mapped one keeps its pages after the unlink).
WRITER_GONE_GRACE = 3.0
#: A write of at least this many bytes that finds no free segment waits up to
#: ``WAIT_FOR_RELEASE_SECONDS`` for one whose receivers are about to release it.
WAIT_FOR_RELEASE_BYTES = 16 << 20
WAIT_FOR_RELEASE_SECONDS = 0.005
#: Segments of dead writers younger than this are left alone by the start-up sweep (a frame may be in flight).
STALE_SEGMENT_AGE = 5.0

#: Where segments live: ``$ACTORLOOP_SHM_DIR`` (read at import; every process of a node must agree),
#: else /dev/shm.  If it is missing or unwritable, large buffers travel in the frame.
SHM_DIR = os.path.abspath(os.environ.get("ACTORLOOP_SHM_DIR") or "/dev/shm")

OOB_MARK = b"B"
_OOB_BYTE = OOB_MARK[0]
_pickle_loads = pickle.loads
_COUNT = struct.Struct("<I")
_SEGMENT = struct.Struct("<HQ")
# actorloop-<node hash>-<client tag>-<writer pid>-<random>; strict: _map_segment opens only such names.
_SEGMENT_NAME = re.compile(r"^actorloop-([0-9a-f]{1,16})-([0-9a-f]{1,16})-([0-9a-f]{1,8})-([0-9a-f]{32})$")
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
_SEGMENT_ROUND = 1 << 20

_shm_prefix = "actorloop-0-0-"

# -- refs inside payloads (``_ref`` registers the hooks; this layer cannot import it) --------
#: A segment-table entry whose name starts with this is no segment but a pending ref the sender
#: fulfils later (``=<forward id>``): ``sent`` hands it to ``forward_hook`` with the connection.
_FORWARD_MARK = "="
#: Called as ``forward_hook(forward_id, conn)`` once a payload naming a pending ref is sent on ``conn``.
forward_hook: Callable[[int, object], None] | None = None
#: Each is called with a connection that was lost (its peer's pending refs fail).
connection_lost_hooks: list[Callable[[object], None]] = []
_local = threading.local()
#: Why the last segment could not be made (for error messages); None while shared memory works.
last_failure: str | None = None


class SegmentError(Exception):
    """A frame names a segment that cannot be mapped (bad name, wrong owner or size, gone)."""


def shm_prefix_for(node_dir: str) -> str:
    """The name prefix of the shared-memory segments of one node (the node removes leftovers)."""
    return f"actorloop-{hashlib.sha256(node_dir.encode()).hexdigest()[:16]}-"


def _client_tag(client_id: str) -> str:
    return "".join(c for c in client_id if c in "0123456789abcdef")[:16] or "0"


def set_shm_prefix(node_dir: str, client_id: str) -> None:
    """Name this process's future segments after its node and client id (see ``remove_segments``)."""
    global _shm_prefix
    _shm_prefix = f"{shm_prefix_for(node_dir)}{_client_tag(client_id)}-"


def remove_segments(node_dir: str, client_id: str | None = None) -> None:
    """Remove the segments of a node (or of one of its clients, once it left)."""
    prefix = shm_prefix_for(node_dir) + (f"{_client_tag(client_id)}-" if client_id is not None else "")
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and _SEGMENT_NAME.match(name):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
            except OSError:
                pass


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    if not 0 < pid <= 0x7FFFFFFF:
        return True  # no process of ours has this pid: leave what names it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not our writer, but keep what names it
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2][1:2] not in (b"Z", b"X")
    except OSError:
        return True  # no /proc: trust kill()


def sweep_stale_segments(min_age: float = STALE_SEGMENT_AGE) -> int:
    """Remove this user's segments whose writer process is dead and that are older than ``min_age`` seconds.

    Run by a starting node: it frees what runs killed whole (driver, node and
    actors at once) left behind.  Returns how many segments it removed.
    """
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    uid = os.getuid()
    now = time.time()
    removed = 0
    for name in names:
        match = _SEGMENT_NAME.match(name)
        if match is None or _pid_alive(int(match.group(3), 16)):
            continue
        path = os.path.join(SHM_DIR, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or now - st.st_mtime < min_age:
                continue
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


# -- the writer's pool ----------------------------------------------------------------


class _Segment:
    __slots__ = ("name", "fd", "size", "sends", "holds", "sent_once", "tainted", "since", "allocated", "wmap")

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name = name
        self.fd = fd
        self.size = size
        # Sends not yet released, per connection (one connection, except for put segments).
        self.sends: dict[object, int] = {}
        self.holds = 0  # callers keeping its payload for a retry; a put segment: +1 while the owner maps it
        self.sent_once = False
        self.tainted = False  # a connection it was sent on was lost: a live peer may map it, never reuse
        self.since = 0.0  # monotonic: when it became busy (unsent) or free (idle)
        self.allocated = 0  # bytes from the start whose pages tmpfs has allocated (written once)
        self.wmap: mmap.mmap | None = None  # our writable mapping, once the segment is reused


class SegmentPool:
    """This process's segments: handed out for sending, tracked per connection, taken back on RELEASE."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # a segment went back to the free list
        self._free: list[_Segment] = []
        self._free_bytes = 0
        self._busy: dict[str, _Segment] = {}
        self._puts: set[str] = set()  # busy segments holding an actorloop.put() value
        self._timer: threading.Timer | None = None
        self._pid = os.getpid()

    # -- writing ------------------------------------------------------------------

    def write(self, raw: memoryview) -> str | None:
        """Copy ``raw`` into a segment and return its name (busy until settled), or None if no segment
        could be made or written (the caller sends the buffer in the frame instead)."""
        global last_failure
        nbytes = raw.nbytes
        segment = self._take(nbytes)
        if segment is None:
            return None
        try:
            if nbytes <= segment.allocated:
                # A reused segment: its pages exist (no SIGBUS if tmpfs is full), and a memcpy into
                # our mapping of them is about twice as fast as pwrite.
                if segment.wmap is None:
                    segment.wmap = mmap.mmap(segment.fd, segment.allocated, flags=mmap.MAP_SHARED)
                segment.wmap[:nbytes] = raw.cast("B") if raw.format != "B" or raw.ndim != 1 else raw
            else:
                # New pages: pwrite reports a full tmpfs as ENOSPC (a write through a mapping would SIGBUS).
                offset = 0
                while offset < nbytes:
                    offset += os.pwrite(segment.fd, raw[offset:], offset)
                if segment.wmap is not None:
                    segment.wmap.close()
                    segment.wmap = None
                segment.allocated = nbytes
        except OSError as exc:  # ENOSPC, EFBIG, EIO: the buffer travels in the frame
            last_failure = f"writing {nbytes} bytes to {SHM_DIR} failed: {exc.strerror or exc}"
            self._discard(segment)
            return None
        except BaseException:
            self._discard(segment)
            raise
        segment.since = time.monotonic()
        with self._lock:
            self._busy[segment.name] = segment
        return segment.name

    def _best_free(self, nbytes: int) -> _Segment | None:
        """(Lock held.)  The smallest free segment that fits ``nbytes`` without wasting half of it."""
        best = None
        for seg in self._free:
            if nbytes <= seg.size <= 2 * nbytes + _SEGMENT_ROUND and (best is None or seg.size < best.size):
                best = seg
        return best

    def _released_soon(self, nbytes: int) -> bool:
        """(Lock held.)  Whether a busy segment that fits is held by nobody here, only by receivers."""
        for seg in self._busy.values():
            if not seg.holds and seg.sends and not seg.tainted and nbytes <= seg.size <= 2 * nbytes + _SEGMENT_ROUND:
                return True
        return False

    def _take(self, nbytes: int) -> _Segment | None:
        global last_failure
        stale: list[_Segment] = []
        with self._lock:
            best = self._best_free(nbytes)
            if best is None and nbytes >= WAIT_FOR_RELEASE_BYTES and self._released_soon(nbytes):
                # Fresh tmpfs pages cost several times the copy; a segment of the right size whose
                # writer let go waits only for receivers' RELEASE frames, already on their way.
                # (On the thread of the loop that reads them the wait is wasted: 5 ms at most.)
                self._freed.wait(WAIT_FOR_RELEASE_SECONDS)
                best = self._best_free(nbytes)
            if best is not None:
                self._free.remove(best)
                self._free_bytes -= best.size
            self._collect_unsent(stale)
        self._discard_all(stale)
        if best is not None:
            best.sends, best.holds, best.sent_once, best.tainted = {}, 0, False, False
            return best
        size = -(-nbytes // _SEGMENT_ROUND) * _SEGMENT_ROUND
        try:
            st = os.statvfs(SHM_DIR)
            if st.f_bavail * st.f_frsize < size:
                # Checked before writing: tmpfs allocates pages as they are written, so a full
                # one fails half-way (and a mapping writer would get SIGBUS).
                last_failure = f"{SHM_DIR} has {st.f_bavail * st.f_frsize} bytes free, {size} needed"
                return None
        except OSError as exc:
            last_failure = f"{SHM_DIR} is not usable: {exc.strerror or exc}"
            return None
        name = f"{_shm_prefix}{os.getpid():x}-{secrets.token_hex(16)}"
        path = os.path.join(SHM_DIR, name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            last_failure = f"cannot create a segment in {SHM_DIR}: {exc.strerror or exc}"
            return None
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            _unlink(path)
            last_failure = f"cannot size a segment in {SHM_DIR}: {exc.strerror or exc}"
            return None
        return _Segment(name, fd, size)

    # -- who still needs a busy segment -----------------------------------------------

    def sent(self, names: list[str], conn: object, delta: int = 1) -> None:
        """``names`` are (``delta=1``) queued or written on connection ``conn``; ``-1`` undoes an unwritten send."""
        forwards = None
        with self._lock:
            for name in names:
                seg = self._busy.get(name)
                if seg is None:
                    if name[:1] == _FORWARD_MARK and delta > 0:
                        forwards = forwards or []
                        forwards.append(name)
                    continue
                count = max(0, seg.sends.get(conn, 0) + delta)
                if count:
                    seg.sends[conn] = count
                else:
                    seg.sends.pop(conn, None)
                # An undone send (nothing written) leaves it unsent: its payload is still on its way.
                seg.sent_once = bool(seg.sends) or (seg.sent_once and delta > 0)
        if forwards is not None and forward_hook is not None:
            for name in forwards:
                forward_hook(int(name[1:]), conn)

    def release(self, name: object, conn: object = None) -> None:
        """A receiver (on ``conn``, if known) no longer maps ``name`` (its RELEASE frame)."""
        if not isinstance(name, str):
            return
        with self._lock:
            seg = self._busy.get(name)
            if seg is None:
                return
            seg.sent_once = True
            sends = seg.sends
            if conn not in sends:  # receiver's connection unknown: count it against any
                conn = next(iter(sends), None)
            if conn in sends:
                sends[conn] -= 1
                if sends[conn] <= 0:
                    del sends[conn]
            discard = self._settle(seg)
        if discard is not None:
            self._discard(discard)

    def connection_lost(self, conn: object) -> None:
        """``conn`` is gone: what was sent on it and not released may still be mapped by a live peer,
        so it is never reused; it is removed at once unless a caller holds it for a retry."""
        for hook in connection_lost_hooks:
            hook(conn)
        with self._lock:
            if not self._busy:
                return
            lost = [seg for seg in self._busy.values() if conn in seg.sends]
            gone = []
            for seg in lost:
                del seg.sends[conn]
                seg.tainted = True
                discard = self._settle(seg)
                if discard is not None:
                    gone.append(discard)
        self._discard_all(gone)

    def hold(self, names: list[str]) -> None:
        """A caller keeps these segments' payload to send it again (a retry): do not free them."""
        with self._lock:
            for name in names:
                seg = self._busy.get(name)
                if seg is not None:
                    seg.holds += 1

    def unhold(self, names: list[str]) -> None:
        """The caller no longer keeps the payload: free the segments once no receiver maps them."""
        gone = []
        with self._lock:
            for name in names:
                seg = self._busy.get(name)
                if seg is not None and seg.holds > 0:
                    seg.holds -= 1
                    discard = self._settle(seg)
                    if discard is not None:
                        gone.append(discard)
        self._discard_all(gone)

    def adopt_put(self, names: list[str]) -> None:
        """These fresh segments hold an ``actorloop.put()`` value: kept (a hold) until the owner's mapping
        of it is gone (``map_own_put``), then freed like any segment once receivers released it."""
        with self._lock:
            for name in names:
                seg = self._busy.get(name)
                if seg is not None:
                    seg.holds += 1
                    seg.sent_once = True
                    self._puts.add(name)

    def lock_free_now(self) -> bool:
        """Whether the pool's lock is free at this instant (a finalizer's test before it frees directly)."""
        if not self._lock.acquire(blocking=False):
            return False
        self._lock.release()
        return True

    def is_put(self, name: str) -> bool:
        """Whether ``name`` is a live put segment of this process."""
        return name in self._puts

    def unused(self, names: list[str]) -> None:
        """Segments written for a frame that will never be sent (its pickling failed): back to the pool."""
        gone = []
        with self._lock:
            for name in names:
                seg = self._busy.get(name)
                if seg is not None and not seg.sent_once and not seg.holds:
                    discard = self._settle(seg, dropped=True)
                    if discard is not None:
                        gone.append(discard)
        self._discard_all(gone)

    def _settle(self, seg: _Segment, dropped: bool = False) -> _Segment | None:
        """(Lock held.)  If nothing needs ``seg`` any more, free it; returns it if it must be removed.

        A segment never sent is still needed (its payload may be on its way to a send), unless
        ``dropped``: its writer says the payload is gone; else ``_collect_unsent`` removes it later.
        """
        if seg.holds or seg.sends or not (seg.sent_once or dropped):
            return None
        self._puts.discard(seg.name)
        del self._busy[seg.name]
        if seg.tainted or self._free_bytes + seg.size > POOL_KEEP_BYTES:
            return seg
        seg.since = time.monotonic()
        self._free.append(seg)
        self._free_bytes += seg.size
        self._freed.notify_all()
        self._arm()
        return None

    def _collect_unsent(self, out: list[_Segment]) -> None:
        """(Lock held.)  Segments written long ago for frames that were dropped before leaving."""
        if not self._busy:
            return
        limit = time.monotonic() - UNSENT_GRACE_SECONDS
        for seg in list(self._busy.values()):
            if not seg.sent_once and not seg.holds and seg.since < limit:
                del self._busy[seg.name]
                out.append(seg)

    # -- trimming idle memory ---------------------------------------------------------

    def _arm(self) -> None:
        """(Lock held.)  Start the trim timer if it is not running."""
        if self._timer is None:
            timer = threading.Timer(POOL_IDLE_SECONDS / 2, self.trim)
            timer.daemon = True
            timer.name = "actorloop-shm-trim"
            self._timer = timer
            timer.start()

    def trim(self, idle: float | None = None) -> None:
        """Remove free segments idle for ``idle`` seconds (default ``POOL_IDLE_SECONDS``); re-arm while any stay."""
        limit = time.monotonic() - (POOL_IDLE_SECONDS if idle is None else idle)
        with self._lock:
            if self._pid != os.getpid():
                return
            old = [seg for seg in self._free if seg.since <= limit]
            if old:
                self._free = [seg for seg in self._free if seg.since > limit]
                self._free_bytes = sum(seg.size for seg in self._free)
            self._collect_unsent(old)
            if threading.current_thread() is self._timer:
                self._timer = None
            if self._free:
                self._arm()
        self._discard_all(old)

    # -- ending -----------------------------------------------------------------------------

    def _discard(self, segment: _Segment) -> None:
        if segment.wmap is not None:
            _close_mapping(segment.wmap)
            segment.wmap = None
        try:
            os.close(segment.fd)
        except OSError:
            pass
        _unlink(os.path.join(SHM_DIR, segment.name))

    def _discard_all(self, segments: list[_Segment]) -> None:
        for segment in segments:
            self._discard(segment)

    def close(self) -> None:
        """Remove every segment (receivers keep the mappings they hold)."""
        with self._lock:
            if self._pid != os.getpid():
                return
            segments = self._free + list(self._busy.values())
            self._free, self._busy, self._free_bytes = [], {}, 0
            self._puts.clear()
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._discard_all(segments)

    def _after_fork_in_child(self) -> None:
        """A forked child starts with an empty pool: the segments (and the timer thread) are the parent's."""
        if not (self._free or self._busy or self._puts or self._timer is not None or self._lock.locked()):
            # Nothing of the parent's to forget, as in the zygote and every actor it forks: building a
            # new lock and condition here would write to pages they share (about 90 KiB per process).
            self._pid = os.getpid()
            return
        for seg in self._free + list(self._busy.values()):
            try:
                os.close(seg.fd)  # our copy of the descriptor only
            except OSError:
                pass
            if seg.wmap is not None:
                _close_mapping(seg.wmap)  # our copy of the mapping only
        self.__init__()  # type: ignore[misc]

    def put_segments(self) -> int:
        """How many put segments this process keeps: for tests."""
        with self._lock:
            return len(self._puts)

    def stats(self) -> tuple[int, int, int]:
        """(free segments, free bytes, busy segments): for tests and debugging."""
        with self._lock:
            return len(self._free), self._free_bytes, len(self._busy)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


segment_pool = SegmentPool()
atexit.register(segment_pool.close)
os.register_at_fork(after_in_child=lambda: segment_pool._after_fork_in_child())


# -- payloads: the segment table ahead of the pickle ------------------------------------


def skip_table(data: bytes | memoryview) -> int:
    """Where the pickle starts in a payload (after its segment table, if it has one)."""
    if data[:1] != OOB_MARK:
        return 0
    (count,) = _COUNT.unpack_from(data, 1)
    pos = 1 + _COUNT.size
    for _ in range(count):
        name_len, _size = _SEGMENT.unpack_from(data, pos)
        pos += _SEGMENT.size + name_len
    return pos


def _entries(payload: bytes) -> list[tuple[str, int]]:
    """Every (name, size) of a payload's buffer table, forward entries included (none for in-band)."""
    if payload[:1] != OOB_MARK:
        return []
    (count,) = _COUNT.unpack_from(payload, 1)
    pos = 1 + _COUNT.size
    entries = []
    for _ in range(count):
        name_len, size = _SEGMENT.unpack_from(payload, pos)
        pos += _SEGMENT.size
        entries.append((payload[pos : pos + name_len].decode(), size))
        pos += name_len
    return entries


def segment_names(payload: bytes) -> list[str]:
    """The names of the segments a payload refers to (none for an in-band payload)."""
    return [name for name, _ in _entries(payload)]


def segment_table(payload: bytes) -> list[tuple[str, int]]:
    """The (name, size) of each segment a payload maps, in buffer order (forward entries left out)."""
    return [(name, size) for name, size in _entries(payload) if name[:1] != _FORWARD_MARK]


def hold_payload(payload: bytes) -> bool:
    """Keep ``payload``'s segments for a resend (a retry) until ``unhold_payload``; True if it has any."""
    if payload[:1] != OOB_MARK:
        return False
    segment_pool.hold(segment_names(payload))
    return True


def unhold_payload(payload: bytes) -> None:
    """The caller no longer keeps ``payload`` for a resend."""
    if payload[:1] == OOB_MARK:
        segment_pool.unhold(segment_names(payload))


class _Binary:
    """A large top-level ``bytes``/``bytearray`` argument or result, pickled as a buffer (out of band)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes | bytearray) -> None:
        self.value = value

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        rebuild = _rebuild_bytes if type(self.value) is bytes else _rebuild_bytearray
        return rebuild, (pickle.PickleBuffer(self.value),)


def _rebuild_bytes(buf: Any) -> bytes:
    return buf if type(buf) is bytes else bytes(buf)


def _rebuild_bytearray(buf: Any) -> bytearray:
    return bytearray(buf)  # a copy: a real, writable bytearray, whatever the receiver maps


def is_big_binary(value: Any) -> bool:
    """Whether ``value`` is a ``bytes``/``bytearray`` large enough to travel through shared memory."""
    return (type(value) is bytes or type(value) is bytearray) and len(value) >= OOB_THRESHOLD


def wrap_big_binary(value: Any) -> Any:
    """``value``, wrapped to travel out of band if it is a large ``bytes``/``bytearray``."""
    return _Binary(value) if is_big_binary(value) else value


def pending_forwards() -> list[int] | None:
    """While ``dumps_with_buffers`` pickles a payload, the list to which a pending ref adds its forward id
    (the payload's sender then fulfils it); None elsewhere (a pending ref cannot be pickled there)."""
    return getattr(_local, "forwards", None)


#: This process's own mappings of its put segments: ``id(mapping)`` -> (mapping, name, size).  A buffer
#: that *is* one of them (an array ``get(put_ref)`` returned) is sent by name, not copied again.
_own_mappings: dict[int, tuple[weakref.ref[mmap.mmap], str, int]] = {}
_own_by_name: dict[str, int] = {}


def map_own_put(name: str, size: int, post: Callable[..., object]) -> memoryview:
    """Map our own put segment ``name`` read-only for the owner's value, and remember the mapping.

    Not populated: the owner often never reads its own copy back.  Once the
    mapping is gone (the put ref dropped, and every value ``get`` returned
    from it) the segment goes back to the pool as soon as its receivers
    released it; ``post(fn, *args)`` runs ``fn`` on a loop (for when the
    finalizer runs on a thread that holds the pool's lock).
    """
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    key = id(mapping)
    _own_mappings[key] = (weakref.ref(mapping), name, size)
    _own_by_name[name] = key
    weakref.finalize(mapping, _own_mapping_gone, key, name, post).atexit = False
    return memoryview(mapping)


def _own_mapping_gone(key: int, name: str, post: Callable[..., object]) -> None:
    entry = _own_mappings.get(key)
    if entry is not None and entry[1] == name:
        del _own_mappings[key]
    if _own_by_name.get(name) == key:
        del _own_by_name[name]
    if segment_pool.lock_free_now():
        segment_pool.unhold([name])
    else:
        post(segment_pool.unhold, [name])


def _own_segment_of(raw: memoryview) -> str | None:
    """The name of our live put segment whose whole mapping ``raw`` is, if it is one."""
    obj: Any = raw.obj
    for _ in range(8):  # ndarray.base / memoryview.obj chains are short
        if obj is None:
            return None
        entry = _own_mappings.get(id(obj))
        if entry is not None and entry[0]() is obj:
            name = entry[1]
            if raw.nbytes == entry[2] and segment_pool.is_put(name):
                return name
            return None
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
    return None


def dumps_with_buffers(msg: Any, forwarding: bool = True) -> tuple[bytes, list[str], str | None]:
    """Pickle ``msg`` (cloudpickle, protocol 5), large buffers through segments.

    Returns the payload, the names of the segments it made (busy until sent
    and released; ``segment_pool.unused`` gives them back if the payload is
    dropped before it is sent), and why a large buffer had to travel in the
    frame (None if none did).  A buffer that is one of our put segments is
    named, not copied; pending refs inside ``msg`` add table entries that
    ``SegmentPool.sent`` hands to ``forward_hook`` (unless not ``forwarding``:
    then they cannot be pickled).
    """
    table: list[bytes] = []
    names: list[str] = []
    fallback: list[str] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: pickle copies it in-band
            return True
        if raw.nbytes < OOB_THRESHOLD:
            return True
        name = _own_segment_of(raw) if _own_mappings else None
        if name is None:
            name = segment_pool.write(raw)
            if name is None:
                fallback.append(last_failure or "no segment")
                return True  # no segment: this buffer travels in the frame
            names.append(name)
        encoded = name.encode()
        table.append(_SEGMENT.pack(len(encoded), raw.nbytes) + encoded)
        return False

    outer = getattr(_local, "forwards", None)
    forwards: list[int] = []
    _local.forwards = forwards if forwarding else None
    try:
        with io.BytesIO() as file:
            Pickler(file, protocol=5, buffer_callback=out_of_band).dump(msg)
            data = file.getvalue()
    except BaseException:
        segment_pool.unused(names)
        raise
    finally:
        _local.forwards = outer
    for forward_id in forwards:
        encoded = f"{_FORWARD_MARK}{forward_id}".encode()
        table.append(_SEGMENT.pack(len(encoded), 0) + encoded)
    why = fallback[0] if fallback else None
    if not table:
        return data, names, why
    return b"".join([OOB_MARK, _COUNT.pack(len(table)), *table, data]), names, why


# -- the receiver -----------------------------------------------------------------------


class _MappingCache:
    """A receiver's mappings whose users all let go, by segment name, kept for a while.

    A writer reuses its segments (same file, same pages), so the next frame
    often names a segment this process mapped before: reusing the mapping
    saves mapping and faulting in every page again (for 100 MiB, more than
    the copy into the segment costs).  No user ever sees the bytes change:
    a mapping is cached only once its last user is gone, and the writer
    reuses a segment only after our RELEASE.  Lock-free (dict operations
    are atomic): ``put`` runs in finalizers, on any thread.
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[mmap.mmap, int, float]] = {}
        self.timer: threading.Timer | None = None

    def take(self, name: str, size: int) -> mmap.mmap | None:
        entry = self.entries.pop(name, None)
        if entry is None:
            return None
        if entry[1] < size:
            _close_mapping(entry[0])
            return None
        return entry[0]

    def put(self, name: str, mapping: mmap.mmap, size: int) -> None:
        self.entries[name] = (mapping, size, time.monotonic())
        total = 0
        for key, (old, old_size, _) in sorted(self.entries.items(), key=lambda kv: -kv[1][2]):
            total += old_size
            if total > POOL_KEEP_BYTES and self.entries.pop(key, None) is not None:
                _close_mapping(old)
        if self.timer is None:
            timer = threading.Timer(POOL_IDLE_SECONDS, self.trim)
            timer.daemon = True
            timer.name = "actorloop-shm-unmap"
            self.timer = timer
            timer.start()

    def trim(self, idle: float | None = None) -> None:
        """Unmap what was not reused for ``idle`` seconds (its writer may have removed the file: the pages
        stay allocated while we map them)."""
        limit = time.monotonic() - (POOL_IDLE_SECONDS if idle is None else idle)
        for key, (old, _, since) in list(self.entries.items()):
            if since <= limit and self.entries.pop(key, None) is not None:
                _close_mapping(old)
        self.timer = None
        if self.entries and threading.current_thread().name == "actorloop-shm-unmap":
            timer = threading.Timer(POOL_IDLE_SECONDS, self.trim)
            timer.daemon = True
            timer.name = "actorloop-shm-unmap"
            self.timer = timer
            timer.start()

    def clear(self) -> None:
        for key in list(self.entries):
            entry = self.entries.pop(key, None)
            if entry is not None:
                _close_mapping(entry[0])


def _close_mapping(mapping: mmap.mmap) -> None:
    try:
        mapping.close()
    except BufferError:
        pass


mapping_cache = _MappingCache()
#: Mappings in use, by segment name: [mapping, size, users].  Frames naming the same segment (one put
#: value passed to many calls) share one mapping.  An RLock: its users' finalizers may run inside it.
_live: dict[str, list[Any]] = {}
_live_lock = threading.RLock()


def _forget_after_fork() -> None:
    if mapping_cache.entries:
        mapping_cache.entries.clear()
    if _live:
        _live.clear()
    # Reset in place (as the standard library resets its own locks in a child): a new lock would
    # write to more of the pages the child still shares with its parent.
    _live_lock._at_fork_reinit()  # type: ignore[attr-defined]


os.register_at_fork(after_in_child=_forget_after_fork)


def _use_mapping(name: str, size: int) -> mmap.mmap:
    with _live_lock:
        entry = _live.get(name)
        if entry is not None and entry[1] >= size:
            entry[2] += 1
            return entry[0]  # type: ignore[no-any-return]
    mapping = mapping_cache.take(name, size) or _map_new(name, size)
    with _live_lock:
        entry = _live.get(name)
        if entry is None:
            _live[name] = [mapping, size, 1]
            return mapping
    # Another use of a different size mapped it meanwhile: this one keeps a mapping of its own.
    return mapping


def _released(name: str, mapping: mmap.mmap, size: int, on_release: Callable[[str], None]) -> None:
    with _live_lock:
        entry = _live.get(name)
        shared = entry is not None and entry[0] is mapping
        if shared:
            entry[2] -= 1  # type: ignore[index]
            if entry[2] > 0:  # type: ignore[index]
                mapping = None  # type: ignore[assignment]
            else:
                del _live[name]
    if mapping is not None:
        mapping_cache.put(name, mapping, size)
    on_release(name)


def map_segment(name: str, size: int, on_release: Callable[[str], None] | None) -> memoryview:
    """Map segment ``name`` read-only; ``on_release(name)`` runs once nothing uses the mapping."""
    numpy = sys.modules.get("numpy")
    if on_release is not None and numpy is not None:
        # One mapping per segment, reused from one frame to the next (see _MappingCache); each use
        # gets its own view object, whose death is the RELEASE.
        mapping = _use_mapping(name, size)
        user = numpy.frombuffer(mapping, dtype=numpy.uint8, count=size)
        weakref.finalize(user, _released, name, mapping, size, on_release).atexit = False
        return memoryview(user)
    mapping = _map_new(name, size)
    if on_release is None:
        _unlink(os.path.join(SHM_DIR, name))
    else:
        # Freed with the last object that uses it (the array, often much later).
        weakref.finalize(mapping, on_release, name).atexit = False
    return memoryview(mapping)


def _map_new(name: str, size: int) -> mmap.mmap:
    if not _SEGMENT_NAME.match(name):
        raise SegmentError(f"bad shared-memory segment name {name!r}")
    path = os.path.join(SHM_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SegmentError(
            f"cannot open shared-memory segment {name} in {SHM_DIR}: {exc.strerror or exc} (every process "
            "of a node must see the same $ACTORLOOP_SHM_DIR)"
        ) from exc
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or not stat.S_ISREG(st.st_mode) or st.st_size < size:
            raise SegmentError(f"shared-memory segment {name} is not what the frame announced")
        # Read-only: a receiver never writes into the sender's bytes, so a caller that sends the
        # same payload again (a retry) always sends intact bytes.
        mapping = mmap.mmap(fd, size, flags=_MAP_FLAGS, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return mapping


def inbound_connection() -> object:
    """While ``loads`` unpickles a payload with segments or pending refs: the connection it came on
    (the owner of ``on_release``), else None."""
    return getattr(_local, "inbound", None)


def loads(data: bytes, on_release: Callable[[str], None] | None = None) -> Any:
    """Unpickle a payload, mapping its segments if it has any.

    ``on_release(name)`` runs (on any thread) once a mapped segment is no
    longer used, to hand it back to its writer; without it the segment is
    removed at once.
    """
    if data[0] != _OOB_BYTE:  # an int compare, not a slice: every frame comes here
        return _pickle_loads(data)
    (count,) = _COUNT.unpack_from(data, 1)
    pos = 1 + _COUNT.size
    views = []
    try:
        for _ in range(count):
            name_len, size = _SEGMENT.unpack_from(data, pos)
            pos += _SEGMENT.size
            name = data[pos : pos + name_len].decode()
            pos += name_len
            if name[:1] != _FORWARD_MARK:
                views.append(map_segment(name, size, on_release))
    except (struct.error, UnicodeDecodeError) as exc:
        raise SegmentError(f"bad buffer table: {exc}") from exc
    outer = getattr(_local, "inbound", None)
    _local.inbound = getattr(on_release, "__self__", None)
    try:
        return pickle.loads(memoryview(data)[pos:], buffers=views)
    finally:
        _local.inbound = outer
