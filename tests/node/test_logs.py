"""Actor output as the driver shows it: one prefix per line (nested actors too), or JSON records."""

from __future__ import annotations

import json
import re

import pytest

import actorloop

from ._helpers import env_for, run_script, write_script

NESTED = """
import sys
import actorloop

@actorloop.remote
class Child:
    def hi(self):
        print("child out", flush=True)
        print("child err", file=sys.stderr, flush=True)
        return 1

@actorloop.remote
class Parent:
    def __init__(self):
        self.child = Child.options(name="kid").remote()
    async def go(self):
        print("parent out", flush=True)
        return await self.child.hi.remote()

actorloop.init(log_format=sys.argv[1], namespace="logs")
p = Parent.remote()
assert actorloop.get(p.go.remote()) == 1
actorloop.shutdown()  # delivers the actors' last lines before it returns
"""


def _run_nested(tmp_path, log_format: str):  # type: ignore[no-untyped-def]
    result = run_script(write_script(tmp_path, "nested.py", NESTED), env_for(), log_format)
    assert result.returncode == 0, result.stderr
    return result


def test_an_actor_created_by_an_actor_gets_one_prefix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _run_nested(tmp_path, "text")
    out = result.stdout.splitlines()
    assert len(out) == 2, result.stdout
    assert re.fullmatch(r"\(Parent pid=\d+\) parent out", out[0]), out
    assert re.fullmatch(r"\(Child pid=\d+\) child out", out[1]), out
    assert re.fullmatch(r"\(Child pid=\d+\) child err", result.stderr.strip()), result.stderr


def test_json_log_lines_carry_actor_id_class_name_pid_stream_and_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = _run_nested(tmp_path, "json")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    err = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(r["class"], r["name"], r["stream"], r["message"]) for r in out] == [
        ("Parent", None, "stdout", "parent out"),
        ("Child", "kid", "stdout", "child out"),
    ]
    assert [(r["class"], r["stream"], r["message"]) for r in err] == [("Child", "stderr", "child err")]
    for r in out + err:
        assert set(r) == {"time", "actor_id", "class", "name", "namespace", "pid", "stream", "message"}
        assert re.fullmatch(r"[0-9a-f]{12}", r["actor_id"])
        assert isinstance(r["pid"], int) and r["namespace"] == "logs"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"])
    assert out[0]["actor_id"] != out[1]["actor_id"] and out[1]["actor_id"] == err[0]["actor_id"]


def test_a_bad_log_format_is_refused_before_anything_starts() -> None:
    actorloop.shutdown()
    with pytest.raises(ValueError, match='log_format must be "text" or "json", got \'xml\''):
        actorloop.init(log_format="xml")
    assert not actorloop.is_initialized()


def test_the_kept_log_format_round_trips_any_line() -> None:
    from actorloop._node._logs import kept_chunk, parse_kept

    texts = ["plain", "@looks like a header", "1 starts with a mark", "", "ünïcödé \t\r tabs"]
    data = kept_chunk(1700000000.25, 42, 1, texts) + kept_chunk(1700000001.5, None, 2, ["err"])
    records = parse_kept(data.decode().split("\n"))  # as `actorloop logs` splits: on newlines only
    assert records == [(1700000000.25, 42, 1, t) for t in texts] + [(1700000001.5, None, 2, "err")]
