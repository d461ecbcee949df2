"""Server-Sent Events from an actor route, read by a real browser's ``EventSource`` (issue 12).

The page is served by the actor itself (same origin as its ``/events``
route, so no CORS), and its JavaScript opens an ``EventSource``: named and
unnamed events, multi-line and JSON data, the ``retry`` field, an automatic
reconnect that sends ``Last-Event-ID`` when the stream ends, and
``EventSource.close()`` stopping the generator in the actor.

No browser is ever downloaded: Playwright drives the system's Chromium
(``apt-get install chromium``; ``.ci/run`` installs it), as in
tests/node/test_dashboard_browser.py. The tests skip, and say why, only where
that browser or Playwright is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _browser import REQUIRES_BROWSER, browser_page, off_loop
from aiohttp import web

import actorloop

pytestmark = REQUIRES_BROWSER

# The page records every event it is given, and every open and error, for the test to read back.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sse</title></head><body>
<script>
window.got = [];
window.opens = 0;
window.errors = 0;
window.finished = false;
const path = new URLSearchParams(location.search).get("stream");
const es = new EventSource(path);
window.es = es;
const keep = (e) => window.got.push({type: e.type, data: e.data, id: e.lastEventId});
es.onopen = () => { window.opens += 1; };
es.onerror = () => { window.errors += 1; };
es.onmessage = keep;
es.addEventListener("token", keep);
es.addEventListener("done", (e) => { keep(e); es.close(); window.finished = true; });
</script>
</body></html>
"""


@actorloop.remote
class Feed:
    """Serves the page and the event streams; remembers what each connection asked for."""

    def __init__(self) -> None:
        self.last_ids: list[str | None] = []  # the Last-Event-ID header of each /events connection
        self.endless_open = 0
        self.endless_closed = 0
        self.endless_sent = 0

    @actorloop.http.get("/")
    def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    @actorloop.http.get("/events")
    def events(self, request: web.Request) -> actorloop.http.EventStream:
        last = request.headers.get("Last-Event-ID")
        self.last_ids.append(last)

        async def first() -> AsyncIterator[Any]:
            yield actorloop.http.Event(comment="a comment the browser ignores")
            for i in range(3):
                yield actorloop.http.Event(f"token {i}", event="token", id=str(i))
            yield actorloop.http.Event({"tokens": 3}, id="3")  # JSON data, an unnamed ("message") event
            # The generator ends here: the browser reconnects after `retry` ms, with Last-Event-ID: 3.

        async def resumed(start: int) -> AsyncIterator[Any]:
            for i in range(start, start + 2):
                yield actorloop.http.Event(f"line one {i}\nline two {i}", id=str(i))
            yield actorloop.http.Event("bye", event="done")

        source = first() if last is None else resumed(int(last) + 1)
        return actorloop.http.sse(source, retry=50)

    @actorloop.http.get("/endless")
    def endless(self, request: web.Request) -> actorloop.http.EventStream:
        async def forever() -> AsyncIterator[Any]:
            self.endless_open += 1
            try:
                while True:
                    yield actorloop.http.Event(str(self.endless_sent))
                    self.endless_sent += 1
                    await asyncio.sleep(0.02)
            finally:  # runs when the browser closes the EventSource
                self.endless_closed += 1

        return actorloop.http.sse(forever())

    def seen(self) -> dict[str, Any]:
        return {
            "last_ids": list(self.last_ids),
            "endless_open": self.endless_open,
            "endless_closed": self.endless_closed,
        }


@pytest.fixture(scope="module", autouse=True)
def node() -> Iterator[None]:
    actorloop.init(address="local")
    yield
    actorloop.shutdown()


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page() as pg:
        yield pg


def test_browser_event_source_reads_events_and_reconnects_with_last_event_id(page: Any) -> None:
    feed = off_loop(Feed.remote)
    page.goto(f"{feed.http_url}/?stream=/events")
    page.wait_for_function("() => window.finished === true", timeout=30_000)
    got = page.evaluate("() => window.got")
    assert got == [
        {"type": "token", "data": "token 0", "id": "0"},
        {"type": "token", "data": "token 1", "id": "1"},
        {"type": "token", "data": "token 2", "id": "2"},
        {"type": "message", "data": '{"tokens": 3}', "id": "3"},
        # The first stream ended; the browser reconnected by itself, sending Last-Event-ID: 3.
        {"type": "message", "data": "line one 4\nline two 4", "id": "4"},
        {"type": "message", "data": "line one 5\nline two 5", "id": "5"},
        {"type": "done", "data": "bye", "id": "5"},  # an event with no id keeps the last one
    ]
    assert page.evaluate("() => window.opens") == 2
    assert page.evaluate("() => window.es.readyState") == 2  # CLOSED, by the page's own close()
    assert off_loop(lambda: actorloop.get(feed.seen.remote()))["last_ids"] == [None, "3"]
    off_loop(lambda: actorloop.kill(feed))


def test_browser_closing_event_source_stops_the_generator(page: Any) -> None:
    feed = off_loop(Feed.remote)
    page.goto(f"{feed.http_url}/?stream=/endless")
    page.wait_for_function("() => window.got.length >= 3", timeout=30_000)
    assert [e["data"] for e in page.evaluate("() => window.got.slice(0, 3)")] == ["0", "1", "2"]
    page.evaluate("() => window.es.close()")

    def wait_closed() -> dict[str, Any]:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            now = actorloop.get(feed.seen.remote())
            if now["endless_closed"]:
                return dict(now)
            time.sleep(0.02)
        return dict(actorloop.get(feed.seen.remote()))

    seen = off_loop(wait_closed)
    assert seen["endless_open"] == 1
    assert seen["endless_closed"] == 1, "closing the EventSource did not stop the generator in the actor"
    off_loop(lambda: actorloop.kill(feed))
