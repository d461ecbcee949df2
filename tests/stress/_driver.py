"""A driver that the owner-death and node-death tests run as a subprocess and kill.

``python _driver.py MODE ADDRESS N``: ``init(address=ADDRESS or None)``,
create N actors, then call them forever.  It reports what the test needs to
find its processes, one line each, flushed at once:

    NODE <pid> <dir>        the node it joined (pid 0 when not embedded)
    CREATING                before the first .remote()
    ACTOR <pid>             an actor answered
    CALLING                 all actors created; the call loop starts
    CALLED                  the first round of calls was answered; the next ones are on their way
    ERROR <class> <message> a call failed (the node died)
    CREATE <class>          what creating an actor then raised; then exits 3
"""

from __future__ import annotations

import asyncio
import os
import sys

import actorloop
from actorloop import _runtime as _client


@actorloop.remote
class Worker:
    def __init__(self, n: int) -> None:
        self.n = n

    def pid(self) -> int:
        return os.getpid()

    def work(self, x: int) -> int:
        return x + self.n


@actorloop.remote
class AsyncWorker:
    async def pid(self) -> int:
        return os.getpid()

    async def work(self, x: int) -> int:
        await asyncio.sleep(0)
        return x


def say(*words: object) -> None:
    print(*words, flush=True)


def main() -> None:
    mode, address, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    actorloop.init(address=address or None, log_to_driver=False)
    rt = _client.get_runtime()
    assert rt is not None
    node_pid = rt.embedded_node.proc.pid if rt.embedded_node is not None else 0
    say("NODE", node_pid, rt.node_dir)
    say("CREATING")
    actors = []
    for i in range(count):
        a = Worker.remote(i) if i % 2 == 0 else AsyncWorker.remote()
        actors.append(a)
        if mode == "slow-create":
            say("ACTOR", actorloop.get(a.pid.remote()))
    if mode != "slow-create":
        for a in actors:
            say("ACTOR", actorloop.get(a.pid.remote()))
    say("CALLING")
    try:
        if mode == "async":

            async def forever() -> None:
                x = 0
                while True:
                    refs = [a.work.remote(x) for a in actors for _ in range(50)]
                    await asyncio.wait_for(asyncio.gather(*refs), 30)
                    if x == 0:
                        say("CALLED")
                    x += 1

            asyncio.run(forever())
        x = 0
        while True:
            actorloop.get([a.work.remote(x) for a in actors for _ in range(50)], timeout=30)
            if x == 0:
                say("CALLED")
            x += 1
    except Exception as exc:  # the node died: report how
        say("ERROR", type(exc).__name__, str(exc).replace("\n", " ")[:300])
        try:
            actorloop.get(Worker.remote(0).pid.remote(), timeout=10)
            say("CREATE ok")
        except Exception as create_exc:
            say("CREATE", type(create_exc).__name__, str(create_exc).replace("\n", " ")[:300])
        os._exit(3)


if __name__ == "__main__":
    main()
