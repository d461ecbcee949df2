"""Summarize a py-spy raw profile (``py-spy record -f raw``): self and inclusive share per function.

``python benchmarks/results/profiles/summarize.py PROFILE.txt [TOP]``
"""

from __future__ import annotations

import collections
import re
import sys


def _key(frame: str) -> str:
    frame = re.sub(r"/\S*/lib/python3\.\d+/", "", frame)
    frame = re.sub(r"/\S*/(actorloop|benchmarks)/", r"\1/", frame)
    return re.sub(r":\d+\)", ")", frame)


def main() -> None:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as file:
        for line in file:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            frames = [_key(f) for f in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{path}: {total} samples")
    print("-- self (C functions count as their Python caller's own time)")
    for name, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}% {name}")
    print("-- inclusive")
    for name, n in inclusive.most_common(top):
        print(f"{100 * n / total:5.1f}% {name}")


if __name__ == "__main__":
    main()
