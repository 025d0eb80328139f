#!/usr/bin/env python3
"""Writes one-layer ONNX models of SqueezeNet 1.1's layers (random weights), to time a
layer alone against ONNX Runtime with `scripts/bench_vs_ort.py`:

    python3 scripts/layer_models.py /tmp/layers
    python3 scripts/bench_vs_ort.py --models $(ls /tmp/layers/*.onnx | paste -sd,) --threads 2 --rounds 5 --iters 50

Each model is Conv + Relu on a batch-1 input, some followed by the MaxPool or the
GlobalAveragePool that follows the layer in the network. ORT's time includes its reorders
to and from its blocked layout at the model's edges, which it pays once per layer here but
once per run inside the network.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)


def conv_model(path, cin, hw, cout, k, s, p, pool=False, gap=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32), "W")
    b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), "B")
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
    ]
    last = "r"
    if pool:
        nodes.append(helper.make_node("MaxPool", [last], ["m"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
        last = "m"
    if gap:
        nodes.append(helper.make_node("GlobalAveragePool", [last], ["g"]))
        last = "g"
    y = helper.make_tensor_value_info(last, TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, os.path.basename(path), [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    layers = {
        # name: (cin, size, cout, k, stride, pad, pool, gap)
        "sq_conv0": (3, 224, 64, 3, 2, 0, False, False),
        "sq_conv0_pool": (3, 224, 64, 3, 2, 0, True, False),
        "fire3_e1": (16, 55, 64, 1, 1, 0, False, False),
        "fire3_e3": (16, 55, 64, 3, 1, 1, False, False),
        "fire4_sq": (128, 55, 16, 1, 1, 0, False, False),
        "fire6_e3": (32, 27, 128, 3, 1, 1, False, False),
        "fire9_e3": (48, 13, 192, 3, 1, 1, False, False),
        "fire11_e3": (64, 13, 256, 3, 1, 1, False, False),
        "sq_cls": (512, 13, 1000, 1, 1, 0, False, True),
    }
    for name, (cin, hw, cout, k, s, p, pool, gap) in layers.items():
        conv_model(os.path.join(out, name + ".onnx"), cin, hw, cout, k, s, p, pool, gap)
    print(f"wrote {len(layers)} models to {out}")


if __name__ == "__main__":
    main()
