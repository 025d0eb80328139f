#!/usr/bin/env bash
# Client tests of `millrace serve` with Triton's own Python clients (tritonclient): the .proto
# against tritonclient's descriptors, accuracy
# (ResNet-50 over HTTP binary/JSON and gRPC vs `millrace run` and ONNX Runtime), every bad request,
# SIGTERM under load, and the load test with dynamic batching off and on.
#
# usage: tests/serve/run.sh PATH/TO/millrace [--json LOAD_RESULTS.json] [--requests N] [--only NAME]
#   NAME: proto | accuracy | errors | sigterm | load
# Builds nothing: give it the binary (cargo build --release -p millrace-cli).
# Models come from ../shared/models beside the repository (MILLRACE_MODELS overrides); a test whose
# model is missing says SKIP and passes.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 PATH/TO/millrace [--json OUT] [--requests N] [--only NAME]" >&2
    exit 2
fi
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
json=""
requests=1000
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --json) json="$2"; shift 2 ;;
        --requests) requests="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

# The Python packages, pinned, installed only when missing.
need() { python3 -c "import $1" 2>/dev/null || pip install --quiet --break-system-packages "$2"; }
need numpy numpy==2.4.6
python3 -c "import tritonclient.http.aio, tritonclient.grpc.aio, grpc" 2>/dev/null \
    || pip install --quiet --break-system-packages "tritonclient[http,grpc]==2.73.0"
python3 -c "import tritonclient, importlib.metadata as m; print('tritonclient', m.version('tritonclient'))"

failed=()
step() {
    local name="$1" limit="$2"
    shift 2
    if [ -n "$only" ] && [ "$only" != "$name" ]; then return; fi
    echo "=== $name"
    if timeout --signal=KILL "$limit" python3 "$@"; then
        echo "=== $name: passed"
    else
        echo "=== $name: FAILED"
        failed+=("$name")
    fi
}

step proto 60 "$here/test_proto.py"
step accuracy 900 "$here/test_accuracy.py" --millrace "$bin"
step errors 600 "$here/test_errors.py" --millrace "$bin"
step sigterm 600 "$here/test_sigterm.py" --millrace "$bin"
load_args=(--millrace "$bin" --requests "$requests" --timeout 300)
[ -n "$json" ] && load_args+=(--json "$json")
step load 1800 "$here/test_load.py" "${load_args[@]}"

if [ ${#failed[@]} -gt 0 ]; then
    echo "serve client tests failed: ${failed[*]}"
    exit 1
fi
echo "serve client tests passed"
