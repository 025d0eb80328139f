#!/usr/bin/env python3
"""Runs a model with ONNX Runtime on an .npz of inputs and writes the outputs as .npz.

Used by the test suite to compare millrace with ONNX Runtime on models that have no
stored reference (the built-in zoo). Usage: ort_reference.py MODEL.onnx IN.npz OUT.npz [THREADS]
"""
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    model, inp, out = sys.argv[1:4]
    threads = int(sys.argv[4]) if len(sys.argv) == 5 else 2
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feeds = dict(np.load(inp))
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(names, feeds)
    np.savez(out, **dict(zip(names, results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
