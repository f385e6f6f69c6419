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


def time_calls(fn: Callable[[], object], calls: int, warmup: int = 1) -> list[float]:
    """Wall times (ms) of ``calls`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each measurement once per round, round after round (A B C A B C ...): {name: [value per round]}.

    Interleaving spreads the machine's changing load (other processes) over every variant alike;
    report the median over rounds.
    """
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            out[name].append(float(fn()))
    return out


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
