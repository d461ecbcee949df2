"""Remote functions (Ray's "tasks"): ``@actorloop.remote`` on a function.

A task runs on a pool of worker processes that are ordinary actors of the
class ``TaskWorker`` below, forked from the zygote like any actor; there is
no daemon of their own.  The pool's actors are named ``worker-0`` ..
``worker-{N-1}`` in the reserved namespace ``_actorloop_tasks``; the first
process to call a task makes them all with ``get_if_exists=True`` (and so
owns them: they end with it), so every process of the node
(drivers, actors, tasks themselves) shares one pool.  ``N`` is the CPU count,
or ``init(num_cpus=N)``.  Tasks with ``runtime_env={"env_vars": ...}`` get a
pool of their own per set of variables (``worker-<digest>-<i>``), whose
processes start with those variables, as Ray starts dedicated workers.

The caller's side (``RemoteFunction``, ``_Pool``, ``_Task``): each call
goes to the worker with the fewest calls in flight *from this process*
(``num_cpus=k`` counts as k calls), as a call of the worker's ``run``
method.  The function travels by value (cloudpickle), once per worker and
caller: a worker keeps functions by the digest of their pickle, and a call
that finds its function unknown there (it went out on another event loop's
connection, say) is sent again with the function.  A task whose worker
process dies is sent to another worker ``max_retries`` times (default 3);
an exception the function raised is retried only with ``retry_exceptions``.
A worker that died is made again by the next caller that needs it (the
name of a dead actor is free again).

The worker's side (``TaskWorker``, ``_Executor``): a worker runs one sync
task at a time, on a thread of its own (its loop stays free for the
actor machinery).  A task blocked in ``actorloop.get``/``wait`` lends its
slot to the next queued task, which starts on another thread - Ray's "a
blocked task releases its CPU" - so a task waiting for its subtasks never
deadlocks the pool, however busy it is.  ``async def`` functions run on the
worker's event loop, concurrently with the other coroutines there (they
hold no slot: they yield while they wait).

Layering: this module sits above ``_runtime`` and below ``_handles``, which
hands it the functions given to ``@actorloop.remote``.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import itertools
import os
import threading
import weakref
from asyncio import events
from typing import Any, Callable, Generic, TypeVar

import cloudpickle

from . import _backend, _runtime
from ._entry import entry_for
from ._meta import (
    IGNORED_TASK_OPTIONS,
    STREAMING,
    TASK_OPTIONS,
    TASKS_NAMESPACE,
    collect_meta,
    env_vars_of,
    is_task_option,
)
from ._ref import ObjectRef, make_ref
from ._runtime import ActorState, Runtime, get_runtime, require_runtime
from ._stream import DEFAULT_WINDOW, ObjectRefGenerator, check_window
from .exceptions import ActorDiedError, SerializationError, TaskCancelledError, TaskError, _make_task_error

__all__ = ["RemoteFunction", "TASKS_NAMESPACE", "TaskWorker", "blocked_in_get", "pool_size"]

R = TypeVar("R")

_get_running_loop = events._get_running_loop


def validate_task_options(opts: dict[str, Any], where: str) -> None:
    """Check a remote function's options; bad ones raise naming the option and what it takes."""
    for key in opts:
        if not is_task_option(key):
            known = ", ".join(sorted(TASK_OPTIONS.keys() | IGNORED_TASK_OPTIONS))
            raise TypeError(f"{where}: unknown option {key!r} for a remote function; known options: {known}")
    n = opts.get("num_returns", 1)
    if n is None or n == STREAMING:
        pass
    elif n == "dynamic":
        raise ValueError(
            f"{where}: num_returns='dynamic' (Ray's deprecated generator API) is not supported; use "
            "num_returns='streaming' (the default of generator functions)"
        )
    elif not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{where}: num_returns must be an integer >= 0, got {n!r}")
    cpus = opts.get("num_cpus", 1)
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus < 0):
        raise ValueError(f"{where}: num_cpus must be a number >= 0, got {cpus!r}")
    retries = opts.get("max_retries", 3)
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < -1):
        raise ValueError(f"{where}: max_retries must be an integer >= -1 (-1: retry forever), got {retries!r}")
    rex = opts.get("retry_exceptions", False)
    if not isinstance(rex, bool):
        if not isinstance(rex, (list, tuple)) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in rex
        ):
            raise TypeError(f"{where}: retry_exceptions must be a bool or a list of exception classes, got {rex!r}")
    name = opts.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{where}: name must be a string, got {name!r}")
    env_vars_of(opts.get("runtime_env"), where)
    if opts.get("_generator_backpressure_num_objects") is not None:
        check_window(opts["_generator_backpressure_num_objects"], where)


# -- pool size -----------------------------------------------------------------------

#: In a task worker: the pool size and runtime_env its pool was made with (nested tasks inherit them).
_inherited_size: int | None = None
_inherited_env: dict[str, str] | None = None


def pool_size() -> int:
    """How many task workers a pool has: init(num_cpus=N), else the creator's size in a worker, else the CPUs."""
    rt = get_runtime()
    if rt is not None and rt.num_cpus is not None:
        # Ray programs pass num_cpus=0 to keep tasks off a head node that only hosts actors; here the
        # node is the one machine, so tasks still get one worker rather than waiting forever.
        return max(1, rt.num_cpus)
    if _inherited_size is not None:
        return _inherited_size
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# -- the worker's side ---------------------------------------------------------------


class _FunctionMissing(Exception):
    """A call reached a worker that does not know its function yet: the caller sends it again with it."""


_local = threading.local()


class _Executor:
    """Runs a worker's sync tasks one at a time on threads; a task blocked in get() lends its slot.

    The loop only queues jobs and collects results: a runner thread takes
    job after job itself, so a burst of small tasks runs without a round
    trip through the loop per task.  ``active`` counts runners that run a
    task and do not lend their slot; a runner takes a job only while
    ``active < capacity``.  A runner is made when a job may start and no
    runner waits for one (at first, and when every runner lends its slot),
    and is kept for later jobs.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int = 1) -> None:
        self.loop = loop
        self.capacity = capacity
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._jobs: collections.deque[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...], Any]] = (
            collections.deque()
        )
        self.active = 0
        self._idle = 0  # runners waiting for a job
        self._runners = 0
        self._done: collections.deque[tuple[asyncio.Future[Any], bool, Any]] = collections.deque()
        self._drain_scheduled = False

    def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """Queue a job (on the loop); its outcome arrives in the returned future."""
        fut = self.loop.create_future()
        with self._lock:
            self._jobs.append((fut, func, args, kwargs))
            spawn = False
            if self.active < self.capacity:
                if self._idle:
                    self._cv.notify()
                else:
                    spawn = True
                    self._runners += 1
        if spawn:
            self._spawn()
        return fut

    def _spawn(self) -> None:
        threading.Thread(target=self._run, name=f"actorloop-task-{self._runners}", daemon=True).start()

    def _run(self) -> None:
        jobs = self._jobs
        cv = self._cv
        ran = False
        while True:
            with cv:
                if ran:
                    # In the same hold as taking the next job: a submit in between would see a free slot
                    # and no idle runner, and make a runner for nothing.
                    self.active -= 1
                ran = True
                while not jobs or self.active >= self.capacity:
                    self._idle += 1
                    cv.wait()
                    self._idle -= 1
                fut, func, args, kwargs = jobs.popleft()
                self.active += 1
            _local.executor = self
            try:
                if fut.done():
                    outcome: tuple[bool, Any] = (True, None)  # cancelled while it waited
                else:
                    value = func(*args, **kwargs)
                    if inspect.isgenerator(value):
                        value = list(value)
                    outcome = (True, value)
            except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
                outcome = (False, exc)
            finally:
                _local.executor = None
            del func, args, kwargs
            self._post(fut, *outcome)
            del fut, outcome

    def _post(self, fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
        self._done.append((fut, ok, value))
        if not self._drain_scheduled:
            # A lost race costs a spare drain, never a lost result: the drain clears the flag first.
            self._drain_scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        done = self._done
        while done:
            fut, ok, value = done.popleft()
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    # Called from the task's own thread, around a blocking get()/wait().
    def lend(self) -> None:
        with self._lock:
            self.active -= 1
            spawn = False
            if self._jobs:
                if self._idle:
                    self._cv.notify()
                else:
                    spawn = True
                    self._runners += 1
        if spawn:
            self._spawn()

    def take_back(self) -> None:
        # The task goes on at once, over the limit if need be: waiting for a
        # free slot here could wait on a task that waits on this one.
        with self._lock:
            self.active += 1


class _NoLending:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _Lending:
    __slots__ = ("executor",)

    def __init__(self, executor: _Executor) -> None:
        self.executor = executor

    def __enter__(self) -> None:
        self.executor.lend()

    def __exit__(self, *exc: Any) -> None:
        self.executor.take_back()


_NO_LENDING = _NoLending()


def blocked_in_get(refs: list[ObjectRef[Any]]) -> _NoLending | _Lending:
    """Wrap a blocking wait of ``get``/``wait``: in a task, its worker slot goes to the next task meanwhile.

    Installed as ``_runtime.task_lending`` by a task worker only: no other process pays for it in get().
    """
    executor = getattr(_local, "executor", None)
    if executor is None:
        return _NO_LENDING
    for ref in refs:
        if not ref.done():
            return _Lending(executor)
    return _NO_LENDING


#: The functions this worker process has seen, by the digest of their pickle.
_functions: dict[bytes, tuple[Callable[..., Any], bool]] = {}
_MAX_FUNCTIONS = 4096


class TaskWorker:
    """A process of the task pool (an actor in the namespace ``_actorloop_tasks``)."""

    def __init__(self, env_vars: dict[str, str], size: int) -> None:
        global _inherited_env, _inherited_size
        _runtime.task_lending = blocked_in_get
        os.environ.update(env_vars)
        # Tasks this worker runs use the same pool (and runtime_env), as Ray's children inherit it.
        _inherited_env = dict(env_vars)
        _inherited_size = size
        self._executor: _Executor | None = None

    async def run(self, digest: bytes, blob: bytes | None, num_returns: int, /, *args: Any, **kwargs: Any) -> Any:
        """Run the function of ``digest`` (unpickled from ``blob`` the first time) with these arguments."""
        func, is_async = _function(digest, blob)
        if is_async:
            value = await func(*args, **kwargs)
        else:
            executor = self._executor
            if executor is None:
                executor = self._executor = _Executor(asyncio.get_running_loop())
            value = await executor.submit(func, args, kwargs)
        if num_returns == 1:
            return value
        if num_returns == 0:
            return None
        try:
            count = len(value)
        except TypeError:
            count = None
        if count != num_returns:
            got = f"{count} values" if count is not None else f"a {type(value).__name__} (no len())"
            raise ValueError(
                f"the task was declared with num_returns={num_returns} but returned {got}; "
                f"return a sequence of exactly {num_returns} values"
            )
        return tuple(value)

    async def run_stream(self, digest: bytes, blob: bytes, /, *args: Any, **kwargs: Any) -> Any:
        """Stream the items of the generator function of ``digest`` (a streaming task; see ``_stream``).

        An async generator runs here, on the loop; a sync one on the task threads
        (it lends its slot in ``get`` as any task does), handing its items over
        through a small bounded buffer, so it too stays suspended while its
        consumer is behind.
        """
        func, _ = _function(digest, blob)
        if inspect.isasyncgenfunction(func):
            agen = func(*args, **kwargs)
            try:
                async for item in agen:
                    yield item
            finally:
                await agen.aclose()  # this stream was closed or cancelled: so is the user's generator
            return
        executor = self._executor
        if executor is None:
            executor = self._executor = _Executor(asyncio.get_running_loop())
        pump = _Pump(asyncio.get_running_loop())
        done = executor.submit(pump.run, (func, args, kwargs), {})
        try:
            while True:
                while pump.items:
                    item = pump.items.popleft()
                    pump.room.release()
                    yield item
                if done.done():
                    if not pump.items:
                        done.result()  # the generator's error, at its position
                        return
                    continue
                waiter = pump.waiter = asyncio.get_running_loop().create_future()
                if pump.items:
                    continue
                await asyncio.wait([waiter, done], return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.stop = True
            pump.room.release()  # a pump waiting for room sees the stop
            done.add_done_callback(_retrieve)


def _function(digest: bytes, blob: bytes | None) -> tuple[Callable[..., Any], bool]:
    """The function of ``digest``, unpickled from ``blob`` the first time; whether it is a coroutine function."""
    known = _functions.get(digest)
    if known is None:
        if blob is None:
            raise _FunctionMissing(digest)
        if len(_functions) >= _MAX_FUNCTIONS:
            _functions.clear()  # a caller whose function is gone sends it again
        loaded = cloudpickle.loads(blob)
        known = _functions[digest] = (loaded, inspect.iscoroutinefunction(loaded))
    return known


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # the stream ended first: nobody else reads it


#: Items a sync generator task may hand over ahead of its stream (on top of the stream's window).
_PUMP_ROOM = 16


class _Pump:
    """A sync generator task's items, from its thread to the worker's loop (bounded)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: collections.deque[Any] = collections.deque()
        self.room = threading.Semaphore(_PUMP_ROOM)
        self.stop = False
        self.waiter: asyncio.Future[None] | None = None
        self._scheduled = False

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """On a task thread: run the generator, handing each item over; stop when told to."""
        gen = func(*args, **kwargs)
        if not inspect.isgenerator(gen):
            if inspect.iscoroutine(gen):
                gen.close()
            raise TypeError(
                f"{getattr(func, '__name__', func)!s} was called as a stream (num_returns='streaming') but "
                f"returned {type(gen).__name__}, not a generator"
            )
        try:
            for item in gen:
                if not self.room.acquire(blocking=False):
                    # The consumer is behind: like a task blocked in get(), lend the worker's slot meanwhile,
                    # so that other tasks sent to this worker run.
                    executor: _Executor | None = getattr(_local, "executor", None)
                    if executor is not None:
                        executor.lend()
                    try:
                        while not self.room.acquire(timeout=1.0):  # a safety net; stop releases it
                            if self.stop:
                                return
                    finally:
                        if executor is not None:
                            executor.take_back()
                if self.stop:
                    return
                self.items.append(item)
                if not self._scheduled:
                    self._scheduled = True
                    self.loop.call_soon_threadsafe(self._wake)
        finally:
            gen.close()  # stopped early: GeneratorExit at its yield, its finally runs on this thread

    def _wake(self) -> None:
        self._scheduled = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


_WORKER_META = collect_meta(TaskWorker)
#: The default group holds every call; the executor limits what runs.  Large, so calls never queue in
#: the actor machinery behind tasks that wait for their subtasks.
_WORKER_MAX_CONCURRENCY = 1_000_000


# -- the caller's side ---------------------------------------------------------------


class _Slot:
    """One worker of a pool, as this process sees it."""

    __slots__ = ("index", "name", "state", "load", "sent")

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.state: ActorState | None = None
        self.load = 0.0
        # Digests this process sent to the current worker process.
        self.sent: set[bytes] = set()


class _Pool:
    """This process's view of one pool of task workers (one per runtime_env)."""

    def __init__(self, runtime: Runtime, env_vars: dict[str, str], key: str) -> None:
        self.runtime = runtime
        self.env_vars = env_vars
        size = pool_size()
        prefix = "worker-" if not key else f"worker-{key}-"
        self.slots = [_Slot(i, f"{prefix}{i}") for i in range(size)]
        self.lock = threading.Lock()

    def pick(self, weight: float) -> tuple[_Slot, ActorState]:
        """The worker with the least load from this process; made (or found) on first use."""
        with self.lock:
            slot = min(self.slots, key=_load_of)
            slot.load += weight
            state = slot.state
        if state is None:
            try:
                state = self._worker(slot)
            except BaseException:
                self.unload(slot, weight)
                raise
        return slot, state

    def unload(self, slot: _Slot, weight: float) -> None:
        with self.lock:
            slot.load -= weight

    def _worker(self, slot: _Slot) -> ActorState:
        options = {
            "name": slot.name,
            "namespace": TASKS_NAMESPACE,
            "get_if_exists": True,
            "max_concurrency": _WORKER_MAX_CONCURRENCY,
        }
        state, _ = self.runtime.create_actor(TaskWorker, _WORKER_META, options, (self.env_vars, len(self.slots)), {})
        with self.lock:
            if slot.state is None:
                slot.state = state
                slot.sent = set()
            return slot.state

    def worker_died(self, slot: _Slot, state: ActorState) -> None:
        """The worker behind ``slot`` is gone: the next call there makes a new one."""
        with self.lock:
            if slot.state is state:
                slot.state = None
                slot.sent = set()


def _load_of(slot: _Slot) -> float:
    return slot.load


_pools: weakref.WeakKeyDictionary[Runtime, dict[str, _Pool]] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def _pool_for(rt: Runtime, env_vars: dict[str, str]) -> _Pool:
    key = ""
    if env_vars:
        key = hashlib.blake2b(repr(sorted(env_vars.items())).encode(), digest_size=6).hexdigest()
    pools = _pools.get(rt)
    pool = pools.get(key) if pools is not None else None
    if pool is None:
        with _pools_lock:
            pools = _pools.setdefault(rt, {})
            pool = pools.get(key)
            if pool is None:
                pool = _Pool(rt, env_vars, key)
                # Every worker at once, as Ray starts its workers: the first process to use the pool
                # owns all of it (a non-detached actor ends with its owner), and the processes fork
                # in the background while the first calls go out.
                for slot in pool.slots:
                    pool._worker(slot)
                pools[key] = pool
    return pool


_task_ids = itertools.count(1)


class _Task:
    """One call of a remote function: its refs, its attempts, its retries (lives on one event loop)."""

    __slots__ = (
        "func",
        "opts",
        "args",
        "kwargs",
        "refs",
        "loop",
        "pool",
        "retries_left",
        "inner",
        "slot",
        "state",
        "cancelled",
        "task_id",
    )

    def __init__(
        self,
        func: RemoteFunction[Any],
        opts: _CallOptions,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        pool: _Pool,
    ) -> None:
        self.func = func
        self.opts = opts
        self.args = args
        self.kwargs = kwargs
        self.loop = loop
        self.pool = pool
        self.retries_left = opts.max_retries
        self.inner: ObjectRef[Any] | None = None
        self.slot: _Slot | None = None
        self.state: ActorState | None = None
        self.cancelled = False
        self.task_id = next(_task_ids)
        count = max(opts.num_returns, 1)
        self.refs: list[ObjectRef[Any]] = [make_ref(loop, self, self.task_id) for _ in range(count)]

    # -- on the task's loop ------------------------------------------------------

    def start(self, inline: bool = False) -> None:
        """Send the first attempt, once the ref arguments are ready.

        ``inline``: called by ``.remote()`` itself, whose caller gets a pickling error raised.
        """
        pending = [a for a in (*self.args, *self.kwargs.values()) if isinstance(a, ObjectRef) and not a.done()]
        if pending:
            self.loop.create_task(self._start_when_ready(pending))
            return
        self._start_now(inline)

    async def _start_when_ready(self, pending: list[ObjectRef[Any]]) -> None:
        for ref in pending:
            try:
                await ref
            except BaseException:  # noqa: BLE001 - _start_now reads the error from the ref
                pass
        if not self.cancelled:
            self._start_now()

    def _start_now(self, inline: bool = False) -> None:
        try:
            self.args, self.kwargs = _ref_values(self.args, self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - an argument's call failed, so does this one (as in Ray)
            self._finish_error(exc)
            return
        try:
            self._send(with_function=False)
        except BaseException as exc:  # noqa: BLE001
            if inline:
                raise
            self._finish_error(exc)

    def _send(self, with_function: bool) -> None:
        pool = self.pool
        weight = self.opts.num_cpus
        slot, state = pool.pick(weight)
        for _ in range(len(pool.slots)):
            conn = state.conns.get(self.loop)
            if conn is None or conn.dead_error is None:
                break
            # This loop already knows that worker died (its owner exited, say): a call sent there
            # would fail without running and cost a retry.  Make a new one instead.
            pool.unload(slot, weight)
            pool.worker_died(slot, state)
            slot, state = pool.pick(weight)
        self.slot, self.state = slot, state
        func = self.func
        digest, blob = func._pickled()
        if with_function or digest not in slot.sent:
            slot.sent.add(digest)
            send_blob: bytes | None = blob
        else:
            send_blob = None
        try:
            inner = state.submit("run", (digest, send_blob, self.opts.num_returns, *self.args), self.kwargs, None)
        except SerializationError as exc:
            self.pool.unload(slot, self.opts.num_cpus)
            self.slot = None
            raise SerializationError(f"could not pickle the arguments of {func.__name__}(): {exc.__cause__}") from exc
        except BaseException:
            self.pool.unload(slot, self.opts.num_cpus)
            self.slot = None
            raise
        self.inner = inner
        inner.add_done_callback(self._inner_done)

    def _inner_done(self, inner: ObjectRef[Any]) -> None:
        slot, state = self.slot, self.state
        if slot is not None:
            self.pool.unload(slot, self.opts.num_cpus)
            self.slot = None
        if inner.cancelled() or self.cancelled:
            return
        exc = inner.exception()
        if exc is None:
            self._finish(inner.result())
            return
        try:
            if isinstance(exc, ActorDiedError) and not isinstance(exc, TaskError):
                # The worker process died (or was killed) while it had this task.
                if slot is not None and state is not None:
                    self.pool.worker_died(slot, state)
                if self._retry():
                    self._send(with_function=False)
                    return
                self._finish_error(
                    ActorDiedError(
                        f"the worker process running {self.func.__name__}() died and the task has no retries "
                        f"left (max_retries={self.opts.max_retries}): {exc}"
                    )
                )
                return
            if isinstance(exc, TaskError) and isinstance(exc.cause, _FunctionMissing):
                self._send(with_function=True)
                return
            if isinstance(exc, TaskError) and self._retries_exception(exc) and self._retry():
                self._send(with_function=False)
                return
        except BaseException as error:  # noqa: BLE001 - e.g. the node ended while we made a new worker
            self._finish_error(error)
            return
        self._finish_error(self._renamed(exc))

    def _retry(self) -> bool:
        if self.retries_left == 0:
            return False
        if self.retries_left > 0:
            self.retries_left -= 1
        return True

    def _retries_exception(self, exc: TaskError) -> bool:
        which = self.opts.retry_exceptions
        if which is True:
            return True
        if not which:
            return False
        cause = exc.cause
        return cause is not None and isinstance(cause, tuple(which))

    def _renamed(self, exc: BaseException) -> BaseException:
        """The worker names its method (``TaskWorker.run``); the user wants to see their function."""
        return _renamed_error(exc, self.opts.name or self.func.__name__)

    def _finish(self, value: Any) -> None:
        self._let_go()
        refs = self.refs
        if len(refs) == 1:
            _settle(refs[0], value, None)
            return
        if self.opts.num_returns == 0:
            _settle(refs[0], None, None)
            return
        for ref, item in zip(refs, value, strict=True):
            _settle(ref, item, None)

    def _let_go(self) -> None:
        # The refs keep this task (their CallOwner) as long as they live: not its arguments.
        self.args = ()
        self.kwargs = {}
        self.inner = None

    def _finish_error(self, exc: BaseException) -> None:
        self._let_go()
        for ref in self.refs:
            _settle(ref, None, exc)

    # -- CallOwner: a ref of this task was cancelled (any thread) ------------------

    def cancel_call(self, call_id: int) -> None:
        if _get_running_loop() is not self.loop:
            entry_for(self.loop).put(self.cancel_call, call_id)
            return
        if self.cancelled:
            return
        self.cancelled = True
        inner = self.inner
        if inner is not None and not inner.done():
            inner.cancel()
        # The ref that asked settles itself right after this returns; its siblings (num_returns > 1) next.
        self.loop.call_soon(self._cancel_siblings)

    def _cancel_siblings(self) -> None:
        error = TaskCancelledError(f"the task {self.func.__name__}() was cancelled")
        for ref in self.refs:
            if not ref.done():
                ref.set_exception(error)
                ref._log_traceback = False  # a dropped cancelled ref is no error
                ref._wake_waiter()


def _renamed_error(exc: BaseException, name: str) -> BaseException:
    """``exc`` naming the function ``name`` where the worker named its own method (``TaskWorker.run[_stream]``)."""
    if isinstance(exc, TaskError) and exc.cause is not None:
        tb = exc.remote_traceback
        for method in ("run_stream", "run"):
            tb = tb.replace(f"TaskWorker.{method}() in actor", f"{name}() in task worker", 1)
        cause = exc.cause
        return _make_task_error(f"{type(cause).__name__}: {cause}\n\nRemote traceback:\n{tb}", cause, tb)
    text = str(exc)
    if "TaskWorker.run" in text and type(exc) in (TaskError, SerializationError):
        for method in ("run_stream", "run"):
            text = text.replace(f"TaskWorker.{method}()", f"{name}()").replace(f"TaskWorker.{method}", f"{name}()")
        renamed = type(exc)(text)
        renamed.__cause__ = exc.__cause__
        return renamed
    return exc


def force_cancel_target(ref: ObjectRef[Any]) -> Callable[[], None] | None:
    """For ``cancel(ref, force=True)``: None if ``ref`` is no task's; else what ends the worker that has it.

    Read before the task is cancelled: only a task sent to a worker and not
    finished kills it.  The worker's other tasks are retried elsewhere.
    """
    task = ref._conn
    if not isinstance(task, _Task):
        return None
    inner, state = task.inner, task.state
    if inner is None or inner.done() or state is None:
        return _nothing
    runtime = task.pool.runtime

    def kill() -> None:
        runtime.node_request("kill", state.actor_id, True)

    return kill


def _nothing() -> None:
    return None


def _settle(ref: ObjectRef[Any], value: Any, exc: BaseException | None) -> None:
    if ref.done():
        return
    if exc is not None:
        ref.set_exception(exc)
    else:
        ref.set_result(value)
    ref._wake_waiter()


def _ref_values(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Top-level ObjectRef arguments replaced by their values (all done); a failed one raises its error."""
    if any(isinstance(a, ObjectRef) for a in args):
        args = tuple(a._result_now() if isinstance(a, ObjectRef) else a for a in args)
    if any(isinstance(v, ObjectRef) for v in kwargs.values()):
        kwargs = {k: (v._result_now() if isinstance(v, ObjectRef) else v) for k, v in kwargs.items()}
    return args, kwargs


class _CallOptions:
    """A remote function's options, checked and resolved once (not per call)."""

    __slots__ = (
        "num_returns",
        "num_cpus",
        "max_retries",
        "retry_exceptions",
        "env_vars",
        "name",
        "given",
        "streaming",
        "window",
    )

    def __init__(self, opts: dict[str, Any], where: str) -> None:
        validate_task_options(opts, where)
        self.given = dict(opts)
        n = opts.get("num_returns")
        self.streaming = n == STREAMING
        self.num_returns: int = 1 if n is None or self.streaming else n
        window = opts.get("_generator_backpressure_num_objects")
        self.window: int = DEFAULT_WINDOW if window is None else check_window(window, where)
        cpus = opts.get("num_cpus")
        self.num_cpus: float = 1 if cpus is None else cpus
        retries = opts.get("max_retries")
        self.max_retries: int = 3 if retries is None else retries
        self.retry_exceptions: bool | tuple[type[BaseException], ...] = (
            tuple(opts["retry_exceptions"])
            if isinstance(opts.get("retry_exceptions"), (list, tuple))
            else bool(opts.get("retry_exceptions", False))
        )
        self.env_vars: dict[str, str] | None = (
            env_vars_of(opts["runtime_env"], where) if opts.get("runtime_env") is not None else None
        )
        self.name: str | None = opts.get("name")


class RemoteFunction(Generic[R]):
    """A remote function: ``f.remote(*args, **kwargs)`` runs it on a task worker and returns an ObjectRef.

    Example::

        @actorloop.remote
        def square(x):
            return x * x

        actorloop.get([square.remote(i) for i in range(4)])   # [0, 1, 4, 9]

        @actorloop.remote(num_returns=2)
        def pair():
            return 1, 2

        a, b = pair.remote()
    """

    def __init__(self, function: Callable[..., R], options: dict[str, Any], _shared: Any = None) -> None:
        if not callable(function) or isinstance(function, type):
            raise TypeError(f"@actorloop.remote takes a function or a class, got {function!r}")
        name = getattr(function, "__name__", repr(function))
        plain: Any = function  # not narrowed by the checks below
        if inspect.isasyncgenfunction(plain) or inspect.isgeneratorfunction(plain):
            # As in Ray, a generator function streams its items unless num_returns says otherwise.
            if options.get("num_returns") is None:
                options = {**options, "num_returns": STREAMING}
            if inspect.isasyncgenfunction(plain) and options["num_returns"] != STREAMING:
                raise TypeError(
                    f"@actorloop.remote: {name} is an async generator: it streams its items "
                    f"(num_returns='streaming'), it cannot give num_returns={options['num_returns']!r}"
                )
        self._function = function
        self._options = _CallOptions(options, f"remote function {name}")
        # The pickled function and its digest, made on first call and shared with .options() copies.
        self._shared: dict[str, Any] = _shared if _shared is not None else {}
        self.__name__ = name
        self.__qualname__ = getattr(function, "__qualname__", name)
        self.__module__ = getattr(function, "__module__", None) or "__main__"
        self.__doc__ = getattr(function, "__doc__", None)
        self.__wrapped__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self.__name__} cannot be called directly; use {self.__name__}.remote(...) instead "
            f"(or {self.__name__}.__wrapped__(...) to run it here)"
        )

    def options(self, **options: Any) -> RemoteFunction[R]:
        """Override options for one call: ``f.options(num_returns=2, max_retries=0).remote(x)``."""
        if "max_calls" in options:
            raise ValueError("max_calls cannot be set in .options(); set it in @actorloop.remote(max_calls=...)")
        merged = dict(self._options.given)
        merged.update(options)
        return RemoteFunction(self._function, merged, self._shared)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in a task worker; returns an ObjectRef at once (a list of N with num_returns=N)."""
        opts = self._options
        backend = _backend.implied()
        if backend is not None:  # backend hook: the call runs on Ray
            return backend.call_function(self, opts.given, args, kwargs)
        rt = require_runtime()
        if rt.closed:
            raise RuntimeError(rt.closed_reason())
        env = opts.env_vars
        if env is None:
            env = _inherited_env or {}
        self._pickled()  # a function that cannot be pickled fails here, in the caller
        pool = _pool_for(rt, env)
        if opts.streaming:
            return self._remote_stream(rt, pool, args, kwargs)
        loop = _get_running_loop()
        if loop is None or loop.is_closed():
            task = _Task(self, opts, args, kwargs, rt.home_loop, pool)
            rt.entry.put(task.start)
        else:
            task = _Task(self, opts, args, kwargs, loop, pool)
            try:
                task.start(inline=True)
            except BaseException:
                for ref in task.refs:
                    ref._log_traceback = False
                raise
        refs = task.refs
        if opts.num_returns == 1:
            return refs[0]
        if opts.num_returns == 0:
            return None
        return list(refs)

    def _remote_stream(
        self, rt: Runtime, pool: _Pool, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ObjectRefGenerator[Any]:
        """A generator function: stream its items from a task worker (no retries: items were handed out)."""
        opts = self._options
        loop = _get_running_loop()
        if loop is None or loop.is_closed():
            loop = rt.home_loop
        weight = opts.num_cpus
        slot, state = pool.pick(weight)
        for _ in range(len(pool.slots)):
            conn = state.conns.get(loop)
            if conn is None or conn.dead_error is None:
                break
            pool.unload(slot, weight)  # a worker this loop knows is dead: make a new one
            pool.worker_died(slot, state)
            slot, state = pool.pick(weight)
        digest, blob = self._pickled()
        try:
            gen: ObjectRefGenerator[Any] = state.submit("run_stream", (digest, blob, *args), kwargs, None, opts.window)
        except SerializationError as exc:
            pool.unload(slot, weight)
            raise SerializationError(f"could not pickle the arguments of {self.__name__}(): {exc.__cause__}") from exc
        except BaseException:
            pool.unload(slot, weight)
            raise
        name = opts.name or self.__name__
        gen._state.rename = lambda exc: _renamed_error(exc, name)
        gen._state.where = f"{name}()"

        # Called when the stream ends, however it ends (not a callback of the completion ref: the loop may close first).
        gen._state.on_end = lambda: pool.unload(slot, weight)
        return gen

    def _pickled(self) -> tuple[bytes, bytes]:
        shared = self._shared
        pickled = shared.get("pickled")
        if pickled is None:
            try:
                blob = cloudpickle.dumps(self._function, 5)
            except Exception as exc:
                raise SerializationError(f"could not pickle the remote function {self.__name__}: {exc}") from exc
            pickled = shared["pickled"] = (hashlib.blake2b(blob, digest_size=16).digest(), blob)
        return pickled

    def __reduce__(self) -> Any:
        # Sent to an actor or another task (a function calling this one): only the function and options travel.
        return (RemoteFunction, (self._function, self._options.given))

    def __repr__(self) -> str:
        return f"RemoteFunction({self.__module__}.{self.__qualname__})"


# Shown (and pickled by reference) as actorloop.RemoteFunction, the name the package exports lazily.
RemoteFunction.__module__ = "actorloop"
