#!/usr/bin/env python3
"""Runs SCALE-Sim on a convolution topology and writes its per-layer cycle counts.

Used by `crates/npu/tests/scalesim.rs` to check millrace's systolic-array cycle model
(`crates/npu/src/systolic.rs`) against SCALE-Sim; see docs/scalesim.md.

SCALE-Sim 3.0.0 (the version pinned here) calls `int()` on one-element NumPy arrays, which
NumPy 2.x refuses, so it runs in its own virtual environment with NumPy 1.26.4 (created on first
use under --venv; the system's NumPy is left alone). The script re-executes itself inside it.

Input: a SCALE-Sim topology CSV (`Layer name, IFMAP Height, IFMAP Width, Filter Height,
Filter Width, Channels, Num Filter, Strides,`). Layers are split over --jobs processes, each a
separate SCALE-Sim run on its share of the layers (SCALE-Sim simulates layers independently).

Output (--out): CSV `layer,total_cycles,stall_cycles,overall_util_pct,mapping_eff_pct`, one
row per topology layer in input order, where total_cycles is SCALE-Sim's "Total Cycles"
column (compute cycles plus memory stall cycles, counted from 0) of COMPUTE_REPORT.csv.

Exit status: 0 on success, 3 when SCALE-Sim cannot be made available (no venv module, no
network to PyPI...), with the reason on stderr; anything else is an error.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

SCALESIM_VERSION = "3.0.0"
PINNED = [f"scalesim=={SCALESIM_VERSION}", "numpy==1.26.4"]
UNAVAILABLE = 3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--topology", required=True, help="SCALE-Sim conv topology CSV")
    p.add_argument("--out", required=True, help="where to write the per-layer CSV")
    p.add_argument("--rows", type=int, required=True, help="array rows (ArrayHeight)")
    p.add_argument("--cols", type=int, required=True, help="array columns (ArrayWidth)")
    p.add_argument("--dataflow", choices=["os", "ws", "is"], required=True)
    p.add_argument("--ifmap-kb", type=int, default=4096, help="ifmap SRAM, KiB")
    p.add_argument("--filter-kb", type=int, default=2048, help="filter SRAM, KiB")
    p.add_argument("--ofmap-kb", type=int, default=2048, help="ofmap SRAM, KiB")
    p.add_argument(
        "--bandwidth",
        default="CALC",
        help="CALC (SCALE-Sim sizes the DRAM interface so nothing stalls) or a number of "
        "words per cycle (USER mode, stalls counted)",
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel runs")
    p.add_argument("--venv", required=True, help="virtual environment to run SCALE-Sim in")
    return p.parse_args()


def unavailable(msg):
    print(f"scalesim_compare: SCALE-Sim unavailable: {msg}", file=sys.stderr)
    sys.exit(UNAVAILABLE)


def ensure_venv(venv):
    """Returns the venv's python, creating the venv and installing the pins if needed."""
    py = os.path.join(venv, "bin", "python")
    check = f"import scalesim, numpy; assert numpy.__version__ == '{PINNED[1].split('==')[1]}'"
    if os.path.exists(py):
        ok = subprocess.run([py, "-c", check], capture_output=True).returncode == 0
        ver = subprocess.run(
            [py, "-m", "pip", "show", "scalesim"], capture_output=True, text=True
        ).stdout
        if ok and f"Version: {SCALESIM_VERSION}" in ver:
            return py
    print(f"scalesim_compare: installing {' '.join(PINNED)} into {venv}", file=sys.stderr)
    r = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"cannot create a virtual environment: {r.stderr.strip()[-400:]}")
    r = subprocess.run(
        [py, "-m", "pip", "install", "--quiet", *PINNED], capture_output=True, text=True
    )
    if r.returncode != 0:
        unavailable(f"pip install {' '.join(PINNED)} failed: {r.stderr.strip()[-400:]}")
    return py


def config_text(a):
    if a.bandwidth.upper() == "CALC":
        mode, bw = "CALC", "10"
    else:
        mode, bw = "USER", str(int(a.bandwidth))
    return f"""[general]
run_name = millrace

[run_presets]
InterfaceBandwidth = {mode}
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {a.rows}
ArrayWidth = {a.cols}
IfmapSramSzkB = {a.ifmap_kb}
FilterSramSzkB = {a.filter_kb}
OfmapSramSzkB = {a.ofmap_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = {a.dataflow}
Bandwidth = {bw}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bw}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bw}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


# Runs in the venv: simulates the given layers one at a time with SCALE-Sim's own per-layer
# simulator (what `scalesim.simulator.run` does for each layer), printing one JSON line per
# layer and dropping each layer's traces before the next (a whole-network run keeps them all).
WORKER = """
import json, sys, time
from scalesim.scale_config import scale_config
from scalesim.topology_utils import topologies
from scalesim.layout_utils import layouts
from scalesim.single_layer_sim import single_layer_sim
cfg = scale_config(); cfg.read_conf_file(sys.argv[1])
topo = topologies(); topo.load_arrays(topofile=sys.argv[2]); topo.topo_calc_hyperparams()
lay = layouts(); lay.load_arrays(layoutfile=sys.argv[3])
for i in map(int, sys.argv[4].split(',')):
    t = time.process_time()
    sim = single_layer_sim()
    sim.set_params(layer_id=i, config_obj=cfg, topology_obj=topo, layout_obj=lay, verbose=False)
    sim.run()
    # [total incl. prefetch, total cycles, stall cycles, overall util %, mapping eff %, util %]
    items = sim.get_compute_report_items()
    print(json.dumps({"layer": i, "items": [float(x) for x in items],
                      "cpu_s": time.process_time() - t}), flush=True)
    del sim
"""


def layer_weight(line):
    """Rough cost of a topology line (its MACs), to balance layers over workers."""
    f = [int(x) for x in line.split(",")[1:8]]
    h, w, r, s, c, k, st = f
    oh, ow = (h - r) // st + 1, (w - s) // st + 1
    return oh * ow * r * s * c * k


def run_worker(py, cfg, topo, layout, idxs):
    """Runs SCALE-Sim on layers `idxs` of `topo`; returns {index: report items}."""
    r = subprocess.run(
        [py, "-c", WORKER, cfg, topo, layout, ",".join(map(str, idxs))],
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"SCALE-Sim failed on layers {idxs}:\n{r.stdout[-2000:]}\n"
                           f"{r.stderr[-2000:]}")
    out = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            out[d["layer"]] = d
    missing = [i for i in idxs if i not in out]
    if missing:
        raise RuntimeError(f"SCALE-Sim gave no result for layers {missing}")
    return out


def main():
    a = parse_args()
    if a.rows <= 0 or a.cols <= 0 or a.jobs <= 0:
        sys.exit("scalesim_compare: --rows, --cols and --jobs must be positive")
    py = ensure_venv(os.path.abspath(a.venv))

    with open(a.topology) as f:
        lines = f.readlines()
    if not lines:
        sys.exit(f"scalesim_compare: {a.topology} is empty")
    header, body = lines[0], [l for l in lines[1:] if l.strip()]
    names = [l.split(",")[0].strip() for l in body]
    for n in names:
        if "DP" in n:
            sys.exit(f"scalesim_compare: layer name {n!r} contains 'DP', which SCALE-Sim "
                     "reads as depthwise")

    jobs = max(1, min(a.jobs, len(body)))
    # Longest layers first, each to the least loaded worker.
    loads = [[0, []] for _ in range(jobs)]
    for i in sorted(range(len(body)), key=lambda i: -layer_weight(body[i])):
        w = min(loads, key=lambda l: l[0])
        w[0] += layer_weight(body[i])
        w[1].append(i)
    t0 = time.time()
    results = {}
    with tempfile.TemporaryDirectory(prefix="scalesim-") as work:
        cfg = os.path.join(work, "millrace.cfg")
        with open(cfg, "w") as f:
            f.write(config_text(a))
        topo = os.path.join(work, "topology.csv")
        with open(topo, "w") as f:
            f.write(header)
            f.writelines(body)
        layout = os.path.join(work, "layout.csv")
        with open(layout, "w") as f:
            f.write("Layer name,\n")  # header only: custom layouts are off
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
            futs = [ex.submit(run_worker, py, cfg, topo, layout, sorted(l[1]))
                    for l in loads if l[1]]
            for fut in futs:
                results.update(fut.result())
    cpu = sum(d["cpu_s"] for d in results.values())
    with open(a.out, "w") as f:
        f.write("layer,total_cycles,stall_cycles,overall_util_pct,mapping_eff_pct\n")
        for i, name in enumerate(names):
            it = results[i]["items"]
            f.write(f"{name},{int(it[1])},{int(it[2])},{it[3]:.4f},{it[4]:.4f}\n")
    print(f"scalesim_compare: {len(body)} layers, {a.dataflow}, {a.rows}x{a.cols}, "
          f"{jobs} jobs, {time.time() - t0:.1f} s wall, {cpu:.1f} s CPU in the simulator",
          file=sys.stderr)


if __name__ == "__main__":
    main()
