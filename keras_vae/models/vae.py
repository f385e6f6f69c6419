"""The classic VAE of Kingma & Welling (2013), trained with the SGVB estimator under ``model.fit``.

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),   z = mu + sigma * eps  (L samples)
    loss    = mean_batch[-E_q log p(x|z) + beta_t * KL],   beta_t = beta * min(1, step / warmup)

With ``loss.objective = "iwae"`` the loss is the importance-weighted bound of Burda et al. (2016):

    loss = -mean_batch log (1/L) sum_l exp(log p(x|z_l) + beta_t [log p(z_l) - log q(z_l|x)])

which is the IWAE bound (tighter than the ELBO, equal to it for L = 1) when beta_t = 1.

With ``model.num_classes = K > 0`` it is the class-conditional VAE of Sohn et al. (2015): q(z|x, y) and
p(x|z, y) with y a one-hot label of K classes, the prior N(0, I) as before, and every term above conditioned on y:

    ELBO(x|y) = E_q(z|x,y)[log p(x|z, y)] - KL(q(z|x, y) || N(0, I)).

Its data are (images, integer labels) pairs, ``fit``, ``encode``, ``decode``, ``log_likelihood`` and ``elbo``
take the labels, and ``sample(n, label=7)`` decodes N(0, I) latents with label 7.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from keras_vae.config import TrainConfig
from keras_vae.distributions import diagonal_gaussian, kl_to_standard_normal, standard_normal
from keras_vae.errors import ConfigError
from keras_vae.models.likelihoods import decoder_distribution, decoder_mean
from keras_vae.models.base import LatentVariableModel, moving_average_options
from keras_vae.models.classic_networks import build_decoder, build_encoder


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(LatentVariableModel):
    """MLP or conv VAE with a Bernoulli, Gaussian or Laplace decoder; ``fit`` reports nats per example.

    Args:
        model_config: a ``ModelConfig`` (or its dict); default: the mnist-mlp preset's (``DEFAULT_PRESET``).
        loss_config: a ``LossConfig`` (or its dict); default: the mnist-mlp preset's.
        seed: seed of the model's noise (posterior samples).
        train_config: a ``TrainConfig`` (or dict) whose optimizer fields (``OPTIMIZER_FIELDS``) ``compile()``
            uses; default: the mnist-mlp preset's (Adam 2e-3).
        **kwargs: any ModelConfig / LossConfig field or optimizer field (``latent_dim=8``,
            ``likelihood="gaussian"``, ``beta=0.5``, ``learning_rate=1e-3``), and keras.Model's ``name``, ...

    ``VAE(latent_dim=8)`` is the model of ``keras-vae train --latent-dim 8``; ``VAE.from_preset(name)`` that of
    ``--preset name``. With ``output_bias="data_mean"`` (mnist-mlp) the first ``fit`` sets the decoder's output
    bias from its training images (``initialize_output_bias``), as the CLI does before its first step.
    """

    KIND = "vae"
    DEFAULT_PRESET = "mnist-mlp"

    def __init__(self, model_config=None, loss_config=None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(model_config, loss_config, seed, **kwargs)
        if self.model_config.kind != "vae":
            raise ConfigError(f"VAE is the classic VAE (model kind 'vae'), got kind {self.model_config.kind!r}: "
                              "use keras_vae.VAEGAN for the paper's model, or kind='vae'")
        self.encoder = build_encoder(self.model_config)
        self.decoder = build_decoder(self.model_config)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.elbo_tracker = keras.metrics.Mean(name="elbo")
        self.beta_tracker = keras.metrics.Mean(name="beta")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker, self.elbo_tracker,
                self.beta_tracker]

    # --- likelihood ----------------------------------------------------------------------
    def likelihood(self, decoder_output):
        """p(x|z) as a TFP distribution with event_shape [H, W, C]."""
        c = self.model_config
        return decoder_distribution(decoder_output, c.likelihood, c.learn_variance, c.fixed_log_variance)

    def decode_output_to_image(self, output):
        return decoder_mean(output, self.model_config.likelihood, self.model_config.learn_variance)

    # --- training ------------------------------------------------------------------------
    def compile_for_training(self, train: TrainConfig) -> None:
        """compile() with Adam(learning_rate, beta_1, decoupled weight_decay) and the run's jit_compile setting."""
        self.compile(optimizer=_adam(train), jit_compile=train.jit_compile)

    def compile(self, optimizer=None, **kwargs: Any) -> None:
        """Keras compile; without ``optimizer``, Adam(learning_rate, beta_1, weight_decay) of the model's
        ``train_config`` (``VAE(learning_rate=...)``), and its ``jit_compile`` unless given. The loss is the
        model's own (``train_step``): no ``loss`` argument is needed."""
        kwargs.setdefault("jit_compile", self.train_config.jit_compile)
        super().compile(optimizer=_adam(self.train_config) if optimizer is None else optimizer, **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Keras' own (which skips a model whose ``compile`` is overridden): the optimizer comes back on load."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # its slots, so the saved ones load into them

    def beta(self):
        """The KL weight at the current optimizer step (linear warm-up)."""
        beta = tf.constant(self.loss_config.beta, tf.float32)
        warmup = self.loss_config.kl_warmup_steps
        if warmup <= 0 or self.optimizer is None:
            return beta
        step = tf.cast(self.optimizer.iterations, tf.float32)
        return beta * tf.minimum(1.0, step / float(warmup))

    def elbo_terms(self, x, training: bool = False, labels=None):
        """Per-example (log p(x|z[, y]) averaged over L samples, KL), each [B], in nats."""
        one_hot = self.label_one_hot(labels)
        mean, log_var = self.encode(x, training=training, labels=one_hot)
        num_samples = self.loss_config.num_samples
        z = self.sample_posterior(mean, log_var, num_samples, training=training)  # [L, B, D]
        flat_z = tf.reshape(z, [-1, self.latent_dim])
        output = self.decoder(self._inputs(flat_z, self._tiled(one_hot, num_samples)), training=training)
        x_rep = tf.tile(tf.cast(x, tf.float32), [num_samples, 1, 1, 1])
        log_px = tf.reshape(self.likelihood(output).log_prob(x_rep), [num_samples, -1])
        return tf.reduce_mean(log_px, axis=0), kl_to_standard_normal(mean, log_var)

    def iwae_terms(self, x, training: bool = False, labels=None):
        """Per-sample log p(x|z_l) and log p(z_l) - log q(z_l|x), each [L, B], and the analytic KL [B]."""
        one_hot = self.label_one_hot(labels)
        mean, log_var = self.encode(x, training=training, labels=one_hot)
        num_samples = self.loss_config.num_samples
        z = self.sample_posterior(mean, log_var, num_samples)  # [L, B, D]
        output = self.decoder(self._inputs(tf.reshape(z, [-1, self.latent_dim]), self._tiled(one_hot, num_samples)),
                              training=training)
        x_rep = tf.tile(tf.cast(x, tf.float32), [num_samples, 1, 1, 1])
        log_px = tf.reshape(self.likelihood(output).log_prob(x_rep), [num_samples, -1])
        log_ratio = standard_normal(self.latent_dim).log_prob(z) - diagonal_gaussian(mean, log_var).log_prob(z)
        return log_px, log_ratio, kl_to_standard_normal(mean, log_var)

    def _per_example_loss(self, x, beta, training: bool, labels=None):
        """(loss per example, mean log p(x|z) [B], KL [B]) under the configured objective."""
        if self.loss_config.objective == "iwae":
            log_px, log_ratio, kl = self.iwae_terms(x, training=training, labels=labels)
            num_samples = tf.cast(tf.shape(log_px)[0], tf.float32)
            bound = tf.reduce_logsumexp(log_px + beta * log_ratio, axis=0) - tf.math.log(num_samples)
            return -bound, tf.reduce_mean(log_px, axis=0), kl
        log_px, kl = self.elbo_terms(x, training=training, labels=labels)
        return -log_px + beta * kl, log_px, kl

    def _step(self, data, training: bool):
        x = data[0] if isinstance(data, (tuple, list)) else data
        labels = None
        if self.conditional:
            if not isinstance(data, (tuple, list)) or len(data) < 2 or data[1] is None:
                raise ConfigError(f"this model is class-conditional ({self.num_classes} classes): fit it on "
                                  "(images, labels) (model.fit(x, y), or a dataset of (image, label) batches)")
            labels = data[1]
        with tf.GradientTape() as tape:
            beta = self.beta()
            per_example, log_px, kl = self._per_example_loss(x, beta, training, labels)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = self.optimizer.scale_loss(loss) if training else loss
        if training:
            grads = tape.gradient(scaled, self.trainable_weights)
            self.optimizer.apply(grads, self.trainable_weights)
        self.loss_tracker.update_state(per_example)
        self.reconstruction_tracker.update_state(-log_px)
        self.kl_tracker.update_state(kl)
        self.elbo_tracker.update_state(log_px - kl)
        self.beta_tracker.update_state(beta)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        logs = self._step(data, training=False)
        return {k: v for k, v in logs.items() if k not in self.SCHEDULE_METRICS}  # no val_beta

    # --- evaluation ----------------------------------------------------------------------
    @tf.function(reduce_retracing=True)
    def _log_weights(self, x, eps, one_hot=None):
        """log w_k = log p(x|z_k[, y]) + log p(z_k) - log q(z_k|x[, y]) for z_k = mu + sigma eps_k; [k, B]."""
        mean, log_var = self.encode(x, labels=one_hot)
        z = mean + tf.exp(0.5 * log_var) * eps  # [k, B, D]
        k = tf.shape(eps)[0]
        output = self.decoder(self._inputs(tf.reshape(z, [-1, self.latent_dim]), self._tiled(one_hot, k)))
        x_rep = tf.tile(tf.cast(x, tf.float32), [k, 1, 1, 1])
        log_px = tf.reshape(self.likelihood(output).log_prob(x_rep), [k, -1])
        log_pz = standard_normal(self.latent_dim).log_prob(z)
        log_qz = diagonal_gaussian(mean, log_var).log_prob(z)
        return log_px + log_pz - log_qz

    def log_likelihood(self, x, num_samples: int = 1000, chunk_size: int = 100, seed: int = 0,
                       labels=None) -> tf.Tensor:
        """Importance-sampled log p(x) per example (the IWAE bound with K = num_samples), a [B] tensor in nats:

            log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,  z_k ~ q(z|x).

        Samples are drawn in chunks of ``chunk_size`` so K = 1000 fits in memory for MNIST batches.
        A conditional model estimates log p(x|y) with ``labels``.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        one_hot = self.label_one_hot(labels)
        batch = int(x.shape[0])
        running = None
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            eps = tf.random.stateless_normal([k, batch, self.latent_dim], seed=[int(seed), start])
            chunk = tf.reduce_logsumexp(self._log_weights(x, eps, one_hot), axis=0)
            running = chunk if running is None else tf.reduce_logsumexp(tf.stack([running, chunk]), axis=0)
        return running - math.log(num_samples)

    def elbo(self, x, num_samples: int = 1, seed: int = 0, labels=None) -> tf.Tensor:
        """Per-example ELBO estimate, the mean of log w over ``num_samples`` draws, a [B] tensor in nats
        (with ``labels``, of log p(x|y) for a conditional model)."""
        x = tf.convert_to_tensor(x, tf.float32)
        one_hot = self.label_one_hot(labels)
        eps = tf.random.stateless_normal([num_samples, int(x.shape[0]), self.latent_dim], seed=[int(seed), 0])
        return tf.reduce_mean(self._log_weights(x, eps, one_hot), axis=0)


def _adam(train: TrainConfig) -> keras.optimizers.Adam:
    """Adam(learning_rate, beta_1, decoupled weight_decay) of a TrainConfig, keeping a moving average of the
    weights when ``ema_momentum`` > 0 (Keras' ``use_ema``: its fit ends with the average in the model)."""
    return keras.optimizers.Adam(train.learning_rate, beta_1=train.beta_1, weight_decay=train.weight_decay or None,
                                 **moving_average_options(train))
