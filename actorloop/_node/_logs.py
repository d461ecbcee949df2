"""Actor output: the formats a driver sees, and the file the node keeps for ``actorloop logs``.

A driver sees each line either prefixed, ``(Class pid=N) line``, or as one
JSON object (``init(log_format="json")``)::

    {"time": "...Z", "actor_id": "...", "class": "...", "name": ..., "namespace": "...",
     "pid": N, "stream": "stdout", "message": "..."}

The node keeps every actor's output in ``<node dir>/logs/<actor id>.log``,
in a format that costs no more to write than the prefix: each chunk the
node read starts with a header line ``@<unix time> <pid or ->``, then one
line per output line, ``1`` (stdout) or ``2`` (stderr) followed by the text.
``actorloop logs`` turns it back into plain lines or the JSON records above.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable

__all__ = ["LOG_FORMATS", "KeptParser", "iso_time", "json_head", "json_line", "kept_chunk", "parse_kept"]

#: The formats of actor output a driver can ask for.
LOG_FORMATS = ("text", "json")

# The C string encoder behind json.dumps(..., ensure_ascii=False): one call per line.
_encode_str = json.encoder.encode_basestring


def iso_time(t: float) -> str:
    """``2026-11-29T09:15:39.267142Z``: UTC, ISO 8601, microseconds."""
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def json_head(
    *,
    t: float,
    actor_id: str,
    class_name: str,
    name: str | None,
    namespace: str | None,
    pid: int | None,
    stream_no: int,
) -> str:
    """Every key of a JSON record but the message, as text ending before ``"message"``: built once per chunk."""
    base = {
        "time": iso_time(t),
        "actor_id": actor_id,
        "class": class_name,
        "name": name,
        "namespace": namespace,
        "pid": pid,
        "stream": "stdout" if stream_no == 1 else "stderr",
    }
    return json.dumps(base, ensure_ascii=False)[:-1] + ', "message": '


def json_line(head: str, text: str) -> str:
    """One JSON record (with its newline) from :func:`json_head` and a line of output."""
    return head + _encode_str(text) + "}\n"


def kept_chunk(t: float, pid: int | None, stream_no: int, texts: Iterable[str]) -> bytes:
    """Lines read in one chunk, in the kept-log format."""
    mark = "1" if stream_no == 1 else "2"
    head = f"@{t:.6f} {pid if pid is not None else '-'}\n"
    return (head + "".join(mark + text + "\n" for text in texts)).encode("utf-8", "replace")


class KeptParser:
    """Reads kept-log lines one by one: yields ``(time, pid, stream_no, text)`` for output lines."""

    def __init__(self) -> None:
        self.t = 0.0
        self.pid: int | None = None

    def feed(self, line: str) -> tuple[float, int | None, int, str] | None:
        kind, rest = line[:1], line[1:]
        if kind == "@":
            stamp, _, pid = rest.partition(" ")
            try:
                self.t = float(stamp)
            except ValueError:
                pass
            self.pid = int(pid) if pid.isdigit() else None
            return None
        if kind in ("1", "2"):
            return self.t, self.pid, int(kind), rest
        return None  # not ours (a damaged line): skipped


def parse_kept(lines: Iterable[str]) -> list[tuple[float, int | None, int, str]]:
    """Every output line of kept-log ``lines``, for tests and tools."""
    parser = KeptParser()
    return [rec for rec in (parser.feed(line) for line in lines) if rec is not None]
