# expect: (MyActor(index=1) pid=
# expect: ) hello
import ray


@ray.remote
class MyActor:
    def __init__(self, index):
        self.index = index

    def foo(self):
        print("hello")

    def __repr__(self):
        return f"MyActor(index={self.index})"


a = MyActor.remote(1)
ray.get(a.foo.remote())
