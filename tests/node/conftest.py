"""Fixtures of the node tests: a daemon directory that is always cleaned up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ._helpers import cli, env_for, kill_everything_of, short_dir


@dataclass
class Daemon:
    """The directory of a node that ``actorloop start`` runs (``$ACTORLOOP_DIR``), and its environment."""

    dir: str
    env: dict[str, str]

    def cli(self, *args: str, module: bool = False):  # type: ignore[no-untyped-def]
        return cli(*args, env=self.env, module=module)

    def start(self) -> int:
        result = self.cli("start")
        assert result.returncode == 0, result.stderr
        with open(os.path.join(self.dir, "node.pid")) as f:
            return int(f.read())


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    """A fresh ``$ACTORLOOP_DIR`` (no node started yet); any node in it is stopped afterwards."""
    parent = short_dir("d")
    node_dir = os.path.join(parent, "node")
    d = Daemon(node_dir, env_for(node_dir))
    try:
        yield d
    finally:
        cli("stop", env=d.env)
        kill_everything_of(node_dir)
        shutil.rmtree(parent, ignore_errors=True)
