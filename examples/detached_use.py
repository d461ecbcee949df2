"""Find the detached actor that examples/detached_create.py left running, and use it."""

import actorloop

if __name__ == "__main__":
    actorloop.init(address="auto", namespace="ns")
    counter = actorloop.get_actor("c")
    print("count:", actorloop.get(counter.increment.remote()))
