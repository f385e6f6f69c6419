"""What every keras-vae model offers, whatever its networks and losses.

A model holds ``encoder`` (images -> [mean, log_var]) and ``decoder`` (z -> decoder output) as
Keras models, and exposes ``encode``, ``decode``, ``reconstruct`` and ``sample`` with images in
the model's own value range (``value_range``: [0, 1] or [-1, 1]). ``to_unit`` / ``from_unit``
convert to and from [0, 1] (the exporters and plots use them).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.config import LossConfig, ModelConfig, section_from_dict
from keras_vae.distributions import diagonal_gaussian, reparameterize

VALIDATION_SEED_OFFSET = 1_000_003


class LatentVariableModel(keras.Model):
    """Base of ``VAE`` and ``VAEGAN``: configs, serialization and the encode/decode API."""

    # values train_step reports that are settings, not measurements (keras_vae.training.schedules): not validated
    SCHEDULE_METRICS: tuple[str, ...] = ("beta", "adversarial_weight")

    def __init__(self, model_config: ModelConfig | dict | None = None,
                 loss_config: LossConfig | dict | None = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_config = section_from_dict(ModelConfig, model_config or {})
        self.loss_config = section_from_dict(LossConfig, loss_config or {})
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        # validation noise has its own stream, so evaluating never changes what training draws
        self.validation_seed_generator = keras.random.SeedGenerator(self.seed + VALIDATION_SEED_OFFSET)
        self.latent_sampler = None  # a keras_vae.sampling.samplers.LatentSampler; None: the prior N(0, I)

    # --- serialization -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "model_config": dataclasses.asdict(self.model_config),
            "loss_config": dataclasses.asdict(self.loss_config),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

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

    # --- the latent-variable API ---------------------------------------------------------
    def encode(self, images, training: bool = False):
        """Posterior parameters (mean, log_var), each [B, D], for images in the model's range."""
        mean, log_var = self.encoder(images, training=training)
        return tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)

    def posterior(self, images):
        """q(z|x) as a TFP MultivariateNormalDiag with batch_shape [B]."""
        return diagonal_gaussian(*self.encode(images))

    def decode_output_to_image(self, output):
        """Decoder output -> image in the model's value range (plain TF ops). Subclasses define it."""
        raise NotImplementedError

    def decode(self, z, training: bool = False):
        """Images (the decoder's mean, in the model's range) for latents z [B, D]."""
        return self.decode_output_to_image(self.decoder(z, training=training))

    def reconstruct(self, images):
        """decode(posterior mean): the deterministic reconstruction."""
        mean, _ = self.encode(images)
        return self.decode(mean)

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

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0):
        """n images decoded from the model's sampler (model range)."""
        return self.decode(self.sample_latents(n, seed, temperature))

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
        (images in the model's range) passed through the model as in training; returns the number of
        batches (0 when the model has no BatchNorm or does not train on batch statistics)."""
        from keras_vae.models.batchnorm import recompute_statistics

        if getattr(self.model_config, "bn_mode", "batch") != "batch":
            return 0

        def forward(x, step):
            x = tf.cast(x, tf.float32)
            mean, log_var = self.encoder(x, training=True)
            noise_seed = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(step, tf.int64)])
            eps = tf.random.stateless_normal(tf.shape(mean), seed=noise_seed, dtype=mean.dtype)
            output = self.decoder(reparameterize(mean, log_var, eps), training=True)
            self._recompute_extra(x, output)

        return recompute_statistics(self.batch_norm_networks(), forward, batches)

    def _recompute_extra(self, images, decoder_output) -> None:
        """Hook for networks beyond encoder/decoder (the VAEGAN's discriminator)."""

    def call(self, images, training: bool = False):
        """Reconstruction through the posterior mean (so ``predict`` gives reconstructions)."""
        mean, _ = self.encode(images, training=training)
        return self.decode(mean, training=training)

    def predict_in_batches(self, fn, array: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Apply ``fn`` (tensor -> tensor) to a NumPy array in batches; returns NumPy."""
        outputs = [np.asarray(fn(tf.constant(array[i:i + batch_size])))
                   for i in range(0, len(array), batch_size)]
        return np.concatenate(outputs, axis=0)
