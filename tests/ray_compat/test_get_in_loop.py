"""get() and wait() where an event loop is running (issue 11): as in Ray, they block and return.

Jupyter, IPython's autoawait and ``python -m asyncio`` run the user's code on
a running asyncio loop; so does a coroutine under ``asyncio.run``.  There
``actorloop.get`` drives the loop's I/O itself (see ``_api._drive``) and holds
the loop's other tasks back.  Where a blocking get could never end - an async
actor blocking its own loop, a sync actor waiting on a call to itself - it
raises ``RuntimeError`` at once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import actorloop
from actorloop.exceptions import GetTimeoutError

pytestmark = pytest.mark.usefixtures("node")

#: A hang guard only (a deadlock fails the test instead of stalling the run), never a timing assertion.
HANG_GUARD = 60


@actorloop.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def pid(self) -> int:
        return os.getpid()

    def length(self, text: str) -> int:
        return len(text)


@actorloop.remote
class Gate:
    """An async actor whose ``wait`` returns only once ``open`` was called."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> str:
        await self.event.wait()
        return "opened"

    async def open(self) -> None:
        self.event.set()


@actorloop.remote
def square(x: int) -> int:
    return x * x


@actorloop.remote(num_returns=2)
def pair(x: int) -> tuple[int, int]:
    return x, -x


def run(coro: Any) -> Any:
    """``asyncio.run`` in a thread of its own, so a hang fails the test instead of stalling it."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "get() inside a running loop hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- get inside a running loop -------------------------------------------------


def test_get_inside_asyncio_run_returns_the_value() -> None:
    async def main() -> Any:
        c = Counter.remote()  # made on this loop: its calls go out on this loop's own connection
        first = actorloop.get(c.inc.remote())
        several = actorloop.get([c.inc.remote() for _ in range(5)])
        return first, several

    assert run(main()) == (1, [2, 3, 4, 5, 6])


def test_get_of_a_call_sent_in_an_earlier_iteration() -> None:
    # The call already left on the loop's socket (as between two notebook cells): its answer still arrives.
    async def main() -> Any:
        c = Counter.remote()
        await c.inc.remote()
        ref = c.inc.remote()
        for _ in range(3):
            await asyncio.sleep(0)
        return actorloop.get(ref, timeout=HANG_GUARD)

    assert run(main()) == 2


def test_get_from_a_plain_callback_of_a_running_loop() -> None:
    # `python -m asyncio` runs each line without `await` as a callback on the running loop, like this.
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        c = Counter.remote()

        def line() -> None:
            assert asyncio.current_task() is None
            answer.set_result(actorloop.get([c.inc.remote(), c.inc.remote(10)]))

        loop.call_soon(line)
        return await answer

    assert run(main()) == [1, 11]


def test_get_of_refs_from_several_actors_and_tasks() -> None:
    async def main() -> Any:
        actors = [Counter.remote() for _ in range(3)]
        refs = [a.pid.remote() for a in actors] + [square.remote(7)]
        values = actorloop.get(refs)
        return len(set(values[:3])), values[3]

    assert run(main()) == (3, 49)


def test_get_of_a_call_with_ref_arguments_and_of_num_returns_refs() -> None:
    # Calls with pending ref arguments wait in actorloop's own tasks; num_returns refs settle in callbacks.
    async def main() -> Any:
        c = Counter.remote()
        chained = c.inc.remote(square.remote(3))
        put = c.inc.remote(actorloop.put(100))
        plus, minus = pair.remote(5)
        return actorloop.get([chained, put, plus, minus])

    assert run(main()) == [9, 109, 5, -5]


def test_get_of_refs_made_on_another_thread() -> None:
    # Refs of the home loop (made in sync code) complete on its thread; get() on a loop still waits for them.
    c = Counter.remote()
    refs = [c.inc.remote() for _ in range(3)]

    async def main() -> Any:
        mine = c.inc.remote()
        return actorloop.get([*refs, mine])

    # Two connections (the home loop's, this loop's): the actor may take their calls in either order.
    assert sorted(run(main())) == [1, 2, 3, 4]


def test_get_of_a_home_loop_call_that_waits_for_a_ref_of_this_loop() -> None:
    # The home loop waits for this loop's ref through this loop's entry queue: get() must drain it.
    async def main() -> Any:
        gate = Gate.remote()
        c = Counter.remote()
        dep = gate.wait.remote()  # this loop's ref, pending until the gate opens
        dependent = await asyncio.to_thread(lambda: c.length.remote(dep))  # made in sync code: the home loop's
        assert dependent.get_loop() is not asyncio.get_running_loop()
        gate.open.remote()
        return actorloop.get(dependent, timeout=HANG_GUARD)

    assert run(main()) == len("opened")


def test_wait_inside_a_running_loop() -> None:
    async def main() -> Any:
        gate = Gate.remote()
        c = Counter.remote()
        never = gate.wait.remote()
        soon = c.inc.remote()
        ready, not_ready = actorloop.wait([never, soon], num_returns=1, timeout=HANG_GUARD)
        await gate.open.remote()
        return ready == [soon], not_ready == [never], await never

    assert run(main()) == (True, True, "opened")


def test_get_timeout_inside_a_running_loop_raises_get_timeout_error() -> None:
    async def main() -> Any:
        gate = Gate.remote()
        ref = gate.wait.remote()
        with pytest.raises(GetTimeoutError):
            actorloop.get(ref, timeout=0.2)
        with pytest.raises(GetTimeoutError):
            actorloop.get(ref, timeout=0)
        # The call is still alive and its ref still awaitable after the timeout.
        await gate.open.remote()
        return await ref

    assert run(main()) == "opened"


def test_other_tasks_of_the_loop_wait_while_get_blocks() -> None:
    # As in Ray, get() blocks the thread: no other coroutine of the loop takes a step meanwhile.
    async def main() -> Any:
        steps: list[str] = []

        async def other() -> None:
            steps.append("other ran")

        loop = asyncio.get_running_loop()
        task = loop.create_task(other())
        loop.call_soon(steps.append, "a plain callback ran")  # callbacks are the loop's I/O: they do run
        value = actorloop.get(square.remote(4))
        steps.append("get returned")
        await task
        return value, steps

    assert run(main()) == (16, ["a plain callback ran", "get returned", "other ran"])


def test_await_and_gather_are_unchanged_after_a_get() -> None:
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        c = Counter.remote()
        actorloop.get(c.inc.remote())
        ref = c.inc.remote()
        # Still a future of this loop: awaiting it costs no thread hop.
        assert ref.get_loop() is loop
        one = await ref
        many = await asyncio.gather(*[c.inc.remote() for _ in range(3)])
        timed = await asyncio.wait_for(c.inc.remote(), HANG_GUARD)
        return one, many, timed

    assert run(main()) == (2, [3, 4, 5], 6)


def test_an_error_of_the_call_is_raised_by_get_in_a_loop() -> None:
    async def main() -> None:
        c = Counter.remote()
        with pytest.raises(TypeError):
            actorloop.get(c.inc.remote("not a number"))

    run(main())


@actorloop.remote
class Crashy:
    def crash(self) -> None:
        os._exit(1)

    def ping(self) -> str:
        return "pong"


def test_get_in_a_loop_waits_through_an_actor_restart() -> None:
    # Reconnecting to the restarted actor is one of actorloop's own tasks on this loop: get() runs it.
    async def main() -> Any:
        c = Crashy.options(max_restarts=1).remote()
        with pytest.raises(actorloop.RayActorError):
            actorloop.get(c.crash.remote(), timeout=HANG_GUARD)
        return actorloop.get(c.ping.remote(), timeout=HANG_GUARD)

    assert run(main()) == "pong"


def test_util_queue_blocking_calls_inside_a_loop() -> None:
    from actorloop.util.queue import Queue

    async def main() -> Any:
        q = Queue()
        q.put(1)
        q.put(2)
        return q.get(timeout=HANG_GUARD), q.qsize(), await q.get_async()

    assert run(main()) == (1, 1, 2)


# -- true deadlocks: a clear error at once, never a hang ---------------------------


@actorloop.remote
class AsyncCaller:
    async def get_in_method(self, other: Any) -> Any:
        try:
            return actorloop.get(other.inc.remote())
        except RuntimeError as exc:
            return str(exc)

    async def wait_in_method(self, other: Any) -> Any:
        try:
            actorloop.wait([other.inc.remote()])
        except RuntimeError as exc:
            return str(exc)
        return "waited"

    async def await_in_method(self, other: Any) -> Any:
        return await other.inc.remote()


@actorloop.remote
class SelfCaller:
    def __init__(self) -> None:
        self.me: Any = None

    def set_me(self, me: Any) -> None:
        self.me = me

    def value(self) -> int:
        return 42

    def get_own(self) -> Any:
        try:
            return actorloop.get(self.me.value.remote())
        except RuntimeError as exc:
            return str(exc)

    def return_own_ref(self) -> Any:
        return self.me.value.remote()


def test_get_in_an_async_actor_method_on_its_own_loop_raises_at_once() -> None:
    caller = AsyncCaller.remote()
    counter = Counter.remote()
    message = actorloop.get(caller.get_in_method.remote(counter), timeout=HANG_GUARD)
    assert "would deadlock" in message and "await ref" in message and "actor's event loop" in message
    assert "would deadlock" in actorloop.get(caller.wait_in_method.remote(counter), timeout=HANG_GUARD)
    # await is the way, and the actor is fine; the calls whose get() was refused ran all the same.
    assert actorloop.get(caller.await_in_method.remote(counter), timeout=HANG_GUARD) == 3


@actorloop.remote
class AsyncInitGets:
    def __init__(self, other: Any) -> None:  # a sync __init__ of an async actor runs on the actor's loop
        try:
            self.got: Any = actorloop.get(other.inc.remote())
        except RuntimeError as exc:
            self.got = str(exc)

    async def result(self) -> Any:
        return self.got


def test_get_in_the_sync_init_of_an_async_actor_raises_at_once() -> None:
    actor = AsyncInitGets.remote(Counter.remote())
    message = actorloop.get(actor.result.remote(), timeout=HANG_GUARD)
    assert "would deadlock" in message and "__init__" in message


@actorloop.remote
async def async_task_that_gets() -> str:
    try:
        actorloop.get(square.remote(2))
    except RuntimeError as exc:
        return str(exc)
    return "no error"


def test_get_in_an_async_remote_function_raises_at_once() -> None:
    message = actorloop.get(async_task_that_gets.remote(), timeout=HANG_GUARD)
    assert "would deadlock" in message and "await ref" in message


def test_a_sync_actor_waiting_on_a_call_to_itself_raises_at_once() -> None:
    actor = SelfCaller.remote()
    actorloop.get(actor.set_me.remote(actor))
    message = actorloop.get(actor.get_own.remote(), timeout=HANG_GUARD)
    assert "would deadlock" in message and "value()" in message and "max_concurrency" in message
    # Still serving calls afterwards.
    assert actorloop.get(actor.value.remote(), timeout=HANG_GUARD) == 42


def test_a_sync_actor_with_room_for_its_own_call_may_get_it() -> None:
    actor = SelfCaller.options(max_concurrency=2).remote()
    actorloop.get(actor.set_me.remote(actor))
    assert actorloop.get(actor.get_own.remote(), timeout=HANG_GUARD) == 42


def test_a_uvloop_loop_refuses_a_ref_only_it_could_complete() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> str:
        ref = square.remote(3)
        try:
            actorloop.get(ref)
        except RuntimeError as exc:
            await ref
            return str(exc)
        return "no error"

    box: dict[str, Any] = {}

    def thread_main() -> None:
        loop = uvloop.new_event_loop()
        try:
            box["message"] = loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive()
    assert "would deadlock" in box["message"] and "await ref" in box["message"]


# -- the interactive shells, for real ---------------------------------------------------


def _node_env() -> dict[str, str]:
    # The subprocess joins this module's node, so it starts no node of its own.
    return {**os.environ, "ACTORLOOP_ADDRESS": actorloop.get_runtime_context().gcs_address}


def test_python_dash_m_asyncio_repl() -> None:
    # One statement per line: Python 3.13's REPL reads piped input line by line.
    script = textwrap.dedent(
        """\
        import actorloop
        exec("def cube(x):\\n    return x ** 3")
        cube = actorloop.remote(cube)
        r = cube.remote(2)
        print("sync line:", actorloop.get(r))
        print("await line:", actorloop.get(cube.remote(3)), await cube.remote(4))
        """
    )
    done = subprocess.run(
        [sys.executable, "-m", "asyncio"],
        input=script,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=_node_env(),
    )
    assert "sync line: 8" in done.stdout, done.stdout + done.stderr
    assert "await line: 27 64" in done.stdout, done.stdout + done.stderr


def test_ipython_autoawait_cells() -> None:
    pytest.importorskip("IPython")
    program = textwrap.dedent(
        """\
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        assert shell.autoawait
        cells = [
            "import asyncio, actorloop",
            "@actorloop.remote\\nclass C:\\n    def __init__(self): self.n = 0\\n    def inc(self):\\n"
            "        self.n += 1\\n        return self.n",
            "c = C.remote()",
            "print('plain cell:', actorloop.get(c.inc.remote()))",
            "running = asyncio.get_running_loop().is_running()\\n"
            "print('await cell:', running, actorloop.get(c.inc.remote()), await c.inc.remote())",
        ]
        for cell in cells:
            result = shell.run_cell(cell)
            if not result.success:
                raise SystemExit(f"cell failed: {cell!r}: {result.error_in_exec or result.error_before_exec}")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=HANG_GUARD, env=_node_env()
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plain cell: 1" in done.stdout
    assert "await cell: True 2 3" in done.stdout, done.stdout + done.stderr


def test_jupyter_kernel_cells() -> None:
    # A real ipykernel: every cell, with or without `await`, runs on the kernel's running loop.
    pytest.importorskip("ipykernel")
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel(env=_node_env())
    printed: list[str] = []

    def output(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            printed.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    cells = [
        "import asyncio, actorloop",
        "@actorloop.remote\nclass C:\n    def __init__(self): self.n = 0\n    def inc(self):\n"
        "        self.n += 1\n        return self.n",
        "c = C.remote()\nprint('loop running:', asyncio.get_event_loop().is_running())",
        "r = c.inc.remote()",  # sent when this cell ends: the next cell's get() reads its answer
        "print('next cell:', actorloop.get(r))",
        "print('await cell:', actorloop.get(c.inc.remote()), await c.inc.remote())",
    ]
    try:
        for cell in cells:
            reply = kc.execute_interactive(cell, timeout=HANG_GUARD, output_hook=output)
            assert reply["content"]["status"] == "ok", (cell, printed)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert printed == ["loop running: True\n", "next cell: 1\n", "await cell: 2 3\n"]
