#!/usr/bin/env python3
"""Per-node scaling from 1 to 2 threads (or any two thread counts) of one millrace build.

Each round runs `BIN profile MODEL --threads T --top 0 --iters 20 --warmup 5` at the first
thread count, then at the second, so that a slow phase of a busy machine hits both; prints
both walls, the sum of nodes, and per node both medians over the rounds, their ratio
(the scaling) and the time lost against perfect scaling (`t2 - t1 * T1 / T2`), largest
loss first.

    python3 scripts/threads_scaling.py target/release/millrace ../shared/models/resnet50.onnx 3
    python3 scripts/threads_scaling.py BIN MODEL ROUNDS [TOP] [T1] [T2]
"""
import collections
import statistics
import sys

from profile_nodes import profile


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, model, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    t1 = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    t2 = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    walls = ([], [])
    times = (collections.defaultdict(list), collections.defaultdict(list))
    for _ in range(rounds):
        for side, t in enumerate((t1, t2)):
            wall, nodes = profile(binary, model, t)
            walls[side].append(wall)
            for k, v in nodes.items():
                times[side][k].append(v)
    w1, w2 = statistics.median(walls[0]), statistics.median(walls[1])
    print(f"wall: {t1} thread(s) {w1:.3f} ms, {t2} thread(s) {w2:.3f} ms, scaling {w1 / w2:.3f}")
    rows = []
    for k, v in times[0].items():
        if k not in times[1]:
            continue
        a, b = statistics.median(v), statistics.median(times[1][k])
        rows.append((b - a * t1 / t2, k, a, b))
    rows.sort(reverse=True)
    lost = sum(r[0] for r in rows)
    print(f"sum of nodes: {sum(r[2] for r in rows):.3f} -> {sum(r[3] for r in rows):.3f} ms, "
          f"{lost * 1000:.0f} us lost against perfect scaling")
    for loss, k, a, b in rows[:top]:
        scale = a / b if b else 0.0
        print(f"{k[-48:]:48s} {a:7.3f} -> {b:7.3f} ms  scaling {scale:5.2f}  lost {loss * 1000:6.1f} us")


if __name__ == "__main__":
    main()
