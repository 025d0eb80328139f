#!/usr/bin/env python3
"""millrace against ONNX Runtime on the same models, shapes and thread count.

For each model, R rounds alternate (the order flips every round so neither side always
runs on a warmer or cooler machine):
  * ONNX Runtime in this process: one InferenceSession per model, created once
    (GraphOptimizationLevel ORT_ENABLE_ALL, ExecutionMode ORT_SEQUENTIAL,
    intra_op_num_threads=T, inter_op_num_threads=1, CPUExecutionProvider), W warm-up runs,
    then N timed runs;
  * millrace: `millrace bench MODEL --threads T --iters N --warmup W --json --shape ...`,
    whose per-run times (samples_ms) are collected.
Warm-up: each side also runs untimed for at least --warmup-s seconds (0.5) per round, so
both are timed in their steady state: ORT's session lives across rounds, but millrace
starts a fresh process each round, and on 2 threads its first ~10 runs after start
measure up to 1.8x slower (SqueezeNet: about 130 ms of them; ORT's first run only).
millrace's warm-up run count is that time over ORT's median so far.
Medians and p90s are over all R*N runs. The ratio is millrace / ORT (lower is better).
"Per round" is each round's own ratio (millrace's median over ORT's median in that round,
the two sides measured seconds apart): their median and range. On a machine whose speed
drifts over minutes, it compares the two at the same speed, where the ratio of the overall
medians can mix a fast phase of one side with a slow phase of the other.
Both sides get the same input shapes: a symbolic first dimension is --batch, another
symbolic dimension is --seq (BERT's sequence length), and millrace is told the shapes
explicitly with --shape. Inputs are random (float: standard normal; integer inputs named
*mask*: ones; other integers: uniform in [0, 100)); values do not change the work done.

GFLOP/s is the model's FLOPs (millrace's cost model, a multiply-add = 2) over millrace's
median time, compared with `millrace peak --json` run once at the same thread count.

CPU stolen: on Linux, the share of all CPU time that /proc/stat counts as steal (the
hypervisor running another guest while this one's CPUs wanted to run) over each model's
rounds, and per round in the log. On a shared VM this is what makes runs minutes apart
differ (45% during one 2-thread GEMM benchmark on the AVX2 guest); both sides are slowed
by it, but not necessarily alike, so ratios from rounds with much steal are weaker.

Core RTT (with 2 or more threads): before each round, `millrace peak --round-trip-only`
times a cache line passed back and forth between two spinning threads; the table gives
the rounds' median and range. It tells how far apart two of the machine's CPUs are at
that moment: on the 2-vCPU development guest it read 41-766 ns over one session,
changing from minute to minute. It is a snapshot before the round, not a measurement
during it (BENCHMARKS.md, thirtieth session).

--by-op also runs `millrace bench --by-op` once per model and reports the convolutions'
share of the time and their GFLOP/s against the peak.

--memory measures the peak resident memory of a child process that loads the model and
runs it 20 times: for ORT a child Python process (and, reported separately, a child that
only imports numpy and onnxruntime: the interpreter baseline), for millrace the
`millrace bench` process itself. On Linux each child reports its own VmHWM (ru_maxrss
from os.wait4 would include this parent's RSS, which Linux carries over fork and exec);
elsewhere ru_maxrss from os.wait4 is used.

--load compares model load + compile (millrace load_ms + compile_ms, median of the rounds)
with ORT InferenceSession creation, two ways (median of 3 each): in this process, where
ORT has already created and run a session (warm: its one-time setup done, freed memory to
reuse), and in a fresh child process that has imported onnxruntime and numpy (cold, the
constructor alone timed). millrace's figure is always cold: each round is a fresh process.
The ratio in the table is against the warm figure, the harder bound.

Needs only numpy and onnxruntime (pip install numpy onnxruntime).

    python3 scripts/bench_vs_ort.py --models resnet50,mobilenet_v2 --threads 2 --markdown
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # pragma: no cover
    sys.exit(f"{e}: install them with `pip install numpy onnxruntime`")

BUILTINS = ["resnet50", "mobilenet_v2", "googlenet", "vgg16", "bert"]


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    rank = p / 100 * (len(xs) - 1)
    lo, hi = int(rank), min(int(rank) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def resolve_model(name, millrace, tmpdir):
    """A path to an .onnx file: `name` itself, or a built-in written by `millrace zoo`."""
    if os.path.exists(name):
        return name, os.path.splitext(os.path.basename(name))[0]
    if name in BUILTINS:
        path = os.path.join(tmpdir, name + ".onnx")
        if not os.path.exists(path):
            subprocess.run(
                [millrace, "zoo", name, "-o", path], check=True, capture_output=True
            )
        return path, name
    sys.exit(f"`{name}` is neither a file nor a built-in ({', '.join(BUILTINS)})")


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def input_shapes(sess, batch, seq):
    """name -> concrete shape: symbolic dim 0 -> batch, other symbolic dims -> seq."""
    shapes = {}
    for i in sess.get_inputs():
        dims = []
        for k, d in enumerate(i.shape):
            if isinstance(d, int) and d >= 0:
                dims.append(d)
            else:
                dims.append(batch if k == 0 else seq)
        shapes[i.name] = dims
    return shapes


def random_feeds(sess, shapes, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        dt = NP_TYPES.get(i.type)
        if dt is None:
            sys.exit(f"input {i.name}: unsupported type {i.type}")
        shape = shapes[i.name]
        if np.issubdtype(dt, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(dt)
        elif dt == np.bool_:
            feeds[i.name] = rng.integers(0, 2, shape).astype(dt)
        elif "mask" in i.name.lower():
            feeds[i.name] = np.ones(shape, dt)
        else:
            feeds[i.name] = rng.integers(0, 100, shape).astype(dt)
    return feeds


def shape_args(shapes):
    out = []
    for n, s in shapes.items():
        out += ["--shape", f"{n}=" + "x".join(str(d) for d in s)]
    return out


def time_ort(sess, feeds, iters, warmup, warmup_s=0.0):
    t0 = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - t0 < warmup_s:
        sess.run(None, feeds)
        done += 1
    samples = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        samples.append((time.perf_counter() - t) * 1e3)
    return samples


def core_rtt_ns(millrace):
    """The core-to-core round trip `millrace peak --round-trip-only` measures now, in ns,
    or None (one CPU, an older binary, or a failure): how far apart two cores are now,
    which on a guest changes from minute to minute."""
    try:
        p = subprocess.run([millrace, "peak", "--round-trip-only", "--json"],
                           capture_output=True, text=True, timeout=30)
        return json.loads(p.stdout).get("core_round_trip_ns") if p.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def run_millrace_bench(millrace, path, shapes, threads, iters, warmup, extra=()):
    cmd = [millrace, "bench", path, "--threads", str(threads), "--iters", str(iters),
           "--warmup", str(warmup), "--json", *shape_args(shapes), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr}")
    return json.loads(p.stdout)


VMHWM = r"""
def _vmhwm_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
"""


def peak_rss_mb(cmd, from_json=None):
    """Runs cmd; returns its peak RSS in MiB.

    On Linux this is the child's own VmHWM (it prints it: `from_json(stdout)`). wait4's
    ru_maxrss is not used there: Linux carries the parent's peak over fork and exec, so
    every child would report at least this (numpy + onnxruntime + models) process's RSS.
    Elsewhere, ru_maxrss from os.wait4.
    """
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}\n{err.decode()}")
    own = from_json(json.loads(out)) if from_json else None
    if own is not None:
        return own
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    kb = ru.ru_maxrss / 1024 if sys.platform == "darwin" else ru.ru_maxrss
    return kb / 1024


ORT_CHILD = r"""
import sys, numpy as np, onnxruntime as ort, json
path, threads, runs, shapes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
T = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
     "tensor(double)": np.float64, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
feeds = {}
for i in s.get_inputs():
    dt = T[i.type]
    feeds[i.name] = (np.ones(shapes[i.name], dt) if "mask" in i.name.lower()
                     else np.zeros(shapes[i.name], dt) + (0.5 if np.issubdtype(dt, np.floating) else 1))
for _ in range(runs):
    s.run(None, feeds)
""" + VMHWM + "print(json.dumps({'vmhwm_mb': _vmhwm_mb()}))"

ORT_SESSION_CHILD = r"""
import sys, time, json, onnxruntime as ort
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.intra_op_num_threads = int(sys.argv[2])
so.inter_op_num_threads = 1
t = time.perf_counter()
ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
print(json.dumps({"ms": (time.perf_counter() - t) * 1e3}))
"""

BASELINE_CHILD = "import numpy, onnxruntime, json\n" + VMHWM + \
    "print(json.dumps({'vmhwm_mb': _vmhwm_mb()}))"


def cpu_ticks():
    """(steal, total) clock ticks over all CPUs from /proc/stat, or None where there is none.

    Steal is time the hypervisor ran something else while this guest's CPUs wanted to run:
    on a shared VM it is what makes runs minutes apart differ, so each round reports it.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    # already counted in user.
    total = sum(fields[:8])
    return (fields[7] if len(fields) > 7 else 0, total)


def steal_share(before, after):
    """Percent of all CPU time stolen between two `cpu_ticks()` readings, or None."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def machine():
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            v = v.strip()
            if k == "Model name":
                info["cpu"] = v
            elif k == "Flags":
                info["avx512f"] = "avx512f" in v.split()
                info["avx2"] = "avx2" in v.split()
            elif k == "L3 cache":
                info["l3"] = v
    except OSError:
        pass
    return info


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2,googlenet,bert",
                    help="comma-separated built-in names or .onnx paths")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128,
                    help="value of symbolic dims other than the first (BERT's sequence)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20, help="timed runs per round and side")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per round and side")
    ap.add_argument("--warmup-s", type=float, default=0.5,
                    help="at least this many seconds of untimed runs per round and side")
    ap.add_argument("--millrace", default="target/release/millrace")
    ap.add_argument("--peak-gflops", type=float,
                    help="skip `millrace peak` and use this peak at --threads")
    ap.add_argument("--by-op", action="store_true",
                    help="also profile millrace per op type: Conv share and GFLOP/s")
    ap.add_argument("--memory", action="store_true", help="peak RSS of load + 20 runs")
    ap.add_argument("--load", action="store_true", help="load+compile vs session creation")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--json", metavar="FILE", help="write all results as JSON")
    args = ap.parse_args()
    if not os.path.exists(args.millrace):
        sys.exit(f"{args.millrace} not found: build it with "
                 "`cargo build --release -p millrace-cli` or pass --millrace")
    T = args.threads
    log = lambda *a: print(*a, file=sys.stderr, flush=True)

    if args.peak_gflops:
        peak = {"gflops": args.peak_gflops, "threads": T, "given": True}
    else:
        log(f"measuring peak FMA rate on {T} thread(s) ...")
        p = subprocess.run([args.millrace, "peak", "--json", "--threads", str(T)],
                           capture_output=True, text=True, check=True)
        peak = json.loads(p.stdout)
    results = []
    tmpdir = tempfile.mkdtemp(prefix="bench_vs_ort-")
    for name in [m for m in args.models.split(",") if m]:
        path, label = resolve_model(name, args.millrace, tmpdir)
        log(f"{label}: ORT session ...")
        sess = ort_session(path, T)
        shapes = input_shapes(sess, args.batch, args.seq)
        feeds = random_feeds(sess, shapes)
        ort_s, mr_s, mr_meta = [], [], []
        first_ticks = cpu_ticks()
        round_ratios, rtts = [], []
        for r in range(args.rounds):
            round_ticks = cpu_ticks()
            rtt = core_rtt_ns(args.millrace) if T > 1 else None
            o0, m0 = len(ort_s), len(mr_s)
            order = ["ort", "millrace"] if r % 2 == 0 else ["millrace", "ort"]
            for side in order:
                if side == "ort":
                    ort_s += time_ort(sess, feeds, args.iters, args.warmup, args.warmup_s)
                else:
                    per_run = percentile(ort_s, 50) if ort_s else None
                    if per_run is None:
                        # millrace first in this model's first round: time ORT's runs.
                        per_run = statistics.median(time_ort(sess, feeds, 3, 1))
                    warm = max(args.warmup, math.ceil(args.warmup_s * 1e3 / max(per_run, 1e-3)))
                    j = run_millrace_bench(args.millrace, path, shapes, T, args.iters, warm)
                    mr_s += j["samples_ms"]
                    mr_meta.append(j)
            st = steal_share(round_ticks, cpu_ticks())
            ro, rm = percentile(ort_s[o0:], 50), percentile(mr_s[m0:], 50)
            round_ratios.append(rm / ro)
            if rtt is not None:
                rtts.append(rtt)
            log(f"  round {r + 1}/{args.rounds}: ORT p50 {ro:.2f} ms, millrace p50 {rm:.2f} ms "
                f"(ratio {rm / ro:.2f}; so far {percentile(ort_s, 50):.2f} / "
                f"{percentile(mr_s, 50):.2f} ms)"
                + (f", {st:.0f}% of CPU time stolen" if st is not None else "")
                + (f", core round trip {rtt:.0f} ns" if rtt is not None else ""))
        gflop = mr_meta[0]["gflop"]
        res = {
            "model": label,
            "path": path,
            "shapes": shapes,
            "threads": T,
            "batch": args.batch,
            "ort_p50_ms": percentile(ort_s, 50),
            "ort_p90_ms": percentile(ort_s, 90),
            "millrace_p50_ms": percentile(mr_s, 50),
            "millrace_p90_ms": percentile(mr_s, 90),
            "gflop": gflop,
            "steal_pct": steal_share(first_ticks, cpu_ticks()),
        }
        res["ratio"] = res["millrace_p50_ms"] / res["ort_p50_ms"]
        res["round_ratios"] = round_ratios
        res["core_rtt_ns"] = rtts
        res["paired_ratio"] = statistics.median(round_ratios)
        res["millrace_gflops"] = gflop / (res["millrace_p50_ms"] / 1e3)
        res["ort_gflops"] = gflop / (res["ort_p50_ms"] / 1e3)
        res["millrace_pct_peak"] = 100 * res["millrace_gflops"] / peak["gflops"]
        res["millrace_per_s"] = args.batch * 1e3 / res["millrace_p50_ms"]
        res["ort_per_s"] = args.batch * 1e3 / res["ort_p50_ms"]
        if args.by_op:
            log(f"{label}: millrace --by-op profile ...")
            j = run_millrace_bench(args.millrace, path, shapes, T, args.iters, args.warmup,
                                   ["--by-op"])
            res["by_op"] = j["by_op"]
            conv = [row for row in j["by_op"] if row["op"] in ("Conv", "FusedConv")]
            if conv:
                ms = sum(row["ms"] for row in conv)
                gf = sum(row["gflop"] for row in conv)
                res["conv_share"] = ms / j["profile_total_ms"] if j["profile_total_ms"] else 0
                res["conv_gflops"] = gf / (ms / 1e3) if ms else 0
                res["conv_pct_peak"] = 100 * res["conv_gflops"] / peak["gflops"]
        if args.load:
            t_ort = []
            for _ in range(3):
                t = time.perf_counter()
                ort_session(path, T)
                t_ort.append((time.perf_counter() - t) * 1e3)
            res["ort_session_ms"] = statistics.median(t_ort)
            cold = []
            for _ in range(3):
                p = subprocess.run([sys.executable, "-c", ORT_SESSION_CHILD, path, str(T)],
                                   capture_output=True, text=True, check=True)
                cold.append(json.loads(p.stdout)["ms"])
            res["ort_session_cold_ms"] = statistics.median(cold)
            res["millrace_load_ms"] = statistics.median(m["load_ms"] for m in mr_meta)
            res["millrace_compile_ms"] = statistics.median(m["compile_ms"] for m in mr_meta)
        if args.memory:
            log(f"{label}: peak RSS ...")
            res["ort_rss_mb"] = peak_rss_mb(
                [sys.executable, "-c", ORT_CHILD, path, str(T), "20", json.dumps(shapes)],
                lambda j: j["vmhwm_mb"])
            res["ort_import_rss_mb"] = peak_rss_mb([sys.executable, "-c", BASELINE_CHILD],
                                                   lambda j: j["vmhwm_mb"])
            res["millrace_rss_mb"] = peak_rss_mb(
                [args.millrace, "bench", path, "--threads", str(T), "--iters", "20",
                 "--warmup", "0", "--json", *shape_args(shapes)],
                lambda j: j.get("peak_rss_mb"))
        del sess
        results.append(res)

    report(args, peak, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "peak": peak, "args": vars(args),
                       "onnxruntime": ort.__version__, "results": results}, f, indent=1)


def fmt_steal(r):
    return "-" if r.get("steal_pct") is None else f"{r['steal_pct']:.0f}%"


def fmt_rtt(r):
    """The median core-to-core round trip of the rounds and its range, or "-"."""
    t = r.get("core_rtt_ns") or []
    if not t:
        return "-"
    return f"{statistics.median(t):.0f} ({min(t):.0f}-{max(t):.0f})"


def fmt_rounds(r):
    """The median of the per-round ratios and their range."""
    rr = r["round_ratios"]
    return f"{r['paired_ratio']:.2f} ({min(rr):.2f}-{max(rr):.2f})"


def report(args, peak, results):
    m = machine()
    T = args.threads
    head = (f"{time.strftime('%Y-%m-%d %H:%M %Z')}, commit {git_commit()}, "
            f"onnxruntime {ort.__version__}, {m['cpu']}, {m['cores']} logical CPUs, "
            f"{'given' if peak.get('given') else 'measured'} peak {peak['gflops']:.0f} GFLOP/s "
            f"fp32 FMA on {T} thread(s); "
            f"batch {args.batch}, {T} thread(s), {args.rounds} rounds x {args.iters} runs")
    if args.markdown:
        print(head + "\n")
        cols = ["model", "ORT p50 ms", "millrace p50 ms", "millrace / ORT",
                "per round (median, range)", "ORT p90 ms", "millrace p90 ms",
                "millrace GFLOP/s", "% of peak", "CPU stolen", "core RTT ns"]
        if args.batch > 1:
            cols += ["ORT /s", "millrace /s"]
        if args.by_op:
            cols += ["Conv share", "Conv GFLOP/s", "Conv % of peak"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" for _ in cols) + "|")
        for r in results:
            row = [r["model"], f"{r['ort_p50_ms']:.2f}", f"{r['millrace_p50_ms']:.2f}",
                   f"**{r['ratio']:.2f}**", fmt_rounds(r), f"{r['ort_p90_ms']:.2f}",
                   f"{r['millrace_p90_ms']:.2f}", f"{r['millrace_gflops']:.1f}",
                   f"{r['millrace_pct_peak']:.0f}%", fmt_steal(r), fmt_rtt(r)]
            if args.batch > 1:
                row += [f"{r['ort_per_s']:.1f}", f"{r['millrace_per_s']:.1f}"]
            if args.by_op:
                if "conv_gflops" in r:
                    row += [f"{100 * r['conv_share']:.0f}%", f"{r['conv_gflops']:.1f}",
                            f"{r['conv_pct_peak']:.0f}%"]
                else:
                    row += ["-", "-", "-"]
            print("| " + " | ".join(row) + " |")
        if args.load:
            print("\n| model | ORT session creation ms (warm) | ORT (cold process) "
                  "| millrace load ms | millrace compile ms | millrace load+compile ms "
                  "| vs ORT warm |")
            print("|---|---|---|---|---|---|---|")
            for r in results:
                total = r['millrace_load_ms'] + r['millrace_compile_ms']
                print(f"| {r['model']} | {r['ort_session_ms']:.1f} "
                      f"| {r['ort_session_cold_ms']:.1f} | {r['millrace_load_ms']:.1f} "
                      f"| {r['millrace_compile_ms']:.1f} | {total:.1f} "
                      f"| {total / r['ort_session_ms']:.2f}x |")
        if args.memory:
            print("\n| model | ORT process peak RSS MiB | python+numpy+onnxruntime import only "
                  "| ORT minus import | millrace process peak RSS MiB |")
            print("|---|---|---|---|---|")
            for r in results:
                print(f"| {r['model']} | {r['ort_rss_mb']:.0f} | {r['ort_import_rss_mb']:.0f} "
                      f"| {r['ort_rss_mb'] - r['ort_import_rss_mb']:.0f} "
                      f"| {r['millrace_rss_mb']:.0f} |")
        return
    print(head)
    for r in results:
        print(f"{r['model']:<16} ORT p50 {r['ort_p50_ms']:8.2f} ms (p90 {r['ort_p90_ms']:.2f})  "
              f"millrace p50 {r['millrace_p50_ms']:8.2f} ms (p90 {r['millrace_p90_ms']:.2f})  "
              f"ratio {r['ratio']:.2f} (per round {fmt_rounds(r)})  "
              f"{r['millrace_gflops']:.1f} GFLOP/s "
              f"({r['millrace_pct_peak']:.0f}% of peak), {fmt_steal(r)} of CPU time stolen, "
              f"core round trip {fmt_rtt(r)} ns")
        if args.batch > 1:
            print(f"{'':<16} throughput: ORT {r['ort_per_s']:.1f}/s, "
                  f"millrace {r['millrace_per_s']:.1f}/s")
        if "conv_gflops" in r:
            print(f"{'':<16} Conv: {100 * r['conv_share']:.0f}% of the time, "
                  f"{r['conv_gflops']:.1f} GFLOP/s ({r['conv_pct_peak']:.0f}% of peak)")
        if args.load:
            print(f"{'':<16} ORT session creation {r['ort_session_ms']:.1f} ms "
                  f"(cold process {r['ort_session_cold_ms']:.1f} ms); millrace load "
                  f"{r['millrace_load_ms']:.1f} ms + compile {r['millrace_compile_ms']:.1f} ms")
        if args.memory:
            print(f"{'':<16} peak RSS: ORT process {r['ort_rss_mb']:.0f} MiB (import alone "
                  f"{r['ort_import_rss_mb']:.0f} MiB), millrace process "
                  f"{r['millrace_rss_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
