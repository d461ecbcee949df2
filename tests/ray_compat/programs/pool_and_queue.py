# expect: [2, 4, 6, 8]
# expect: [0, 1, 2]
import ray
from ray.util import ActorPool
from ray.util.queue import Empty, Queue


@ray.remote
class Doubler:
    def double(self, v):
        return 2 * v


pool = ActorPool([Doubler.remote(), Doubler.remote()])
print(list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])))


@ray.remote
class Consumer:
    def take(self, queue, n):
        return [queue.get(timeout=5) for _ in range(n)]


queue = Queue()
for i in range(3):
    queue.put(i)
print(ray.get(Consumer.remote().take.remote(queue, 3)))
try:
    queue.get(block=False)
except Empty:
    pass
