"""VAEGAN: alternating updates, switches, save/resume, XLA, mixed precision, MirroredStrategy, schedules logged
apart from the validated metrics."""
import json
import os
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config import ModelConfig, TrainConfig
from keras_vae.errors import ConfigError
from keras_vae.models import build_model
from keras_vae.models.vaegan import VAEGAN
from keras_vae.config.presets import get_preset
from tests.support.vaegan import images, make

ROOT = Path(__file__).resolve().parents[2]


def blur(x):
    return tf.nn.avg_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), 3, 1, "VALID").numpy()


def values(variables):
    return [np.array(v) for v in variables]


def changed(before, variables):
    return [not np.array_equal(b, np.array(v)) for b, v in zip(before, variables)]


def test_train_step_updates_both_networks_and_each_substep_only_its_own():
    model, x = make(), tf.constant(images(8))
    disc, vae = model.discriminator.trainable_variables, model.vae_variables
    d0, v0 = values(disc), values(vae)
    logs = model.train_step(x)
    assert all(changed(d0, disc)) and all(changed(v0, vae))
    assert int(model.g_optimizer.iterations) == 1 and int(model.d_optimizer.iterations) == 1
    assert set(logs) >= {"loss", "reconstruction", "kl", "population_kl", "standard_kl", "variance_reg",
                         "adversarial", "adversarial_weight", "mixture_kl_mc", "disc_loss",
                         "disc_accuracy_real", "disc_accuracy_fake"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    d1, v1 = values(disc), values(vae)
    model.vae_step(x)
    assert not any(changed(d1, disc)) and all(changed(v1, vae))
    d2, v2 = values(disc), values(vae)
    model.discriminator_step(x)
    assert all(changed(d2, disc)) and not any(changed(v2, vae))


def test_discriminator_learns_to_separate_real_from_blurred_images():
    model = make(model={"disc_filters": (8, 8, 1), "disc_strides": (2, 1, 1), "disc_dropout": 0.0})
    real, fake = images(16, seed=1), blur(images(16, seed=1))
    step = tf.function(lambda r, f: model._discriminator_update(r, f, tf.constant(1.0)))
    first = float(tf.reduce_mean(step(real, fake)["disc_loss"]))
    for _ in range(100):
        logs = step(real, fake)
    assert float(tf.reduce_mean(logs["disc_loss"])) < 0.5 * first
    assert float(tf.reduce_mean(logs["disc_loss"])) < 0.6 * 2 * np.log(2.0)  # well below chance
    # held-out images (batch statistics, as in training): real patches > 0, blurred ones < 0
    test_real = images(16, seed=2)
    real_logits, fake_logits = model._disc_logits(test_real, blur(test_real), training=True)
    assert float(tf.reduce_mean(tf.cast(real_logits > 0, tf.float32))) > 0.9
    assert float(tf.reduce_mean(tf.cast(fake_logits < 0, tf.float32))) > 0.9


def _deterministic():
    return dict(model={"disc_dropout": 0.0}, loss={"sample_posterior": False})


@pytest.mark.slow
def test_save_load_restores_both_optimizers_and_resumes(tmp_path):
    model, x = make(**_deterministic()), images(16)
    model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored, VAEGAN) and restored.loss_config.sample_posterior is False
    for name in ("g_optimizer", "d_optimizer"):
        a, b = getattr(model, name), getattr(restored, name)
        assert int(b.iterations) == int(a.iterations) == 2
        assert len(a.variables) == len(b.variables) > 2
        for va, vb in zip(a.variables, b.variables):
            np.testing.assert_array_equal(np.array(va), np.array(vb))
    assert float(restored.g_optimizer.learning_rate) == pytest.approx(1e-3)
    np.testing.assert_allclose(restored.reconstruct(x[:4]), model.reconstruct(x[:4]), atol=1e-6)
    # resuming gives the same weights as continuing
    model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    restored.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, restored.trainable_variables):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)


U32 = 2.0 ** -24  # unit round-off of float32


def roundoff_tolerance(model, batch):
    """Relative tolerance for two float32 evaluations of one step that differ only in the order of
    their sums (XLA fusion, another kernel, another replica split): each layer on the gradient's path
    adds at most gamma_n = n * u relative error, n the largest reduction (batch x pixels), so L layers
    give L * n * u (the classic worst-case bound, not a fitted number)."""
    layers = sum(1 for v in model.trainable_variables if v.path.endswith("kernel"))
    height, width = model.image_shape[:2]
    return layers * batch * height * width * U32


def assert_same_step(plain, other, before, tolerance):
    """Weights after one step agree where the step itself agrees to ``tolerance`` (relative to the
    largest update of each variable), plus one ulp of the weight for the final rounding of w - lr g."""
    for a, b, w0 in zip(plain.trainable_variables, other.trainable_variables, before):
        a, b = np.array(a), np.array(b)
        bound = tolerance * np.abs(a - w0).max() + 2 * np.spacing(np.abs(w0).max(), dtype=np.float32)
        assert np.abs(a - b).max() <= bound, (a.shape, np.abs(a - b).max(), bound)


@pytest.mark.slow
def test_jit_compile_matches_no_jit():
    """One step from the same weights and batch, compiled by XLA or not, is the same math.

    Compared after ONE step with SGD: Adam's first steps are ~lr * sign(g), so a gradient that is
    round-off-sized flips by 2 lr between two correct evaluations, and several steps compound it
    (weights after 2 Adam epochs differed by 3.7e-4 on one CPU and 9e-4 on another). With SGD the
    weight difference is lr times the gradients' round-off, which ``roundoff_tolerance`` bounds."""
    x = images(8)
    runs = []
    for jit in (False, True):
        model = make(**_deterministic(), train=TrainConfig(jit_compile=jit))
        model.compile(g_optimizer=keras.optimizers.SGD(1e-2), d_optimizer=keras.optimizers.SGD(1e-2),
                      jit_compile=jit)
        before = values(model.trainable_variables)
        history = model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        assert model.jit_compile is jit
        runs.append((model, history, before))
    (plain, h_plain, before), (xla, h_xla, before_xla) = runs
    assert all(np.array_equal(a, b) for a, b in zip(before, before_xla))
    assert any(changed(before, plain.trainable_variables))
    tolerance = roundoff_tolerance(plain, batch=8)
    assert_same_step(plain, xla, before, tolerance)
    for key in ("loss", "reconstruction", "kl", "adversarial", "disc_loss"):  # mixture_kl_mc is random
        assert h_xla[key][0] == pytest.approx(h_plain[key][0], rel=tolerance, abs=1e-6), key
    # noise on: still finite under XLA (stateless seeds are int32)
    noisy = make(train=TrainConfig(learning_rate=1e-3, jit_compile=True))
    assert np.isfinite(noisy.fit(x, batch_size=8, epochs=1, verbose=0).history["mixture_kl_mc"][-1])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.slow
def test_mixed_precision_trains(policy):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = make()
        assert model.encoder.get_layer("stem").compute_dtype == policy.split("_")[1]
        wrapped = [isinstance(o, keras.optimizers.LossScaleOptimizer) for o in (model.g_optimizer, model.d_optimizer)]
        assert wrapped == ([True, True] if policy == "mixed_float16" else [False, False])
        d0 = values(model.discriminator.trainable_variables)
        history = model.fit(images(16), batch_size=8, epochs=1, verbose=0).history
        assert all(np.isfinite(v[-1]) for v in history.values())
        assert all(changed(d0, model.discriminator.trainable_variables))
        assert model.reconstruct(images(2)).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.slow
def test_kl_switch_and_test_step_reports_the_same_terms_without_updates():
    x = images(8)
    standard = make(loss={"kl": "standard"})
    logs = {k: float(v) for k, v in standard.train_step(tf.constant(x)).items()}
    assert logs["kl"] == pytest.approx(logs["standard_kl"]) and logs["kl"] != pytest.approx(logs["population_kl"])
    population = make(loss={"kl": "population", "population_variance": "mixture"})
    weights = values(population.weights)
    result = population.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    assert not any(changed(weights, population.weights))
    assert result["kl"] == pytest.approx(result["population_kl"])
    assert set(result) >= {"loss", "reconstruction", "variance_reg", "adversarial", "disc_loss", "mixture_kl_mc"}
    # the population KL under 'mixture' is the closed form of the batch moments
    mean, log_var = population.encode(x)
    from keras_vae.distributions import population_kl
    assert float(population._population_kl(mean, log_var)[0]) == pytest.approx(
        float(population_kl(mean, log_var, "mixture")), rel=1e-5)


def test_switches_without_discriminator_and_without_regularizer():
    model = make(loss={"use_discriminator": False, "use_variance_regularizer": False})
    d0 = values(model.discriminator.trainable_variables)
    logs = model.train_step(tf.constant(images(8)))
    assert not any(changed(d0, model.discriminator.trainable_variables))
    assert float(logs["adversarial"]) == 0.0 and float(logs["variance_reg"]) == 0.0
    assert "disc_loss" not in logs and "disc_loss" not in [m.name for m in model.metrics]
    assert int(model.d_optimizer.iterations) == 0
    assert model.extra_diagnostics(images(4)) == {}


@pytest.mark.slow
def test_discriminator_start_step():
    model = make(loss={"disc_start_step": 2})
    d0 = values(model.discriminator.trainable_variables)
    x = tf.constant(images(8))
    logs = model.train_step(x)
    assert float(logs["adversarial_weight"]) == 0.0
    assert not any(changed(d0, model.discriminator.trainable_variables))
    model.train_step(x)
    logs = model.train_step(x)  # step index 2: the discriminator is on
    assert any(changed(d0, model.discriminator.trainable_variables))
    assert float(model.trackers["adversarial_weight"].result()) > 0.0


def test_n_critic_adaptive_weight_hinge_and_prior_samples():
    model = make(loss={"n_critic": 3, "adaptive_adversarial_weight": True, "adversarial_loss": "hinge",
                       "disc_on_prior_samples": True})
    logs = model.train_step(tf.constant(images(8)))
    assert int(model.d_optimizer.iterations) == 3 and int(model.g_optimizer.iterations) == 1
    weight = float(logs["adversarial_weight"])
    assert np.isfinite(weight) and weight != pytest.approx(1.0)
    assert all(np.isfinite(float(v)) for v in logs.values())


@pytest.mark.slow
def test_prior_sample_branch_decodes_standard_normal_noise_and_averages_both_generator_terms():
    """disc_on_prior_samples (the mnist-28 preset): the fakes are [reconstructions, decoded N(0, I)
    draws of the step's second seed], and the generator's adversarial term is the mean of both halves."""
    x = tf.constant(images(6))
    seeds = [tf.constant([5, 1]), tf.constant([5, 2]), tf.constant([5, 3])]
    model = make(loss={"disc_on_prior_samples": True})
    mean, log_var, output, prior_output = model._forward(x, seeds, training=False)
    z = tf.random.stateless_normal(tf.shape(mean), seed=seeds[1])
    np.testing.assert_allclose(prior_output.numpy(), model.decoder(z, training=False).numpy(), rtol=1e-6, atol=1e-6)
    assert make()._forward(x, seeds, training=False)[3] is None  # off by default (the reference's choice)
    _, terms = model._generator_terms(x, mean, log_var, output, prior_output, tf.constant(1.0), False)
    _, fake_logits = model._disc_logits(tf.concat([x, x], 0), tf.concat([output, prior_output], 0), False)
    recon_logits, prior_logits = np.split(fake_logits.numpy().reshape(12, -1), 2)
    softplus = lambda v: np.logaddexp(0.0, v)  # noqa: E731  BCE(1, logits) = softplus(-logits)
    expected = 0.5 * (softplus(-recon_logits).mean(axis=1) + softplus(-prior_logits).mean(axis=1))
    np.testing.assert_allclose(np.asarray(terms["adversarial"]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_extra_diagnostics_sampling_api_and_schedules_are_not_validated():
    from keras_vae.training.schedules import split_logs

    model = make()
    history = model.fit(images(16), validation_data=(images(8, seed=1),), epochs=1, batch_size=8, verbose=0).history
    # the schedules (adversarial weight, learning rates) are logged in training only and land under "schedules"
    assert "adversarial_weight" in history and "val_adversarial_weight" not in history
    assert "val_reconstruction" in history and "val_disc_loss" in history
    logs = {k: v[-1] for k, v in history.items()}
    split = split_logs(logs, model)
    assert split["schedules"]["adversarial_weight"] == pytest.approx(1.0)  # LOSS's weight, no start step
    assert split["schedules"]["learning_rate"] == pytest.approx(1e-3)
    assert split["schedules"]["disc_learning_rate"] == pytest.approx(1e-3)
    assert "adversarial_weight" not in split["train"] and "adversarial_weight" not in split["validation"]
    assert split["validation"]["reconstruction"] == pytest.approx(logs["val_reconstruction"])
    diag = model.extra_diagnostics(images(10))
    assert set(diag) == {"disc_accuracy_real", "disc_accuracy_reconstructed"}
    assert all(0.0 <= v <= 1.0 for v in diag.values())
    samples = model.sample(3, seed=1)
    assert samples.shape == (3, 16, 16, 1) and float(tf.reduce_max(tf.abs(samples))) <= 1.0
    assert model.receptive_field == 7
    assert model.value_range == (-1.0, 1.0)


def test_build_model_and_config_errors():
    config = get_preset("tiny")
    model = build_model(config)
    assert isinstance(model, VAEGAN) and model.seed == config.train.seed
    with pytest.raises(ConfigError, match="VAEGAN needs model kind 'vaegan' and architecture 'resnet'"):
        VAEGAN(ModelConfig(kind="vae", architecture="conv"))
    with pytest.raises(ConfigError, match="model kind 'vaegan' needs architecture 'resnet'"):
        ModelConfig(kind="vaegan", architecture="conv")


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.support.vaegan import MODEL, LOSS, TRAIN, images
    from keras_vae.config import LossConfig, ModelConfig
    from keras_vae.models.vaegan import VAEGAN

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for variance in sys.argv[2:]:
        mc = ModelConfig(**{**MODEL, "sync_batch_norm": True, "disc_dropout": 0.0})
        lc = LossConfig(**{**LOSS, "sample_posterior": False, "population_variance": variance})
        x = images(24)
        keras.utils.set_random_seed(0)
        single = VAEGAN(mc, lc)
        single.compile_for_training(TRAIN)
        start = single.get_weights()
        h1 = single.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        with strategy.scope():
            mirrored = VAEGAN(mc, lc)
            mirrored.compile_for_training(TRAIN)
            mirrored.set_weights(start)
        h2 = mirrored.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        diffs = [float(np.abs(np.array(a) - np.array(b)).max())
                 for a, b in zip(single.trainable_variables, mirrored.trainable_variables)]
        moved = [float(np.abs(np.array(a) - np.array(b)).max()) for a, b in zip(single.get_weights(), start)]
        seeds = strategy.experimental_local_results(strategy.run(lambda: mirrored._step_seeds()[0]))
        results[variance] = {"replicas": strategy.num_replicas_in_sync, "max_diff": max(diffs),
                             "max_moved": max(moved), "loss": [h1["loss"][-1], h2["loss"][-1]],
                             "iterations": int(mirrored.g_optimizer.iterations.numpy()),
                             "seeds": [np.array(s).tolist() for s in seeds]}
    print(json.dumps(results))
""")


def background_jobs(items, tmp_path_factory):
    """MIRRORED_SCRIPT for the selected population_variances, one after the other in one process of its own
    (tests.support.background: run ahead of the tests, on the core the test process leaves idle; one process
    for both saves a TensorFlow start)."""
    from tests.support.background import Job

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    variances = [item.callspec.params["population_variance"] for item in items
                 if item.originalname == "test_mirrored_strategy_matches_single_device"]
    if not variances:
        return {}
    return {"mirrored": Job([sys.executable, "-c", MIRRORED_SCRIPT, str(ROOT), *variances],
                            tmp_path_factory.mktemp("mirrored"), env=env, timeout=300)}


@pytest.mark.parametrize("population_variance", ["mixture", "covariance"])
@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(population_variance, background):
    proc = background.result("mirrored")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])[population_variance]
    assert result["replicas"] == 2 and result["iterations"] == 3
    assert result["max_moved"] > 1e-3  # training did change the weights ...
    assert result["max_diff"] < 1e-5, result  # ... identically on one device and on two replicas
    assert result["loss"][0] == pytest.approx(result["loss"][1], rel=1e-4)
    assert result["seeds"][0] != result["seeds"][1]  # distinct noise per replica


def test_logged_reconstruction_is_the_mae_on_the_unit_scale():
    # the loss uses |x - x_hat| in the model's [-1, 1] range; the logged metric is on [0, 1] (half of it)
    model, x = make(loss={"sample_posterior": False}), tf.constant(images(8))
    logs = model.test_step(x)
    mean, _ = model.encode(x)
    x_hat = model.decoder(mean, training=False)
    expected = np.mean(np.abs(x.numpy() - np.asarray(x_hat, np.float32))) / 2.0
    assert float(logs["reconstruction"]) == pytest.approx(expected, rel=1e-5)
