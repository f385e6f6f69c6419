"""The run configuration's dataclasses: one frozen dataclass per component, validated in ``__post_init__``.

A ``RunConfig`` is built from a preset name, optionally a YAML/JSON file, then CLI
overrides (in that order). Deeper code receives these validated objects, never raw dicts.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from keras_vae.data.config import DataConfig
from keras_vae.choices import (ACTIVATIONS, ADVERSARIAL_LOSSES, ARCHITECTURES, BN_MODES, KL_KINDS,
                               LATENT_PROJECTIONS, LIKELIHOODS, LR_SCHEDULES, MODEL_KINDS, OBJECTIVES,
                               OUTPUT_BIASES, POPULATION_VARIANCES, PRECISIONS, STRATEGIES)
from keras_vae.config.coercion import merge
from keras_vae.errors import ConfigError, choices
from keras_vae.utils.validation import check_seed, short

# sanity bounds: larger values cannot fit in memory here and would fail deep inside TensorFlow
MAX_WIDTH = 65536  # units, filters, latent size
MAX_IMAGE_SIDE = 8192
MAX_LAYERS = 64  # entries of a layer list, identity blocks per stage
MAX_SAMPLES_PER_EXAMPLE = 10_000  # L and the KL Monte Carlo draws: one [L, batch, latent] tensor each step
MAX_IWAE_SAMPLES = 1_000_000  # K: 1e6 samples per example already takes hours on a CPU


def _check_choice(name: str, value: Any, valid: tuple) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"unknown {name} {short(value)}: choose {choices(valid)}")


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {short(value)}")


def _check_range(name: str, value: Any, low: float, high: float, high_open: bool = False) -> None:
    """ConfigError unless low <= value <= high (value < high with ``high_open``)."""
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        lo, hi = (f"{v:g}" if isinstance(v, float) else str(v) for v in (low, high))
        raise ConfigError(f"{name} must be in [{lo}, {hi}{')' if high_open else ']'}, got {short(value)}")


def _check_widths(name: str, values: tuple, allow_empty: bool = True) -> None:
    """ConfigError unless every entry of a layer-size tuple is an integer in [1, MAX_WIDTH]."""
    if not values and not allow_empty:
        raise ConfigError(f"{name} must list at least one size, got ()")
    for v in values:
        if not 1 <= v <= MAX_WIDTH:
            raise ConfigError(f"{name} {short(tuple(values))} must hold sizes in [1, {MAX_WIDTH}], got {short(v)}")


def valid_stage_counts(size: int, max_stages: int = 8) -> list[int]:
    """Numbers of stride-2 stages an image side of ``size`` pixels allows (size divisible by 2^n)."""
    return [n for n in range(1, max_stages + 1) if size % (2 ** n) == 0 and size // (2 ** n) >= 1]


def check_resnet_geometry(config: "ModelConfig") -> None:
    """Raise ConfigError unless the residual encoder/decoder and the PatchGAN fit ``image_shape``."""
    height, width, _ = (int(s) for s in config.image_shape)
    n = config.num_stages
    if not isinstance(n, int) or not 1 <= n <= 16:
        raise ConfigError(f"num_stages must be an integer >= 1 and <= 16, got {short(n)}")
    if len(config.filters) not in (1, n) or any(int(f) <= 0 for f in config.filters):
        raise ConfigError(
            f"filters {short(tuple(config.filters))} must hold 1 value (used by every stage) or num_stages={n} "
            "positive values (one per stage, from the input resolution down)"
        )
    for name in ("encoder_identity_blocks", "decoder_identity_blocks"):
        _check_range(name, getattr(config, name), 0, MAX_LAYERS)
    factor = 2 ** n
    for side_name, side in (("height", height), ("width", width)):
        if side % factor:
            stages = valid_stage_counts(side)
            valid_sizes = [factor * k for k in range(1, 9) if factor * k <= 512]
            hint = (f"num_stages {choices(stages)} for {side}" if stages
                    else f"no stage count divides the odd size {side}")
            raise ConfigError(
                f"image {side_name} {side} cannot be halved num_stages={n} times (2^{n}={factor} must divide it): "
                f"with num_stages={n} use sizes that are multiples of {factor} (e.g. {', '.join(map(str, valid_sizes[:6]))}); "
                f"valid choices: {hint}"
            )
    if config.disc_kernel_size < 1:
        raise ConfigError(f"disc_kernel_size must be >= 1, got {config.disc_kernel_size!r}")
    if not 0.0 <= config.disc_dropout < 1.0:
        raise ConfigError(f"disc_dropout must be in [0, 1), got {config.disc_dropout!r}")
    if not config.disc_filters or int(config.disc_filters[-1]) != 1:
        raise ConfigError(
            f"disc_filters {short(tuple(config.disc_filters))} must end with 1 (one logit per patch)"
        )
    reduction = 1
    for stride in config.disc_strides:
        if not 1 <= int(stride) <= MAX_IMAGE_SIDE:
            raise ConfigError(f"disc_strides must be in [1, {MAX_IMAGE_SIDE}], got {short(tuple(config.disc_strides))}")
        reduction *= int(stride)
    if min(height, width) < reduction:
        raise ConfigError(
            f"disc_strides {short(tuple(config.disc_strides))} reduce the image by {reduction}, more than its "
            f"size {min(height, width)}: use fewer stride-2 layers"
        )


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of encoder, decoder and (for ``vaegan``) discriminator."""

    kind: str = "vae"
    image_shape: tuple[int, int, int] = (28, 28, 1)
    latent_dim: int = 16
    architecture: str = "mlp"  # mlp | conv (classic VAE) | resnet (VAEGAN)
    # classic VAE
    hidden_units: tuple[int, ...] = (500,)
    activation: str = "tanh"
    conv_filters: tuple[int, ...] = (32, 64)
    likelihood: str = "bernoulli"  # decoder p(x|z) for the classic VAE
    output_bias: str = "zero"  # zero | data_mean: decoder logits start at the training mean (keras_vae.models.output_bias)
    learn_variance: bool = True  # gaussian decoder: per-pixel variance output, else fixed
    fixed_log_variance: float = 0.0
    # class-conditional model (Sohn et al. 2015): > 0 feeds a one-hot label of that many classes to the encoder
    # (beside the flattened image or features), the decoder (beside z) and the VAEGAN's discriminator (a
    # projection); 0 is the unconditional model
    num_classes: int = 0
    # residual VAE (paper): filters per stage, from the input resolution down
    filters: tuple[int, ...] = (128,)
    num_stages: int = 6  # downsamplings in the encoder (= upsamplings in the decoder)
    encoder_identity_blocks: int = 2
    decoder_identity_blocks: int = 1
    input_layer_norm: bool = True  # LayerNorm per channel over (height, width), as in the reference
    conv_bias: bool = False  # biases on the convolutions that feed a BatchNorm (the reference has them)
    # the decoder's last upsampling block ends in the image's channels (reference), else in filters[0]
    decoder_last_block_to_image: bool = True
    # batch: BatchNorm uses batch statistics in training (moving ones at inference), dropout fires;
    # reference: what the reference code does under Keras 3 (networks called without training=):
    # BatchNorm always on its (never updated) moving statistics, a learned affine map; no dropout
    bn_mode: str = "batch"
    # PatchGAN discriminator
    disc_filters: tuple[int, ...] = (128, 128, 128, 64, 64, 1)
    disc_strides: tuple[int, ...] = (2, 2, 2, 1, 1, 1)
    disc_kernel_size: int = 3
    disc_dropout: float = 0.25
    # BatchNorm statistics all-reduced across replicas under a tf.distribute strategy (makes a
    # mirrored run match a single-device one; slower, so off by default)
    sync_batch_norm: bool = False

    def __post_init__(self) -> None:
        _check_choice("model kind", self.kind, MODEL_KINDS)
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("bn_mode", self.bn_mode, BN_MODES)
        _check_choice("output_bias", self.output_bias, OUTPUT_BIASES)
        if self.output_bias == "data_mean" and (self.kind != "vae" or self.likelihood != "bernoulli"):
            raise ConfigError("output_bias 'data_mean' initialises the Bernoulli logits of the classic VAE: use "
                              "model kind 'vae' with likelihood 'bernoulli', or output_bias 'zero'")
        if len(self.image_shape) != 3 or any(int(s) <= 0 for s in self.image_shape):
            raise ConfigError(
                f"image_shape must be (height, width, channels) with positive sizes, got {short(self.image_shape)}"
            )
        if self.image_shape[2] not in (1, 3):
            raise ConfigError(
                f"image_shape has {self.image_shape[2]} channels: choose 1 (greyscale) or 3 (RGB)"
            )
        _check_choice("activation", self.activation, ACTIVATIONS)
        if any(not 1 <= s <= MAX_IMAGE_SIDE for s in self.image_shape[:2]):
            raise ConfigError(f"image_shape {short(self.image_shape)}: height and width must be in [1, {MAX_IMAGE_SIDE}]")
        _check_range("latent_dim", self.latent_dim, 1, MAX_WIDTH)
        for name in ("hidden_units", "conv_filters", "filters", "disc_filters"):
            _check_widths(name, getattr(self, name))
            if len(getattr(self, name)) > MAX_LAYERS:
                raise ConfigError(f"{name} lists {len(getattr(self, name))} layers, more than {MAX_LAYERS}")
        _check_range("fixed_log_variance", self.fixed_log_variance, -30.0, 30.0)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or \
                not (self.num_classes == 0 or 2 <= self.num_classes <= MAX_WIDTH):
            raise ConfigError(f"num_classes must be 0 (unconditional) or an integer in [2, {MAX_WIDTH}] (the "
                              f"classes of a conditional model), got {short(self.num_classes)}")
        if not 1 <= self.num_stages <= 16:
            raise ConfigError(f"num_stages must be an integer >= 1 and <= 16, got {short(self.num_stages)}")
        if self.disc_kernel_size < 1 or self.disc_kernel_size > 64:
            raise ConfigError(f"disc_kernel_size must be in [1, 64], got {short(self.disc_kernel_size)}")
        if self.kind == "vaegan" and self.architecture != "resnet":
            raise ConfigError("model kind 'vaegan' needs architecture 'resnet'")
        if self.kind == "vae" and self.architecture == "resnet":
            raise ConfigError("architecture 'resnet' is for model kind 'vaegan': use 'mlp' or 'conv'")
        if len(self.disc_filters) != len(self.disc_strides):
            raise ConfigError(
                f"disc_filters ({len(self.disc_filters)}) and disc_strides ({len(self.disc_strides)}) "
                "must have the same length"
            )
        if self.architecture == "resnet":
            check_resnet_geometry(self)

    @property
    def conditional(self) -> bool:
        """True for a class-conditional model (``num_classes`` > 0)."""
        return self.num_classes > 0

    @property
    def stage_filters(self) -> tuple[int, ...]:
        """Filters of each residual stage, from the input resolution down (a 1-tuple broadcast)."""
        filters = tuple(int(f) for f in self.filters)
        return filters * self.num_stages if len(filters) == 1 else filters

    @property
    def value_range(self) -> tuple[float, float]:
        """Pixel range inside the model: [0, 1] for the classic VAE, [-1, 1] for the paper's model."""
        return (-1.0, 1.0) if self.kind == "vaegan" else (0.0, 1.0)


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and their weights (Kingma & Welling 2013; Rivera 2024, section 2)."""

    # classic VAE (SGVB)
    beta: float = 1.0
    kl_warmup_steps: int = 0
    num_samples: int = 1  # L, reparameterized samples per example
    objective: str = "elbo"  # elbo (mean over the L samples) | iwae (log mean exp over them, Burda et al.)
    # paper's model
    kl: str = "standard"  # standard (per-example KL) | population (batch mixture moments)
    population_variance: str = "means"  # means (reference) | mixture (mean sigma^2 + var mu) | covariance (full)
    kl_weight: float = 1.0
    variance_weight: float = 0.1
    reconstruction_weight: float = 5000.0  # r_loss_factor (mean absolute error)
    adversarial_weight: float = 100.0
    adversarial_loss: str = "bce"
    adaptive_adversarial_weight: bool = False
    disc_start_step: int = 0
    n_critic: int = 1
    disc_on_prior_samples: bool = False
    use_discriminator: bool = True
    use_variance_regularizer: bool = True
    sample_posterior: bool = True  # False: decode the posterior mean (deterministic, for tests)
    kl_monte_carlo_samples: int = 16  # samples of the logged Monte Carlo KL(batch mixture || prior)
    # semi-supervised M2 (Kingma et al. 2014): the classifier's cross-entropy weight alpha = this * N (N training
    # images; the paper's 0.1)
    classification_weight: float = 0.1

    def __post_init__(self) -> None:
        _check_choice("kl", self.kl, KL_KINDS)
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("population_variance", self.population_variance, POPULATION_VARIANCES)
        _check_choice("adversarial_loss", self.adversarial_loss, ADVERSARIAL_LOSSES)
        _check_positive("beta", self.beta, allow_zero=True)
        _check_positive("kl_warmup_steps", self.kl_warmup_steps, allow_zero=True)
        _check_range("num_samples", self.num_samples, 1, MAX_SAMPLES_PER_EXAMPLE)
        _check_positive("n_critic", self.n_critic)
        _check_positive("disc_start_step", self.disc_start_step, allow_zero=True)
        _check_range("kl_monte_carlo_samples", self.kl_monte_carlo_samples, 1, MAX_SAMPLES_PER_EXAMPLE)
        for name in ("kl_weight", "variance_weight", "reconstruction_weight", "adversarial_weight",
                     "classification_weight"):
            _check_positive(name, getattr(self, name), allow_zero=True)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings."""

    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 100
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    weight_decay: float = 0.0  # decoupled weight decay of the (generator) Adam optimizer (AdamW), per step
    disc_learning_rate: float = 1e-4
    disc_beta_1: float = 0.5
    seed: int = 0
    jit_compile: bool = False
    precision: str = "auto"  # bf16 where the hardware has it (keras_vae.training.precision)
    iwae_samples: int = 1000  # K for the final log-likelihood estimate
    iwae_examples: int = 500  # validation examples the estimate averages over
    lr_schedule: str = "constant"  # constant | cosine (per epoch, from learning_rate down to 0)
    keep_best: bool = False  # classic VAE: keep the weights of the epoch with the best validation ELBO
    latent_projection: str = "pca"  # latent.png for latent > 2: "pca" or "tsne"
    summary_every: int = 1  # TensorBoard images and code histograms every N epochs (0: never)
    strategy: str = "auto"  # auto | none | mirrored | multiworker (TF_CONFIG): keras_vae.training.distributed
    # > 0: a RealNVP flow on the fitted mixture joins the latent samplers (keras_vae.sampling.flow_fit); off by
    # default: on the default VAEGAN it beats the mixture's held-out likelihood but not its FD (docs/samplers.md)
    flow_steps: int = 0
    # > 0: the VAE's (the VAEGAN generator's) Adam keeps an exponential moving average of the encoder and decoder
    # weights, w_avg = m * w_avg + (1 - m) * w after every step, and fit ends with the average in the networks
    # (Yazici et al. 2019); the discriminator keeps its own weights. 0: off (the weights of the last step)
    ema_momentum: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("latent_projection", self.latent_projection, LATENT_PROJECTIONS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        if self.summary_every < 0:
            raise ConfigError(f"train.summary_every must be >= 0 (0 turns image summaries off), "
                              f"got {self.summary_every}")
        _check_positive("epochs", self.epochs)
        _check_positive("batch_size", self.batch_size)
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("disc_learning_rate", self.disc_learning_rate)
        _check_positive("iwae_samples", self.iwae_samples)
        _check_positive("iwae_examples", self.iwae_examples)
        _check_range("beta_1", self.beta_1, 0.0, 1.0, high_open=True)
        _check_range("disc_beta_1", self.disc_beta_1, 0.0, 1.0, high_open=True)
        _check_range("batch_size", self.batch_size, 1, MAX_WIDTH)
        _check_range("iwae_samples", self.iwae_samples, 1, MAX_IWAE_SAMPLES)
        check_seed("seed", self.seed)
        if self.steps_per_epoch is not None:
            _check_positive("steps_per_epoch", self.steps_per_epoch)
        _check_range("flow_steps", self.flow_steps, 0, 10_000_000)
        _check_range("ema_momentum", self.ema_momentum, 0.0, 1.0, high_open=True)


# TrainConfig fields that belong to the model (its optimizers and compile settings): the model keeps them
# (``VAE(learning_rate=...)``, ``model.compile()``); every other TrainConfig field is a setting of the run.
OPTIMIZER_FIELDS = ("learning_rate", "beta_1", "weight_decay", "disc_learning_rate", "disc_beta_1", "jit_compile",
                    "ema_momentum")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; ``config.json`` in a run folder is ``to_dict()``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Build from a nested dict such as ``config.json``; unknown keys are errors."""
        return merge(cls(), values)
