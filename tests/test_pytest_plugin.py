"""actorloop's pytest plugin (actorloop/pytest_plugin.py), tried as a user would: pytest run on a tiny project.

Each test writes a project with no conftest (its actor class lives in the
test module), runs pytest on it in a subprocess (the plugin loads through its
``pytest11`` entry point, as in a user's environment) and reads every
test's outcome from the JUnit XML report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

COUNTER = """
import asyncio
import os

import pytest

import actorloop


@actorloop.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    async def aincr(self):
        await asyncio.sleep(0)
        self.n += 1
        return self.n
"""


@dataclass
class Run:
    returncode: int
    output: str
    #: test name -> ("passed" | "failed" | "error" | "skipped", message)
    outcomes: dict[str, tuple[str, str]]


def run_pytest(project: Path, files: dict[str, str], *args: str, env: dict[str, str] | None = None) -> Run:
    """Write ``files`` into ``project`` and run pytest there in a subprocess, from another directory."""
    project.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (project / name).write_text(textwrap.dedent(source))
    report = project.parent / f"{project.name}-report.xml"
    # Run from the parent: the project is not the working directory, so an actor cannot import the test
    # module from its sys.path by chance (the plugin ships the class by value).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(project), "-p", "no:cacheprovider", f"--junitxml={report}", *args],
        cwd=str(project.parent),
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    outcomes: dict[str, tuple[str, str]] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.attrib["name"]
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                element = case.find(kind)
                if element is not None:
                    outcome = {"failure": "failed"}.get(kind, kind)
                    message = (element.attrib.get("message", "") + "\n" + (element.text or "")).strip()
                    break
            # A teardown error is reported as a second <error> beside a passed call: keep the worst.
            if name not in outcomes or outcomes[name][0] == "passed":
                outcomes[name] = (outcome, message)
    return Run(result.returncode, result.stdout + result.stderr, outcomes)


USER_TESTS = (
    COUNTER
    + '''
import pytest_asyncio

addresses = []


def test_per_test_node(actorloop_node):
    c = Counter.remote()
    assert actorloop.get(c.incr.remote()) == 1
    assert actorloop.get_runtime_context().namespace == actorloop_node.namespace
    addresses.append(actorloop_node.address)


def test_per_test_node_is_fresh(actorloop_node):
    assert actorloop_node.address != addresses[0]
    assert actorloop.list_actors() == []


def test_a_per_test_node_ends_what_it_holds(actorloop_node):
    Counter.options(name="ends-with-its-node").remote()   # not a leftover: the node ends in the teardown


def test_never_the_users_node():
    assert os.environ["ACTORLOOP_DIR"] != "/not/the/users/node"
    assert "ACTORLOOP_ADDRESS" not in os.environ or os.environ["ACTORLOOP_ADDRESS"] != "/users/running/node"


def test_module_node(actorloop_module_node):
    c = Counter.remote()
    assert actorloop.get([c.incr.remote(), c.incr.remote()]) == [1, 2]
    addresses.append(actorloop_module_node.address)


def test_module_node_is_shared(actorloop_module_node):
    assert actorloop_module_node.address == addresses[-1]


@pytest.mark.asyncio
async def test_async_under_pytest_asyncio(actorloop_module_node):
    c = Counter.remote()
    ref = c.aincr.remote()
    assert ref.get_loop() is asyncio.get_running_loop()   # the ref belongs to the test's own loop
    assert await ref == 1
    assert await asyncio.gather(c.incr.remote(), c.aincr.remote()) == [2, 3]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_async_under_anyio(actorloop_module_node):
    import anyio

    c = Counter.remote()
    results = []

    async def one():
        results.append(await c.aincr.remote())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert sorted(results) == [1, 2, 3, 4, 5]


@pytest_asyncio.fixture
async def ready_counter(actorloop_module_node):
    """A user's async fixture on top of the node fixture: it awaits the actor on the test's loop."""
    c = Counter.remote()
    assert await c.incr.remote() == 1
    yield c
    assert await c.incr.remote() >= 2   # the teardown runs on the loop too
    actorloop.kill(c)


@pytest.mark.asyncio
async def test_async_fixture_under_pytest_asyncio(ready_counter):
    assert await ready_counter.aincr.remote() == 2


@pytest.fixture
async def anyio_counter(actorloop_module_node, anyio_backend):
    c = Counter.remote()
    await c.incr.remote()
    yield c
    actorloop.kill(c)


@pytest.mark.anyio
async def test_async_fixture_under_anyio(anyio_counter):
    assert await anyio_counter.aincr.remote() == 2


@pytest.fixture
def make_counter(actorloop_module_node):
    """A factory fixture: actors it makes during the test end in its teardown."""
    made = []

    def make(name):
        made.append(Counter.options(name=name).remote())
        return made[-1]

    yield make
    for handle in made:
        actorloop.kill(handle)


def test_actors_a_fixture_ends_are_not_leftovers(make_counter):
    c = make_counter("from-the-factory")
    assert actorloop.get(c.incr.remote()) == 1


def test_dropped_anonymous_actors_are_not_leftovers(actorloop_module_node):
    for _ in range(3):
        c = Counter.remote()
        actorloop.get(c.incr.remote())
    del c


def test_leaves_a_named_actor(actorloop_module_node):
    Counter.options(name="left-behind").remote()


@pytest.mark.actorloop_allow_leftovers
def test_allowed_to_leave_one(actorloop_module_node):
    Counter.options(name="left-on-purpose").remote()


kept = []


def test_keeps_a_handle_past_its_end(actorloop_module_node):
    kept.append(Counter.options(name="kept-in-a-global").remote())


def test_the_last_one_sees_the_node(actorloop_module_node):
    names = {a.name for a in actorloop.list_actors()}
    assert {"left-behind", "left-on-purpose", "kept-in-a-global"} <= names
    for name in ("left-behind", "left-on-purpose"):
        actorloop.kill(actorloop.get_actor(name))
    actorloop.kill(kept.pop())
'''
)

EXPECTED = {
    "test_per_test_node": "passed",
    "test_per_test_node_is_fresh": "passed",
    "test_a_per_test_node_ends_what_it_holds": "passed",
    "test_never_the_users_node": "passed",
    "test_module_node": "passed",
    "test_module_node_is_shared": "passed",
    "test_async_under_pytest_asyncio": "passed",
    "test_async_under_anyio": "passed",
    "test_async_fixture_under_pytest_asyncio": "passed",
    "test_async_fixture_under_anyio": "passed",
    "test_actors_a_fixture_ends_are_not_leftovers": "passed",
    "test_dropped_anonymous_actors_are_not_leftovers": "passed",
    "test_leaves_a_named_actor": "failed",
    "test_allowed_to_leave_one": "passed",
    "test_keeps_a_handle_past_its_end": "error",
    "test_the_last_one_sees_the_node": "passed",
}


def _user_env() -> dict[str, str]:
    env = dict(os.environ)
    # The plugin must keep the user's tests away from these.
    env["ACTORLOOP_DIR"] = "/not/the/users/node"
    env["ACTORLOOP_ADDRESS"] = "/users/running/node"
    return env


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_a_user_suite_needs_no_conftest(tmp_path: Path, mode: str) -> None:
    run = run_pytest(
        tmp_path / "userproject",
        {"test_counter.py": USER_TESTS},
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-o",
        "actorloop_leftover_timeout=2",
        env=_user_env(),
    )
    assert not (tmp_path / "userproject" / "conftest.py").exists()
    got = {name: outcome for name, (outcome, _) in run.outcomes.items()}
    assert got == EXPECTED, run.output
    assert run.returncode == 1, run.output
    named = run.outcomes["test_leaves_a_named_actor"][1]
    assert "left 1 actor(s) behind" in named and "'left-behind'" in named and "actorloop_allow_leftovers" in named
    kept = run.outcomes["test_keeps_a_handle_past_its_end"][1]
    assert "outlived its teardown" in kept and "'kept-in-a-global'" in kept
    assert "outlived the test session" not in run.output


LEAKED_PROCESS = """
import os
import subprocess
import sys

import pytest


def test_starts_a_node_and_leaves_it():
    # `actorloop start` in a test starts a node in the plugin's private $ACTORLOOP_DIR.
    subprocess.run([sys.executable, "-m", "actorloop", "start"], check=True, capture_output=True)


def test_after_it():
    pass
"""


def test_a_process_left_behind_fails_the_test_and_the_session_without_psutil(tmp_path: Path) -> None:
    blocker = tmp_path / "nopsutil"
    blocker.mkdir()
    (blocker / "psutil.py").write_text("raise ImportError('psutil is blocked in this test')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(blocker), env.get("PYTHONPATH", "")] if p)
    # A short wait: the node stays up on purpose.
    run = run_pytest(
        tmp_path / "leaky", {"test_leaky.py": LEAKED_PROCESS}, "-o", "actorloop_leftover_timeout=1", env=env
    )
    assert run.outcomes["test_starts_a_node_and_leaves_it"][0] == "error", run.output
    message = run.outcomes["test_starts_a_node_and_leaves_it"][1]
    assert "are still running after its teardown" in message and "actorloop._node" in message
    assert run.outcomes["test_after_it"][0] == "passed", run.output
    # The session-end check found it too, killed it and failed the run.
    assert "outlived the test session" in run.output
    assert run.returncode == 1


BY_VALUE = (
    COUNTER
    + """

import sys

MODULE = __name__


@actorloop.remote
class Probe:
    def imported_the_test_module(self):
        return MODULE in sys.modules


def test_actor_class_of_the_test_module(actorloop_node):
    assert actorloop.get(Counter.remote().incr.remote()) == 1
    print("imported:", actorloop.get(Probe.remote().imported_the_test_module.remote()))
"""
)


def test_test_module_classes_go_by_value_unless_turned_off(tmp_path: Path) -> None:
    on = run_pytest(tmp_path / "on", {"test_byvalue.py": BY_VALUE}, "-s")
    assert on.outcomes["test_actor_class_of_the_test_module"][0] == "passed", on.output
    assert "imported: False" in on.output  # the actor never imported the test module (nor pytest through it)
    # Turned off, classes go by reference: the actor imports the test module to find them.
    off = run_pytest(tmp_path / "off", {"test_byvalue.py": BY_VALUE}, "-s", "-o", "actorloop_pickle_by_value=false")
    assert off.outcomes["test_actor_class_of_the_test_module"][0] == "passed", off.output
    assert "imported: True" in off.output


SCOPES = (
    COUNTER
    + """

def test_session_node(actorloop_session_node):
    assert actorloop.get(Counter.remote().incr.remote()) == 1


def test_mixing_scopes_is_refused(actorloop_session_node, request):
    with pytest.raises(pytest.UsageError, match="one node at a time"):
        request.getfixturevalue("actorloop_node")
"""
)


def test_session_node_and_mixed_scopes(tmp_path: Path) -> None:
    run = run_pytest(tmp_path / "scopes", {"test_scopes.py": SCOPES})
    assert run.outcomes == {
        "test_session_node": ("passed", ""),
        "test_mixing_scopes_is_refused": ("passed", ""),
    }, run.output
    assert run.returncode == 0, run.output


def test_importing_actorloop_does_not_import_pytest() -> None:
    code = "import sys, actorloop; assert 'pytest' not in sys.modules and 'actorloop.pytest_plugin' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_pytest_is_no_runtime_dependency() -> None:
    from importlib.metadata import requires

    runtime = [r for r in requires("actorloop") or [] if "extra ==" not in r]
    assert not any(r.lower().startswith("pytest") for r in runtime), runtime


# -- async tests under each runner: the same (sync) node fixtures, async tests and async fixtures on top --------

#: How each runner spells the async bits. ``{mark}``: on a function-scoped async test; ``{module_mark}``: on an
#: async test that shares a module-scoped async fixture's loop; ``{fixture}`` / ``{module_fixture}``: on the
#: user's own async fixtures; ``{head}``: imports and the runner's own fixtures.
RUNNERS: dict[str, dict[str, str]] = {
    "pytest-asyncio-strict": {
        "head": "import pytest_asyncio",
        "mark": "@pytest.mark.asyncio",
        "module_mark": '@pytest.mark.asyncio(loop_scope="module")',
        "fixture": "@pytest_asyncio.fixture",
        "module_fixture": '@pytest_asyncio.fixture(scope="module", loop_scope="module")',
        "backend": "",
    },
    "pytest-asyncio-auto": {  # no markers, plain fixtures: auto mode takes every async test and fixture
        "head": "import pytest_asyncio",
        "mark": "",
        "module_mark": "",  # each test on a loop of its own, the module fixture on the module's: handles cross loops
        "fixture": "@pytest.fixture",
        "module_fixture": '@pytest_asyncio.fixture(scope="module", loop_scope="module")',
        "backend": "",
    },
    "anyio": {  # pytest-asyncio is switched off (-p no:asyncio): anyio's plugin alone
        "head": """
@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"   # refs are asyncio futures: the trio backend cannot await them
""",
        "mark": "@pytest.mark.anyio",
        "module_mark": "@pytest.mark.anyio",
        "fixture": "@pytest.fixture",
        "module_fixture": '@pytest.fixture(scope="module")',
        "backend": ", anyio_backend",
    },
}
RUNNER_ARGS = {
    "pytest-asyncio-strict": ["-o", "asyncio_mode=strict", "-o", "asyncio_default_fixture_loop_scope=function"],
    "pytest-asyncio-auto": ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"],
    "anyio": ["-p", "no:asyncio"],
}

ASYNC_PER_TEST = """
{head}

addresses = []


{fixture}
async def fresh_counter(actorloop_node{backend}):
    c = Counter.remote()
    assert await c.incr.remote() == 1   # awaited on the loop of the fixture and the test
    yield c
    assert await c.incr.remote() >= 2   # the teardown runs on that loop too, before the node ends
    actorloop.kill(c)


{mark}
async def test_async_test_on_a_node_of_its_own(actorloop_node):
    c = Counter.options(name="ends-with-its-node").remote()   # not a leftover: the node ends after the test
    ref = c.aincr.remote()
    assert ref.get_loop() is asyncio.get_running_loop()
    assert await ref == 1
    assert actorloop.get_runtime_context().namespace == actorloop_node.namespace
    addresses.append(actorloop_node.address)


{mark}
async def test_the_next_async_test_gets_a_fresh_node(actorloop_node):
    assert actorloop_node.address != addresses[0]
    c = Counter.options(name="ends-with-its-node").remote()   # the name is free: a fresh node
    assert await asyncio.gather(c.incr.remote(), c.aincr.remote()) == [1, 2]


{mark}
async def test_an_async_fixture_on_the_per_test_node(fresh_counter):
    assert await fresh_counter.aincr.remote() == 2
"""

ASYNC_PER_MODULE = """
{head}


{module_fixture}
async def shared_counter(actorloop_module_node{backend}):
    c = Counter.remote()
    await c.incr.remote()
    yield c
    actorloop.kill(c)


{module_mark}
async def test_a_module_async_fixture_first(shared_counter):
    assert await shared_counter.aincr.remote() == 2


{module_mark}
async def test_a_module_async_fixture_then(shared_counter):
    assert await shared_counter.aincr.remote() == 3


{mark}
async def test_an_async_test_that_leaves_a_named_actor(actorloop_module_node):
    c = Counter.options(name="left-by-an-async-test").remote()
    assert await c.incr.remote() == 1


def test_cleans_up(actorloop_module_node):
    actorloop.kill(actorloop.get_actor("left-by-an-async-test"))
"""


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_async_tests_and_fixtures_under_each_runner(tmp_path: Path, runner: str) -> None:
    """The node fixtures serve async tests, and async fixtures built on them, under every async runner."""
    spelling = RUNNERS[runner]
    files = {
        "test_per_test.py": COUNTER + ASYNC_PER_TEST.format(**spelling),
        "test_per_module.py": COUNTER + ASYNC_PER_MODULE.format(**spelling),
    }
    run = run_pytest(tmp_path / "asyncproject", files, *RUNNER_ARGS[runner], "-o", "actorloop_leftover_timeout=2")
    got = {name: outcome for name, (outcome, _) in run.outcomes.items()}
    assert got == {
        "test_async_test_on_a_node_of_its_own": "passed",
        "test_the_next_async_test_gets_a_fresh_node": "passed",
        "test_an_async_fixture_on_the_per_test_node": "passed",
        "test_a_module_async_fixture_first": "passed",
        "test_a_module_async_fixture_then": "passed",
        "test_an_async_test_that_leaves_a_named_actor": "failed",  # the leftover check sees async tests too
        "test_cleans_up": "passed",
    }, run.output
    message = run.outcomes["test_an_async_test_that_leaves_a_named_actor"][1]
    assert "left 1 actor(s) behind" in message and "'left-by-an-async-test'" in message
    assert "outlived the test session" not in run.output
