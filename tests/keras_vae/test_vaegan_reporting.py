"""What the VAEGAN logs: the population KL split into its mean and spread parts; the adaptive weight's inputs."""
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.models import vaegan as vaegan_module
from tests.support.vaegan import images, make


@pytest.mark.parametrize("variance", ["means", "mixture", "covariance"])
def test_population_kl_is_logged_as_mean_part_plus_spread_part(variance):
    model = make(loss={"population_variance": variance})
    x = tf.constant(images(8))
    logs = {k: float(v) for k, v in model.test_step(x).items()}
    mean, log_var = (np.asarray(t, np.float64) for t in model.encode(x))
    m = mean.mean(axis=0)
    assert logs["population_kl_mean"] == pytest.approx(0.5 * np.sum(m ** 2), rel=1e-5)
    assert logs["population_kl_mean"] + logs["population_kl_spread"] == pytest.approx(logs["population_kl"], rel=1e-5)
    if variance == "means":  # spread = KL(N(0, diag s^2) || N(0, I)) with s^2 = var_i mu_i (+ epsilon)
        s2 = mean.var(axis=0) + 1e-6
        assert logs["population_kl_spread"] == pytest.approx(0.5 * np.sum(s2 - 1 - np.log(s2)), rel=1e-4)


def test_adaptive_weight_uses_the_last_layers_kernel_only(monkeypatch):
    """The gradients are taken w.r.t. the kernel of ``to_image`` (not its bias) and exist: the
    weight is ||g_rec|| / (||g_adv|| + 1e-4) of real gradients (it was 0 when they were None)."""
    seen = []
    original = vaegan_module.losses.adaptive_adversarial_weight

    def spy(rec_grads, adv_grads, *args, **kwargs):
        seen.append(([None if g is None else tuple(g.shape) for g in rec_grads],
                     [None if g is None else tuple(g.shape) for g in adv_grads]))
        norms = [float(tf.linalg.global_norm(list(g))) for g in (rec_grads, adv_grads)]
        seen.append(norms[0] / (norms[1] + 1e-4))
        return original(rec_grads, adv_grads, *args, **kwargs)

    monkeypatch.setattr(vaegan_module.losses, "adaptive_adversarial_weight", spy)
    model = make(loss={"adaptive_adversarial_weight": True})
    logs = model.train_step(tf.constant(images(8)))
    kernel = tuple(model.decoder.get_layer("to_image").kernel.shape)
    assert seen[0] == ([kernel], [kernel])
    assert seen[1] > 0 and float(logs["adversarial_weight"]) == pytest.approx(
        model.loss_config.adversarial_weight * seen[1], rel=1e-5)
