"""Seed example 1: a named actor, fetched again by name.

python examples/named_actor.py
"""

import actorloop


@actorloop.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def increment(self) -> int:
        self.value += 1
        return self.value

    def get_counter(self) -> int:
        return self.value


if __name__ == "__main__":
    counter = Counter.options(name="some_name").remote()
    same = actorloop.get_actor("some_name")
    actorloop.get(same.increment.remote())
    print(actorloop.get(counter.get_counter.remote()))  # 1
