"""Where the time goes, from py-spy's raw (collapsed) output.

    uv run python bench/pyspy_top.py PROFILE.txt [--top 40] [--match TEXT]

Prints the functions with the largest share of samples, inclusive (the function and what
it calls) and self (the function itself), and the share of samples per thread. With
`--match`, only stacks that contain TEXT count.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for path in args.profiles:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or (args.match and args.match not in stack):
                continue
            samples = int(count)
            total += samples
            frames = stack.split(";")
            threads[frames[0]] += samples
            for frame in set(frames[1:]):
                inclusive[frame] += samples
            own[frames[-1]] += samples
    if not total:
        print("no samples")
        return
    print(f"{total} samples")
    print("\nthreads:")
    for name, samples in threads.most_common(8):
        print(f"  {samples / total:6.1%}  {name}")
    print("\ninclusive:")
    for name, samples in inclusive.most_common(args.top):
        print(f"  {samples / total:6.1%}  {name}")
    print("\nself:")
    for name, samples in own.most_common(args.top):
        print(f"  {samples / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
