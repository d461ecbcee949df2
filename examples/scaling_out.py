"""Scaling out: one program, on this machine's node or on a Ray cluster.

Counts words with two shard actors, a remote function per line and an HTTP
route per shard.  Run it as is (the local node), or on Ray::

    python examples/scaling_out.py                                    # local node
    ACTORLOOP_BACKEND=ray python examples/scaling_out.py              # a Ray instance of its own
    RAY_ADDRESS=127.0.0.1:6379 ACTORLOOP_BACKEND=ray \\
        python examples/scaling_out.py --show-nodes                   # a running Ray cluster

On a cluster whose nodes offer the custom resources ``head`` and
``worker2`` (``ray start ... --resources '{"head": 1}'``), shard ``a`` is
placed on the first and shard ``b`` on the second; elsewhere the placement
is left to the engine (the local node ignores resources).  It prints, on
every backend::

    lines: 4 words: 23
    shard a: [('the', 5), ('fox', 2), ('brown', 1)]
    shard b: [('a', 2), ('quick', 2), ('and', 1)]
    http a: 8 distinct
    http b: 8 distinct

With ``--show-nodes`` it adds ``nodes: N``, the number of Ray nodes the two
shards run on (1 on the local node, 2 on the two-node cluster), and the
hosts their HTTP servers listen on (``127.0.0.1`` on one machine).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse
import urllib.request

import actorloop

TEXT = [
    "The quick brown fox",
    "jumps over the lazy dog and the cat",
    "a quick nap for the fox",
    "the end of a story",
]


@actorloop.remote
class Shard:
    """Counts the words routed to it; serves its count over HTTP."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}

    def add(self, words: list[str]) -> int:
        for word in words:
            self.counts[word] = self.counts.get(word, 0) + 1
        return len(words)

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def node(self) -> str:
        return actorloop.get_runtime_context().get_node_id()

    @actorloop.http.get("/distinct")
    def distinct(self, request: object) -> dict[str, object]:
        return {"shard": self.name, "distinct": len(self.counts)}


@actorloop.remote
def tokenize(line: str) -> list[str]:
    return line.lower().split()


def placement(resource: str) -> dict[str, object]:
    """Pin to nodes offering ``resource`` where the cluster has them; elsewhere no constraint.

    ``num_cpus=0``: on Ray an actor given ``resources`` also holds a CPU while it
    runs, which would leave the remote functions none on a small cluster.
    """
    return {"resources": {resource: 1}, "num_cpus": 0} if resource in actorloop.cluster_resources() else {}


def fetch(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


async def main(show_nodes: bool) -> None:
    shards = {
        "a": Shard.options(**placement("head")).remote("a"),
        "b": Shard.options(**placement("worker2")).remote("b"),
    }
    words_per_line = await asyncio.gather(*[tokenize.remote(line) for line in TEXT])
    # Each word goes to one shard, by its first letter: the counts do not depend on timing.
    routed: dict[str, list[str]] = {"a": [], "b": []}
    for words in words_per_line:
        for word in words:
            routed["a" if ord(word[0]) % 2 == 0 else "b"].append(word)
    added = await asyncio.gather(*[shards[name].add.remote(words) for name, words in routed.items()])
    print(f"lines: {len(TEXT)} words: {sum(added)}")
    for name, shard in shards.items():
        print(f"shard {name}: {await shard.top.remote(3)}")
    for name, shard in shards.items():
        # http_url names the host the engine placed the actor on.
        body = await asyncio.to_thread(fetch, f"{shard.http_url}/distinct")
        print(f"http {name}: {body['distinct']} distinct")
    if show_nodes:
        nodes = await asyncio.gather(*[shard.node.remote() for shard in shards.values()])
        print(f"nodes: {len(set(nodes))}")
        hosts = {urllib.parse.urlsplit(shard.http_url).hostname for shard in shards.values()}
        print(f"http hosts: {', '.join(sorted(hosts))}")


if __name__ == "__main__":
    actorloop.init()  # the local node, or Ray with ACTORLOOP_BACKEND=ray (RAY_ADDRESS picks the cluster)
    try:
        asyncio.run(main("--show-nodes" in sys.argv))
    finally:
        actorloop.shutdown()
