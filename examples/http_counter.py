"""Ray's out-of-band HTTP example: an actor that serves its own aiohttp app.

The actor's async ``__init__`` starts an aiohttp ``AppRunner``/``TCPSite`` on
the actor's own event loop. The driver increments the counter five times
with ``.remote()``, reads ``5`` over HTTP, POSTs an increment, and reads
``6``. Unchanged from the Ray version but for ``import actorloop as ray``
and a free port instead of the fixed 25001.

Run it with ``python examples/http_counter.py``; it prints::

    GET  / -> 5
    POST / -> ok
    GET  / -> 6

For routes declared with decorators instead, see ``examples/http_routes.py``.
"""

import socket
import urllib.request

from aiohttp import web

import actorloop as ray


@ray.remote
class Counter:
    async def __init__(self, port):
        self.counter = 0
        app = web.Application()
        app.add_routes([web.get("/", self.get), web.post("/", self.post)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()

    async def get(self, request):
        return web.Response(text=str(self.counter))

    async def post(self, request):
        self.counter += 1
        return web.Response(text="ok")

    async def increment(self):
        self.counter += 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
        return resp.read().decode()


if __name__ == "__main__":
    ray.init()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    counter = Counter.remote(port)
    ray.get([counter.increment.remote() for _ in range(5)])

    print("GET  / ->", http("GET", url))
    print("POST / ->", http("POST", url))
    print("GET  / ->", http("GET", url))
    assert http("GET", url) == "6"
    ray.shutdown()
