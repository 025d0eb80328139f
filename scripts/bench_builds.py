#!/usr/bin/env python3
"""Two millrace builds against each other, alternating, on the same models.

For each model, R rounds run `A bench MODEL --json --iters N --warmup W [flags]` and the
same with B, the order flipping every round, so a slow phase of a busy machine hits both;
medians (and 10th percentiles) are over all R*N per-run samples, and the ratio is B / A
(below 1: B is faster). Each round's two medians, taken back to back, also give a paired
ratio: the median of those and how many rounds B won are the least disturbed by slow phases.

    cargo build --release -p millrace-cli && cp target/release/millrace /tmp/mr_new
    git stash && cargo build --release -p millrace-cli && cp target/release/millrace /tmp/mr_old && git stash pop
    python3 scripts/bench_builds.py /tmp/mr_old /tmp/mr_new --models resnet50,googlenet -- --threads 2

Models are paths, or names of files in ../shared/models (`resnet50` is that file when it
exists there, else the built-in). Everything after `--` goes to `millrace bench`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "models"))


def model_path(m):
    p = os.path.join(SHARED, m + ".onnx")
    return p if os.path.exists(p) else m


def samples(binary, model, iters, warmup, flags):
    cmd = [binary, "bench", model, "--json", "--iters", str(iters), "--warmup", str(warmup), *flags]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return json.loads(p.stdout)["samples_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="baseline millrace binary")
    ap.add_argument("b", help="millrace binary to compare")
    ap.add_argument("--models", required=True, help="comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.flags = flags
    for m in [m for m in args.models.split(",") if m]:
        path = model_path(m)
        s = [[], []]
        paired = []
        for r in range(args.rounds):
            got = [None, None]
            for i in ([0, 1] if r % 2 == 0 else [1, 0]):
                got[i] = samples([args.a, args.b][i], path, args.iters, args.warmup, args.flags)
                s[i] += got[i]
            paired.append(statistics.median(got[1]) / statistics.median(got[0]))
        ma, mb = statistics.median(s[0]), statistics.median(s[1])
        # The 10th percentile too: on a machine shared with other VMs, slow phases lift
        # the median of whichever build they hit; the fast tail is the undisturbed speed.
        qa, qb = (statistics.quantiles(v, n=10)[0] for v in s)
        print(f"{m:16s} {' '.join(args.flags):24s} A {ma:9.3f} ms  B {mb:9.3f} ms  B/A {mb / ma:.3f}"
              f"  (p10: A {qa:.3f} B {qb:.3f} B/A {qb / qa:.3f}; rounds' B/A: median {statistics.median(paired):.3f},"
              f" {sum(p < 1 for p in paired)}/{len(paired)} below 1)", flush=True)


if __name__ == "__main__":
    main()
