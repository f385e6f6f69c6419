"""keras_vae.training.precision: the hardware detection behind --precision auto (no TensorFlow needed)."""
from __future__ import annotations

import pytest

from keras_vae.config import RunConfig, TrainConfig, merge
from keras_vae.errors import ConfigError
from keras_vae.training.precision import PRECISION_CHOICES, cpu_flags, resolve_precision

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
flags\t\t: fpu
"""
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 sve\n"


def test_cpu_flags_reads_the_first_cpu():
    assert {"avx2", "avx512_bf16", "amx_bf16"} <= cpu_flags(XEON) and "fma" not in cpu_flags(XEON)
    assert cpu_flags(EPYC) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert cpu_flags(ARM) == {"fp", "asimd", "bf16", "sve"}
    assert cpu_flags("") == set()


@pytest.mark.parametrize("flags,gpus,want", [
    (cpu_flags(XEON), [], "mixed_bfloat16"),        # AVX512-BF16 / AMX CPU, no GPU
    ({"amx_bf16"}, [], "mixed_bfloat16"),
    ({"avx512_bf16"}, [], "mixed_bfloat16"),
    (cpu_flags(EPYC), [], "float32"),                # AVX2 only: bf16 would be emulated (10x slower)
    (cpu_flags(ARM), [], "float32"),                 # not an x86 flag we trust
    (set(), [(8, 0)], "mixed_bfloat16"),             # A100
    (set(), [(9, 0), (8, 6)], "mixed_bfloat16"),     # H100 + RTX 30xx
    (cpu_flags(XEON), [(7, 5)], "float32"),          # T4: the GPU does the work, and it has no bf16
    (set(), [(9, 0), (7, 0)], "float32"),            # one slow GPU decides for the strategy
])
def test_auto_follows_the_hardware(flags, gpus, want):
    policy, reason = resolve_precision("auto", flags=flags, gpus=gpus)
    assert policy == want
    assert reason.startswith("auto: ")


@pytest.mark.parametrize("requested", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_explicit_choice_is_kept_whatever_the_hardware(requested):
    for flags in (cpu_flags(XEON), cpu_flags(EPYC)):
        assert resolve_precision(requested, flags=flags, gpus=[]) == (requested, "requested")


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="'float64' is not one of"):
        resolve_precision("float64", flags=set(), gpus=[])
    with pytest.raises(ConfigError, match="unknown precision 'bf16'"):
        merge(RunConfig(), {"train": {"precision": "bf16"}})


def test_auto_is_the_default_and_a_valid_choice():
    assert TrainConfig().precision == "auto" and PRECISION_CHOICES[0] == "auto"
    assert merge(RunConfig(), {"train": {"precision": "float32"}}).train.precision == "float32"
