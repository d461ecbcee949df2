"""The core API on both backends (the ``backend`` fixture): the same program, the same results.

Where Ray cannot do what the local node does, the test says so with a skip or
xfail naming the difference, which docs/ray_backend.md lists.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

import actorloop
from actorloop.exceptions import ActorDiedError, GetTimeoutError, TaskCancelledError, TaskError


@actorloop.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    def increment(self, by: int = 1) -> int:
        self.count += by
        return self.count

    def add(self, a: int, b: int = 0) -> int:
        return a + b

    def fail(self) -> None:
        raise ValueError("boom")

    def call_other(self, other: actorloop.ActorHandle) -> int:
        return actorloop.get(other.increment.remote())

    def stop(self) -> str:
        actorloop.exit_actor()
        return "unreachable"

    def make_and_call(self) -> int:
        # An actor that creates an actor and calls a remote function: on Ray this runs in a Ray worker.
        inner = Counter.remote(40)
        return actorloop.get(inner.increment.remote()) + actorloop.get(square.remote(1))

    def whoami(self) -> tuple[str, str]:
        ctx = actorloop.get_runtime_context()
        return ctx.get_actor_id(), ctx.namespace


@actorloop.remote(concurrency_groups={"io": 2})
class Async:
    def __init__(self) -> None:
        self.cancelled = 0
        self.arrived = 0

    async def echo(self, x: object) -> object:
        return x

    async def meet(self, n: int) -> int:
        # Returns once n calls are inside at once: needs max_concurrency >= n.
        self.arrived += 1
        deadline = time.monotonic() + 30
        while self.arrived < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.arrived

    async def ask(self, other: actorloop.ActorHandle) -> int:
        # Awaiting another actor's ref on this actor's own loop.
        return await other.increment.remote()  # type: ignore[no-any-return]

    async def forever(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def cancelled_count(self) -> int:
        return self.cancelled

    @actorloop.method(concurrency_group="io")
    async def io(self) -> str:
        return "io"

    @actorloop.method(num_returns=2)
    def pair(self) -> tuple[int, int]:
        return 1, 2


@actorloop.remote
class Broken:
    def __init__(self) -> None:
        raise RuntimeError("constructor failed")

    def ping(self) -> str:
        return "pong"


@actorloop.remote
class Routes:
    def __init__(self) -> None:
        self.hits = 0

    @actorloop.http.get("/hits")
    async def hits_route(self, request: object) -> dict[str, int]:
        self.hits += 1
        return {"hits": self.hits}

    def hits_now(self) -> int:
        return self.hits


@actorloop.remote
def square(x: int) -> int:
    return x * x


@actorloop.remote
async def async_square(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


@actorloop.remote
def square_of_square(x: int) -> int:
    return actorloop.get(square.remote(actorloop.get(square.remote(x))))


@actorloop.remote(num_returns=2)
def divmod_remote(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)


def wait_until(predicate, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- actors, calls, refs ------------------------------------------------------------


def test_call_and_get(backend: str) -> None:
    c = Counter.remote(5)
    ref = c.increment.remote()
    assert isinstance(c, actorloop.ActorHandle)
    assert isinstance(ref, actorloop.ObjectRef)
    assert actorloop.get(ref) == 6
    assert actorloop.get([c.increment.remote(), c.increment.remote(2)]) == [7, 9]
    assert actorloop.get(c.ready()) is None


def test_await_gather_wait_for_and_futures(backend: str) -> None:
    c = Counter.remote()

    async def main() -> tuple[int, int, int, int]:
        values = await asyncio.gather(*[c.increment.remote() for _ in range(100)])
        one = await c.increment.remote()
        two = await asyncio.wait_for(c.increment.remote(), 30)
        three = await c.increment.remote().as_future()
        return max(values), one, two, three

    assert asyncio.run(main()) == (100, 101, 102, 103)
    assert c.increment.remote().future().result(timeout=30) == 104


def test_a_ref_made_in_sync_code_is_awaited_in_a_loop(backend: str) -> None:
    c = Counter.remote()
    ref = c.increment.remote()

    async def main() -> int:
        return await ref

    assert asyncio.run(main()) == 1


def test_wait_ready_in_order_and_timeout(backend: str) -> None:
    a = Async.remote()
    fast = [a.echo.remote(i) for i in range(3)]
    slow = a.forever.remote()
    ready, not_ready = actorloop.wait([*fast, slow], num_returns=3, timeout=30)
    assert ready == fast and not_ready == [slow]
    with pytest.raises(GetTimeoutError):
        actorloop.get(slow, timeout=0.2)
    with pytest.raises(TimeoutError):
        actorloop.get(slow, timeout=0)
    actorloop.cancel(slow)


def test_refs_as_arguments_are_replaced_by_their_values(backend: str) -> None:
    c = Counter.remote()
    a_ref = c.increment.remote(10)
    b_ref = actorloop.put(5)
    assert actorloop.get(c.add.remote(a_ref, b=b_ref)) == 15
    assert actorloop.get(square.remote(b_ref)) == 25


def test_put(backend: str) -> None:
    data = {"a": [1, 2, 3]}
    ref = actorloop.put(data)
    assert isinstance(ref, actorloop.ObjectRef)
    data["a"].append(4)  # the ref holds a copy made at put()
    assert actorloop.get(ref) == {"a": [1, 2, 3]}
    with pytest.raises(TypeError):
        actorloop.put(ref)


def test_num_returns_of_a_method(backend: str) -> None:
    a = Async.remote()
    refs = a.pair.remote()
    assert isinstance(refs, list) and len(refs) == 2
    assert actorloop.get(refs) == [1, 2]
    assert actorloop.get(a.pair.options(num_returns=1).remote()) in ((1, 2), [1, 2])


def test_handles_travel_to_other_actors(backend: str) -> None:
    a, b = Counter.remote(), Counter.remote(100)
    assert actorloop.get(a.call_other.remote(b)) == 101
    assert actorloop.get(b.increment.remote()) == 102


def test_actors_and_tasks_started_from_inside(backend: str) -> None:
    c = Counter.remote()
    assert actorloop.get(c.make_and_call.remote(), timeout=120) == 42
    assert actorloop.get(square_of_square.remote(2), timeout=120) == 16
    assert actorloop.get(Async.remote().ask.remote(c)) == 1


def test_unknown_method_and_direct_instantiation(backend: str) -> None:
    c = Counter.remote()
    with pytest.raises(AttributeError, match="nope"):
        c.nope.remote()
    with pytest.raises(TypeError, match="remote"):
        Counter()
    with pytest.raises(TypeError, match="remote"):
        c.increment()


# -- errors -------------------------------------------------------------------------


def test_task_error_is_also_the_original_class(backend: str) -> None:
    c = Counter.remote()
    with pytest.raises(ValueError, match="boom") as info:
        actorloop.get(c.fail.remote())
    assert isinstance(info.value, TaskError)
    assert isinstance(info.value, actorloop.RayTaskError)
    assert isinstance(info.value.cause, ValueError)

    async def main() -> None:
        await c.fail.remote()

    with pytest.raises(TaskError, match="boom"):
        asyncio.run(main())
    assert actorloop.get(c.increment.remote()) == 1  # the actor lives on


def test_failed_constructor_is_actor_died(backend: str) -> None:
    b = Broken.remote()
    with pytest.raises(ActorDiedError, match="constructor failed"):
        actorloop.get(b.ping.remote(), timeout=60)


# -- names, namespaces, lifetimes ---------------------------------------------------------


def test_names_and_namespaces(backend: str) -> None:
    c = Counter.options(name="named-counter").remote(1)
    actorloop.get(c.ready())
    found = actorloop.get_actor("named-counter")
    assert isinstance(found, actorloop.ActorHandle)
    assert actorloop.get(found.increment.remote()) == 2
    with pytest.raises(ValueError):
        Counter.options(name="named-counter").remote()
    again = Counter.options(name="named-counter", get_if_exists=True).remote()
    assert actorloop.get(again.increment.remote()) == 3
    other = Counter.options(name="named-counter", namespace="elsewhere").remote(50)
    assert actorloop.get(actorloop.get_actor("named-counter", namespace="elsewhere").increment.remote()) == 51
    with pytest.raises(ValueError, match="no-such-actor"):
        actorloop.get_actor("no-such-actor")
    assert "named-counter" in actorloop.util.list_named_actors()
    assert {"name": "named-counter", "namespace": "elsewhere"} in actorloop.util.list_named_actors(all_namespaces=True)
    actorloop.kill(other)
    actorloop.kill(c)


def test_detached_actor_is_found_and_killed(backend: str) -> None:
    d = Counter.options(name="detached-one", namespace="jobs", lifetime="detached").remote()
    assert actorloop.get(d.increment.remote()) == 1
    assert actorloop.get(actorloop.get_actor("detached-one", namespace="jobs").increment.remote()) == 2
    actorloop.kill(d)
    with pytest.raises(ActorDiedError):
        actorloop.get(d.increment.remote(), timeout=60)


def test_runtime_context_inside_an_actor(backend: str) -> None:
    c = Counter.options(name="ctx", namespace="ctx-ns").remote()
    actor_id, namespace = actorloop.get(c.whoami.remote())
    assert actor_id
    assert namespace == actorloop.get_runtime_context().namespace
    actorloop.kill(c)  # a named actor lives on until killed


# -- concurrency ------------------------------------------------------------------------


def test_concurrency_groups_and_max_concurrency(backend: str) -> None:
    a = Async.remote()
    assert actorloop.get(a.io.remote()) == "io"
    assert actorloop.get(a.echo.options(concurrency_group="io").remote(3)) == 3
    with pytest.raises(ValueError, match="nope"):
        a.echo.options(concurrency_group="nope").remote(1)
    # Ten calls inside the actor at once (async default group: max_concurrency 1000).
    assert min(actorloop.get([a.meet.remote(10) for _ in range(10)], timeout=60)) >= 10
    limited = Async.options(max_concurrency=2).remote()
    first = [limited.meet.remote(2) for _ in range(2)]
    assert actorloop.get(first, timeout=60) == [2, 2]


# -- kill, cancel, exit ---------------------------------------------------------------------


def test_kill(backend: str) -> None:
    c = Counter.remote()
    assert actorloop.get(c.increment.remote()) == 1
    actorloop.kill(c)
    with pytest.raises(ActorDiedError):
        actorloop.get(c.increment.remote(), timeout=60)
    with pytest.raises(actorloop.RayActorError):
        actorloop.get(c.increment.remote(), timeout=60)


def test_kill_with_restart(backend: str) -> None:
    c = Counter.options(max_restarts=1).remote(7)
    assert actorloop.get(c.increment.remote()) == 8
    actorloop.kill(c, no_restart=False)

    def restarted() -> bool:
        try:
            return actorloop.get(c.increment.remote(), timeout=60) == 8  # started again with start=7
        except actorloop.RayActorError:
            # A call that met the old process on its way out; on Ray also a call made while the
            # actor restarts (ActorUnavailableError; the local node makes it wait instead).
            return False

    wait_until(restarted, "the restarted actor")


def test_cancel_a_running_coroutine(backend: str) -> None:
    a = Async.remote()
    ref = a.forever.remote()
    actorloop.get(a.echo.remote(0))  # the actor is up
    wait_until(lambda: not actorloop.wait([ref], timeout=0.05)[0], "the call to be running")
    actorloop.cancel(ref)
    with pytest.raises(TaskCancelledError):
        actorloop.get(ref, timeout=60)
    wait_until(lambda: actorloop.get(a.cancelled_count.remote()) == 1, "CancelledError inside the actor")


def test_a_cancelled_awaiting_task_cancels_the_call(backend: str) -> None:
    a = Async.remote()
    actorloop.get(a.echo.remote(0))

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(a.forever.remote(), 0.5)

    asyncio.run(main())
    wait_until(lambda: actorloop.get(a.cancelled_count.remote()) == 1, "CancelledError inside the actor")


def test_cancel_force_is_refused_for_actor_calls(backend: str) -> None:
    a = Async.remote()
    ref = a.forever.remote()
    with pytest.raises(ValueError):
        actorloop.cancel(ref, force=True)
    actorloop.cancel(ref)


def test_exit_actor(backend: str) -> None:
    c = Counter.remote()
    ref = c.stop.remote()
    if backend == "local":
        assert actorloop.get(ref) is None
    else:
        # Ray: the call that exits observes the actor's death (docs/ray_backend.md).
        with pytest.raises(ActorDiedError):
            actorloop.get(ref, timeout=60)
    with pytest.raises(ActorDiedError):
        actorloop.get(c.increment.remote(), timeout=60)


# -- pools and remote functions ---------------------------------------------------------------


def test_actor_pool(backend: str) -> None:
    pool = actorloop.ActorPool([Counter.remote(), Counter.remote()])
    assert list(pool.map(lambda a, v: a.add.remote(v, 1), range(6))) == [1, 2, 3, 4, 5, 6]
    assert sorted(pool.map_unordered(lambda a, v: a.add.remote(v, 10), range(4))) == [10, 11, 12, 13]

    async def main() -> list[int]:
        return [v async for v in pool.map_async(lambda a, v: a.add.remote(v, 100), range(3))]

    assert asyncio.run(main()) == [100, 101, 102]


def test_remote_functions(backend: str) -> None:
    assert actorloop.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    assert actorloop.get(async_square.remote(7)) == 49
    q, r = divmod_remote.remote(17, 5)
    assert actorloop.get([q, r]) == [3, 2]
    assert actorloop.get(square.options(num_cpus=0).remote(3)) == 9

    async def main() -> list[int]:
        return await asyncio.gather(*[square.remote(i) for i in range(3)])

    assert asyncio.run(main()) == [0, 1, 4]


# -- HTTP routes ------------------------------------------------------------------------------


def test_http_routes(backend: str) -> None:
    r = Routes.remote()
    url = r.http_url
    assert url is not None and url.startswith("http://127.0.0.1:")

    def fetch() -> dict[str, int]:
        with urllib.request.urlopen(url + "/hits", timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    wait_until(lambda: _reachable(url), "the actor's HTTP server")
    before = actorloop.get(r.hits_now.remote())
    assert fetch()["hits"] == before + 1
    assert actorloop.get(r.hits_now.remote()) == before + 1
    assert Counter.remote().http_url is None
    # A second handle (found by name, or passed on) names the same server.
    named = Routes.options(name="routes").remote()
    assert actorloop.get_actor("routes").http_url == named.http_url
    actorloop.kill(named)


def test_http_routes_with_restarts(backend: str) -> None:
    if backend == "local":
        r = Routes.options(max_restarts=1).remote()
        assert r.http_url is not None
        actorloop.kill(r)
        return
    with pytest.raises(ValueError, match="max_restarts"):
        Routes.options(max_restarts=1).remote()


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/missing", timeout=5)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def test_is_initialized_and_resources(backend: str) -> None:
    assert actorloop.is_initialized()
    assert actorloop.cluster_resources()["CPU"] >= 1
    assert actorloop.available_resources()["CPU"] >= 0
    assert len(actorloop.nodes()) == 1


# -- limits and pickling -------------------------------------------------------------------------


def test_max_pending_calls(backend: str) -> None:
    a = Async.options(max_pending_calls=1).remote()
    first = a.forever.remote()
    with pytest.raises(actorloop.PendingCallsLimitExceeded):
        a.echo.remote(1)
    actorloop.cancel(first)


def test_an_unpicklable_argument_fails_in_the_caller(backend: str) -> None:
    import threading

    c = Counter.remote()
    with pytest.raises(TypeError) as info:
        c.add.remote(threading.Lock())
    assert isinstance(info.value, actorloop.SerializationError)
    assert actorloop.get(c.increment.remote()) == 1  # the actor lives on


def test_refs_and_handles_inside_a_put_container(backend: str) -> None:
    c = Counter.remote()
    ref = actorloop.put(3)
    box = actorloop.get(actorloop.put({"ref": ref, "handle": c}))
    assert isinstance(box["ref"], actorloop.ObjectRef) and actorloop.get(box["ref"]) == 3
    assert isinstance(box["handle"], actorloop.ActorHandle)
    assert actorloop.get(box["handle"].increment.remote()) == 1


# -- nested refs ---------------------------------------------------------------------------------


@actorloop.remote
class Holder:
    def is_ref(self, box: list[object]) -> bool:
        return isinstance(box[0], actorloop.ObjectRef)

    def get_all(self, refs: list[actorloop.ObjectRef[object]]) -> list[object]:
        return actorloop.get(refs)  # type: ignore[no-any-return]

    def get_deep(self, tree: dict[str, object]) -> list[object]:
        (first, (second, inner)) = tree["a"]  # type: ignore[misc]
        return actorloop.get([first, second, inner["c"]])  # type: ignore[no-any-return]

    def call_and_return(self, other: actorloop.ActorHandle) -> dict[str, object]:
        # A ref made here, returned inside the result: the caller gets a ref, not a value.
        return {"ref": other.increment.remote(), "put": actorloop.put("put here")}

    def return_ref(self, other: actorloop.ActorHandle) -> object:
        return other.increment.remote()


@actorloop.remote
class AsyncHolder:
    async def await_all(self, refs: list[actorloop.ObjectRef[object]]) -> list[object]:
        return [await ref for ref in refs]


@actorloop.remote
def get_nested(refs: dict[str, list[actorloop.ObjectRef[int]]]) -> list[int]:
    return actorloop.get(refs["refs"])  # type: ignore[no-any-return]


@actorloop.remote
def return_nested(x: int) -> list[actorloop.ObjectRef[int]]:
    return [square.remote(x)]


def test_nested_refs_in_arguments_stay_refs_and_resolve_in_the_actor(backend: str) -> None:
    h, c = Holder.remote(), Counter.remote()
    done = c.increment.remote()
    actorloop.get(done)
    assert actorloop.get(h.is_ref.remote([done])) is True
    assert actorloop.get(h.get_all.remote([done, c.increment.remote(), actorloop.put("p")]), timeout=60) == [1, 2, "p"]
    deep = {"a": (c.add.remote(1), [c.add.remote(2), {"c": actorloop.put(3)}])}
    assert actorloop.get(h.get_deep.remote(deep), timeout=60) == [1, 2, 3]
    assert actorloop.get(h.get_all.remote(refs=[c.add.remote(4)]), timeout=60) == [4]  # in kwargs too


def test_nested_refs_are_awaited_in_an_async_actor(backend: str) -> None:
    c = Counter.remote()
    refs = [c.add.remote(i) for i in range(3)]
    assert actorloop.get(AsyncHolder.remote().await_all.remote(refs), timeout=60) == [0, 1, 2]


def test_refs_returned_inside_a_result_stay_refs(backend: str) -> None:
    h, c = Holder.remote(), Counter.remote(10)
    box = actorloop.get(h.call_and_return.remote(c), timeout=60)
    assert isinstance(box["ref"], actorloop.ObjectRef) and isinstance(box["put"], actorloop.ObjectRef)
    assert actorloop.get([box["ref"], box["put"]], timeout=60) == [11, "put here"]
    whole = actorloop.get(h.return_ref.remote(c), timeout=60)
    assert isinstance(whole, actorloop.ObjectRef) and actorloop.get(whole, timeout=60) == 12
    # Passed on to another actor, nested: still a ref there.
    assert actorloop.get(h.get_all.remote([whole]), timeout=60) == [12]


def test_remote_functions_take_and_return_nested_refs(backend: str) -> None:
    assert actorloop.get(get_nested.remote({"refs": [square.remote(3), actorloop.put(4)]}), timeout=60) == [9, 4]
    (ref,) = actorloop.get(return_nested.remote(5), timeout=60)
    assert isinstance(ref, actorloop.ObjectRef) and actorloop.get(ref, timeout=60) == 25


def test_failed_nested_refs_carry_their_error(backend: str) -> None:
    c, h = Counter.remote(), Holder.remote()
    with pytest.raises(ValueError, match="boom"):
        actorloop.get(h.get_all.remote([c.fail.remote()]), timeout=60)


# -- async __init__ ----------------------------------------------------------------------------


@actorloop.remote
class AsyncInit:
    async def __init__(self, value: int) -> None:
        await asyncio.sleep(0)
        self.value = value
        self.loop = id(asyncio.get_running_loop())

    async def read(self) -> tuple[int, bool]:
        return self.value, id(asyncio.get_running_loop()) == self.loop


@actorloop.remote
class AsyncInitFails:
    async def __init__(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async constructor failed")

    async def ping(self) -> str:
        return "pong"


def test_async_init_runs_on_the_actors_loop(backend: str) -> None:
    a = AsyncInit.remote(3)
    assert actorloop.get(a.ready()) is None
    assert actorloop.get(a.read.remote(), timeout=60) == (3, True)
    with pytest.raises(ActorDiedError, match="async constructor failed"):
        actorloop.get(AsyncInitFails.remote().ping.remote(), timeout=60)


# -- streams ---------------------------------------------------------------------------------------


@actorloop.remote
class Producer:
    def __init__(self) -> None:
        self.closed = 0
        self.produced = 0

    def numbers(self, n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    async def evens(self, n: int):  # type: ignore[no-untyped-def]
        for i in range(0, n, 2):
            await asyncio.sleep(0)
            yield i

    def fails_after(self, n: int):  # type: ignore[no-untyped-def]
        yield from range(n)
        raise ValueError("no more")

    async def endless(self):  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                self.produced = i + 1
                yield i
                i += 1
                await asyncio.sleep(0.001)
        finally:
            self.closed += 1

    @actorloop.method(_generator_backpressure_num_objects=2)
    async def windowed(self):  # type: ignore[no-untyped-def]
        for i in range(100):
            self.produced = i + 1
            yield i

    def plain(self) -> int:
        return 1

    async def counts(self) -> tuple[int, int]:
        return self.produced, self.closed

    async def die_after(self, n: int):  # type: ignore[no-untyped-def]
        import os

        for i in range(n):
            yield i
        await asyncio.sleep(0.2)  # the items leave first
        os._exit(1)


@actorloop.remote
def letters(word: str):  # type: ignore[no-untyped-def]
    yield from word


@actorloop.remote
async def async_letters(word: str):  # type: ignore[no-untyped-def]
    for c in word:
        await asyncio.sleep(0)
        yield c


@actorloop.remote
def letters_then_fail(word: str):  # type: ignore[no-untyped-def]
    yield from word
    raise KeyError("out of letters")


def test_stream_sync_forms(backend: str) -> None:
    p = Producer.remote()
    gen = p.numbers.remote(4)
    assert isinstance(gen, actorloop.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, actorloop.ObjectRef) for r in refs)
    assert actorloop.get(refs) == [0, 1, 2, 3]
    gen = p.numbers.options(num_returns="streaming").remote(2)
    assert actorloop.get(next(gen)) == 0 and actorloop.get(next(gen)) == 1
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    assert list(p.evens.remote(6).values()) == [0, 2, 4]
    done = p.numbers.remote(1)
    list(done)
    assert actorloop.get(done.completed(), timeout=60) is None
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        actorloop.get(p.numbers.remote(1))


def test_stream_async_forms(backend: str) -> None:
    p = Producer.remote()

    async def main() -> tuple[list[int], list[int], int]:
        by_ref = [await ref async for ref in p.evens.remote(6)]
        by_value = [v async for v in p.numbers.remote(3).values()]
        gen = p.numbers.remote(1)
        first = await (await gen.__anext__())
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()
        return by_ref, by_value, first

    assert asyncio.run(main()) == ([0, 2, 4], [0, 1, 2], 0)


def test_stream_from_remote_functions(backend: str) -> None:
    assert [actorloop.get(r) for r in letters.remote("abc")] == ["a", "b", "c"]
    assert list(async_letters.remote("xyz").values()) == ["x", "y", "z"]

    async def main() -> list[str]:
        return [v async for v in letters.options(_generator_backpressure_num_objects=1).remote("de").values()]

    assert asyncio.run(main()) == ["d", "e"]


def test_stream_errors_come_at_their_position(backend: str) -> None:
    p = Producer.remote()
    refs = list(p.fails_after.remote(2))
    assert actorloop.get(refs[:2]) == [0, 1] and len(refs) == 3
    with pytest.raises(ValueError, match="no more") as info:
        actorloop.get(refs[2])
    assert isinstance(info.value, TaskError)
    got: list[str] = []
    with pytest.raises(KeyError, match="out of letters"):
        for v in letters_then_fail.remote("ab").values():
            got.append(v)
    assert got == ["a", "b"]

    async def main() -> list[int]:
        seen: list[int] = []
        with pytest.raises(ValueError):
            async for v in p.fails_after.remote(1).values():
                seen.append(v)
        return seen

    assert asyncio.run(main()) == [0]
    assert actorloop.get(p.plain.remote()) == 1  # the actor lives on


def test_stream_wait(backend: str) -> None:
    p = Producer.remote()
    gen = p.numbers.remote(3)
    ready, not_ready = actorloop.wait([gen], timeout=60)
    assert ready == [gen] and not_ready == []
    endless = p.endless.remote()
    ref = p.plain.remote()
    ready, not_ready = actorloop.wait([gen, ref, endless], num_returns=3, timeout=60)
    assert ready == [gen, ref, endless]
    actorloop.cancel(endless)


def test_stream_backpressure(backend: str) -> None:
    p = Producer.remote()
    gen = p.windowed.remote()
    assert actorloop.get(next(gen)) == 0
    # The generator runs at most 2 items ahead of what was consumed: it stops there.
    wait_until(lambda: actorloop.get(p.counts.remote())[0] >= 2, "the generator to run ahead")
    time.sleep(0.5)  # give it the chance to run further (it must not)
    assert actorloop.get(p.counts.remote())[0] <= 4
    assert [actorloop.get(r) for r in gen] == list(range(1, 100))
    per_call = p.endless.options(_generator_backpressure_num_objects=1).remote()
    assert actorloop.get(next(per_call)) == 0
    actorloop.cancel(per_call)
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        p.endless.options(_generator_backpressure_num_objects=0)


def test_stream_cancel_stops_the_generator(backend: str) -> None:
    p = Producer.remote()
    gen = p.endless.remote()
    assert actorloop.get(next(gen)) == 0
    actorloop.cancel(gen)
    outcomes = []
    for ref in gen:
        try:
            outcomes.append(actorloop.get(ref, timeout=60))
        except TaskCancelledError:
            outcomes.append("cancelled")
    assert outcomes and outcomes[-1] == "cancelled"
    wait_until(lambda: actorloop.get(p.counts.remote())[1] == 1, "the generator's finally")
    # Dropping an unfinished generator stops it too.
    dropped = p.endless.remote()
    assert actorloop.get(next(dropped)) == 0
    del dropped
    wait_until(lambda: actorloop.get(p.counts.remote())[1] == 2, "the dropped generator's finally")

    async def main() -> None:
        gen = p.endless.remote()
        await gen.__anext__()

        async def consume() -> None:
            async for _ in gen:
                pass

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), 0.3)  # the consuming task is cancelled

    asyncio.run(main())
    wait_until(lambda: actorloop.get(p.counts.remote())[1] == 3, "the cancelled consumer's stream to stop")
    closing = p.endless.remote()
    assert actorloop.get(next(closing)) == 0
    wait_until(closing.next_ready, "the next item")
    closing.close()
    wait_until(lambda: actorloop.get(p.counts.remote())[1] == 4, "the closed generator's finally")


def test_stream_actor_died_mid_stream(backend: str) -> None:
    p = Producer.remote()
    got: list[int] = []
    with pytest.raises(ActorDiedError):
        for v in p.die_after.remote(2).values():
            got.append(v)
    assert got == [0, 1]


def test_a_stream_cannot_be_pickled(backend: str) -> None:
    import pickle

    p = Producer.remote()
    gen = p.numbers.remote(1)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(gen)
    list(gen)
