"""Actor classes, options, handles and methods (actorloop/_handles.py, _meta.py)."""

from __future__ import annotations

import asyncio
import os
import pickle

import pytest

import actorloop

pytestmark = pytest.mark.usefixtures("node")


@actorloop.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.count = start

    def increment(self, by: int = 1) -> int:
        self.count += by
        return self.count

    def read(self) -> int:
        return self.count

    def _private(self) -> None:
        pass


@actorloop.remote
class AsyncInit:
    async def __init__(self, value: int) -> None:
        await asyncio.sleep(0.01)
        self.value = value
        # The constructor runs on the actor's loop: tasks may be started from it.
        self.task = asyncio.get_running_loop().create_task(self._tick())
        self.ticks = 0
        self.ticked = asyncio.Event()

    async def _tick(self) -> None:
        while True:
            self.ticks += 1
            self.ticked.set()
            await asyncio.sleep(0.01)

    async def get(self) -> tuple[int, bool]:
        try:
            await asyncio.wait_for(self.ticked.wait(), 10)  # the task started in __init__ runs
        except asyncio.TimeoutError:
            pass
        return self.value, self.ticks > 0


@actorloop.remote
class Caller:
    async def call_other(self, other: actorloop.ActorHandle, by: int) -> int:
        return await other.increment.remote(by)

    def call_other_sync(self, other: actorloop.ActorHandle, by: int) -> int:
        return actorloop.get(other.increment.remote(by))


def test_create_and_call() -> None:
    c = Counter.remote(5)
    assert actorloop.get(c.increment.remote()) == 6
    assert actorloop.get(c.increment.remote(by=4)) == 10
    assert actorloop.get(c.read.remote()) == 10


def test_direct_instantiation_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"Counter\.remote"):
        Counter()


def test_async_init_runs_on_actor_loop() -> None:
    a = AsyncInit.remote(3)
    assert actorloop.get(a.get.remote()) == (3, True)


def test_unknown_method_fails_in_caller() -> None:
    c = Counter.remote()
    with pytest.raises(AttributeError, match="nope"):
        c.nope.remote()
    with pytest.raises(AttributeError):
        c._private.remote()


def test_unknown_option_is_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="bogus"):
        Counter.options(bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        actorloop.remote(bogus=1)


def test_ray_resource_options_are_accepted() -> None:
    c = Counter.options(num_cpus=1, num_gpus=0, resources={"x": 1}, memory=10).remote()
    assert actorloop.get(c.increment.remote()) == 1


@pytest.mark.parametrize(
    "opts",
    [
        {"max_concurrency": 0},
        {"name": ""},
        {"lifetime": "forever"},
        {"concurrency_groups": {"io": 0}},
        {"max_restarts": -2},
        {"http_port": 70000},
    ],
)
def test_bad_option_values_raise_value_error(opts: dict) -> None:
    with pytest.raises(ValueError):
        Counter.options(**opts)


def test_remote_on_neither_class_nor_function_is_clear_type_error() -> None:
    # Functions are remote functions now (tests/ray_compat/test_tasks.py); anything else is refused.
    with pytest.raises(TypeError, match="class or a function"):
        actorloop.remote(object())


def test_handle_passed_to_another_actor_which_calls_it() -> None:
    c = Counter.remote()
    caller = Caller.remote()
    assert actorloop.get(caller.call_other.remote(c, 2)) == 2
    assert actorloop.get(caller.call_other_sync.remote(c, 3)) == 5
    assert actorloop.get(c.read.remote()) == 5


def test_handle_pickles_and_equals() -> None:
    c = Counter.remote()
    copy = pickle.loads(pickle.dumps(c))
    assert copy == c and hash(copy) == hash(c)
    assert actorloop.get(copy.increment.remote()) == 1


def test_ready_resolves_to_none() -> None:
    c = Counter.remote()
    assert actorloop.get(c.ready()) is None


def test_refs_as_arguments_are_resolved() -> None:
    c = Counter.remote()
    first = c.increment.remote(10)
    assert actorloop.get(c.increment.remote(first)) == 20
    assert actorloop.get(c.increment.remote(by=c.read.remote())) == 40


def test_failed_ref_argument_fails_the_call() -> None:
    @actorloop.remote
    class Failing:
        def boom(self) -> None:
            raise KeyError("missing")

        def echo(self, x: object) -> object:
            return x

    f = Failing.remote()
    with pytest.raises(KeyError):
        actorloop.get(f.echo.remote(f.boom.remote()))
    # and the actor is fine
    assert actorloop.get(f.echo.remote(1)) == 1


def test_actor_runs_in_its_own_process() -> None:
    @actorloop.remote
    class Pid:
        def pid(self) -> int:
            return os.getpid()

    a, b = Pid.remote(), Pid.remote()
    pa, pb = actorloop.get([a.pid.remote(), b.pid.remote()])
    assert len({pa, pb, os.getpid()}) == 3


def test_class_defined_in_closure_ships_by_value() -> None:
    offset = 100

    @actorloop.remote
    class Local:
        def add(self, x: int) -> int:
            return x + offset

    assert actorloop.get(Local.remote().add.remote(1)) == 101


def test_actor_classes_keep_their_names() -> None:
    assert Counter.__name__ == "Counter"
    assert "Counter" in repr(Counter.remote())
