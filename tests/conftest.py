"""The project's test setup comes from actorloop's own pytest plugin (actorloop/pytest_plugin.py, docs/testing.md).

The plugin isolates the run from the user's node, puts every temp file and
embedded node of the run in one private directory (``actorloop_private_tmpdir``
in pyproject.toml), ships test modules' actor classes by value, fails a test
that leaves actors or processes behind, and fails the session if any
actorloop process outlives it.  What stays here is the ``node`` fixture name
that most tests use.
"""

from __future__ import annotations

import pytest

from actorloop.pytest_plugin import NodeInfo


@pytest.fixture(scope="module")
def node(actorloop_module_node: NodeInfo) -> NodeInfo:
    """One embedded node per test module (the plugin's ``actorloop_module_node``)."""
    return actorloop_module_node


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("actorloop"):
        raise pytest.UsageError(
            "actorloop's pytest plugin is not loaded: an install older than its pytest11 entry point? "
            "Run `pip install -e '.[test]'` again (and do not pass -p no:actorloop to this suite)"
        )
