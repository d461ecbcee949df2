"""The stress suite's figures: each test adds what it measured; the run ends with the table."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from ._common import LONG, MODE

_FIGURES: list[tuple[str, str, Any]] = []


class Report:
    """``report(test, what, value)``: one figure of the run (calls held, faults survived, memory growth...)."""

    def __init__(self, test: str) -> None:
        self._test = test

    def __call__(self, what: str, value: Any) -> None:
        if not any(w == what and v == value for _, w, v in _FIGURES):
            _FIGURES.append((self._test, what, value))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    return Report(request.node.name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long mode runs each test for minutes: lift the suite's per-test timeout for it."""
    if LONG:
        for item in items:
            if "stress" in item.nodeid.split("::")[0]:
                item.add_marker(pytest.mark.timeout(3600))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section(f"actorloop stress figures ({MODE} mode)")
    for test, what, value in _FIGURES:
        terminalreporter.write_line(f"{test}: {what} = {value}")
    path = os.environ.get("ACTORLOOP_STRESS_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump([{"test": t, "what": w, "value": v} for t, w, v in _FIGURES], f, indent=1, default=str)
