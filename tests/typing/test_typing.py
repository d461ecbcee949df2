"""Types that flow through a call, checked by the type checkers themselves (docs/typing.md).

Each file in this directory is user code full of ``assert_type`` checks; lines that must be
rejected carry ``# E: code`` (a mypy error code). A checker must report exactly those lines,
each with the expected kind of error (other errors on a marked line are the same mistake seen
again), and nothing on any other line:

- mypy with the plugin (``plugins = ["actorloop.mypy"]``): every file;
- mypy without it: Ray's typed pattern, which needs no plugin;
- pyright, strict: Ray's typed pattern and the decorator with ``@actorloop.method``;
- both mypy with the plugin and pyright: the examples whose annotations the docs promise
  check cleanly (``EXAMPLE_FILES``: no error at all).

The checkers run in parallel, with mypy's cache kept in the temp directory between runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

MYPY_PLUGIN_FILES = ["readme_style.py", "typed_pattern.py", "decorated_methods.py"]
MYPY_NO_PLUGIN_FILES = ["typed_pattern.py"]
PYRIGHT_FILES = ["typed_pattern.py", "decorated_methods.py"]
#: Examples users copy from: clean under mypy --strict with the plugin and under pyright --strict.
EXAMPLE_FILES = [str(ROOT / "examples" / "quickstart.py")]

#: The error each marker stands for, as each checker names it.
EQUIVALENT = {
    "arg-type": {"arg-type", "reportArgumentType"},
    "call-arg": {"call-arg", "reportCallIssue"},
    "attr-defined": {"attr-defined", "union-attr", "reportAttributeAccessIssue", "reportFunctionMemberAccess"},
}
MARKER = re.compile(r"#\s*E:\s*([a-z-]+)\s*$")

Errors = dict[tuple[str, int], set[str]]


def _expected(files: list[str]) -> dict[tuple[str, int], str]:
    expected = {}
    for name in files:
        for number, line in enumerate((HERE / name).read_text().splitlines(), 1):
            match = MARKER.search(line)
            if match:
                assert match.group(1) in EQUIVALENT, f"{name}:{number}: unknown marker {match.group(1)!r}"
                expected[(Path(name).name, number)] = match.group(1)
    return expected


def _mypy(config: str, files: list[str]) -> subprocess.Popen[str]:
    cache = Path(tempfile.gettempdir()) / f"actorloop-typing-mypy-{os.getuid()}-{config}"
    command = [sys.executable, "-m", "mypy", "--config-file", str(HERE / config), "--cache-dir", str(cache)]
    command += ["--no-error-summary", "--show-error-codes", "--hide-error-context", "--no-pretty"]
    return subprocess.Popen([*command, *files], cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _mypy_errors(process: subprocess.Popen[str]) -> Errors:
    out, err = process.communicate(timeout=300)
    assert process.returncode in (0, 1), f"mypy failed to run:\n{out}\n{err}"
    errors: Errors = {}
    for line in out.splitlines():
        match = re.match(r"(.+?):(\d+): error: .*\[([a-z-]+)\]$", line)
        assert match or ": note:" in line, f"unexpected mypy output: {line}"
        if match:
            errors.setdefault((Path(match.group(1)).name, int(match.group(2))), set()).add(match.group(3))
    return errors


def _pyright(files: list[str]) -> subprocess.Popen[str]:
    # --outputjson also keeps the wrapper from asking PyPI for a newer version; the wheel bundles pyright.
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}
    command = [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable]
    command += ["--project", str(ROOT / "pyproject.toml"), *(str(HERE / f) for f in files)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _pyright_errors(process: subprocess.Popen[str]) -> Errors:
    out, err = process.communicate(timeout=300)
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"pyright failed to run:\n{out}\n{err}")
    errors: Errors = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] != "error":
            continue
        key = (Path(diagnostic["file"]).name, diagnostic["range"]["start"]["line"] + 1)
        errors.setdefault(key, set()).add(diagnostic.get("rule", "?"))
    return errors


def _compare(checker: str, errors: Errors, files: list[str]) -> None:
    expected = _expected(files)
    problems = []
    for (name, number), codes in sorted(errors.items()):
        if (name, number) not in expected:
            problems.append(f"{name}:{number}: unexpected {sorted(codes)}")
    for (name, number), marker in sorted(expected.items()):
        found = errors.get((name, number), set())
        if not found & EQUIVALENT[marker]:
            problems.append(f"{name}:{number}: expected {marker}, got {sorted(found) or 'nothing'}")
    assert not problems, f"{checker}:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def checkers() -> dict[str, subprocess.Popen[str]]:
    """Start all three at once: each takes seconds, and they are independent."""
    return {
        "mypy with the plugin": _mypy("mypy-plugin.ini", MYPY_PLUGIN_FILES + EXAMPLE_FILES),
        "mypy without the plugin": _mypy("mypy-no-plugin.ini", MYPY_NO_PLUGIN_FILES),
        "pyright": _pyright(PYRIGHT_FILES + EXAMPLE_FILES),
    }


def test_mypy_with_the_plugin(checkers: dict[str, subprocess.Popen[str]]) -> None:
    _compare("mypy with the plugin", _mypy_errors(checkers["mypy with the plugin"]), MYPY_PLUGIN_FILES + EXAMPLE_FILES)


def test_mypy_without_the_plugin(checkers: dict[str, subprocess.Popen[str]]) -> None:
    _compare("mypy without the plugin", _mypy_errors(checkers["mypy without the plugin"]), MYPY_NO_PLUGIN_FILES)


def test_pyright_strict(checkers: dict[str, subprocess.Popen[str]]) -> None:
    _compare("pyright", _pyright_errors(checkers["pyright"]), PYRIGHT_FILES + EXAMPLE_FILES)


def test_every_marker_is_checked() -> None:
    for name in {*MYPY_PLUGIN_FILES, *PYRIGHT_FILES}:
        assert _expected([name]), f"{name} has no expected errors"
    assert {p.name for p in HERE.glob("*.py") if not p.name.startswith("test_")} <= set(MYPY_PLUGIN_FILES)
