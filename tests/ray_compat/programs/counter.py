# expect: [1, 2, 3]
# expect: 3
# expect: caught RayActorError
import ray

ray.init()


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


counter = Counter.remote()
refs = [counter.increment.remote() for _ in range(3)]
print(ray.get(refs))
print(ray.get(counter.get_counter.remote()))

ray.kill(counter)
try:
    ray.get(counter.increment.remote())
except ray.exceptions.RayActorError:
    print("caught RayActorError")
ray.shutdown()
