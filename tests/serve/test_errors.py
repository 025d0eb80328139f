"""Every bad request to `millrace serve`, over HTTP and gRPC: each must get a 4xx (or the right gRPC
status) with a message saying what is wrong, and the server must keep serving after each.

Uses SqueezeNet 1.1 (small) and a server started with a small --max-body-size (2 MiB: a binary
1x3x224x224 FP32 request, 602 KB, fits, and so does FP64; the same in JSON, 3 MB, does not).

usage: test_errors.py --millrace BIN
"""

import argparse
import http.client
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Failures, Server, model_path, models_dir, rel_l2, repository  # noqa: E402

import grpc  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "squeezenet"
LIMIT = 2 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--millrace", required=True)
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
    ref = ort[out_name]

    repo = repository({MODEL: path})
    with Server(args.millrace, ["--model-repository", repo, "--max-body-size", str(LIMIT)],
                log_name="errors") as srv:

        g = grpcclient.InferenceServerClient(srv.grpc)
        h = httpclient.InferenceServerClient(srv.http, network_timeout=120.0)

        def post(path, body, headers=None, ctype="application/json"):
            c = http.client.HTTPConnection(srv.http, timeout=120)
            hdrs = {"Content-Type": ctype}
            hdrs.update(headers or {})
            try:
                c.request("POST", path, body=body, headers=hdrs)
                r = c.getresponse()
                return r.status, r.read().decode(errors="replace")
            except (ConnectionError, http.client.HTTPException) as e:
                return None, f"connection error: {e!r}"
            finally:
                c.close()

        def binary_body(shape=None, datatype="FP32", name=in_name, data=None, declared=None):
            data = x.tobytes() if data is None else data
            header = json.dumps({
                "inputs": [{
                    "name": name, "shape": list(shape or x.shape), "datatype": datatype,
                    "parameters": {"binary_data_size": len(data) if declared is None else declared},
                }],
                "outputs": [{"name": out_name, "parameters": {"binary_data": True}}],
            }).encode()
            return header + data, {"Inference-Header-Content-Length": str(len(header))}

        def still_serving(after):
            hi = httpclient.InferInput(in_name, list(x.shape), "FP32")
            hi.set_data_from_numpy(x)
            try:
                y = h.infer(MODEL, [hi]).as_numpy(out_name)
                f.check(rel_l2(y, ref) <= 1e-4, f"still serving over HTTP after: {after}")
            except Exception as e:  # noqa: BLE001
                f.check(False, f"still serving over HTTP after: {after}: {e}")
            gi = grpcclient.InferInput(in_name, list(x.shape), "FP32")
            gi.set_data_from_numpy(x)
            try:
                y = g.infer(MODEL, [gi]).as_numpy(out_name)
                f.check(rel_l2(y, ref) <= 1e-4, f"still serving over gRPC after: {after}")
            except Exception as e:  # noqa: BLE001
                f.check(False, f"still serving over gRPC after: {after}: {e}")

        def expect_http(what, status, text, want_status, says):
            try:
                msg = json.loads(text).get("error", "")
            except ValueError:
                msg = ""
            f.check(status == want_status and says.lower() in msg.lower(),
                    f"HTTP {what}: {status} (want {want_status}), error `{msg[:160]}` names `{says}`")
            still_serving(f"HTTP {what}")

        def expect_grpc(what, call, code, says):
            try:
                call()
                f.check(False, f"gRPC {what}: succeeded, want {code.name}")
            except InferenceServerException as e:
                st = (e.status() or "")
                msg = e.message() or ""
                f.check(st.endswith(code.name) and says.lower() in msg.lower(),
                        f"gRPC {what}: {st} (want {code.name}), message `{msg[:160]}` names `{says}`")
            except grpc.RpcError as e:
                f.check(e.code() == code and says.lower() in (e.details() or "").lower(),
                        f"gRPC {what}: {e.code().name} (want {code.name}), message `{(e.details() or '')[:160]}` names `{says}`")
            still_serving(f"gRPC {what}")

        # ---- HTTP ----
        body, hdrs = binary_body()
        ct = "application/octet-stream"
        expect_http("wrong model name", *post("/v2/models/resnet9000/infer", body, hdrs, ct), 404, "resnet9000")
        expect_http("wrong version", *post(f"/v2/models/{MODEL}/versions/42/infer", body, hdrs, ct), 404, "42")
        b, hh = binary_body(name="pixels")
        expect_http("wrong input name", *post(f"/v2/models/{MODEL}/infer", b, hh, ct), 400, "pixels")
        b, hh = binary_body(shape=[1, 3, 224], data=x.ravel()[: 3 * 224].tobytes())
        expect_http("wrong shape (rank 3)", *post(f"/v2/models/{MODEL}/infer", b, hh, ct), 400, in_name)
        b, hh = binary_body(datatype="FP64", data=x.astype(np.float64).tobytes())
        expect_http("wrong datatype (FP64)", *post(f"/v2/models/{MODEL}/infer", b, hh, ct), 400, "FP")
        b, hh = binary_body(datatype="FLOAT32")
        expect_http("unknown datatype", *post(f"/v2/models/{MODEL}/infer", b, hh, ct), 400, "FLOAT32")
        expect_http("malformed JSON", *post(f"/v2/models/{MODEL}/infer", b'{"inputs": [{"name": "input", '),
                    400, "json")
        expect_http("JSON of the wrong shape", *post(f"/v2/models/{MODEL}/infer", b'{"inputs": 7}'), 400, "inputs")
        b, hh = binary_body()
        expect_http("truncated binary body", *post(f"/v2/models/{MODEL}/infer", b[:-1000], hh, ct), 400, "bytes")
        b, hh = binary_body(declared=x.nbytes + 4)
        expect_http("binary_data_size beyond the body", *post(f"/v2/models/{MODEL}/infer", b, hh, ct), 400, "bytes")
        b, hh = binary_body()
        hh["Inference-Header-Content-Length"] = str(len(b) + 10)
        expect_http("header length beyond the body", *post(f"/v2/models/{MODEL}/infer", b, hh, ct), 400, "header")
        js = json.dumps({"inputs": [{"name": in_name, "shape": list(x.shape), "datatype": "FP32",
                                     "data": x.ravel().tolist()}]}).encode()
        status, text = post(f"/v2/models/{MODEL}/infer", js)
        f.check(len(js) > LIMIT and status == 413,
                f"HTTP body over --max-body-size ({len(js)} > {LIMIT} bytes): {status} (want 413) `{text[:160]}`")
        still_serving("HTTP body over the limit")
        js = json.dumps({"inputs": [{"name": in_name, "shape": [1, 3, 224, 224], "datatype": "FP32",
                                     "data": [1.0, 2.0]}]}).encode()
        expect_http("JSON data count != shape", *post(f"/v2/models/{MODEL}/infer", js), 400, "element")

        # ---- gRPC ----
        def ginput(name=in_name, shape=None, datatype="FP32", arr=None):
            arr = x if arr is None else arr
            i = grpcclient.InferInput(name, list(shape or arr.shape), datatype)
            i.set_data_from_numpy(arr)
            return i

        expect_grpc("wrong model name", lambda: g.infer("resnet9000", [ginput()]), grpc.StatusCode.NOT_FOUND, "resnet9000")
        expect_grpc("wrong version", lambda: g.infer(MODEL, [ginput()], model_version="42"), grpc.StatusCode.NOT_FOUND, "42")
        expect_grpc("wrong input name", lambda: g.infer(MODEL, [ginput(name="pixels")]),
                    grpc.StatusCode.INVALID_ARGUMENT, "pixels")
        expect_grpc("wrong shape (rank 3)", lambda: g.infer(MODEL, [ginput(arr=x[0])]),
                    grpc.StatusCode.INVALID_ARGUMENT, in_name)
        expect_grpc("wrong datatype (FP64)", lambda: g.infer(MODEL, [ginput(datatype="FP64", arr=x.astype(np.float64))]),
                    grpc.StatusCode.INVALID_ARGUMENT, "FP")
        expect_grpc("unknown output", lambda: g.infer(MODEL, [ginput()], outputs=[grpcclient.InferRequestedOutput("logits")]),
                    grpc.StatusCode.INVALID_ARGUMENT, "logits")
        expect_grpc("unknown model metadata", lambda: g.get_model_metadata("resnet9000"),
                    grpc.StatusCode.NOT_FOUND, "resnet9000")

        ch = grpc.insecure_channel(srv.grpc, options=[("grpc.max_send_message_length", 1 << 30)])
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)

        def raw(raw_bytes, datatype="FP32", shape=None):
            req = service_pb2.ModelInferRequest(model_name=MODEL)
            req.inputs.add(name=in_name, datatype=datatype, shape=list(shape or x.shape))
            req.raw_input_contents.append(raw_bytes)
            return stub.ModelInfer(req, timeout=120)

        expect_grpc("truncated raw_input_contents", lambda: raw(x.tobytes()[:-1000]),
                    grpc.StatusCode.INVALID_ARGUMENT, "bytes")
        expect_grpc("unknown datatype", lambda: raw(x.tobytes(), datatype="FLOAT32"),
                    grpc.StatusCode.INVALID_ARGUMENT, "FLOAT32")

        def typed_wrong_count():
            req = service_pb2.ModelInferRequest(model_name=MODEL)
            t = req.inputs.add(name=in_name, datatype="FP32", shape=list(x.shape))
            t.contents.fp32_contents.extend([1.0, 2.0])
            return stub.ModelInfer(req, timeout=120)

        expect_grpc("typed contents count != shape", typed_wrong_count, grpc.StatusCode.INVALID_ARGUMENT, "elements")
        # LIMIT + 64 bytes: over the gRPC message limit, which follows --max-body-size.
        big = np.zeros(LIMIT // 4 + 16, dtype=np.float32)
        # tonic answers OUT_OF_RANGE ("decoded message length too large"); gRPC's own
        # implementations say RESOURCE_EXHAUSTED: either is a clear refusal.
        try:
            raw(big.tobytes(), shape=[big.size])
            f.check(False, "gRPC message over the size limit: succeeded")
        except grpc.RpcError as e:
            f.check(e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE)
                    and "too large" in (e.details() or ""),
                    f"gRPC message over the size limit: {e.code().name}, `{e.details()}`")
        still_serving("gRPC message over the size limit")
        ch.close()
        g.close()
        h.close()
        code = srv.terminate()
        f.check(code == 0, f"server exits 0 on SIGTERM (got {code})")
    f.exit()


if __name__ == "__main__":
    main()
