"""CPU facts shared by the package and its serving kit (pure Python, no TensorFlow)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (sched_getaffinity where there is one, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
