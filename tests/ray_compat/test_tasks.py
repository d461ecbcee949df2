"""Remote functions and put (actorloop/_tasks.py, _api.put): Ray's task API on the pool of task workers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

import actorloop
from actorloop._tasks import TASKS_NAMESPACE, pool_size

pytestmark = pytest.mark.usefixtures("node")

#: A hang guard only (a deadlock fails the test instead of stalling the run), never a timing assertion.
HANG_GUARD = 60


@actorloop.remote
def add(a: int, b: int = 0) -> int:
    return a + b


@actorloop.remote
def pid() -> int:
    return os.getpid()


@actorloop.remote(num_returns=2)
def divmod_task(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)


@actorloop.remote
def fail(message: str) -> None:
    raise ValueError(message)


@actorloop.remote
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.001)
    return a + b


@actorloop.remote
def wait_for_file(path: str) -> str:
    # Polls with a deadline: the test creates the file when it is ready.
    deadline = time.monotonic() + HANG_GUARD
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return "seen"


@actorloop.remote
def parent(x: int) -> int:
    return actorloop.get(add.remote(x, 1)) * 10


@actorloop.remote
def depth(n: int) -> int:
    if n == 0:
        return 0
    return actorloop.get(depth.remote(n - 1)) + 1


@actorloop.remote
def parent_waits(x: int) -> int:
    ref = add.remote(x, 2)
    ready, _ = actorloop.wait([ref], num_returns=1)
    return actorloop.get(ready[0])


def _wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- basics -------------------------------------------------------------------------


def test_remote_returns_a_ref_at_once_and_get_gives_the_value(tmp_path: Path) -> None:
    marker = tmp_path / "go"
    ref = wait_for_file.remote(str(marker))
    assert isinstance(ref, actorloop.ObjectRef)
    assert not ref.done()  # the task cannot have finished: it waits for the marker we create only now
    marker.touch()
    assert actorloop.get(ref, timeout=HANG_GUARD) == "seen"
    assert actorloop.get(add.remote(2, b=3)) == 5
    assert actorloop.get([add.remote(i, i) for i in range(100)]) == [2 * i for i in range(100)]


def test_remote_function_keeps_the_function_name_and_doc() -> None:
    assert add.__name__ == "add"
    assert isinstance(add, actorloop.RemoteFunction)
    assert add.__wrapped__(1, 2) == 3
    assert "RemoteFunction" in repr(add)


def test_calling_a_remote_function_directly_raises_type_error() -> None:
    with pytest.raises(TypeError, match=r"add.remote\(\.\.\.\)"):
        add(1, 2)


def test_remote_with_empty_parentheses_is_refused_as_ray_refuses_it() -> None:
    def f() -> None:
        pass

    # Ray raises AssertionError; ours is that and a TypeError.
    with pytest.raises(AssertionError, match="no arguments and no parentheses"):
        actorloop.remote()(f)
    with pytest.raises(TypeError, match="no arguments and no parentheses"):
        actorloop.remote()


def test_remote_refuses_what_is_neither_class_nor_function() -> None:
    with pytest.raises(TypeError, match="class or a function"):
        actorloop.remote(42)
    with pytest.raises(TypeError, match="class or a function"):
        actorloop.remote(max_retries=1)(len)  # a builtin, not a Python function


def test_remote_function_from_a_plain_call() -> None:
    def triple(x: int) -> int:
        return 3 * x

    f = actorloop.remote(triple)
    assert actorloop.get(f.remote(4)) == 12


def test_async_callers_await_and_gather() -> None:
    async def main() -> list[int]:
        first = await add.remote(1, 1)
        rest = await asyncio.gather(*[add.remote(i, 1) for i in range(200)])
        return [first, *rest]

    assert asyncio.run(main()) == [2, *range(1, 201)]


def test_refs_of_tasks_are_arguments_of_other_tasks() -> None:
    a = add.remote(1, 2)
    b = add.remote(a, b=add.remote(10, 0))
    assert actorloop.get(b) == 13


def test_an_argument_whose_task_failed_fails_the_dependent_task() -> None:
    with pytest.raises(ValueError, match="upstream"):
        actorloop.get(add.remote(fail.remote("upstream"), 1))


def test_a_function_that_cannot_be_pickled_fails_in_the_caller() -> None:
    import threading

    lock = threading.Lock()

    def uses_lock() -> bool:
        return lock.locked()

    f = actorloop.remote(uses_lock)
    with pytest.raises(actorloop.SerializationError, match="uses_lock"):
        f.remote()


def test_an_argument_that_cannot_be_pickled_fails_the_call() -> None:
    import threading

    with pytest.raises(actorloop.SerializationError, match="add"):
        actorloop.get(add.remote(threading.Lock()))


def test_a_result_that_cannot_be_pickled_is_the_call_error_naming_the_function() -> None:
    import threading

    @actorloop.remote
    def returns_lock() -> Any:
        return threading.Lock()

    with pytest.raises(actorloop.SerializationError, match=r"result of returns_lock\(\)"):
        actorloop.get(returns_lock.remote())


# -- options ------------------------------------------------------------------------


def test_decorator_and_call_options() -> None:
    @actorloop.remote(num_cpus=2, num_gpus=0, max_retries=1, memory=1000, resources={"x": 1})
    def one() -> int:
        return 1

    assert actorloop.get(one.remote()) == 1
    ray_task_options = dict(
        num_returns=1,
        num_cpus=0.5,
        num_gpus=0,
        resources={"custom": 1},
        memory=10**6,
        max_retries=0,
        retry_exceptions=False,
        name="one_task",
        scheduling_strategy="SPREAD",
        runtime_env=None,
        enable_task_events=False,
        accelerator_type=None,
        label_selector=None,
        placement_group=None,
    )
    assert actorloop.get(one.options(**ray_task_options).remote()) == 1
    assert actorloop.get(one.options(num_cpus=0).remote()) == 1


def test_unknown_options_raise_type_error_naming_them() -> None:
    with pytest.raises(TypeError, match="'bogus'"):
        add.options(bogus=1)
    with pytest.raises(TypeError, match="'bogus'"):

        @actorloop.remote(bogus=1)
        def f() -> None:
            pass

    with pytest.raises(ValueError, match="num_returns"):
        add.options(num_returns=-1)
    with pytest.raises(ValueError, match="dynamic"):
        add.options(num_returns="dynamic")
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        add.options(_generator_backpressure_num_objects=0)
    with pytest.raises(ValueError, match="max_retries"):
        add.options(max_retries=-2)
    with pytest.raises(ValueError, match="max_calls"):
        add.options(max_calls=1)


def test_options_apply_to_one_call_only() -> None:
    two = divmod_task.options(num_returns=1)
    assert actorloop.get(two.remote(7, 2)) == (3, 1)
    assert actorloop.get(divmod_task.remote(7, 2)) == [3, 1]


def test_runtime_env_env_vars_apply_in_the_task() -> None:
    @actorloop.remote
    def read(name: str) -> str | None:
        return os.environ.get(name)

    env = {"env_vars": {"ACTORLOOP_TASK_TEST": "on"}}
    assert actorloop.get(read.options(runtime_env=env).remote("ACTORLOOP_TASK_TEST")) == "on"
    # Its own workers: the default pool never sees the variable.
    assert actorloop.get(read.remote("ACTORLOOP_TASK_TEST")) is None


def test_runtime_env_other_keys_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'pip'.*env_vars"):
        add.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(TypeError, match="str to str"):
        add.options(runtime_env={"env_vars": {"A": 1}})


# -- num_returns ----------------------------------------------------------------------


def test_num_returns_gives_one_ref_per_value() -> None:
    refs = divmod_task.remote(17, 5)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, actorloop.ObjectRef) for r in refs)
    assert actorloop.get(refs) == [3, 2]
    three = add.options(num_returns=3)
    q, r, s = three.remote([1, 2], [3])
    assert actorloop.get([q, r, s]) == [1, 2, 3]


def test_num_returns_wrong_length_is_the_call_error() -> None:
    refs = add.options(num_returns=2).remote([1, 2, 3], [])
    for ref in refs:
        with pytest.raises(ValueError, match="num_returns=2 but returned 3 values"):
            actorloop.get(ref)


def test_num_returns_zero_returns_none() -> None:
    assert add.options(num_returns=0).remote(1, 2) is None


def test_a_generator_with_num_returns_gives_its_values() -> None:
    @actorloop.remote(num_returns=3)
    def gen() -> Any:
        yield from range(3)

    assert actorloop.get(gen.remote()) == [0, 1, 2]
    with pytest.raises(TypeError, match="async generator"):

        @actorloop.remote(num_returns=2)
        async def agen() -> Any:
            yield 1


# -- errors and retries ----------------------------------------------------------------


def test_errors_are_task_errors_and_instances_of_the_original_class() -> None:
    with pytest.raises(actorloop.TaskError) as info:
        actorloop.get(fail.remote("broken"))
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error.cause, ValueError) and str(error.cause) == "broken"
    # The traceback names the user's function, not the worker's machinery.
    assert "fail() in task worker" in str(error)
    assert "TaskWorker" not in str(error)


@actorloop.remote
def count_attempts_then_fail(path: str) -> None:
    with open(path, "a") as f:
        f.write("x")
    raise KeyError("always")


def test_application_errors_are_not_retried_by_default(tmp_path: Path) -> None:
    path = tmp_path / "attempts"
    with pytest.raises(KeyError):
        actorloop.get(count_attempts_then_fail.options(max_retries=3).remote(str(path)))
    assert path.read_text() == "x"


def test_retry_exceptions_retries_application_errors(tmp_path: Path) -> None:
    path = tmp_path / "attempts"
    with pytest.raises(KeyError):
        actorloop.get(count_attempts_then_fail.options(max_retries=2, retry_exceptions=True).remote(str(path)))
    assert path.read_text() == "xxx"
    path.unlink()
    with pytest.raises(KeyError):
        actorloop.get(count_attempts_then_fail.options(max_retries=2, retry_exceptions=[OSError]).remote(str(path)))
    assert path.read_text() == "x"  # a KeyError is not in the list
    path.unlink()
    with pytest.raises(KeyError):
        actorloop.get(count_attempts_then_fail.options(max_retries=2, retry_exceptions=[KeyError]).remote(str(path)))
    assert path.read_text() == "xxx"


@actorloop.remote
def die_on_first_attempt(marker: str) -> int:
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return os.getpid()


def test_a_task_whose_worker_dies_is_retried_on_another_worker(tmp_path: Path) -> None:
    marker = tmp_path / "died-once"
    second_pid = actorloop.get(die_on_first_attempt.remote(str(marker)), timeout=HANG_GUARD)
    assert int(marker.read_text()) != second_pid
    # The pool heals: every worker answers again.
    assert actorloop.get([add.remote(i) for i in range(20)], timeout=HANG_GUARD) == list(range(20))


def test_a_task_whose_worker_dies_without_retries_raises_actor_died(tmp_path: Path) -> None:
    marker = tmp_path / "died-once"
    with pytest.raises(actorloop.ActorDiedError, match="max_retries=0"):
        actorloop.get(die_on_first_attempt.options(max_retries=0).remote(str(marker)), timeout=HANG_GUARD)
    assert marker.exists()


# -- async functions ---------------------------------------------------------------------


def test_async_functions_run_on_the_workers_loop() -> None:
    assert actorloop.get(async_add.remote(2, 3)) == 5
    assert actorloop.get([async_add.remote(i, 1) for i in range(50)]) == list(range(1, 51))

    @actorloop.remote
    async def awaits_subtask(x: int) -> int:
        return await add.remote(x, 100)

    assert actorloop.get(awaits_subtask.remote(1)) == 101


# -- nesting, and no deadlock while every worker is busy ------------------------------


def test_tasks_call_tasks() -> None:
    assert actorloop.get(parent.remote(4)) == 50
    assert actorloop.get(depth.remote(8), timeout=HANG_GUARD) == 8


@actorloop.remote
class TaskCaller:
    def sync_call(self, x: int) -> int:
        return actorloop.get(parent.remote(x))

    async def async_call(self, x: int) -> int:
        return await add.remote(x, 1)

    def call_function_given(self, f: actorloop.RemoteFunction, x: int) -> Any:
        return actorloop.get(f.remote(x, 2))


def test_actors_call_tasks() -> None:
    caller = TaskCaller.remote()
    assert actorloop.get(caller.sync_call.remote(1)) == 20
    assert actorloop.get(caller.async_call.remote(1)) == 2
    # A remote function is picklable: it travels to the actor and is called there.
    assert actorloop.get(caller.call_function_given.remote(add, 1)) == 3
    actorloop.kill(caller)


def test_get_inside_tasks_while_every_worker_is_busy_does_not_deadlock() -> None:
    # Three times as many parents as workers: each worker's slot is taken by a
    # parent that waits for its child, which queues behind other parents.
    n = 3 * pool_size()
    refs = [parent.remote(i) for i in range(n)]
    assert actorloop.get(refs, timeout=HANG_GUARD) == [(i + 1) * 10 for i in range(n)]
    refs = [parent_waits.remote(i) for i in range(n)]
    assert actorloop.get(refs, timeout=HANG_GUARD) == [i + 2 for i in range(n)]
    refs = [depth.remote(4) for _ in range(n)]
    assert actorloop.get(refs, timeout=HANG_GUARD) == [4] * n


def test_the_pool_is_shared_by_drivers_tasks_and_actors() -> None:
    size = pool_size()

    @actorloop.remote
    def pids_from_inside(k: int) -> list[int]:
        return actorloop.get([pid.remote() for _ in range(k)])

    seen = set(actorloop.get([pid.remote() for _ in range(50)]))
    seen.update(actorloop.get(pids_from_inside.remote(50), timeout=HANG_GUARD))
    # Nested tasks ran on the same workers (named worker-i in the reserved namespace), never on new ones.
    assert 1 <= len(seen) <= size
    names = {a.name for a in actorloop.list_actors()}
    assert not any(n and n.startswith("worker-") for n in names)  # hidden from list_actors()
    handle = actorloop.get_actor("worker-0", namespace=TASKS_NAMESPACE)
    assert handle is not None


def test_calls_from_two_event_loops_both_ship_the_function() -> None:
    # Each loop has its own connection to a worker: the function is sent (again) where it is missing.
    @actorloop.remote
    def fresh(x: int) -> int:
        return x - 1

    async def from_loop() -> list[int]:
        return await asyncio.gather(*[fresh.remote(i) for i in range(20)])

    sync_refs = [fresh.remote(i) for i in range(20)]
    assert asyncio.run(from_loop()) == list(range(-1, 19))
    assert actorloop.get(sync_refs) == list(range(-1, 19))


def test_cancel_a_queued_or_running_task(tmp_path: Path) -> None:
    @actorloop.remote
    async def sleeper() -> str:
        await asyncio.sleep(HANG_GUARD)
        return "finished"

    ref = sleeper.remote()
    actorloop.cancel(ref)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(ref, timeout=HANG_GUARD)
    marker = tmp_path / "never"
    refs = wait_for_file.options(num_returns=1).remote(str(marker))
    actorloop.cancel(refs)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(refs, timeout=HANG_GUARD)
    marker.touch()  # lets the running sync task end (a running sync task finishes; its result is dropped)


def test_init_num_cpus_sets_the_pool_size() -> None:
    actorloop.shutdown()
    actorloop.init(address="local", num_cpus=1)
    try:
        assert len(set(actorloop.get([pid.remote() for _ in range(30)]))) == 1
        # One worker, and still no deadlock when its one slot waits for a subtask.
        assert actorloop.get([parent.remote(i) for i in range(4)], timeout=HANG_GUARD) == [10, 20, 30, 40]
    finally:
        actorloop.shutdown()
        actorloop.init(address="local")
    actorloop.shutdown()
    with pytest.raises(ValueError, match="num_cpus"):
        actorloop.init(address="local", num_cpus=-1)
    with pytest.raises(ValueError, match="num_cpus"):
        actorloop.init(address="local", num_cpus=1.5)
    # Ray's num_cpus=0 (no tasks on this node) still runs tasks here, on one worker.
    actorloop.init(address="local", num_cpus=0)
    try:
        assert pool_size() == 1
        assert actorloop.get(add.remote(1, 1)) == 2
    finally:
        actorloop.shutdown()
        actorloop.init(address="local")


# -- put ---------------------------------------------------------------------------------


@actorloop.remote
class Holder:
    def total(self, values: list[int], extra: int = 0) -> int:
        return sum(values) + extra


def test_put_returns_a_done_ref_usable_everywhere() -> None:
    values = list(range(10))
    ref = actorloop.put(values)
    assert isinstance(ref, actorloop.ObjectRef) and ref.done()
    assert actorloop.get(ref) == values

    async def awaited() -> Any:
        return await ref

    assert asyncio.run(awaited()) == values
    assert actorloop.get(add.remote(actorloop.put(1), b=actorloop.put(2))) == 3
    holder = Holder.remote()
    assert actorloop.get(holder.total.remote(ref, extra=actorloop.put(5))) == 50
    actorloop.kill(holder)


def test_put_copies_the_value() -> None:
    values = [1, 2]
    ref = actorloop.put(values)
    values.append(3)
    assert actorloop.get(ref) == [1, 2]


def test_put_refuses_refs_and_unpicklable_values() -> None:
    import threading

    with pytest.raises(TypeError, match="ObjectRef"):
        actorloop.put(actorloop.put(1))
    with pytest.raises(actorloop.SerializationError):
        actorloop.put(threading.Lock())


def test_put_inside_a_task() -> None:
    @actorloop.remote
    def puts(x: int) -> int:
        return actorloop.get(add.remote(actorloop.put(x), 1))

    assert actorloop.get(puts.remote(41)) == 42


def test_the_pool_heals_after_its_workers_are_killed() -> None:
    assert actorloop.get([add.remote(i) for i in range(10)]) == list(range(10))
    for i in range(pool_size()):
        actorloop.kill(actorloop.get_actor(f"worker-{i}", namespace=TASKS_NAMESPACE))
    # Calls that meet a dead worker are retried on a new one (the dead actor's name is free again).
    assert actorloop.get([add.remote(i) for i in range(10)], timeout=HANG_GUARD) == list(range(10))
    assert actorloop.get_actor("worker-0", namespace=TASKS_NAMESPACE) is not None


class _LoadCounter:
    """Appends a line to ``path`` each time it is unpickled: counts how often a function reached a worker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (_count_load, (self.path,))


def _count_load(path: str) -> _LoadCounter:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return _LoadCounter(path)


def test_the_function_reaches_each_worker_once(tmp_path: Path) -> None:
    path = tmp_path / "loads"
    counter = _LoadCounter(str(path))

    @actorloop.remote
    def uses_counter(x: int) -> int:
        assert counter is not None
        return x

    path.write_text("")
    assert actorloop.get([uses_counter.remote(i) for i in range(200)]) == list(range(200))
    assert actorloop.get([uses_counter.remote(i) for i in range(200)]) == list(range(200))
    loads = path.read_text().split()
    # Unpickled once by each worker that ran it (never per call); the same pid never twice.
    assert 1 <= len(loads) <= pool_size()
    assert len(set(loads)) == len(loads)


def test_a_worker_known_dead_is_replaced_before_a_call_goes_there() -> None:
    from actorloop import _runtime, _tasks

    assert actorloop.get([add.remote(i) for i in range(10)]) == list(range(10))
    rt = _runtime.get_runtime()
    assert rt is not None
    slots = _tasks._pools[rt][""].slots
    for i in range(pool_size()):
        actorloop.kill(actorloop.get_actor(f"worker-{i}", namespace=TASKS_NAMESPACE))

    def every_connection_knows() -> bool:
        conns = [s.state.conns.get(rt.home_loop) for s in slots if s.state is not None]
        return all(c is not None and c.dead_error is not None for c in conns)

    _wait_until(every_connection_knows, "the driver's connections to see their workers die")
    # Without retries: these calls must not be sent to the dead workers at all.
    refs = [add.options(max_retries=0).remote(i) for i in range(10)]
    assert actorloop.get(refs, timeout=HANG_GUARD) == list(range(10))


def test_force_cancel_ends_the_worker_running_the_task(tmp_path: Path) -> None:
    started = tmp_path / "started"

    @actorloop.remote
    def spins(path: str) -> None:
        Path(path).write_text(str(os.getpid()))
        while True:  # only a killed process stops this
            time.sleep(0.01)

    ref = spins.remote(str(started))
    _wait_until(started.exists, "the task to start")
    worker_pid = int(started.read_text())
    actorloop.cancel(ref, force=True)
    with pytest.raises(actorloop.TaskCancelledError):
        actorloop.get(ref, timeout=HANG_GUARD)
    import psutil

    _wait_until(lambda: not psutil.pid_exists(worker_pid), "the worker process to end")
    assert actorloop.get([add.remote(i) for i in range(10)], timeout=HANG_GUARD) == list(range(10))
    # A finished task: nothing to kill; force on an actor call is still refused.
    done = add.remote(1)
    actorloop.get(done)
    actorloop.cancel(done, force=True)
    holder = Holder.remote()
    with pytest.raises(ValueError, match="force"):
        actorloop.cancel(holder.total.remote([1]), force=True)
    actorloop.kill(holder)
