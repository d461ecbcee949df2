"""The dashboard page in a real headless browser (issue 13): Debian's Chromium driven by Playwright.

No browser is ever downloaded: Playwright drives the system's Chromium
(``apt-get install chromium``; ``.ci/run`` installs it). The test skips, and
says why, only where that browser or Playwright is missing.

``ACTORLOOP_DASHBOARD_SCREENSHOT=path.png`` also saves a screenshot of the
page (docs/img/dashboard.png is made this way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from _browser import REQUIRES_BROWSER, browser_page, off_loop

import actorloop

pytestmark = REQUIRES_BROWSER


@actorloop.remote
class Pinger:
    def ping(self, i: int) -> int:
        return i

    def actor_id(self) -> str:
        return actorloop.get_runtime_context().get_actor_id()


@pytest.fixture(scope="module")
def dash() -> Iterator[str]:
    actorloop.shutdown()
    ctx = actorloop.init(address="local", dashboard_port=0)
    assert ctx.dashboard_url is not None
    yield ctx.dashboard_url
    actorloop.shutdown()


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page(viewport={"width": 1500, "height": 420}) as pg:
        yield pg


def _calls_shown(page: Any, actor_id: str) -> int:
    text = page.locator(f'tr[data-actor-id="{actor_id}"] td.calls').inner_text()
    return int(text) if text.strip().isdigit() else -1


def test_page_shows_an_actor_its_calls_counting_up_and_its_death(dash: str, page: Any) -> None:
    p = off_loop(lambda: Pinger.options(name="pinger", namespace="browser").remote())
    aid = off_loop(lambda: actorloop.get(p.actor_id.remote()))
    page.goto(dash + "/")
    row = page.locator(f'tr[data-actor-id="{aid}"]')
    row.wait_for(timeout=30_000)
    cells = row.locator("td")
    assert cells.nth(0).inner_text() == "Pinger"
    assert cells.nth(1).inner_text() == "pinger"
    assert cells.nth(2).inner_text() == "browser"
    assert row.locator(".state").inner_text() == "ALIVE"

    # The page polls: the count rises with no reload.
    off_loop(lambda: actorloop.get([p.ping.remote(i) for i in range(40)]))
    page.wait_for_function(
        f"""() => {{
            const td = document.querySelector('tr[data-actor-id="{aid}"] td.calls');
            return td && Number(td.textContent) >= 40;
        }}""",
        timeout=30_000,
    )
    first = _calls_shown(page, aid)
    off_loop(lambda: actorloop.get([p.ping.remote(i) for i in range(60)]))
    page.wait_for_function(
        f"""() => Number(document.querySelector('tr[data-actor-id="{aid}"] td.calls').textContent) >= {first + 60}""",
        timeout=30_000,
    )
    # A latency chart was drawn (two samples with calls between them).
    page.wait_for_function(
        f"""() => document.querySelector('tr[data-actor-id="{aid}"] svg.chart polyline')
                   .getAttribute('points').length > 0""",
        timeout=30_000,
    )
    shot = os.environ.get("ACTORLOOP_DASHBOARD_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)

    off_loop(lambda: actorloop.kill(p))
    page.wait_for_function(
        f"""() => document.querySelector('tr[data-actor-id="{aid}"] .state').textContent === 'DEAD'""",
        timeout=30_000,
    )
    assert "killed with actorloop.kill()" in row.locator("td.cause").inner_text()
    assert cells.nth(5).inner_text() == "–"  # no pid any more
