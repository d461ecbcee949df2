"""ActorPool.map*(progress=True): a tqdm bar when tqdm is installed, a one-line text bar otherwise."""

from __future__ import annotations

import asyncio
import builtins
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import actorloop
from actorloop.util import ActorPool


@actorloop.remote
class Doubler:
    def double(self, v: int) -> int:
        return 2 * v


@pytest.fixture(scope="module", autouse=True)
def node() -> Iterator[None]:
    actorloop.init(address="local")
    yield
    actorloop.shutdown()


@pytest.fixture(scope="module")
def pool() -> ActorPool[Any]:
    return ActorPool([Doubler.remote() for _ in range(2)])


def double(a: Any, v: int) -> Any:
    return a.double.remote(v)


@pytest.fixture
def no_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tqdm`` fail, as where it is not installed."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "tqdm" or m.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_map_with_tqdm_shows_its_bar_to_the_total(pool: ActorPool[Any], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    assert list(pool.map(double, range(7), progress=True)) == [2 * v for v in range(7)]
    err = capsys.readouterr().err
    # tqdm's own bar: the label, the count out of the total, the percentage.
    assert "ActorPool.map: 100%" in err
    assert "7/7" in err


def test_map_async_with_tqdm(pool: ActorPool[Any], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")

    async def main() -> list[int]:
        return [v async for v in pool.map_async(double, [1, 2, 3], progress=True)]

    assert asyncio.run(main()) == [2, 4, 6]
    err = capsys.readouterr().err
    assert "ActorPool.map_async: 100%" in err and "3/3" in err


def test_without_tqdm_a_text_bar_counts_up_on_stderr(
    pool: ActorPool[Any], no_tqdm: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sorted(pool.map_unordered(double, range(5), progress=True)) == [0, 2, 4, 6, 8]
    out, err = capsys.readouterr()
    assert out == ""
    states = [s for s in err.split("\r") if s]
    assert states[0].startswith("ActorPool.map_unordered: 0/5 [0%]")
    assert re.fullmatch(r"ActorPool\.map_unordered: 5/5 \[100%\] \d+\.\ds\n", states[-1]), states[-1]
    counts = [int(re.match(r"ActorPool\.map_unordered: (\d+)/5", s).group(1)) for s in states]  # type: ignore[union-attr]
    assert counts == sorted(counts)


def test_without_tqdm_async_too(pool: ActorPool[Any], no_tqdm: None, capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> list[int]:
        return [v async for v in pool.map_unordered_async(double, [1, 2], progress=True)]

    assert sorted(asyncio.run(main())) == [2, 4]
    last = capsys.readouterr().err.split("\r")[-1]
    assert re.fullmatch(r"ActorPool\.map_unordered_async: 2/2 \[100%\] \d+\.\ds\n", last), last


def test_a_failing_item_ends_the_bar_with_a_newline(no_tqdm: None, capsys: pytest.CaptureFixture[str]) -> None:
    @actorloop.remote
    class Picky:
        def check(self, v: int) -> int:
            if v == 2:
                raise ValueError("two")
            return v

    pool = ActorPool([Picky.remote()])
    results = pool.map(lambda a, v: a.check.remote(v), [1, 2, 3], progress=True)
    with pytest.raises(actorloop.exceptions.TaskError):
        list(results)
    err = capsys.readouterr().err
    assert err.endswith("\n") and "ActorPool.map: 1/3" in err


def test_no_progress_prints_nothing(pool: ActorPool[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert list(pool.map(double, [1, 2])) == [2, 4]
    assert capsys.readouterr() == ("", "")


def test_progress_must_be_a_bool(pool: ActorPool[Any]) -> None:
    with pytest.raises(TypeError, match="progress must be True or False, got 'yes'"):
        pool.map(double, [1], progress="yes")  # type: ignore[arg-type]
