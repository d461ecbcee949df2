# expect: sync: [0, 1, 2, 3, 4]
# expect: async: [0, 2, 4]
# expect: error after 2 items: ValueError
# expect: function: ['a', 'b', 'c']
# expect: wait: 1 ready
import asyncio

import ray

ray.init()


@ray.remote
class Producer:
    def numbers(self, n):
        yield from range(n)

    async def evens(self, n):
        for i in range(0, n, 2):
            await asyncio.sleep(0)
            yield i

    def fails_after(self, n):
        yield from range(n)
        raise ValueError("no more")


@ray.remote
def letters():
    yield from "abc"


producer = Producer.remote()
print("sync:", [ray.get(ref) for ref in producer.numbers.remote(5)])


async def consume():
    return [await ref async for ref in producer.evens.remote(6)]


print("async:", asyncio.run(consume()))

gen = producer.fails_after.remote(2)
got = []
try:
    for ref in gen:
        got.append(ray.get(ref))
except ValueError as exc:
    # Ray's task error is also an instance of the user's exception class.
    print(f"error after {len(got)} items: {isinstance(exc, ValueError) and 'ValueError'}")

print("function:", [ray.get(ref) for ref in letters.remote()])

stream = producer.numbers.options(num_returns="streaming").remote(3)
ready, _ = ray.wait([stream], timeout=30)
print(f"wait: {len(ready)} ready")
ray.shutdown()
