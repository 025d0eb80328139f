#!/usr/bin/env python3
"""Export torchvision models with random weights to ONNX, as ../shared/models were made.

Legacy TorchScript exporter (dynamo=False), opset 17, input `input` with a symbolic batch
dimension, output `output`; eval mode, so BatchNorm folds into the convolutions. For a
machine that cannot receive the shared files (the device machine: a call carries at most
64 MiB, ResNet-50 alone is 102 MB) but has torch and torchvision.

    python3 scripts/export_torchvision.py OUT_DIR resnet50 googlenet squeezenet1_1

Needs torch and torchvision (onnx too, for the exporter).
"""
import os
import sys

import torch
import torchvision


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for name in sys.argv[2:]:
        ctor = getattr(torchvision.models, name, None)
        if ctor is None:
            sys.exit(f"torchvision.models has no `{name}`")
        kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        model = ctor(weights=None, **kw).eval()
        x = torch.randn(1, 3, 224, 224)
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(
            model,
            x,
            path,
            opset_version=17,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
        print(f"{name}: {path}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
