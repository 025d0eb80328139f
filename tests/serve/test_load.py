"""Load test of `millrace serve`: for each model (default SqueezeNet 1.1 and bert_small), with
dynamic batching off (--max-batch-size 0) and on (the server's default: max batch 8, unless
--max-batch says otherwise), N requests (default 1,000) are sent at once over loopback with
Triton's asyncio clients (gRPC: one HTTP/2 channel; HTTP: one connection per request, all open at
once), so all N are in flight together.

Every response is checked against a single reference request of the same input sent alone to the
same server (relative L2 <= 1e-4; no response may be lost or wrong), and the npz input's answer
against ONNX Runtime's. For each run it prints and writes (--json) p50/p99 latency, throughput,
and from /metrics the average batch size (nv_inference_count / nv_inference_exec_count) and the
average queue and compute time per request (a request counts its whole batch's compute time,
so compute_infer / avg_batch_size approximates the compute time per row: the figure that says
whether batching pays for a model on this machine).

Each run is bounded by --timeout seconds; requests not answered by then count as failures.

usage: test_load.py --millrace BIN [--models squeezenet1_1,bert_small] [--modes off,on]
                    [--requests 1000] [--protocols grpc,http] [--max-batch N]
                    [--server-flags "--threads 1"] [--json OUT] [--timeout S]
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Failures, Server, model_path, models_dir, rel_l2, repository  # noqa: E402

import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.grpc.aio as grpcaio  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
import tritonclient.http.aio as httpaio  # noqa: E402

DISTINCT = 8
# Each model's served name and the protocol datatype of each numpy dtype.
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def variants(name, feeds):
    """DISTINCT input sets: the npz one first, then perturbed ones of the same kind (floats: fresh
    normal noise; token ids: the npz ids shuffled, so every id stays in the vocabulary)."""
    rng = np.random.default_rng(1234)
    out = [feeds]
    for _ in range(DISTINCT - 1):
        v = {}
        for k, x in feeds.items():
            if x.dtype == np.float32:
                v[k] = rng.standard_normal(x.shape).astype(np.float32)
            elif k == "attention_mask":
                v[k] = x.copy()
            else:
                v[k] = rng.permutation(x.ravel()).reshape(x.shape).astype(x.dtype)
        out.append(v)
    return out


def make_inputs(mod, feeds):
    ins = []
    for k, x in feeds.items():
        i = mod.InferInput(k, list(x.shape), DATATYPES[x.dtype])
        i.set_data_from_numpy(x)
        ins.append(i)
    return ins


async def one(proto, client, model, feeds, out_names):
    mod = grpcclient if proto == "grpc" else httpclient
    ins = make_inputs(mod, feeds)
    outs = [mod.InferRequestedOutput(n) for n in out_names]
    t0 = time.perf_counter()
    r = await client.infer(model, ins, outputs=outs)
    return time.perf_counter() - t0, [r.as_numpy(n) for n in out_names]


def aio_client(proto, url, n, timeout):
    if proto == "grpc":
        return grpcaio.InferenceServerClient(url)
    return httpaio.InferenceServerClient(url, conn_limit=n, conn_timeout=timeout)


async def warm(proto, url, model, xs, out_names, n, timeout):
    """A burst before the timed run, so first-use costs (connections, compiles) are not timed."""
    client = aio_client(proto, url, n, timeout)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(one(proto, client, model, xs[k % DISTINCT], out_names) for k in range(n)),
                           return_exceptions=True),
            timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        await client.close()


async def load(proto, url, model, n, xs, refs, out_names, timeout):
    client = aio_client(proto, url, n, timeout)
    try:
        t0 = time.perf_counter()
        tasks = [asyncio.ensure_future(one(proto, client, model, xs[k % DISTINCT], out_names)) for k in range(n)]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        wall = time.perf_counter() - t0
        for t in pending:
            t.cancel()
        lat, errors, worst, wrong = [], [], 0.0, 0
        for k, t in enumerate(tasks):
            if t not in done:
                continue
            if t.exception() is not None:
                errors.append(repr(t.exception())[:200])
                continue
            dt, ys = t.result()
            e = max(rel_l2(y, r) for y, r in zip(ys, refs[k % DISTINCT]))
            worst = max(worst, e)
            if e > 1e-4:
                wrong += 1
            else:
                lat.append(dt)
        return {
            "answered_correctly": len(lat), "errors": len(errors), "first_errors": errors[:3],
            "wrong": wrong, "timed_out": len(pending), "max_rel_l2": worst, "wall_s": round(wall, 3),
            "p50_ms": float(np.percentile(lat, 50) * 1e3) if lat else None,
            "p99_ms": float(np.percentile(lat, 99) * 1e3) if lat else None,
            "throughput_rps": len(lat) / wall if wall > 0 else None,
        }
    finally:
        await client.close()


METRICS = ["nv_inference_count", "nv_inference_exec_count", "nv_inference_request_success",
           "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
           "nv_inference_compute_input_duration_us", "nv_inference_compute_output_duration_us"]


def snapshot(srv, model):
    return {m: srv.metric(m, model) for m in METRICS}


def deltas(a, b):
    if any(a[m] is None or b[m] is None for m in METRICS):
        return None
    return {m: b[m] - a[m] for m in METRICS}


def run_model(args, f, report, model_file):
    path = model_path(model_file)
    if path is None:
        return
    served = model_file
    inputs = np.load(os.path.join(models_dir(), model_file + ".inputs.npz"))
    ort = np.load(os.path.join(models_dir(), model_file + ".outputs.npz"))
    feeds = {k: inputs[k] for k in inputs.files}
    out_names = list(ort.files)
    xs = variants(model_file, feeds)
    repo = repository({served: path})
    modes = {
        "off": ["--max-batch-size", "0"],
        "on": ([] if args.max_batch is None else ["--max-batch-size", str(args.max_batch)])
        + ["--max-queue-size", "8192"],
    }
    extra = args.server_flags.split()
    for mode in args.modes.split(","):
        flags = modes[mode] + extra
        t_start = time.perf_counter()
        with Server(args.millrace, ["--model-repository", repo, *flags],
                    log_name=f"load-{model_file}-{mode}") as srv:
            startup = time.perf_counter() - t_start
            sc = grpcclient.InferenceServerClient(srv.grpc)
            cfg = sc.get_model_config(served, as_json=True).get("config", {})
            max_batch = int(cfg.get("max_batch_size", 0))
            # References: one request at a time; the npz input also against ORT.
            refs = []
            for x in xs:
                r = sc.infer(served, make_inputs(grpcclient, x),
                             outputs=[grpcclient.InferRequestedOutput(n) for n in out_names])
                refs.append([r.as_numpy(n) for n in out_names])
            sc.close()
            e = max(rel_l2(y, ort[n]) for y, n in zip(refs[0], out_names))
            f.check(e <= 1e-4, f"{model_file}, batching {mode}: reference request vs ORT rel L2 {e:.2e}")
            for proto in args.protocols.split(","):
                url = srv.grpc if proto == "grpc" else srv.http
                asyncio.run(warm(proto, url, served, xs, out_names, args.warmup, args.timeout))
                m0 = snapshot(srv, served)
                r = asyncio.run(load(proto, url, served, args.requests, xs, refs, out_names, args.timeout))
                m1 = snapshot(srv, served)
                d = deltas(m0, m1)
                f.check(d is not None, f"{model_file}: /metrics has {', '.join(METRICS)} for the model")
                avg = per_req = None
                if d and d["nv_inference_exec_count"] > 0:
                    avg = d["nv_inference_count"] / d["nv_inference_exec_count"]
                if d and d["nv_inference_request_success"] > 0:
                    n = d["nv_inference_request_success"]
                    per_req = {k: round(d[f"nv_inference_{k}_duration_us"] / n / 1e3, 3)
                               for k in ("queue", "compute_input", "compute_infer", "compute_output")}
                # Each request adds its whole batch's compute time, so with batches of one size
                # this is the execution time of one batch; divided by the batch size, per row.
                per_row = None
                if per_req and avg:
                    per_row = round(per_req["compute_infer"] / avg, 3)
                r.update({"model": model_file, "batching": mode, "flags": flags, "protocol": proto,
                          "max_batch_size": max_batch, "avg_batch_size": avg,
                          "compute_ms_per_row_approx": per_row,
                          "executions": d and d["nv_inference_exec_count"],
                          "server_ms_per_request": per_req, "server_start_s": round(startup, 2)})
                report["runs"].append(r)
                print(f"{model_file:13} batching {mode:3} (max {max_batch}) {proto:4}: "
                      f"{r['answered_correctly']}/{args.requests} correct in {r['wall_s']:.1f} s, "
                      f"p50 {r['p50_ms'] or 0:.0f} ms, p99 {r['p99_ms'] or 0:.0f} ms, "
                      f"{r['throughput_rps'] or 0:.1f} req/s, avg batch {avg if avg is None else round(avg, 2)}, "
                      f"compute per row ~{per_row} ms, server per request {per_req}, "
                      f"max rel L2 {r['max_rel_l2']:.1e}", flush=True)
                f.check(r["answered_correctly"] == args.requests,
                        f"{model_file}, batching {mode}, {proto}: every request answered correctly "
                        f"(errors {r['errors']} {r['first_errors']}, wrong {r['wrong']}, timed out {r['timed_out']})")
                if mode == "off" and avg is not None:
                    f.check(abs(avg - 1.0) < 1e-9,
                            f"{model_file}, batching off, {proto}: every execution has one request ({avg:.2f})")
                if mode == "on" and avg is not None:
                    f.check(max_batch > 1 and avg > 1.0,
                            f"{model_file}, batching on (max {max_batch}), {proto}: requests were batched "
                            f"(average {avg:.2f})")
            code = srv.terminate()
            f.check(code == 0, f"{model_file}, batching {mode}: server exits 0 on SIGTERM (got {code})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--millrace", required=True)
    ap.add_argument("--models", default="squeezenet1_1,bert_small",
                    help="shared test models (NAME.onnx with NAME.inputs.npz / NAME.outputs.npz)")
    ap.add_argument("--modes", default="off,on")
    ap.add_argument("--requests", type=int, default=1000, help="requests in flight at once per run")
    ap.add_argument("--warmup", type=int, default=64, help="requests of the untimed burst before each run")
    ap.add_argument("--protocols", default="grpc,http")
    ap.add_argument("--max-batch", type=int, default=None,
                    help="--max-batch-size when batching is on (default: the server's own default)")
    ap.add_argument("--server-flags", default="",
                    help="more `millrace serve` flags for every run, e.g. \"--threads 1\"")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--timeout", type=float, default=120.0, help="hard limit per load run, seconds")
    args = ap.parse_args()
    f = Failures()
    report = {
        "requests": args.requests,
        "clients": "tritonclient 2.73 asyncio (grpc: one channel; http: one connection per request), "
                   "all requests of a run in flight at once",
        "host": platform.node(), "cpus": os.cpu_count(),
        "note": "loopback, client and server on the same machine, which was shared with other work: "
                "compare the modes with each other, not with other machines",
        "runs": [],
    }
    for m in args.models.split(","):
        run_model(args, f, report, m)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {args.json}")
    f.exit()


if __name__ == "__main__":
    main()
