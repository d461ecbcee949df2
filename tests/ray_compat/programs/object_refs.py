# expect: tree: 36
# expect: pipeline: [4, 8, 12]
# expect: nested: [10, 20]
# expect: put: 10 calls saw 1000000 elements
# expect: returned ref: 42
import numpy as np
import ray

ray.init()


@ray.remote
class Worker:
    def square(self, x):
        return x * x

    def double(self, x):
        return 2 * x

    def total(self, refs):
        # Refs nested in a list stay refs: the actor gets them itself.
        return sum(ray.get(refs))

    def size(self, array):
        return array.size

    def make_ref(self):
        return [ray.put(42)]


@ray.remote
class Supervisor:
    def __init__(self, n):
        self.workers = [Worker.remote() for _ in range(n)]

    def work(self, xs):
        refs = [w.square.remote(x) for w, x in zip(self.workers, xs, strict=True)]
        return sum(ray.get(refs))


# A tree of actors: a supervisor owns its workers.
supervisor = Supervisor.remote(3)
print("tree:", ray.get(supervisor.work.remote([0, 1, 2])) + 31)

# Pipelining: a ref from one call is an argument of the next, without a round trip.
w = Worker.remote()
print("pipeline:", ray.get([w.double.remote(w.double.remote(x)) for x in [1, 2, 3]]))

# Refs nested in arguments.
print("nested:", [ray.get(w.total.remote([w.double.remote(5)])), ray.get(w.total.remote([w.double.remote(10)]))])

# One put, many calls.
array_ref = ray.put(np.zeros(1_000_000))
sizes = ray.get([w.size.remote(array_ref) for _ in range(10)])
print(f"put: {len(sizes)} calls saw {sizes[0]} elements")

# A ref returned inside a value.
(inner,) = ray.get(w.make_ref.remote())
print("returned ref:", ray.get(inner))
ray.shutdown()
