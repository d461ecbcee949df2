"""Ray's actor API semantics after the rename (issue 11, "Semantics to match")."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import actorloop as ray

pytestmark = pytest.mark.usefixtures("node")


@ray.remote
class Base:
    KIND = "base"

    def __init__(self, x: int, *, y: int = 0) -> None:
        self.x = x + y

    def get(self) -> int:
        return self.x

    @staticmethod
    def helper(a: int) -> int:
        return a * 2

    @classmethod
    def make_kind(cls) -> str:
        return cls.KIND


class Child(Base):  # type: ignore[misc,valid-type]
    KIND = "child"

    def doubled(self) -> int:
        return self.x * 2


RemoteChild = ray.remote(Child)


@ray.remote
class WithReady:
    def ready(self) -> str:
        return "user ready"

    def pair(self) -> tuple[int, int]:
        return 1, 2

    @ray.method(num_returns=3)
    def three(self) -> list[str]:
        return ["a", "b", "c"]

    def wrong(self) -> int:
        return 5


@ray.remote
class Plain:
    def value(self) -> int:
        return 41


def test_a_user_method_named_ready_wins() -> None:
    w = WithReady.remote()
    assert ray.get(w.ready.remote()) == "user ready"
    assert ray.get(w.__ray_ready__.remote()) is None
    p = Plain.remote()
    assert ray.get(p.ready()) is None  # actorloop's own spelling still works without a user method
    assert ray.get(p.__ray_ready__.remote()) is None


def test_ray_call_runs_a_function_on_the_actor() -> None:
    p = Plain.remote()
    assert ray.get(p.__ray_call__.remote(lambda actor, n: actor.value() + n, 1)) == 42

    async def async_fn(actor: Any) -> int:
        await asyncio.sleep(0)
        return actor.value() * 2

    assert ray.get(p.__ray_call__.remote(async_fn)) == 82


def test_ray_terminate_ends_the_actor() -> None:
    p = Plain.remote()
    assert ray.get(p.__ray_terminate__.remote()) is None
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(p.value.remote(), timeout=30)


def test_num_returns_on_methods() -> None:
    w = WithReady.remote()
    a, b, c = w.three.remote()
    assert ray.get([a, b, c]) == ["a", "b", "c"]
    x, y = w.pair.options(num_returns=2).remote()
    assert ray.get(y) == 2 and ray.get(x) == 1
    (bad1, bad2) = w.wrong.options(num_returns=2).remote()
    with pytest.raises(ValueError, match="num_returns=2"):
        ray.get(bad1)

    async def main() -> list[Any]:
        first, second = w.pair.options(num_returns=2).remote()
        return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == [1, 2]
    with pytest.raises(ValueError, match="dynamic"):
        w.pair.options(num_returns="dynamic")


def test_method_options_ray_uses_are_accepted_and_unknown_ones_refused() -> None:
    p = Plain.remote()
    assert ray.get(p.value.options(name="v", enable_task_events=False).remote()) == 41
    with pytest.raises(TypeError, match="no_such"):
        p.value.options(no_such=1)
    h = Plain.options(num_cpus=1, scheduling_strategy="SPREAD", enable_task_events=False).remote()
    assert ray.get(h.value.remote()) == 41
    with pytest.raises(TypeError, match="no_such"):
        Plain.options(no_such=1)


def test_the_actor_class_shows_the_users_class() -> None:
    assert Base.KIND == "base"
    assert Base.helper(3) == 6 and Base.make_kind() == "base"
    assert "helper" in dir(Base) and "remote" in dir(Base)
    assert RemoteChild.make_kind() == "child"
    c = RemoteChild.remote(2, y=1)
    assert ray.get([c.get.remote(), c.doubled.remote()]) == [3, 6]
    with pytest.raises(AttributeError):
        Base.no_such_attribute  # noqa: B018


def test_constructor_arguments_are_checked_in_the_caller() -> None:
    with pytest.raises(TypeError, match=r"Base\.remote\(\)"):
        Base.remote()
    with pytest.raises(TypeError, match="unexpected keyword"):
        Base.remote(1, z=2)


def test_async_actor_sync_init_can_use_asyncio() -> None:
    @ray.remote
    class Ticker:
        def __init__(self) -> None:
            self.count = 0
            self.task = asyncio.get_event_loop().create_task(self._tick())

        async def _tick(self) -> None:
            while True:
                self.count += 1
                await asyncio.sleep(0.001)

        async def ticks(self) -> int:
            while self.count < 3:
                await asyncio.sleep(0.001)
            return self.count

    assert ray.get(Ticker.remote().ticks.remote(), timeout=30) >= 3


def _run(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env.pop("ACTORLOOP_ADDRESS", None)
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=str(tmp_path)
    )


def test_repr_prefix_traceback_lines_and_init_as_a_context_manager(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        """
        import actorloop as ray

        @ray.remote
        class MyActor:
            def __init__(self, index):
                self.index = index

            def __repr__(self):
                return f"MyActor(index={self.index})"

            def foo(self):
                print("hello there")

            def fail(self):
                value = 1
                raise ValueError("bad value")

        with ray.init():
            a = MyActor.remote(2)
            ray.get(a.foo.remote())
            try:
                ray.get(a.fail.remote())
            except ValueError as exc:
                print("TRACEBACK", str(exc))
        print("initialized after:", ray.is_initialized())
        """,
    )
    assert out.returncode == 0, out.stderr
    assert "(MyActor(index=2) pid=" in out.stdout and ") hello there" in out.stdout
    assert f'File "{tmp_path / "prog.py"}", line 17, in fail' in out.stdout
    assert 'raise ValueError("bad value")' in out.stdout
    assert "initialized after: False" in out.stdout


@ray.remote
class Gate:
    def __init__(self) -> None:
        self.path: str | None = None

    def value_after(self, path: str, value: int) -> int:
        import time

        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return value

    def fail(self) -> None:
        raise KeyError("no value")


@ray.remote
class Holder:
    def __init__(self, value: int, *, extra: int = 0) -> None:
        self.value = value + extra

    def get(self) -> int:
        return self.value


def test_creating_an_actor_with_pending_ref_arguments_never_waits(tmp_path: Path) -> None:
    gate_path = str(tmp_path / "open")
    g = Gate.remote()
    pending = g.value_after.remote(gate_path, 40)
    holder = Holder.remote(pending, extra=g.value_after.remote(gate_path, 2))  # returns at once
    assert not pending.done()
    open(gate_path, "w").close()
    assert ray.get(holder.get.remote(), timeout=30) == 42


def test_creating_an_actor_with_ref_arguments_from_async_code(tmp_path: Path) -> None:
    gate_path = str(tmp_path / "open")
    open(gate_path, "w").close()
    g = Gate.remote()

    async def main() -> int:
        holder = Holder.remote(g.value_after.remote(gate_path, 5))
        return await holder.get.remote()

    assert asyncio.run(main()) == 5


def test_a_failed_ref_argument_fails_the_constructor() -> None:
    g = Gate.remote()
    holder = Holder.remote(g.fail.remote())
    with pytest.raises(ray.exceptions.ActorDiedError, match="constructor argument of Holder failed"):
        ray.get(holder.get.remote(), timeout=30)
