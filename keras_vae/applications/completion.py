"""Data completion (inpainting): fill masked pixels of [0, 1] images with a trained VAE, and baselines.

``mask`` is True where a pixel is missing, shape [N, H, W, 1] (all channels of a pixel together).

    iterative     x_0 = observed pixels, missing ones from the mean image; then T times
                  x_{t+1} = m_obs * x + m_miss * decode(E[z | x_t])   (iterated conditional re-encoding)
    latent        z* = argmin_z  -log p(x_obs | z) + |z|^2 / 2   (MAP latent given the observed pixels;
                  Adam from the encoder's mean of the iterative result), missing pixels from decode(z*).
                  For a model without a likelihood (VAEGAN) the data term is its training reconstruction
                  loss restricted to observed pixels: reconstruction_weight * sum_obs |x - x_hat| / P.
    mean_fill     missing pixels from the mean training image
    nearest       missing pixels from the training image nearest to x on the observed pixels (L2)
    metropolis    Metropolis-within-Gibbs (Mattei & Frellsen 2018, Algorithm 1): chains over (z, x_miss);
                  propose z' ~ q(z | x_obs, x_miss_t) (the encoder on the current completion), accept with
                  rho = [p(x_t | z') p(z') q(z_t | x_t)] / [p(x_t | z_t) p(z_t) q(z' | x_t)], x_t = (x_obs, x_miss_t);
                  then x_miss_{t+1} ~ p(x_miss | z_{t+1}). By default K chains per image, each started at a latent
                  resampled by importance sampling (below) and giving one completion, E[x_miss | z_T] at its last
                  state; or one chain from the encoder's mean (the paper's start), K completions at K evenly
                  spaced states after burn-in. Predictive probability: the mean of E[x_miss | z_t] over every
                  chain's states after burn-in (the Bernoulli mixture, Rao-Blackwellised).
    importance    self-normalised importance sampling (same paper): z_s ~ q(z | x_init) for s = 1..S,
                  w_s ~ p(x_obs | z_s) p(z_s) / q(z_s | x_init); completion sum_s w_s E[x_miss | z_s]; K completions
                  E[x_miss | z_s] for s drawn from the weights (sampling-importance-resampling).
    The two sampling methods need the decoder's density p(x|z): a VAEGAN (decoder trained by L1 + adversarial
    loss) is refused (``require_likelihood``).

``psnr`` on the masked region (``keras_vae.applications.encoding.psnr`` with the mask) measures each point
estimate: a sampling method's is the per-pixel mean of its K completions (``multiple_imputation``), beside the
mean PSNR of one completion and the best of K; ``interval_coverage`` and ``brier_score`` score a per-pixel
predictive probability of the binarised pixel (module functions' docstrings): a sampling method's Bernoulli
mixture over its latent draws, another method's completion.
``load_reference`` reads the baselines' training images, ``complete_examples`` completes a batch of a
source and keeps where each image came from, ``Completion.save`` writes the report, arrays and preview.
"""
from __future__ import annotations

import numpy as np

from keras_vae.choices import COMPLETION_METHODS, SAMPLING_COMPLETION_METHODS
from keras_vae.errors import ConfigError

MWG_STARTS = ("encoder", "importance")  # where Metropolis-within-Gibbs chains start (complete_all)


def parse_mask(spec: str) -> tuple[str, float | None]:
    """'center' | 'left' | 'random:P' (P in (0, 1), the fraction of pixels missing) -> (kind, P)."""
    kind, sep, arg = str(spec).partition(":")
    if kind in ("center", "left") and not sep:
        return kind, None
    if kind == "random" and sep:
        try:
            p = float(arg)
        except ValueError:
            p = -1.0
        if 0.0 < p < 1.0:
            return kind, p
        raise ConfigError(f"mask {spec!r}: the missing fraction after 'random:' must be in (0, 1), e.g. random:0.5")
    raise ConfigError(f"unknown mask {spec!r}: choose 'center', 'left' or 'random:P' (e.g. random:0.5)")


def make_mask(spec: str, n: int, image_shape, seed: int = 0) -> np.ndarray:
    """Boolean masks [n, H, W, 1], True = missing: the central square of half the side (center), the left
    half (left), or each pixel independently with probability P (random:P, seeded, per image)."""
    kind, p = parse_mask(spec)
    h, w = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((n, h, w, 1), bool)
    if kind == "center":
        mask[:, h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = True
    elif kind == "left":
        mask[:, :, : w // 2] = True
    else:
        mask = np.random.default_rng(seed).random((n, h, w, 1)) < p
    return mask


def _check(images: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, mask = np.asarray(images, np.float32), np.asarray(mask, bool)
    if images.ndim != 4 or mask.shape != (*images.shape[:3], 1):
        raise ConfigError(f"images [N, H, W, C] and mask [N, H, W, 1] expected, got {images.shape} and {mask.shape}")
    return images, mask


def mean_fill(images: np.ndarray, mask: np.ndarray, mean_image: np.ndarray) -> np.ndarray:
    """Observed pixels kept, missing ones from ``mean_image`` [H, W, C]."""
    images, mask = _check(images, mask)
    return np.where(mask, np.asarray(mean_image, np.float32)[None], images)


def nearest_fill(images: np.ndarray, mask: np.ndarray, reference: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Missing pixels from the reference image with the smallest squared distance on the observed pixels.

    d(x, r) = sum_obs (x - r)^2 = sum_obs x^2 - 2 sum_obs x r + sum_obs r^2, as matrix products.
    """
    images, mask = _check(images, mask)
    ref = np.asarray(reference, np.float32).reshape(len(reference), -1)
    channels = images.shape[-1]
    out = images.copy()
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].reshape(min(chunk, len(images) - start), -1)
        obs = np.repeat(~mask[start:start + chunk], channels, axis=-1).reshape(len(x), -1).astype(np.float32)
        xo = x * obs
        dist = (xo ** 2).sum(axis=1, keepdims=True) - 2.0 * xo @ ref.T + obs @ (ref ** 2).T
        best = ref[np.argmin(dist, axis=1)].reshape(images[start:start + chunk].shape)
        out[start:start + chunk] = np.where(mask[start:start + chunk], best, images[start:start + chunk])
    return out


def iterative_fill(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, steps: int = 30) -> np.ndarray:
    """Iterated conditional re-encoding (module docstring) from ``init`` (e.g. ``mean_fill``); [0, 1] in and out."""
    images, mask = _check(images, mask)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    x = np.where(mask, init, images).astype(np.float32)
    for _ in range(steps):
        recon = np.asarray(model.to_unit(model.reconstruct(model.from_unit(x))))
        x = np.where(mask, recon, images)
    return x


def map_objective(model, images: np.ndarray, mask: np.ndarray, z):
    """Per-image -log p(x_obs | z) + |z|^2 / 2 (module docstring; the VAEGAN's data term is its weighted
    MAE) for [0, 1] images, missing-pixel mask and latents z [N, D]; a TF tensor [N]."""
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    low, high = model.value_range
    x_model = tf.constant(images * (high - low) + low)
    observed = tf.constant(np.repeat(~np.asarray(mask, bool), images.shape[-1], axis=-1), tf.float32)
    output = model.decoder(z, training=False)
    if hasattr(model, "likelihood"):  # per-pixel log p(x_i | z) of the decoder's distribution
        log_p = model.likelihood(output).distribution.log_prob(x_model)
        data = -tf.reduce_sum(log_p * observed, axis=[1, 2, 3])
    else:
        weight = float(model.loss_config.reconstruction_weight) / float(np.prod(images.shape[1:]))
        x_hat = model.decode_output_to_image(output)
        data = weight * tf.reduce_sum(tf.abs(x_hat - x_model) * observed, axis=[1, 2, 3])
    return data + 0.5 * tf.reduce_sum(tf.square(z), axis=1)


def latent_fill(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, steps: int = 200,
                learning_rate: float = 0.05, return_latents: bool = False):
    """MAP latent given the observed pixels (``map_objective``), by Adam on z from the encoder's mean
    of ``init``; [0, 1] in and out (and z* [N, D] with ``return_latents``)."""
    import keras
    import tensorflow as tf

    images, mask = _check(images, mask)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    mean, _ = model.encode(model.from_unit(np.where(mask, init, images)))
    z = tf.Variable(mean)
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(map_objective(model, images, mask, z))
        optimizer.apply_gradients([(tape.gradient(loss, z), z)])
        return loss

    for _ in range(steps):
        step()
    filled = np.where(mask, np.asarray(model.to_unit(model.decode(z))), images)
    return (filled, z.numpy()) if return_latents else filled


def require_likelihood(model, method: str) -> None:
    """Refuse a sampling method (``SAMPLING_COMPLETION_METHODS``) for a model without a decoder density p(x|z)."""
    if not hasattr(model, "likelihood"):
        raise ConfigError(f"completion method {method!r} needs the decoder's density p(x|z), which a "
                          f"{type(model).__name__} does not have (its decoder is trained by an L1 + adversarial loss, "
                          "not a likelihood): use --method iterative or latent")


def log_importance_ratio(model, x, z, mean, log_var, observed=None):
    """log p(x | z) + log p(z) - log q(z) per image for x [N, H, W, C] (model range), z [..., N, D] and
    q = N(mean, diag exp(log_var)) ([N, D] each); with ``observed`` (1 = observed pixel, [N, H, W, C]) the
    likelihood sums over observed pixels only. Returns (log ratio [..., N], decoder output [..., N, H, W, C'])."""
    import tensorflow as tf

    from keras_vae.distributions import diagonal_gaussian, standard_normal

    z = tf.convert_to_tensor(z, tf.float32)
    lead = tf.shape(z)[:-1]
    flat = tf.reshape(z, [-1, model.latent_dim])
    output = model.decoder(flat, training=False)
    output = tf.reshape(output, tf.concat([lead, tf.shape(output)[1:]], 0))
    log_p = model.likelihood(output).distribution.log_prob(x)  # per pixel, x broadcast over the leading axes
    if observed is not None:
        log_p = log_p * observed
    log_px = tf.reduce_sum(log_p, axis=[-3, -2, -1])
    log_ratio = log_px + standard_normal(model.latent_dim).log_prob(z) - diagonal_gaussian(mean, log_var).log_prob(z)
    return log_ratio, output


def mwg_step(model, x, missing, z, seed):
    """One Metropolis-within-Gibbs step (module docstring) for chain states x [N, H, W, C] (model range) and
    z [N, D]; ``missing`` float [N, H, W, 1 or C] (1 = missing), ``seed`` int32 [2] (stateless).

    Returns {x, z: the next state; z_proposed; log_rho [N]: log acceptance ratio; accepted [N] bool;
    mean: E[x | z_next] in the model's range}."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 3)
    mean, log_var = model.encode(x)
    eps = tf.random.stateless_normal(tf.shape(mean), seed=seeds[0])
    z_proposed = mean + tf.exp(0.5 * log_var) * eps
    log_w, output = log_importance_ratio(model, x, tf.stack([z_proposed, z]), mean, log_var)
    log_rho = log_w[0] - log_w[1]
    u = tf.random.stateless_uniform(tf.shape(log_rho), seed=seeds[1])
    accepted = tf.math.log(u) < log_rho
    z_next = tf.where(accepted[:, None], z_proposed, z)
    out_next = tf.where(tf.reshape(accepted, [-1, 1, 1, 1]), output[0], output[1])
    drawn = model.likelihood(out_next).sample(seed=seeds[2])
    x_next = tf.where(missing > 0, tf.cast(drawn, tf.float32), x)
    return {"x": x_next, "z": z_next, "z_proposed": z_proposed, "log_rho": log_rho, "accepted": accepted,
            "mean": model.decode_output_to_image(out_next)}


def _kept_steps(steps: int, burn_in: int, completions: int) -> np.ndarray:
    """``completions`` chain steps evenly spaced over (burn_in, steps], the last state always among them."""
    if steps < 1 or not 0 <= burn_in < steps:
        raise ConfigError(f"Metropolis-within-Gibbs needs steps >= 1 and 0 <= burn-in < steps, got steps {steps} and "
                          f"burn-in {burn_in}: raise --mwg-steps or lower --burn-in")
    if not 1 <= completions <= steps - burn_in:
        raise ConfigError(f"{completions} completions need as many chain states after burn-in, there are "
                          f"{steps - burn_in}: raise --mwg-steps or lower --completions")
    return np.unique(np.linspace(steps, burn_in + 1, completions).round().astype(int))


def _per_chain(completions: int, chains: int) -> int:
    if chains < 1 or completions % chains:
        raise ConfigError(f"{completions} completions cannot be split evenly over {chains} chains: choose "
                          "--mwg-chains dividing --completions")
    return completions // chains


def metropolis_fill(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, steps: int = 100,
                    burn_in: int | None = None, completions: int = 10, seed: int = 0, stream: int = 0,
                    z0: np.ndarray | None = None):
    """Metropolis-within-Gibbs completion (module docstring) from ``init`` ([0, 1]); ``burn_in`` defaults to
    steps // 2. One chain per image starts at z_0 = the encoder's mean of ``init``; with ``z0`` [N, D] one chain
    per image starts there, with ``z0`` [C, N, D] C independent chains per image start there (e.g. latents
    resampled by importance sampling, ``importance_fill(return_latents=True)``); the hidden pixels then start
    drawn from p(x_hidden | z0). Seeded by (``seed``, ``stream``) and the step number. Returns (completion
    [N, H, W, C]: the mean of E[x | z_t] over every chain's states after burn-in (the Bernoulli mixture's
    probability), K completions [K, N, H, W, C]: E[x | z_t] at K / C evenly spaced states after burn-in of each
    chain (the last state among them; chain-major), acceptance rate per image [N] (mean over its chains));
    [0, 1], observed pixels kept."""
    import tensorflow as tf

    images, mask = _check(images, mask)
    require_likelihood(model, "metropolis")
    burn_in = steps // 2 if burn_in is None else int(burn_in)
    chains = 1 if z0 is None or np.ndim(z0) == 2 else int(np.shape(z0)[0])
    kept = set(_kept_steps(steps, burn_in, _per_chain(completions, chains)).tolist())
    n = len(images)
    x = tf.constant(np.tile(np.asarray(model.from_unit(np.where(mask, init, images)), np.float32),
                            (chains, 1, 1, 1)))
    missing = tf.constant(np.tile(mask, (chains, 1, 1, 1)), tf.float32)
    if z0 is None:
        z = model.encode(x)[0]
    else:
        z = tf.constant(np.reshape(z0, (chains * n, -1)), tf.float32)
        drawn = model.likelihood(model.decoder(z, training=False)).sample(seed=[int(seed) % 2 ** 31, 2 ** 30])
        x = tf.where(missing > 0, tf.cast(drawn, tf.float32), x)
    step = tf.function(lambda x, z, s: mwg_step(model, x, missing, z, s))
    total, samples, accepted = 0.0, [], np.zeros(chains * n)
    for t in range(1, steps + 1):
        state = step(x, z, tf.constant([int(seed) % 2 ** 31, (int(stream) * 100_003 + t) % 2 ** 31], tf.int32))
        x, z = state["x"], state["z"]
        accepted += np.asarray(state["accepted"])
        if t > burn_in:
            mean = np.asarray(model.to_unit(state["mean"]), np.float32).reshape(chains, *images.shape)
            total = total + mean.mean(0)
            if t in kept:
                samples.append(np.where(mask[None], mean, images[None]))
    filled = np.where(mask, total / (steps - burn_in), images)
    samples = np.stack(samples, axis=1).reshape(completions, *images.shape)  # [C, K / C, ...] chain-major
    return filled, samples, (accepted / steps).reshape(chains, n).mean(0)


def importance_log_weights(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, z):
    """log w_s = log p(x_obs | z_s) + log p(z_s) - log q(z_s | x_init) for z [S, N, D] ([0, 1] images, x_init =
    observed pixels with missing ones from ``init``); unnormalised, [S, N]. Also returns the decoder output."""
    import tensorflow as tf

    images, mask = _check(images, mask)
    x_init = np.asarray(model.from_unit(np.where(mask, init, images)), np.float32)
    mean, log_var = model.encode(x_init)
    observed = tf.constant(np.repeat(~mask, images.shape[-1], axis=-1), tf.float32)
    return log_importance_ratio(model, tf.constant(x_init), z, mean, log_var, observed)


def importance_fill(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, samples: int = 1000,
                    completions: int = 10, seed: int = 0, stream: int = 0, chunk: int = 50,
                    return_latents: bool = False):
    """Self-normalised importance sampling (module docstring) with S = ``samples`` draws from q(z | x_init),
    x_init = observed pixels and ``init``'s missing ones. Returns (completion sum_s w_s E[x_miss | z_s],
    K completions [K, N, H, W, C] resampled with the weights, effective sample size 1 / sum_s w_s^2 [N]);
    [0, 1], observed pixels kept. With ``return_latents`` also the K resampled latents [K, N, D]."""
    import tensorflow as tf

    images, mask = _check(images, mask)
    require_likelihood(model, "importance")
    if samples < 1 or completions < 1:
        raise ConfigError(f"importance sampling needs samples >= 1 and completions >= 1, got {samples} and "
                          f"{completions}: raise --importance-samples or --completions")
    x_init = np.asarray(model.from_unit(np.where(mask, init, images)), np.float32)
    mean, log_var = model.encode(x_init)
    observed = tf.constant(np.repeat(~mask, images.shape[-1], axis=-1), tf.float32)
    x_init = tf.constant(x_init)

    @tf.function
    def weigh(z):
        log_w, output = log_importance_ratio(model, x_init, z, mean, log_var, observed)
        return log_w, model.decode_output_to_image(output)

    n, d = len(images), model.latent_dim
    zs, log_ws, peak, numerator, denominator = [], [], None, 0.0, 0.0
    for start in range(0, samples, chunk):
        c = min(chunk, samples - start)
        eps = tf.random.stateless_normal([c, n, d], seed=[int(seed) % 2 ** 31, (int(stream) * 100_003 + start) % 2 ** 31])
        z = mean + tf.exp(0.5 * log_var) * eps
        log_w, decoded = weigh(z)
        log_w, decoded = np.asarray(log_w, np.float64), np.asarray(model.to_unit(decoded), np.float64)
        new_peak = log_w.max(0) if peak is None else np.maximum(peak, log_w.max(0))
        rescale = np.ones_like(new_peak) if peak is None else np.exp(peak - new_peak)  # running log-sum-exp
        w = np.exp(log_w - new_peak)
        numerator = numerator * rescale[:, None, None, None] + np.einsum("sn,snhwc->nhwc", w, decoded)
        denominator = denominator * rescale + w.sum(0)
        peak = new_peak
        zs.append(np.asarray(z))
        log_ws.append(log_w)
    log_w = np.concatenate(log_ws)  # [S, N]
    weights = np.exp(log_w - log_w.max(0))
    weights /= weights.sum(0)
    ess = 1.0 / (weights ** 2).sum(0)
    filled = np.where(mask, (numerator / denominator[:, None, None, None]).astype(np.float32), images)
    rng = np.random.default_rng([int(seed), int(stream)])
    chosen = np.stack([rng.choice(samples, size=completions, p=weights[:, i]) for i in range(n)], axis=1)  # [K, N]
    z_all = np.concatenate(zs)  # [S, N, D]
    z_chosen = z_all[chosen, np.arange(n)[None]]  # [K, N, D]
    decoded = np.asarray(model.to_unit(model.decode(tf.constant(z_chosen.reshape(-1, d)))), np.float32)
    decoded = decoded.reshape(completions, *images.shape)
    out = filled, np.where(mask[None], decoded, images[None]), ess
    return (*out, z_chosen) if return_latents else out


def multiple_imputation(samples: np.ndarray) -> np.ndarray:
    """The per-pixel mean of K completions [K, N, H, W, C]: a sampler's estimate of the conditional mean."""
    return np.asarray(samples, np.float64).mean(axis=0).astype(np.float32)


def interval_coverage(prob: np.ndarray, truth: np.ndarray, mask: np.ndarray, level: float = 0.9) -> float:
    """Coverage of central ``level`` prediction intervals of each missing pixel, over all missing pixels.

    A pixel's predictive distribution is Bernoulli(p), p = ``prob`` clipped to [0, 1], for the binarised truth
    y = [truth > 0.5]. A discrete variable has no exact central interval, so the interval is randomised (the
    randomised PIT): u ~ U(0, 1 - p) if y = 0, U(1 - p, 1) if y = 1, covered when u in [a, 1 - a], a = (1 - level)
    / 2. Returned is its expectation over u: the length of [a, 1 - a] inside u's range over that range's length
    (a point range counts 1 inside, 0 outside). Equals ``level`` in expectation when p is calibrated."""
    p = np.clip(np.asarray(prob, np.float64), 0.0, 1.0)
    y = np.asarray(truth) > 0.5
    m = np.broadcast_to(np.asarray(mask, bool), p.shape)
    p, y = p[m], y[m]
    a = (1.0 - level) / 2.0
    low = np.where(y, 1.0 - p, 0.0)
    high = np.where(y, 1.0, 1.0 - p)
    width = high - low
    inside = np.clip(np.minimum(high, 1.0 - a) - np.maximum(low, a), 0.0, None)
    point = ((low >= a) & (low <= 1.0 - a)).astype(np.float64)
    return float(np.mean(np.where(width > 0, inside / np.where(width > 0, width, 1.0), point)))


def brier_score(prob: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean of (p - y)^2 over the missing pixels, p = ``prob`` clipped to [0, 1], y = [truth > 0.5] (the
    binarised pixel). For a binary outcome it equals the CRPS of the Bernoulli(p) predictive; lower is better."""
    p = np.clip(np.asarray(prob, np.float64), 0.0, 1.0)
    y = (np.asarray(truth) > 0.5).astype(np.float64)
    m = np.broadcast_to(np.asarray(mask, bool), p.shape)
    return float(np.mean((p[m] - y[m]) ** 2))


class Completion:
    """Completed images ([0, 1], per method), the mask and the originals; PSNR on the masked region."""

    def __init__(self, images: np.ndarray, mask: np.ndarray, filled: dict[str, np.ndarray], mask_spec: str,
                 index: np.ndarray | None = None, names: list[str] | None = None,
                 samples: dict[str, np.ndarray] | None = None, diagnostics: dict[str, dict] | None = None) -> None:
        self.images, self.mask, self.filled, self.mask_spec = images, mask, filled, mask_spec
        self.index, self.names = index, names  # where each image came from, when known
        self.samples = samples or {}  # sampling methods: K completions [K, N, H, W, C]
        self.diagnostics = diagnostics or {}  # {method: {name: float}} (acceptance rate, effective sample size)

    @property
    def missing_fraction(self) -> float:
        return float(self.mask.mean())

    def point_estimates(self) -> dict[str, np.ndarray]:
        """Each method's point estimate [N, H, W, C]: a sampling method's per-pixel mean of its K completions
        (``multiple_imputation``), the other methods' single completion."""
        return {m: multiple_imputation(self.samples[m]) if m in self.samples else x for m, x in self.filled.items()}

    def psnr(self) -> dict[str, np.ndarray]:
        """Per-image PSNR (dB) of each method's point estimate (``point_estimates``) on the missing pixels."""
        from keras_vae.applications.encoding import psnr

        return {m: psnr(self.images, x, self.mask) for m, x in self.point_estimates().items()}

    def summary(self) -> dict[str, tuple[float, float]]:
        """{method: (mean PSNR of its point estimate, standard error)} over images."""
        return {m: _mean_and_stderr(v) for m, v in self.psnr().items()}

    def _per_completion(self) -> dict[str, np.ndarray]:
        from keras_vae.applications.encoding import psnr

        return {m: np.stack([psnr(self.images, x, self.mask) for x in k]) for m, k in self.samples.items()}

    def best_of_k(self) -> dict[str, tuple[float, float]]:
        """{sampling method: (mean, standard error) over images of the best PSNR among its K completions}."""
        return {m: _mean_and_stderr(v.max(axis=0)) for m, v in self._per_completion().items()}

    def single_completion(self) -> dict[str, tuple[float, float]]:
        """{sampling method: (mean, standard error) over images of the mean PSNR of its K completions}: what
        one completion scores."""
        return {m: _mean_and_stderr(v.mean(axis=0)) for m, v in self._per_completion().items()}

    def calibration(self, level: float = 0.9) -> dict[str, dict[str, float]]:
        """{method: {coverage, brier}}: ``filled`` as the predictive probability of the binarised hidden pixels
        (``interval_coverage`` at ``level``, ``brier_score``); for a sampling method that is the Bernoulli
        mixture over all its latent draws (every kept chain state; the importance-weighted draws)."""
        return {m: {"coverage": interval_coverage(x, self.images, self.mask, level),
                    "brier": brier_score(x, self.images, self.mask)} for m, x in self.filled.items()}

    def save(self, out_dir, index: np.ndarray | None = None, names: list[str] | None = None,
             extra: dict | None = None, preview: int = 8) -> None:
        """Write report.json (``extra`` first), completed.npz (uint8 images per method and the original, mask,
        index, names; per sampling method its K completions ``<method>_samples`` [K, N, H, W, C] and their
        per-pixel standard deviation ``<method>_std``) and completions.png (rows: masked input, each method
        (a sampling method: 4 of its completions, their mean, the spread), original; ``preview`` columns).
        ``index`` and ``names`` default to the Completion's own (positions 0..N-1 when it has none)."""
        from pathlib import Path

        from keras_vae.utils.files import atomic_path, write_json
        from keras_vae.utils.images import save_grid, to_uint8

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        report = {**(extra or {}), "mask": self.mask_spec, "images": len(self.images),
                  "missing_fraction": self.missing_fraction,
                  "psnr_masked_db": {m: {"mean": mean, "stderr": se} for m, (mean, se) in summary.items()},
                  "definition": "PSNR = 10 log10(1 / MSE) on [0, 1] pixels, MSE over the masked pixels of each "
                                "image, averaged over images; a sampling method's point estimate is the per-pixel "
                                "mean of its K completions (multiple imputation)",
                  "coverage_level": 0.9, "calibration": self.calibration(0.9),
                  "calibration_definition": "P(pixel = 1) of the binarised hidden pixels: a sampling method's "
                                            "Bernoulli mixture (mean of the decoder's probabilities over its latent "
                                            "draws: every kept chain state, or the importance-weighted draws), "
                                            "another method's completion; coverage of randomised central 90% "
                                            "Bernoulli intervals (expected over the randomisation) and Brier score "
                                            "(= CRPS for a binary pixel), pooled over all hidden pixels"}
        if self.samples:
            report["completions"] = len(next(iter(self.samples.values())))
            report["best_of_k_psnr_db"] = {m: {"mean": mean, "stderr": se}
                                           for m, (mean, se) in self.best_of_k().items()}
            report["single_completion_psnr_db"] = {m: {"mean": mean, "stderr": se}
                                                   for m, (mean, se) in self.single_completion().items()}
            report["diagnostics"] = self.diagnostics
        write_json(out_dir / "report.json", report)
        arrays = {f"{m}": to_uint8(x) for m, x in self.filled.items()}
        index = self.index if index is None else index
        index = np.arange(len(self.images)) if index is None else index
        names = self.names if names is None else names
        arrays.update(original=to_uint8(self.images), mask=self.mask, index=np.asarray(index, np.int64))
        if names is not None:
            arrays["names"] = np.array(names, dtype=str)
        for m, k in self.samples.items():  # K completions and their per-pixel spread
            arrays[f"{m}_samples"] = to_uint8(k)
            arrays[f"{m}_std"] = k.std(axis=0).astype(np.float32)
        with atomic_path(out_dir / "completed.npz", suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        n = min(preview, len(self.images))
        shown = np.where(self.mask[:n], 0.5, self.images[:n])  # missing pixels shown grey
        rows = [shown]
        for m in self.filled:
            if m in self.samples:  # up to 4 completions, their mean, the spread (std scaled to the largest)
                k = self.samples[m][:, :n]
                std = k.std(axis=0)
                rows += list(k[:4]) + [self.filled[m][:n], std / max(float(std.max()), 1e-6)]
            else:
                rows.append(self.filled[m][:n])
        rows.append(self.images[:n])
        save_grid(np.concatenate(rows), out_dir / "completions.png", cols=n, pad=1)


def default_mwg_chains(completions: int, mwg_chains: int | None, mwg_start: str) -> int:
    """The Metropolis-within-Gibbs chain count in effect: ``mwg_chains`` when given, else one chain per completion
    from importance-resampled starts ('importance') and one chain from the encoder's mean ('encoder')."""
    if mwg_chains is not None:
        return int(mwg_chains)
    return int(completions) if mwg_start == "importance" else 1


def complete_all(model, images: np.ndarray, reference: np.ndarray, mask_spec: str, *,
                 methods=("iterative", "latent"), steps: int = 30, latent_steps: int = 200,
                 learning_rate: float = 0.05, seed: int = 0, batch_size: int = 256, completions: int = 10,
                 mwg_steps: int = 100, burn_in: int | None = None, importance_samples: int = 1000,
                 mwg_chains: int | None = None, mwg_start: str = "importance") -> Completion:
    """Mask ``images`` ([0, 1]) with ``mask_spec`` and fill them with each method and both baselines
    (``reference``: training images in [0, 1] for the mean image and the nearest neighbour). The sampling
    methods start from the MAP latent completion and draw ``completions`` completions each (Completion.samples).
    Metropolis-within-Gibbs runs ``mwg_chains`` chains per image (dividing ``completions``; default one per
    completion from 'importance', 1 from 'encoder') of ``mwg_steps`` steps, started at latents resampled by
    importance sampling from ``importance_samples`` draws (``mwg_start`` 'importance'; another seed than the
    importance method's) or at the encoder's mean of the MAP completion ('encoder', Algorithm 1's start)."""
    images = np.asarray(images, np.float32)
    for method in methods:
        if method not in COMPLETION_METHODS:
            raise ConfigError(f"unknown completion method {method!r}: choose from {', '.join(COMPLETION_METHODS)}")
        if method in SAMPLING_COMPLETION_METHODS:
            require_likelihood(model, method)
    mwg_chains = default_mwg_chains(completions, mwg_chains, mwg_start)
    if "metropolis" in methods:
        if mwg_start not in MWG_STARTS:
            raise ConfigError(f"unknown chain start {mwg_start!r}: choose from {', '.join(MWG_STARTS)}")
        if mwg_start == "encoder" and mwg_chains != 1:
            raise ConfigError(f"{mwg_chains} chains from the encoder's mean would be the same chain started "
                              f"{mwg_chains} times at one point: use --mwg-start importance for several chains")
        _kept_steps(mwg_steps, mwg_steps // 2 if burn_in is None else burn_in, _per_chain(completions, mwg_chains))
    mask = make_mask(mask_spec, len(images), images.shape[1:], seed=seed)
    mean_image = np.asarray(reference, np.float32).mean(axis=0)
    base = mean_fill(images, mask, mean_image)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    drawn: dict[str, list[np.ndarray]] = {m: [] for m in methods if m in SAMPLING_COMPLETION_METHODS}
    stats: dict[str, list[np.ndarray]] = {m: [] for m in drawn}
    for s in range(0, len(images), batch_size):
        x, m, b = images[s:s + batch_size], mask[s:s + batch_size], base[s:s + batch_size]
        it = iterative_fill(model, x, m, b, steps=steps)  # the latent method's starting point
        if "iterative" in parts:
            parts["iterative"].append(it)
        lat = None
        if "latent" in parts or drawn:  # the sampling methods start from the MAP completion
            lat = latent_fill(model, x, m, it, steps=latent_steps, learning_rate=learning_rate)
        if "latent" in parts:
            parts["latent"].append(lat)
        for method, pieces in drawn.items():
            if method == "metropolis":
                z0 = None
                if mwg_start == "importance":
                    z0 = importance_fill(model, x, m, lat, samples=importance_samples, completions=mwg_chains,
                                         seed=seed + 1, stream=s, return_latents=True)[3]
                filled, k, stat = metropolis_fill(model, x, m, lat, steps=mwg_steps, burn_in=burn_in,
                                                  completions=completions, seed=seed, stream=s, z0=z0)
            else:
                filled, k, stat = importance_fill(model, x, m, lat, samples=importance_samples,
                                                  completions=completions, seed=seed, stream=s)
            parts[method].append(filled)
            pieces.append(k)
            stats[method].append(stat)
    filled = {m: np.concatenate(p) for m, p in parts.items()}
    filled["mean_fill"] = base
    filled["nearest"] = nearest_fill(images, mask, reference)
    samples = {m: np.concatenate(k, axis=1) for m, k in drawn.items()}
    names = {"metropolis": "acceptance_rate", "importance": "effective_sample_size"}
    diagnostics = {m: {f"mean_{names[m]}": float(np.concatenate(v).mean()),
                       f"min_{names[m]}": float(np.concatenate(v).min())} for m, v in stats.items()}
    return Completion(images, mask, filled, mask_spec, samples=samples, diagnostics=diagnostics)


def load_reference(model, config, max_examples: int = 5000) -> np.ndarray:
    """At most ``max_examples`` training images of the run's own data source (``config.data``), in [0, 1]:
    the mean image and the nearest-neighbour candidates of the baselines."""
    from keras_vae.data import load_source
    from keras_vae.data.examples import load_examples

    reference = load_examples(load_source(config.data), image_shape=config.model.image_shape,
                              value_range=config.model.value_range, split="train", max_examples=max_examples)
    return np.asarray(model.to_unit(reference.images))


def complete_examples(model, examples, reference: np.ndarray, mask_spec: str, **kwargs) -> Completion:
    """``complete_all`` of an ``ExampleBatch`` (images in the model's range, converted to [0, 1]); the
    Completion keeps the batch's index and names for ``save``. ``kwargs`` go to ``complete_all``."""
    result = complete_all(model, np.asarray(model.to_unit(examples.images)), reference, mask_spec, **kwargs)
    result.index, result.names = examples.index, examples.names
    return result


def _mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values)[np.isfinite(values)]
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
