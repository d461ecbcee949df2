"""Built-in HTTP routes: ``curl`` straight into an actor.

Methods decorated with ``@actorloop.http.get``/``post``/``route`` are
served by an aiohttp server on the actor's own loop. ``handle.http_url`` is
known as soon as ``.remote()`` returns; handlers see the same state as
``.remote()`` calls.

Run it with ``python examples/http_routes.py``: it prints a ``curl`` session
against the actor (made with ``curl`` itself when it is installed, else
with ``urllib``), then mixes HTTP and ``.remote()`` calls.
"""

import json
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request

from aiohttp import web

import actorloop


@actorloop.remote(concurrency_groups={"io": 4})
class Inventory:
    def __init__(self):
        self.items = {"apple": 3}

    def add(self, name, n):  # a plain .remote() method
        self.items[name] = self.items.get(name, 0) + n
        return self.items[name]

    @actorloop.http.get("/items")
    def list_items(self, request):
        return self.items  # a dict is sent as JSON

    @actorloop.http.get("/items/{name}")
    def get_item(self, request):
        name = request.match_info["name"]
        if name not in self.items:
            raise web.HTTPNotFound(text=f"no {name}\n")  # sent as that status
        return f"{name}: {self.items[name]}\n"  # a str is sent as text/plain

    @actorloop.http.post("/items/{name}")
    @actorloop.method(concurrency_group="io")
    async def put_item(self, request):
        body = await request.json()  # a malformed body answers 400
        return {"name": request.match_info["name"], "count": self.add(request.match_info["name"], int(body["n"]))}

    @actorloop.http.get("/fail")
    def fail(self, request):
        raise RuntimeError("something broke")  # answers 500 with a JSON body


CURL = shutil.which("curl")


def curl(*args):
    """Print a curl command and what it printed, like a terminal session."""
    print("$ curl " + shlex.join(args))
    if CURL is not None:
        out = subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, text=True, check=True)
        print(out.stdout.rstrip("\n"))
        return
    # The same request with urllib, for machines without curl.
    method, data, headers, url, show_status = "GET", None, {}, None, False
    it = iter(args)
    for arg in it:
        if arg == "-X":
            method = next(it)
        elif arg == "-d":
            data, method = next(it).encode(), "POST" if method == "GET" else method
        elif arg == "-H":
            key, _, value = next(it).partition(":")
            headers[key.strip()] = value.strip()
        elif arg in ("-i", "-I"):
            show_status = True
            method = "HEAD" if arg == "-I" else method
        else:
            url = arg
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    if show_status:
        print(f"HTTP/1.1 {status}")
    print(body.decode().rstrip("\n"))


if __name__ == "__main__":
    actorloop.init()
    inv = Inventory.remote()
    url = inv.http_url  # known at once, e.g. http://127.0.0.1:41235
    print(f"# the actor serves {url}")

    curl(f"{url}/items")
    curl(f"{url}/items/apple")
    curl("-X", "POST", "-H", "Content-Type: application/json", "-d", '{"n": 2}', f"{url}/items/pear")
    print(f"# .remote() sees what HTTP did: pear = {actorloop.get(inv.add.remote('pear', 1))}")
    curl(f"{url}/items")
    curl("-i", f"{url}/items/plum")
    curl("-i", "-X", "POST", "-d", "{not json", f"{url}/items/pear")
    curl("-i", f"{url}/fail")
    curl("-i", "-X", "DELETE", f"{url}/items")
    curl("-i", f"{url}/nowhere")
    curl("-I", f"{url}/items")
    assert json.loads(urllib.request.urlopen(f"{url}/items", timeout=10).read()) == {"apple": 3, "pear": 3}
    actorloop.shutdown()
