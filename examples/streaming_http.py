"""Streaming over HTTP: tokens to ``curl -N`` as Server-Sent Events, and a WebSocket chat room.

``Writer`` streams a reply token by token: ``GET /generate?prompt=...``
answers ``text/event-stream``, one event per token, as an async generator
yields them (``actorloop.http.sse``). ``ChatRoom`` serves a WebSocket at
``/chat``: every message a member sends is broadcast to all members, and a
plain ``.remote()`` method posts into the room and reads its history, the
same state the WebSocket handlers use.

Run it with ``python examples/streaming_http.py``: it prints the ``curl -N``
session (made with curl itself when it is installed, else with aiohttp),
then a chat between two WebSocket clients. Prints::

    $ curl -N http://127.0.0.1:PORT/generate?prompt=stream+me
    event: token
    id: 0
    data: stream
    ...
    event: done
    data: [DONE]
    $ curl -N http://127.0.0.1:PORT/lines
    lines,
    ...
    bob sees: ann: hi bob
    ann sees: ann: hi bob
    bob sees: [room] closing soon
    ann sees: [room] closing soon
    ann sees: bob left
    history: ['ann joined', 'bob joined', 'ann: hi bob', '[room] closing soon', 'bob left']
"""

import asyncio
import shutil
import subprocess

import aiohttp

import actorloop


@actorloop.remote
class Writer:
    """Streams a reply word by word, as a language model streams tokens."""

    async def _tokens(self, prompt):
        for word in f"{prompt}, token by token".split():
            await asyncio.sleep(0.05)  # the "model" thinking
            yield word

    @actorloop.http.get("/generate")
    def generate(self, request):
        prompt = request.query.get("prompt", "hello")

        async def events():
            async for i, word in _enumerate(self._tokens(prompt)):
                yield actorloop.http.Event(word, event="token", id=str(i))
            yield actorloop.http.Event("[DONE]", event="done")

        return actorloop.http.sse(events())

    @actorloop.http.get("/lines")
    async def lines(self, request):
        # A plain async generator handler: chunked text, one line per item.
        async for word in self._tokens("lines"):
            yield word + "\n"


async def _enumerate(items):
    i = 0
    async for item in items:
        yield i, item
        i += 1


@actorloop.remote
class ChatRoom:
    """A WebSocket chat room; its state is shared with its .remote() methods."""

    def __init__(self):
        self.members = {}
        self.history = []

    async def _broadcast(self, text):
        self.history.append(text)
        for name, ws in list(self.members.items()):
            try:
                await ws.send_json({"text": text})
            except actorloop.http.WebSocketClosed:
                self.members.pop(name, None)  # gone; its own handler ends too

    @actorloop.http.websocket("/chat")
    async def chat(self, ws):
        name = ws.request.query.get("name", "anonymous")
        self.members[name] = ws
        await self._broadcast(f"{name} joined")
        try:
            async for message in ws:  # str or bytes, until the client closes
                await self._broadcast(f"{name}: {message}")
        finally:
            self.members.pop(name, None)
        await self._broadcast(f"{name} left")

    async def announce(self, text):
        await self._broadcast(f"[room] {text}")

    def log(self):
        return list(self.history)


def curl_n(url):
    """``curl -N url``, printed like a terminal session."""
    print(f"$ curl -N {url}")
    curl = shutil.which("curl")
    if curl is not None:
        out = subprocess.run([curl, "-sS", "-N", "--max-time", "30", url], capture_output=True, text=True, check=True)
        print(out.stdout.rstrip("\n"))
        return

    async def fetch():
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            async for line in resp.content:  # as each chunk arrives
                print(line.decode().rstrip("\n"))

    asyncio.run(fetch())


async def chat(room):
    url = room.http_url
    async with aiohttp.ClientSession() as session:
        ann = await session.ws_connect(f"{url}/chat?name=ann")
        assert (await ann.receive_json())["text"] == "ann joined"
        bob = await session.ws_connect(f"{url}/chat?name=bob")
        assert (await bob.receive_json())["text"] == "bob joined"
        assert (await ann.receive_json())["text"] == "bob joined"

        await ann.send_str("hi bob")
        print("bob sees:", (await bob.receive_json())["text"])
        print("ann sees:", (await ann.receive_json())["text"])  # her own message, broadcast to all
        await room.announce.remote("closing soon")  # a .remote() call into the same room
        print("bob sees:", (await bob.receive_json())["text"])
        await bob.close()
        print("ann sees:", (await ann.receive_json())["text"])  # "[room] closing soon"
        print("ann sees:", (await ann.receive_json())["text"])  # "bob left"
        print("history:", await room.log.remote())
        await ann.close()


def main():
    actorloop.init()
    writer = Writer.remote()
    curl_n(f"{writer.http_url}/generate?prompt=stream+me")
    curl_n(f"{writer.http_url}/lines")

    room = ChatRoom.remote()
    asyncio.run(chat(room))
    actorloop.shutdown()


if __name__ == "__main__":
    main()
