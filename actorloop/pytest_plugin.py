"""actorloop's pytest plugin: node fixtures, a leftover check, and actor classes of test modules shipped by value.

pytest loads it by itself once actorloop is installed (the ``pytest11``
entry point ``actorloop``); ``import actorloop`` never imports it, or pytest.
A test suite needs no conftest of its own::

    import actorloop

    @actorloop.remote
    class Counter:
        def __init__(self):
            self.n = 0
        def incr(self):
            self.n += 1
            return self.n

    def test_counts(actorloop_module_node):
        c = Counter.remote()
        assert actorloop.get(c.incr.remote()) == 1

    @pytest.mark.asyncio                        # or @pytest.mark.anyio
    async def test_counts_async(actorloop_node):
        c = Counter.remote()
        assert await c.incr.remote() == 1        # awaited on the test's own loop

What it does (docs/testing.md has the details):

- Fixtures ``actorloop_node`` (a node per test), ``actorloop_module_node``
  (per module) and ``actorloop_session_node`` (per session). Each starts an
  embedded node in a private directory, yields a :class:`NodeInfo`, and at
  the end shuts it down and checks that every process of it ended.  They are
  plain (sync) fixtures, usable from ``async def`` tests under pytest-asyncio
  (strict or auto mode) and anyio's plugin alike: starting and stopping a
  node needs no event loop, and refs are awaited on whichever loop runs the
  test.
- Isolation: ``$ACTORLOOP_DIR`` points into a private directory of the
  session and ``$ACTORLOOP_ADDRESS`` is removed, so no test reaches the node
  that ``actorloop start`` runs for the user.
- The leftover check: a test that leaves actors (or actorloop processes)
  behind fails, with a message naming them; ``@pytest.mark.actorloop_allow_leftovers``
  exempts a test.  At the end of the session every actorloop process the
  run started must have ended.
- Actor classes defined in test modules are pickled by value, so actors
  never import the test module.

Its ini options (all optional): ``actorloop_isolate``,
``actorloop_private_tmpdir``, ``actorloop_leftover_check``,
``actorloop_leftover_timeout``, ``actorloop_pickle_by_value``.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import _api, _runtime, _tasks
from ._meta import ActorInfo

__all__ = ["NodeInfo"]

ALLOW_LEFTOVERS = "actorloop_allow_leftovers"
_INI_HELP = {
    "actorloop_isolate": "point $ACTORLOOP_DIR into a private directory and drop $ACTORLOOP_ADDRESS, so tests "
    "never reach the user's running node (default: true)",
    "actorloop_private_tmpdir": "also point $TMPDIR (and tempfile) at the session's private directory, so every "
    "embedded node of the run, subprocesses' included, lives there; removed at the end (default: false)",
    "actorloop_leftover_check": "fail tests that leave actors or actorloop processes behind (default: true)",
    "actorloop_leftover_timeout": "seconds to wait for dropped actors and ending processes to go before a "
    "leftover check fails (default: 10)",
    "actorloop_pickle_by_value": "ship the classes and functions of test modules to actors by value, so actors "
    "never import the test module (default: true)",
}
_BOOL_DEFAULTS = {
    "actorloop_isolate": True,
    "actorloop_private_tmpdir": False,
    "actorloop_leftover_check": True,
    "actorloop_pickle_by_value": True,
}


@dataclass(frozen=True)
class NodeInfo:
    """What the node fixtures yield: the embedded node of the fixture.

    ``address`` is the node's directory (what ``actorloop.init()`` returned as
    ``address``: another process joins with ``init(address=...)`` or
    ``$ACTORLOOP_ADDRESS``), ``namespace`` this process's namespace on it and
    ``pid`` the node process.
    """

    address: str
    namespace: str
    pid: int


# -- the session --------------------------------------------------------------------------------


@dataclass
class _Session:
    dir: str
    check: bool
    timeout: float
    pickle_by_value: bool
    #: Every actorloop process of this run seen by a check: (pid, start time) -> its command line.
    seen: dict[tuple[int, int], str] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    #: The scope of the plugin fixture whose node is running ("function", "module", "session"), if any.
    owner: str | None = None


_session: _Session | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, help in _INI_HELP.items():
        if name in _BOOL_DEFAULTS:
            parser.addini(name, help, type="bool", default=_BOOL_DEFAULTS[name])
        else:
            parser.addini(name, help, default="10")


def pytest_configure(config: pytest.Config) -> None:
    global _session
    config.addinivalue_line(
        "markers",
        f"{ALLOW_LEFTOVERS}: the test may leave actors or actorloop processes behind on purpose "
        "(actorloop's leftover check skips it)",
    )
    raw_timeout = config.getini("actorloop_leftover_timeout")
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise pytest.UsageError(
            f"actorloop_leftover_timeout must be a number of seconds, got {raw_timeout!r}"
        ) from None
    session_dir = tempfile.mkdtemp(prefix="actorloop-pytest-")
    if config.getini("actorloop_isolate"):
        # No test reaches the node `actorloop start` may run for this user; `actorloop start` in a test
        # starts a private one here.
        os.environ["ACTORLOOP_DIR"] = os.path.join(session_dir, "daemon")
        os.environ.pop("ACTORLOOP_ADDRESS", None)
    if config.getini("actorloop_private_tmpdir"):
        # Embedded nodes (ours and those of driver subprocesses) make their directories here.
        os.environ["TMPDIR"] = session_dir
        tempfile.tempdir = session_dir
    _session = _Session(
        dir=session_dir,
        check=bool(config.getini("actorloop_leftover_check")),
        timeout=timeout,
        pickle_by_value=bool(config.getini("actorloop_pickle_by_value")),
    )


def pytest_itemcollected(item: pytest.Item) -> None:
    """Ship a test module's classes by value: an actor then needs neither pytest nor the test module."""
    s = _session
    if s is None or not s.pickle_by_value:
        return
    module = getattr(item, "module", None)
    if module is not None and module.__name__ not in s.registered and module.__name__ in sys.modules:
        import cloudpickle

        s.registered.add(module.__name__)
        cloudpickle.register_pickle_by_value(module)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any actorloop process it started is still running, then remove the session dir."""
    global _session
    s = _session
    if s is None:
        return
    _api.shutdown()
    left = _wait_processes_gone(lambda: _our_processes(s), s.timeout)
    if left:
        lines = "\n".join(f"  pid {pid}: {cmd}" for (pid, _), cmd in sorted(left.items()))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"actorloop processes outlived the test session (killed now):\n{lines}"
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        else:
            print(f"\nERROR: {message}", file=sys.stderr)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(s.dir, ignore_errors=True)
    _session = None


# -- the fixtures -------------------------------------------------------------------------------


def _start_node(scope: str) -> NodeInfo:
    s = _session
    if s is None:  # pragma: no cover - pytest_configure always ran
        raise RuntimeError("actorloop's pytest plugin is not configured")
    if s.owner is not None:
        raise pytest.UsageError(
            f"actorloop: a node fixture of scope {scope!r} was requested while the {s.owner}-scoped node fixture's "
            "node is running; a process has one node at a time, so use one of actorloop_node, "
            "actorloop_module_node and actorloop_session_node per module (or per session)"
        )
    _api.shutdown()  # a node this process joined before (init() called by hand, or implied) ends first
    context = _api.init(address="local")
    rt = _runtime.get_runtime()
    assert rt is not None and rt.embedded_node is not None
    s.owner = scope
    return NodeInfo(address=context["address"], namespace=context["namespace"], pid=rt.embedded_node.proc.pid)


def _stop_node(info: NodeInfo) -> None:
    s = _session
    if s is not None:
        s.owner = None
    _api.shutdown()
    if s is None:  # pragma: no cover
        return
    # shutdown() waited for the node itself; its zygote and actors end right after it.
    left = _wait_processes_gone(lambda: _processes_of_dir(info.address), s.timeout)
    if left:
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pids = ", ".join(str(pid) for pid, _ in sorted(left))
        pytest.fail(
            f"actorloop: processes of the fixture's node {info.address} outlived its shutdown (pids {pids}, "
            "killed now)",
            pytrace=False,
        )


@pytest.fixture
def actorloop_node() -> Iterator[NodeInfo]:
    """A fresh embedded node for this test, shut down (and every process of it reaped) after it.

    Example::

        def test_counter(actorloop_node):
            c = Counter.remote()
            assert actorloop.get(c.incr.remote()) == 1
    """
    info = _start_node("function")
    try:
        yield info
    finally:
        _stop_node(info)


@pytest.fixture(scope="module")
def actorloop_module_node() -> Iterator[NodeInfo]:
    """One embedded node shared by the tests of a module (the usual choice: a node starts in about 0.2 s)."""
    info = _start_node("module")
    try:
        yield info
    finally:
        _stop_node(info)


@pytest.fixture(scope="session")
def actorloop_session_node() -> Iterator[NodeInfo]:
    """One embedded node for the whole test session."""
    info = _start_node("session")
    try:
        yield info
    finally:
        _stop_node(info)


# -- the leftover check -------------------------------------------------------------------------


@dataclass
class _Before:
    """What ran when the test's call began: actors of the node and actorloop processes of this run."""

    actors: set[str]
    processes: set[tuple[int, int]]
    #: Actors the test made that were still in use at the end of its call: they must be gone after teardown.
    deferred: dict[str, ActorInfo] = field(default_factory=dict)


_BEFORE = pytest.StashKey[_Before]()
#: The client id of the runtime when the test's setup began (None: no runtime).
_SETUP_RUNTIME = pytest.StashKey["str | None"]()


def _checking(item: pytest.Item) -> bool:
    s = _session
    return s is not None and s.check and item.get_closest_marker(ALLOW_LEFTOVERS) is None


def _runtime_id() -> str | None:
    rt = _runtime.get_runtime()
    return rt.client_id if rt is not None and not rt.closed else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_SETUP_RUNTIME] = _runtime_id()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After the test's own code: fail it if actors it made, and no longer holds, are still alive."""
    if not _checking(item):
        return (yield)
    s = _session
    assert s is not None
    # Read /proc once per test (about a millisecond): a test may start processes without using actorloop here.
    before = _Before(actors={a.actor_id for a in _live_actors()}, processes=set(_our_processes(s)))
    item.stash[_BEFORE] = before
    try:
        result = yield
    except BaseException:
        del item.stash[_BEFORE]  # a test that failed (or skipped) is not checked: its own error says more
        raise
    left = _leftover_actors(before)
    node_of_this_test = _runtime_id() != item.stash.get(_SETUP_RUNTIME, None) and s.owner in (None, "function")
    if left and node_of_this_test:
        # This test's setup or code joined the node (a per-test node fixture, ours or another): it may end in
        # the teardown, and these actors with it; the teardown check tells if they did not.
        before.deferred.update((a.actor_id, a) for a in left)
        left = []
    if left:
        pytest.fail(_actors_message(f"this test left {len(left)} actor(s) behind", left), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the fixtures ended: fail if what the test made (actors still in use, processes) outlived them."""
    result = yield
    before = item.stash.get(_BEFORE, None)
    s = _session
    if before is None or s is None:
        return result
    del item.stash[_BEFORE]
    problems = []
    if before.deferred:
        left = _still_alive(before.deferred, s.timeout)
        if left:
            problems.append(_actors_message(f"{len(left)} actor(s) this test made outlived its teardown", left))
    known = before.processes
    rt = _runtime.get_runtime()
    own_dir = rt.node_dir if rt is not None else None

    def new_processes() -> dict[tuple[int, int], str]:
        return {
            key: cmd
            for key, cmd in _our_processes(s).items()
            if key not in known and (own_dir is None or f" --dir {own_dir} " not in f"{cmd} ")
        }

    left_procs = _wait_processes_gone(new_processes, s.timeout)
    if left_procs:
        lines = "\n".join(f"  pid {pid}: {cmd}" for (pid, _), cmd in sorted(left_procs.items()))
        problems.append(
            "actorloop processes this test started are still running after its teardown (stop the node or "
            f"driver it started, or mark the test with @pytest.mark.{ALLOW_LEFTOVERS}):\n{lines}"
        )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return result


def _live_actors() -> list[ActorInfo]:
    """The actors of the node this process is joined to that are not dead (task workers left out)."""
    rt = _runtime.get_runtime()
    if rt is None or rt.role != "driver" or rt.closed:
        return []
    try:
        actors = rt.node_request("list")
    except Exception:
        return []  # the node is gone (a test may kill it on purpose): nothing left on it
    return [a for a in actors if a.state != "DEAD" and a.namespace != _tasks.TASKS_NAMESPACE]


def _settle_home_loop() -> None:
    """Let the home loop count the handles dropped so far (drops are posted to it from finalizers)."""
    rt = _runtime.get_runtime()
    if rt is None or rt.closed:
        return
    done = threading.Event()
    rt.entry.put(done.set)
    done.wait(5)


def _held(actor_id: str) -> bool:
    """Whether something in this process still holds a handle to the actor (or waits for a call of it)."""
    rt = _runtime.get_runtime()
    state = rt._actors.get(actor_id) if rt is not None else None
    return (
        state is not None
        and state.created_here
        and not state.released
        and (state.handles_made > state.handles_dropped or state.pending > 0)
    )


def _created_here(actor_id: str) -> bool:
    rt = _runtime.get_runtime()
    state = rt._actors.get(actor_id) if rt is not None else None
    return state is not None and state.created_here


def _passed_on(actor_id: str) -> bool:
    """An anonymous actor whose handle went to another process: it lives until its creator leaves (as in Ray).

    Dropping handles cannot end it, so a test is not asked to: it is not a leftover.
    """
    rt = _runtime.get_runtime()
    state = rt._actors.get(actor_id) if rt is not None else None
    return state is not None and state.anonymous and state.passed_on


def _leftover_actors(before: _Before) -> list[ActorInfo]:
    """Actors made here during the call that nothing here holds any more, and that dropping handles cannot end.

    Those still held (by a fixture, a finalizer, a global) and detached actors
    made by other processes go to ``before.deferred``: they may end in teardown.
    An anonymous actor whose handles were all dropped is released (the node
    ends it), and non-detached actors of other processes (an actor's
    children) end with their creator: neither is this test's leftover.
    """
    if not any(a.actor_id not in before.actors for a in _live_actors()):
        return []
    gc.collect()  # handles caught in reference cycles are dropped now, not at some later collection
    _settle_home_loop()
    loose: list[ActorInfo] = []
    for actor in [a for a in _live_actors() if a.actor_id not in before.actors]:
        if _held(actor.actor_id) or (actor.detached and not _created_here(actor.actor_id)):
            before.deferred[actor.actor_id] = actor
        elif _created_here(actor.actor_id) and not _passed_on(actor.actor_id):
            loose.append(actor)  # named or detached: it lives until killed or the node ends
    return loose


def _still_alive(actors: dict[str, ActorInfo], timeout: float) -> list[ActorInfo]:
    deadline = time.monotonic() + timeout
    while True:
        _settle_home_loop()
        alive = [
            a
            for a in _live_actors()
            # Held only by a call in flight at the check (``gate.open.remote()`` as the test's last line), an
            # anonymous actor whose handle went elsewhere is no leftover once the call is done (see _passed_on).
            if a.actor_id in actors and not (_passed_on(a.actor_id) and not _held(a.actor_id))
        ]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _describe(actor: ActorInfo) -> str:
    parts = [f"name {actor.name!r}, namespace {actor.namespace!r}" if actor.name else "anonymous"]
    if actor.detached:
        parts.append("detached")
    parts.append(f"pid {actor.pid}" if actor.pid else actor.state)
    rt = _runtime.get_runtime()
    state = rt._actors.get(actor.actor_id) if rt is not None else None
    if state is not None and not state.released:
        held = state.handles_made - state.handles_dropped
        if held > 0 or state.pending > 0:
            parts.append(f"this process holds {held} handle(s) and waits for {state.pending} call(s) of it")
    return f"{actor.class_name} ({', '.join(parts)}, id {actor.actor_id})"


def _actors_message(header: str, actors: list[ActorInfo]) -> str:
    names = "\n".join(f"  {_describe(a)}" for a in actors)
    return (
        f"actorloop: {header}:\n{names}\n"
        "End them before the test ends (actorloop.kill(handle), or drop every handle to an anonymous actor), "
        f"or mark the test with @pytest.mark.{ALLOW_LEFTOVERS} if it leaves them on purpose."
    )


# -- actorloop processes, read from /proc (or psutil where there is no /proc) ---------------------


def _our_processes(s: _Session) -> dict[tuple[int, int], str]:
    """The actorloop processes (node, zygote, actors: one command line) this run started and still running.

    A process is ours if it serves a directory inside the session's, or if
    its node is embedded in this process or in a descendant of it; one seen
    before by a check stays ours.
    """
    found: dict[tuple[int, int], str] = {}
    for key, (cmd, args, _ppid) in _actorloop_processes().items():
        if key in s.seen or _is_ours(s, args):
            found[key] = cmd
    s.seen.update(found)
    return found


def _is_ours(s: _Session, args: list[str]) -> bool:
    node_dir = _arg(args, "--dir")
    if node_dir is not None and (node_dir + os.sep).startswith(s.dir + os.sep):
        return True
    parent = _arg(args, "--parent")
    return parent is not None and parent.isdigit() and _descends_from_us(int(parent))


def _arg(args: list[str], flag: str) -> str | None:
    try:
        return args[args.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def _processes_of_dir(node_dir: str) -> dict[tuple[int, int], str]:
    return {key: cmd for key, (cmd, args, _) in _actorloop_processes().items() if _arg(args, "--dir") == node_dir}


def _wait_processes_gone(scan: Any, timeout: float) -> dict[tuple[int, int], str]:
    deadline = time.monotonic() + timeout
    while True:
        left: dict[tuple[int, int], str] = scan()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        if pid <= 1:
            return False
        stat = _stat(pid)
        if stat is None:
            return False
        pid = stat[1]
    return False


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, or None if it is gone."""
    if _HAVE_PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0].decode(), int(fields[1]), int(fields[19])
    psutil = _psutil()
    if psutil is None:
        return None
    try:
        proc = psutil.Process(pid)
        return ("Z" if proc.status() == psutil.STATUS_ZOMBIE else "R"), proc.ppid(), int(proc.create_time() * 100)
    except psutil.Error:
        return None


def _actorloop_processes() -> dict[tuple[int, int], tuple[str, list[str], int]]:
    """Every running ``actorloop._node`` process this user can see: (pid, start) -> (cmdline, args, ppid)."""
    found: dict[tuple[int, int], tuple[str, list[str], int]] = {}
    for pid, args in _command_lines():
        if "actorloop._node" not in args:
            continue
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue  # a zombie has ended; its parent reaps it
        found[(pid, stat[2])] = (" ".join(args), args, stat[1])
    return found


def _command_lines() -> Iterator[tuple[int, list[str]]]:
    if _HAVE_PROC:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            if b"actorloop._node" in raw:
                yield int(name), raw.decode(errors="replace").rstrip("\0").split("\0")
        return
    psutil = _psutil()
    if psutil is None:
        return  # no /proc and no psutil: processes are not checked (docs/testing.md says so)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if "actorloop._node" in args:
            yield proc.info["pid"], list(args)


_HAVE_PROC = os.path.isdir("/proc/self")


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        return None
    return psutil
