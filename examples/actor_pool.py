"""Ray's ActorPool example, unchanged but for the import: prints list(gen)=[2, 4, 6, 8].

Run it with ``python examples/actor_pool.py``.
"""

import asyncio

import actorloop as ray
from actorloop.util import ActorPool


@ray.remote
class Actor:
    def double(self, v):
        return 2 * v


a1, a2 = Actor.remote(), Actor.remote()
pool = ActorPool([a1, a2])

# pool.map(...) returns a generator; the calls are already submitted.
gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
print(f"{list(gen)=}")


# The same from async code, on any event loop.
async def main():
    return [v async for v in pool.map_async(lambda a, v: a.double.remote(v), [5, 6, 7, 8])]


print(f"{asyncio.run(main())=}")
