#!/usr/bin/env python3
"""millrace against itself: one switch on and off, measured side by side in one run.

For each model, R rounds alternate the variants (the order flips every round), each a
`millrace bench MODEL --json --iters N --warmup W --threads T [variant flags]`; medians and
p90s are over all R*N per-run samples; the ratio is variant / first variant.

Variants (--compare):
  schedule   --schedule sequential  vs  --schedule parallel  (branch-parallel scheduler)
  pass:NAME  all passes              vs  --no-pass NAME
  idle       --idle sleep           vs  --idle spin  (idle pool threads park or poll)

    python3 scripts/bench_modes.py --models googlenet --compare schedule --threads 2 --markdown
    python3 scripts/bench_modes.py --models googlenet --compare pass:merge-sibling-convs

Models are paths (a name that is a file in ../shared/models, e.g. `googlenet`, is taken
from there) or built-ins. Streaming (`millrace bench --stream`) measures its own
one-after-another baseline in the same process; see BENCHMARKS.md for its command.
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


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def variants(compare):
    if compare == "schedule":
        return [("sequential", ["--schedule", "sequential"]),
                ("parallel", ["--schedule", "parallel"])]
    if compare == "idle":
        return [("sleep", ["--idle", "sleep"]), ("spin", ["--idle", "spin"])]
    if compare.startswith("pass:"):
        name = compare.split(":", 1)[1]
        return [("all passes", []), (f"--no-pass {name}", ["--no-pass", name])]
    sys.exit(f"unknown --compare {compare!r}: schedule, idle or pass:NAME")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="googlenet")
    ap.add_argument("--compare", default="schedule")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--millrace", default=os.path.join(HERE, "..", "target", "release", "millrace"))
    ap.add_argument("--extra", default="", help="more flags for every millrace run, e.g. '--shape x=1x128'")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    vs = variants(a.compare)
    rows = []
    for m in a.models.split(","):
        samples = {label: [] for label, _ in vs}
        for r in range(a.rounds):
            order = vs if r % 2 == 0 else list(reversed(vs))
            for label, flags in order:
                cmd = [a.millrace, "bench", model_path(m), "--json", "--iters", str(a.iters),
                       "--warmup", str(a.warmup), "--threads", str(a.threads)] + flags + a.extra.split()
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                samples[label] += json.loads(out)["samples_ms"]
        base = statistics.median(samples[vs[0][0]])
        for label, _ in vs:
            med = statistics.median(samples[label])
            rows.append((m, label, med, percentile(samples[label], 90), med / base, len(samples[label])))
    if a.markdown:
        print(f"| model | variant ({a.threads} threads) | median ms | p90 ms | ratio | runs |")
        print("|---|---|---|---|---|---|")
        for m, label, med, p90, ratio, n in rows:
            print(f"| {m} | {label} | {med:.2f} | {p90:.2f} | {ratio:.3f} | {n} |")
    else:
        for m, label, med, p90, ratio, n in rows:
            print(f"{m:<16} {label:<28} median {med:8.3f} ms  p90 {p90:8.3f} ms  ratio {ratio:.3f}  ({n} runs)")


if __name__ == "__main__":
    main()
