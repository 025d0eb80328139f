#!/usr/bin/env python3
"""Single-layer ONNX models of ResNet-50's or SqueezeNet 1.1's convolutions (Conv + bias
[+ residual Add] + Relu [+ the MaxPool or GlobalAveragePool that follows in the network],
random weights), to compare one layer's kernel with ONNX Runtime's outside a model:

    python3 scripts/layer_models.py /tmp/layers [resnet50 | squeezenet]
    python3 scripts/bench_vs_ort.py --models $(ls /tmp/layers/*.onnx | paste -sd,) \
        --threads 2 --rounds 5 --iters 50 --markdown

ResNet-50 (the default): `c3x3_C_S` (C -> C channels, 3x3, S x S plane, pad 1),
`c1_CIN_COUT_S` (1x1; the ones that end a ResNet block take a residual input `r`).
SqueezeNet: `sq_conv0` (first layer, `_pool` with its max pool), `fireN_e3` / `fireN_e1` /
`fireN_sq` (expand 3x3, expand 1x1, squeeze), `sq_cls` (classifier + global average
pool). ORT's time includes its reorders to and from its blocked layout at the model's
edges, which it pays once per layer here but once per run inside the network.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def conv(out_dir, name, cin, cout, hw, k, s=1, res=False, p=None, pool=False, gap=False):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    p = k // 2 if p is None else p
    ho = (hw + 2 * p - k) // s + 1
    nodes = [h.make_node("Conv", ["x", "W", "B"], ["y0"], kernel_shape=[k, k], pads=[p] * 4, strides=[s, s])]
    inputs = [h.make_tensor_value_info("x", T.FLOAT, [1, cin, hw, hw])]
    last = "y0"
    if res:
        inputs.append(h.make_tensor_value_info("r", T.FLOAT, [1, cout, ho, ho]))
        nodes.append(h.make_node("Add", ["y0", "r"], ["y1"]))
        last = "y1"
    nodes.append(h.make_node("Relu", [last], ["y"]))
    last, shape = "y", [1, cout, ho, ho]
    if pool:
        # 3x3 stride 2, ceil_mode, as SqueezeNet's pools.
        nodes.append(h.make_node("MaxPool", [last], ["yp"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
        last, shape = "yp", [1, cout, -(-(ho - 3) // 2) + 1, -(-(ho - 3) // 2) + 1]
    if gap:
        nodes.append(h.make_node("GlobalAveragePool", [last], ["yg"]))
        last, shape = "yg", [1, cout, 1, 1]
    g = h.make_graph(
        nodes, name, inputs, [h.make_tensor_value_info(last, T.FLOAT, shape)],
        [nh.from_array(w, "W"), nh.from_array(b, "B")],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, os.path.join(out_dir, f"{name}.onnx"))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "layers"
    net = sys.argv[2] if len(sys.argv) > 2 else "resnet50"
    os.makedirs(out_dir, exist_ok=True)
    if net == "squeezenet":
        conv(out_dir, "sq_conv0", 3, 64, 224, 3, s=2, p=0)
        conv(out_dir, "sq_conv0_pool", 3, 64, 224, 3, s=2, p=0, pool=True)
        conv(out_dir, "fire3_e1", 16, 64, 55, 1)
        conv(out_dir, "fire3_e3", 16, 64, 55, 3)
        conv(out_dir, "fire4_sq", 128, 16, 55, 1)
        conv(out_dir, "fire6_e3", 32, 128, 27, 3)
        conv(out_dir, "fire9_e3", 48, 192, 13, 3)
        conv(out_dir, "fire11_e3", 64, 256, 13, 3)
        conv(out_dir, "sq_cls", 512, 1000, 13, 1, gap=True)
        return
    if net != "resnet50":
        sys.exit(__doc__)
    conv(out_dir, "c3x3_64_56", 64, 64, 56, 3)
    conv(out_dir, "c3x3_128_28", 128, 128, 28, 3)
    conv(out_dir, "c3x3_256_14", 256, 256, 14, 3)
    conv(out_dir, "c1_64_256_56", 64, 256, 56, 1, res=True)
    conv(out_dir, "c1_256_1024_14", 256, 1024, 14, 1, res=True)
    conv(out_dir, "c1_1024_256_14", 1024, 256, 14, 1)
    conv(out_dir, "c1_256_64_56", 256, 64, 56, 1)


if __name__ == "__main__":
    main()
