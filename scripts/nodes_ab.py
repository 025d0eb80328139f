#!/usr/bin/env python3
"""Per-node times of two millrace builds, alternating, on one model.

Each round runs `BIN profile MODEL --threads T --top 0 --iters 20 --warmup 5` from each
build, the order flipping every round so that a slow phase of a busy machine hits both, and
keeps the median time of every node whose name matches REGEX. Prints, per node, both
builds' medians over the rounds and the median (and range) of the rounds' paired B/A
ratios; then the same for the matched nodes' sum and for the profile's wall time.

    python3 scripts/nodes_ab.py 6 2 ../shared/models/resnet50.onnx 'layer4.*conv1' /tmp/old /tmp/new
"""
import collections
import re
import statistics
import sys

from profile_nodes import profile


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    rounds, threads, model, pat, a, b = int(sys.argv[1]), sys.argv[2], sys.argv[3], re.compile(sys.argv[4]), sys.argv[5], sys.argv[6]
    times = {a: collections.defaultdict(list), b: collections.defaultdict(list)}
    for r in range(rounds):
        for binary in ((a, b) if r % 2 == 0 else (b, a)):
            wall, nodes = profile(binary, model, threads)
            nodes = {k: v for k, v in nodes.items() if pat.search(k)}
            times[binary]["(wall)"].append(wall)
            times[binary]["(sum of matched nodes)"].append(sum(nodes.values()))
            for k, v in nodes.items():
                times[binary][k].append(v)
    for k in times[a]:
        xa, xb = times[a][k], times[b].get(k, [])
        pairs = [y / x for x, y in zip(xa, xb) if x > 0]
        if not pairs:
            continue
        print(f"{k:48} {statistics.median(xa):8.3f} -> {statistics.median(xb):8.3f} ms"
              f"  B/A per round {statistics.median(pairs):.3f} ({min(pairs):.2f}-{max(pairs):.2f})")


if __name__ == "__main__":
    main()
