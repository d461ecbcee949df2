"""The module-level functions of actorloop: init, get, wait, kill, cancel, ...

The top layer: each function checks its arguments here, where the caller
gave them, and then asks the runtime (``_runtime``) or the refs (``_ref``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import os
import socket
import sys
import threading
import time
from asyncio import events
from asyncio.tasks import _enter_task, _leave_task
from typing import Any, Sequence, TypeVar, overload

import cloudpickle

from . import _backend, _runtime, _shm
from ._entry import entry_for
from ._handles import ActorHandle, ActorProxy
from ._meta import DEFAULT_GROUP, TASKS_NAMESPACE, ActorInfo, env_vars_of
from ._ref import ObjectRef, PutRef, SyncWaiter, _add_waiter, _check_resolvable, _remove_waiter, make_ref, wait_sync
from ._runtime import current_lane, get_runtime, require_runtime, self_call_of
from ._stream import ObjectRefGenerator
from .exceptions import GetTimeoutError, SerializationError
from .runtime_context import get_runtime_context

T = TypeVar("T")


class InitContext(dict):  # type: ignore[type-arg]
    """What ``init()`` returns: the node's ``address`` and this process's ``namespace``, as a dict.

    It is also a context manager that shuts actorloop down at the end, as
    Ray's is::

        with actorloop.init():
            ...                      # actorloop.shutdown() runs on leaving the block
    """

    def __enter__(self) -> InitContext:
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()

    @property
    def dashboard_url(self) -> str | None:
        """The node's dashboard (``http://127.0.0.1:PORT``) when ``init(dashboard_port=...)`` started it, else None."""
        return self.get("dashboard_url")

    @property
    def address_info(self) -> dict[str, Any]:
        """The same keys, as Ray's ``RayContext.address_info``."""
        return dict(self)


def init(
    address: str | None = None,
    *,
    namespace: str | None = None,
    log_to_driver: bool = True,
    log_format: str = "text",
    ignore_reinit_error: bool = False,
    runtime_env: dict[str, Any] | None = None,
    num_cpus: int | None = None,
    dashboard_port: int | None = None,
    dashboard_host: str | None = None,
    backend: str | None = None,
    **ray_options: Any,
) -> InitContext:
    """Connect this process to a node, starting an embedded one if needed.

    ``address=None`` uses ``$ACTORLOOP_ADDRESS``, else the node that
    ``actorloop start`` runs, else starts an embedded node that ends with
    this process.  ``"auto"`` requires the started node; ``"local"`` always
    starts a new embedded node; any other string is a node's directory.

    ``runtime_env={"env_vars": {...}}`` sets environment variables in every
    actor this process creates (``.options(runtime_env=...)`` adds to them
    per actor).  ``num_cpus`` is what ``cluster_resources()`` reports and
    sizes the remote-function pool.  Ray's other options that mean nothing
    on one machine are accepted (see ``IGNORED_INIT_OPTIONS``); unknown ones
    raise ``TypeError``.

    ``log_format="json"`` prints each line the actors write as one JSON
    object (``time``, ``actor_id``, ``class``, ``name``, ``namespace``,
    ``pid``, ``stream``, ``message``) instead of ``(Class pid=N) line``, for
    log collectors; an embedded node writes its detached actors' lines so too.

    ``dashboard_port`` makes the node serve Prometheus metrics
    (``/metrics``), a live page of its actors (``/``) and their JSON
    (``/api/actors``) on that TCP port (0 picks a free one), on
    ``dashboard_host`` (default ``127.0.0.1``); the URL is the returned
    context's ``dashboard_url``.  Off unless ``dashboard_port`` is given
    (Ray's ``include_dashboard=True`` alone means port 8265, as in Ray;
    ``include_dashboard=False`` turns it off).  See docs/observability.md.

    ``backend="ray"`` (or ``$ACTORLOOP_BACKEND=ray``) runs the program on
    Ray instead: ``address`` is then a Ray cluster's address and the other
    arguments (Ray's own options too) go to ``ray.init`` (docs/ray_backend.md).

    Example::

        with actorloop.init(namespace="jobs"):
            ...

        ctx = actorloop.init(dashboard_port=8265)
        print(ctx.dashboard_url)       # http://127.0.0.1:8265
    """
    # Backend hook: another engine (Ray) takes the whole program.
    chosen = _backend.chosen(backend)
    if chosen != "local" or _backend.current is not None:
        return _init_backend(
            chosen,
            address,
            namespace=namespace,
            log_to_driver=log_to_driver,
            ignore_reinit_error=ignore_reinit_error,
            runtime_env=runtime_env,
            num_cpus=num_cpus,
            **ray_options,
        )
    with _runtime.runtime_lock():
        if get_runtime() is not None:
            if ignore_reinit_error:
                return _context()
            raise RuntimeError(
                "actorloop.init() was already called in this process; call actorloop.shutdown() first or pass "
                "ignore_reinit_error=True"
            )
        for key in ray_options:
            if key not in IGNORED_INIT_OPTIONS:
                raise TypeError(f"actorloop.init() got an unknown option {key!r}")
        if namespace is not None:
            if not isinstance(namespace, str):
                raise TypeError(f"namespace must be None or a string, got {type(namespace).__name__}")
            if not namespace:
                raise ValueError('"" is not a valid namespace; pass None to get an anonymous one')
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a string (a node directory, 'auto' or 'local'), got {address!r}")
        if log_format not in ("text", "json"):
            raise ValueError(f'log_format must be "text" or "json", got {log_format!r}')
        env_vars = env_vars_of(runtime_env, "actorloop.init(runtime_env=...)")
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 0):
            raise ValueError(f"num_cpus must be a non-negative int, got {num_cpus!r}")
        dashboard = None
        include_dashboard = ray_options.get("include_dashboard")
        if include_dashboard is True and dashboard_port is None:
            dashboard_port = DEFAULT_DASHBOARD_PORT  # Ray's include_dashboard=True: its default port
        if dashboard_port is not None and include_dashboard is not False:  # checked before any node starts
            # Only here: a process that serves no dashboard never loads it (nor ipaddress, json).
            from ._node._dashboard import check_dashboard_address

            dashboard = check_dashboard_address(dashboard_host, dashboard_port)
        rt = _runtime.start(address, namespace=namespace, log_to_driver=log_to_driver, log_format=log_format)
        rt.env_vars = env_vars
        rt.num_cpus = num_cpus
        dashboard_url = None
        if dashboard is not None:
            try:
                dashboard_url = rt.node_request("dashboard", *dashboard)
            except BaseException as exc:
                _runtime.stop()  # init failed as a whole: no half-started runtime (nor embedded node) is left
                if isinstance(exc, Exception):
                    exc.__cause__ = None  # the node's traceback says nothing more than the message
                raise
        return _context(dashboard_url)


#: The dashboard's port for Ray's ``init(include_dashboard=True)`` without a ``dashboard_port`` (Ray's own default).
DEFAULT_DASHBOARD_PORT = 8265

#: Ray's init() options that mean nothing on one machine: accepted, no effect.
IGNORED_INIT_OPTIONS = frozenset(
    {
        "num_gpus",
        "resources",
        "object_store_memory",
        "include_dashboard",  # read by init() itself: True means a dashboard on 8265, False none
        "logging_level",
        "logging_format",
        "configure_logging",
        "local_mode",
        "job_config",
        "labels",
        "storage",
        "_temp_dir",
        "_system_config",
        "_node_ip_address",
        "_memory",
        "_redis_password",
        "_plasma_directory",
        "log_to_driver_level",
    }
)


def _init_backend(name: str, address: str | None, **init_args: Any) -> InitContext:
    """``init()`` for a backend other than the local node (backend hook)."""
    current = _backend.current
    if current is not None:
        if init_args.get("ignore_reinit_error"):
            return InitContext(current.context())
        raise RuntimeError(
            f"actorloop.init() was already called in this process (backend {current.name!r}); call "
            "actorloop.shutdown() first or pass ignore_reinit_error=True"
        )
    if get_runtime() is not None:
        raise RuntimeError(
            f"actorloop already runs on the local node in this process; call actorloop.shutdown() before "
            f"init(backend={name!r})"
        )
    return InitContext(_backend.start(name, address=address, **init_args).context())


def _context(dashboard_url: str | None = None) -> InitContext:
    rt = get_runtime()
    assert rt is not None
    return InitContext(address=rt.node_dir, namespace=rt.namespace, dashboard_url=dashboard_url)


def shutdown() -> None:
    """Disconnect from the node; actors this process created (unless detached) end.

    An embedded node ends too.  Safe to call twice.
    """
    if _backend.current is not None:  # backend hook
        _backend.stop()
        return
    _runtime.stop()


def is_initialized() -> bool:
    """Whether ``init()`` was called (or implied) in this process and not shut down."""
    return get_runtime() is not None or _backend.current is not None


@overload
def get(refs: ObjectRef[T], *, timeout: float | None = None) -> T: ...


@overload
def get(refs: Sequence[ObjectRef[T]], *, timeout: float | None = None) -> list[T]: ...


# Refs of different types: mypy joins ObjectRef[int] and ObjectRef[str] to object (a future is
# invariant), so this takes any sequence; the run-time check names a non-ref.
@overload
def get(refs: Sequence[object], *, timeout: float | None = None) -> list[Any]: ...


def get(refs: Any, *, timeout: float | None = None) -> Any:
    """Block until the ref(s) resolve and return their value(s), as Ray's ``get`` does.

    Works on any thread, also where an event loop is running (Jupyter,
    IPython's autoawait, ``python -m asyncio``, a coroutine under
    ``asyncio.run``): the loop's other tasks wait, as they would in Ray,
    while the calls' results still arrive (see ``docs/get.md``).  Raises
    ``GetTimeoutError`` after ``timeout`` seconds, the call's error
    (``TaskError``, ``ActorDiedError``, ...) if it failed, and
    ``RuntimeError`` at once where waiting could never end (an async actor
    blocking its own loop, a sync actor waiting on a call to itself).

    Example::

        values = actorloop.get([c.increment.remote() for _ in range(3)])
    """
    if _backend.current is not None:  # backend hook
        return _backend.current.get(refs, timeout)
    single = isinstance(refs, ObjectRef)
    ref_list = [refs] if single else list(refs) if isinstance(refs, (list, tuple)) else None
    if ref_list is None:
        if isinstance(refs, ObjectRefGenerator):
            raise TypeError(_GET_GENERATOR)
        raise TypeError(f"actorloop.get() takes an ObjectRef or a list of them, got {type(refs).__name__}")
    for ref in ref_list:
        if not isinstance(ref, ObjectRef):
            if isinstance(ref, ObjectRefGenerator):
                raise TypeError(_GET_GENERATOR)
            raise TypeError(f"actorloop.get() takes ObjectRefs, got {type(ref).__name__} in the list")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    done = _block_until(ref_list, len(ref_list), timeout, "get")
    if done < len(ref_list):
        raise GetTimeoutError(
            f"get() timed out after {timeout} s with {len(ref_list) - done} of {len(ref_list)} not ready"
        )
    values = [ref._result_now() for ref in ref_list]
    return values[0] if single else values


_GET_GENERATOR = (
    "actorloop.get() does not take an ObjectRefGenerator (as in Ray): iterate over it (`for ref in gen: "
    "actorloop.get(ref)`), or get(gen.completed()) to wait for its end"
)


@overload
def wait(
    refs: Sequence[ObjectRef[T]], *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True
) -> tuple[list[ObjectRef[T]], list[ObjectRef[T]]]: ...


@overload
def wait(
    refs: Sequence[Any], *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True
) -> tuple[list[Any], list[Any]]: ...


def wait(
    refs: Sequence[Any], *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True
) -> tuple[list[Any], list[Any]]:
    """Wait until ``num_returns`` refs are ready; return ``(ready, not_ready)`` in the order given.

    Like ``get``, it works where an event loop is running.  An
    ``ObjectRefGenerator`` in the list is ready when ``next(gen)`` would not
    block (an item, its error or its end arrived), as in Ray.

    Example::

        ready, not_ready = actorloop.wait(refs, num_returns=2, timeout=1.0)
    """
    given = list(refs)
    if any(isinstance(ref, ObjectRefGenerator) for ref in given):
        if _backend.current is not None:  # backend hook (streams)
            return _backend.current.wait(given, num_returns, timeout, fetch_local)
        return _wait_with_generators(given, num_returns, timeout)
    ref_list = given
    for ref in ref_list:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"actorloop.wait() takes a list of ObjectRefs, got {type(ref).__name__}")
    if len(set(map(id, ref_list))) != len(ref_list):
        raise ValueError("actorloop.wait() got the same ObjectRef twice")
    if not 0 <= num_returns <= len(ref_list) and ref_list:
        raise ValueError(f"num_returns must be between 0 and len(refs)={len(ref_list)}, got {num_returns}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    if _backend.current is not None:  # backend hook
        return _backend.current.wait(ref_list, num_returns, timeout, fetch_local)
    _block_until(ref_list, num_returns, timeout, "wait")
    ready: list[ObjectRef[Any]] = []
    not_ready: list[ObjectRef[Any]] = []
    for ref in ref_list:
        (ready if ref.done() and len(ready) < num_returns else not_ready).append(ref)
    return ready, not_ready


# -- blocking where a loop runs ---------------------------------------------------
#
# Ray's get() blocks the calling thread and its I/O goes on in Ray's own
# threads.  Here a call made on a running event loop goes out on that loop's
# own connection (so that ``await ref`` costs no thread hop, SPEC section 4),
# and its answer arrives through that loop: block the loop's thread in a
# plain wait and the answer is never read.  Moving those calls to the home
# loop's thread instead would cost every ``await`` two thread hops, and a
# call already sent on the loop's socket cannot move at all.  So get() on a
# loop's thread *is* that loop for a while: it runs the loop's I/O, timers
# and callbacks itself, and the steps of actorloop's own tasks (connecting,
# resolving ref arguments, task retries), but holds back the steps of every
# other task until it returns.  To the user's code that is Ray's behaviour:
# their coroutines stay frozen while get() blocks, the calls complete.
#
# That needs the loop's internals: asyncio's own loop (``BaseEventLoop``,
# which Jupyter, IPython, ``python -m asyncio`` and ``asyncio.run`` use).  A
# uvloop loop (an actor's own loop, ``uvloop.run``) cannot be driven from
# inside one of its callbacks; there get() still blocks for refs that other
# threads complete, and refuses (RuntimeError, at once) a ref only that loop
# could complete - for an async actor this is a true deadlock, as Ray warns.


def _block_until(refs: list[ObjectRef[Any]], num_returns: int, timeout: float | None, what: str) -> int:
    """Wait until ``num_returns`` of ``refs`` are done (or ``timeout``); return how many are."""
    loop = events._get_running_loop()
    if loop is None and current_lane.group is None:
        # Plain sync code (the common case): the refs complete on other threads' loops.
        lend = _runtime.task_lending  # a task lends its worker slot while it waits
        if lend is None:
            return wait_sync(refs, num_returns, timeout)
        with lend(refs):
            return wait_sync(refs, num_returns, timeout)
    pending = [r for r in refs if not r.done()]
    if len(refs) - len(pending) >= num_returns or timeout == 0:
        return len(refs) - len(pending)
    if current_lane.group is not None:
        _refuse_self_wait(pending, what)
    lend = _runtime.task_lending
    with lend(pending) if lend is not None else contextlib.nullcontext():
        if loop is None or loop.is_closed():
            return wait_sync(refs, num_returns, timeout)
        if _drivable(loop):
            return _drive(loop, refs, num_returns, timeout)
        for ref in pending:
            if ref.get_loop() is loop:
                raise RuntimeError(_loop_deadlock_message(loop, what))
        return wait_sync(refs, num_returns, timeout)  # every ref completes on another thread


def _loop_deadlock_message(loop: asyncio.AbstractEventLoop, what: str) -> str:
    rt = get_runtime()
    if rt is not None and loop is rt.home_loop:
        where = (
            "this actor's event loop (an async actor's methods and sync __init__, and async remote functions, "
            "run there)"
            if rt.role == "actor"
            else "actorloop's own background loop (a done-callback of a ref made in sync code runs there)"
        )
    else:
        where = f"a {type(loop).__module__}.{type(loop).__name__} event loop (get() can run only asyncio's own loops)"
    return (
        f"actorloop.{what}() would deadlock: it was called on the thread of {where}, and the result it waits "
        f"for can only arrive through that same loop, which a blocking {what}() stops. Use `await ref` (or "
        f"`await asyncio.gather(*refs)`, `await asyncio.wait(refs)`) here instead"
    )


def _refuse_self_wait(pending: list[ObjectRef[Any]], what: str) -> None:
    """On an actor's method thread: refuse to wait for a call to this actor that only this thread could run."""
    lane = current_lane
    for ref in pending:
        call = self_call_of(ref)
        if call is None:
            continue
        method, group, is_async = call
        if group != lane.group:
            continue  # another concurrency group: other threads run it
        # A sync method of this group runs on one of the lane's threads, an async one needs a free slot of the
        # group: with one of either, that is the one this thread holds while it waits.
        if (lane.size if not is_async else lane.limit) == 1:
            where = "concurrency group" if group != DEFAULT_GROUP else "actor (max_concurrency=1)"
            raise RuntimeError(
                f"actorloop.{what}() would deadlock: this actor method waits for its own call to {method}(), "
                f"which can only start once this method returns (this {where} runs one call at a time). "
                f"Return the ref instead of its value, make the method async and `await ref`, or let the "
                f"call run elsewhere (max_concurrency > 1 or a concurrency group of its own)"
            )


class _LoopWake(SyncWaiter):
    """Wakes a loop that ``_drive`` runs when a ref of another loop (or thread) finishes."""

    __slots__ = ("loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:  # no lock: the loop's selector is the wait
        self.loop = loop

    def notify(self, ref: ObjectRef[Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(_nothing)
        except RuntimeError:  # closed: nothing to wake
            pass


def _nothing() -> None:
    pass


def _drivable(loop: asyncio.AbstractEventLoop) -> bool:
    return isinstance(loop, asyncio.BaseEventLoop) and hasattr(loop, "_selector") and hasattr(loop, "_ready")


#: Where actorloop's own coroutines live: their tasks run while get() drives a loop.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _drive(loop: Any, refs: list[ObjectRef[Any]], num_returns: int, timeout: float | None) -> int:
    """Run ``loop`` (whose thread this is, inside one of its callbacks) until ``num_returns`` refs are done."""
    pending = [r for r in refs if not r.done()]
    for ref in pending:
        _check_resolvable(ref.get_loop())
    elsewhere = [r for r in pending if r.get_loop() is not loop]
    wake = _LoopWake(loop)
    if elsewhere:
        _add_waiter(elsewhere, wake)
        for ref in elsewhere:
            if ref.done():
                wake.notify(ref)
    deadline = None if timeout is None else time.monotonic() + timeout
    # The task that called get() steps aside, so that actorloop's own tasks may take steps meanwhile.
    current = asyncio.current_task(loop)
    if current is not None:
        _leave_task(loop, current)
    held: collections.deque[Any] = collections.deque()
    ours: dict[Any, bool] = {}
    # The iteration that called us already counted the ready callbacks it will pop after ours.
    expected = len(loop._ready)
    try:
        while True:
            if sum(1 for r in refs if r.done()) >= num_returns:
                break
            left = _FALLBACK_POLL if deadline is None else min(_FALLBACK_POLL, deadline - time.monotonic())
            if left <= 0:
                break
            _run_once_holding_tasks(loop, held, ours, left)
    finally:
        ready = loop._ready
        ready.extendleft(reversed(held))  # the held steps run first, in their order, once get() returns
        while len(ready) < expected:  # we ran some of those callbacks: stand-ins keep its count right
            ready.append(asyncio.Handle(_nothing, (), loop))
        if current is not None:
            _enter_task(loop, current)
        if elsewhere:
            _remove_waiter(elsewhere, wake)
    return sum(1 for r in refs if r.done())


#: Longest single wait in the selector; a safety net, never the mechanism (the wake-ups are).
_FALLBACK_POLL = 0.25
#: asyncio's C tasks, and its pure-Python ones (which some libraries patch in).
_TASK_TYPES: tuple[type, ...] = tuple(
    t for t in (asyncio.Task, getattr(asyncio.tasks, "_PyTask", None)) if isinstance(t, type)
)


def _run_once_holding_tasks(loop: Any, held: collections.deque[Any], ours: dict[Any, bool], longest: float) -> None:
    """One iteration of asyncio's ``BaseEventLoop._run_once`` that holds back other tasks' steps."""
    ready = loop._ready
    scheduled = loop._scheduled
    while scheduled and scheduled[0]._cancelled:
        loop._timer_cancelled_count -= 1
        heapq.heappop(scheduled)._scheduled = False
    if ready:
        wait_for = 0.0
    elif scheduled:
        wait_for = min(max(0.0, scheduled[0]._when - loop.time()), longest)
    else:
        wait_for = longest
    loop._process_events(loop._selector.select(wait_for))
    end = loop.time() + loop._clock_resolution
    while scheduled and scheduled[0]._when < end:
        handle = heapq.heappop(scheduled)
        handle._scheduled = False
        ready.append(handle)
    for _ in range(len(ready)):
        handle = ready.popleft()
        if handle._cancelled:
            continue
        # A task's step or wake-up is its bound method (__self__ is the task) on every supported Python.
        task = getattr(handle._callback, "__self__", None)
        if isinstance(task, _TASK_TYPES) and not _is_ours(task, ours):
            held.append(handle)
            continue
        handle._run()


def _is_ours(task: Any, cache: dict[Any, bool]) -> bool:
    known = cache.get(task)
    if known is None:
        code = getattr(task.get_coro(), "cr_code", None)
        known = cache[task] = code is not None and code.co_filename.startswith(_PACKAGE_DIR)
    return known


def _wait_with_generators(given: list[Any], num_returns: int, timeout: float | None) -> tuple[list[Any], list[Any]]:
    """``wait`` over refs and generators: each generator is stood for by a ref ready when it is."""
    stand_ins: list[ObjectRef[Any]] = []
    for item in given:
        if isinstance(item, ObjectRefGenerator):
            loop = item._state.loop
            if item.next_ready() or loop.is_closed():
                probe: ObjectRef[None] = make_ref(loop, None, 0)
                probe.set_result(None)
            elif events._get_running_loop() is loop:
                probe = item._ready_ref()  # on the generator's own loop: no hop (and no wait on ourselves)
            else:
                probe = entry_for(loop).run(_probe(item)).result()
            stand_ins.append(probe)
        elif isinstance(item, ObjectRef):
            stand_ins.append(item)
        else:
            raise TypeError(
                f"actorloop.wait() takes a list of ObjectRefs and ObjectRefGenerators, got {type(item).__name__}"
            )
    ready_refs, _ = wait(stand_ins, num_returns=num_returns, timeout=timeout)
    chosen = {id(r) for r in ready_refs}
    ready = [item for item, probe in zip(given, stand_ins, strict=True) if id(probe) in chosen]
    not_ready = [item for item, probe in zip(given, stand_ins, strict=True) if id(probe) not in chosen]
    return ready, not_ready


async def _probe(gen: ObjectRefGenerator[Any]) -> ObjectRef[None]:
    return gen._ready_ref()


def cancel(ref: ObjectRef[Any] | ObjectRefGenerator[Any], *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the call behind ``ref``: a running coroutine gets CancelledError, a queued call never starts.

    Afterwards ``await ref`` and ``get(ref)`` raise ``TaskCancelledError``.
    ``ref`` may be an ``ObjectRefGenerator``: its generator stops in the actor
    (its ``finally`` runs), and ``next(gen)`` gives the items already received,
    then a ref that raises ``TaskCancelledError``.
    A sync method already running finishes; its result is dropped.
    ``force=True`` raises ``ValueError``, as Ray does for actor calls; for a
    remote function's call it also ends the worker process that has it.
    """
    if isinstance(ref, ObjectRefGenerator):
        if force:
            raise ValueError(
                "actorloop.cancel(force=True) is not supported for streams; cancel without force (the generator "
                "stops in the actor), or end the actor with actorloop.kill(handle)"
            )
        if _backend.current is not None:  # backend hook (streams)
            return _backend.current.cancel(ref, force, recursive)
        _cancel_on_loop(ref._state.loop, ref._cancel_by_user)
        return
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"actorloop.cancel() takes an ObjectRef or an ObjectRefGenerator, got {type(ref).__name__}")
    if _backend.current is not None:  # backend hook
        return _backend.current.cancel(ref, force, recursive)
    # Only a task can be killed, and there are none before _tasks is imported.
    tasks = sys.modules.get("actorloop._tasks") if force else None
    force_kill = tasks.force_cancel_target(ref) if tasks is not None else None
    if force and force_kill is None:
        # Ray refuses it for actor calls too: killing the process would lose the actor's state.
        raise ValueError(
            "actorloop.cancel(force=True) is not supported for actor method calls (an actor's state would be "
            "lost); cancel without force, or end the actor with actorloop.kill(handle)"
        )
    _cancel_on_loop(ref.get_loop(), ref._cancel_by_user)
    if force_kill is not None:
        force_kill()


def _cancel_on_loop(owner: Any, cancel_by_user: Any) -> None:
    """Run ``cancel_by_user`` on ``owner`` (the loop of the ref); from sync code, wait until it ran."""
    if events._get_running_loop() is owner:
        cancel_by_user()
    elif not owner.is_closed():
        done = threading.Event()

        def run() -> None:
            try:
                cancel_by_user()
            finally:
                done.set()

        entry_for(owner).put(run)
        if events._get_running_loop() is None:
            done.wait(5)


def kill(actor: ActorHandle[Any] | ActorProxy[Any], *, no_restart: bool = True) -> None:
    """End the actor's process; returns once it has ended.

    Later calls raise ``ActorDiedError``; with ``no_restart=False`` the actor
    restarts if its ``max_restarts`` allows, and calls wait for it.
    """
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"actorloop.kill() takes an ActorHandle, got {type(actor).__name__}")
    if _backend.current is not None:  # backend hook
        return _backend.current.kill(actor, bool(no_restart))
    require_runtime().node_request("kill", actor._actor_id, bool(no_restart))


def get_actor(name: str, namespace: str | None = None) -> ActorHandle[Any]:
    """Return a handle to the actor named ``name`` in ``namespace`` (default: this process's).

    Raises ``ValueError`` naming the name and namespace if there is none.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be None or a string, got {type(namespace).__name__}")
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.get_actor(name, namespace)  # type: ignore[no-any-return]
    rt = require_runtime()
    ns = namespace if namespace is not None else rt.namespace
    try:
        actor_id, meta, http_url, caller_options = rt.node_request("get_actor", name, ns)
    except ValueError:
        raise ValueError(_missing_actor_message(name, ns, rt.namespace, namespace is None)) from None
    return ActorHandle(actor_id, meta, http_url, rt.state_for(actor_id, meta, caller_options, created_here=False))


def _missing_actor_message(name: str, namespace: str, own_namespace: str, defaulted: bool) -> str:
    lines = [f"no live actor named {name!r} in namespace {namespace!r}. Likely causes:"]
    if defaulted and own_namespace.startswith("anonymous-"):
        lines.append(
            "- this process runs in an anonymous namespace of its own, so it only sees names it created: pass "
            "namespace=... here, or actorloop.init(namespace=...) in both programs"
        )
    elsewhere = sorted({a.namespace or "" for a in list_actors() if a.name == name and a.state != "DEAD"})
    if elsewhere:
        lines.append(f"- an actor of that name lives in namespace(s) {', '.join(map(repr, elsewhere))}")
    lines.append("- it was not created yet (names are registered when .remote() returns)")
    lines.append(
        "- it ended: killed, crashed past max_restarts, or it was not detached and its creator exited "
        "(use lifetime='detached' to outlive the creator)"
    )
    return "\n".join(lines)


def list_actors() -> list[ActorInfo]:
    """Every actor of every namespace on the node, as ``ActorInfo`` records.

    The task pool's workers (namespace ``_actorloop_tasks``) are left out, as
    Ray lists no task workers; ``actorloop list`` shows them.
    """
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.list_actors()  # type: ignore[no-any-return,unused-ignore]
    return [a for a in require_runtime().node_request("list") if a.namespace != TASKS_NAMESPACE]


def cluster_resources() -> dict[str, float]:
    """This machine's resources, named as Ray names them: CPU, memory, object store, the node.

    ``CPU`` is ``init(num_cpus=...)`` if given, else the number of CPUs;
    ``memory`` is the physical memory and ``object_store_memory`` the size of
    ``/dev/shm`` (where large arguments travel), in bytes.
    """
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.cluster_resources()  # type: ignore[no-any-return,unused-ignore]
    rt = require_runtime()
    cpus = rt.num_cpus if rt.num_cpus is not None else (os.cpu_count() or 1)
    resources: dict[str, float] = {"CPU": float(cpus)}
    try:
        resources["memory"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        pass
    try:
        shm = os.statvfs("/dev/shm")
        resources["object_store_memory"] = float(shm.f_frsize * shm.f_blocks)
    except OSError:
        pass
    resources["node:127.0.0.1"] = 1.0
    resources["node:__internal_head__"] = 1.0
    return resources


def available_resources() -> dict[str, float]:
    """The resources not in use: the same as ``cluster_resources()``.

    One machine reserves nothing for actors or tasks (``num_cpus`` and the
    like are accepted and have no effect), so nothing is ever subtracted;
    ``memory`` is what the system reports as available now.
    """
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.available_resources()  # type: ignore[no-any-return,unused-ignore]
    resources = cluster_resources()
    try:
        resources["memory"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError):
        pass
    return resources


def nodes() -> list[dict[str, Any]]:
    """The one node of this machine, described with the keys of Ray's ``ray.nodes()``."""
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.nodes()  # type: ignore[no-any-return,unused-ignore]
    rt = require_runtime()
    node_id = get_runtime_context().get_node_id()
    return [
        {
            "NodeID": node_id,
            "Alive": True,
            "alive": True,
            "NodeManagerAddress": "127.0.0.1",
            "NodeManagerHostname": socket.gethostname(),
            "NodeName": "127.0.0.1",
            "RayletSocketName": os.path.join(rt.node_dir, "node.sock"),
            "Resources": cluster_resources(),
            "Labels": {},
        }
    ]


def put(value: T) -> ObjectRef[T]:
    """Store a copy of ``value`` and return a ref that resolves to it, as Ray's ``put`` does.

    The ref is already done: ``get``/``await`` return the stored copy, and
    passed as a top-level argument of a ``.remote()`` call (actor method or
    remote function) it is replaced by the value; nested in an argument or
    result it stays a ref.  Large buffers (numpy arrays, big ``bytes``) are
    copied once into shared memory: every call the ref (or the array ``get``
    returns) is passed to names that memory instead of copying it again, and
    receivers map it read-only.  The memory is reused or freed once this
    process dropped the ref and every value ``get`` returned from it, and
    every receiver let go of it (see docs/objects.md).  Later changes to
    ``value`` are not seen through the ref.

    Example::

        ref = actorloop.put(big_array)
        results = actorloop.get([process.remote(ref, i) for i in range(10)])
    """
    if isinstance(value, ObjectRef):
        raise TypeError("actorloop.put() takes a value, not an ObjectRef (the ref already stands for its value)")
    backend = _backend.implied()
    if backend is not None:  # backend hook
        return backend.put(value)  # type: ignore[no-any-return]
    rt = require_runtime()
    loop = events._get_running_loop()
    if loop is None or loop.is_closed():
        loop = rt.home_loop
    try:
        payload, names, _ = _shm.dumps_with_buffers(_shm.wrap_big_binary(value), forwarding=False)
    except Exception as exc:
        raise SerializationError(f"actorloop.put(): could not pickle {type(value).__name__}: {exc}") from exc
    _shm.segment_pool.adopt_put(names)
    try:
        table = _shm.segment_table(payload)
        post = entry_for(rt.home_loop).put
        views = [_shm.map_own_put(name, size, post) for name, size in table]
        inner = bytes(memoryview(payload)[_shm.skip_table(payload) :])
        snapshot = cloudpickle.loads(inner, buffers=views)
    except BaseException:
        _shm.segment_pool.unhold(names)
        raise
    ref: PutRef[T] = make_ref(loop, None, 0, PutRef)
    ref._inner = inner
    ref._views = views
    # A fresh future has no callbacks yet, so settling it from this thread schedules nothing on its loop.
    ref.set_result(snapshot)
    return ref
