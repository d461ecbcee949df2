"""Streaming: tokens to an ``async for`` caller and to ``curl -N``, and a WebSocket chat room.

See docs/streaming.md. ``TokenModel`` has one source of tokens and two ways
out of the actor:

- ``generate`` is an async generator *method*: ``.remote()`` returns at once
  an ``ObjectRefGenerator`` and each token reaches the caller as soon as the
  actor yields it (``async for`` over ``.values()``, the fast path, or Ray's
  one-ref-per-item form). A caller that stops early stops the generator in
  the actor (its ``finally`` runs).
- ``GET /generate?prompt=...`` streams the same tokens over HTTP as
  Server-Sent Events (``actorloop.http.sse``), which ``curl -N`` prints as
  they come; ``GET /lines`` is a plain chunked stream, one line per token.

``ChatRoom`` serves a WebSocket at ``/chat``: every message a member sends
is broadcast to all members, and a plain ``.remote()`` method posts into the
room and reads its history, the same state the WebSocket handlers use.

Run it::

    python examples/streaming.py

The ``curl -N`` sessions are made with curl itself when it is installed,
else with aiohttp (printed the same way). It prints::

    reply: you said hello and here is a reply
    as refs: you said hi
    stopped early: 1
    $ curl -N http://127.0.0.1:PORT/generate?prompt=stream+me
    event: token
    id: 0
    data: you
    ...
    event: done
    data: [DONE]
    $ curl -N http://127.0.0.1:PORT/lines?prompt=lines
    you
    said
    lines
    ...
    bob sees: ann: hi bob
    ann sees: ann: hi bob
    bob sees: [room] closing soon
    ann sees: [room] closing soon
    ann sees: bob left
    history: ['ann joined', 'bob joined', 'ann: hi bob', '[room] closing soon', 'bob left']
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

import actorloop


@actorloop.remote
class TokenModel:
    """Pretends to generate text: one token at a time, with a pause between them."""

    def __init__(self) -> None:
        self.stopped_early = 0

    async def _tokens(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:
        """The "model": the one source of tokens behind both the method and the routes."""
        for word in f"you said {prompt} and here is a reply to it".split()[:max_tokens]:
            await asyncio.sleep(0.01)  # the model thinks
            yield word

    async def generate(self, prompt: str, max_tokens: int = 8) -> AsyncIterator[str]:
        """Yield the reply's tokens one by one (an async generator method: it streams)."""
        finished = False
        try:
            async for word in self._tokens(prompt, max_tokens):
                yield word + " "
            finished = True
        finally:
            # A caller that stops listening stops the generator here (CancelledError while it
            # awaits, GeneratorExit at its yield): free whatever the generation held.
            if not finished:
                self.stopped_early += 1

    async def stats(self) -> int:
        return self.stopped_early

    @actorloop.http.get("/generate")
    def generate_sse(self, request: Any) -> Any:
        """The same tokens as Server-Sent Events: one ``token`` event each, then ``done``."""
        prompt = request.query.get("prompt", "hello")

        async def events() -> AsyncIterator[actorloop.http.Event]:
            i = 0
            async for word in self._tokens(prompt, 8):
                yield actorloop.http.Event(word, event="token", id=str(i))
                i += 1
            yield actorloop.http.Event("[DONE]", event="done")

        return actorloop.http.sse(events())

    @actorloop.http.get("/lines")
    async def lines(self, request: Any) -> AsyncIterator[str]:
        # A plain async generator handler: a chunked text response, one line per token.
        async for word in self._tokens(request.query.get("prompt", "hello"), 8):
            yield word + "\n"


@actorloop.remote
class ChatRoom:
    """A WebSocket chat room; its state is shared with its .remote() methods."""

    def __init__(self) -> None:
        self.members: dict[str, Any] = {}
        self.history: list[str] = []

    async def _broadcast(self, text: str) -> None:
        self.history.append(text)
        for name, ws in list(self.members.items()):
            try:
                await ws.send_json({"text": text})
            except actorloop.http.WebSocketClosed:
                self.members.pop(name, None)  # gone; its own handler ends too

    @actorloop.http.websocket("/chat")
    async def chat(self, ws: Any) -> None:
        name = ws.request.query.get("name", "anonymous")
        self.members[name] = ws
        await self._broadcast(f"{name} joined")
        try:
            async for message in ws:  # str or bytes, until the client closes
                await self._broadcast(f"{name}: {message}")
        finally:
            self.members.pop(name, None)
        await self._broadcast(f"{name} left")

    async def announce(self, text: str) -> None:
        await self._broadcast(f"[room] {text}")

    def log(self) -> list[str]:
        return list(self.history)


async def tokens_to_async_for(model: Any) -> None:
    # The fast path for async code: the items themselves, each as soon as it is yielded.
    print("reply: ", end="", flush=True)
    async for token in model.generate.remote("hello").values():
        print(token, end="", flush=True)
    print()

    # Ray's form: one ObjectRef per item.
    tokens = [await ref async for ref in model.generate.remote("hi", 3)]
    print("as refs:", "".join(tokens).strip())

    # Stopping early (break, or dropping the generator) stops the generator in the actor.
    async for token in model.generate.remote("stop soon").values():
        if token.strip() == "said":
            break
    while await model.stats.remote() == 0:  # the actor learns of it at once; wait for the round trip
        await asyncio.sleep(0.01)
    print("stopped early:", await model.stats.remote())


async def curl_n(url: str) -> None:
    """``curl -N url``, printed like a terminal session, each line as it arrives."""
    print(f"$ curl -N {url}", flush=True)
    curl = shutil.which("curl")
    if curl is not None:
        proc = await asyncio.create_subprocess_exec(
            curl, "-sS", "-N", "--max-time", "30", url, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        async for line in proc.stdout:  # curl -N writes each chunk as it comes
            print(line.decode().rstrip("\n"), flush=True)
        if await proc.wait() != 0:
            raise SystemExit(f"curl failed with exit code {proc.returncode}")
        return
    async with aiohttp.ClientSession() as session, session.get(url) as resp:  # no curl: the same with aiohttp
        async for raw in resp.content:  # line by line, as the chunks arrive
            print(raw.decode().rstrip("\n"), flush=True)


async def chat(room: Any) -> None:
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


async def main() -> None:
    model = TokenModel.remote()
    await tokens_to_async_for(model)
    await curl_n(f"{model.http_url}/generate?prompt=stream+me")
    await curl_n(f"{model.http_url}/lines?prompt=lines")

    room = ChatRoom.remote()
    await chat(room)


if __name__ == "__main__":
    actorloop.init()
    asyncio.run(main())
    actorloop.shutdown()
