"""Per-node times of one `millrace profile` run, for the scripts that compare them
(`nodes_ab.py`, `nodes_vs_ort.py`, `threads_scaling.py`)."""
import re
import subprocess


def profile(binary, model, threads, extra=()):
    """Runs `BIN profile MODEL --threads T --top 0 --iters 20 --warmup 5 [EXTRA]` and returns
    the median wall in ms and each node's median ms by name (nodes of one name summed)."""
    out = subprocess.run(
        [binary, "profile", model, "--threads", str(threads), "--top", "0", "--iters", "20", "--warmup", "5",
         *extra],
        capture_output=True, text=True, check=True,
    ).stdout
    wall = float(re.search(r"wall:\s+([\d.]+) ms", out).group(1))
    nodes = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) > 4 and f[0].isdigit():
            nodes[f[1]] = nodes.get(f[1], 0.0) + float(f[3])
    return wall, nodes
