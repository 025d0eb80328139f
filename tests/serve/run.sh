#!/usr/bin/env bash
# Client tests of `millrace serve` with Triton's own Python clients (tritonclient): the .proto
# against tritonclient's descriptors, accuracy
# (ResNet-50 over HTTP binary/JSON and gRPC vs `millrace run` and ONNX Runtime), every bad request,
# SIGTERM under load, and the load test (1,000 requests in flight at once, SqueezeNet 1.1 and
# bert_small, dynamic batching off and on, gRPC and HTTP). Exits non-zero if any step fails;
# prints each step's time and the total. About 2.5 minutes on 2 cores.
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
# A failed install fails the run at once (exit 1) rather than every test one by one.
need() {
    python3 -c "$1" 2>/dev/null && return 0
    echo "installing $2"
    pip install --quiet --break-system-packages "$2" || { echo "could not install $2" >&2; exit 1; }
}
need "import numpy" numpy==2.4.6
need "import tritonclient.http.aio, tritonclient.grpc.aio, grpc" "tritonclient[http,grpc]==2.73.0"
python3 -c "import tritonclient, importlib.metadata as m; print('tritonclient', m.version('tritonclient'))"

failed=()
# Each step runs under `timeout`, which puts itself and everything under it (python, and the
# `millrace serve` it starts) in a process group of its own and, at the limit, kills the whole
# group. If this script stops early (a failure of its own, Ctrl-C, a CI cancel), the trap kills
# the group of the step running then, so no server is left behind.
step_pid=""
cleanup() {
    if [ -n "$step_pid" ]; then
        kill -KILL -- "-$step_pid" 2>/dev/null
        wait "$step_pid" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
t_all=$(now)
times=()
step() {
    local name="$1" limit="$2"
    shift 2
    if [ -n "$only" ] && [ "$only" != "$name" ]; then return; fi
    echo "=== $name"
    local t0 rc
    t0=$(now)
    timeout --signal=KILL "$limit" python3 "$@" &
    step_pid=$!
    wait "$step_pid"
    rc=$?
    step_pid=""
    local dt
    dt=$(since "$t0")
    times+=("$(printf '%-9s %7s s' "$name" "$dt")")
    if [ "$rc" -eq 0 ]; then
        echo "=== $name: passed in $dt s"
    else
        [ "$rc" -eq 137 ] && echo "=== $name: killed at its limit of $limit s"
        echo "=== $name: FAILED (exit $rc) in $dt s"
        failed+=("$name")
    fi
}

step proto 60 "$here/test_proto.py"
step accuracy 900 "$here/test_accuracy.py" --millrace "$bin"
step errors 600 "$here/test_errors.py" --millrace "$bin"
step sigterm 600 "$here/test_sigterm.py" --millrace "$bin"
# Load: 2 models x batching off/on x gRPC/HTTP, each run bounded by --timeout.
load_args=(--millrace "$bin" --requests "$requests" --timeout 120)
[ -n "$json" ] && load_args+=(--json "$json")
step load 1500 "$here/test_load.py" "${load_args[@]}"

echo "--- time per script"
for t in "${times[@]}"; do echo "$t"; done
printf 'total     %7s s\n' "$(since "$t_all")"
if [ ${#failed[@]} -gt 0 ]; then
    echo "serve client tests failed: ${failed[*]}"
    exit 1
fi
echo "serve client tests passed"
