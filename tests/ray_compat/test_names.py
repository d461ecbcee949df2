"""Ray's public names for actor programs exist under the same paths (issue 11, "Names that must exist")."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import actorloop
import actorloop as ray
from actorloop import exceptions

pytestmark = pytest.mark.usefixtures("node")


@ray.remote
class Echo:
    def __init__(self) -> None:
        self.value = 0

    def set(self, v: int) -> int:
        self.value = v
        return v

    def env(self, key: str) -> str | None:
        return os.environ.get(key)

    def context(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "actor_id": ctx.get_actor_id(),
            "name": ctx.get_actor_name(),
            "namespace": ctx.namespace,
            "same_namespace": ctx.get_namespace(),
            "job_id": ctx.get_job_id(),
            "node_id": ctx.get_node_id(),
            "reconstructed": ctx.was_current_actor_reconstructed,
        }

    def me(self) -> Any:
        return ray.get_runtime_context().current_actor

    def crash(self) -> None:
        os._exit(1)


def test_exception_classes_follow_rays_relations() -> None:
    assert exceptions.RayError is actorloop.ActorloopError
    assert exceptions.RayTaskError is actorloop.TaskError
    assert issubclass(exceptions.ActorDiedError, exceptions.RayActorError)
    assert issubclass(exceptions.ActorUnavailableError, exceptions.RayActorError)
    assert issubclass(exceptions.RayActorError, exceptions.RayError)
    assert issubclass(exceptions.OwnerDiedError, exceptions.ObjectLostError)
    assert issubclass(exceptions.GetTimeoutError, TimeoutError)


def test_a_failing_method_is_caught_as_ray_catches_it() -> None:
    @ray.remote
    class Bad:
        def fail(self) -> None:
            raise KeyError("k")

    b = Bad.remote()
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(b.fail.remote())
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value.cause, KeyError)
    assert info.value.as_instanceof_cause() is info.value


def test_a_call_on_a_killed_actor_is_a_ray_actor_error() -> None:
    e = Echo.remote()
    ray.get(e.set.remote(1))
    ray.kill(e)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(e.set.remote(2))


def test_module_paths_ray_code_imports() -> None:
    from actorloop.actor import ActorClass, ActorHandle, ActorMethod, exit_actor
    from actorloop.util import ActorPool, list_named_actors
    from actorloop.util.actor_pool import ActorPool as PoolAgain
    from actorloop.util.queue import Empty, Full, Queue

    assert ActorHandle is actorloop.ActorHandle and ActorClass is actorloop.ActorClass
    assert exit_actor is actorloop.exit_actor and callable(list_named_actors)
    assert PoolAgain is ActorPool
    assert isinstance(Echo, ActorClass)
    assert isinstance(Echo.remote().set, ActorMethod)
    assert issubclass(Empty, Exception) and issubclass(Full, Exception) and Queue


def test_queue_put_get_blocking_timeouts_and_batches() -> None:
    from actorloop.util.queue import Empty, Full, Queue

    q = Queue(maxsize=2)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.size() == 2
    with pytest.raises(Full):
        q.put(3, timeout=0.05)
    with pytest.raises(Full):
        q.put_nowait(3)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    with pytest.raises(Empty):
        q.get(block=False)
    q.put_nowait_batch([5, 6])
    with pytest.raises(Full):
        q.put_nowait_batch([7])
    assert q.get_nowait_batch(2) == [5, 6]
    with pytest.raises(Empty):
        q.get_nowait_batch(1)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.shutdown()


def test_queue_is_shared_with_actors_and_async_code() -> None:
    from actorloop.util.queue import Queue

    @ray.remote
    class Producer:
        def fill(self, q: Any, n: int) -> int:
            for i in range(n):
                q.put(i)
            return n

    q = Queue()
    p = Producer.remote()
    assert ray.get(p.fill.remote(q, 5)) == 5

    async def drain() -> list[int]:
        return [await q.get_async(timeout=5) for _ in range(5)]

    assert asyncio.run(drain()) == [0, 1, 2, 3, 4]

    got: list[int] = []
    consumer = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    consumer.start()
    q.put(42)  # a blocked get wakes for it
    consumer.join(15)
    assert got == [42]
    q.shutdown()


def test_runtime_context_in_the_driver_and_in_an_actor() -> None:
    ctx = ray.get_runtime_context()
    assert ctx.get_actor_id() is None
    with pytest.raises(RuntimeError):
        ctx.current_actor  # noqa: B018
    e = Echo.options(name="ctx-echo").remote()
    inside = ray.get(e.context.remote())
    assert inside["actor_id"] == e._actor_id
    assert inside["name"] == "ctx-echo"
    assert inside["namespace"] == inside["same_namespace"] == ctx.namespace
    assert inside["job_id"] == ctx.get_job_id()
    assert inside["node_id"] == ctx.get_node_id()
    assert inside["reconstructed"] is False
    me = ray.get(e.me.remote())
    assert me == e and ray.get(me.set.remote(7)) == 7
    ray.kill(e)


def test_was_current_actor_reconstructed_after_a_restart() -> None:
    e = Echo.options(max_restarts=1).remote()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(e.crash.remote())
    assert ray.get(e.context.remote(), timeout=30)["reconstructed"] is True


def test_runtime_env_env_vars_per_actor_and_bad_keys() -> None:
    e = Echo.options(runtime_env={"env_vars": {"AL_TEST_VAR": "x1"}}).remote()
    assert ray.get(e.env.remote("AL_TEST_VAR")) == "x1"
    with pytest.raises(ValueError, match="pip"):
        Echo.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(TypeError, match="env_vars"):
        Echo.options(runtime_env={"env_vars": {"A": 1}})


def test_resources_describe_this_machine() -> None:
    total = ray.cluster_resources()
    free = ray.available_resources()
    assert total["CPU"] == float(os.cpu_count() or 1)
    assert total["memory"] > 0 and 0 < free["memory"] <= total["memory"]
    assert free["CPU"] == total["CPU"]
    (node,) = ray.nodes()
    assert node["Alive"] and node["Resources"]["CPU"] == total["CPU"]
    assert node["NodeID"] == ray.get_runtime_context().get_node_id()


def test_list_named_actors() -> None:
    first = Echo.options(name="listed-1").remote()
    second = Echo.options(name="listed-2", namespace="elsewhere-ns").remote()
    names = ray.util.list_named_actors()
    assert "listed-1" in names and "listed-2" not in names
    everywhere = ray.util.list_named_actors(all_namespaces=True)
    assert {"name": "listed-2", "namespace": "elsewhere-ns"} in everywhere
    ray.kill(first)
    ray.kill(second)


def test_get_actor_explains_a_missing_name() -> None:
    e = Echo.options(name="where-am-i", namespace="ns-explained").remote()
    with pytest.raises(ValueError) as info:
        ray.get_actor("where-am-i")
    text = str(info.value)
    assert "'where-am-i'" in text and "lives in namespace(s) 'ns-explained'" in text
    assert "detached" in text
    with pytest.raises(TypeError):
        ray.get_actor("where-am-i", namespace=3)  # type: ignore[arg-type]
    ray.kill(e)


def test_as_future_in_async_code() -> None:
    e = Echo.remote()

    async def main() -> int:
        fut = e.set.remote(5).as_future()
        assert isinstance(fut, asyncio.Future)
        return await fut

    assert asyncio.run(main()) == 5


def test_init_checks_its_arguments_as_ray_does(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="already"):
        ray.init()
    assert ray.init(ignore_reinit_error=True)["namespace"] == ray.get_runtime_context().namespace
    monkeypatch.setattr(actorloop._runtime, "_runtime", None)  # as if not initialized; restored after
    with pytest.raises(TypeError, match="namespace"):
        ray.init(namespace=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace"):
        ray.init(namespace="")
    with pytest.raises(ValueError, match="supports only runtime_env"):
        ray.init(runtime_env={"conda": "x"})
    with pytest.raises(TypeError, match="unknown option"):
        ray.init(no_such_option=1)


def test_slow_consumer_blocks_queue_put_until_room() -> None:
    from actorloop.util.queue import Queue

    q = Queue(maxsize=1)
    q.put("a")
    done = threading.Event()

    def producer() -> None:
        q.put("b", timeout=10)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    deadline = time.monotonic() + 10
    while q.qsize() != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not done.is_set()
    assert q.get() == "a"
    assert done.wait(10)
    assert q.get() == "b"
    t.join()
    q.shutdown()
