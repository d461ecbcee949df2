"""The core's one-way layering (issue 10, "Structure"): each module imports only the layers below it.

Read from the source with ``ast``, so a function-level import that works
around a cycle fails here just as a top-level one does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import actorloop

PACKAGE = Path(actorloop.__file__).parent

#: Bottom to top; modules on one line are one layer and do not import each other.
LAYERS: list[set[str]] = [
    {"exceptions", "_entry", "_fds", "_pages", "_pickle", "_routes", "_stats"},
    {"_http", "_shm"},
    {"_protocol"},
    {"_meta"},
    {"_node"},
    {"_ref"},
    {"_stream"},
    {"_connection"},
    {"_runtime"},
    {"_backend"},
    {"_tasks"},
    {"_handles"},
    {"runtime_context", "actor"},
    {"_api"},
    {"pytest_plugin"},
    # The Ray backend: above everything, imported only by name (_backend.BACKENDS) when chosen.
    {"_ray"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
#: Imports for a child process only, never used by the importing process: the node preloads, before
#: it forks the zygote, what the actors forked from it run (the actor process, the task workers).
FORK_TIME = {("_node", "_worker"), ("_node", "_tasks")}


def _imports(path: Path) -> set[str]:
    """The actorloop modules ``path`` imports anywhere in its code (outside ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level >= 1 or module.startswith("actorloop"):
                parts = module.removeprefix("actorloop").lstrip(".").split(".")
                first = parts[0]
                if first:
                    found.add(first)
                else:
                    found.update(alias.name for alias in node.names)
    return found


def _module_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def test_every_layered_module_imports_only_lower_layers() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        if module not in LEVEL:
            continue
        for imported in _imports(path):
            if imported == module or imported not in LEVEL or (module, imported) in FORK_TIME:
                continue
            if LEVEL[imported] >= LEVEL[module]:
                where = path.relative_to(PACKAGE)
                problems.append(f"{where} imports {imported} (layer {LEVEL[imported]} >= {LEVEL[module]})")
    assert not problems, "\n".join(problems)


def test_importing_actorloop_never_imports_ray() -> None:
    """Ray stays optional: the local node's whole API runs without importing it (issue 15)."""
    import subprocess
    import sys

    code = (
        "import actorloop, sys\n"
        "actorloop.init(address='local')\n"
        "@actorloop.remote\n"
        "class A:\n"
        "    def f(self):\n"
        "        return 1\n"
        "assert actorloop.get(A.remote().f.remote()) == 1\n"
        "actorloop.shutdown()\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_layers_name_every_core_module() -> None:
    core = {p.stem for p in PACKAGE.glob("_*.py")} - {"__init__", "__main__", "_worker", "_cli"}
    assert core <= set(LEVEL), f"modules with no layer: {sorted(core - set(LEVEL))}"


def test_a_program_without_routes_dashboard_or_pool_never_loads_them() -> None:
    """The HTTP server, the dashboard, ``util``, the task pool and the actor-process module load on use only.

    Neither ``import actorloop`` and ``init()`` in a driver, nor the node and
    zygote an actor is forked from (an actor sees what they had imported).
    """
    import subprocess
    import sys

    code = (
        "import sys, actorloop\n"
        "driver = set(sys.modules)\n"
        "actorloop.init(address='local')\n"
        "@actorloop.remote\n"
        "class A:\n"
        "    def modules(self):\n"
        "        return sorted(sys.modules)\n"
        "actor = set(actorloop.get(A.remote().modules.remote()))\n"
        "driver |= set(sys.modules)\n"
        "actorloop.shutdown()\n"
        "optional = {'actorloop._http', 'actorloop.http', 'actorloop._node._dashboard', 'actorloop.util', 'aiohttp'}\n"
        "assert not optional & driver, sorted(optional & driver)\n"
        "assert 'actorloop._worker' not in driver and 'actorloop._tasks' not in driver\n"
        "assert not optional & actor, sorted(optional & actor)\n"
        "assert actorloop.http.get and actorloop.util.ActorPool is actorloop.ActorPool\n"
        "assert actorloop.exit_actor is actorloop.actor.exit_actor\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
