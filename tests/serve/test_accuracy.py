"""ResNet-50 through `millrace serve` with Triton's own clients: HTTP binary, HTTP JSON, gRPC (raw
contents, typed contents from a hand-built protobuf, and the bidirectional stream). Each output is
compared with `millrace run` on the same input (rel L2 <= 1e-5, same engine) and with ONNX
Runtime's reference (rel L2 <= 1e-4). Also checks health, metadata and config over both protocols.

usage: test_accuracy.py --millrace BIN [--model resnet50]
"""

import argparse
import os
import queue
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Failures, Server, model_path, models_dir, rel_l2, repository  # noqa: E402

import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--millrace", required=True)
    ap.add_argument("--model", default="resnet50")
    args = ap.parse_args()
    name = args.model
    path = model_path(name)
    if path is None:
        return
    f = Failures()
    inputs = np.load(os.path.join(models_dir(), f"{name}.inputs.npz"))
    ort = np.load(os.path.join(models_dir(), f"{name}.outputs.npz"))
    (in_name,) = inputs.files
    (out_name,) = ort.files
    x = inputs[in_name].astype(np.float32)
    ort_y = ort[out_name]

    # millrace run on the same input: the same-engine reference.
    tmp = tempfile.mkdtemp(prefix="millrace-acc-")
    out_npz = os.path.join(tmp, "out.npz")
    subprocess.run(
        [args.millrace, "run", path, "--inputs", os.path.join(models_dir(), f"{name}.inputs.npz"),
         "--outputs", out_npz],
        check=True, stdout=subprocess.DEVNULL,
    )
    run_y = np.load(out_npz)[out_name]
    f.check(rel_l2(run_y, ort_y) <= 1e-4, f"millrace run vs ORT: rel L2 {rel_l2(run_y, ort_y):.2e}")

    def compare(what, y):
        y = np.asarray(y)
        f.check(y.shape == run_y.shape, f"{what}: output shape {y.shape} (want {run_y.shape})")
        e1, e2 = rel_l2(y, run_y), rel_l2(y, ort_y)
        f.check(e1 <= 1e-5, f"{what} vs millrace run: rel L2 {e1:.2e} <= 1e-5")
        f.check(e2 <= 1e-4, f"{what} vs ONNX Runtime: rel L2 {e2:.2e} <= 1e-4")

    repo = repository({name: path})
    with Server(args.millrace, ["--model-repository", repo, "--max-body-size", str(64 << 20)],
                log_name="accuracy") as srv:
        h = httpclient.InferenceServerClient(srv.http, network_timeout=300.0, connection_timeout=300.0)
        g = grpcclient.InferenceServerClient(srv.grpc)

        # Health, metadata, config.
        for proto, c in (("HTTP", h), ("gRPC", g)):
            f.check(c.is_server_live(), f"{proto} server live")
            f.check(c.is_server_ready(), f"{proto} server ready")
            f.check(c.is_model_ready(name), f"{proto} model ready")
            f.check(not c.is_model_ready("no_such_model"), f"{proto} unknown model not ready")
        sm = h.get_server_metadata()
        f.check(sm.get("name") == "millrace", f"HTTP server metadata {sm}")
        gm = g.get_server_metadata()
        f.check(gm.name == "millrace" and gm.version == sm.get("version"), f"gRPC server metadata {gm.name} {gm.version}")
        hm = h.get_model_metadata(name)
        f.check(hm["inputs"][0]["name"] == in_name and hm["inputs"][0]["datatype"] == "FP32",
                f"HTTP model metadata inputs {hm['inputs']}")
        gmm = g.get_model_metadata(name)
        f.check(gmm.inputs[0].name == in_name and list(gmm.inputs[0].shape) == hm["inputs"][0]["shape"],
                f"gRPC model metadata inputs agree with HTTP: {list(gmm.inputs[0].shape)}")
        f.check(gmm.outputs[0].name == out_name, f"gRPC model metadata output {gmm.outputs[0].name}")
        try:
            cfg = g.get_model_config(name).config
            f.check(cfg.name == name and cfg.input[0].name == in_name, f"gRPC model config {cfg.name}")
        except Exception as e:  # noqa: BLE001
            f.check(False, f"gRPC model config: {e}")

        # HTTP, binary tensors (the client's default).
        i = httpclient.InferInput(in_name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        r = h.infer(name, [i], outputs=[httpclient.InferRequestedOutput(out_name)], request_id="bin")
        compare("HTTP binary", r.as_numpy(out_name))

        # HTTP, JSON tensors both ways.
        i = httpclient.InferInput(in_name, list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=False)
        r = h.infer(name, [i], outputs=[httpclient.InferRequestedOutput(out_name, binary_data=False)])
        f.check(r.get_response()["outputs"][0].get("data") is not None, "HTTP JSON output came as JSON data")
        compare("HTTP JSON", r.as_numpy(out_name))

        # gRPC, raw_input_contents (tritonclient's way).
        i = grpcclient.InferInput(in_name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        r = g.infer(name, [i], outputs=[grpcclient.InferRequestedOutput(out_name)], request_id="grpc-raw")
        f.check(r.get_response().id == "grpc-raw", "gRPC echoes the request id")
        compare("gRPC raw", r.as_numpy(out_name))

        # gRPC, typed contents (hand-built protobuf, same stubs).
        import grpc

        with grpc.insecure_channel(srv.grpc, options=[("grpc.max_send_message_length", 1 << 30),
                                                      ("grpc.max_receive_message_length", 1 << 30)]) as ch:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
            req = service_pb2.ModelInferRequest(model_name=name)
            t = req.inputs.add(name=in_name, datatype="FP32", shape=list(x.shape))
            t.contents.fp32_contents.extend(x.ravel().tolist())
            resp = stub.ModelInfer(req, timeout=300)
            o = resp.outputs[0]
            y = np.frombuffer(resp.raw_output_contents[0], dtype="<f4").reshape(list(o.shape))
            compare("gRPC typed contents", y)

        # gRPC bidirectional stream.
        results = queue.Queue()
        g.start_stream(callback=lambda result, error: results.put((result, error)))
        i = grpcclient.InferInput(in_name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        g.async_stream_infer(name, [i], request_id="s1")
        g.async_stream_infer("no_such_model", [i], request_id="s2")
        got = {}
        for _ in range(2):
            result, error = results.get(timeout=300)
            if error is None:
                got[result.get_response().id] = result.as_numpy(out_name)
            else:
                got["error"] = str(error)
        g.stop_stream()
        if f.check("s1" in got, "gRPC stream answered the good request"):
            compare("gRPC stream", got["s1"])
        f.check("no_such_model" in got.get("error", ""), f"gRPC stream error names the model: {got.get('error')}")
        h.close()
        g.close()
    f.exit()


if __name__ == "__main__":
    main()
