#!/usr/bin/env bash
# The Rust test suite built for aarch64 and run under QEMU's user-mode emulator, on an x86-64
# machine: checks that the portable paths and the NEON kernels build, and compute what the
# x86 ones do (the golden tests compare whole models with ONNX Runtime's outputs, the node
# suite with ONNX's). Timings under emulation mean nothing; this is for correctness only.
#
#   ./scripts/test_aarch64.sh                      # every crate's tests (about 40 min on 2 cores)
#   ./scripts/test_aarch64.sh -p millrace-kernels  # arguments go to `cargo test`
#
# Needs (Debian): qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross, and
# `rustup target add aarch64-unknown-linux-gnu`; the script installs what is missing when it
# can (apt-get as root, rustup), and says what to install when it cannot.
# Not part of ./scripts/test.sh (CI runs that one on x86-64, within its time limit).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
    || [ ! -d "$SYSROOT/lib" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # A fresh machine's package lists may be empty or stale.
        apt-get update -q
        apt-get install -y -q qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    else
        echo "needs qemu-aarch64, aarch64-linux-gnu-gcc and $SYSROOT:" >&2
        echo "  apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
        exit 1
    fi
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
if [ "$#" -eq 0 ]; then
    # The CLI's end-to-end tests start the aarch64 `millrace` binary as a child process,
    # which the host kernel runs only with QEMU registered in binfmt_misc: run its unit
    # tests alone unless it is (`/proc/sys/fs/binfmt_misc/qemu-aarch64`).
    if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        set -- --workspace
    else
        echo "no binfmt_misc entry for qemu-aarch64: the CLI's end-to-end tests are left out" >&2
        cargo test --release --target "$TARGET" -p millrace-cli --bins
        set -- --workspace --exclude millrace-cli
    fi
fi
cargo test --release --target "$TARGET" "$@"
