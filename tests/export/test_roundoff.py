"""keras_vae/export/roundoff.py: parity bounds from round-off, checked against a NumPy float32/bfloat16 simulation.

The simulated network is a deep residual MLP whose weights amplify a small change, like a one-step-trained
encoder. It is evaluated exactly (float64), in float32 with BLAS sums, in float32 adding one term after the
other (``cumsum``: the least accurate order) and in simulated mixed bfloat16 (inputs, weights and every stored
result rounded to bfloat16, sums in float32). Every pair of evaluations must differ by less than the bound
derived for their two arithmetics, and a one-percent error in one weight tensor must exceed it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from keras_vae.export import roundoff as ro
from keras_vae.export.parity import uint8_levels


def bfloat16(x) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), returned as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def make_network(rng, depth: int, width: int, gain: float):
    """[(kind, size, array)]: per block a kernel (fan-in ``width``), a scale and a shift; then a linear head."""
    params = []
    for _ in range(depth):
        params.append(("kernel", width, rng.normal(0.0, gain * math.sqrt(2.0 / width), (width, width))))
        params.append(("elementwise", 1, rng.uniform(0.5, 1.5, width)))
        params.append(("elementwise", 1, rng.normal(0.0, 0.1, width)))
    params.append(("kernel", width, rng.normal(0.0, math.sqrt(1.0 / width), (width, 8))))
    return params


def forward(params, x, mode: str) -> np.ndarray:
    """h <- h + relu(scale * (h @ W) + shift) per block, then the head; in one of four arithmetics."""
    exact = mode == "float64"
    store = bfloat16 if mode == "bfloat16" else (lambda a: np.asarray(a, np.float64 if exact else np.float32))

    def dot(h, w):
        if mode == "sequential":  # recursive summation in float32, one term after the other
            return np.cumsum(h[:, :, None] * w[None], axis=1, dtype=np.float32)[:, -1]
        return h @ w  # float64, or float32 BLAS (bfloat16 values, float32 sums)

    weights = [store(w) for _, _, w in params]
    h = store(x)
    for i in range(0, len(weights) - 1, 3):
        w, scale, shift = weights[i:i + 3]
        y = store(store(store(dot(h, w)) * scale) + shift)
        h = store(h + np.maximum(y, 0))
    return store(dot(h, weights[-1])).astype(np.float64)


def moved_output(params, x, arithmetics) -> np.ndarray:
    """The exact output with every weight moved by its relative_perturbation (random signs), as the exporter does."""
    rng = np.random.default_rng(ro.PERTURBATION_SEED)
    moved = [(kind, size, ro.perturb(w, ro.relative_perturbation(kind, size, arithmetics), rng))
             for kind, size, w in params]
    return forward(moved, x, "float64")


GEOMETRIES = [(12, 96, 1.3, 0), (12, 96, 1.3, 1), (4, 512, 1.0, 2), (24, 32, 0.7, 3)]


@pytest.mark.parametrize("depth, width, gain, seed", GEOMETRIES)
def test_bound_covers_float32_and_bfloat16_evaluations(depth, width, gain, seed):
    rng = np.random.default_rng(seed)
    params = make_network(rng, depth, width, gain)
    x = rng.normal(size=(16, width))
    exact = forward(params, x, "float64")
    runs = {mode: forward(params, x, mode) for mode in ("float32", "sequential", "bfloat16")}
    runs["float64"] = exact
    pairs = [("float32", "float64", [ro.FLOAT32]),
             ("sequential", "float64", [ro.FLOAT32]),
             ("sequential", "float32", [ro.FLOAT32, ro.FLOAT32]),
             ("bfloat16", "float64", [ro.MIXED_BFLOAT16]),
             ("bfloat16", "float32", [ro.MIXED_BFLOAT16, ro.FLOAT32])]
    for a, b, arithmetics in pairs:
        diff = float(np.max(np.abs(runs[a] - runs[b])))
        bound = ro.bound(exact, moved_output(params, x, arithmetics), arithmetics)
        print(f"{a} vs {b}: max abs diff {diff:.3g}, bound {bound:.3g} ({diff / bound:.2f})")
        assert 0 < diff <= bound, (a, b, diff, bound)
    # a float32 bound is float32-sized, not a blanket: a small multiple of the worst float32 difference
    bound32 = ro.bound(exact, moved_output(params, x, [ro.FLOAT32, ro.FLOAT32]), [ro.FLOAT32, ro.FLOAT32])
    assert bound32 < 100 * np.max(np.abs(runs["sequential"] - runs["float32"]))


@pytest.mark.parametrize("depth, width, gain, seed", GEOMETRIES)
def test_bound_catches_a_wrong_weight(depth, width, gain, seed):
    """One weight tensor off by one percent, or two scales swapped: far outside the float32 bound."""
    rng = np.random.default_rng(seed)
    params = make_network(rng, depth, width, gain)
    x = rng.normal(size=(16, width))
    pair = [ro.FLOAT32, ro.FLOAT32]
    bound = ro.bound(forward(params, x, "float64"), moved_output(params, x, pair), pair)
    good = forward(params, x, "float32")
    for index, change in ((3 * (depth // 2), lambda w: w * 1.01), (len(params) - 1, lambda w: w * 1.01),
                          (1, lambda w: w[::-1].copy())):
        broken = [(k, n, change(w) if i == index else w) for i, (k, n, w) in enumerate(params)]
        diff = float(np.max(np.abs(forward(broken, x, "float32") - good)))
        assert diff > 10 * bound, (index, diff, bound)


def test_relative_perturbation_formula():
    u = 2.0**-24
    assert ro.relative_perturbation("kernel", 1152, [ro.FLOAT32]) == pytest.approx(math.sqrt(1152) * u + 4 * u)
    # mixed bfloat16: bf16 tensors (2^-8), float32 sums; two arithmetics add
    assert ro.relative_perturbation("kernel", 64, [ro.MIXED_BFLOAT16, ro.FLOAT32]) == pytest.approx(
        8 * u + 4 * 2.0**-8 + 8 * u + 4 * u)
    assert ro.relative_perturbation("elementwise", 1, [ro.FLOAT32]) == pytest.approx(8 * u)
    assert ro.relative_perturbation("normalization", 65536, [ro.FLOAT32]) == pytest.approx(256 * u + 8 * u)
    with pytest.raises(ValueError, match="unknown weight kind 'conv'"):
        ro.relative_perturbation("conv", 3, [ro.FLOAT32])
    # the bound: SAMPLE_FACTOR x the largest move + the output roundings; 0 for nothing at all
    ref = np.array([0.5, -2.0])
    assert ro.bound(ref, ref + [1e-6, -3e-6], [ro.FLOAT32]) == pytest.approx(2 * 3e-6 + 8 * u * 2.0)
    assert ro.bound(np.zeros(3), np.zeros(3), [ro.FLOAT32, ro.FLOAT32]) == 0.0
    assert [uint8_levels(b) for b in (0.0, 1e-4, 1 / 255 - 1e-9, 1 / 255 + 1e-9, 0.02)] == [1, 1, 1, 2, 6]


def test_perturbation_plan_on_keras_layers_restores_every_weight():
    """Fan-ins of Dense / Conv2D / Conv2DTranspose, elementwise BatchNorm, LayerNorm reductions; ``perturbed``
    moves every weight by its rho and puts the originals back bit for bit."""
    import keras

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.LayerNormalization(axis=(1, 2), name="ln")(x_in)
    x = keras.layers.Conv2D(5, 3, padding="same", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="convt")(x)
    out = keras.layers.Dense(2, name="dense")(keras.layers.Flatten()(x))
    network = keras.Model(x_in, out)

    class Holder:  # what perturbation_plan reads: the model's encoder and decoder
        encoder, decoder = network, None

    plan = ro.perturbation_plan(Holder(), [ro.FLOAT32])
    rho = {v.path: r for v, r in plan}
    assert len(plan) == len(network.weights)
    u = 2.0**-24
    assert rho["conv/kernel"] == pytest.approx(math.sqrt(3 * 3 * 3) * u + 4 * u)
    assert rho["convt/kernel"] == pytest.approx(math.sqrt(3 * 3 * 5) * u + 4 * u)  # kernel (3, 3, out 4, in 5)
    assert rho["dense/kernel"] == pytest.approx(math.sqrt(16 * 16 * 4) * u + 4 * u)
    assert rho["conv/bias"] == rho["bn/gamma"] == rho["bn/moving_variance"] == pytest.approx(8 * u)
    assert rho["ln/gamma"] == pytest.approx(math.sqrt(64) * u + 8 * u)  # statistics over 8 x 8 values
    before = [w.numpy().copy() for w in network.weights]
    with ro.perturbed(plan):
        inside = [w.numpy().copy() for w in network.weights]
    moved = 0
    for b, i, w in zip(before, inside, network.weights):
        np.testing.assert_array_equal(w.numpy(), b)
        nonzero = b != 0  # zeros (fresh biases, moving means) stay zero: the perturbation is relative
        np.testing.assert_array_equal(i[~nonzero], 0)
        if nonzero.any():
            moved += 1
            assert np.all(i[nonzero] != b[nonzero]), w.path
            realised = np.abs(i[nonzero].astype(np.float64) / b[nonzero] - 1)  # rho, give or take the float32 rounding
            assert np.all(np.abs(realised - rho[w.path]) <= 2.0**-23), w.path
    assert moved >= 6
    with pytest.raises(RuntimeError, match="inside"):
        with ro.perturbed(plan):
            raise RuntimeError("an error inside")
    for b, w in zip(before, network.weights):
        np.testing.assert_array_equal(w.numpy(), b)
    assert ro.keras_arithmetic(Holder()) == ro.FLOAT32


def test_exports_compute_in_float32_whatever_the_training_precision(tmp_path):
    """A model built under mixed_bfloat16 computes in bfloat16 (its bound would be bfloat16's) and the exporter
    refuses it; export_run loads models inside float32_execution, which restores the caller's policy."""
    import keras

    from keras_vae.config.presets import get_preset
    from keras_vae.errors import ArtifactError
    from keras_vae.export.exporter import check_float32_model, float32_execution
    from keras_vae.models import build_model
    from keras_vae.runs.folder import load_model

    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(get_preset("tiny-vae"))
        assert ro.compute_dtype(model) == "bfloat16" and ro.keras_arithmetic(model) == ro.MIXED_BFLOAT16
        with pytest.raises(ArtifactError, match="computes in bfloat16 .* exports compute in float32"):
            check_float32_model(model)
        model.save(tmp_path / "model.keras")
        with float32_execution():
            loaded = load_model(tmp_path / "model.keras")
        assert keras.config.dtype_policy().name == "mixed_bfloat16"  # restored
        assert ro.compute_dtype(loaded) == "float32" and ro.keras_arithmetic(loaded) == ro.FLOAT32
        check_float32_model(loaded)
    finally:
        keras.config.set_dtype_policy(before)


@pytest.mark.parametrize("preset, sizes", [("celeba-64", (1, 7, 64)), ("paper-celeba-hq-256", (1, 7)), ("tiny", (1, 7, 64))])
def test_parity_batches_stop_where_an_activation_would_pass_the_budget(preset, sizes):
    """paper-256 keeps 256x256x128 float32 values (32 MiB) per image in its first stage: batch 64 would hold
    2 GiB in one tensor, so its parity runs at 1 and 7 (both also check the batch axis)."""
    from keras_vae.config.presets import get_preset
    from keras_vae.export.parity import activation_elements, parity_batch_sizes
    from keras_vae.models.resnet import build_resnet_decoder, build_resnet_encoder

    config = get_preset(preset).model

    class Holder:
        encoder, decoder = build_resnet_encoder(config), build_resnet_decoder(config)
        image_shape = tuple(config.image_shape)

    height, width, _ = config.image_shape
    assert activation_elements(Holder()) == height * width * config.stage_filters[0]
    assert parity_batch_sizes(Holder()) == sizes
