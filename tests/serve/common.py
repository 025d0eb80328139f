"""Shared helpers of the `millrace serve` client tests: starting and stopping a server on free
ports, building a Triton-layout model repository, model paths, errors, rel L2."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

try:  # the load tests open a socket per concurrent HTTP request, in this process and the server
    import resource

    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
    if _soft < _want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))
except (ImportError, ValueError, OSError):
    pass

LISTEN_RE = re.compile(r"(HTTP|gRPC|metrics) listening on (\S+):(\d+)")


def models_dir():
    """The shared test models (`MILLRACE_MODELS`, default ../shared/models beside the repo)."""
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "models"))
    return os.environ.get("MILLRACE_MODELS", default)


def model_path(name):
    """The path of NAME.onnx, or None (after saying so) when it is absent."""
    p = os.path.join(models_dir(), name + ".onnx")
    if not os.path.isfile(p):
        print(f"SKIP: {p} not found (the shared test models sit beside the repository)")
        return None
    return p


def repository(models):
    """A temporary Triton-layout repository: {served_name: onnx_path} -> <dir>/<name>/1/model.onnx
    (symbolic links)."""
    d = tempfile.mkdtemp(prefix="millrace-serve-repo-")
    for name, path in models.items():
        os.makedirs(os.path.join(d, name, "1"))
        os.symlink(os.path.abspath(path), os.path.join(d, name, "1", "model.onnx"))
    return d


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


class Failures:
    """Collects check failures so one run reports all of them."""

    def __init__(self):
        self.items = []

    def check(self, ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            self.items.append(what)
        return ok

    def exit(self):
        if self.items:
            print(f"\n{len(self.items)} check(s) failed:")
            for f in self.items:
                print("  - " + f)
            sys.exit(1)
        print("\nall checks passed")


class Server:
    """`millrace serve` on free ports (0), with the ports it prints."""

    def __init__(self, binary, args, ready_timeout=300.0, log_name="serve"):
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"millrace-{log_name}-", suffix=".log", delete=False, mode="w+"
        )
        cmd = [binary, "serve", *args, "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
        print("$ " + " ".join(cmd), flush=True)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.ports = {}
        self.lines = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            with self._lock:
                have = all(k in self.ports for k in ("HTTP", "gRPC", "metrics"))
            if have:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"millrace serve exited with {self.proc.returncode}:\n" + self.output())
            time.sleep(0.05)
        else:
            self.kill()
            raise RuntimeError("millrace serve did not print its three ports in time:\n" + self.output())
        self.http = f"127.0.0.1:{self.ports['HTTP']}"
        self.grpc = f"127.0.0.1:{self.ports['gRPC']}"
        self.metrics = f"127.0.0.1:{self.ports['metrics']}"
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        print(f"ready: HTTP {self.http}, gRPC {self.grpc}, metrics {self.metrics}", flush=True)
                        return
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"millrace serve exited with {self.proc.returncode}:\n" + self.output())
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("millrace serve never became ready:\n" + self.output())

    def _read(self):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            with self._lock:
                self.lines.append(line)
                m = LISTEN_RE.search(line)
                if m and m.group(1) not in self.ports:
                    self.ports[m.group(1)] = int(m.group(3))

    def output(self):
        with self._lock:
            return "".join(self.lines[-60:])

    def metrics_text(self):
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, name, model=None):
        """Sum of a Prometheus counter/gauge over its series (those of MODEL when given)."""
        total = 0.0
        found = False
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if not m or m.group(1) != name:
                continue
            if model is not None and f'model="{model}"' not in (m.group(2) or ""):
                continue
            total += float(m.group(3))
            found = True
        return total if found else None

    def terminate(self, timeout=60.0):
        """SIGTERM, then the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()
