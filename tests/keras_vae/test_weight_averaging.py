"""train.ema_momentum: the VAE optimizer's moving average of the encoder and decoder weights (Yazici et al.
2019), against a NumPy reference; fit and the training run end with it (before the BatchNorm refresh, the
sampler fit and model.keras); the discriminator keeps its weights; checkpoints carry the average, so a resumed
run ends as an uninterrupted one (and says that it resumed, counting the time of both parts); the config field's
default and old configs without it."""
import io
import json

import keras
import numpy as np
import pytest

from keras_vae.config import RunConfig, TrainConfig, merge
from keras_vae.config.presets import get_preset, preset_names
from keras_vae.errors import ConfigError
from keras_vae.models.vaegan import VAEGAN
from keras_vae.runs import lifecycle
from keras_vae.runs.folder import load_model
from keras_vae.training import loop
from tests.support.vaegan import images, make

MOMENTUM = 0.9
# float32 update: |w_avg - reference| is a few roundings of values of size |w| (unit round-off 2^-24 ~ 6e-8 per
# operation, ~3 operations per step, 3-6 steps); 1e-5 relative leaves a 20x margin and stays far below the
# gap between the average and the last weights (checked > 1e-3 below)
RTOL, ATOL = 1e-5, 1e-6


class Weights(keras.callbacks.Callback):
    """The VAE's and the discriminator's trainable weights after every training step."""

    def __init__(self):
        super().__init__()
        self.vae, self.disc = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.vae.append([np.array(v, np.float64) for v in self.model.vae_variables])
        self.disc.append([np.array(v) for v in self.model.discriminator.trainable_variables])


def reference_average(steps, momentum=MOMENTUM):
    """w_avg = w_1, then w_avg = m w_avg + (1 - m) w_t (Keras' use_ema: no average before the first step)."""
    average = steps[0]
    for weights in steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
    return average


def assert_weights(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.array(a, np.float64), e, rtol=RTOL, atol=ATOL)


def test_fit_ends_with_the_moving_average_and_the_discriminator_keeps_its_weights():
    model = make(train=TrainConfig(learning_rate=1e-2, beta_1=0.5, disc_learning_rate=1e-3,
                                   ema_momentum=MOMENTUM))
    seen = Weights()
    model.fit(images(32), batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[seen])
    assert len(seen.vae) == 4 and int(model.g_optimizer.iterations) == 4
    expected = reference_average(seen.vae)
    assert_weights(model.vae_variables, expected)
    # not vacuous: the average is far from the last step's weights, which fit replaced
    assert max(np.abs(e - w).max() for e, w in zip(expected, seen.vae[-1])) > 1e-3
    for actual, last in zip(model.discriminator.trainable_variables, seen.disc[-1], strict=True):
        np.testing.assert_array_equal(np.array(actual), last)


def test_without_momentum_fit_keeps_the_last_weights():
    model = make()
    seen = Weights()
    model.fit(images(16), batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[seen])
    assert model.use_averaged_weights() is False
    for actual, last in zip(model.vae_variables, seen.vae[-1], strict=True):
        np.testing.assert_array_equal(np.array(actual, np.float64), last)


def test_no_average_is_copied_before_the_first_step():
    model = make(train=TrainConfig(learning_rate=1e-2, ema_momentum=MOMENTUM))
    before = [np.array(v) for v in model.vae_variables]
    assert model.use_averaged_weights() is False  # the average's slots are still zeros
    for actual, first in zip(model.vae_variables, before):
        np.testing.assert_array_equal(np.array(actual), first)


def test_the_classic_vae_ends_fit_with_the_average_too():
    from keras_vae.models.vae import VAE

    keras.utils.set_random_seed(0)
    model = VAE.from_preset("tiny-vae", learning_rate=1e-2, ema_momentum=MOMENTUM)
    model.compile()
    x = np.random.default_rng(0).uniform(0, 1, (24, *model.model_config.image_shape)).astype("float32")
    steps = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: steps.append([np.array(v, np.float64) for v in model.trainable_variables]))
    model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    assert_weights(model.trainable_variables, reference_average(steps))


# --- the config field --------------------------------------------------------------------------------------
def test_field_default_bounds_and_presets():
    assert TrainConfig().ema_momentum == 0.0
    # off in every preset: on the default VAEGAN, 0.99 did not move FD beyond the spread of the steps after fit
    presets = {name: get_preset(name).train.ema_momentum for name in preset_names()}
    assert set(presets.values()) == {0.0}, presets
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"ema_momentum must be in \[0, 1\)"):
            TrainConfig(ema_momentum=bad)


def test_configs_and_models_written_without_the_field_read_as_off():
    stored = get_preset("mnist-28").to_dict()
    del stored["train"]["ema_momentum"]  # a config.json of a run from before the field
    assert RunConfig.from_dict(stored).train.ema_momentum == 0.0
    old = VAEGAN.from_preset("tiny").get_config()
    del old["train_config"]["ema_momentum"]  # a model.keras from before the field
    restored = VAEGAN.from_config(old)
    assert restored.train_config.ema_momentum == 0.0
    restored.compile_for_training(restored.train_config)
    assert restored.g_optimizer.use_ema is False


def test_an_interrupted_run_without_the_field_resumes_with_it_off(tmp_path):
    config = merge(get_preset("tiny"), {"train": {"ema_momentum": 0.0}})
    stored = config.to_dict()
    del stored["train"]["ema_momentum"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    lifecycle.check_same_config(tmp_path, config.to_dict())  # no difference: the field's default is the value
    with pytest.raises(ConfigError, match=r"train\.ema_momentum: 0\.0 -> 0\.99"):
        lifecycle.check_same_config(tmp_path, merge(config, {"train": {"ema_momentum": 0.99}}).to_dict())


def test_keep_best_and_averaging_are_refused_together():
    from keras_vae.training.recipe import recipe_callbacks

    config = merge(get_preset("tiny-vae"), {"train": {"keep_best": True, "ema_momentum": 0.99}})
    with pytest.raises(ConfigError, match="train.keep_best .* train.ema_momentum"):
        recipe_callbacks(config, {})


# --- the training run ----------------------------------------------------------------------------------------
TINY = merge(get_preset("tiny"), {"train": {"ema_momentum": MOMENTUM, "learning_rate": 1e-2, "epochs": 2,
                                            "steps_per_epoch": 3, "iwae_samples": 2, "iwae_examples": 4}})


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def _trained(out, monkeypatch, callbacks=(), report=None):
    """train(TINY) into ``out``; returns (result, the VAE weights finish_training started from)."""
    at_finish = {}
    original = loop.finish_training

    def recording(model, *args, **kwargs):
        at_finish["vae"] = [np.array(v, np.float64) for v in model.vae_variables]
        return original(model, *args, **kwargs)

    monkeypatch.setattr(loop, "finish_training", recording)
    return loop.train(TINY, out, verbose=0, callbacks=list(callbacks), report=report), at_finish["vae"]


@pytest.mark.slow
def test_the_run_saves_the_average_and_a_resumed_run_continues_it_says_so_and_counts_both_parts(tmp_path,
                                                                                               monkeypatch):
    """Interrupted after epoch 1 (the checkpoint holds the last weights and the average), then resumed: the
    average over all six steps is in the networks when the BatchNorm refresh and the sampler fit start, and
    in model.keras; the discriminator's weights are its last step's. The resumed run also says so in its
    first line, plans only the remaining epoch and adds the interrupted part's time to its own (one
    interrupted VAEGAN run serves both: each run traces the VAEGAN's train step, the costly part)."""
    from keras_vae.utils.progress import Reporter

    out, first, second = tmp_path / "run", Weights(), Weights()
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train(TINY, out, verbose=0, callbacks=[first, Interrupt()])
    metrics_path = out / "metrics.json"
    record = json.loads(metrics_path.read_text())
    assert record["elapsed_seconds"] > 0
    record["elapsed_seconds"] = 1000.0  # pretend the first part took 1000 s
    metrics_path.write_text(json.dumps(record))
    stream = io.StringIO()
    result, at_finish = _trained(out, monkeypatch, [second], report=Reporter(stream=stream))
    text = stream.getvalue()
    assert text.splitlines()[0] == f"resuming the interrupted run in {out} from epoch 2 of 2 (1 done, 1000 s spent before)"
    assert "plan: 1 epoch x 3 steps = 3 steps (epochs 2-2 of 2)" in text
    assert result.metrics["train_seconds"] > 1000.0
    assert json.loads(metrics_path.read_text())["train_seconds"] == result.metrics["train_seconds"]
    assert result.metrics["resumed"] is True and (len(first.vae), len(second.vae)) == (3, 3)
    expected = reference_average(first.vae + second.vae)
    assert_weights(at_finish, expected)  # swapped before the BatchNorm refresh and the sampler fit
    saved = load_model(out / "model.keras")
    assert_weights(saved.vae_variables, expected)
    assert max(np.abs(e - w).max() for e, w in zip(expected, second.vae[-1])) > 1e-3
    for actual, last in zip(saved.discriminator.trainable_variables, second.disc[-1], strict=True):
        np.testing.assert_array_equal(np.array(actual), last)
