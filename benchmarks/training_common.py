"""Helpers shared by the training-speed suites: timed rounds with wall and process CPU time, peak memory.

Every timed call reports both wall seconds and this process's CPU seconds (all threads). On the
shared 2-core machine the scheduler splits the cores among every runnable thread of every process,
so wall time measures our share as much as our cost; CPU time per image is the number that other
people's work inflates least (it still grows somewhat under contention: caches, SMT siblings).
"""
from __future__ import annotations

import os
import resource
import time
from typing import Callable

from benchmarks.common import environment, median


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, process CPU s) of one call of ``fn``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def interleaved(calls: dict[str, Callable[[], object]], images: int, repeats: int, log=print,
                label: str = "") -> dict[str, dict]:
    """Run every callable once per round (A B C, A B C, ...); each processes ``images`` images.

    Returns, per name, the per-round images/s (wall) and CPU ms per image, and their medians.
    """
    rounds: dict[str, dict[str, list[float]]] = {k: {"img_per_s": [], "cpu_ms_per_img": []} for k in calls}
    for r in range(repeats):
        for name, fn in calls.items():
            wall, cpu = timed(fn)
            rounds[name]["img_per_s"].append(images / wall)
            rounds[name]["cpu_ms_per_img"].append(1e3 * cpu / images)
        log(f"[{label}] round {r + 1}/{repeats}: " + ", ".join(
            f"{k} {v['img_per_s'][-1]:.1f} img/s {v['cpu_ms_per_img'][-1]:.2f} CPU ms/img" for k, v in rounds.items()))
    return {k: {"img_per_s": median(v["img_per_s"]), "cpu_ms_per_img": median(v["cpu_ms_per_img"]), "rounds": v}
            for k, v in rounds.items()}


def paired_ratios(a: dict, b: dict) -> dict[str, float]:
    """Median over rounds of a/b speed and of b/a CPU per image (both > 1 when a is faster): paired
    per round, so both members of a pair share that round's machine load."""
    ra, rb = a["rounds"], b["rounds"]
    return {"speed": median([x / y for x, y in zip(ra["img_per_s"], rb["img_per_s"])]),
            "cpu": median([y / x for x, y in zip(ra["cpu_ms_per_img"], rb["cpu_ms_per_img"])])}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def current_rss_bytes() -> int:
    """Resident set size now (from /proc/self/statm; 0 where unavailable)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def shared_machine_note(env: dict) -> str:
    """The sentence every training-speed result carries about the machine it ran on."""
    start, end = env["loadavg"][0], env.get("loadavg_end", env["loadavg"])[0]
    return (f"{env['cpu']}, {env['cpu_count']} cores ({', '.join(env.get('cpu_flags', [])) or 'no listed flags'}). "
            f"The machine was shared with about 6 other engineers' jobs (load average {start:.1f} at start, "
            f"{end:.1f} at end): wall-clock img/s are inflated by contention, process CPU time per image much "
            "less so; compare numbers of the same run.")


def finish_environment(env: dict | None = None) -> dict:
    env = dict(env or environment())
    env["loadavg_end"] = list(os.getloadavg())
    return env
