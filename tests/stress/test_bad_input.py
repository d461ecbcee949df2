"""Bad input through the API: each a clear error at the right place, the actor unharmed.

Right place: in the caller at once (``.remote()``, ``.options()``) when the
caller can tell; as the call's error (a ``TaskError`` that is also the
original class) when only the actor can.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from typing import Any

import numpy as np
import pytest

import actorloop
from actorloop import SerializationError, TaskError

from ._common import rss_mib

pytestmark = pytest.mark.usefixtures("node")

MiB = 1 << 20


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


def _explode(*_: Any) -> Any:
    raise RuntimeError("this object refuses to be unpickled")


class _FailsToLoad:
    """Pickles fine, raises when unpickled (on the other side)."""

    def __reduce__(self) -> Any:
        return (_explode, ())


@actorloop.remote
class Victim:
    def __init__(self) -> None:
        self.calls = 0

    def ping(self) -> int:
        self.calls += 1
        return os.getpid()

    def two(self, a: int, b: int) -> int:
        return a + b

    def kw_only(self, *, key: int) -> int:
        return key

    def digest(self, data: Any) -> tuple[int, str]:
        view = memoryview(data).cast("B")
        return view.nbytes, hashlib.sha256(view).hexdigest()

    def echo(self, data: Any) -> Any:
        return data

    def make_big(self, n: int) -> bytes:
        return b"\xab" * n

    def make_array(self, n: int) -> np.ndarray:
        return np.full(n, 7, dtype=np.uint8)

    def lock(self) -> Any:
        return threading.Lock()

    def generator(self) -> Any:
        return (i for i in range(3))

    def fails_to_load(self) -> Any:
        return _FailsToLoad()

    def rss(self) -> float:
        import psutil

        return psutil.Process().memory_info().rss / MiB


@actorloop.remote
class AsyncVictim:
    async def ping(self) -> int:
        return os.getpid()

    async def two(self, a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    async def lock(self) -> Any:
        return threading.Lock()


@pytest.fixture(scope="module")
def victim() -> Any:
    v = Victim.remote()
    v.pid = actorloop.get(v.ping.remote(), timeout=30)
    yield v
    actorloop.kill(v)


def _unharmed(v: Any) -> None:
    assert actorloop.get(v.ping.remote(), timeout=10) == v.pid
    assert actorloop.get(v.two.remote(1, 2), timeout=10) == 3


def test_unpicklable_arguments_raise_in_the_caller(victim: Any) -> None:
    for bad in (threading.Lock(), (i for i in range(3)), _Unpicklable(), {"nested": [threading.Lock()]}):
        with pytest.raises(SerializationError, match="could not pickle the arguments of Victim.echo"):
            victim.echo.remote(bad)
        with pytest.raises(SerializationError):
            victim.echo.remote(data=bad)
    _unharmed(victim)


def test_unpicklable_arguments_from_async_code(victim: Any) -> None:
    async def main() -> None:
        with pytest.raises(SerializationError):
            victim.echo.remote(threading.Lock())
        assert await victim.two.remote(2, 3) == 5

    asyncio.run(main())
    _unharmed(victim)


@pytest.mark.parametrize("cls", [Victim, AsyncVictim], ids=["sync", "async"])
def test_unpicklable_result_is_the_calls_error(cls: Any) -> None:
    v = cls.remote()
    with pytest.raises(SerializationError, match="could not pickle the result of"):
        actorloop.get(v.lock.remote(), timeout=10)
    assert actorloop.get(v.two.remote(2, 2), timeout=10) == 4
    actorloop.kill(v)


def test_unpicklable_generator_result(victim: Any) -> None:
    with pytest.raises(SerializationError):
        actorloop.get(victim.generator.remote(), timeout=10)
    _unharmed(victim)


def test_argument_that_fails_to_unpickle_in_the_actor(victim: Any) -> None:
    with pytest.raises(TaskError) as info:
        actorloop.get(victim.echo.remote(_FailsToLoad()), timeout=10)
    assert "refuses to be unpickled" in str(info.value)
    _unharmed(victim)


def test_big_argument_that_fails_to_unpickle_in_the_actor(victim: Any) -> None:
    """The same with a shared-memory buffer in the frame: still that call's error, not a dead connection."""
    with pytest.raises(TaskError, match="refuses to be unpickled"):
        actorloop.get(victim.echo.remote((np.zeros(1 << 20), _FailsToLoad())), timeout=10)
    _unharmed(victim)


def test_result_that_fails_to_unpickle_in_the_caller(victim: Any) -> None:
    """The caller cannot read the answer: that call fails, the others on the same connection do not."""
    ref = victim.fails_to_load.remote()
    after = victim.two.remote(5, 5)
    with pytest.raises(SerializationError, match="refuses to be unpickled"):
        actorloop.get(ref, timeout=10)
    assert actorloop.get(after, timeout=10) == 10
    _unharmed(victim)


def test_missing_methods_fail_in_the_caller(victim: Any) -> None:
    for name in ("nope", "_private", "__init__", "__class__", "calls"):
        with pytest.raises(AttributeError, match=None if name.startswith("_") else name):
            getattr(victim, name).remote()
    _unharmed(victim)


@pytest.mark.parametrize("cls", [Victim, AsyncVictim], ids=["sync", "async"])
def test_wrong_argument_counts_are_type_errors_from_the_actor(cls: Any) -> None:
    v = cls.remote()
    calls = [
        lambda: v.two.remote(),
        lambda: v.two.remote(1),
        lambda: v.two.remote(1, 2, 3),
        lambda: v.two.remote(1, b=2, c=3),
        lambda: v.two.remote(1, a=2),
        lambda: v.ping.remote(1),
    ]
    for make in calls:
        with pytest.raises(TypeError) as info:
            actorloop.get(make(), timeout=10)
        assert isinstance(info.value, TaskError), f"{info.value!r} is not a TaskError"
        assert "Remote traceback" in str(info.value)
    assert actorloop.get(v.two.remote(b=1, a=2), timeout=10) == 3
    actorloop.kill(v)


def test_keyword_only_method(victim: Any) -> None:
    with pytest.raises(TypeError):
        actorloop.get(victim.kw_only.remote(1), timeout=10)
    assert actorloop.get(victim.kw_only.remote(key=4), timeout=10) == 4


def test_huge_arguments_and_results(victim: Any, report: Any) -> None:
    size = 64 * MiB
    blob = os.urandom(1 << 16) * (size >> 16)
    array = np.frombuffer(blob, dtype=np.uint8).copy()
    expect = (size, hashlib.sha256(blob).hexdigest())
    t0 = time.monotonic()
    assert actorloop.get(victim.digest.remote(blob), timeout=60) == expect  # bytes: in the frame
    t_bytes = time.monotonic() - t0
    t0 = time.monotonic()
    assert actorloop.get(victim.digest.remote(array), timeout=60) == expect  # numpy: shared memory
    t_array = time.monotonic() - t0
    assert actorloop.get(victim.digest.remote(bytearray(blob)), timeout=60) == expect
    back = actorloop.get(victim.echo.remote(array), timeout=60)
    assert isinstance(back, np.ndarray) and np.array_equal(back, array)
    assert actorloop.get(victim.make_big.remote(size), timeout=60) == b"\xab" * size
    got = actorloop.get(victim.make_array.remote(size), timeout=60)
    assert got.nbytes == size and int(got[0]) == 7 and int(got[-1]) == 7

    async def many(data: np.ndarray) -> list[tuple[int, str]]:
        return await asyncio.gather(*[victim.digest.remote(data) for _ in range(4)])

    assert asyncio.run(many(array)) == [expect] * 4
    _unharmed(victim)
    report("64 MiB bytes argument round trip (s)", round(t_bytes, 2))
    report("64 MiB numpy argument round trip (s)", round(t_array, 2))
    del blob, array, back, got
    assert actorloop.get(victim.rss.remote(), timeout=10) < 1024, "the actor kept the huge arguments"


def test_huge_constructor_arguments() -> None:
    blob = b"\x01" * (50 * MiB)
    v = Victim.remote()
    w = actorloop.remote(_Holder).remote(blob)
    assert actorloop.get(w.size.remote(), timeout=60) == len(blob)
    actorloop.get(v.ping.remote(), timeout=10)
    actorloop.kill(w)
    actorloop.kill(v)


class _Holder:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def size(self) -> int:
        return len(self.blob)


@pytest.mark.parametrize(
    "opts, error, match",
    [
        ({"name": ""}, ValueError, "name must be a non-empty string"),
        ({"name": "x" * 257}, ValueError, "the limit is 256"),
        ({"name": "x" * 100_000}, ValueError, "the limit is 256"),
        ({"name": 5}, ValueError, "name must be a non-empty string"),
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": "n" * 257}, ValueError, "namespace"),
        ({"nmae": "typo"}, TypeError, "unknown option 'nmae'"),
        ({"max_concurency": 3}, TypeError, "unknown option 'max_concurency'"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"max_restarts": -2}, ValueError, "max_restarts"),
        ({"max_pending_calls": "many"}, ValueError, "max_pending_calls"),
        ({"lifetime": "forever"}, ValueError, "lifetime"),
        ({"concurrency_groups": {"io": 0}}, ValueError, "positive integer limit"),
        ({"concurrency_groups": ["io"]}, TypeError, "concurrency_groups"),
        ({"concurrency_groups": {"": 1}}, ValueError, "non-empty"),
    ],
)
def test_bad_options_fail_in_the_caller(opts: dict[str, Any], error: type, match: str) -> None:
    before = len(actorloop.list_actors())
    with pytest.raises(error, match=match):
        Victim.options(**opts).remote()
    assert len(actorloop.list_actors()) == before, "a refused actor was registered anyway"


def test_longest_name_is_fine_and_names_are_exact() -> None:
    name = "n" * 256
    a = Victim.options(name=name).remote()
    assert actorloop.get_actor(name)._actor_id == a._actor_id
    with pytest.raises(ValueError, match="already taken"):
        Victim.options(name=name).remote()
    for lookup in ("", "n" * 255, "n" * 257, name + " "):
        with pytest.raises(ValueError):
            actorloop.get_actor(lookup)
    odd = "名前 with spaces/and\\slashes\x00nul"
    b = Victim.options(name=odd).remote()
    assert actorloop.get_actor(odd)._actor_id == b._actor_id
    actorloop.kill(a)
    actorloop.kill(b)


def test_unknown_groups() -> None:
    @actorloop.remote
    class Grouped:
        @actorloop.method(concurrency_group="io")
        async def fetch(self) -> int:
            return 1

    with pytest.raises(ValueError, match="'io'"):
        Grouped.remote()  # the method's group is not declared
    g = Grouped.options(concurrency_groups={"io": 2}).remote()
    with pytest.raises(ValueError, match="unknown concurrency group 'nope'"):
        g.fetch.options(concurrency_group="nope").remote()
    assert actorloop.get(g.fetch.remote(), timeout=10) == 1
    actorloop.kill(g)


def test_instantiating_or_calling_directly(victim: Any) -> None:
    with pytest.raises(TypeError, match=r"Victim\.remote\("):
        Victim()
    with pytest.raises(TypeError, match=r"\.remote\("):
        victim.ping()
    with pytest.raises(TypeError):
        actorloop.get("not a ref")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        actorloop.kill("not a handle")  # type: ignore[arg-type]


def test_constructor_that_fails_on_bad_arguments() -> None:
    # __init__ takes none: the caller gets the TypeError at once, as in Ray, and no actor is started.
    before = len(actorloop.list_actors())
    with pytest.raises(TypeError, match=r"Victim\.remote\(\)"):
        Victim.remote(1, 2, 3)
    assert len(actorloop.list_actors()) == before


def test_burst_of_bad_calls_leaves_the_actor_serving(victim: Any, report: Any) -> None:
    """Thousands of calls that fail in every way, interleaved with good ones: every good one answers."""
    n = 2_000
    refs = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            refs.append((victim.two.remote(i), TypeError))
        elif kind == 1:
            refs.append((victim.lock.remote(), SerializationError))
        elif kind == 2:
            refs.append((victim.echo.remote(_FailsToLoad()), TaskError))
        else:
            refs.append((victim.two.remote(i, 1), i + 1))
    for ref, expect in refs:
        if isinstance(expect, type):
            with pytest.raises(expect):
                actorloop.get(ref, timeout=20)
        else:
            assert actorloop.get(ref, timeout=20) == expect
    _unharmed(victim)
    report("bad calls in a burst, actor unharmed", n * 3 // 4)
    report("actor RSS after the bad-input tests (MiB)", round(actorloop.get(victim.rss.remote()), 1))
    report("driver RSS after the bad-input tests (MiB)", round(rss_mib(os.getpid()), 1))
