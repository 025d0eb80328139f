"""Load test of `millrace serve`: N concurrent requests (default 1,000) over loopback with Triton's
asyncio clients (gRPC: one HTTP/2 channel; HTTP: one connection per request in flight), on
SqueezeNet 1.1, once with dynamic batching off (--max-batch-size 0) and once on
(--max-batch-size 16 --batch-delay-us 2000). Every response is checked against a single
reference request of the same input (no response may be lost or wrong); prints p50/p99 latency,
throughput, and the average batch size from /metrics (nv_inference_count / nv_inference_exec_count),
and writes them as JSON (--json) for BENCHMARKS.md.

usage: test_load.py --millrace BIN [--requests 1000] [--protocols grpc,http] [--json OUT] [--timeout S]
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

MODEL = "squeezenet"
DISTINCT = 8
MODES = [
    ("off", ["--max-batch-size", "0"]),
    ("on", ["--max-batch-size", "16", "--batch-delay-us", "2000", "--max-queue-size", "8192"]),
]


def make_inputs(x0):
    rng = np.random.default_rng(1234)
    xs = [x0]
    for _ in range(DISTINCT - 1):
        xs.append(rng.standard_normal(x0.shape).astype(np.float32))
    return xs


async def one(proto, client, in_name, out_name, x):
    if proto == "grpc":
        i = grpcclient.InferInput(in_name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        t0 = time.perf_counter()
        r = await client.infer(MODEL, [i], outputs=[grpcclient.InferRequestedOutput(out_name)])
    else:
        i = httpclient.InferInput(in_name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        t0 = time.perf_counter()
        r = await client.infer(MODEL, [i], outputs=[httpclient.InferRequestedOutput(out_name)])
    return time.perf_counter() - t0, r.as_numpy(out_name)


async def load(proto, url, n, xs, refs, in_name, out_name, timeout):
    if proto == "grpc":
        client = grpcaio.InferenceServerClient(url)
    else:
        client = httpaio.InferenceServerClient(url, conn_limit=n, conn_timeout=timeout)
    try:
        # Warm-up: a burst, so compiles for the batch sizes the server forms are not timed.
        await asyncio.gather(*(one(proto, client, in_name, out_name, xs[k % DISTINCT]) for k in range(64)),
                             return_exceptions=True)
        t0 = time.perf_counter()
        tasks = [asyncio.ensure_future(one(proto, client, in_name, out_name, xs[k % DISTINCT])) for k in range(n)]
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
            dt, y = t.result()
            e = rel_l2(y, refs[k % DISTINCT])
            worst = max(worst, e)
            if e > 1e-4:
                wrong += 1
            else:
                lat.append(dt)
        return {
            "answered_correctly": len(lat), "errors": len(errors), "first_errors": errors[:3],
            "wrong": wrong, "timed_out": len(pending), "max_rel_l2": worst, "wall_s": wall,
            "p50_ms": float(np.percentile(lat, 50) * 1e3) if lat else None,
            "p99_ms": float(np.percentile(lat, 99) * 1e3) if lat else None,
            "throughput_rps": len(lat) / wall if wall > 0 else None,
        }
    finally:
        await client.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--millrace", required=True)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--protocols", default="grpc,http")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--timeout", type=float, default=300.0, help="hard limit per load run, seconds")
    args = ap.parse_args()
    path = model_path("squeezenet1_1")
    if path is None:
        return
    f = Failures()
    inputs = np.load(os.path.join(models_dir(), "squeezenet1_1.inputs.npz"))
    ort = np.load(os.path.join(models_dir(), "squeezenet1_1.outputs.npz"))
    (in_name,) = inputs.files
    (out_name,) = ort.files
    xs = make_inputs(inputs[in_name].astype(np.float32))
    repo = repository({MODEL: path})
    report = {
        "model": "squeezenet1_1", "input_shape": list(xs[0].shape), "requests": args.requests,
        "clients": "tritonclient 2.73 asyncio (grpc: one channel; http: one connection per request)",
        "host": platform.node(), "cpus": os.cpu_count(),
        "note": "loopback, client and server on the same machine; taken on a shared, busy machine: "
                "compare the two modes with each other, not with other machines",
        "runs": [],
    }
    for mode, flags in MODES:
        with Server(args.millrace, ["--model-repository", repo, *flags], log_name=f"load-{mode}") as srv:
            # References: one request at a time, same server; the npz input also against ORT.
            sc = grpcclient.InferenceServerClient(srv.grpc)
            refs = []
            for x in xs:
                i = grpcclient.InferInput(in_name, list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                refs.append(sc.infer(MODEL, [i]).as_numpy(out_name))
            sc.close()
            e = rel_l2(refs[0], ort[out_name])
            f.check(e <= 1e-4, f"batching {mode}: reference request vs ORT rel L2 {e:.2e}")
            for proto in args.protocols.split(","):
                url = srv.grpc if proto == "grpc" else srv.http
                c0 = srv.metric("nv_inference_count", MODEL)
                e0 = srv.metric("nv_inference_exec_count", MODEL)
                r = asyncio.run(load(proto, url, args.requests, xs, refs, in_name, out_name, args.timeout))
                c1 = srv.metric("nv_inference_count", MODEL)
                e1 = srv.metric("nv_inference_exec_count", MODEL)
                avg = None
                if None not in (c0, c1, e0, e1) and e1 > e0:
                    avg = (c1 - c0) / (e1 - e0)
                f.check(c0 is not None and e0 is not None,
                        "/metrics has nv_inference_count and nv_inference_exec_count for the model")
                r.update({"batching": mode, "flags": flags, "protocol": proto, "avg_batch_size": avg})
                report["runs"].append(r)
                print(f"batching {mode:3} {proto:4}: {r['answered_correctly']}/{args.requests} correct, "
                      f"p50 {r['p50_ms'] or 0:.1f} ms, p99 {r['p99_ms'] or 0:.1f} ms, "
                      f"{r['throughput_rps'] or 0:.0f} req/s, avg batch {avg if avg is None else round(avg, 2)}, "
                      f"max rel L2 {r['max_rel_l2']:.1e}", flush=True)
                f.check(r["answered_correctly"] == args.requests,
                        f"batching {mode}, {proto}: every request answered correctly "
                        f"(errors {r['errors']} {r['first_errors']}, wrong {r['wrong']}, timed out {r['timed_out']})")
                if mode == "off" and avg is not None:
                    f.check(abs(avg - 1.0) < 1e-9, f"batching off, {proto}: every execution has one request ({avg:.2f})")
                if mode == "on" and avg is not None:
                    f.check(avg > 1.0, f"batching on, {proto}: requests were batched (average {avg:.2f})")
            code = srv.terminate()
            f.check(code == 0, f"batching {mode}: server exits 0 on SIGTERM (got {code})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {args.json}")
    f.exit()


if __name__ == "__main__":
    main()
