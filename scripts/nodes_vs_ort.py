#!/usr/bin/env python3
"""Per-layer times of millrace and ONNX Runtime on one model, the two alternating.

Each round runs `BIN profile MODEL --threads T --top 0 --iters 20 --warmup 5`, then
`scripts/ort_profile.py MODEL --threads T --runs 20`, so that a slow phase of a busy
machine hits both, and matches their nodes by layer: ORT names a fused node after its
last output (`.../conv.1/conv.1.2/Clip_output_0_nchwc`, `.../layer3.1/relu/Relu_output_0`),
millrace after its first node (`.../conv.1/conv.1.0/Conv`, `.../layer3.1/conv1/Conv`).
The layer keys understood: torchvision's MobileNetV2 (`features.N/conv/conv.K`,
`features.N`, also SqueezeNet's), GoogLeNet (`inception4a` whole, `conv2`, `maxpool3`), ResNets (`layerX.Y/conv1..3`, `downsample`; ORT's `relu`, `relu_1` are
conv1, conv2) and the classifier (`classifier`, `fc`). Prints both sums of all nodes and,
per layer, both medians and the median of the rounds' paired ratios, largest loss first.

    python3 scripts/nodes_vs_ort.py 5 2 ../shared/models/mobilenet_v2.onnx target/release/millrace
    python3 scripts/nodes_vs_ort.py 3 2 ../shared/models/resnet50.onnx target/release/millrace --batch 8
"""
import collections
import os
import re
import statistics
import subprocess
import sys

from profile_nodes import profile

HERE = os.path.dirname(os.path.abspath(__file__))


def key(name):
    m = re.search(r"features\.(\d+)/conv/conv\.(\d)", name)
    if m:
        return f"features.{m.group(1)}.conv.{m.group(2)}"
    m = re.search(r"features\.(\d+)/", name)
    if m:
        return f"features.{m.group(1)}"
    m = re.search(r"(layer\d\.\d+)/(conv\d|downsample|relu_\d|relu)/", name)
    if m:
        k = {"relu": "conv1", "relu_1": "conv2", "relu_2": "conv3"}.get(m.group(2), m.group(2))
        return f"{m.group(1)}.{k}"
    # A GoogLeNet module as a whole: millrace merges its branches' first 1x1 layers into
    # one node, named after the first.
    m = re.search(r"(inception\d\w)/", name)
    if m:
        return m.group(1)
    m = re.match(r"/(conv\d|maxpool\d)/", name)
    if m:
        return m.group(1)
    if "classifier" in name or "/fc/" in name:
        return "classifier"
    return None


def ours(binary, model, threads, extra):
    _, nodes = profile(binary, model, threads, extra)
    per = collections.defaultdict(float)
    for name, ms in nodes.items():
        k = key(name)
        if k:
            per[k] += ms
    return sum(nodes.values()), per


def theirs(model, threads, extra):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "ort_profile.py"), model, "--threads", threads, "--runs", "20"] + extra,
        capture_output=True, text=True, check=True,
    ).stdout
    per, total = collections.defaultdict(float), 0.0
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and re.fullmatch(r"[\d.]+", f[0]) and "/" in f[2]:
            total += float(f[0])
            k = key(f[2])
            if k:
                per[k] += float(f[0])
    return total, per


def main():
    if len(sys.argv) not in (5, 7) or (len(sys.argv) == 7 and sys.argv[5] != "--batch"):
        sys.exit(__doc__)
    rounds, threads, model, binary = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    extra = sys.argv[5:]
    a, b = collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(rounds):
        for side, (total, per) in ((a, ours(binary, model, threads, extra)), (b, theirs(model, threads, extra))):
            side["(sum of all nodes)"].append(total)
            for k, v in per.items():
                side[k].append(v)
    rows = []
    for k in a:
        if len(b.get(k, [])) == len(a[k]):
            ratios = [x / y for x, y in zip(a[k], b[k]) if y > 0]
            ma, mb = statistics.median(a[k]), statistics.median(b[k])
            rows.append((ma - mb, k, ma, mb, statistics.median(ratios) if ratios else float("nan")))
    rows.sort(key=lambda r: (r[1] != "(sum of all nodes)", -r[0]))
    print(f"{'layer':26} {'millrace ms':>11} {'ORT ms':>8} {'diff':>7}  millrace/ORT per round")
    for d, k, ma, mb, r in rows:
        print(f"{k:26} {ma:11.3f} {mb:8.3f} {d:+7.3f}  {r:.2f}")


if __name__ == "__main__":
    main()
