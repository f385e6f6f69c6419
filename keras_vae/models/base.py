"""What every keras-vae model offers, whatever its networks and losses.

A model holds ``encoder`` (images -> [mean, log_var]) and ``decoder`` (z -> decoder output) as
Keras models, and exposes ``encode``, ``decode``, ``reconstruct`` and ``sample`` with images in
the model's own value range (``value_range``: [0, 1] or [-1, 1]). ``to_unit`` / ``from_unit``
convert to and from [0, 1] (the exporters and plots use them).

Construction, the Keras way (every field of ``ModelConfig`` and ``LossConfig``, and the optimizer fields
of ``TrainConfig`` (``OPTIMIZER_FIELDS``), as a keyword; validated by those dataclasses)::

    vae = keras_vae.VAE(latent_dim=8, likelihood="bernoulli")   # the rest from the class's default preset
    vae = keras_vae.VAE.from_preset("mnist-mlp")                 # exactly the model `keras-vae train` builds
    vae.compile()                                                # Adam from the model's learning_rate, beta_1
    vae.fit(x, epochs=10)                                        # x: float images (N, H, W, C) in value_range

Each section starts from the config object passed (``model_config``, ``loss_config``, ``train_config``),
else from the class's default preset (``DEFAULT_PRESET``: the model ``keras-vae train --model vae|vaegan``
trains), then the keywords override single fields.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import itertools
from typing import Any, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

from keras_vae.config import OPTIMIZER_FIELDS, LossConfig, ModelConfig, RunConfig, TrainConfig, merge, section_from_dict
from keras_vae.distributions import diagonal_gaussian, reparameterize
from keras_vae.errors import ConfigError, DataError, choices

VALIDATION_SEED_OFFSET = 1_000_003
# keras.Model's own constructor arguments (what its get_config writes): passed through untouched
KERAS_ARGUMENTS = ("name", "trainable", "dtype", "autocast", "activity_regularizer")
# fit arguments a model keyword might be confused with: they belong to fit / the run, not the model
_RUN_FIELDS_FOR_FIT = ("epochs", "batch_size", "steps_per_epoch")


class LatentVariableModel(keras.Model):
    """Base of ``VAE`` and ``VAEGAN``: configs, serialization and the encode/decode API."""

    # values train_step reports that are settings, not measurements (keras_vae.training.schedules): not validated
    SCHEDULE_METRICS: tuple[str, ...] = ("beta", "adversarial_weight")

    KIND: str = ""  # the ModelConfig.kind this class implements
    DEFAULT_PRESET: str = ""  # keras_vae.config.presets: where the sections not passed start from

    def __init__(self, model_config: ModelConfig | Mapping | None = None,
                 loss_config: LossConfig | Mapping | None = None, seed: int = 0, *,
                 train_config: TrainConfig | Mapping | None = None, **kwargs: Any) -> None:
        keras_kwargs = {k: v for k, v in kwargs.items() if k in KERAS_ARGUMENTS}
        fields = {k: v for k, v in kwargs.items() if k not in KERAS_ARGUMENTS}
        model, loss, train = self.resolve_configs(model_config, loss_config, train_config, fields)
        super().__init__(**keras_kwargs)
        self.model_config, self.loss_config, self.train_config = model, loss, train
        self.seed = int(seed)
        # output_bias="data_mean": set from the training images once, by initialize_output_bias or the first fit
        self.output_bias_initialized = False
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        # validation noise has its own stream, so evaluating never changes what training draws
        self.validation_seed_generator = keras.random.SeedGenerator(self.seed + VALIDATION_SEED_OFFSET)
        self.latent_sampler = None  # a keras_vae.sampling.samplers.LatentSampler; None: the prior N(0, I)

    # --- configuration -------------------------------------------------------------------
    @classmethod
    def config_fields(cls) -> dict[str, tuple[str, ...]]:
        """The keyword arguments the constructor takes besides Keras' own: {section: field names}."""
        return {"model": tuple(f.name for f in dataclasses.fields(ModelConfig)),
                "loss": tuple(f.name for f in dataclasses.fields(LossConfig)),
                "train": OPTIMIZER_FIELDS}

    @classmethod
    def resolve_configs(cls, model_config=None, loss_config=None, train_config=None,
                        fields: Mapping[str, Any] | None = None) -> tuple[ModelConfig, LossConfig, TrainConfig]:
        """(ModelConfig, LossConfig, TrainConfig) from config objects or dicts (each defaulting to the section of
        ``DEFAULT_PRESET``) and single-field overrides, coerced and validated by the dataclasses (ConfigError
        naming the field). The TrainConfig keeps only ``OPTIMIZER_FIELDS``: the rest belongs to a run."""
        fields = dict(fields or {})
        if cls.KIND and "kind" in fields and fields["kind"] != cls.KIND:
            other = {"vae": "VAE", "vaegan": "VAEGAN"}.get(fields["kind"])
            fix = f"use keras_vae.{other}" if other else f"kind={cls.KIND!r}"
            raise ConfigError(f"{cls.__name__} builds model kind {cls.KIND!r}, got kind={fields['kind']!r}: {fix}")
        sections = cls.config_fields()
        overrides: dict[str, dict[str, Any]] = {"model": {}, "loss": {}, "train": {}}
        for name, value in fields.items():
            section = next((s for s, names in sections.items() if name in names), None)
            if section is None:
                raise ConfigError(cls._unknown_keyword(name))
            overrides[section][name] = value
        preset = None
        if model_config is None or loss_config is None or train_config is None:
            from keras_vae.config.presets import get_preset

            preset = get_preset(cls.DEFAULT_PRESET)
        model = preset.model if model_config is None else section_from_dict(ModelConfig, model_config)
        loss = preset.loss if loss_config is None else section_from_dict(LossConfig, loss_config)
        train = preset.train if train_config is None else section_from_dict(TrainConfig, _train_fields(train_config))
        train = TrainConfig(**{name: getattr(train, name) for name in OPTIMIZER_FIELDS})
        config = merge(RunConfig(model=model, loss=loss, train=train), overrides)
        return config.model, config.loss, config.train

    @classmethod
    def _unknown_keyword(cls, name: Any) -> str:
        """The error message for a keyword that is no field of the model (a run setting, or a typo)."""
        from keras_vae.utils.validation import short

        if name in {f.name for f in dataclasses.fields(TrainConfig)}:
            where = ("fit (model.fit(x, epochs=..., batch_size=...))" if name in _RUN_FIELDS_FOR_FIT
                     else f"the run's configuration (train.{name}, keras_vae.train)")
            return f"{name!r} is a setting of the training run, not of the {cls.__name__} model: give it to {where}"
        valid = sorted({n for names in cls.config_fields().values() for n in names})
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
        if close:
            return (f"unknown {cls.__name__} keyword {short(name)}: did you mean {choices(close)}? (the keywords are "
                    f"the fields of ModelConfig and LossConfig, and {', '.join(OPTIMIZER_FIELDS)})")
        return f"unknown {cls.__name__} keyword {short(name)}: choose {choices(valid)}"

    @classmethod
    def from_preset(cls, name: str, **fields: Any) -> "LatentVariableModel":
        """The model of preset ``name`` (keras_vae.config.presets), exactly as ``keras-vae train --preset name``
        builds it (``keras_vae.models.build_model``), with ``fields`` (keywords as for the constructor) overridden.
        A preset with ``output_bias="data_mean"`` gets its bias from the first ``fit`` (or ``initialize_output_bias``)."""
        from keras_vae.config.presets import get_preset, preset_names

        config = get_preset(name)
        if config.model.kind != cls.KIND:
            mine = [p for p in preset_names() if get_preset(p).model.kind == cls.KIND]
            other = {"vae": "VAE", "vaegan": "VAEGAN"}.get(config.model.kind, config.model.kind)
            raise ConfigError(f"preset {name!r} is a {config.model.kind!r} model: use keras_vae.{other}.from_preset"
                              f"({name!r}), or a {cls.KIND!r} preset: {choices(mine)}")
        return cls.from_run_config(config, **fields)

    @classmethod
    def from_run_config(cls, config: RunConfig, **fields: Any) -> "LatentVariableModel":
        """The (uncompiled) model a RunConfig describes, seeded with ``config.train.seed``."""
        return cls(config.model, config.loss, seed=config.train.seed, train_config=config.train, **fields)

    # --- serialization -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "model_config": dataclasses.asdict(self.model_config),
            "loss_config": dataclasses.asdict(self.loss_config),
            "train_config": {name: getattr(self.train_config, name) for name in OPTIMIZER_FIELDS},
            "seed": self.seed,
            "output_bias_initialized": bool(self.output_bias_initialized),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        # files saved before the flag existed were saved by training runs, after the bias was set
        initialized = bool(config.pop("output_bias_initialized", True))
        model = cls(**config)
        model.output_bias_initialized = initialized
        return model

    def build(self, input_shape=None) -> None:  # sub-networks are built at construction
        self.built = True

    # --- properties ----------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.model_config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.model_config.image_shape)

    @property
    def value_range(self) -> tuple[float, float]:
        return self.model_config.value_range

    def to_unit(self, images):
        """Model range -> [0, 1] (clipped)."""
        low, high = self.value_range
        return tf.clip_by_value((tf.cast(images, tf.float32) - low) / (high - low), 0.0, 1.0)

    def from_unit(self, images):
        """[0, 1] -> model range."""
        low, high = self.value_range
        return tf.cast(images, tf.float32) * (high - low) + low

    def compile_for_training(self, train) -> None:
        """compile() with the optimizer(s) a ``TrainConfig`` asks for. Subclasses define it."""
        raise NotImplementedError

    # --- fit: the data-dependent output bias and checked NumPy input ------------------------
    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras' ``fit``. NumPy images must be float (N, H, W, C) = (N, *image_shape) in ``value_range``
        (DataError naming the fix otherwise). With ``output_bias="data_mean"`` (the mnist-mlp preset), the first
        call sets the decoder's output bias from the training images in ``x`` before the first step, as
        ``keras-vae train`` does (``initialize_output_bias``; NumPy arrays, less a ``validation_split``, and
        finite tf.data datasets are read once; of a repeated dataset, the ``steps_per_epoch`` batches of one
        epoch); saved and loaded models keep it."""
        bound = inspect.signature(keras.Model.fit).bind(self, x, y, *args, **kwargs).arguments
        validation = bound.get("validation_data")
        for name, value in (("x", x), ("validation_data", validation)):
            if isinstance(value, np.ndarray):
                self.check_images(value, name)
        if self.output_bias_pending:
            split = float(bound.get("validation_split") or 0.0)
            if isinstance(x, np.ndarray) and split:
                x_train = x[: int(len(x) * (1.0 - split))]  # Keras holds out the last fraction
            elif isinstance(x, tf.data.Dataset) and bound.get("steps_per_epoch") and \
                    int(x.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
                x_train = x.take(int(bound["steps_per_epoch"]))  # a repeated dataset: the batches of one epoch
            else:
                x_train = x
            self.initialize_output_bias(x_train)
        return super().fit(x, y, *args, **kwargs)

    @property
    def output_bias_pending(self) -> bool:
        """True while ``output_bias="data_mean"`` waits for the training images (set by the first fit)."""
        return getattr(self.model_config, "output_bias", "zero") == "data_mean" and not self.output_bias_initialized

    def initialize_output_bias(self, images) -> np.ndarray | None:
        """Set the decoder's output bias from training ``images`` when ``output_bias="data_mean"`` (else a no-op
        returning None): a NumPy array (N, *image_shape) in [0, 1], a finite tf.data.Dataset or an iterable of
        batches (images or (images, ...) tuples). ``fit`` calls it once by itself; call it yourself when fit gets
        data it cannot read twice (a generator, a repeated dataset). See keras_vae.models.output_bias."""
        from keras_vae.models.output_bias import initialize_output_bias

        if getattr(self.model_config, "output_bias", "zero") != "data_mean":
            return None
        return initialize_output_bias(self, _image_batches(images, self))

    def check_images(self, images: np.ndarray, name: str = "images") -> None:
        """DataError unless ``images`` is a float array (N, *image_shape) with values in ``value_range``."""
        shape, (low, high) = tuple(np.shape(images)), self.value_range
        h, w, c = self.image_shape
        scale = "x / 255" if (low, high) == (0.0, 1.0) else f"x / 255 * {high - low:g} + {low:g}"
        if shape[1:] != (h, w, c):
            fix = (f": add the channel axis ({name}[..., None])" if shape[1:] == (h, w) and c == 1
                   else f": resize the images, or build the model with image_shape={tuple(shape[1:])!r}")
            raise DataError(f"{name} has shape {shape}, but this model takes images of shape (N, {h}, {w}, {c}){fix}")
        if images.dtype.kind not in "f":
            raise DataError(f"{name} is {images.dtype}; this model takes float images in [{low:g}, {high:g}]: "
                            f"pass {scale} (as float32)")
        if images.size:
            lo, hi = float(np.min(images)), float(np.max(images))
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise DataError(f"{name} contains NaN or Inf values: clean or drop those examples")
            if lo < low or hi > high:
                hint = f": pass {scale}" if hi > 1.0 else ""
                raise DataError(f"{name} holds values in [{lo:g}, {hi:g}]; this model takes images in "
                                f"[{low:g}, {high:g}]{hint}")

    # --- the latent-variable API; a class-conditional model (num_classes > 0) takes labels ----------------
    @property
    def conditional(self) -> bool:
        """True for a class-conditional model (``model_config.num_classes`` > 0)."""
        return self.model_config.num_classes > 0

    @property
    def num_classes(self) -> int:
        return self.model_config.num_classes

    def label_one_hot(self, labels):
        """Labels -> the one-hot [B, num_classes] the networks take (None for an unconditional model without
        labels). Integer labels [B] (eagerly: checked to lie in [0, num_classes)) or a float one-hot [B, K]."""
        k = self.num_classes
        if not self.conditional:
            if labels is None:
                return None
            raise ConfigError("this model is not class-conditional (model.num_classes is 0): drop the labels, or "
                              "train a conditional model (keras-vae train --conditional)")
        if labels is None:
            raise ConfigError(f"this model is class-conditional ({k} classes): pass the labels, integers in "
                              f"[0, {k}), one per image (labels=...)")
        labels = tf.convert_to_tensor(labels)
        if labels.dtype.is_floating and labels.shape.rank == 2:
            return tf.cast(labels, tf.float32)
        if not (labels.dtype.is_integer or labels.dtype.is_floating):
            raise DataError(f"labels are {labels.dtype.name}: pass integers in [0, {k})")
        if tf.executing_eagerly():
            values = labels.numpy()
            if values.size and (values.min() < 0 or values.max() >= k or (values != values.astype(int)).any()):
                raise DataError(f"labels hold values in [{values.min():g}, {values.max():g}]; this model has {k} "
                                f"classes: pass integers in [0, {k})")
        return tf.one_hot(tf.cast(labels, tf.int32), k, dtype=tf.float32)

    def _inputs(self, tensor, one_hot):
        """A network's input: the tensor, or [tensor, one-hot] for a conditional model."""
        return tensor if one_hot is None else [tf.cast(tensor, tf.float32), tf.cast(one_hot, tf.float32)]

    def encode(self, images, training: bool = False, labels=None):
        """Posterior parameters (mean, log_var), each [B, D]; a conditional model needs ``labels`` [B]."""
        one_hot = self.label_one_hot(labels)
        mean, log_var = self.encoder(self._inputs(images, one_hot), training=training)
        return tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)

    def posterior(self, images, labels=None):
        """q(z|x[, y]) as a TFP MultivariateNormalDiag with batch_shape [B]."""
        return diagonal_gaussian(*self.encode(images, labels=labels))

    def decode(self, z, training: bool = False, labels=None):
        """Images (the decoder's mean, model range) for latents z [B, D]; a conditional model needs ``labels``."""
        one_hot = self.label_one_hot(labels)
        return self.decode_output_to_image(self.decoder(self._inputs(z, one_hot), training=training))

    def reconstruct(self, images, labels=None):
        """decode(posterior mean), both with ``labels`` for a conditional model."""
        mean, _ = self.encode(images, labels=labels)
        return self.decode(mean, labels=labels)

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0, label=None):
        """n images decoded from the model's sampler (model range). A conditional model decodes p(x|z, y=label)
        (``label`` an integer, or n integers) with z from its sampler; without ``label`` the classes cycle
        0, 1, ..., K-1, 0, ... An unconditional model refuses a label."""
        z = self.sample_latents(n, seed, temperature)
        return self.decode(z, labels=self.sample_labels(n, label))

    def sample_labels(self, n: int, label=None):
        """The labels ``sample`` decodes with: None (unconditional), ``label`` repeated n times, the n labels
        given, or 0, 1, ..., K-1, 0, ... (ConfigError for a label on an unconditional model)."""
        if not self.conditional:
            if label is None:
                return None
            raise ConfigError("this model is not class-conditional (model.num_classes is 0), so it samples no "
                              "class: drop the label, or train a conditional model (keras-vae train --conditional)")
        if label is None:
            return np.arange(n) % self.num_classes
        labels = np.asarray(label)
        if labels.ndim == 0:
            labels = np.full(n, labels)
        if labels.shape != (n,):
            raise DataError(f"label has shape {labels.shape}: pass one integer, or {n} (one per sample)")
        return labels

    def call(self, inputs, training: bool = False):
        """Reconstruction through the posterior mean (so ``predict`` gives reconstructions); a conditional model
        takes (images, labels)."""
        if not self.conditional:
            mean, _ = self.encode(inputs, training=training)
            return self.decode(mean, training=training)
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ConfigError(f"this model is class-conditional ({self.num_classes} classes): call it on "
                              "(images, labels)")
        images, labels = inputs
        mean, _ = self.encode(images, training=training, labels=labels)
        return self.decode(mean, training=training, labels=labels)

    def _tiled(self, one_hot, times):
        """The one-hot repeated for ``times`` samples per example ([times * B, K]); None stays None."""
        return None if one_hot is None else tf.tile(one_hot, [times, 1])

    def decode_output_to_image(self, output):
        """Decoder output -> image in the model's value range (plain TF ops). Subclasses define it."""
        raise NotImplementedError

    def get_latent_sampler(self, kind: str | None = None):
        """The sampler ``sample`` uses: ``latent_sampler`` (fitted after training, see
        keras_vae.sampling.posterior) or the prior N(0, I); ``kind='prior'`` forces the prior."""
        from keras_vae.sampling.samplers import prior_sampler

        if kind == "prior" or self.latent_sampler is None:
            return prior_sampler(self.latent_dim)
        if kind is not None and kind != self.latent_sampler.kind:
            from keras_vae.errors import ConfigError

            raise ConfigError(f"this model's sampler is {self.latent_sampler.kind!r}, not {kind!r}: "
                              "load the run with that sampler (keras_vae.sampling.posterior.load_sampler)")
        return self.latent_sampler

    def sample_latents(self, n: int, seed: int = 0, temperature: float = 1.0):
        """n latents [n, D] from the model's sampler (the drawing rule of keras_vae.sampling.samplers with
        ``draw_noise(seed, n, D)``; temperature scales the noise around each component's mean)."""
        from keras_vae.sampling.samplers import draw_noise

        eps, u = draw_noise(int(seed), int(n), self.latent_dim)
        return tf.constant(self.get_latent_sampler().latents(float(temperature) * eps, u))

    def sample_posterior(self, mean, log_var, num_samples: int | None = None, training: bool = True):
        """Reparameterized z = mean + sigma * eps; [B, D] or [L, B, D]. Noise from the model's
        SeedGenerator, or from the validation stream when ``training`` is False. Under a strategy with
        several replicas the seed is folded with the replica id (distinct noise on every replica)."""
        shape = tf.shape(mean) if num_samples is None else tf.concat([[num_samples], tf.shape(mean)], 0)
        generator = self.seed_generator if training else self.validation_seed_generator
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            seed = tf.random.experimental.stateless_fold_in(tf.cast(generator.next(), tf.int32),
                                                            tf.cast(ctx.replica_id_in_sync_group, tf.int32))
            eps = tf.random.stateless_normal(shape, seed=seed, dtype=mean.dtype)
        else:
            eps = keras.random.normal(shape, seed=generator, dtype=mean.dtype)
        return reparameterize(mean, log_var, eps)

    def batch_norm_networks(self) -> tuple:
        """Networks whose BatchNorm statistics ``recompute_batch_norm`` refreshes."""
        return (self.encoder, self.decoder)

    def recompute_batch_norm(self, batches, seed: int = 0) -> int:
        """Replace the BatchNorm moving statistics by the average batch statistics of ``batches``
        (images in the model's range; for a class-conditional model (images, integer labels) pairs) passed
        through the model as in training; returns the number of batches (0 when the model has no BatchNorm or
        does not train on batch statistics)."""
        from keras_vae.models.batchnorm import recompute_statistics

        if getattr(self.model_config, "bn_mode", "batch") != "batch":
            return 0
        conditional = self.conditional
        batches = iter(batches)
        first = next(batches, None)
        if first is not None:  # checked here: inside the traced forward it would surface as a StagingError
            if isinstance(first, (tuple, list)) != conditional:
                raise ConfigError("recompute_batch_norm takes (images, labels) batches for a class-conditional "
                                  "model and image batches otherwise")
            batches = itertools.chain([first], batches)

        def forward(x, *rest):
            *labels, step = rest
            one_hot = tf.one_hot(tf.cast(labels[0], tf.int32), self.num_classes) if conditional else None
            x = tf.cast(x, tf.float32)
            mean, log_var = self.encoder(self._inputs(x, one_hot), training=True)
            noise_seed = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(step, tf.int64)])
            eps = tf.random.stateless_normal(tf.shape(mean), seed=noise_seed, dtype=mean.dtype)
            output = self.decoder(self._inputs(reparameterize(mean, log_var, eps), one_hot), training=True)
            self._recompute_extra(x, output, one_hot)

        return recompute_statistics(self.batch_norm_networks(), forward, batches)

    def _recompute_extra(self, images, decoder_output, one_hot=None) -> None:
        """Hook for networks beyond encoder/decoder (the VAEGAN's discriminator); ``one_hot``: a conditional
        model's labels."""

    def predict_in_batches(self, fn, array: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Apply ``fn`` (tensor -> tensor) to a NumPy array in batches; returns NumPy."""
        outputs = [np.asarray(fn(tf.constant(array[i:i + batch_size])))
                   for i in range(0, len(array), batch_size)]
        return np.concatenate(outputs, axis=0)


def moving_average_options(train: TrainConfig) -> dict[str, Any]:
    """The keyword arguments that make a Keras optimizer keep a moving average of the weights it updates,
    w_avg = m w_avg + (1 - m) w (``use_ema``, ``ema_momentum`` m = ``train.ema_momentum``); none when it is 0."""
    return {"use_ema": True, "ema_momentum": train.ema_momentum} if train.ema_momentum > 0 else {}


def _train_fields(train_config) -> Any:
    """A TrainConfig as given, or a dict reduced to TrainConfig's fields (a whole ``config.train`` dict works)."""
    if isinstance(train_config, TrainConfig) or not isinstance(train_config, Mapping):
        return train_config
    return dict(train_config)


def _image_batches(images, model) -> Iterator[np.ndarray]:
    """Batches of NumPy images from an array, a finite tf.data.Dataset or an iterable of batches (images or
    (images, ...) tuples); ConfigError naming the fix for data that cannot be read before fit."""
    fix = ("call model.initialize_output_bias(images) with the training images (a NumPy array) before fit, "
           "or build the model with output_bias='zero'")
    if images is None:
        raise ConfigError(f"output_bias='data_mean' needs the training images and got none: {fix}")
    if isinstance(images, np.ndarray):
        model.check_images(images, "the training images")
        return (images[i:i + 4096] for i in range(0, len(images), 4096))
    if isinstance(images, tf.data.Dataset):
        if int(images.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ConfigError("output_bias='data_mean' reads the training images once before fit, and this dataset "
                              f"repeats forever (and no steps_per_epoch says what one epoch is): {fix}")
        return (_first(batch) for batch in images.as_numpy_iterator())
    if isinstance(images, (list, tuple)):
        return (_first(batch) for batch in images)
    raise ConfigError(f"output_bias='data_mean' reads the training images once before fit, and cannot read a "
                      f"{type(images).__name__} twice: {fix}")


def _first(batch) -> np.ndarray:
    """The images of a batch that may be (images, labels, ...)."""
    return np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)
