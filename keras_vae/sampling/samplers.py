"""Latent samplers: the prior N(0, I), or a fit of the aggregate posterior, stored as ``sampler.json``.

A sampler is a Gaussian mixture p(z) = sum_k w_k N(z; mu_k, L_k L_k^T) over the latent space:

    prior     K = 1, mu = 0, L = I            (what the paper's own code decodes)
    gaussian  K = 1, N(m, C) with m = mean_i mu_i, C = Cov_i(mu_i) + diag(mean_i sigma_i^2)
    gmm       K >= 1 full covariances, fitted on the posterior means with covariance shrinkage
              lambda * mean_j Var(mu_j) * I added in EM, each component's covariance plus
              diag(mean_i sigma_i^2); K and lambda chosen by the log-likelihood of held-out codes

The fitted samplers follow two-stage VAE / pythae practice: decode samples from (a fit of) the
aggregate posterior q(z) = 1/N sum_i q(z|x_i) instead of N(0, I), which the codes of a trained
model rarely match.

Drawing rule (the contract every runtime implements identically; float32 throughout): given
standard-normal noise eps [n, d] and uniform u [n] in [0, 1),

    k_i = searchsorted(cumsum(weights), u_i, side='right'), clipped to K - 1
    z_i = means[k_i] + scale_tril[k_i] @ eps_i

File format (``sampler.json``, JSON, written atomically)::

    {"format": "keras-vae-latent-sampler", "version": 1, "kind": "prior"|"gaussian"|"gmm",
     "latent_dim": d, "weights": [K], "means": [K][d], "scale_tril": [K][d][d],
     "fitted_on": {"examples": N, "mode": "inference"}, "selection": {...}}

A fourth kind, ``flow`` (``FlowSampler``, the last section of this module), bends the draws of a fitted
mixture by a RealNVP flow; its file adds a ``flow`` object to the mixture fields (its base) and its
drawing rule is still a deterministic map of (eps, u). It is fitted in ``keras_vae.sampling.flow_fit``
(TensorFlow).

This module is NumPy-only (scikit-learn for the mixture fit, imported lazily): no TensorFlow.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from keras_vae.choices import SAMPLER_KINDS as KINDS
from keras_vae.errors import ArtifactError, ConfigError, DataError, choices

FORMAT = "keras-vae-latent-sampler"
VERSION = 1
SAMPLER_FILE = "sampler.json"
# Mixture sizes tried in order; the search stops at the first size whose held-out likelihood does not
# beat the best so far (the MNIST defaults chose 16, the old grid's edge, where 32-64 scored higher).
GMM_COMPONENTS = (1, 2, 4, 8, 16, 32, 64, 128)
# Covariance shrinkage tried for every size, as a fraction of the codes' mean per-dimension variance
# (scikit-learn's reg_covar): with a few thousand codes in 32 dimensions a full covariance per component
# overfits; shrinkage lets larger mixtures generalise (held-out likelihood decides, 0 included).
GMM_SHRINKAGE = (0.0, 0.01, 0.03, 0.1)
_MIN_REG_COVAR = 1e-6  # scikit-learn's default floor, used at shrinkage 0
_WEIGHT_SUM_TOL = 1e-6
# Every runtime draws, decodes and scores latents in float32. A sampler must keep its stored values finite
# there, and its latents z = m + L eps (|eps| <= NOISE_BOUND, keras_vae.sampling.noise) small enough that
# z and z^2 (Gaussian log-densities, KL terms) stay finite in float32: |z| <= sqrt(float32 max) ~ 1.8e19.
FLOAT32_MAX = float(np.finfo(np.float32).max)
LATENT_LIMIT = math.sqrt(FLOAT32_MAX)
NOISE_BOUND = math.sqrt(2.0 * math.log(2.0**24))  # the largest |eps| of portable_noise (5.77)


def draw_noise(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(eps [n, d] float32 standard normal, u [n] float32 uniform in [0, 1)) for ``seed``: the portable
    counter-based noise of ``keras_vae.sampling.noise`` (the same numbers in NumPy, TF graphs and JavaScript)."""
    from keras_vae.sampling.noise import portable_noise

    eps, u = portable_noise(int(seed), int(n), int(d))
    return np.asarray(eps, np.float32), np.asarray(u, np.float32)


def check_latent_range(z: np.ndarray) -> None:
    """DataError unless every latent is finite with |z| <= LATENT_LIMIT (z and z^2 finite in float32)."""
    z = np.asarray(z)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(z) <= LATENT_LIMIT)  # NaN counts as bad
    if np.any(bad):
        first = np.argwhere(bad)[0].tolist()
        raise DataError(f"the drawn latents reach {z[tuple(first)]:.3g} at index {first}, beyond what float32 decodes "
                        f"and scores (|z| <= {LATENT_LIMIT:.3g}): lower the temperature")


@dataclasses.dataclass(frozen=True)
class LatentSampler:
    """A Gaussian mixture over latents: ``weights`` [K], ``means`` [K, d], ``scale_tril`` [K, d, d]."""

    kind: str
    weights: np.ndarray
    means: np.ndarray
    scale_tril: np.ndarray
    fitted_on: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    selection: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = _problem(self.kind, self.weights, self.means, self.scale_tril)
        if problem is None and self.kind == "flow" and type(self) is LatentSampler:
            problem = "a 'flow' sampler needs its couplings: build it with FlowSampler (make_flow)"
        if problem:
            raise ConfigError(f"invalid latent sampler: {problem}")
        for name in ("weights", "means", "scale_tril"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    # --- properties ------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def num_components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def covariances(self) -> np.ndarray:
        """L_k L_k^T, [K, d, d]."""
        return self.scale_tril @ np.swapaxes(self.scale_tril, -1, -2)

    @property
    def marginal_std(self) -> np.ndarray:
        """Per-axis standard deviation of the whole mixture, [d] (law of total variance):
        Var z_i = sum_k w_k (C_k,ii + mu_k,i^2) - (sum_k w_k mu_k,i)^2."""
        variances = np.diagonal(self.covariances, axis1=1, axis2=2)
        mean = self.weights @ self.means
        second_moment = self.weights @ (variances + self.means**2)
        return np.sqrt(np.maximum(second_moment - mean**2, 0.0))

    # --- drawing -------------------------------------------------------------------------
    def components(self, u: np.ndarray) -> np.ndarray:
        """k_i = searchsorted(cumsum(weights), u_i, side='right') clipped to K - 1 (int64 [n])."""
        cumulative = np.cumsum(self.weights.astype(np.float32))
        k = np.searchsorted(cumulative, np.asarray(u, np.float32), side="right")
        return np.minimum(k, self.num_components - 1)

    def latents(self, eps: np.ndarray, u: np.ndarray) -> np.ndarray:
        """z_i = means[k_i] + scale_tril[k_i] @ eps_i (float32 [n, d]); the drawing rule."""
        eps = np.asarray(eps, np.float32)
        u = np.asarray(u, np.float32).reshape(-1)
        if eps.ndim != 2 or eps.shape[1] != self.latent_dim or eps.shape[0] != u.shape[0]:
            raise DataError(f"noise of shape eps {eps.shape}, u {u.shape} does not fit a sampler of latent "
                            f"dimension {self.latent_dim}: pass eps [n, {self.latent_dim}] and u [n]")
        if not (np.all(np.isfinite(eps)) and np.all(np.isfinite(u))):
            raise DataError("the noise holds NaN or infinite values (a temperature beyond the float32 range?): "
                            "pass finite eps and u")
        k = self.components(u)
        means = self.means.astype(np.float32)[k]
        tril = self.scale_tril.astype(np.float32)[k]
        with np.errstate(over="ignore", invalid="ignore"):
            z = (means + np.einsum("nij,nj->ni", tril, eps)).astype(np.float32)
        check_latent_range(z)
        return z

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n latents [n, d] float32 from ``draw_noise(seed, n, d)``; reproducible for a seed."""
        if int(n) < 1:
            raise ConfigError(f"the number of samples must be >= 1, got {n}")
        return self.latents(*draw_noise(seed, n, self.latent_dim))

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """log p(z) under the mixture, float64 [n] (log-sum-exp over components)."""
        z = np.asarray(z, np.float64)
        d = self.latent_dim
        per_component = []
        for w, mu, tril in zip(self.weights, self.means, self.scale_tril):
            if w <= 0:
                continue
            # Solve L y = (z - mu): |y|^2 is the Mahalanobis distance (row-wise via a transposed solve).
            y = np.linalg.solve(tril, (z - mu).T).T
            log_det = 2.0 * np.sum(np.log(np.diag(tril)))
            per_component.append(math.log(w) - 0.5 * (np.sum(y * y, axis=1) + log_det + d * math.log(2 * math.pi)))
        stacked = np.stack(per_component, axis=0)
        top = stacked.max(axis=0)
        return top + np.log(np.sum(np.exp(stacked - top), axis=0))

    # --- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "kind": self.kind, "latent_dim": self.latent_dim,
            "weights": self.weights.tolist(), "means": self.means.tolist(),
            "scale_tril": self.scale_tril.tolist(),
            "fitted_on": dict(self.fitted_on), "selection": _plain(dict(self.selection)),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "sampler") -> "LatentSampler":
        """Validate and build; any problem raises ArtifactError naming ``source`` and the field. A ``flow``
        sampler comes back as a ``FlowSampler``."""
        if isinstance(data, dict) and data.get("kind") == "flow" and data.get("format") == FORMAT \
                and cls is LatentSampler:
            return FlowSampler.from_dict(data, source)
        if not isinstance(data, dict):
            raise ArtifactError(f"{source} is not a keras-vae latent sampler (expected a JSON object)")
        if data.get("format") != FORMAT:
            raise ArtifactError(f"{source} is not a keras-vae latent sampler (format {data.get('format')!r}, "
                                f"expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ArtifactError(f"{source} has sampler version {data.get('version')!r}; this keras-vae reads "
                                f"version {VERSION}: upgrade keras-vae or re-fit the sampler")
        try:
            weights = np.asarray(data["weights"], np.float64)
            means = np.asarray(data["means"], np.float64)
            tril = np.asarray(data["scale_tril"], np.float64)
            latent_dim = int(data["latent_dim"])
            kind = data["kind"]
        except KeyError as exc:
            raise ArtifactError(f"{source} is corrupt: field {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{source} is corrupt: {exc}") from None
        problem = _problem(kind, weights, means, tril)
        if problem is None and means.shape[1] != latent_dim:
            problem = f"latent_dim {latent_dim} does not match means of width {means.shape[1]}"
        if problem:
            raise ArtifactError(f"{source} is corrupt: {problem}")
        return cls(kind=kind, weights=weights, means=means, scale_tril=tril,
                   fitted_on=dict(data.get("fitted_on") or {}), selection=dict(data.get("selection") or {}))

    @classmethod
    def from_json(cls, text: str, source: str = "sampler") -> "LatentSampler":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ArtifactError(f"{source} is not valid JSON ({exc}); re-fit or re-export the sampler") from None
        return cls.from_dict(data, source)

    def save(self, path: str | Path) -> Path:
        """Write the sampler as JSON to ``path``, atomically; returns the path."""
        from keras_vae.utils.files import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path, latent_dim: int | None = None) -> "LatentSampler":
        """Read ``path``; with ``latent_dim``, also check that the sampler fits that model."""
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"sampler file {str(path)!r} does not exist")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ArtifactError(f"sampler file {str(path)!r} is corrupt (not text): re-fit the sampler") from None
        sampler = cls.from_json(text, source=f"sampler file {str(path)!r}")
        if latent_dim is not None and sampler.latent_dim != int(latent_dim):
            raise ArtifactError(f"sampler file {str(path)!r} has latent dimension {sampler.latent_dim} but the "
                                f"model has {latent_dim}: it belongs to another model; re-fit it")
        return sampler


def _problem(kind: Any, weights: np.ndarray, means: np.ndarray, tril: np.ndarray) -> str | None:
    """None when the arrays form a valid sampler, else what is wrong (one phrase)."""
    if kind not in KINDS:
        return f"kind {kind!r} is not one of {choices(KINDS)}"
    weights, means, tril = (np.asarray(a, np.float64) for a in (weights, means, tril))
    if weights.ndim != 1 or weights.size < 1:
        return f"weights must be a non-empty list, got shape {weights.shape}"
    k = weights.shape[0]
    if means.ndim != 2 or means.shape[0] != k or means.shape[1] < 1:
        return f"means must be [K={k}, d], got shape {means.shape}"
    d = means.shape[1]
    if tril.shape != (k, d, d):
        return f"scale_tril must be [K={k}, d={d}, d={d}], got shape {tril.shape}"
    for name, values in (("weights", weights), ("means", means), ("scale_tril", tril)):
        if not np.all(np.isfinite(values)):
            return f"{name} holds NaN or infinite values"
        largest = float(np.max(np.abs(values)))
        if largest > FLOAT32_MAX:
            return (f"{name} holds a value ({largest:.3g}) beyond the float32 range (|x| <= {FLOAT32_MAX:.3g}) "
                    "in which every runtime draws latents")
    if np.any(weights < 0) or abs(weights.sum() - 1.0) > _WEIGHT_SUM_TOL:
        return f"weights must be >= 0 and sum to 1 (sum {weights.sum():.9g})"
    if np.any(np.triu(tril, 1) != 0):
        return "scale_tril is not lower-triangular"
    if np.any(np.diagonal(tril, axis1=1, axis2=2) <= 0):
        return "scale_tril must have a positive diagonal (Cholesky factors)"
    if kind in ("prior", "gaussian") and k != 1:
        return f"a {kind!r} sampler has one component, got {k}"
    if float(np.max(np.abs(means))) > LATENT_LIMIT:
        return (f"means holds a value ({float(np.max(np.abs(means))):.3g}) whose square overflows float32 "
                f"(|m| <= {LATENT_LIMIT:.3g}): latents that large decode to garbage")
    reach = np.abs(means) + NOISE_BOUND * np.sum(np.abs(tril), axis=2)  # the largest |z_i| a draw can reach
    if float(np.max(reach)) > LATENT_LIMIT:
        return (f"scale_tril is so large that latents z = m + L eps reach {float(np.max(reach)):.3g}, whose "
                f"square overflows float32 (|z| <= {LATENT_LIMIT:.3g}): latents that large decode to garbage")
    return None


def _plain(value: Any) -> Any:
    """JSON-ready copy: NumPy scalars and arrays become Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- fitting ---------------------------------------------------------------------------------
def _check_codes(means: np.ndarray, variances: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or means.shape[0] < 2:
        raise DataError(f"posterior means must be [N >= 2, d], got shape {means.shape}")
    variances = np.zeros_like(means) if variances is None else np.asarray(variances, np.float64)
    if variances.shape != means.shape:
        raise DataError(f"posterior variances {variances.shape} must have the means' shape {means.shape}")
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(variances))) or np.any(variances < 0):
        raise DataError("posterior means/variances hold NaN, infinite or negative values: the model diverged")
    return means, variances


def prior_sampler(latent_dim: int) -> LatentSampler:
    """N(0, I): the paper's sampler."""
    d = int(latent_dim)
    return LatentSampler("prior", np.ones(1), np.zeros((1, d)), np.eye(d)[None],
                         fitted_on={"examples": 0, "mode": "none"})


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Cholesky factor of a symmetric PSD matrix, adding jitter (relative to its scale) when needed."""
    cov = 0.5 * (cov + cov.T)
    jitter = 0.0
    scale = max(float(np.mean(np.diag(cov))), 1e-12)
    for _ in range(8):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            jitter = scale * 1e-9 if jitter == 0 else jitter * 100
    raise DataError("the latent codes' covariance is not positive definite (degenerate codes)")


def fit_gaussian(means: np.ndarray, variances: np.ndarray | None = None, mode: str = "inference") -> LatentSampler:
    """N(m, C): m = mean_i mu_i, C = Cov_i(mu_i) (1/N) + diag(mean_i sigma_i^2): the aggregate
    posterior's mean and covariance (law of total covariance)."""
    mu, var = _check_codes(means, variances)
    m = mu.mean(axis=0)
    centred = mu - m
    cov = centred.T @ centred / mu.shape[0] + np.diag(var.mean(axis=0))
    return LatentSampler("gaussian", np.ones(1), m[None], _cholesky(cov)[None],
                         fitted_on={"examples": int(mu.shape[0]), "mode": mode})


def gmm_search_steps(components: Sequence[int] = GMM_COMPONENTS, shrinkage: Sequence[float] = GMM_SHRINKAGE) -> int:
    """Units of work ``fit_gmm`` reports to its ``progress``: one per (size, shrinkage) pair of the grid."""
    return len({int(c) for c in components}) * len({float(x) for x in shrinkage})


def fit_gmm(means: np.ndarray, variances: np.ndarray | None, validation_codes: np.ndarray, *,
            components: Sequence[int] = GMM_COMPONENTS, shrinkage: Sequence[float] = GMM_SHRINKAGE,
            seed: int = 0, max_examples: int = 20000, mode: str = "inference",
            stop_early: bool = True, progress: Callable[[int], None] | None = None) -> LatentSampler:
    """Gaussian mixtures with full covariances fitted (scikit-learn EM) on the posterior means, each
    component's covariance plus diag(mean_i sigma_i^2); returns the (K, lambda) of ``components`` x
    ``shrinkage`` whose mixture gives the held-out ``validation_codes`` the highest mean log-likelihood.
    EM adds lambda * mean_j Var(mu_j) to every covariance's diagonal (shrinkage toward a sphere).
    For each lambda, sizes are tried in increasing order and the search stops at the first one that
    does not improve on that lambda's best (``stop_early=False`` tries them all).
    ``selection['components']`` holds the chosen lambda's scores by K, ``selection['grid']`` all.
    ``progress(n)`` is called as the grid's ``gmm_search_steps`` units are done (a size skipped by the early
    stop counts as done), from the worker threads one call at a time."""
    mu, var = _check_codes(means, variances)
    val = np.asarray(validation_codes, np.float64)
    if val.ndim != 2 or val.shape[1] != mu.shape[1] or len(val) < 1:
        raise DataError(f"validation codes must be [M, {mu.shape[1]}], got shape {val.shape}")
    lambdas = sorted({float(x) for x in shrinkage})
    if not lambdas or any(not math.isfinite(x) or x < 0 for x in lambdas):
        raise ConfigError(f"covariance shrinkage must be finite values >= 0, got {list(shrinkage)}")
    rng = np.random.default_rng(seed)
    if len(mu) > max_examples:
        mu = mu[rng.choice(len(mu), max_examples, replace=False)]
    noise = np.diag(var.mean(axis=0))
    code_scale = float(np.mean(mu.var(axis=0)))
    sizes = sorted({int(c) for c in components if 1 <= int(c) <= len(mu)})
    per_lambda = len({int(c) for c in components})  # progress units per shrinkage value
    lock = threading.Lock()

    def advance(n: int) -> None:
        if progress is not None and n > 0:
            with lock:
                progress(n)

    def search(lam: float) -> list[tuple[int, LatentSampler, float]]:
        """(K, mixture, held-out score) for the sizes tried at shrinkage ``lam``, in order."""
        tried = _search(lam)
        advance(per_lambda - len(tried))  # sizes skipped (early stop, or more components than codes)
        return tried

    def _search(lam: float) -> list[tuple[int, LatentSampler, float]]:
        from sklearn.mixture import GaussianMixture

        tried, lambda_best = [], -np.inf
        for k in sizes:
            reg_covar = max(lam * code_scale, _MIN_REG_COVAR)
            gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=reg_covar, random_state=seed,
                                 max_iter=200, n_init=1).fit(mu)
            trils = np.stack([_cholesky(c + noise) for c in gm.covariances_])
            candidate = LatentSampler("gmm", gm.weights_ / gm.weights_.sum(), gm.means_, trils)
            score = float(np.mean(candidate.log_prob(val)))
            tried.append((k, candidate, score))
            advance(1)
            if score > lambda_best:
                lambda_best = score
            elif stop_early:
                break
        return tried

    # EM on a few thousand 32-d codes is many small matrix operations: multi-threaded BLAS made it 2.6x
    # slower here, so BLAS runs on one thread and the shrinkage values run side by side (one per core).
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from keras_vae.utils.cpu import usable_cores

    workers = min(len(lambdas), usable_cores())
    with threadpool_limits(limits=1), ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(search, lambdas))
    grid: dict[str, dict[str, float]] = {}
    best: LatentSampler | None = None
    best_score, best_lambda = -np.inf, 0.0
    for lam, tried in zip(lambdas, results):  # in increasing lambda and K: the same choice for any scheduling
        grid[_shrinkage_key(lam)] = {str(k): score for k, _, score in tried}
        for k, candidate, score in tried:
            if score > best_score:
                best, best_score, best_lambda = candidate, score, lam
    if best is None:
        raise DataError(f"no mixture size in {list(components)} fits {len(mu)} codes")
    selection = {"criterion": "mean log-likelihood of held-out codes (nats per code)",
                 "validation_examples": int(len(val)), "components": grid[_shrinkage_key(best_lambda)],
                 "chosen_components": best.num_components, "chosen_shrinkage": best_lambda,
                 "shrinkage_scale": code_scale, "grid": grid}
    return dataclasses.replace(best, fitted_on={"examples": int(len(mu)), "mode": mode}, selection=selection)


def widened(sampler: LatentSampler, scale: float) -> LatentSampler:
    """The mixture with every component's covariance multiplied by ``scale``^2 (means and weights kept): its
    draws are means[k] + scale * scale_tril[k] @ eps, what ``--temperature scale`` draws from ``sampler``,
    stored as an ordinary mixture (the same file format, export and drawing rule)."""
    if type(sampler) is not LatentSampler:
        raise ConfigError(f"only a Gaussian mixture can be widened, not a {sampler.kind!r} sampler")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"the covariance scale must be a finite number > 0, got {scale}")
    return dataclasses.replace(sampler, scale_tril=sampler.scale_tril * scale)


def _shrinkage_key(lam: float) -> str:
    return f"{lam:g}"


def fit_samplers(means: np.ndarray, variances: np.ndarray, validation_codes: np.ndarray, *, seed: int = 0,
                 components: Sequence[int] = GMM_COMPONENTS, shrinkage: Sequence[float] = GMM_SHRINKAGE,
                 mode: str = "inference", progress: Callable[[int], None] | None = None) -> dict[str, LatentSampler]:
    """{'prior', 'gaussian', 'gmm'}: the three samplers, fitted on the training codes; ``progress(n)`` follows
    the mixture search (``gmm_search_steps(components, shrinkage)`` units, ``fit_gmm``)."""
    mu, var = _check_codes(means, variances)
    return {"prior": prior_sampler(mu.shape[1]), "gaussian": fit_gaussian(mu, var, mode=mode),
            "gmm": fit_gmm(mu, var, validation_codes, components=components, shrinkage=shrinkage, seed=seed,
                           mode=mode, progress=progress)}


def choose_sampler(samplers: Mapping[str, LatentSampler], validation_codes: np.ndarray) -> LatentSampler:
    """The sampler giving held-out codes the highest mean log-likelihood; its ``selection`` records
    every candidate's score (and the mixture's own K selection)."""
    if not samplers:
        raise ConfigError("choose_sampler needs at least one candidate sampler")
    val = np.asarray(validation_codes, np.float64)
    scores = {name: float(np.mean(s.log_prob(val))) for name, s in samplers.items()}
    name = max(scores, key=scores.get)
    chosen = samplers[name]
    selection = {"criterion": "mean log-likelihood of held-out codes (nats per code)",
                 "validation_examples": int(len(val)), "candidates": scores, "chosen": name}
    gmm_selection = chosen.selection if "components" in chosen.selection else (
        samplers["gmm"].selection if "gmm" in samplers else {})
    if "components" in gmm_selection:
        selection["gmm_components"] = dict(gmm_selection["components"])
    if "chosen_shrinkage" in gmm_selection:
        selection["gmm_shrinkage"] = gmm_selection["chosen_shrinkage"]
        selection["gmm_grid"] = {lam: dict(scores) for lam, scores in gmm_selection["grid"].items()}
    if "covariance_scale" in gmm_selection:  # the mixture was widened after its fit
        selection["gmm_covariance_scale"] = dict(gmm_selection["covariance_scale"])
    return dataclasses.replace(chosen, selection=selection)


# --- the flow sampler -----------------------------------------------------------------------
# The ``flow`` latent sampler: a RealNVP normalizing flow on top of a Gaussian mixture, NumPy only.
#
# A Gaussian mixture on 32-d codes cannot follow their curved shape; a flow can, but a flow from N(0, I)
# over-fits a few thousand codes long before it matches a mixture's held-out likelihood. So the flow
# transforms the fitted mixture (the ``gmm`` sampler, or one Gaussian), in whitened coordinates:
#
#     y = means[k] + scale_tril[k] @ eps            the base mixture's drawing rule (k from u, as for ``gmm``)
#     x0 = L^-1 (y - m)                             whitening by the codes' mean m and Cholesky factor L
#     z = m + L g(x0),   g = c_1 o ... o c_J        affine couplings (Dinh et al. 2017)
#
# with each coupling c_j:
#
#     a = x[:, cond_j],  b = x[:, trans_j]                       (a fixed split of the d axes)
#     h = relu(relu(a W1 + b1) W2 + b2);  [r, t] = h W3 + b3      (r, t: [n, |trans_j|])
#     s = C tanh(r / C)                                          (log-scale, soft-clamped to (-C, C))
#     x[:, trans_j] = b * exp(s) + t                             (x[:, cond_j] = a unchanged)
#
# With g the identity (zero last layers, the fit's start) the sampler is the base mixture itself, so the fit
# (``keras_vae.sampling.flow_fit``, early-stopped on held-out codes) never scores below its base. Drawing is a
# deterministic map of the portable noise (eps, u), as for every sampler. The whitened base is computed once,
# x0 = means_w[k] + tril_w[k] @ eps with means_w = L^-1 (means - m), tril_w = L^-1 scale_tril (lower-triangular),
# so every runtime evaluates the same float32 arrays. Density: log p(z) = log base(m + L x0) - sum_j sum s_j
# with x0 = g^-1(L^-1 (z - m)) (the couplings backwards).
#
# Stored in ``sampler.json`` as ``kind: "flow"``: the base mixture in the usual fields ``weights`` [K],
# ``means`` [K, d], ``scale_tril`` [K, d, d] (readers that only check mixtures accept the file), and a
# ``flow`` object: ``whitening`` {"mean": [d], "scale_tril": [d][d]}, ``clamp`` C and ``couplings``, a list
# of {"cond": [...], "trans": [...], "layers": [{"kernel": A, "bias": A} x 3]} where every array A is
# {"shape": [...], "float32_base64": little-endian float32 bytes}: exact, compact (a JSON list of floats
# takes four times the bytes).
#
# ``error_bound(eps, u)`` bounds |z_a - z_b| between two float32 evaluations of the drawing rule whose noise
# agrees to one float32 ulp (the parity bound of sampler.onnx and the SavedModel signature), by the backward
# error argument of ``keras_vae.export.roundoff``; ``TRANSCENDENTAL_ULPS`` is the error it allows each exp/tanh.

FLOW_KIND = "flow"
ARCHITECTURE = "realnvp-on-mixture-v1"
DEFAULT_CLAMP = 3.0
UNIT_ROUNDOFF = 2.0**-24
# exp and tanh are not correctly rounded in any runtime: NumPy/libm are within 1-2 ulp, onnxruntime's
# vectorised kernels (MLAS) and TensorFlow's Eigen approximations within a few; 16 ulp leaves room.
TRANSCENDENTAL_ULPS = 16
# The parity bound's constants, as keras_vae.export.roundoff (which the sampling layer does not import) uses them.
KERNEL_ROUNDINGS = 4
ELEMENTWISE_ROUNDINGS = 8
OUTPUT_ROUNDINGS = 8
SAMPLE_FACTOR = 2.0
PERTURBATION_SEED = 20240917


@dataclasses.dataclass(frozen=True)
class Coupling:
    """One affine coupling: ``cond`` and ``trans`` index arrays splitting the d axes, and the conditioner's
    three dense layers ``kernels`` ([|cond|, H], [H, H], [H, 2 |trans|]) and ``biases``."""

    cond: np.ndarray
    trans: np.ndarray
    kernels: tuple
    biases: tuple

    def conditioner(self, a: np.ndarray, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """(r, t) of the conditioner on ``a`` in ``dtype``."""
        h = a.astype(dtype)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            h = h @ kernel.astype(dtype) + bias.astype(dtype)
            if i < len(self.kernels) - 1:
                h = np.maximum(h, dtype(0))
        width = len(self.trans)
        return h[:, :width], h[:, width:]


def _encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(array.shape), "float32_base64": base64.b64encode(array.tobytes()).decode("ascii")}


def _decode_array(data: Any, where: str) -> np.ndarray:
    if not isinstance(data, dict) or "shape" not in data or "float32_base64" not in data:
        raise ArtifactError(f"{where} must be {{'shape': [...], 'float32_base64': '...'}}")
    try:
        shape = tuple(int(s) for s in data["shape"])
        raw = base64.b64decode(data["float32_base64"], validate=True)
        array = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        return array.reshape(shape)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where} is corrupt ({exc})") from None


def _coupling_problem(c: Coupling, d: int, index: int) -> str | None:
    where = f"coupling {index}"
    cond, trans = np.asarray(c.cond), np.asarray(c.trans)
    if cond.ndim != 1 or trans.ndim != 1 or len(cond) < 1 or len(trans) < 1:
        return f"{where}: cond and trans must be non-empty index lists"
    if sorted(np.concatenate([cond, trans]).tolist()) != list(range(d)):
        return f"{where}: cond and trans must split the axes 0..{d - 1}"
    if len(c.kernels) != 3 or len(c.biases) != 3:
        return f"{where}: the conditioner needs 3 layers, got {len(c.kernels)}"
    width_in = len(cond)
    for j, (kernel, bias) in enumerate(zip(c.kernels, c.biases)):
        if kernel.ndim != 2 or kernel.shape[0] != width_in or bias.shape != (kernel.shape[1],):
            return f"{where} layer {j}: kernel {kernel.shape} / bias {bias.shape} do not chain from width {width_in}"
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            return f"{where} layer {j} holds NaN or infinite values"
        width_in = kernel.shape[1]
    if width_in != 2 * len(trans):
        return f"{where}: the last layer must output 2 x {len(trans)} values, got {width_in}"
    return None


@dataclasses.dataclass(frozen=True)
class FlowSampler(LatentSampler):
    """RealNVP flow on a base mixture: ``weights``/``means``/``scale_tril`` are the base mixture (code space),
    ``whitening_mean`` [d] and ``whitening_tril`` [d, d] the whitening (m, L), ``couplings`` the affine couplings
    applied to the whitened base draw (first coupling first), ``clamp`` the log-scale bound C."""

    couplings: tuple = ()
    clamp: float = DEFAULT_CLAMP
    whitening_mean: Any = None
    whitening_tril: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        d = self.latent_dim
        if self.kind != FLOW_KIND:
            raise ArtifactError(f"a flow sampler has kind 'flow', got {self.kind!r}")
        if not (isinstance(self.clamp, (int, float)) and math.isfinite(self.clamp) and 0 < self.clamp <= 20):
            raise ArtifactError(f"flow clamp must be in (0, 20], got {self.clamp!r}")
        mean = np.zeros(d) if self.whitening_mean is None else np.asarray(self.whitening_mean, np.float64)
        tril = np.eye(d) if self.whitening_tril is None else np.asarray(self.whitening_tril, np.float64)
        problem = _problem("gaussian", np.ones(1), mean.reshape(1, -1), tril.reshape(1, *tril.shape))
        if problem is None and mean.shape != (d,):
            problem = f"mean has shape {mean.shape}, expected ({d},)"
        if problem:
            raise ArtifactError(f"invalid flow sampler whitening: {problem}")
        for name, value in (("whitening_mean", mean), ("whitening_tril", tril)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        couplings = []
        for i, c in enumerate(self.couplings):
            c = Coupling(np.asarray(c.cond, np.int64), np.asarray(c.trans, np.int64),
                         tuple(np.asarray(k, np.float32) for k in c.kernels),
                         tuple(np.asarray(b, np.float32) for b in c.biases))
            problem = _coupling_problem(c, d, i)
            if problem:
                raise ArtifactError(f"invalid flow sampler: {problem}")
            couplings.append(c)
        object.__setattr__(self, "couplings", tuple(couplings))
        # the base mixture in whitened coordinates (float64; every runtime uses its float32 rounding)
        inverse = np.linalg.inv(tril)
        object.__setattr__(self, "_base_w", LatentSampler(
            "gmm", self.weights, (self.means - mean) @ inverse.T,
            np.tril(np.einsum("ij,kjl->kil", inverse, self.scale_tril))))

    @property
    def base(self) -> LatentSampler:
        """The base mixture in code space (what the flow transforms; the sampler itself when g = identity)."""
        return LatentSampler("gmm", self.weights, self.means, self.scale_tril)

    @property
    def whitened_base(self) -> LatentSampler:
        """The base mixture in whitened coordinates: means_w = L^-1 (means - m), tril_w = L^-1 scale_tril."""
        return self._base_w

    @property
    def num_parameters(self) -> int:
        return int(sum(k.size + b.size for c in self.couplings for k, b in zip(c.kernels, c.biases)))

    # --- drawing -------------------------------------------------------------------------
    def flow_forward(self, x0: np.ndarray, dtype=np.float32) -> np.ndarray:
        """g(x0): the couplings in order, in ``dtype``."""
        x = np.array(x0, dtype=dtype)
        clamp = dtype(self.clamp)
        with np.errstate(over="ignore", invalid="ignore"):
            for c in self.couplings:
                r, t = c.conditioner(x[:, c.cond], dtype)
                s = clamp * np.tanh(r / clamp)
                x[:, c.trans] = x[:, c.trans] * np.exp(s) + t
        return x

    def latents(self, eps: np.ndarray, u: np.ndarray) -> np.ndarray:
        """z = m + L g(means_w[k] + tril_w[k] eps) in float32: the drawing rule."""
        x0 = self._base_w.latents(eps, u)  # checks the noise; the whitened draw is float32
        x = self.flow_forward(x0)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (self.whitening_mean.astype(np.float32) + x @ self.whitening_tril.astype(np.float32).T)
        z = z.astype(np.float32)
        check_latent_range(z)
        return z

    # --- density -------------------------------------------------------------------------
    def inverse(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x0 = g^-1(L^-1 (z - m)), log |det d x0 / d x|) in float64 (x the whitened z)."""
        z = np.asarray(z, np.float64)
        x = np.linalg.solve(self.whitening_tril, (z - self.whitening_mean).T).T
        log_det = np.zeros(len(z))
        for c in reversed(self.couplings):
            r, t = c.conditioner(x[:, c.cond], np.float64)
            s = self.clamp * np.tanh(r / self.clamp)
            x[:, c.trans] = (x[:, c.trans] - t) * np.exp(-s)
            log_det -= np.sum(s, axis=1)
        return x, log_det

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """log p(z), float64 [n]: the base mixture's density at m + L x0 plus the couplings' log-determinant."""
        x0, log_det = self.inverse(z)
        return LatentSampler.log_prob(self, self.whitening_mean + x0 @ self.whitening_tril.T) + log_det

    # --- parity bound --------------------------------------------------------------------
    def error_bound(self, eps: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Bound on |z_a - z_b| (an [n, d] array holding one value) between two float32 evaluations of the
        drawing rule on noise that agrees to one float32 ulp, derived as ``keras_vae.export.roundoff`` derives
        the decoders' (Higham's backward error): each evaluation is the exact map at parameters moved by a
        relative rho, so the two differ by at most the change of z when every parameter moves by 2 rho:

            kernels (fan-in K; tril_w, L: K = d):   rho = sqrt(K) u + 4 u     (summed over both evaluations)
            biases, means_w, m:                     rho = 8 u
            exp, tanh:                              rho = (2 + T) u on their outputs (T = TRANSCENDENTAL_ULPS)
            eps:                                    one float32 ulp (the noise's cross-runtime difference)

        The change is measured in float64 with every value moved by exactly that amount and a random sign:
        ``bound = 2 max |z(moved) - z| + 16 u max |z|`` (u = 2^-24; the roundoff module's SAMPLE_FACTOR and
        OUTPUT_ROUNDINGS). ``u`` picks the components (exact in every runtime); None: u = 0."""
        from keras_vae.sampling.noise import float32_ulp

        unit = UNIT_ROUNDOFF
        rng = np.random.default_rng(PERTURBATION_SEED)

        def moved(array: np.ndarray, rho: float) -> np.ndarray:
            array = np.asarray(array, np.float64)
            return array * (1.0 + rho * np.where(rng.random(array.shape) < 0.5, -1.0, 1.0))

        eps = np.asarray(eps, np.float32)
        k = self._base_w.components(np.zeros(len(eps), np.float32) if u is None else u)
        reference = self._latents64(eps.astype(np.float64), k)
        d = self.latent_dim
        elementwise = 2 * ELEMENTWISE_ROUNDINGS * unit
        square = 2 * (math.sqrt(d) + KERNEL_ROUNDINGS) * unit
        transcendental = 2 * (2 + TRANSCENDENTAL_ULPS) * unit
        couplings = [Coupling(c.cond, c.trans,
                              tuple(moved(w, 2 * (math.sqrt(w.shape[0]) + KERNEL_ROUNDINGS) * unit) for w in c.kernels),
                              tuple(moved(b, elementwise) for b in c.biases)) for c in self.couplings]
        signs = np.where(rng.random(eps.shape) < 0.5, -1.0, 1.0)
        noise = eps.astype(np.float64) + signs * float32_ulp(eps)
        perturbed = self._latents64(
            noise, k, couplings, base_means=moved(self._base_w.means, elementwise),
            base_tril=moved(self._base_w.scale_tril, square), mean=moved(self.whitening_mean, elementwise),
            tril=moved(self.whitening_tril, square), jitter=lambda values: moved(values, transcendental))
        spread = float(np.max(np.abs(perturbed - reference))) if reference.size else 0.0
        value = SAMPLE_FACTOR * spread + 2 * OUTPUT_ROUNDINGS * unit * float(np.max(np.abs(reference), initial=0.0))
        return np.full(reference.shape, value)

    def _latents64(self, eps: np.ndarray, k: np.ndarray, couplings=None, base_means=None, base_tril=None,
                   mean=None, tril=None, jitter=None) -> np.ndarray:
        """The drawing rule in float64 for components ``k``, optionally with other parameters and ``jitter``
        applied to every tanh and exp output (the error bound's moved evaluation)."""
        jitter = jitter or (lambda values: values)
        base_means = self._base_w.means if base_means is None else base_means
        base_tril = self._base_w.scale_tril if base_tril is None else base_tril
        x = base_means[k] + np.einsum("nij,nj->ni", base_tril[k], np.asarray(eps, np.float64))
        for c in couplings if couplings is not None else self.couplings:
            r, t = c.conditioner(x[:, c.cond], np.float64)
            s = self.clamp * jitter(np.tanh(r / self.clamp))
            x[:, c.trans] = x[:, c.trans] * jitter(np.exp(s)) + t
        mean = self.whitening_mean if mean is None else mean
        tril = self.whitening_tril if tril is None else tril
        return mean + x @ tril.T

    # --- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["flow"] = {
            "architecture": ARCHITECTURE, "clamp": float(self.clamp),
            "whitening": {"mean": self.whitening_mean.tolist(), "scale_tril": self.whitening_tril.tolist()},
            "couplings": [{"cond": c.cond.tolist(), "trans": c.trans.tolist(),
                           "layers": [{"kernel": _encode_array(k), "bias": _encode_array(b)}
                                      for k, b in zip(c.kernels, c.biases)]} for c in self.couplings]}
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "sampler") -> FlowSampler:
        base = LatentSampler.from_dict({**data, "kind": "gmm"}, source)  # the base mixture's checks
        flow = data.get("flow")
        if not isinstance(flow, dict) or not isinstance(flow.get("couplings"), list):
            raise ArtifactError(f"{source} is corrupt: a 'flow' sampler needs a 'flow' object with 'couplings'")
        if flow.get("architecture") != ARCHITECTURE:
            raise ArtifactError(f"{source} has flow architecture {flow.get('architecture')!r}; this keras-vae "
                                f"reads {ARCHITECTURE!r}: upgrade keras-vae or re-fit the sampler")
        couplings = []
        try:
            whitening = flow["whitening"]
            mean = np.asarray(whitening["mean"], np.float64)
            tril = np.asarray(whitening["scale_tril"], np.float64)
            for i, entry in enumerate(flow["couplings"]):
                layers = entry["layers"]
                couplings.append(Coupling(
                    np.asarray(entry["cond"], np.int64), np.asarray(entry["trans"], np.int64),
                    tuple(_decode_array(layer["kernel"], f"{source} coupling {i} kernel") for layer in layers),
                    tuple(_decode_array(layer["bias"], f"{source} coupling {i} bias") for layer in layers)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{source} is corrupt: the flow's {exc!r} is missing or malformed") from None
        try:
            return cls(kind=FLOW_KIND, weights=base.weights, means=base.means, scale_tril=base.scale_tril,
                       fitted_on=base.fitted_on, selection=base.selection, couplings=tuple(couplings),
                       clamp=flow.get("clamp", DEFAULT_CLAMP), whitening_mean=mean, whitening_tril=tril)
        except ArtifactError as exc:
            raise ArtifactError(f"{source} is corrupt: {exc}") from None


def make_flow(base: LatentSampler, whitening_mean: np.ndarray, whitening_tril: np.ndarray,
              couplings: Sequence[Coupling], clamp: float = DEFAULT_CLAMP,
              fitted_on: Mapping[str, Any] | None = None, selection: Mapping[str, Any] | None = None) -> FlowSampler:
    """A FlowSampler: ``couplings`` on the mixture ``base`` (a LatentSampler) whitened by (m [d], L [d, d])."""
    return FlowSampler(kind=FLOW_KIND, weights=base.weights, means=base.means, scale_tril=base.scale_tril,
                       fitted_on=dict(fitted_on or {}), selection=dict(selection or {}),
                       couplings=tuple(couplings), clamp=float(clamp),
                       whitening_mean=np.asarray(whitening_mean, np.float64),
                       whitening_tril=np.asarray(whitening_tril, np.float64))
