"""ObjectRef, get, wait: sync and async callers on any loop (actorloop/_ref.py, _api.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import anyio
import pytest

import actorloop

pytestmark = pytest.mark.usefixtures("node")


@actorloop.remote
class Echo:
    def echo(self, x: object) -> object:
        return x

    def sleep(self, t: float) -> float:
        time.sleep(t)
        return t


@actorloop.remote
class AsyncEcho:
    async def echo(self, x: object) -> object:
        return x

    async def sleep(self, t: float) -> float:
        await asyncio.sleep(t)
        return t


@actorloop.remote
class Relay:
    """Awaits refs of another actor on its own loop."""

    async def gather(self, other: actorloop.ActorHandle, n: int) -> list:
        return list(await asyncio.gather(*[other.echo.remote(i) for i in range(n)]))


@pytest.fixture(scope="module")
def echo() -> actorloop.ActorHandle:
    return Echo.remote()


@pytest.fixture(scope="module")
def aecho() -> actorloop.ActorHandle:
    return AsyncEcho.remote()


def test_get_single_and_list(echo: actorloop.ActorHandle) -> None:
    assert actorloop.get(echo.echo.remote(1)) == 1
    assert actorloop.get([echo.echo.remote(i) for i in range(5)]) == [0, 1, 2, 3, 4]
    assert actorloop.get([]) == []


def test_get_rejects_non_refs() -> None:
    with pytest.raises(TypeError):
        actorloop.get(5)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        actorloop.get([5])  # type: ignore[list-item]


def test_get_timeout_raises_get_timeout_error(echo: actorloop.ActorHandle) -> None:
    ref = echo.sleep.remote(0.5)
    with pytest.raises(actorloop.GetTimeoutError):
        actorloop.get(ref, timeout=0.05)
    assert isinstance(actorloop.GetTimeoutError(), TimeoutError)
    assert actorloop.get(ref) == 0.5


def test_get_inside_running_loop_returns_the_value(echo: actorloop.ActorHandle) -> None:
    # Issue 11 replaced SPEC section 4's RuntimeError: get() blocks and returns, as Ray's does
    # (tests/ray_compat/test_get_in_loop.py has the rest).
    async def main() -> None:
        ref = echo.echo.remote(1)
        assert actorloop.get(ref) == 1
        assert await ref == 1

    asyncio.run(main())


def test_wait_returns_ready_and_not_ready_in_order(aecho: actorloop.ActorHandle) -> None:
    slow = aecho.sleep.remote(60)  # runs until it is cancelled below: never ready in this test
    fast = [aecho.echo.remote(i) for i in range(3)]
    refs = [slow, *fast]
    ready, not_ready = actorloop.wait(refs, num_returns=3, timeout=5)
    assert ready == fast and not_ready == [slow]
    ready, not_ready = actorloop.wait(refs, num_returns=4, timeout=0.05)
    assert slow in not_ready and len(ready) == 3
    actorloop.cancel(slow)


def test_wait_validates_input(echo: actorloop.ActorHandle) -> None:
    ref = echo.echo.remote(1)
    with pytest.raises(ValueError):
        actorloop.wait([ref], num_returns=2)
    with pytest.raises(TypeError):
        actorloop.wait([1])  # type: ignore[list-item]


def test_gather_10000_async_actor(aecho: actorloop.ActorHandle) -> None:
    async def main() -> list:
        return list(await asyncio.gather(*[aecho.echo.remote(i) for i in range(10_000)]))

    assert asyncio.run(main()) == list(range(10_000))


def test_gather_10000_sync_actor(echo: actorloop.ActorHandle) -> None:
    async def main() -> list:
        return list(await asyncio.gather(*[echo.echo.remote(i) for i in range(10_000)]))

    assert asyncio.run(main()) == list(range(10_000))


def test_refs_are_asyncio_futures_of_their_loop(aecho: actorloop.ActorHandle) -> None:
    async def main() -> None:
        ref = aecho.echo.remote(1)
        assert asyncio.isfuture(ref)  # gather takes it without wrapping it in a task
        assert await ref == 1

    asyncio.run(main())


def test_wait_for_and_ensure_future(aecho: actorloop.ActorHandle) -> None:
    async def main() -> None:
        assert await asyncio.wait_for(aecho.echo.remote(3), 5) == 3
        fut = asyncio.ensure_future(aecho.echo.remote(4))
        assert await fut == 4
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aecho.sleep.remote(5), 0.05)
        done, _ = await asyncio.wait([aecho.echo.remote(5)])
        assert [d.result() for d in done] == [5]

    asyncio.run(main())


def test_ref_made_in_sync_code_awaited_in_another_loop(aecho: actorloop.ActorHandle) -> None:
    single = aecho.echo.remote("x")
    many = [aecho.echo.remote(i) for i in range(10)]

    async def main() -> tuple:
        a = await single
        b = await asyncio.gather(*many)
        c = await asyncio.wait_for(aecho.echo.remote(1), 5)
        return a, list(b), c

    assert asyncio.run(main()) == ("x", list(range(10)), 1)


def test_await_on_a_threads_own_loop(aecho: actorloop.ActorHandle) -> None:
    results: list = []

    def worker(k: int) -> None:
        async def main() -> list:
            return list(await asyncio.gather(*[aecho.echo.remote(k * 100 + i) for i in range(100)]))

        results.append(asyncio.run(main()))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(x for r in results for x in r) == sorted(k * 100 + i for k in range(4) for i in range(100))


def test_sync_get_from_many_threads(echo: actorloop.ActorHandle) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda i: actorloop.get(echo.echo.remote(i)), range(200)))
    assert out == list(range(200))


def test_refs_awaited_inside_another_actor(aecho: actorloop.ActorHandle) -> None:
    relay = Relay.remote()
    assert actorloop.get(relay.gather.remote(aecho, 500)) == list(range(500))


def test_ref_future_is_concurrent_future(echo: actorloop.ActorHandle) -> None:
    fut = echo.echo.remote(9).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=5) == 9


def test_refs_work_under_anyio(aecho: actorloop.ActorHandle) -> None:
    async def main() -> list:
        out: list = []
        async with anyio.create_task_group() as tg:
            for i in range(5):

                async def one(i: int = i) -> None:
                    out.append(await aecho.echo.remote(i))

                tg.start_soon(one)
        return sorted(out)

    assert anyio.run(main) == [0, 1, 2, 3, 4]


def test_objectref_nested_stays_a_ref(echo: actorloop.ActorHandle) -> None:
    # Ray's rule: only top-level refs are replaced by their values (tests/ray_compat/test_objects.py has the rest).
    ref = echo.echo.remote(1)
    (back,) = actorloop.get(echo.echo.remote([ref]))
    assert isinstance(back, actorloop.ObjectRef) and actorloop.get(back) == 1


@pytest.mark.asyncio
async def test_pytest_asyncio_loop(aecho: actorloop.ActorHandle) -> None:
    assert await aecho.echo.remote(11) == 11
