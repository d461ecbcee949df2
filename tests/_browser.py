"""A real headless browser for tests: Debian's Chromium driven by Playwright, never a downloaded one.

``.ci/run`` installs the system's ``chromium``; where it or Playwright is
missing, the tests that use this skip and say why (``REQUIRES_BROWSER``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

CHROMIUM = os.environ.get("ACTORLOOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and none of the background connections this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

REQUIRES_BROWSER = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"no Chromium at {CHROMIUM}: install the system's browser (apt-get install -y chromium); "
        "the test never downloads one",
    ),
]


@contextlib.contextmanager
def browser_page(**page_options: Any) -> Iterator[Any]:
    """A fresh page of a fresh headless Chromium, closed afterwards."""
    assert sync_playwright is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(**page_options)
        finally:
            browser.close()


def off_loop(fn: Callable[[], Any]) -> Any:
    """Run actorloop code on a thread of its own: Playwright's sync API keeps an event loop
    marked running on the test's thread, where a blocking ``get()`` would have to drive it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=60)
