"""The node's dashboard and metrics: a few busy actors to look at.

Run it and open the URL it prints; ``--seconds N`` keeps it running N
seconds (default 3), ``--port N`` picks the port (default: a free one).
It prints the dashboard's URL, then the calls the node counted::

    dashboard: http://127.0.0.1:PORT
    counted 300 calls of Greeter.hello

``--screenshot PATH`` saves a picture of the page through the system's
Chromium (``pip install playwright`` and ``apt-get install chromium``; no
browser is downloaded): this is how docs/img/dashboard.png is made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import urllib.request

import actorloop


@actorloop.remote
class Greeter:
    def hello(self, name: str) -> str:
        return f"hello {name}"


@actorloop.remote
class Slow:
    async def work(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


@actorloop.remote
class Web:
    @actorloop.http.get("/count")
    def count(self, request: object) -> int:
        return 1


@actorloop.remote
class Doomed:
    def ping(self) -> str:
        return "pong"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--screenshot", default=None)
    args = ap.parse_args()

    ctx = actorloop.init(dashboard_port=args.port, namespace="demo")
    url = ctx.dashboard_url
    print(f"dashboard: {url}", flush=True)

    greeter = Greeter.options(name="greeter").remote()
    slow = Slow.options(name="slow", max_concurrency=4).remote()
    Web.options(name="web").remote()
    doomed = Doomed.options(name="doomed").remote()
    actorloop.get([greeter.hello.remote("x") for _ in range(300)])
    actorloop.get(doomed.ping.remote())
    actorloop.kill(doomed)

    stop = threading.Event()

    def load() -> None:  # calls flow while the page is looked at
        while not stop.is_set():
            actorloop.get([greeter.hello.remote("x") for _ in range(50)])
            actorloop.get([slow.work.remote(0.002 * (i % 5)) for i in range(8)])
            time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    if args.seconds > 0 or args.screenshot:
        loader.start()
    if args.screenshot:
        _screenshot(url, args.screenshot)
    time.sleep(args.seconds)
    stop.set()
    if loader.is_alive():
        loader.join()

    with urllib.request.urlopen(url + "/metrics") as resp:
        text = resp.read().decode()
    finished = "actorloop_actor_calls_finished_total{"
    counted = [line for line in text.splitlines() if line.startswith(finished) and 'method="hello"' in line]
    print(f"counted {float(counted[0].rsplit(' ', 1)[1]):.0f} calls of Greeter.hello" if counted else "nothing counted")
    # The page's JSON, for a script: every actor with its state and figures.
    with urllib.request.urlopen(url + "/api/actors") as resp:
        states = sorted((a["name"], a["state"]) for a in json.load(resp)["actors"])
    print(states)
    actorloop.shutdown()


def _screenshot(url: str, path: str) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    args += ["--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1560, "height": 330})
        page.goto(url + "/")
        page.wait_for_selector("tr[data-actor-id]")
        time.sleep(6)  # a few collections, so that the charts have a history
        page.screenshot(path=path, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
