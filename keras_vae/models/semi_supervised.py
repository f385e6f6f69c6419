"""Semi-supervised VAE, model M2 of Kingma, Rezende, Mohamed & Welling (NeurIPS 2014).

A classifier q(y|x) joins the class-conditional VAE (encoder q(z|x, y), decoder p(x|z, y)); the prior is
p(y) uniform over K classes and p(z) = N(0, I). With L(x, y) = -ELBO(x|y) - log p(y) (nats per image):

    labelled   (x, y):  L(x, y) + alpha * (-log q(y|x))
    unlabelled x:       U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))        (y marginalised, a bound on -log p(x))

The objective is the paper's J^alpha = sum_labelled [L + alpha CE] + sum_unlabelled U with alpha = c * N
(c = ``loss.classification_weight``, 0.1 in the paper; N = N_l + N_u training images), per training image:

    loss = (N_l / N) mean_l[L + alpha CE] + (N_u / N) mean_u U,    so the CE weight is c * N_l.

A training batch is a dict {"unlabelled": x_u, "images": x_l, "labels": y_l} (``semi_supervised_dataset``
builds one from arrays; ``keras-vae train --labelled N`` from the data source); validation batches are
(images, labels) pairs and report the label-free bound ``elbo`` = -U(x) and the ``classification_error``.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_vae.config import ModelConfig
from keras_vae.errors import ConfigError
from keras_vae.models.vae import VAE

DIGITS = 10  # SemiSupervisedVAE() without num_classes: the ten digits


def build_classifier(config: ModelConfig) -> keras.Model:
    """q(y|x): images -> class logits [B, num_classes], an MLP with the VAE's ``hidden_units`` and activation."""
    x_in = keras.Input(shape=config.image_shape, name="image")
    h = keras.layers.Flatten(name="flatten")(x_in)
    for i, units in enumerate(config.hidden_units):
        h = keras.layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(h)
    logits = keras.layers.Dense(config.num_classes, name="logits")(h)
    return keras.Model(x_in, logits, name="classifier")


@keras.saving.register_keras_serializable(package="keras_vae")
class SemiSupervisedVAE(VAE):
    """M2: the class-conditional VAE plus a classifier q(y|x), trained on labelled and unlabelled images.

    Args:
        model_config, loss_config, seed, **kwargs: as for ``VAE`` (``num_classes`` defaults to 10 here).
        num_labelled: N_l, the labelled training images; num_unlabelled: N_u, the unlabelled ones. They weight
            the two halves of each batch (N_l / N and N_u / N) and set alpha = classification_weight * N.
    """

    def __init__(self, model_config=None, loss_config=None, seed: int = 0, num_labelled: int = 100,
                 num_unlabelled: int = 4400, **kwargs: Any) -> None:
        if model_config is None and "num_classes" not in kwargs:
            kwargs["num_classes"] = DIGITS
        super().__init__(model_config, loss_config, seed, **kwargs)
        if not self.conditional:
            raise ConfigError("the semi-supervised VAE classifies into model.num_classes classes, and it is 0: "
                              "set num_classes (e.g. 10 for the digits)")
        if int(num_labelled) < 1 or int(num_unlabelled) < 0:
            raise ConfigError(f"num_labelled must be >= 1 and num_unlabelled >= 0, got {num_labelled} and "
                              f"{num_unlabelled}")
        self.num_labelled, self.num_unlabelled = int(num_labelled), int(num_unlabelled)
        self.classifier = build_classifier(self.model_config)
        self.labelled_loss_tracker = keras.metrics.Mean(name="labelled_loss")
        self.unlabelled_loss_tracker = keras.metrics.Mean(name="unlabelled_loss")
        self.cross_entropy_tracker = keras.metrics.Mean(name="cross_entropy")
        self.error_tracker = keras.metrics.Mean(name="classification_error")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.elbo_tracker, self.labelled_loss_tracker, self.unlabelled_loss_tracker,
                self.cross_entropy_tracker, self.error_tracker, self.beta_tracker]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_labelled": self.num_labelled, "num_unlabelled": self.num_unlabelled}

    @property
    def alpha(self) -> float:
        """The cross-entropy weight alpha = classification_weight * (N_l + N_u) of the paper's J^alpha."""
        return self.loss_config.classification_weight * (self.num_labelled + self.num_unlabelled)

    # --- the classifier ------------------------------------------------------------------
    def class_logits(self, images, training: bool = False):
        """Logits of q(y|x), [B, K] float32."""
        return tf.cast(self.classifier(images, training=training), tf.float32)

    def classify(self, images):
        """q(y|x) probabilities [B, num_classes] (rows sum to 1) for images [B, H, W, C] in [0, 1]."""
        return tf.nn.softmax(self.class_logits(tf.convert_to_tensor(images, tf.float32)), axis=-1)

    # --- the two losses ------------------------------------------------------------------
    def labelled_terms(self, x, labels, training: bool = False, beta=1.0):
        """(L(x, y), -log q(y|x)), each [B]: L = -E_q log p(x|z, y) + beta KL(q(z|x, y) || N(0, I)) + log K."""
        one_hot = self.label_one_hot(labels)
        log_px, kl = self.elbo_terms(x, training=training, labels=one_hot)
        bound = -log_px + beta * kl + math.log(self.num_classes)
        logits = self.class_logits(x, training=training)
        cross_entropy = tf.nn.softmax_cross_entropy_with_logits(labels=one_hot, logits=logits)
        return bound, cross_entropy, logits

    def unlabelled_terms(self, x, training: bool = False, beta=1.0):
        """(U(x) [B], q(y|x) [B, K]): U = sum_y q(y|x) L(x, y) + sum_y q(y|x) log q(y|x), every class in one pass."""
        k = self.num_classes
        x = tf.cast(x, tf.float32)
        batch = tf.shape(x)[0]
        x_rep = tf.tile(x, [k, 1, 1, 1])  # [K * B, ...]: class 0's copy of the batch first
        one_hot = tf.repeat(tf.eye(k, dtype=tf.float32), batch, axis=0)
        log_px, kl = self.elbo_terms(x_rep, training=training, labels=one_hot)
        bound = tf.transpose(tf.reshape(-log_px + beta * kl, [k, batch])) + math.log(k)  # [B, K]
        log_q = tf.nn.log_softmax(self.class_logits(x, training=training), axis=-1)
        q = tf.exp(log_q)
        return tf.reduce_sum(q * (bound + log_q), axis=-1), q

    # --- training ------------------------------------------------------------------------
    def _step(self, data, training: bool):
        if isinstance(data, dict):
            return self._semi_supervised_step(data, training)
        if not isinstance(data, (tuple, list)) or len(data) < 2 or data[1] is None:
            raise ConfigError("the semi-supervised VAE trains on {'unlabelled': x_u, 'images': x_l, 'labels': y_l} "
                              "batches (keras_vae.models.semi_supervised.semi_supervised_dataset) and validates "
                              "on (images, labels)")
        return self._labelled_step(data[0], data[1], training)

    def _semi_supervised_step(self, data, training: bool):
        n = float(self.num_labelled + self.num_unlabelled)
        w_l, w_u = self.num_labelled / n, self.num_unlabelled / n
        with tf.GradientTape() as tape:
            beta = self.beta()
            bound_l, cross_entropy, logits = self.labelled_terms(data["images"], data["labels"], training, beta)
            bound_u, _ = self.unlabelled_terms(data["unlabelled"], training, beta)
            loss = w_l * tf.reduce_mean(bound_l + self.alpha * cross_entropy) + w_u * tf.reduce_mean(bound_u)
            scaled = self.optimizer.scale_loss(loss) if training else loss
        if training:
            grads = tape.gradient(scaled, self.trainable_weights)
            self.optimizer.apply(grads, self.trainable_weights)
        self.loss_tracker.update_state(loss)
        self.elbo_tracker.update_state(-bound_u)
        self._track_labelled(bound_l, cross_entropy, logits, data["labels"])
        self.unlabelled_loss_tracker.update_state(bound_u)
        self.beta_tracker.update_state(beta)
        return {m.name: m.result() for m in self.metrics}

    def _labelled_step(self, images, labels, training: bool):
        """All examples labelled (validation): loss = mean[L + alpha CE]; elbo = -U(x), which ignores the labels."""
        with tf.GradientTape() as tape:
            beta = self.beta()
            bound_l, cross_entropy, logits = self.labelled_terms(images, labels, training, beta)
            loss = tf.reduce_mean(bound_l + self.alpha * cross_entropy)
            scaled = self.optimizer.scale_loss(loss) if training else loss
        if training:
            grads = tape.gradient(scaled, self.trainable_weights)
            self.optimizer.apply(grads, self.trainable_weights)
        bound_u, _ = self.unlabelled_terms(images, training=False, beta=beta)
        self.loss_tracker.update_state(loss)
        self.elbo_tracker.update_state(-bound_u)
        self._track_labelled(bound_l, cross_entropy, logits, labels)
        self.unlabelled_loss_tracker.update_state(bound_u)
        self.beta_tracker.update_state(beta)
        return {m.name: m.result() for m in self.metrics}

    def _track_labelled(self, bound, cross_entropy, logits, labels) -> None:
        wrong = tf.cast(tf.argmax(logits, axis=-1) != tf.cast(tf.reshape(labels, [-1]), tf.int64), tf.float32)
        self.labelled_loss_tracker.update_state(bound)
        self.cross_entropy_tracker.update_state(cross_entropy)
        self.error_tracker.update_state(wrong)

    def initialize_output_bias(self, images):
        """As ``VAE``'s; a semi-supervised dataset gives its unlabelled and labelled images."""
        if isinstance(images, tf.data.Dataset) and isinstance(images.element_spec, dict):
            images = images.map(lambda d: tf.concat([d["unlabelled"], d["images"]], axis=0))
        return super().initialize_output_bias(images)

    def classification_error(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
        """Fraction of ``images`` whose most probable class under q(y|x) is not ``labels``."""
        predicted = self.predict_in_batches(lambda x: tf.argmax(self.class_logits(x), axis=-1), images, batch_size)
        return float(np.mean(predicted != np.asarray(labels).reshape(-1)))


def semi_supervised_dataset(unlabelled: np.ndarray, images: np.ndarray, labels: np.ndarray, batch_size: int = 100,
                            labelled_batch_size: int | None = None, seed: int = 0) -> tf.data.Dataset:
    """One epoch of batches {"unlabelled": x_u [B], "images": x_l [B_l], "labels": y_l [B_l]} from float arrays;
    the unlabelled images pass once (shuffled), the labelled ones repeat (reshuffled) so every batch has some.
    B_l defaults to min(batch_size, len(images))."""
    labelled_batch_size = labelled_batch_size or min(batch_size, len(images))
    u = tf.data.Dataset.from_tensor_slices(np.asarray(unlabelled, np.float32))
    u = u.shuffle(len(unlabelled), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    lab = tf.data.Dataset.from_tensor_slices((np.asarray(images, np.float32), np.asarray(labels, np.int64)))
    lab = lab.shuffle(len(images), seed=seed + 1, reshuffle_each_iteration=True).repeat().batch(labelled_batch_size)
    return tf.data.Dataset.zip(u, lab).map(mix_batches)


def mix_batches(unlabelled, labelled) -> dict:
    """(x_u, (x_l, y_l)) -> the batch dict ``SemiSupervisedVAE.train_step`` takes."""
    images, labels = labelled
    return {"unlabelled": unlabelled, "images": images, "labels": labels}
