#!/usr/bin/env python3
"""ONNX Runtime's own per-node times for one model, to set beside `millrace profile`.

Runs the model in ORT (graph optimizations ALL, sequential execution, T intra-op threads,
the same session options as scripts/bench_vs_ort.py) for a warm-up second, then N runs with
ORT's profiler on, and prints each node's median kernel time, slowest first, and the sum per
op type. ORT names a fused node after its last output (a Conv fused with its Relu is
`.../relu/Relu_output_0_nchwc`), so match nodes to millrace's by layer.

    python3 scripts/ort_profile.py ../shared/models/resnet50.onnx --threads 2
    target/release/millrace profile ../shared/models/resnet50.onnx --threads 2 --top 0

Symbolic input dimensions are set to 1 unless given: --dim batch=1 --dim seq=128;
--batch N binds a symbolic first dimension of every input to N (as millrace's --batch).
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for a symbolic input dimension")
    ap.add_argument("--top", type=int, default=0, help="print this many nodes (0: all)")
    ap.add_argument("--batch", type=int, default=None, help="size for a symbolic first dimension")
    a = ap.parse_args()
    dims = {}
    for d in a.dim:
        k, _, v = d.partition("=")
        dims[k] = int(v)

    def options(profile_dir=None):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        if profile_dir:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(profile_dir, "ort")
        return so

    with tempfile.TemporaryDirectory() as tmp:
        s = ort.InferenceSession(a.model, options(tmp), providers=["CPUExecutionProvider"])
        feeds = {}
        for i in s.get_inputs():
            shape = [d if isinstance(d, int) else dims.get(d, 1) for d in i.shape]
            if a.batch is not None and i.shape and not isinstance(i.shape[0], int):
                shape[0] = a.batch
            if "int" in i.type:
                feeds[i.name] = np.zeros(shape, dtype=np.int64)
            else:
                feeds[i.name] = np.random.rand(*shape).astype(np.float32)
        t = time.time()
        while time.time() - t < a.warmup_s:
            s.run(None, feeds)
        for _ in range(a.runs):
            s.run(None, feeds)
        with open(s.end_profiling()) as f:
            events = json.load(f)
    per_node = collections.defaultdict(list)
    op_of = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            per_node[name].append(e["dur"] / 1000.0)
            op_of[name] = e.get("args", {}).get("op_name", "?")
    # The warm-up runs are profiled too: keep each node's last `runs` samples.
    rows = sorted(
        ((statistics.median(v[-a.runs:]), n) for n, v in per_node.items()), reverse=True
    )
    total = sum(ms for ms, _ in rows)
    print(f"{a.model}: ORT {ort.__version__}, {a.threads} thread(s), median of {a.runs} profiled runs")
    print(f"sum of node medians: {total:.3f} ms over {len(rows)} nodes")
    print(f"{'ms':>8}  {'op':20} node")
    for ms, n in rows[: a.top or None]:
        print(f"{ms:8.3f}  {op_of[n]:20} {n}")
    by_op = collections.defaultdict(float)
    for ms, n in rows:
        by_op[op_of[n]] += ms
    print("\nper op type:")
    for op, ms in sorted(by_op.items(), key=lambda x: -x[1]):
        print(f"{ms:8.3f}  {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
