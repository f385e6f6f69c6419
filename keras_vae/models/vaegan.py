"""The paper's model (Rivera, ICIP 2024, section 2): residual VAE + PatchGAN, trained by alternating updates.

Per batch x (images in [-1, 1]), with q(z|x) = N(mu, diag sigma^2) and x_hat = D_theta(z):

    discriminator (n_critic times):  L_D = w_adv * f * [BCE(1, D(x)) + BCE(0, D(sg(x_hat)))]
    VAE:  L_G = w_rec * |x - x_hat|  +  w_kl * KL  +  w_var * sum_j (sigma_j^2 - 1 - log sigma_j^2)
               + w_adv * f * lambda * BCE(1, D(x_hat))

KL is the population KL of the batch mixture's moments (``kl='population'``) or the per-example
KL (``'standard'``); f = 1 once the VAE optimizer passed ``disc_start_step`` (else 0); lambda = 1
or VQGAN's adaptive weight ||grad_W L_rec|| / ||grad_W L_adv|| with W the kernel of the decoder's
last layer (``to_image``; its bias is left out, as in taming-transformers). The adversarial term's
total weight is then w_adv * lambda: with the reference's w_adv = 100 that is 100 x the gradient
balance, where VQGAN/latent-diffusion use w_adv of about 0.5-1 with the adaptive weight, so set
``adversarial_weight`` near 1 when ``adaptive_adversarial_weight`` is on. The discriminator step
runs first on the reconstructions of this step's forward pass (no gradient to the VAE); the VAE step
then uses the updated discriminator. Each part has its own Adam optimizer (``g_optimizer``,
``d_optimizer``). With ``ema_momentum`` m > 0 the VAE's Adam also keeps an exponential moving average of
the encoder's and decoder's weights (w_avg = m w_avg + (1 - m) w after each step, starting from the first
step's weights; Yazici et al. 2019), which ``fit`` copies into them at the end; the discriminator keeps
its own weights.

The population KL is logged in two parts: ``population_kl_mean`` = 1/2 |m|^2 (how far the codes'
mean sits from 0) and ``population_kl_spread`` = the rest (how far their (co)variance is from I).

BatchNorm and dropout (``model.bn_mode``): ``batch`` (default) runs both networks in training mode
in their training sub-steps (batch statistics, dropout on), and each sub-step moves only its own
network's moving statistics: the VAE's forward pass inside a discriminator-only step and the
discriminator's pass inside the VAE's loss use batch statistics without updating the moving ones
(``batchnorm.frozen_statistics``), so D's statistics move once per step. ``reference`` is what the
reference code does under Keras 3 (networks called without ``training=``): BatchNorm always on its
moving statistics, which are never updated (a learned affine map), and no dropout. Validation
(``test_step``) draws its noise from its own seed stream, so running it leaves training unchanged.

Class-conditional (``model.num_classes`` K > 0): the same objective with q(z|x, y), p(x|z, y) and a projection
discriminator D(x, y) (keras_vae.models.resnet, keras_vae.models.patchgan), batches (images, labels). The prior
decodes for D use the batch's labels, so D compares real and generated images of the same classes. The prior is
p(z|y) = N(0, I) for every class, so the population KL is per class: with m_c the mean of the batch's codes of
class c (n_c of them), S the within-class spread pooled over the batch's C classes (moment estimates as for
``population_variance``, divided by n - C),

    KL_y = sum_c (n_c / n) KL(N(m_c, S) || N(0, I)) - 1/2 C tr(S_means) / n,

the last term removing the noise of the class means (E|m_c_hat|^2 = |m_c|^2 + tr(S_means) / n_c; S_means: the
spread of the posterior means alone). A per-batch KL would leave the class free to sit in z (nothing charges a
code for it), and the decoder then ignores y; per class, q(z|y) is pushed to the same N(0, I) for every y, so the
class must come from the label. A class's own spread cannot be estimated at the default batch (32 codes, about 3
per class), hence the pooled S. The variance regularizer is per example as before.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae import losses
from keras_vae.config import TrainConfig
from keras_vae.distributions import (covariance_kl, kl_to_standard_normal, mixture_kl_monte_carlo,
                                     moment_matched_kl, population_kl, variance_regularizer)
from keras_vae.errors import ConfigError
from keras_vae.models.base import LatentVariableModel, moving_average_options
from keras_vae.models.batchnorm import frozen_statistics
from keras_vae.models.patchgan import build_patchgan
from keras_vae.models.resnet import build_resnet_decoder, build_resnet_encoder

GENERATOR_METRICS = ("loss", "reconstruction", "kl", "population_kl", "population_kl_mean",
                     "population_kl_spread", "standard_kl", "variance_reg",
                     "adversarial", "adversarial_weight", "mixture_kl_mc")
DISCRIMINATOR_METRICS = ("disc_loss", "disc_accuracy_real", "disc_accuracy_fake")


def _images(data):
    """Batches are images, or (images, ...) tuples from pipelines that carry labels."""
    return data[0] if isinstance(data, (tuple, list)) else data


def _tile_rows(one_hot, times: int):
    """The one-hot repeated ``times`` times along the batch (None stays None)."""
    return None if one_hot is None else tf.tile(one_hot, [times, 1])


def _replica_context_and_count():
    ctx = tf.distribute.get_replica_context()
    return ctx, tf.distribute.get_strategy().num_replicas_in_sync


def class_population_kl(mean, log_var, one_hot, variance: str = "means", total=lambda t: t):
    """(KL_y, its mean part) of the module docstring for codes (mean, log_var) [n, D] of one-hot classes [n, K]:
    sum_c (n_c/n) KL(N(m_c, S) || N(0, I)) - 1/2 C tr(S_means)/n with S pooled within classes (diagonal, or the
    full covariance for ``variance="covariance"``; plus the mean posterior variance unless ``"means"``).
    ``total`` sums a tensor over replicas (identity on one)."""
    mean, log_var, one_hot = (tf.cast(t, tf.float32) for t in (mean, log_var, one_hot))
    n = total(tf.cast(tf.shape(mean)[0], tf.float32))
    counts = total(tf.reduce_sum(one_hot, axis=0))  # [K]
    present = tf.reduce_sum(tf.cast(counts > 0, tf.float32))
    class_means = total(tf.matmul(one_hot, mean, transpose_a=True)) / tf.maximum(counts, 1.0)[:, None]  # [K, D]
    dof = tf.maximum(n - present, 1.0)
    centred = mean - tf.matmul(one_hot, class_means)  # each code minus its class mean
    posterior_variance = total(tf.reduce_sum(tf.exp(log_var), axis=0)) / n
    mean_part = 0.5 * tf.reduce_sum(counts[:, None] * tf.square(class_means)) / n
    if variance == "covariance":
        within = total(tf.matmul(centred, centred, transpose_a=True)) / dof  # [D, D]
        bias = 0.5 * present * tf.linalg.trace(within) / n
        spread = covariance_kl(tf.zeros_like(class_means[0]), within + tf.linalg.diag(posterior_variance))
    else:
        within = total(tf.reduce_sum(tf.square(centred), axis=0)) / dof  # [D]
        bias = 0.5 * present * tf.reduce_sum(within) / n
        s2 = within + posterior_variance if variance == "mixture" else within
        spread = moment_matched_kl(tf.zeros_like(s2), s2)
    return mean_part - bias + spread, mean_part - bias


def _generator_adam(train: TrainConfig) -> keras.optimizers.Adam:
    """Adam(learning_rate, beta_1) of a TrainConfig, keeping the moving average of the weights it updates when
    ``ema_momentum`` > 0 (Keras' ``use_ema``; never written back during training: ``VAEGAN.fit`` does at the end)."""
    return keras.optimizers.Adam(train.learning_rate, beta_1=train.beta_1, **moving_average_options(train))


@keras.saving.register_keras_serializable(package="keras_vae")
class VAEGAN(LatentVariableModel):
    """Residual VAE with the population-KL ELBO, variance regularizer and a PatchGAN discriminator.

    Args:
        model_config: a ``ModelConfig`` (or its dict) of kind 'vaegan'; default: the mnist-28 preset's
            (``DEFAULT_PRESET``: the dataclass defaults describe no VAEGAN that fits 28x28 digits).
        loss_config: a ``LossConfig`` (or its dict); default: the mnist-28 preset's.
        seed: seed of the model's noise.
        train_config: a ``TrainConfig`` (or dict) whose optimizer fields ``compile()`` uses (both Adams);
            default: the mnist-28 preset's (4e-3, beta_1 0.5).
        **kwargs: any ModelConfig / LossConfig field or optimizer field (``latent_dim=16``,
            ``adversarial_weight=1.0``, ``disc_learning_rate=1e-4``), and keras.Model's ``name``, ...

    ``VAEGAN(latent_dim=16)`` is the model of ``keras-vae train --model vaegan --latent-dim 16``;
    ``VAEGAN.from_preset(name)`` that of ``--preset name``.
    """

    KIND = "vaegan"
    DEFAULT_PRESET = "mnist-28"

    def __init__(self, model_config=None, loss_config=None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(model_config, loss_config, seed, **kwargs)
        mc = self.model_config
        if mc.kind != "vaegan" or mc.architecture != "resnet":
            raise ConfigError(f"VAEGAN needs model kind 'vaegan' and architecture 'resnet', "
                              f"got {mc.kind!r} / {mc.architecture!r}: use keras_vae.VAE for the classic VAE")
        self.encoder = build_resnet_encoder(mc)
        self.decoder = build_resnet_decoder(mc)
        self.discriminator = build_patchgan(mc)
        self.g_optimizer = None
        self.d_optimizer = None
        names = GENERATOR_METRICS + (DISCRIMINATOR_METRICS if self.loss_config.use_discriminator else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def receptive_field(self) -> int:
        """Pixels one discriminator logit sees."""
        return self.discriminator.receptive_field

    @property
    def vae_variables(self) -> list:
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def decode_output_to_image(self, output):
        """The decoder's linear output clipped to [-1, 1] (plain TF ops)."""
        return tf.clip_by_value(tf.cast(output, tf.float32), -1.0, 1.0)

    # --- compile / optimizers ------------------------------------------------------------
    def compile_for_training(self, train: TrainConfig) -> None:
        """compile() with Adam(learning_rate, beta_1) for the VAE (with a moving average of its weights when
        ``ema_momentum`` > 0) and Adam(disc_learning_rate, disc_beta_1) for the discriminator. Call inside
        ``strategy.scope()`` when distributing."""
        self.compile(
            g_optimizer=_generator_adam(train),
            d_optimizer=keras.optimizers.Adam(train.disc_learning_rate, beta_1=train.disc_beta_1),
            jit_compile=train.jit_compile,
        )

    def compile(self, g_optimizer=None, d_optimizer=None, jit_compile: bool | str | None = None, **kwargs) -> None:
        """Keras compile with two optimizers; under a mixed_float16 policy both get loss scaling. Those not
        given are Adam(learning_rate, beta_1) and Adam(disc_learning_rate, disc_beta_1) of the model's
        ``train_config``; ``jit_compile`` defaults to its ``jit_compile``."""
        train = self.train_config
        jit_compile = train.jit_compile if jit_compile is None else jit_compile
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        g_optimizer = g_optimizer or _generator_adam(train)
        d_optimizer = d_optimizer or keras.optimizers.Adam(train.disc_learning_rate, beta_1=train.disc_beta_1)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            g_optimizer, d_optimizer = (
                opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
                else keras.optimizers.LossScaleOptimizer(opt)
                for opt in (g_optimizer, d_optimizer))
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_optimizer.build(self.vae_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self) -> dict[str, Any]:
        if self.g_optimizer is None:
            return {}
        return {"g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
                "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
                "jit_compile": bool(self.jit_compile)}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        if not config:
            return
        self.compile(g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]),
                     d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
                     jit_compile=config.get("jit_compile", False))

    # --- weight averaging ----------------------------------------------------------------
    def fit(self, *args, **kwargs):
        """Keras' fit; when the VAE's optimizer keeps a moving average of the weights (``ema_momentum`` > 0),
        the encoder and decoder end with the average (``use_averaged_weights``), as Keras' fit does for a
        model's single ``optimizer``. The checkpoints written during fit hold the last step's weights and
        the average (the optimizer's state), so a resumed run continues both."""
        history = super().fit(*args, **kwargs)
        self.use_averaged_weights()
        return history

    def use_averaged_weights(self) -> bool:
        """Copy the VAE optimizer's moving average into the encoder's and decoder's trainable weights (the
        discriminator keeps its own). True when it did; False without an average (``ema_momentum`` 0, not
        compiled) or before the first step (the average holds no weights yet)."""
        optimizer = self.g_optimizer
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's Adam
        if optimizer is None or not getattr(inner, "use_ema", False) or int(optimizer.iterations.numpy()) == 0:
            return False
        optimizer.finalize_variable_values(self.vae_variables)
        return True

    # --- pieces of the step --------------------------------------------------------------
    def _networks_training(self, training: bool) -> bool:
        """The ``training`` flag the networks get: False throughout in ``bn_mode='reference'``."""
        return bool(training) and self.model_config.bn_mode == "batch"

    def _step_seeds(self, training: bool = True):
        """Three stateless int32 seeds (posterior noise, prior samples, Monte Carlo KL), distinct
        per replica under a distribution strategy; validation has its own stream."""
        generator = self.seed_generator if training else self.validation_seed_generator
        seed = tf.cast(generator.next(), tf.int32)
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int32))
        return [tf.random.experimental.stateless_fold_in(seed, i) for i in range(3)]

    def _disc_factor(self):
        """1.0 once the VAE optimizer passed ``disc_start_step`` (0.0 before, or without a discriminator)."""
        if not self.loss_config.use_discriminator:
            return tf.constant(0.0)
        start = self.loss_config.disc_start_step
        if start <= 0 or self.g_optimizer is None:
            return tf.constant(1.0)
        return tf.cast(self.g_optimizer.iterations >= start, tf.float32)

    def _forward(self, x, seeds, training: bool, one_hot=None):
        """Posterior (mean, log_var), latents z and the decoder's linear output for x (+ prior decodes), all
        with the label one-hot [B, K] of a conditional model (the prior decodes with the same labels)."""
        mean, log_var = self.encoder(self._inputs(x, one_hot), training=training)
        mean, log_var = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
        if self.loss_config.sample_posterior:
            eps = tf.random.stateless_normal(tf.shape(mean), seed=seeds[0])
            z = mean + tf.exp(0.5 * log_var) * eps
        else:
            z = mean
        output = tf.cast(self.decoder(self._inputs(z, one_hot), training=training), tf.float32)
        prior_output = None
        if self.loss_config.use_discriminator and self.loss_config.disc_on_prior_samples:
            z_prior = tf.random.stateless_normal(tf.shape(mean), seed=seeds[1])
            prior_output = tf.cast(self.decoder(self._inputs(z_prior, one_hot), training=training), tf.float32)
        return mean, log_var, output, prior_output

    def _population_kl(self, mean, log_var, one_hot=None):
        """(population KL of the batch moments, its mean part 1/2 |m|^2); the batch is the global one under
        a strategy (moments all-reduced across replicas, so the value does not depend on the replica count).
        With a conditional model's ``one_hot``, the per-class KL of the module docstring."""
        variance = self.loss_config.population_variance
        ctx, replicas = _replica_context_and_count()
        if one_hot is not None:
            total = (lambda t: t) if replicas == 1 or ctx is None else \
                (lambda t: ctx.all_reduce(tf.distribute.ReduceOp.SUM, t))  # noqa: E731
            return class_population_kl(mean, log_var, one_hot, variance, total)
        if replicas == 1 or ctx is None:
            kl, m = population_kl(mean, log_var, variance), tf.reduce_mean(tf.cast(mean, tf.float32), axis=0)
            return kl, 0.5 * tf.reduce_sum(tf.square(m))
        if replicas == 1 or ctx is None:
            return population_kl(mean, log_var, variance), tf.reduce_mean(tf.cast(mean, tf.float32), axis=0)
        total = lambda t: ctx.all_reduce(tf.distribute.ReduceOp.SUM, t)  # noqa: E731
        n = total(tf.cast(tf.shape(mean)[0], tf.float32))
        m = total(tf.reduce_sum(mean, axis=0)) / n
        if variance == "covariance":
            centred = mean - m
            covariance = total(tf.matmul(centred, centred, transpose_a=True)) / n
            covariance += tf.linalg.diag(total(tf.reduce_sum(tf.exp(log_var), axis=0)) / n)
            return covariance_kl(m, covariance), 0.5 * tf.reduce_sum(tf.square(m))
        s2 = total(tf.reduce_sum(tf.square(mean - m), axis=0)) / n
        if variance == "mixture":
            s2 = s2 + total(tf.reduce_sum(tf.exp(log_var), axis=0)) / n
        return moment_matched_kl(m, s2), 0.5 * tf.reduce_sum(tf.square(m))

    def _disc_logits(self, reals, fakes, training: bool, one_hot=None):
        """D on real and fake images in one batch, so BatchNorm (also after the last conv, as in the
        reference) normalizes both with the same statistics; returns (real_logits, fake_logits). A conditional
        model's ``one_hot`` labels the reals (and, the same rows, the fakes)."""
        logits = self.discriminator(self._inputs(tf.concat([reals, fakes], axis=0), _tile_rows(one_hot, 2)),
                                    training=training)
        return logits[:tf.shape(reals)[0]], logits[tf.shape(reals)[0]:]

    def _discriminator_update(self, x, fakes, factor, training: bool = True,
                              networks_training: bool | None = None, one_hot=None):
        """One discriminator step on real x against ``fakes`` (no gradient reaches the VAE);
        ``networks_training`` is the mode D runs in (``training`` unless bn_mode='reference')."""
        kind = self.loss_config.adversarial_loss
        weight = self.loss_config.adversarial_weight * factor
        d_vars = self.discriminator.trainable_variables
        nets = training if networks_training is None else networks_training
        with tf.GradientTape() as tape:
            real_logits, fake_logits = self._disc_logits(x, tf.stop_gradient(fakes), nets, one_hot)
            per_example = losses.discriminator_loss(kind, real_logits, fake_logits)
            loss = tf.nn.compute_average_loss(weight * per_example)
            scaled = self.d_optimizer.scale_loss(loss) if training else loss
        if training:
            self.d_optimizer.apply(tape.gradient(scaled, d_vars), d_vars)
        acc_real, acc_fake = losses.discriminator_accuracy(real_logits, fake_logits)
        return {"disc_loss": per_example, "disc_accuracy_real": acc_real, "disc_accuracy_fake": acc_fake}

    def _generator_disc_logits(self, reals, fakes, training: bool, one_hot=None):
        """D's logits inside the VAE's loss: batch statistics as in D's own step, but D's moving
        statistics stay where D's own update left them."""
        with frozen_statistics(self.discriminator):
            return self._disc_logits(reals, fakes, training, one_hot)

    def _generator_terms(self, x, mean, log_var, output, prior_output, factor, training, tape=None, one_hot=None):
        """Per-example VAE loss [B] (scalar terms spread over the batch) and the terms to log."""
        lc = self.loss_config
        reconstruction = losses.mean_absolute_error(x, output)
        standard_kl = kl_to_standard_normal(mean, log_var)
        population_kl, kl_mean_part = self._population_kl(mean, log_var, one_hot)
        ones = tf.ones_like(reconstruction)
        kl = population_kl * ones if lc.kl == "population" else standard_kl
        variance_reg = variance_regularizer(log_var) if lc.use_variance_regularizer else 0.0 * ones
        weighted_rec = lc.reconstruction_weight * reconstruction
        per_example = weighted_rec + lc.kl_weight * kl + lc.variance_weight * variance_reg
        adversarial = 0.0 * ones
        adaptive = tf.constant(1.0)
        if lc.use_discriminator:
            # D sees the same real/fake batch composition as in its own update (shared BN statistics)
            if prior_output is None:
                _, fake_logits = self._generator_disc_logits(x, output, training, one_hot)
                adversarial = losses.generator_loss(lc.adversarial_loss, fake_logits)
            else:
                _, fake_logits = self._generator_disc_logits(tf.concat([x, x], 0),
                                                             tf.concat([output, prior_output], 0), training,
                                                             _tile_rows(one_hot, 2))
                recon_logits, prior_logits = tf.split(fake_logits, 2, axis=0)
                adversarial = 0.5 * (losses.generator_loss(lc.adversarial_loss, recon_logits)
                                     + losses.generator_loss(lc.adversarial_loss, prior_logits))
            if lc.adaptive_adversarial_weight and tape is not None:
                last = [self.decoder.get_layer("to_image").kernel]
                # the averages must be recorded by the tape, or their gradients are None (weight 0)
                rec_loss = tf.nn.compute_average_loss(weighted_rec)
                adv_loss = tf.nn.compute_average_loss(adversarial)
                with tape.stop_recording():
                    rec_grads = tape.gradient(rec_loss, last)
                    adv_grads = tape.gradient(adv_loss, last)
                    adaptive = losses.adaptive_adversarial_weight(rec_grads, adv_grads)
            per_example = per_example + lc.adversarial_weight * factor * adaptive * adversarial
        # logged on the [0, 1] scale like every reconstruction metric of the package (the loss above uses
        # the MAE in the model's [-1, 1] range, as the reference code does)
        low, high = self.value_range
        terms = {"loss": per_example, "reconstruction": reconstruction / (high - low), "kl": kl,
                 "population_kl": population_kl, "population_kl_mean": kl_mean_part,
                 "population_kl_spread": population_kl - kl_mean_part, "standard_kl": standard_kl,
                 "variance_reg": variance_reg,
                 "adversarial": adversarial, "adversarial_weight": lc.adversarial_weight * factor * adaptive}
        return per_example, terms

    def _step(self, x, update_discriminator: bool, update_vae: bool, training: bool, labels=None):
        x = tf.cast(x, tf.float32)
        one_hot = self.label_one_hot(labels)
        seeds = self._step_seeds(training)
        factor = self._disc_factor()
        lc = self.loss_config
        nets = self._networks_training(training)
        persistent = lc.adaptive_adversarial_weight and lc.use_discriminator and update_vae
        logs: dict[str, Any] = {}
        with tf.GradientTape(persistent=persistent) as tape:
            # a discriminator-only step uses the VAE in training mode but leaves its statistics
            with frozen_statistics(*(() if update_vae else (self.encoder, self.decoder))):
                mean, log_var, output, prior_output = self._forward(x, seeds, training=nets, one_hot=one_hot)
            if lc.use_discriminator and (update_discriminator or not training):
                with tape.stop_recording():  # the discriminator's turn: fakes carry no gradient
                    fakes = output if prior_output is None else tf.concat([output, prior_output], 0)
                    reals = x if prior_output is None else tf.concat([x, x], 0)
                    reals_one_hot = one_hot if prior_output is None else _tile_rows(one_hot, 2)
                    for _ in range(lc.n_critic if training else 1):
                        logs.update(self._discriminator_update(reals, fakes, factor, training=training,
                                                               networks_training=nets, one_hot=reals_one_hot))
            per_example, terms = self._generator_terms(x, mean, log_var, output, prior_output, factor,
                                                       nets, tape if persistent else None, one_hot)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = self.g_optimizer.scale_loss(loss) if (training and update_vae) else loss
        if training and update_vae:
            variables = self.vae_variables
            self.g_optimizer.apply(tape.gradient(scaled, variables), variables)
        del tape
        logs.update(terms)
        logs["mixture_kl_mc"] = mixture_kl_monte_carlo(mean, log_var, lc.kl_monte_carlo_samples, seed=seeds[2])
        for name, value in logs.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # --- Keras entry points ---------------------------------------------------------------
    def _labels(self, data):
        """The labels of a batch for a conditional model (None for an unconditional one)."""
        if not self.conditional:
            return None
        if not isinstance(data, (tuple, list)) or len(data) < 2 or data[1] is None:
            raise ConfigError(f"this model is class-conditional ({self.num_classes} classes): fit it on "
                              "(images, labels) (model.fit(x, y), or a dataset of (image, label) batches)")
        return data[1]

    def train_step(self, data):
        """n_critic discriminator updates, then one VAE update (see the module docstring); a conditional model
        takes (images, labels) batches."""
        return self._step(_images(data), update_discriminator=True, update_vae=True, training=True,
                          labels=self._labels(data))

    def test_step(self, data):
        """The same terms on validation data, inference mode, no updates."""
        logs = self._step(_images(data), update_discriminator=False, update_vae=False, training=False,
                          labels=self._labels(data))
        return {k: v for k, v in logs.items() if k not in self.SCHEDULE_METRICS}  # no val_adversarial_weight

    def discriminator_step(self, images, labels=None):
        """Only the discriminator update(s) of ``train_step`` (the VAE is left unchanged)."""
        return self._step(tf.convert_to_tensor(images), update_discriminator=True, update_vae=False,
                          training=True, labels=labels)

    def vae_step(self, images, labels=None):
        """Only the VAE update of ``train_step`` (the discriminator's weights are left unchanged)."""
        return self._step(tf.convert_to_tensor(images), update_discriminator=False, update_vae=True,
                          training=True, labels=labels)

    # --- BatchNorm statistics -----------------------------------------------------------------
    def batch_norm_networks(self) -> tuple:
        return (self.encoder, self.decoder, self.discriminator)

    def _recompute_extra(self, images, decoder_output, one_hot=None) -> None:
        if self.loss_config.use_discriminator:  # D trains on real and reconstructed images in one batch
            fakes = self.decode_output_to_image(decoder_output)
            both = tf.concat([images, tf.cast(fakes, images.dtype)], 0)
            self.discriminator(self._inputs(both, _tile_rows(one_hot, 2)), training=True)

    # --- diagnostics ------------------------------------------------------------------------
    def extra_diagnostics(self, images: np.ndarray, batch_size: int = 256, labels=None) -> dict[str, float]:
        """Discriminator accuracy (inference mode) on real images and on their reconstructions:
        the fraction of patch logits on the correct side of 0 (with the true ``labels`` of a conditional model)."""
        if not self.loss_config.use_discriminator:
            return {}
        real_hits, fake_hits, count = 0.0, 0.0, 0
        for start in range(0, len(images), batch_size):
            x = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
            one_hot = self.label_one_hot(None if labels is None else np.asarray(labels)[start:start + batch_size])
            mean, _ = self.encode(x, labels=one_hot)
            recon = tf.cast(self.decoder(self._inputs(mean, one_hot), training=False), tf.float32)
            acc_real, acc_fake = losses.discriminator_accuracy(
                self.discriminator(self._inputs(x, one_hot), training=False),
                self.discriminator(self._inputs(recon, one_hot), training=False))
            n = int(x.shape[0])
            real_hits += float(acc_real) * n
            fake_hits += float(acc_fake) * n
            count += n
        return {"disc_accuracy_real": real_hits / max(count, 1),
                "disc_accuracy_reconstructed": fake_hits / max(count, 1)}
