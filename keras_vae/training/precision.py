"""Choosing the Keras dtype policy: ``float32``, ``mixed_bfloat16``, ``mixed_float16`` or ``auto``.

``auto`` picks ``mixed_bfloat16`` only where bfloat16 arithmetic is native:
- with GPUs: every visible GPU has compute capability >= 8.0 (Ampere and later have bf16 tensor cores);
- without GPUs: the CPU reports ``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo (oneDNN then runs
  bf16 matmuls and convolutions natively; measured 1.63x faster training at celeba-64 here).
Everything else gets ``float32``: on an AVX2-only CPU bf16 is emulated and training ran 10x slower
(shared/NOTES.md). ``mixed_float16`` is never chosen automatically (it needs loss scaling and its
range is narrow); ask for it explicitly. The choice and its reason are logged by ``train``.

Pure Python: GPU facts come from TensorFlow only inside ``detect_gpus`` (imported lazily).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from keras_vae.choices import PRECISIONS as PRECISION_CHOICES
from keras_vae.errors import ConfigError, choices

log = logging.getLogger(__name__)

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
GPU_BF16_MIN_CAPABILITY = (8, 0)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (default: /proc/cpuinfo; empty set if unreadable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):  # x86 / Arm spelling
            return set(value.split())
    return set()


def detect_gpus() -> list[tuple[int, int]]:
    """Compute capabilities (major, minor) of the GPUs TensorFlow sees; (0, 0) where it reports none."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


def resolve_precision(requested: str, *, flags: set[str] | None = None,
                      gpus: Sequence[tuple[int, int]] | None = None) -> tuple[str, str]:
    """(Keras dtype policy, why) for ``requested`` in PRECISION_CHOICES; ``auto`` decides from the hardware.

    ``flags`` (CPU flags) and ``gpus`` (compute capabilities) default to this machine's.
    """
    if requested not in PRECISION_CHOICES:
        raise ConfigError(f"precision {requested!r} is not one of {choices(PRECISION_CHOICES)}")
    if requested != "auto":
        return requested, "requested"
    gpus = detect_gpus() if gpus is None else list(gpus)
    if gpus:
        slow = [cc for cc in gpus if tuple(cc) < GPU_BF16_MIN_CAPABILITY]
        if slow:
            return "float32", (f"auto: GPU compute capability {'.'.join(map(str, slow[0]))} < "
                               f"{'.'.join(map(str, GPU_BF16_MIN_CAPABILITY))} has no native bfloat16")
        return "mixed_bfloat16", f"auto: {len(gpus)} GPU(s) with compute capability >= 8.0 (native bfloat16)"
    flags = cpu_flags() if flags is None else set(flags)
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if found:
        return "mixed_bfloat16", f"auto: no GPU; CPU has {', '.join(found)} (native bfloat16)"
    return "float32", f"auto: no GPU and no {' or '.join(CPU_BF16_FLAGS)} CPU flag (bfloat16 would be emulated)"
