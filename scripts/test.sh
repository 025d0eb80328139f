#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the Python references it needs
# (onnxruntime, numpy), then runs every Rust test in optimized builds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${MILLRACE_PYTHON:-python3}"
if ! "$PY" -c "import numpy, onnxruntime" 2>/dev/null; then
    echo "installing Python test references (numpy, onnxruntime)..."
    "$PY" -m pip install --quiet --disable-pip-version-check numpy onnxruntime
fi
"$PY" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__)"

cargo test --release --workspace "$@"
