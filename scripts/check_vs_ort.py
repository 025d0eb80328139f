#!/usr/bin/env python3
"""millrace's outputs against ONNX Runtime's on random inputs: relative L2 error per output.

For a machine without the test suite (the device machine, which has onnxruntime but no
Rust: carry a release `millrace` binary there). Inputs as scripts/bench_vs_ort.py makes
them: a symbolic first dimension 1, other symbolic dimensions 128; float inputs standard
normal, integer inputs named *mask* ones, other integers uniform in [0, 100).

    python3 scripts/check_vs_ort.py target/release/millrace MODEL.onnx [MODEL.onnx ...] [--batch N]

`--batch N`: the symbolic first dimension is N, and millrace compiles for it (`--batch N`),
so the batch's own kernel choices (Winograd over several images) are the ones checked.

Exits 1 if any output's relative L2 error is above 1e-4 (issue 4's bound) or millrace fails.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def feeds_for(sess, rng, batch=1):
    feeds = {}
    for i in sess.get_inputs():
        shape = [
            d if isinstance(d, int) and d >= 0 else (batch if k == 0 else 128)
            for k, d in enumerate(i.shape)
        ]
        if "float" in i.type:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
        elif "mask" in i.name:
            feeds[i.name] = np.ones(shape, np.int64)
        else:
            feeds[i.name] = rng.integers(0, 100, shape).astype(np.int64)
    return feeds


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    args = sys.argv[1:]
    batch = 1
    if "--batch" in args:
        i = args.index("--batch")
        value = args[i + 1] if i + 1 < len(args) else ""
        if not value.isdigit() or int(value) < 1:
            sys.exit(f"--batch wants a positive whole number, got {value!r}\n{__doc__}")
        batch = int(value)
        del args[i : i + 2]
    if len(args) < 2:
        sys.exit(__doc__)
    millrace, models = args[0], args[1:]
    extra = ["--batch", str(batch)] if batch != 1 else []
    bad = False
    for path in models:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = feeds_for(sess, np.random.default_rng(1), batch)
        ref = sess.run(None, feeds)
        with tempfile.TemporaryDirectory() as d:
            inp, out = os.path.join(d, "in.npz"), os.path.join(d, "out.npz")
            np.savez(inp, **feeds)
            r = subprocess.run(
                [millrace, "run", path, "--inputs", inp, "--outputs", out] + extra,
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                print(f"{path}: millrace failed: {r.stderr.strip()[-2000:]}")
                bad = True
                continue
            got = np.load(out)
            for o, want in zip(sess.get_outputs(), ref):
                if o.name not in got.files:
                    print(f"{os.path.basename(path)} {o.name}: missing from millrace's outputs")
                    bad = True
                    continue
                g = got[o.name].astype(np.float64)
                if g.shape != want.shape:
                    print(f"{os.path.basename(path)} {o.name}: shape {list(g.shape)}, ORT's {list(want.shape)}")
                    bad = True
                    continue
                err = np.linalg.norm(g - want) / max(np.linalg.norm(want), 1e-30)
                bad |= not err <= 1e-4
                print(f"{os.path.basename(path)} {o.name} {list(g.shape)}: relative L2 error {err:.2e}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
