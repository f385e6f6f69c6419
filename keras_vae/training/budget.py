"""``KERAS_VAE_MAX_STEPS``: cap every training run at a number of optimizer steps (smoke runs, doc tests).

With ``KERAS_VAE_MAX_STEPS=N`` in the environment, ``keras_vae.train`` (and so ``keras-vae train`` and
``keras-vae ablate``) trains ``min(epochs, N)`` epochs of at most ``N // epochs`` steps each, so at most N
steps in all, and the flow sampler's fit (``train.flow_steps``) takes at most N steps too; everything after
the epochs (sampler fit, evaluation, figures) runs as usual. The capped
values are what the run's config.json records. Unset or empty: no cap. Meant for a few steps: an epoch
shorter than ``N // epochs`` steps is repeated up to that many.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Mapping

from keras_vae.errors import ConfigError

MAX_STEPS_VARIABLE = "KERAS_VAE_MAX_STEPS"
log = logging.getLogger(__name__)


def max_steps(environ: Mapping[str, str] | None = None) -> int | None:
    """The cap from ``KERAS_VAE_MAX_STEPS`` (a positive integer), or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(MAX_STEPS_VARIABLE, "").strip()
    if not value:
        return None
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if steps < 1:
        raise ConfigError(f"{MAX_STEPS_VARIABLE}={value[:80]!r}: give a positive integer (the most training "
                          "steps a run may take), or unset it")
    return steps


def cap_steps(config, environ: Mapping[str, str] | None = None):
    """``config`` (a RunConfig) with epochs and steps_per_epoch capped by ``KERAS_VAE_MAX_STEPS`` (unchanged
    when the variable is unset, or when the run already takes at most that many steps)."""
    cap = max_steps(environ)
    if cap is None:
        return config
    train = config.train
    epochs = min(train.epochs, cap)
    per_epoch = cap // epochs
    if train.steps_per_epoch is not None:
        per_epoch = min(per_epoch, train.steps_per_epoch)
    flow_steps = min(train.flow_steps, cap)
    if epochs == train.epochs and per_epoch == train.steps_per_epoch and flow_steps == train.flow_steps:
        return config
    log.warning("%s=%d: training %d epoch(s) of %d step(s) instead of %d epoch(s) of %s", MAX_STEPS_VARIABLE,
                cap, epochs, per_epoch, train.epochs,
                f"{train.steps_per_epoch} step(s)" if train.steps_per_epoch else "one pass over the data")
    return dataclasses.replace(config, train=dataclasses.replace(train, epochs=epochs, steps_per_epoch=per_epoch,
                                                                 flow_steps=flow_steps))
