"""Loss terms of the paper's model (Rivera, ICIP 2024, section 2) as pure functions of tensors.

Per-example terms return [B] float32 (average them with ``tf.nn.compute_average_loss`` so that a
distribution strategy divides by the global batch); logits are [B, h, w, 1] patch maps (any
trailing shape works: they are averaged over everything but the batch axis).
"""
from __future__ import annotations

import tensorflow as tf

EPSILON = 1e-4


def _per_example_mean(values):
    values = tf.cast(values, tf.float32)
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=-1)


def mean_absolute_error(images, reconstructions):
    """Per-example mean over pixels of |x - x_hat|; [B]."""
    return _per_example_mean(tf.abs(tf.cast(images, tf.float32) - tf.cast(reconstructions, tf.float32)))


# --- binary cross-entropy from logits: BCE(1, l) = softplus(-l), BCE(0, l) = softplus(l) -------
def bce_generator_loss(fake_logits):
    """Non-saturating generator term BCE(1, D(x_hat)) = mean_patches softplus(-l); [B]."""
    return _per_example_mean(tf.nn.softplus(-tf.cast(fake_logits, tf.float32)))


def bce_discriminator_loss(real_logits, fake_logits):
    """BCE(1, D(x)) + BCE(0, D(x_hat)) = mean softplus(-l_real) + mean softplus(l_fake); [B]."""
    real = _per_example_mean(tf.nn.softplus(-tf.cast(real_logits, tf.float32)))
    fake = _per_example_mean(tf.nn.softplus(tf.cast(fake_logits, tf.float32)))
    return real + fake


# --- hinge (Lim & Ye 2017; VQGAN) ----------------------------------------------------------------
def hinge_generator_loss(fake_logits):
    """-mean_patches D(x_hat); [B]."""
    return -_per_example_mean(fake_logits)


def hinge_discriminator_loss(real_logits, fake_logits):
    """mean relu(1 - D(x)) + mean relu(1 + D(x_hat)); [B]."""
    real = _per_example_mean(tf.nn.relu(1.0 - tf.cast(real_logits, tf.float32)))
    fake = _per_example_mean(tf.nn.relu(1.0 + tf.cast(fake_logits, tf.float32)))
    return real + fake


GENERATOR_LOSSES = {"bce": bce_generator_loss, "hinge": hinge_generator_loss}
DISCRIMINATOR_LOSSES = {"bce": bce_discriminator_loss, "hinge": hinge_discriminator_loss}


def generator_loss(kind: str, fake_logits):
    """The generator's adversarial term of ``kind`` ('bce' or 'hinge'); [B]."""
    return GENERATOR_LOSSES[kind](fake_logits)


def discriminator_loss(kind: str, real_logits, fake_logits):
    """The discriminator's loss of ``kind`` ('bce' or 'hinge'); [B]."""
    return DISCRIMINATOR_LOSSES[kind](real_logits, fake_logits)


def adaptive_adversarial_weight(reconstruction_grads, adversarial_grads, max_weight: float = 1e4):
    """VQGAN's adaptive weight ||g_rec|| / (||g_adv|| + 1e-4), clipped to [0, max_weight], no gradient.

    The gradients are those of the reconstruction and adversarial losses with respect to the
    decoder's last layer weights (tensors or lists of tensors).
    """
    rec_norm = tf.linalg.global_norm(tf.nest.flatten(reconstruction_grads))
    adv_norm = tf.linalg.global_norm(tf.nest.flatten(adversarial_grads))
    weight = tf.clip_by_value(rec_norm / (adv_norm + EPSILON), 0.0, max_weight)
    return tf.stop_gradient(tf.cast(weight, tf.float32))


def discriminator_accuracy(real_logits, fake_logits):
    """(fraction of real patches with logit > 0, fraction of fake patches with logit < 0), scalars."""
    real = tf.reduce_mean(tf.cast(tf.cast(real_logits, tf.float32) > 0.0, tf.float32))
    fake = tf.reduce_mean(tf.cast(tf.cast(fake_logits, tf.float32) < 0.0, tf.float32))
    return real, fake
