"""Parity bounds from floating-point round-off: how far two correct evaluations of one network may differ.

The exporter compares every artifact (SavedModel signature, onnxruntime session) with the Keras model on
the same inputs. Correct artifacts still differ from Keras: they add the same numbers in another order
(other kernels, blocking, batch sizes, fused graphs). How much depends on the precision, on how many terms
each output sums (fan-in), on the depth and on how strongly the network amplifies a small change: a
celeba-64 encoder trained one step amplifies a one-ulp difference at its input LayerNorm about 1000-fold,
and its float32 Keras output is itself 1.3e-4 away from a float64 evaluation of the same weights (paper-256:
8e-4; onnxruntime at batch 4 there: 5e-3). One absolute tolerance cannot serve such networks and a two-layer
MLP at once, so the bound is derived per signature, output and batch from what is computed:

1. Backward error of one layer (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., Lemma 3.1
   and eq. (3.4)): a dot product of K terms computed with unit round-off u equals, in any summation order, the
   exact dot product of the terms each perturbed by a relative amount of at most ``gamma_K = K u / (1 - K u)``.
   That is the worst case; rounding errors behave like independent zero-mean variables (Higham & Mary, SIAM J.
   Sci. Comput. 41(5), 2019), and a K-term sum added one term after the other (the least accurate order;
   blocked, pairwise and vectorised sums do better) then errs like a perturbation of each term by about
   ``sqrt(K) u / sqrt(6)``. So a layer evaluated in an arithmetic (storage round-off ``u_s`` for inputs, weights
   and outputs, accumulation round-off ``u_a`` for the sums; see ``Arithmetic``) is taken as the exact layer at
   weights ``W (1 + delta)``, ``|delta| = rho`` (``relative_perturbation``):

   - kernels of Dense / Conv / ConvTranspose layers (fan-in K, ``fan_in``): ``rho = sqrt(K) u_a +
     KERNEL_ROUNDINGS u_s`` (a factor 2.4 over the one-after-the-other sum; the input, the weight and the output
     rounded to storage precision and the last-bit error of the activation that follows);
   - biases, scales, shifts and moving statistics (elementwise arithmetic): ``rho = ELEMENTWISE_ROUNDINGS u_s``;
   - a normalisation whose statistics reduce n values (LayerNorm over H x W): ``rho = sqrt(n) u_a +
     ELEMENTWISE_ROUNDINGS u_s`` on its parameters.

2. Two evaluations A and B (Keras and an artifact) are each the exact network at weights perturbed within
   ``rho_A`` and ``rho_B``, so they differ by at most the change of the network's output under a relative
   weight perturbation of ``rho_A + rho_B`` (first order). That change carries the depth, the fan-ins, the
   magnitudes of the actual activations and the network's gain; it is measured, on the compared inputs, by
   evaluating the Keras model once more with every weight moved by exactly ``rho_A + rho_B`` times a random
   sign (``perturbed``): ``delta_i = |f(W (1 + rho s)) - f(W)|_i``.

3. The bound, per output tensor::

       bound = SAMPLE_FACTOR * max_i delta_i + OUTPUT_ROUNDINGS (u_s(A) + u_s(B)) max_i |f(W)|_i

   Every weight moves by the full ``rho`` (real round-off is a random fraction of it), which leaves room for
   kernels less accurate than Keras' (onnxruntime's batched convolutions were 7x less accurate than Keras at
   paper-256); ``SAMPLE_FACTOR`` = 2 covers one random draw falling below the typical size; the second term
   is the last operations on the outputs themselves (activation, scaling to [0, 1], a few ulps each side; it
   keeps the bound positive where the perturbation changes nothing, e.g. saturated outputs).

   Measured (export.json ``max_diff_over_bound``, tests/export/test_export_presets.py): at most 0.06 for
   one-step celeba-64 runs and 0.08 for paper-256 (onnxruntime's encoder), float32 and mixed_bfloat16
   training; at most 0.17 for the tiny test models (a difference of one or two ulps of the outputs); 0.04-0.2
   in the NumPy float32/bfloat16 simulation of tests/export/test_roundoff.py.

A genuine parity break (a wrong or missing weight tensor, a wrong scaling) changes the outputs by far more:
the bound is 1e-6 to 2e-5 for the small test models, and a one-percent change of one weight tensor moves the
simulated network's outputs by more than ten times its bound (tests/export/test_roundoff.py; test_rules.py
checks such a change in encoder.onnx is refused).

The pure part (``Arithmetic``, ``relative_perturbation``, ``perturb``, ``bound``) is NumPy; tests check it against a
NumPy float32/bfloat16 simulation. ``keras_arithmetic``, ``perturbation_plan`` and ``perturbed`` apply it to a
Keras model (imported lazily).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

FLOAT32_U = 2.0**-24
BFLOAT16_U = 2.0**-8
FLOAT16_U = 2.0**-11
TENSORFLOAT32_U = 2.0**-11  # TF32: float32 with a 10-bit mantissa for the products of matmuls/convolutions

KERNEL_ROUNDINGS = 4  # input, weight and output to storage precision; the activation's last bit
ELEMENTWISE_ROUNDINGS = 8  # BatchNorm in inference: about 7 roundings (add eps, rsqrt, sub, mul, mul, add); bias: 1
OUTPUT_ROUNDINGS = 8  # per evaluation: the final activation and the scaling/clipping to [0, 1]
SAMPLE_FACTOR = 2.0
PERTURBATION_SEED = 20240917


@dataclass(frozen=True)
class Arithmetic:
    """How one runtime evaluates a network: ``storage`` = unit round-off of the tensors it stores (inputs,
    weights, layer outputs), ``accumulation`` = unit round-off of the sums inside dot products and convolutions."""

    name: str
    storage: float
    accumulation: float


FLOAT32 = Arithmetic("float32", FLOAT32_U, FLOAT32_U)
MIXED_BFLOAT16 = Arithmetic("mixed_bfloat16", BFLOAT16_U, FLOAT32_U)  # bf16 tensors, float32 accumulators
MIXED_FLOAT16 = Arithmetic("mixed_float16", FLOAT16_U, FLOAT32_U)
TENSORFLOAT32 = Arithmetic("tensorfloat32", TENSORFLOAT32_U, FLOAT32_U)  # Ampere+ GPUs with TF32 enabled


def relative_perturbation(kind: str, size: int, arithmetics: Iterable[Arithmetic]) -> float:
    """rho for one weight tensor, summed over the arithmetics of the evaluations being compared.

    ``kind``: "kernel" (``size`` = fan-in K), "elementwise" (``size`` ignored) or "normalization"
    (``size`` = number of values each statistic reduces).
    """
    total = 0.0
    for a in arithmetics:
        if kind == "kernel":
            total += math.sqrt(size) * a.accumulation + KERNEL_ROUNDINGS * a.storage
        elif kind == "elementwise":
            total += ELEMENTWISE_ROUNDINGS * a.storage
        elif kind == "normalization":
            total += math.sqrt(size) * a.accumulation + ELEMENTWISE_ROUNDINGS * a.storage
        else:
            raise ValueError(f"unknown weight kind {kind!r}: 'kernel', 'elementwise' or 'normalization'")
    return total


def random_signs(shape, rng: np.random.Generator) -> np.ndarray:
    """+1/-1 with equal probability, as float64."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def perturb(weight: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """``weight * (1 + rho * s)`` with random signs s, in the weight's dtype."""
    w = np.asarray(weight)
    return (w.astype(np.float64) * (1.0 + rho * random_signs(w.shape, rng))).astype(w.dtype)


def bound(reference: np.ndarray, perturbed: np.ndarray, arithmetics: Sequence[Arithmetic]) -> float:
    """The largest abs difference two correct evaluations (in ``arithmetics``) of the output ``reference``
    may show: ``SAMPLE_FACTOR max|perturbed - reference| + OUTPUT_ROUNDINGS sum(u_s) max|reference|``, where
    ``perturbed`` is the same output with every weight moved by its summed ``relative_perturbation`` (random signs)."""
    reference = np.asarray(reference, np.float64)
    perturbed = np.asarray(perturbed, np.float64)
    if reference.size == 0:
        return 0.0
    spread = float(np.max(np.abs(perturbed - reference)))
    rounding = OUTPUT_ROUNDINGS * sum(a.storage for a in arithmetics) * float(np.max(np.abs(reference)))
    return SAMPLE_FACTOR * spread + rounding


def describe() -> str:
    """One line for export.json: how the bounds were derived."""
    return (f"per output: {SAMPLE_FACTOR:g} max|f(W(1 + rho s)) - f(W)| + {OUTPUT_ROUNDINGS} sum(u) max|f(W)|, "
            f"random signs s; rho = sqrt(K) u_acc + {KERNEL_ROUNDINGS} u for kernels of fan-in K, "
            f"{ELEMENTWISE_ROUNDINGS} u elementwise, summed over the two compared arithmetics "
            "(keras_vae/export/roundoff.py)")


# --------------------------------------------------------------------------------- Keras models
def keras_arithmetic(model) -> Arithmetic:
    """The arithmetic a Keras model runs in here: its networks' compute dtype, and TF32 where TensorFlow
    runs float32 matmuls/convolutions on a GPU with TF32 enabled (the default on Ampere and later)."""
    import tensorflow as tf

    dtype = compute_dtype(model)
    if dtype == "bfloat16":
        return MIXED_BFLOAT16
    if dtype == "float16":
        return MIXED_FLOAT16
    if tf.config.list_logical_devices("GPU") and tf.config.experimental.tensor_float_32_execution_enabled():
        return TENSORFLOAT32
    return FLOAT32


def compute_dtype(model) -> str:
    """The least precise compute dtype among the layers with weights of the model's encoder and decoder."""
    dtypes = {layer.compute_dtype for layer in _leaf_layers(_networks(model)) if layer.weights}
    for dtype in ("float16", "bfloat16"):  # the least precise wins
        if dtype in dtypes:
            return dtype
    return "float32"


def _networks(model) -> list:
    return [n for n in (getattr(model, "encoder", None), getattr(model, "decoder", None)) if n is not None]


def _leaf_layers(networks) -> list:
    out, seen = [], set()
    for network in networks:
        for layer in network._flatten_layers(include_self=False, recursive=True):
            if id(layer) not in seen and not list(layer._flatten_layers(include_self=False, recursive=False)):
                seen.add(id(layer))
                out.append(layer)
    return out


def fan_in(layer, weight) -> tuple[str, int]:
    """(kind, size) of one weight of a leaf layer (see ``relative_perturbation``)."""
    import keras

    shape = tuple(int(d) for d in weight.shape)
    if isinstance(layer, keras.layers.LayerNormalization):
        return "normalization", max(1, math.prod(shape))  # its parameters span exactly the normalised axes
    if len(shape) < 2:
        return "elementwise", 1
    transposed = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
    if isinstance(layer, transposed):  # kernel (*k, out, in): each output sums at most prod(k) * in terms
        return "kernel", math.prod(shape[:-2]) * shape[-1]
    return "kernel", math.prod(shape[:-1])  # Dense (in, out), Conv (*k, in, out); others: an upper bound


def perturbation_plan(model, arithmetics: Sequence[Arithmetic]) -> list[tuple[Any, float]]:
    """[(variable, rho)] for every weight of the model's encoder and decoder."""
    plan, covered = [], set()
    for layer in _leaf_layers(_networks(model)):
        for weight in layer.weights:
            if id(weight) in covered:
                continue
            covered.add(id(weight))
            kind, size = fan_in(layer, weight)
            plan.append((weight, relative_perturbation(kind, size, arithmetics)))
    for network in _networks(model):  # weights a composite layer owns itself: the generic rule
        for weight in network.weights:
            if id(weight) not in covered:
                covered.add(id(weight))
                shape = tuple(int(d) for d in weight.shape)
                kind, size = ("kernel", math.prod(shape[:-1])) if len(shape) >= 2 else ("elementwise", 1)
                plan.append((weight, relative_perturbation(kind, size, arithmetics)))
    return plan


@contextlib.contextmanager
def perturbed(plan: Sequence[tuple[Any, float]], seed: int = PERTURBATION_SEED) -> Iterator[None]:
    """Within the block every variable of ``plan`` holds ``w (1 + rho s)`` (random signs, fixed seed);
    the original values are restored bit for bit afterwards, also on errors."""
    originals = [variable.numpy() for variable, _ in plan]
    rng = np.random.default_rng(seed)
    try:
        for (variable, rho), original in zip(plan, originals):
            variable.assign(perturb(original, rho, rng))
        yield
    finally:
        for (variable, _), original in zip(plan, originals):
            variable.assign(original)
