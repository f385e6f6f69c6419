"""Where an ONNX decoder spends its time: onnxruntime's profiler, per-op-type share of kernel time.

    PYTHONPATH=. python -m benchmarks.profile_onnx EXPORT_DIR/decoder.onnx [--batch 1] [--threads 1] [--runs 10]

Runs the file with ``SessionOptions.enable_profiling`` and sums the ``*_kernel_time`` events by op
type (after onnxruntime's own graph optimisations, so layout reorders show up as ReorderInput /
ReorderOutput). Shares of kernel time are what to compare between graphs; they are much less
sensitive to other processes than wall time.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np


def profile(path: str, batch: int = 1, threads: int = 1, runs: int = 10) -> dict[str, dict[str, float]]:
    """{op type: {"share": fraction of kernel time, "ms_per_run": ..., "calls_per_run": ...}}, largest first."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    z = np.random.default_rng(0).standard_normal((batch, feed.shape[1])).astype(np.float32)
    for _ in range(2 + runs):
        session.run(None, {feed.name: z})
    trace = session.end_profiling()
    try:
        with open(trace) as f:
            events = json.load(f)
    finally:
        os.remove(trace)
    total: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"]
            calls[event["args"]["op_name"]] += 1
    whole = sum(total.values()) or 1.0
    runs_seen = runs + 2
    return {op: {"share": us / whole, "ms_per_run": us / 1e3 / runs_seen, "calls_per_run": calls[op] / runs_seen}
            for op, us in sorted(total.items(), key=lambda kv: -kv[1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    print("| op | share of kernel time | ms per run | nodes |\n|---|---:|---:|---:|")
    for op, row in profile(args.path, args.batch, args.threads, args.runs).items():
        print(f"| {op} | {100 * row['share']:.1f}% | {row['ms_per_run']:.2f} | {row['calls_per_run']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
