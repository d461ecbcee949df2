# expect: same actor: True
# expect: namespace: colors
# expect: names: ['orange']
import ray

ray.init(namespace="colors")


@ray.remote
class Actor:
    def ping(self):
        return ray.get_runtime_context().namespace


a = Actor.options(name="orange", get_if_exists=True).remote()
b = Actor.options(name="orange", get_if_exists=True).remote()
print("same actor:", a == b)
print("namespace:", ray.get(ray.get_actor("orange").ping.remote()))
print("names:", ray.util.list_named_actors())
