"""The contract server and serve-demo under 200 concurrent clients on 127.0.0.1 (not a test).

    PYTHONPATH=. python -m benchmarks --suite server [--size quick|full] [--repeats 3]
    PYTHONPATH=. python -m benchmarks.server_load [--baseline-ref GIT_REF] [--size quick] [--repeats 1]

Each server runs in a process of its own (its memory is read from /proc: ``VmHWM``, the peak resident
set, reset with ``/proc/PID/clear_refs`` before every scenario; idle RSS before). Clients are threads of
this process, released together by a barrier, each on fresh connections with a 120 s timeout; every
failure is counted by its exception (a reset is ``ConnectionResetError``), every answer by its status.

- contract, small predicts: ``CLIENTS`` clients each POST ``:predict`` (one latent -> a 16x16x1 image)
  ``requests`` times (quick 2, full 5). Latency p50/p99 over all requests.
- contract, 57 MB bodies: one ``encode`` request of 220 images 64x64x3 as JSON (57 MB), then 4 at once;
  the server's peak RSS over its idle RSS. A 503 is retried after its Retry-After (up to 30 times).
- serve-demo: ``CLIENTS`` clients each GET ``/`` and ``/decoder.onnx`` (an 8 MiB file) ``requests`` times.

``--baseline-ref`` also measures the servers of that git commit (its ``keras_vae`` extracted with
``git archive``), interleaved round by round with this checkout's. Latencies include the client threads'
own share of the two cores (200 Python threads), so they bound the server's latency from above.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, environment, median, percentile, write_result

CLIENTS = 200
CLIENT_TIMEOUT = 120.0
REQUESTS = {"quick": 2, "full": 5}
BIG_IMAGES, BIG_SHAPE = 220, (64, 64, 3)  # 2.7 M numbers: a 57 MB JSON body
DEMO_FILE_BYTES = 8 << 20
MODEL = "bench"
THIS = "this checkout"


# ------------------------------------------------------------------------------------------- set-up
def build_savedmodel(base: Path) -> Path:
    """``base/bench/1``: ``serving_default`` (z[8] -> 16x16x1 image) and ``encode`` (64x64x3 image -> z[8])."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    z_in = keras.Input((8,), name="z")
    y = keras.layers.Reshape((8, 8, 4))(keras.layers.Dense(256, activation="relu")(z_in))
    decoder = keras.Model(z_in, keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same",
                                                             activation="sigmoid")(y))
    x_in = keras.Input(BIG_SHAPE, name="image")
    x = keras.layers.Conv2D(4, 3, strides=4, padding="same", activation="relu")(x_in)
    encoder = keras.Model(x_in, keras.layers.Dense(8)(keras.layers.Flatten()(x)))
    archive = keras.export.ExportArchive()
    archive.track(decoder)
    archive.track(encoder)
    archive.add_endpoint("serving_default", lambda z: {"image": decoder(z, training=False)},
                         input_signature=[tf.TensorSpec([None, 8], tf.float32, name="z")])
    archive.add_endpoint("encode", lambda image: {"mean": encoder(image, training=False)},
                         input_signature=[tf.TensorSpec([None, *BIG_SHAPE], tf.float32, name="image")])
    archive.write_out(str(base / MODEL / "1"), verbose=False)
    return base / MODEL


def build_demo_files(base: Path) -> dict:
    """An export folder (decoder.onnx: 8 MiB of random bytes; make_server does not verify it), a page
    folder and an onnxruntime-web dist folder with its entry file."""
    export, web, dist = base / "export", base / "web", base / "dist"
    for folder in (export, web, dist):
        folder.mkdir(parents=True, exist_ok=True)
    (export / "decoder.onnx").write_bytes(np.random.default_rng(0).bytes(DEMO_FILE_BYTES))
    (web / "index.html").write_text("<html><body>latent explorer</body></html>")
    (dist / "ort.wasm.bundle.min.mjs").write_text("// stand-in")
    return {"export": str(export), "web": str(web), "dist": str(dist)}


def checkout_of(ref: str, into: Path) -> Path:
    """The ``keras_vae`` package and ``serving`` assets of git ``ref``, extracted under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "keras_vae", "serving"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


class Server:
    """A server process on 127.0.0.1:0 from the source tree ``source``; ``url`` once it listens."""

    def __init__(self, argv: list[str], source: Path, ready: str):
        env = {**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=tempfile.gettempdir(), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        threading.Thread(target=lambda: self.stderr_lines.extend(self.proc.stderr), daemon=True).start()
        deadline = time.monotonic() + 180
        line = ""
        while ready not in line:
            line = self.proc.stdout.readline()
            if not line and (self.proc.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError(f"server did not start: {''.join(self.stderr_lines)[-2000:]}")
        self.url = "http://" + line.split("http://", 1)[1].split()[0].rstrip("/,")
        self.port = urllib.parse.urlsplit(self.url).port

    def memory(self) -> dict:
        """Resident set now and its peak since the last reset, in MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return {"rss_mb": fields["VmRSS"], "peak_mb": fields["VmHWM"]}

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def contract_server(source: Path, base: Path) -> Server:
    return Server(["-m", "keras_vae.serving.contract_server", str(base), "--name", MODEL, "--port", "0"],
                  source, ready="REST http://")


def demo_server(source: Path, files: dict) -> Server:
    script = ("import sys\nfrom keras_vae.serving.demo import make_server, server_url\n"
              f"s = make_server({files['export']!r}, port=0, web_root={files['web']!r}, ort_dist={files['dist']!r})\n"
              "print('demo at', server_url(s), flush=True)\ns.serve_forever()\n")
    return Server(["-c", script], source, ready="demo at http://")


# ------------------------------------------------------------------------------------------- load
def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, int]:
    """(status, headers, body bytes) of one request on a fresh connection."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        reply = conn.getresponse()
        size = 0
        while chunk := reply.read(1 << 20):
            size += len(chunk)
        return reply.status, dict(reply.getheaders()), size
    finally:
        conn.close()


def load(port: int, clients: int, requests: list[tuple[str, str, bytes | None]], repeat: int) -> dict:
    """``clients`` threads released together, each sending ``requests`` ``repeat`` times in order.
    Returns outcome counts (status codes, exception names) and latencies (ms) per path."""
    outcomes: Counter = Counter()
    latencies: dict[str, list[float]] = {path: [] for _, path, _ in requests}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client():
        barrier.wait()
        for _ in range(repeat):
            for method, path, body in requests:
                start = time.perf_counter()
                try:
                    outcome = _request(port, method, path, body)[0]
                except Exception as exc:  # noqa: BLE001 - counted: a reset is what this measures
                    outcome = type(exc).__name__
                elapsed = (time.perf_counter() - start) * 1e3
                with lock:
                    outcomes[str(outcome)] += 1
                    if outcome == 200:
                        latencies[path].append(elapsed)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT * repeat * len(requests) + 60)
    wall = time.perf_counter() - started
    return {"outcomes": dict(outcomes), "wall_s": wall,
            "latency_ms": {path: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
                           for path, v in latencies.items() if v}}


def big_bodies(port: int, body: bytes, at_once: int) -> dict:
    """``at_once`` clients each sending the 57 MB body until answered (503s retried after Retry-After)."""
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def client():
        for _ in range(30):
            try:
                status, headers, _ = _request(port, "POST", f"/v1/models/{MODEL}:predict", body)
            except Exception as exc:  # noqa: BLE001
                status, headers = type(exc).__name__, {}
            with lock:
                outcomes[str(status)] += 1
            if status != 503:
                return
            time.sleep(float(headers.get("Retry-After", 1)))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(at_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT * 30)
    return dict(outcomes)


# ------------------------------------------------------------------------------------------- suite
def measure_contract(server: Server, repeat: int, big: bytes) -> dict:
    small = json.dumps({"inputs": {"z": [[0.1] * 8]}}).encode()
    idle = server.memory()["rss_mb"]
    server.reset_peak()
    row = {"idle_rss_mb": idle, "small": load(server.port, CLIENTS, [("POST", f"/v1/models/{MODEL}:predict", small)],
                                              repeat)}
    row["small"]["peak_rss_mb"] = server.memory()["peak_mb"]
    for at_once in (1, 4):
        before = server.memory()["rss_mb"]
        server.reset_peak()
        outcomes = big_bodies(server.port, big, at_once)
        row[f"big_x{at_once}"] = {"outcomes": outcomes, "rss_before_mb": before,
                                  "peak_growth_mb": server.memory()["peak_mb"] - before}
    return row


def measure_demo(server: Server, repeat: int) -> dict:
    idle = server.memory()["rss_mb"]
    server.reset_peak()
    row = load(server.port, CLIENTS, [("GET", "/", None), ("GET", "/decoder.onnx", None)], repeat)
    row.update(idle_rss_mb=idle, peak_rss_mb=server.memory()["peak_mb"])
    return row


def _summarise(rounds: list[dict], keys) -> dict:
    """Medians of latencies and peaks over rounds; outcomes summed."""
    out = {"rounds": rounds}
    for key in keys:
        parts = [r[key] for r in rounds]
        outcomes = Counter()
        for p in parts:
            outcomes.update(p["outcomes"])
        merged = {"outcomes": dict(outcomes)}
        for path in parts[0].get("latency_ms", {}):
            merged.setdefault("latency_ms", {})[path] = {q: median([p["latency_ms"][path][q] for p in parts
                                                                    if path in p.get("latency_ms", {})])
                                                         for q in ("p50", "p99")}
        for field in ("peak_rss_mb", "peak_growth_mb"):
            if field in parts[0]:
                merged[field] = max(p[field] for p in parts)
        out[key] = merged
    return out


def run(size: str = "quick", repeats: int = 3, log=print, baseline_ref: str | None = None, **_) -> dict:
    """Both servers of this checkout (and of ``baseline_ref`` when given), ``repeats`` interleaved rounds."""
    import tensorflow as tf

    repeat = REQUESTS[size]
    result = {"suite": "server", "size": size, "repeats": repeats, "clients": CLIENTS, "requests_per_client": repeat,
              "environment": environment(), "versions": {"tensorflow": tf.__version__, "python": sys.version.split()[0]},
              "servers": {}}
    rng = np.random.default_rng(0)
    big = json.dumps({"signature_name": "encode",
                      "inputs": {"image": rng.random((BIG_IMAGES, *BIG_SHAPE)).astype(np.float32).tolist()}}).encode()
    result["big_body_mb"] = len(big) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, files = build_savedmodel(tmp / "models"), build_demo_files(tmp / "demo")
        sources = {THIS: ROOT}
        if baseline_ref:
            sources[f"baseline {baseline_ref}"] = checkout_of(baseline_ref, tmp / "baseline")
        rounds: dict[str, dict[str, list]] = {name: {"contract": [], "demo": []} for name in sources}
        for r in range(repeats):
            for name, source in sources.items():
                log(f"round {r + 1}/{repeats}: {name}: contract server")
                server = contract_server(source, base)
                try:
                    rounds[name]["contract"].append(measure_contract(server, repeat, big))
                finally:
                    server.stop()
                log(f"round {r + 1}/{repeats}: {name}: serve-demo")
                server = demo_server(source, files)
                try:
                    rounds[name]["demo"].append({"demo": measure_demo(server, repeat)})
                finally:
                    server.stop()
        for name in sources:
            result["servers"][name] = {
                "contract": _summarise(rounds[name]["contract"], ("small", "big_x1", "big_x4")),
                "demo": _summarise(rounds[name]["demo"], ("demo",))["demo"] | {"rounds": rounds[name]["demo"]}}
            result["servers"][name]["contract"]["idle_rss_mb"] = median(
                [r["idle_rss_mb"] for r in rounds[name]["contract"]])
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    return result


# ------------------------------------------------------------------------------------------- report
def failures(outcomes: dict) -> int:
    """Requests that got no HTTP answer at all (resets, timeouts, refused connections)."""
    return sum(n for k, n in outcomes.items() if not k.isdigit())


def _outcome_text(outcomes: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = ["# Servers under load (`python -m benchmarks --suite server`)", "",
             f"{env['cpu']}, {env['cpu_count']} cores, load average {env['loadavg'][0]:.1f} at start, "
             f"{env.get('loadavg_end', env['loadavg'])[0]:.1f} at end. {result['clients']} clients at once on "
             f"127.0.0.1 (threads of the benchmark process, fresh connection per request, "
             f"{result['requests_per_client']} rounds each), {result['repeats']} round(s) per server, medians; "
             f"memory: the server process's peak resident set (VmHWM). Big bodies: {result['big_body_mb']:.0f} MB of "
             "JSON (`encode`, 220 images 64x64x3).", "",
             "| server | scenario | answered | no answer (reset, timeout) | p50 ms | p99 ms | peak RSS MB (idle) |",
             "|---|---|---|---:|---:|---:|---|"]
    for name, s in result["servers"].items():
        c, d = s["contract"], s["demo"]
        lat = next(iter(c["small"].get("latency_ms", {}).values()), {"p50": float("nan"), "p99": float("nan")})
        lines.append(f"| {name} | contract: small `:predict` | {_outcome_text(c['small']['outcomes'])} | "
                     f"{failures(c['small']['outcomes'])} | {lat['p50']:.0f} | {lat['p99']:.0f} | "
                     f"{c['small']['peak_rss_mb']:.0f} ({c['idle_rss_mb']:.0f}) |")
        for key, label in (("big_x1", "one 57 MB body"), ("big_x4", "four 57 MB bodies at once")):
            lines.append(f"| {name} | contract: {label} | {_outcome_text(c[key]['outcomes'])} | "
                         f"{failures(c[key]['outcomes'])} | | | +{c[key]['peak_growth_mb']:.0f} over its RSS before |")
        for path, q in d.get("latency_ms", {}).items():
            lines.append(f"| {name} | serve-demo: GET {path} | | | {q['p50']:.0f} | {q['p99']:.0f} | |")
        lines.append(f"| {name} | serve-demo: both GETs | {_outcome_text(d['outcomes'])} | {failures(d['outcomes'])} "
                     f"| | | {d['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def summary_rows(result: dict) -> list[list[str]]:
    """Rows of the one summary table: unanswered requests, latency and peak memory of both servers, against the
    baseline commit when it was measured."""
    names = list(result["servers"])
    this = result["servers"][THIS]
    base = result["servers"][names[1]] if len(names) > 1 else None

    def row(label, measure, value, baseline):
        ratio = f"{value / baseline:.2f}x" if baseline not in (None, 0) and value else ""
        return [label, measure, f"{value:.0f}", "" if baseline is None else f"{baseline:.0f}", ratio]

    def latency(part, path, q):
        got = part.get("latency_ms", {}).get(path)
        return float("nan") if got is None else got[q]

    n, predict = result["clients"], f"/v1/models/{MODEL}:predict"
    rows = []
    for kind, part, path in (("contract server", "small", predict), ("serve-demo", None, "/decoder.onnx")):
        mine = this["contract"]["small"] if part else this["demo"]
        theirs = None if base is None else base["contract"]["small"] if part else base["demo"]
        total = sum(mine["outcomes"].values())
        rows.append(row(f"{kind} {n} clients", f"requests without an answer (resets, timeouts), of {total}",
                        failures(mine["outcomes"]), theirs and failures(theirs["outcomes"])))
        for q in ("p50", "p99"):
            where = "`:predict`" if part else "GET /decoder.onnx (8 MiB)"
            rows.append(row(f"{kind} {n} clients", f"{q} ms of the answered, {where}", latency(mine, path, q),
                            theirs and latency(theirs, path, q)))
        rows.append(row(f"{kind} {n} clients", "peak RSS MB", mine["peak_rss_mb"], theirs and theirs["peak_rss_mb"]))
    for key, label in (("big_x1", "1 body"), ("big_x4", "4 bodies at once")):
        rows.append(row(f"contract server {result['big_body_mb']:.0f} MB body", f"peak RSS growth MB, {label}",
                        this["contract"][key]["peak_growth_mb"], base and base["contract"][key]["peak_growth_mb"]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(REQUESTS), default="quick")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline-ref", help="also measure the servers of this git commit")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    result = run(args.size, args.repeats, baseline_ref=args.baseline_ref)
    result["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["command"] = "python -m benchmarks.server_load " + " ".join(argv if argv is not None else sys.argv[1:])
    _, md = write_result("server_load", result, to_markdown(result), args.out)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
