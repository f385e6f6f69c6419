"""Semi-supervised M2 (Kingma et al. 2014): its labelled and unlabelled losses against NumPy, the stratified seeded
choice of labelled images, a tiny fit, the .keras round trip, classify, and keras-vae train --labelled."""
from __future__ import annotations

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.errors import ConfigError, DataError

SMALL = dict(latent_dim=2, hidden_units=(5,), image_shape=(4, 4, 1), output_bias="zero", num_classes=3)


def _softplus(a):
    return np.logaddexp(0.0, a)


def _weights(network) -> dict:
    return {"/".join(w.path.split("/")[-2:]): np.asarray(w, np.float64) for w in network.weights}


def _numpy_terms(model, x):
    """L(x, y) for every class [B, K] (z at the posterior mean: log p(x|z=mu, y) - KL - log p(y)) and q(y|x)
    [B, K], from the MLP's weights in NumPy."""
    enc, dec, cls = _weights(model.encoder), _weights(model.decoder), _weights(model.classifier)
    k, flat = model.num_classes, x.reshape(len(x), -1).astype(np.float64)
    bounds = np.zeros((len(x), k))
    for c in range(k):
        one_hot = np.tile(np.eye(k)[c], (len(x), 1))
        h = np.tanh(np.concatenate([flat, one_hot], 1) @ enc["hidden_0/kernel"] + enc["hidden_0/bias"])
        mean = h @ enc["mean/kernel"] + enc["mean/bias"]
        log_var = h @ enc["log_var/kernel"] + enc["log_var/bias"]
        hz = np.tanh(np.concatenate([mean, one_hot], 1) @ dec["hidden_0/kernel"] + dec["hidden_0/bias"])
        logits = hz @ dec["params/kernel"] + dec["params/bias"]
        log_px = np.sum(flat * logits - _softplus(logits), 1)
        kl = 0.5 * np.sum(mean ** 2 + np.exp(log_var) - 1.0 - log_var, 1)
        bounds[:, c] = -log_px + kl + np.log(k)  # -log p(y) = log K
    hy = np.tanh(flat @ cls["hidden_0/kernel"] + cls["hidden_0/bias"])
    logits_y = hy @ cls["logits/kernel"] + cls["logits/bias"]
    log_q = logits_y - np.logaddexp.reduce(logits_y, axis=1, keepdims=True)
    return bounds, np.exp(log_q)


def _deterministic(model):
    """The model with z = posterior mean (no noise), so its terms have a closed form."""
    model.sample_posterior = lambda mean, log_var, num_samples=None, training=True: mean[None]
    return model


def _tiny_model(**fields):
    import keras_vae

    return _deterministic(keras_vae.SemiSupervisedVAE(**SMALL, seed=3, num_labelled=4, num_unlabelled=8, **fields))


def _binary(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) > 0.5).astype(np.float32)


def test_unlabelled_and_labelled_losses_match_a_numpy_reference():
    model = _tiny_model()
    x = _binary((5, 4, 4, 1))
    labels = np.array([0, 2, 1, 2, 0])
    bounds, q = _numpy_terms(model, x)
    u, q_model = model.unlabelled_terms(x)
    np.testing.assert_allclose(np.asarray(q_model), q, rtol=1e-5, atol=1e-6)
    # U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))
    expected_u = np.sum(q * bounds, 1) + np.sum(q * np.log(q), 1)
    np.testing.assert_allclose(np.asarray(u), expected_u, rtol=1e-5, atol=1e-4)
    bound, cross_entropy, _ = model.labelled_terms(x, labels)
    np.testing.assert_allclose(np.asarray(bound), bounds[np.arange(5), labels], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(cross_entropy), -np.log(q[np.arange(5), labels]), rtol=1e-5, atol=1e-5)
    # the batch loss: (N_l / N) mean_l[L + alpha CE] + (N_u / N) mean_u U, alpha = 0.1 * N = 1.2
    x_u = _binary((6, 4, 4, 1), seed=1)
    bounds_u, q_u = _numpy_terms(model, x_u)
    u_ref = np.sum(q_u * bounds_u, 1) + np.sum(q_u * np.log(q_u), 1)
    labelled_ref = bounds[np.arange(5), labels] - 1.2 * np.log(q[np.arange(5), labels])
    logs = model._semi_supervised_step({"unlabelled": x_u, "images": x, "labels": labels}, training=False)
    np.testing.assert_allclose(float(logs["loss"]), 4 / 12 * labelled_ref.mean() + 8 / 12 * u_ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(logs["classification_error"]), np.mean(q.argmax(1) != labels))


def test_labelled_images_are_stratified_seeded_and_refused_when_impossible():
    from keras_vae.data.labelled import stratified_labelled_indices

    labels = np.repeat(np.arange(10), 30)[np.random.default_rng(0).permutation(300)]
    chosen = stratified_labelled_indices(labels, 50, 10, seed=7)
    assert len(chosen) == len(set(chosen)) == 50
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=10), np.full(10, 5))
    np.testing.assert_array_equal(chosen, stratified_labelled_indices(labels, 50, 10, seed=7))
    assert not np.array_equal(chosen, stratified_labelled_indices(labels, 50, 10, seed=8))
    with pytest.raises(ConfigError, match="multiple of 10"):
        stratified_labelled_indices(labels, 55, 10, seed=0)
    with pytest.raises(DataError, match="training split has 300 images"):
        stratified_labelled_indices(labels, 300, 10, seed=0)
    with pytest.raises(DataError, match="class 3 has 2"):
        stratified_labelled_indices(np.r_[labels[labels != 3], [3, 3]], 100, 10, seed=0)
    with pytest.raises(DataError, match="no labels"):
        stratified_labelled_indices(np.full(300, -1), 50, 10, seed=0)


def test_mixed_batches_hold_the_chosen_labelled_images_and_the_rest_unlabelled():
    from keras_vae.data import array_source
    from keras_vae.data.labelled import semi_supervised_datasets, stratified_labelled_indices, training_labels

    images = np.arange(60, dtype=np.uint8)[:, None, None] * np.ones((60, 4, 4), np.uint8)  # image i is all i
    source = array_source(images, np.arange(60) % 3, validation_fraction=0.1)
    semi = semi_supervised_datasets(source, 6, 3, image_shape=(4, 4, 1), value_range=(0.0, 1.0), batch_size=8,
                                    seed=5)
    labels = training_labels(source)
    np.testing.assert_array_equal(semi.labelled_indices, stratified_labelled_indices(labels, 6, 3, seed=5))
    assert (semi.num_labelled, semi.num_unlabelled, semi.labelled_batch_size) == (6, 48, 6)
    assert int(semi.train.cardinality()) == 6  # one pass over the 48 unlabelled images in batches of 8
    import tensorflow as tf

    ids = list(source.train.map(lambda x, y: tf.reshape(x, [-1])[0]).as_numpy_iterator())
    seen_u, seen_l = [], []
    for batch in semi.train.as_numpy_iterator():
        seen_u += list(np.round(batch["unlabelled"][:, 0, 0, 0] * 255).astype(int))
        pixel = np.round(batch["images"][:, 0, 0, 0] * 255).astype(int)
        seen_l += list(pixel)
        np.testing.assert_array_equal(batch["labels"], pixel % 3)  # each labelled image keeps its own label
    chosen = {int(ids[i]) for i in semi.labelled_indices}
    assert sorted(seen_u) == sorted(set(int(i) for i in ids) - chosen)  # every other image once, without label
    assert set(seen_l) == chosen and len(seen_l) == 6 * 6  # 6 batches, each with all 6 labelled images


def test_semi_supervised_dataset_passes_the_unlabelled_images_once_with_labelled_ones_in_every_batch():
    from keras_vae.models.semi_supervised import semi_supervised_dataset

    unlabelled = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((10, 4, 4, 1), np.float32) / 10
    labelled = np.full((3, 4, 4, 1), 0.95, np.float32)
    batches = list(semi_supervised_dataset(unlabelled, labelled, np.array([0, 1, 2]), batch_size=4, seed=1)
                   .as_numpy_iterator())
    assert [len(b["unlabelled"]) for b in batches] == [4, 4, 2] and all(len(b["images"]) == 3 for b in batches)
    np.testing.assert_allclose(np.sort(np.concatenate([b["unlabelled"][:, 0, 0, 0] for b in batches])),
                               np.arange(10) / 10, rtol=1e-6)
    assert all(sorted(b["labels"]) == [0, 1, 2] for b in batches)


def test_classify_gives_probability_rows_and_round_trips_through_a_keras_file(tmp_path):
    import keras

    import keras_vae

    model = keras_vae.SemiSupervisedVAE(**SMALL, seed=3, num_labelled=4, num_unlabelled=8, classification_weight=0.5)
    x = _binary((7, 4, 4, 1))
    probabilities = np.asarray(model.classify(x))
    assert probabilities.shape == (7, 3) and np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-6)
    model.save(tmp_path / "m2.keras")
    loaded = keras.models.load_model(tmp_path / "m2.keras")
    assert type(loaded) is keras_vae.SemiSupervisedVAE
    assert (loaded.num_labelled, loaded.num_unlabelled, loaded.alpha) == (4, 8, 6.0)  # alpha = 0.5 * 12
    np.testing.assert_array_equal(np.asarray(loaded.classify(x)), probabilities)
    u, _ = _deterministic(model).unlabelled_terms(x)
    np.testing.assert_array_equal(np.asarray(_deterministic(loaded).unlabelled_terms(x)[0]), np.asarray(u))


def test_cli_refuses_a_labelled_count_that_cannot_be_stratified(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny-vae", "--labelled", "25", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "must be a positive multiple of 10" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_source_without_labels_is_refused():
    from keras_vae.data import array_source
    from keras_vae.data.labelled import semi_supervised_datasets

    source = array_source(np.zeros((30, 4, 4), np.uint8))
    with pytest.raises(DataError, match="--labelled needs a labelled source"):
        semi_supervised_datasets(source, 10, 10, image_shape=(4, 4, 1), value_range=(0.0, 1.0), batch_size=8, seed=0)


@pytest.mark.slow
def test_cli_train_labelled_records_the_choice_and_the_classification_error(tmp_path, capsys):
    from keras_vae.runs.folder import load_run
    from keras_vae.utils.files import read_json

    run = tmp_path / "ssl"
    assert main(["train", "--preset", "tiny-vae", "--labelled", "20", "--epochs", "2", "--out", str(run),
                 "--quiet"]) == 0
    assert "validation classification error" in capsys.readouterr().out
    config, metrics = read_json(run / "config.json"), read_json(run / "metrics.json")
    # a tiny fit lowers the loss: 5 steps per epoch from an untrained decoder (~784 log 2 nats per image)
    assert metrics["epochs"][1]["train"]["loss"] < metrics["epochs"][0]["train"]["loss"]
    assert config["data"]["labelled"] == 20 and config["model"]["num_classes"] == 10
    record = metrics["semi_supervised"]
    assert record["labelled"] == 20 and record["unlabelled"] == metrics["num_train"] - 20 and record["seed"] == 0
    _, model = load_run(run)
    from keras_vae.data import make_datasets
    from keras_vae.config import RunConfig

    cfg = RunConfig.from_dict(config)
    val_x, val_y = make_datasets(cfg.data, image_shape=cfg.model.image_shape, value_range=cfg.model.value_range,
                                 batch_size=32, seed=0, labels=True).validation_arrays()
    assert metrics["final"]["classification_error"] == model.classification_error(val_x, val_y)
    assert "classification_error" in metrics["epochs"][-1]["validation"]
