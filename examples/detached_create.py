"""Create a detached, named actor on the node that `actorloop start` runs, then exit.

actorloop start
python examples/detached_create.py
python examples/detached_use.py
actorloop stop
"""

import actorloop


@actorloop.remote
class Counter:
    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> int:
        self.count += 1
        return self.count


if __name__ == "__main__":
    actorloop.init(address="auto", namespace="ns")
    counter = Counter.options(name="c", namespace="ns", lifetime="detached", get_if_exists=True).remote()
    print("count:", actorloop.get(counter.increment.remote()))
    print("this script exits; the actor lives on")
