"""Errors as SPEC section 6 describes them (actorloop/exceptions.py)."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import pytest
from node._helpers import wait_until

import actorloop
from actorloop import exceptions

pytestmark = pytest.mark.usefixtures("node")


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


@actorloop.remote
class Faulty:
    def value_error(self) -> None:
        raise ValueError("bad value here")

    def custom(self) -> None:
        raise CustomError(7)

    def unpicklable_result(self) -> object:
        return threading.Lock()

    def echo(self, x: object) -> object:
        return x

    def pid(self) -> int:
        return os.getpid()

    def sleep(self, t: float, started: str | None = None) -> float:
        if started is not None:
            open(started, "w").close()  # tells the test this call runs
        time.sleep(t)
        return t

    def exit_hard(self, code: int) -> None:
        os._exit(code)


@actorloop.remote
class BadInit:
    def __init__(self) -> None:
        raise RuntimeError("constructor exploded")

    def f(self) -> int:
        return 1


def test_task_error_is_also_original_class() -> None:
    f = Faulty.remote()
    with pytest.raises(ValueError, match="bad value here") as info:
        actorloop.get(f.value_error.remote())
    err = info.value
    assert isinstance(err, actorloop.TaskError)
    assert isinstance(err, actorloop.ActorloopError)
    assert isinstance(err.cause, ValueError)
    assert "Traceback" in str(err) and "value_error" in str(err)


def test_custom_exception_class_and_attributes() -> None:
    f = Faulty.remote()
    with pytest.raises(CustomError) as info:
        actorloop.get(f.custom.remote())
    assert isinstance(info.value, actorloop.TaskError)
    assert info.value.cause.code == 7  # type: ignore[union-attr]


def test_task_error_pickles() -> None:
    f = Faulty.remote()
    with pytest.raises(ValueError) as info:
        actorloop.get(f.value_error.remote())
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, ValueError) and isinstance(copy, actorloop.TaskError)


def test_task_error_in_async_code() -> None:
    import asyncio

    f = Faulty.remote()

    async def main() -> None:
        with pytest.raises(ValueError):
            await f.value_error.remote()

    asyncio.run(main())


def test_actor_lives_on_after_method_raises() -> None:
    f = Faulty.remote()
    with pytest.raises(ValueError):
        actorloop.get(f.value_error.remote())
    assert actorloop.get(f.echo.remote(5)) == 5


def test_unpicklable_argument_fails_in_caller_and_actor_lives() -> None:
    f = Faulty.remote()
    with pytest.raises(actorloop.SerializationError, match="echo") as info:
        f.echo.remote(threading.Lock())
    assert isinstance(info.value, TypeError)
    assert actorloop.get(f.echo.remote(1)) == 1


def test_unpicklable_result_is_the_calls_error() -> None:
    f = Faulty.remote()
    with pytest.raises(actorloop.SerializationError, match="unpicklable_result"):
        actorloop.get(f.unpicklable_result.remote())
    assert actorloop.get(f.echo.remote(2)) == 2


def test_sigkill_fails_calls_in_flight_and_later_calls_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = Faulty.remote()
    pid = actorloop.get(f.pid.remote())
    started = tmp_path / "started"
    in_flight = [f.sleep.remote(30, str(started))] + [f.sleep.remote(30) for _ in range(4)]
    assert wait_until(started.exists, timeout=30)  # the first runs, the others wait behind it
    os.kill(pid, signal.SIGKILL)
    for ref in in_flight:
        with pytest.raises(actorloop.ActorDiedError, match="SIGKILL"):
            actorloop.get(ref, timeout=10)
    with pytest.raises(actorloop.ActorDiedError, match="SIGKILL"):
        actorloop.get(f.echo.remote(1), timeout=10)


def test_os_exit_reports_exit_code() -> None:
    f = Faulty.remote()
    ref = f.exit_hard.remote(3)
    with pytest.raises(actorloop.ActorDiedError, match="exit code 3"):
        actorloop.get(ref, timeout=10)
    with pytest.raises(actorloop.ActorDiedError, match="exit code 3"):
        actorloop.get(f.echo.remote(1), timeout=10)


def test_failed_constructor_error_carries_traceback() -> None:
    b = BadInit.remote()
    with pytest.raises(actorloop.ActorDiedError, match="constructor exploded") as info:
        actorloop.get(b.f.remote(), timeout=10)
    assert "Traceback" in str(info.value)
    with pytest.raises(actorloop.ActorDiedError):
        actorloop.get(b.ready(), timeout=10)


def test_exception_tree() -> None:
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, actorloop.ActorloopError)
        assert getattr(actorloop, name) is cls
    assert issubclass(actorloop.GetTimeoutError, TimeoutError)
    assert issubclass(actorloop.SerializationError, TypeError)
