"""KERAS_VAE_MAX_STEPS (keras_vae.training.budget): the step cap the docs' shell examples are tested with."""
import dataclasses

import pytest

from keras_vae.config.presets import get_preset
from keras_vae.errors import ConfigError
from keras_vae.training.budget import MAX_STEPS_VARIABLE, cap_steps, max_steps


def test_unset_or_empty_leaves_the_config_alone():
    config = get_preset("mnist-mlp")
    assert max_steps({}) is None
    assert cap_steps(config, {}) is config
    assert cap_steps(config, {MAX_STEPS_VARIABLE: " "}) is config


def test_cap_spreads_the_steps_over_at_most_that_many_epochs():
    config = get_preset("mnist-mlp")  # 150 epochs of one pass over the data
    capped = cap_steps(config, {MAX_STEPS_VARIABLE: "4"})
    assert (capped.train.epochs, capped.train.steps_per_epoch) == (4, 1)
    capped = cap_steps(dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=2)),
                       {MAX_STEPS_VARIABLE: "7"})
    assert (capped.train.epochs, capped.train.steps_per_epoch) == (2, 3)
    assert capped.model == config.model and capped.loss == config.loss  # only the run's length changes


def test_cap_bounds_the_flow_sampler_fit_too():
    config = get_preset("mnist-28")
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, flow_steps=3000))
    assert cap_steps(config, {MAX_STEPS_VARIABLE: "2"}).train.flow_steps == 2
    no_flow = get_preset("tiny")
    assert no_flow.train.flow_steps == 0 and cap_steps(no_flow, {MAX_STEPS_VARIABLE: "2"}).train.flow_steps == 0


def test_a_run_already_under_the_cap_is_unchanged():
    config = get_preset("tiny-vae")
    assert config.train.epochs * config.train.steps_per_epoch <= 10
    assert cap_steps(config, {MAX_STEPS_VARIABLE: "10"}) is config
    smaller = cap_steps(config, {MAX_STEPS_VARIABLE: "2"})
    assert smaller.train.epochs * smaller.train.steps_per_epoch <= 2


@pytest.mark.parametrize("value", ["0", "-3", "ten", "1.5"])
def test_a_bad_value_is_a_config_error_naming_the_variable(value):
    with pytest.raises(ConfigError, match=MAX_STEPS_VARIABLE):
        max_steps({MAX_STEPS_VARIABLE: value})
