"""Shared helpers of the benchmarks: interleaved repeats, medians, environment, atomic result files."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def time_calls(fn: Callable[[], object], calls: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """(wall ms, process CPU ms) of each of ``calls`` calls of ``fn`` after ``warmup`` untimed ones.

    CPU time counts every thread of this process (spinning included). On a machine shared with other
    work, the scheduler shares the cores per runnable thread, so wall times favour whoever runs more
    threads; CPU time per call is the cost that contention inflates least.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


def median(values) -> float:
    return float(statistics.median(values))


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def environment() -> dict:
    """What the numbers were measured on (CPU model and flags that matter, load average, versions)."""
    cpu, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu.strip():
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if not cpu:
        cpu = platform.machine()
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg": list(os.getloadavg()),
            "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"})}


def write_result(name: str, result: dict, markdown: str, out: Path = RESULTS) -> tuple[Path, Path]:
    """Write ``name``.json and ``name``.md under ``out`` atomically (temporary file + rename)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"{name}.json", out / f"{name}.md"
    for path, text in zip(paths, (json.dumps(result, indent=2) + "\n", markdown)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths
