#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the Python references it needs
# (onnxruntime, numpy), then runs every Rust test in optimized builds (SCALE-Sim, for the NPU's
# cycle model, installs into its own virtual environment), then the serving tests with
# tritonclient (tests/serve/run.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${MILLRACE_PYTHON:-python3}"
if ! "$PY" -c "import numpy, onnxruntime" 2>/dev/null; then
    echo "installing Python test references (numpy, onnxruntime)..."
    "$PY" -m pip install --quiet --disable-pip-version-check numpy onnxruntime
fi
"$PY" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__)"

if ! "$PY" -c "import onnx, sys; sys.exit(onnx.__version__ != '1.22.0')" 2>/dev/null; then
    echo "installing onnx==1.22.0 (the ONNX backend node test suite)..."
    "$PY" -m pip install --quiet --disable-pip-version-check onnx==1.22.0
fi

cargo test --release --workspace "$@"

# The server against Triton's own Python clients (accuracy, bad requests, SIGTERM, load test).
cargo build --release -p millrace-cli
tests/serve/run.sh target/release/millrace
