"""SIGTERM while `millrace serve` is under load: requests already in flight must be answered
(correctly), requests arriving after may only be refused cleanly (UNAVAILABLE / 503 / connection
refused), none may be lost or hang, and the process must exit 0.

usage: test_sigterm.py --millrace BIN [--requests 300]
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Failures, Server, model_path, models_dir, rel_l2, repository  # noqa: E402

import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.grpc.aio as grpcaio  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
import tritonclient.http.aio as httpaio  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "squeezenet"


def refusal(e):
    """Whether an exception is a clean refusal (the server is stopping), not a lost request."""
    if isinstance(e, InferenceServerException):
        st = str(e.status() or "")
        return st.endswith("UNAVAILABLE") or st == "503"
    # A connection the stopped server no longer accepts.
    return "Cannot connect" in repr(e) or "Connection refused" in repr(e) or "ConnectionRefused" in repr(e)


async def run(srv, n, x, ref, in_name, out_name, f):
    g = grpcaio.InferenceServerClient(srv.grpc)
    h = httpaio.InferenceServerClient(srv.http, conn_limit=n)
    done_at = {}

    async def one(k):
        if k % 2 == 0:
            i = grpcclient.InferInput(in_name, list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            r = await g.infer(MODEL, [i])
        else:
            i = httpclient.InferInput(in_name, list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            r = await h.infer(MODEL, [i])
        done_at[k] = time.perf_counter()
        return r.as_numpy(out_name)

    tasks = [asyncio.ensure_future(one(k)) for k in range(n)]
    # Wait until the server is answering, then stop it with work still queued.
    while not done_at and not all(t.done() for t in tasks):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    t_term = time.perf_counter()
    srv.proc.send_signal(15)
    done, pending = await asyncio.wait(tasks, timeout=300)
    for t in pending:
        t.cancel()
    ok = wrong = refused = lost = 0
    lost_examples = []
    for t in tasks:
        if t in pending:
            lost += 1
            continue
        e = t.exception()
        if e is None:
            if rel_l2(t.result(), ref) <= 1e-4:
                ok += 1
            else:
                wrong += 1
        elif refusal(e):
            refused += 1
        else:
            lost += 1
            lost_examples.append(repr(e)[:200])
    after = sum(1 for v in done_at.values() if v > t_term)
    print(f"{n} requests: {ok} answered correctly ({after} of them after SIGTERM), {refused} refused, "
          f"{wrong} wrong, {lost} lost {lost_examples[:3]}")
    f.check(wrong == 0, "no wrong answers")
    f.check(lost == 0, f"no request lost or hung ({lost} {lost_examples[:3]})")
    f.check(after > 0, f"requests in flight at SIGTERM were answered after it ({after})")
    try:
        await g.close()
        await h.close()
    except Exception:  # noqa: BLE001
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--millrace", required=True)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    path = model_path("squeezenet1_1")
    if path is None:
        return
    f = Failures()
    inputs = np.load(os.path.join(models_dir(), "squeezenet1_1.inputs.npz"))
    ort = np.load(os.path.join(models_dir(), "squeezenet1_1.outputs.npz"))
    (in_name,) = inputs.files
    (out_name,) = ort.files
    x = inputs[in_name].astype(np.float32)
    repo = repository({MODEL: path})
    srv = Server(args.millrace, ["--model-repository", repo, "--max-batch-size", "4",
                                 "--batch-delay-us", "1000", "--max-queue-size", "8192"], log_name="sigterm")
    try:
        asyncio.run(run(srv, args.requests, x, ort[out_name], in_name, out_name, f))
        # The one SIGTERM sent under load must be enough: wait for the exit, signal nothing more.
        t0 = time.time()
        try:
            code = srv.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None
        f.check(code == 0, f"exit status 0 after one SIGTERM (got {code}, {time.time() - t0:.1f} s after the load)")
    finally:
        srv.kill()
        if f.items:
            print("server output:\n" + srv.output())
    f.exit()


if __name__ == "__main__":
    main()
