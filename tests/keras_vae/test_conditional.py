"""The class-conditional classic VAE (model.num_classes > 0): its ELBO against NumPy, labels, training,
saving, the data pipeline's labelled batches and the CLI (train --conditional, sample --class, refusals)."""
from __future__ import annotations

import numpy as np
import pytest

import keras_vae
from keras_vae.cli import main
from keras_vae.errors import ConfigError, DataError

SMALL = dict(latent_dim=2, hidden_units=(5,), image_shape=(4, 4, 1), output_bias="zero", num_classes=3)


def _softplus(a):
    return np.logaddexp(0.0, a)


def _numpy_log_weights(model, x, labels, eps):
    """log p(x|z, y) + log N(z; 0, I) - log q(z|x, y) of the MLP CVAE, [k, B], from its weights in NumPy."""
    enc = {w.path.split("/")[-2] + "/" + w.path.split("/")[-1]: np.asarray(w) for w in model.encoder.weights}
    dec = {w.path.split("/")[-2] + "/" + w.path.split("/")[-1]: np.asarray(w) for w in model.decoder.weights}
    one_hot = np.eye(model.num_classes)[labels]
    h = np.tanh(np.concatenate([x.reshape(len(x), -1), one_hot], 1) @ enc["hidden_0/kernel"] + enc["hidden_0/bias"])
    mean = h @ enc["mean/kernel"] + enc["mean/bias"]
    log_var = h @ enc["log_var/kernel"] + enc["log_var/bias"]
    z = mean + np.exp(0.5 * log_var) * eps  # [k, B, D]
    hz = np.tanh(np.concatenate([z, np.broadcast_to(one_hot, z.shape[:2] + one_hot.shape[1:])], -1)
                 @ dec["hidden_0/kernel"] + dec["hidden_0/bias"])
    logits = hz @ dec["params/kernel"] + dec["params/bias"]  # [k, B, H*W]
    flat = x.reshape(1, len(x), -1)
    log_px = np.sum(flat * logits - _softplus(logits), -1)
    log_pz = np.sum(-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi), -1)
    log_qz = np.sum(-0.5 * eps ** 2 - 0.5 * np.log(2 * np.pi) - 0.5 * log_var, -1)
    return log_px + log_pz - log_qz


def test_conditional_log_weights_match_a_numpy_reference():
    import tensorflow as tf

    model = keras_vae.VAE(**SMALL, seed=1)
    rng = np.random.default_rng(0)
    x = (rng.random((4, 4, 4, 1)) > 0.5).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    eps = rng.standard_normal((3, 4, 2)).astype(np.float32)
    got = model._log_weights(tf.constant(x), tf.constant(eps), model.label_one_hot(labels)).numpy()
    np.testing.assert_allclose(got, _numpy_log_weights(model, x, labels, eps), rtol=1e-4, atol=1e-3)
    # the label matters: another class gives other weights
    other = model._log_weights(tf.constant(x), tf.constant(eps), model.label_one_hot((labels + 1) % 3)).numpy()
    assert np.max(np.abs(other - got)) > 1e-3


def test_label_one_hot_shapes_and_refusals():
    model = keras_vae.VAE(**SMALL)
    assert model.conditional and model.num_classes == 3
    one_hot = np.asarray(model.label_one_hot([2, 0]))
    np.testing.assert_array_equal(one_hot, [[0, 0, 1], [1, 0, 0]])
    assert [tuple(i.shape) for i in model.encoder.inputs] == [(None, 4, 4, 1), (None, 3)]
    assert [tuple(i.shape) for i in model.decoder.inputs] == [(None, 2), (None, 3)]
    assert model.sample(5, label=1).shape == (5, 4, 4, 1)
    np.testing.assert_array_equal(model.sample_labels(4), [0, 1, 2, 0])
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        model.label_one_hot([3])
    with pytest.raises(ConfigError, match="pass the labels"):
        model.encode(np.zeros((1, 4, 4, 1), np.float32))
    plain = keras_vae.VAE(**{**SMALL, "num_classes": 0})
    assert plain.sample_labels(3) is None
    with pytest.raises(ConfigError, match="not class-conditional"):
        plain.sample(2, label=1)


def test_config_validation_and_unchanged_unconditional_networks():
    for bad in (1, -1, True):
        with pytest.raises(ConfigError, match="num_classes"):
            keras_vae.VAE(**{**SMALL, "num_classes": bad})
    from keras_vae.config import ModelConfig

    assert ModelConfig().num_classes == 0
    plain = keras_vae.VAE(latent_dim=4)
    assert len(plain.encoder.inputs) == 1 and len(plain.decoder.inputs) == 1
    assert [tuple(w.shape) for w in plain.encoder.weights][:2] == [(784, 500), (500,)]
    conditional = keras_vae.VAE(latent_dim=4, num_classes=10)
    assert [tuple(w.shape) for w in conditional.encoder.weights][:1] == [(794, 500)]


def test_tiny_conditional_training_lowers_the_loss_and_round_trips_through_keras_file(tmp_path):
    from keras_vae.data.embedded import load_embedded_mnist

    images, labels = load_embedded_mnist()
    x = (images[:300, ..., None] / 255.0).astype(np.float32)
    y = labels[:300].astype(np.int64)
    model = keras_vae.VAE(latent_dim=4, hidden_units=(64,), num_classes=10, output_bias="zero", seed=0)
    model.compile()
    history = model.fit(x, y, epochs=4, batch_size=50, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 20.0, losses
    path = tmp_path / "cvae.keras"
    model.save(path)
    import keras

    loaded = keras.saving.load_model(path)
    assert loaded.model_config.num_classes == 10
    np.testing.assert_array_equal(np.asarray(loaded.sample(6, seed=2, label=7)), np.asarray(model.sample(6, seed=2, label=7)))
    np.testing.assert_allclose(np.asarray(loaded.elbo(x[:8], seed=1, labels=y[:8])),
                               np.asarray(model.elbo(x[:8], seed=1, labels=y[:8])), rtol=0, atol=0)


def test_pipeline_yields_labelled_batches_and_refuses_unlabelled_sources():
    from keras_vae.data.arrays import array_source
    from keras_vae.data.pipeline import build

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 4, 4), dtype=np.uint8)
    labels = np.arange(40) % 3
    kwargs = dict(image_shape=(4, 4, 1), value_range=(0.0, 1.0), batch_size=8, seed=0)
    data = build(array_source(images, labels), labels=True, **kwargs)
    x, y = next(iter(data.train))
    assert x.shape == (8, 4, 4, 1) and y.shape == (8,) and y.dtype.name == "int64"
    vx, vy = next(iter(data.validation))
    val_images, val_labels = data.validation_arrays()
    np.testing.assert_array_equal(vy.numpy(), val_labels[:len(vy)])
    # the labels travel with their images through the shuffle
    by_image = {im.tobytes(): int(lab) for im, lab in zip(images, labels)}
    for image, label in zip(x.numpy()[..., 0], y.numpy()):
        assert by_image[np.round(image * 255).astype(np.uint8).tobytes()] == label
    plain = build(array_source(images, labels), **kwargs)
    assert next(iter(plain.train)).shape == (8, 4, 4, 1)  # unchanged: images only
    with pytest.raises(DataError, match="unlabelled|has no labels.*--conditional"):
        build(array_source(images, None, name="my arrays"), labels=True, **kwargs)


@pytest.mark.slow
def test_cli_train_conditional_then_sample_class_and_refusals(tmp_path, capsys, vae_run):
    run = tmp_path / "cond"
    assert main(["train", "--preset", "tiny-vae", "--conditional", "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "latent samplers: skipped" in out and (run / "samples.png").is_file()
    from keras_vae.utils.files import read_json

    metrics = read_json(run / "metrics.json")
    assert read_json(run / "config.json")["model"]["num_classes"] == 10
    assert np.isfinite(metrics["final"]["validation"]["log_likelihood"])
    assert metrics["evaluation"] == {"skipped": "the model is class-conditional"}
    assert (run / "samplers" / "classes.json").is_file() and set(metrics["final"]["class_samplers"]) == {
        str(c) for c in range(10)}  # fitted after saving: samples.png and sample --class draw from them
    assert main(["sample", str(run), "--class", "3", "--n", "6", "--out", str(tmp_path / "s.npz")]) == 0
    assert main(["sample", str(run), "--class", "3", "--n", "6", "--sampler", "prior",
                 "--out", str(tmp_path / "p.npz")]) == 0
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.classes import load_class_sampler
    from keras_vae.sampling.draw import draw_samples
    from keras_vae.utils.images import to_uint8

    _, model = load_run(run)
    expected = draw_samples(model, 6, seed=0, latent_sampler=load_class_sampler(run, 3, model.latent_dim),
                            labels=np.full(6, 3))
    with np.load(tmp_path / "s.npz") as saved, np.load(tmp_path / "p.npz") as prior:
        np.testing.assert_array_equal(saved["images"], to_uint8(expected))
        np.testing.assert_array_equal(prior["images"],
                                      to_uint8(np.asarray(model.to_unit(model.sample(6, seed=0, label=3)))))
    capsys.readouterr()
    assert main(["sample", str(run), "--class", "10", "--out", str(tmp_path / "u.png")]) == 2
    assert "--class must be in [0, 10)" in capsys.readouterr().err


def test_conditional_run_on_an_unlabelled_source_is_refused(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "digits.npy", images)
    code = main(["train", "--preset", "tiny-vae", "--conditional", "--data", f"npy:{tmp_path / 'digits.npy'}",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "has no labels" in err and "--conditional" in err
    assert not (tmp_path / "run").exists()


def test_sampler_option_on_a_conditional_run_names_the_class_samplers(tmp_path, capsys):
    # a conditional run fits no label-free sampler: --sampler gaussian|gmm|flow is refused before the model loads
    import json

    from keras_vae.cli import main
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(merge(get_preset("tiny-vae"), {"model": {"num_classes": 3}}).to_dict()))
    (run / "model.keras").write_bytes(b"not read: the refusal comes first")
    for kind in ("gaussian", "gmm", "flow"):
        assert main(["sample", str(run), "--sampler", kind, "--out", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--sampler {kind}: " in err[0] and "class-conditional run" in err[0] \
            and "--class K" in err[0], err


@pytest.mark.parametrize("argv, preset, latent, classes", [
    (["train", "--conditional"], "mnist-mlp-conditional", 8, 10),      # the classic CVAE's default
    (["train", "--conditional", "--latent-dim", "32"], "mnist-mlp-conditional", 32, 10),
    (["train", "--conditional", "--preset", "mnist-mlp"], "mnist-mlp", 32, 0),  # train.run sets num_classes
    (["train", "--conditional", "--labelled", "100"], "mnist-mlp", 32, 0),      # M2 keeps mnist-mlp
    (["train", "--model", "vaegan", "--conditional"], "mnist-28", 32, 0),
    (["train"], "mnist-mlp", 32, 0),
    (["train", "--quick", "--conditional"], "quick", 8, 0),  # the quick recipe of the conditional default
    (["train", "--quick", "--conditional", "--latent-dim", "16"], "quick", 16, 0),
    (["train", "--quick"], "quick", 32, 0),
])
def test_train_conditional_resolves_the_class_conditional_preset(argv, preset, latent, classes):
    from keras_vae.cli import build_parser
    from keras_vae.commands.options import resolve_config
    from keras_vae.config.presets import get_preset

    args = build_parser().parse_args(argv)
    if args.quick:
        args.preset = "quick"  # what train.run does before resolving
    config = resolve_config(args)
    assert config.preset == preset
    assert config.model.latent_dim == latent and config.model.num_classes == classes
    if preset == "mnist-mlp-conditional":  # mnist-mlp's networks and recipe, only the latent and the label differ
        base = get_preset("mnist-mlp")
        assert config.train == base.train and config.data == base.data
        assert {**vars(config.model), "latent_dim": 32, "num_classes": 0} == vars(base.model)
