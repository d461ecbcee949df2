"""Streaming: an actor that yields tokens, consumed as they come (docs/streaming.md).

A generator method streams: ``.remote()`` returns at once an
``ObjectRefGenerator``, and each item is sent to the caller as soon as the
actor yields it. Run it::

    python examples/streaming.py

It prints the tokens of one reply as they arrive (``async for`` over
``.values()``, the fast path), the same reply through Ray's ref-per-item
form, and shows that a caller who stops early stops the generator in the
actor (its ``finally`` runs).
"""

from __future__ import annotations

import asyncio

import actorloop


@actorloop.remote
class TokenModel:
    """Pretends to generate text: one token at a time, with a pause between them."""

    def __init__(self) -> None:
        self.stopped_early = 0

    async def generate(self, prompt: str, max_tokens: int = 8):
        """Yield the reply's tokens one by one (an async generator method: it streams)."""
        words = f"you said {prompt!r} and here is a reply to it".split()
        finished = False
        try:
            for word in words[:max_tokens]:
                await asyncio.sleep(0.01)  # the "model" thinks
                yield word + " "
            finished = True
        finally:
            # A caller that stops listening stops the generator here (CancelledError while it
            # awaits, GeneratorExit at its yield): free whatever the generation held.
            if not finished:
                self.stopped_early += 1

    async def stats(self) -> int:
        return self.stopped_early


async def main() -> None:
    model = TokenModel.remote()

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


if __name__ == "__main__":
    actorloop.init()
    asyncio.run(main())
    actorloop.shutdown()
