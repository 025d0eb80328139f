#!/usr/bin/env python3
"""ONNX Runtime's memory for one model, as `millrace plan --ort` compares against.

Prints one JSON object with, over the Python + onnxruntime import baseline: the resident
MiB after creating the session (weights, prepacked copies, graph) and the peak resident
MiB over session creation and one run (Linux VmRSS / VmHWM). The peak is the figure to
compare with millrace's process peak: ORT reuses heap pages freed during session creation
for its run-time arena, so a "run only" delta would understate it. Inputs are random with symbolic dims set to 1
unless given as NAME=DxD... arguments.

usage: ort_memory.py MODEL.onnx THREADS [NAME=DxDx.. ...]
"""
import json
import sys


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path, threads = sys.argv[1], int(sys.argv[2])
    shapes = {}
    for a in sys.argv[3:]:
        n, d = a.split("=", 1)
        shapes[n] = [int(x) for x in d.replace(",", "x").split("x") if x]
    import numpy as np
    import onnxruntime as ort

    base = status("VmHWM")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {}
    rng = np.random.default_rng(0)
    types = {"tensor(float)": np.float32, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(double)": np.float64,
             "tensor(bool)": np.bool_}
    for i in sess.get_inputs():
        shape = shapes.get(i.name) or [d if isinstance(d, int) else 1 for d in i.shape]
        dt = types.get(i.type, np.float32)
        if dt in (np.int64, np.int32):
            feeds[i.name] = np.ones(shape, dtype=dt)
        elif dt is np.bool_:
            feeds[i.name] = np.ones(shape, dtype=dt)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(dt)
    session = status("VmRSS")
    sess.run(None, feeds)
    peak = status("VmHWM")
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "baseline_mib": base,
        "session_mib": session - base,
        "peak_mib": peak - base,
    }))


if __name__ == "__main__":
    main()
