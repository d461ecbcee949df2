"""Remote functions, written as Ray's task docs write them, after `import actorloop as ray`.

    python examples/remote_functions.py

Prints ``[0, 1, 4, 9]``, ``(3, 7)``, ``55`` (a task that waits for its subtasks),
``6`` (an actor calling a task) and ``caught: no luck``.
"""

import actorloop as ray


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote(num_returns=2)
def low_high(xs: list) -> tuple:
    return min(xs), max(xs)


@ray.remote
def fib(n: int) -> int:
    # Tasks call tasks and wait for them: the waiting task lends its worker to the others.
    if n < 2:
        return n
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))


@ray.remote
class Adder:
    def add_squares(self, a: int, b: int) -> int:
        return sum(ray.get([square.remote(a), square.remote(b)]))


@ray.remote(max_retries=0)
def unlucky() -> None:
    raise ValueError("no luck")


if __name__ == "__main__":
    ray.init()
    print(ray.get([square.remote(i) for i in range(4)]))
    lo, hi = low_high.remote([5, 3, 7])
    print(tuple(ray.get([lo, hi])))
    print(ray.get(fib.remote(10)))
    print(ray.get(Adder.remote().add_squares.remote(ray.put(1), 2)) + 1)
    try:
        ray.get(unlucky.remote())
    except ValueError as exc:
        print("caught:", exc.cause)
    ray.shutdown()
