"""The class-conditional VAEGAN (model.num_classes > 0): the label on the encoder's features and the decoder's z,
the projection discriminator against NumPy, training on (images, labels), the .keras round trip, the unchanged
unconditional networks, and the CLI (train --conditional, sample --class)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.errors import ConfigError
from keras_vae.models.patchgan import LabelProjection
from tests.support.vaegan import images, make

K = 3


@pytest.fixture(scope="module")
def conditional():
    """A fresh conditional VAEGAN shared by the read-only tests (a test that changes a weight puts it back)."""
    return make(model={"num_classes": K})


def _labels(n, seed=0):
    return np.random.default_rng(seed).integers(0, K, n)


def test_projection_layer_matches_numpy():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    layer = LabelProjection(K)
    layer.build([(None, 3, 5, 6), (None, K)])
    embedding = rng.normal(size=(K, 6)).astype(np.float32)
    layer.embedding.assign(embedding)
    got = np.asarray(layer([features, np.eye(K, dtype=np.float32)[labels]]))
    expected = np.einsum("bhwc,bc->bhw", features, embedding[labels])[..., None]  # <e(y), phi_p(x)> per patch
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _numpy_class_population_kl(mean, log_var, labels, variance):
    """sum_c (n_c/n) KL(N(m_c, S) || N(0, I)) - 1/2 C tr(S_means)/n, S pooled within classes (n - C dof)."""
    n, d = mean.shape
    classes = np.unique(labels)
    class_means = {c: mean[labels == c].mean(0) for c in classes}
    centred = mean - np.stack([class_means[c] for c in labels])
    within = centred.T @ centred / (n - len(classes))
    mean_part = 0.5 * sum(np.sum(labels == c) * class_means[c] @ class_means[c] for c in classes) / n
    mean_part -= 0.5 * len(classes) * np.trace(within) / n
    if variance == "covariance":
        s = within + np.diag(np.exp(log_var).mean(0)) + 1e-6 * np.eye(d)
        return mean_part + 0.5 * (np.trace(s) - d - np.linalg.slogdet(s)[1]), mean_part
    s2 = np.diag(within) + (np.exp(log_var).mean(0) if variance == "mixture" else 0.0) + 1e-6
    return mean_part + 0.5 * np.sum(s2 - 1 - np.log(s2)), mean_part


@pytest.mark.parametrize("variance", ["means", "mixture", "covariance"])
def test_per_class_population_kl_matches_numpy(variance):
    from keras_vae.models.vaegan import class_population_kl

    rng = np.random.default_rng(0)
    mean = (rng.normal(size=(12, 4)) + 1.0).astype(np.float32)
    log_var = (0.3 * rng.normal(size=(12, 4))).astype(np.float32)
    labels = np.array([0, 0, 0, 2, 2, 2, 2, 2, 0, 2, 2, 0])  # class 1 absent: C = 2
    kl, mean_part = class_population_kl(mean, log_var, np.eye(K, dtype=np.float32)[labels], variance)
    expected_kl, expected_mean = _numpy_class_population_kl(mean.astype(np.float64), log_var, labels, variance)
    assert float(kl) == pytest.approx(expected_kl, rel=1e-5)
    assert float(mean_part) == pytest.approx(expected_mean, rel=1e-5)


def test_discriminator_logit_is_the_unconditional_logit_plus_the_projection_on_its_last_features(conditional):
    d = conditional.discriminator
    assert [tuple(t.shape) for t in d.inputs] == [(None, 16, 16, 1), (None, K)]
    x = images(4)
    one_hot = lambda y: np.eye(K, dtype=np.float32)[y]  # noqa: E731
    # zero-initialized embedding: a fresh conditional discriminator ignores the label
    np.testing.assert_array_equal(np.asarray(d([x, one_hot([0, 1, 2, 0])])), np.asarray(d([x, one_hot([1, 1, 1, 1])])))
    embedding = np.random.default_rng(1).normal(size=(K, 4)).astype(np.float32)
    d.get_layer("label_projection").embedding.assign(embedding)
    projection = d.get_layer("label_projection").embedding
    # phi(x): the features entering the last conv (dropout is the identity in inference mode)
    phi = np.asarray(keras.Model(d.inputs[0], d.get_layer("dropout0").output)(x, training=False))
    ya, yb = np.array([0, 1, 2, 0]), np.array([2, 0, 1, 1])
    difference = np.asarray(d([x, one_hot(ya)], training=False)) - np.asarray(d([x, one_hot(yb)], training=False))
    expected = np.einsum("bhwc,bc->bhw", phi, embedding[ya] - embedding[yb])[..., None]
    projection.assign(np.zeros_like(embedding))  # the shared model as it was
    np.testing.assert_allclose(difference, expected, rtol=1e-4, atol=1e-4)


def test_label_enters_the_decoder_beside_z_and_changes_the_image(conditional):
    model = conditional
    d = model.latent_dim
    z = np.random.default_rng(2).normal(size=(2, d)).astype(np.float32)
    first = keras.Model(model.decoder.inputs, model.decoder.get_layer("from_latent").output)
    kernel = np.asarray(model.decoder.get_layer("from_latent").kernel)  # [(D + K), units]
    eye = np.eye(K, dtype=np.float32)
    difference = np.asarray(first([z, eye[[0, 0]]])) - np.asarray(first([z, eye[[2, 1]]]))
    np.testing.assert_allclose(difference, kernel[d + 0] - kernel[[d + 2, d + 1]], rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(np.asarray(model.decode(z, labels=[0, 0])) - np.asarray(model.decode(z, labels=[2, 1])))) > 1e-4
    assert [tuple(t.shape) for t in model.encoder.inputs] == [(None, 16, 16, 1), (None, K)]


def test_conditional_networks_add_exactly_the_label_weights_to_the_unconditional_ones(conditional):
    plain = make()
    for name in ("encoder", "decoder", "discriminator"):
        a, b = getattr(plain, name), getattr(conditional, name)
        assert len(a.inputs) == 1
        shapes_a = {w.path: tuple(w.shape) for w in a.weights}
        shapes_b = {w.path: tuple(w.shape) for w in b.weights}
        changed = {p for p in shapes_a if shapes_a[p] != shapes_b.get(p)}
        extra = {p: s for p, s in shapes_b.items() if p not in shapes_a}
        expected_changed = {"encoder": {"mean/kernel", "log_var/kernel"}, "decoder": {"from_latent/kernel"},
                            "discriminator": set()}[name]
        assert changed == expected_changed, (name, changed)
        for path in changed:  # K more input rows
            assert shapes_b[path] == (shapes_a[path][0] + K, shapes_a[path][1])
        assert extra == ({"label_projection/embedding": (K, 4)} if name == "discriminator" else {}), extra


def test_conditional_training_lowers_the_loss_and_needs_labels():
    model = make(model={"num_classes": K, "disc_dropout": 0.0}, loss={"sample_posterior": False})
    x, y = tf.constant(images(16)), tf.constant(_labels(16))
    losses = []
    for _ in range(6):
        model.reset_metrics()  # each step's own loss (batch statistics, as in training)
        losses.append(float(model.train_step((x, y))["loss"]))
    # the reconstruction term (weight 50 against an MAE near 0.6) dominates; 6 Adam steps at 1e-3 on one
    # batch take the loss down step after step, by more than 5% in all
    assert losses[-1] < 0.95 * losses[0] and all(b < a for a, b in zip(losses, losses[1:])), losses
    with pytest.raises(ConfigError, match="class-conditional.*labels"):
        model.train_step(x)


def test_keras_file_round_trip_with_labels(tmp_path):
    model = make(model={"num_classes": K, "disc_dropout": 0.0}, loss={"sample_posterior": False})
    x, y = images(8), _labels(8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "cvaegan.keras")
    loaded = keras.saving.load_model(tmp_path / "cvaegan.keras")
    assert loaded.conditional and loaded.num_classes == K
    np.testing.assert_array_equal(np.asarray(loaded.sample(4, seed=3, label=2)), np.asarray(model.sample(4, seed=3, label=2)))
    for a, b in zip(model.encode(x, labels=y), loaded.encode(x, labels=y)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    inputs = [tf.constant(x), model.label_one_hot(y)]
    np.testing.assert_array_equal(np.asarray(loaded.discriminator(inputs)), np.asarray(model.discriminator(inputs)))
    diagnostics = loaded.extra_diagnostics(x, labels=y)
    assert set(diagnostics) == {"disc_accuracy_real", "disc_accuracy_reconstructed"}
    with pytest.raises(ConfigError, match="pass the labels"):
        loaded.reconstruct(x)


def _batch_norm_statistics(network) -> list[np.ndarray]:
    return [np.asarray(w) for w in network.weights if w.path.endswith(("moving_mean", "moving_variance"))]


@pytest.mark.slow
def test_batch_norm_refresh_takes_labelled_batches():
    # recompute_batch_norm on (images, labels) pairs: the encoder's BatchNorms come before the label joins (its
    # bottleneck features), so their statistics do not depend on the labels; the decoder's come after the label
    # joins z, so other labels give other statistics; the average is over the batches passed
    x = images(16)
    batches = [(x[:8], _labels(8, 1)), (x[8:], _labels(8, 2))]
    model = make(model={"num_classes": K, "disc_dropout": 0.0})
    assert model.recompute_batch_norm(iter(batches), seed=0) == 2
    encoder, decoder = _batch_norm_statistics(model.encoder), _batch_norm_statistics(model.decoder)
    assert encoder and decoder and all(np.isfinite(s).all() for s in encoder + decoder)
    assert any(not np.allclose(s, 0.0) and not np.allclose(s, 1.0) for s in decoder)  # not the initial 0 / 1
    other = [(images_, (labels + 1) % K) for images_, labels in batches]
    assert model.recompute_batch_norm(iter(other), seed=0) == 2
    for a, b in zip(encoder, _batch_norm_statistics(model.encoder)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(decoder, _batch_norm_statistics(model.decoder)))
    with pytest.raises(ConfigError, match=r"\(images, labels\) batches for a class-conditional model"):
        model.recompute_batch_norm(iter([x[:8]]), seed=0)
    with pytest.raises(ConfigError, match=r"\(images, labels\) batches for a class-conditional model"):
        make().recompute_batch_norm(iter(batches), seed=0)


@pytest.mark.slow
def test_cli_train_conditional_vaegan_then_sample_class(tmp_path):
    from keras_vae.cli import main
    from keras_vae.runs.folder import load_run
    from keras_vae.utils.files import read_json
    from keras_vae.utils.images import to_uint8

    run = tmp_path / "cond"
    assert main(["train", "--preset", "tiny", "--conditional", "--out", str(run), "--quiet"]) == 0
    assert read_json(run / "config.json")["model"]["num_classes"] == 10 and (run / "samples.png").is_file()
    final = read_json(run / "metrics.json")["final"]
    assert "disc_accuracy_real" in final["diagnostics"]
    from keras_vae.training.after_fit import RECOMPUTE_EXAMPLES
    from keras_vae.training.class_samplers import labelled_datasets

    config, _ = load_run(run)  # the BatchNorm refresh: the first RECOMPUTE_EXAMPLES training images, in batches
    train_batches = sum(1 for _ in labelled_datasets(config).train)
    expected = min(train_batches, -(-RECOMPUTE_EXAMPLES // config.train.batch_size))
    assert final["batch_norm"] == {"recomputed_from_batches": expected, "mode": "batch"}
    assert (run / "samplers" / "classes.json").is_file()  # fitted by training: sample --class draws from them
    assert main(["sample", str(run), "--class", "7", "--n", "5", "--out", str(tmp_path / "s.npz")]) == 0
    _, model = load_run(run)
    assert model.conditional and model.num_classes == 10
    from keras_vae.sampling.classes import load_class_sampler
    from keras_vae.sampling.draw import draw_samples

    expected = draw_samples(model, 5, seed=0, latent_sampler=load_class_sampler(run, 7, model.latent_dim),
                            labels=np.full(5, 7))
    with np.load(tmp_path / "s.npz") as saved:
        np.testing.assert_array_equal(saved["images"], to_uint8(expected))
    # without --class the classes take turns, each from its own sampler: rows 7 and 17 are `--class 7 --n 2`
    assert main(["sample", str(run), "--n", "20", "--out", str(tmp_path / "all.npz")]) == 0
    assert main(["sample", str(run), "--class", "7", "--n", "2", "--out", str(tmp_path / "sevens.npz")]) == 0
    with np.load(tmp_path / "all.npz") as every, np.load(tmp_path / "sevens.npz") as sevens:
        assert str(every["sampler"]) == "class-samplers"
        np.testing.assert_array_equal(every["images"][7::10], sevens["images"])
        assert not np.array_equal(every["images"][6::10], sevens["images"])
