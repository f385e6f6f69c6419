"""Design generation: search a trained model's latent space for N images a scorer accepts, spread out.

Every method spends at most ``budget`` decoder calls (one call = one latent decoded and scored) and keeps
every decoded latent whose score reaches the scorer's threshold (the accepted pool):

    rejection  z ~ proposal, ``budget`` draws                                      (the baseline)
    subset     subset simulation (Au & Beck 2001) in the proposal's noise space: P particles
               eps ~ N(0, I), z = proposal.latents(eps, u). Each level keeps the particles whose score
               reaches t = min(threshold, the (1 - p0) quantile of the scores), resamples P of them and
               moves each by one preconditioned Crank-Nicolson step
                   eps' = sqrt(1 - rho^2) eps + rho xi,  xi ~ N(0, I),  kept iff score(z') >= t,
               an exact Metropolis step for N(0, I) restricted to {score >= t} (no density is evaluated;
               rho adapts towards 40% of moves kept). At the last level (t = threshold) the particles
               walk inside the accepted set: the population (the chains' states) follows the proposal
               conditioned on acceptance; the pool of distinct accepted points leans slightly to the
               interior of the set (a move from deep inside is kept more often).
    cem        the cross-entropy method: a diagonal Gaussian in z refitted (smoothing 0.7) to the
               best 20% of each population of P, starting from the proposal's draws

``proposal`` is any LatentSampler (the run's aggregate-posterior sampler, the prior N(0, I), a class
sampler): its drawing rule z = latents(eps, u) is a deterministic map of the noise, so ``subset`` works
for every kind (flow included). N candidates are then chosen from the accepted pool by greedy farthest-
point (max-min) selection: the best-scoring one first, then repeatedly the one farthest (L2) from those
already chosen, in pixel space ([0, 1] units) or latent space; the max-min distance of the result is at
least half the best possible (Gonzalez 1985). When fewer than N are accepted, the best-scoring rejected
latents fill the rest (``accepted`` False). Each candidate is reported with its nearest training image
(L2 in [0, 1] pixel units, and in the digit classifier's feature space when it fits the run).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from keras_vae.choices import DESIGN_METHODS, DIVERSITY_SPACES
from keras_vae.errors import ConfigError, DataError

LEVEL_FRACTION = 0.5  # p0: fraction of particles kept at each intermediate level of ``subset``
TARGET_MOVE_RATE = 0.4  # the fraction of pCN moves ``subset`` steers rho to
ELITE_FRACTION = 0.2  # of each CEM population
CEM_SMOOTHING = 0.7  # new = a * elite fit + (1 - a) * old
MAX_BUDGET = 1_000_000


class CountingDecoder:
    """Latents [B, D] -> images [B, H, W, C] in [0, 1], ``batch_size`` at a time; ``calls`` counts the latents
    decoded (decoder calls), ``batches`` the forward passes."""

    def __init__(self, decode: Callable[[np.ndarray], np.ndarray], batch_size: int = 256):
        self.decode, self.batch_size = decode, int(batch_size)
        self.calls = 0
        self.batches = 0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32)
        chunks = []
        for i in range(0, len(z), self.batch_size):
            chunks.append(np.asarray(self.decode(z[i:i + self.batch_size]), np.float32))
            self.calls += len(chunks[-1])
            self.batches += 1
        return np.concatenate(chunks)


def model_decoder(model, batch_size: int = 256) -> CountingDecoder:
    """A CountingDecoder of a keras-vae model: decode(z) converted to [0, 1]."""
    if getattr(model, "conditional", False):
        raise ConfigError("design generation searches unconditional runs: this run is class-conditional "
                          "(decode p(x|z, y) with 'keras-vae sample RUN --class K' instead)")
    import tensorflow as tf

    decode = tf.function(lambda z: model.to_unit(model.decode(z)), reduce_retracing=True)
    return CountingDecoder(lambda z: decode(tf.constant(z)).numpy(), batch_size)


@dataclass
class Pool:
    """The accepted latents a search decoded (with images and scores) and the best rejected ones. Beyond
    ``capacity`` accepted latents it keeps a uniform random subset of them (reservoir sampling, Vitter's
    algorithm R), so memory stays bounded whatever the budget; ``accepted`` counts them all."""

    keep_rejected: int
    capacity: int = 20_000
    seed: int = 0
    latents: list = field(default_factory=list)
    images: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    rejected: tuple = None  # (latents, images, scores) of the best ``keep_rejected`` rejected
    evaluated: int = 0
    accepted: int = 0

    def add(self, z: np.ndarray, images: np.ndarray, scores: np.ndarray, accepted: np.ndarray) -> None:
        self.evaluated += len(z)
        new = (z[accepted], images[accepted], scores[accepted])
        room = max(0, self.capacity - self.accepted)
        for kept, part in zip((self.latents, self.images, self.scores), new):
            kept.append(part[:room])
        if len(new[0]) > room:
            self._replace(*(part[room:] for part in new), first=self.accepted + room)
        self.accepted += len(new[0])
        out = ~accepted
        parts = [(z[out], images[out], scores[out])] + ([self.rejected] if self.rejected is not None else [])
        rz, ri, rs = (np.concatenate(p) for p in zip(*parts))
        best = np.argsort(-rs, kind="stable")[:self.keep_rejected]
        self.rejected = (rz[best], ri[best], rs[best])

    def _replace(self, z, images, scores, first: int) -> None:
        """Algorithm R for items numbered first, first + 1, ...: item t replaces slot j ~ U{0..t} if j < capacity."""
        if not hasattr(self, "_rng"):
            self._rng = np.random.default_rng(self.seed)
        arrays = self.arrays()
        self.latents, self.images, self.scores = ([a] for a in arrays)
        for i in range(len(z)):
            j = int(self._rng.integers(0, first + i + 1))
            if j < self.capacity:
                arrays[0][j], arrays[1][j], arrays[2][j] = z[i], images[i], scores[i]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate(p) for p in (self.latents, self.images, self.scores))


@dataclass
class SearchResult:
    """The pool of a search: accepted latents/images/scores, the best rejected ones, decoder calls spent."""

    method: str
    latents: np.ndarray
    images: np.ndarray
    scores: np.ndarray
    rejected: tuple
    decoder_calls: int
    history: list
    particles: np.ndarray | None = None  # subset: the last population's latents (a sample of the target)

    accepted: int = 0  # every accepted latent decoded (the pool keeps at most Pool.capacity of them)

    @property
    def hit_rate(self) -> float:
        """Accepted latents per decoder call."""
        return self.accepted / max(self.decoder_calls, 1)


def search(decoder: CountingDecoder, scorer, proposal, *, budget: int, method: str = "subset",
           population: int = 256, seed: int = 0, keep_rejected: int = 64) -> SearchResult:
    """Spend ``budget`` decoder calls looking for latents ``scorer`` accepts (see the module docstring)."""
    if method not in DESIGN_METHODS:
        raise ConfigError(f"unknown design method {method!r}: choose {', '.join(DESIGN_METHODS)}")
    if not 1 <= budget <= MAX_BUDGET:
        raise ConfigError(f"--budget must be in [1, {MAX_BUDGET}] decoder calls, got {budget}")
    if population < 2:
        raise ConfigError(f"--population must be >= 2, got {population}")
    population = min(population, budget)
    pool = Pool(keep_rejected, seed=seed)
    start = decoder.calls

    def evaluate(z: np.ndarray) -> np.ndarray:
        images = decoder(z)
        scores = scorer(images)
        pool.add(z, images, scores, scorer.accepts(scores))
        return scores

    rng = np.random.default_rng(seed)
    history, particles = [], None
    if method == "rejection":
        for i in range(0, budget, population):
            evaluate(proposal.sample(min(population, budget - i), seed=seed + i))
    elif method == "subset":
        history, particles = _subset(evaluate, proposal, budget, population, seed, rng, scorer.threshold)
    else:
        history = _cem(evaluate, proposal, budget, population, seed, rng)
    z, images, scores = pool.arrays()
    return SearchResult(method, z, images, scores, pool.rejected, decoder.calls - start, history, particles,
                        pool.accepted)


def _subset(evaluate, proposal, budget: int, p: int, seed: int, rng, threshold: float) -> list:
    """Subset simulation with pCN moves in noise space; returns ([(level, fraction of moves kept)], the last
    population's latents)."""
    from keras_vae.sampling.samplers import draw_noise

    eps, u = draw_noise(seed, p, proposal.latent_dim)
    eps, u = eps.astype(np.float64), u.astype(np.float32)
    scores = evaluate(proposal.latents(eps, u))
    spent, rho, history = p, 0.5, []
    while spent + p <= budget:
        level = min(threshold, float(np.quantile(scores, 1.0 - LEVEL_FRACTION)))
        survivors = np.flatnonzero(scores >= level)
        pick = survivors[rng.integers(0, len(survivors), p)]
        eps, u, scores = eps[pick], u[pick], scores[pick]
        moved = math.sqrt(1.0 - rho * rho) * eps + rho * rng.standard_normal(eps.shape)
        new = evaluate(proposal.latents(moved, u))
        spent += p
        keep = new >= level
        eps[keep], scores[keep] = moved[keep], new[keep]
        rate = float(keep.mean())
        history.append((level, rate))
        rho = float(np.clip(rho * math.exp(rate - TARGET_MOVE_RATE), 0.05, 1.0))
    if spent < budget:  # the remainder: plain draws, so every method spends exactly ``budget``
        evaluate(proposal.sample(budget - spent, seed=seed + 1))
    return history, proposal.latents(eps, u)


def _cem(evaluate, proposal, budget: int, p: int, seed: int, rng) -> list:
    """Cross-entropy method with a diagonal Gaussian; returns [(elite threshold, std mean)]."""
    z = proposal.sample(p, seed=seed).astype(np.float64)
    spent, history = p, []
    scores = evaluate(z)
    mean, std = z.mean(axis=0), z.std(axis=0)
    while True:
        elite = np.argsort(-scores, kind="stable")[:max(2, int(round(ELITE_FRACTION * len(scores))))]
        mean = CEM_SMOOTHING * z[elite].mean(axis=0) + (1 - CEM_SMOOTHING) * mean
        std = CEM_SMOOTHING * z[elite].std(axis=0) + (1 - CEM_SMOOTHING) * std
        history.append((float(scores[elite[-1]]), float(std.mean())))
        n = min(p, budget - spent)
        if n < 1:
            return history
        z = mean + std * rng.standard_normal((n, len(mean)))
        scores = evaluate(z.astype(np.float32))
        spent += n


def _rows(array) -> np.ndarray:
    """[M, ...] -> float64 [M, F] (F = the product of the other axes; M may be 0)."""
    array = np.asarray(array, np.float64)
    return array.reshape(len(array), int(np.prod(array.shape[1:])))


def farthest_point_selection(points: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """Greedy max-min selection of ``n`` rows of ``points`` [M, F]: ``first``, then repeatedly the row whose
    L2 distance to the nearest chosen row is largest (ties: the lowest index). Returns int64 [min(n, M)]."""
    points = _rows(points)
    m = len(points)
    if m == 0 or n < 1:
        return np.zeros((0,), np.int64)
    chosen = [int(first)]
    nearest = np.linalg.norm(points - points[first], axis=1)
    for _ in range(min(n, m) - 1):
        nearest[chosen] = -1.0
        i = int(np.argmax(nearest))
        chosen.append(i)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[i], axis=1))
    return np.asarray(chosen, np.int64)


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(index [Q], L2 distance [Q]) of each query's nearest reference row (rows flattened, float64): found by
    |q|^2 + |r|^2 - 2 q.r in chunks, the distance to the row found recomputed exactly."""
    q, r = _rows(queries), _rows(reference)
    if not len(r):
        raise DataError("no reference images to measure distances to: the run's training split is empty")
    if q.shape[1] != r.shape[1]:
        raise DataError(f"queries of {q.shape[1]} values and reference images of {r.shape[1]} cannot be compared")
    r2 = np.sum(r * r, axis=1)
    index = np.zeros((len(q),), np.int64)
    for i in range(0, len(q), chunk):
        block = q[i:i + chunk]
        index[i:i + chunk] = np.argmin(r2[None, :] - 2.0 * block @ r.T, axis=1)
    return index, np.linalg.norm(q - r[index], axis=1) if len(q) else np.zeros((0,))


def mean_pairwise_distance(points: np.ndarray) -> float:
    """Mean L2 distance over the n(n-1)/2 pairs of rows (0 for fewer than two rows)."""
    from keras_vae.evaluation.sample_quality import pairwise_distances

    x = _rows(points)
    if len(x) < 2:
        return 0.0
    return float(pairwise_distances(x, x)[np.triu_indices(len(x), 1)].mean())


@dataclass
class Design:
    """N candidates: latents [N, D], images [N, H, W, C] in [0, 1], scores, accepted, nearest training image
    (index and pixel L2; feature L2 when a feature network fits) and the search's numbers (``summary``)."""

    latents: np.ndarray
    images: np.ndarray
    scores: np.ndarray
    accepted: np.ndarray
    nearest_index: np.ndarray
    nearest_l2: np.ndarray
    nearest_images: np.ndarray
    nearest_feature_l2: np.ndarray | None
    closer_than_validation: np.ndarray | None
    summary: dict

    def save(self, out_dir: str | Path, extra: dict | None = None) -> dict[str, Path]:
        """Write design.csv, design.npz, design.json and design.png (candidate beside its nearest training
        image) into ``out_dir``, each atomically; returns their paths."""
        from keras_vae.applications.report import write_csv
        from keras_vae.utils.files import atomic_path, write_json
        from keras_vae.utils.images import save_grid, to_uint8

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {k: out / f"design.{k}" for k in ("csv", "npz", "json", "png")}
        columns = {"rank": np.arange(len(self.scores)), "score": self.scores, "accepted": self.accepted.astype(int),
                   "nearest_train_index": self.nearest_index, "nearest_train_l2": self.nearest_l2}
        if self.nearest_feature_l2 is not None:
            columns["nearest_train_feature_l2"] = self.nearest_feature_l2
        if self.closer_than_validation is not None:
            columns["validation_closer"] = self.closer_than_validation
        write_csv(paths["csv"], columns)
        with atomic_path(paths["npz"]) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, latents=self.latents, images=to_uint8(self.images), scores=self.scores,
                     accepted=self.accepted, nearest_train_index=self.nearest_index, nearest_train_l2=self.nearest_l2,
                     nearest_train_images=to_uint8(self.nearest_images))
        write_json(paths["json"], {**self.summary, **(extra or {})})
        pairs = np.stack([self.images, self.nearest_images], axis=1).reshape(-1, *self.images.shape[1:])
        save_grid(pairs, paths["png"], cols=2 * min(4, len(self.images)), pad=1)
        return paths


def design(decoder: CountingDecoder, scorer, proposal, reference: np.ndarray, *, n: int = 16, budget: int = 4096,
           method: str = "subset", population: int = 256, seed: int = 0, diverse_in: str = "pixel",
           embed: Callable | None = None, validation: np.ndarray | None = None) -> Design:
    """Search (``search``), pick ``n`` diverse candidates and measure how new they are against ``reference``
    (training images in [0, 1]). ``embed`` (images -> features) adds feature distances; ``validation`` images
    give each candidate the fraction of real held-out images that lie closer to the training set."""
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if diverse_in not in DIVERSITY_SPACES:
        raise ConfigError(f"unknown diversity space {diverse_in!r}: choose {', '.join(DIVERSITY_SPACES)}")
    found = search(decoder, scorer, proposal, budget=budget, method=method, population=population, seed=seed,
                   keep_rejected=n)
    return select_candidates(found, scorer, reference, n=n, diverse_in=diverse_in, embed=embed,
                             validation=validation)


def select_candidates(found: SearchResult, scorer, reference: np.ndarray, *, n: int, diverse_in: str = "pixel",
                      embed: Callable | None = None, validation: np.ndarray | None = None,
                      reference_features: np.ndarray | None = None,
                      validation_l2: np.ndarray | None = None) -> Design:
    """``n`` candidates of a search's pool: farthest-point among the accepted, the best rejected after them.
    ``reference_features`` (embed(reference)) and ``validation_l2`` (the validation images' nearest-training
    distances) may be given when several searches share one reference."""
    points = found.images if diverse_in == "pixel" else found.latents
    order = farthest_point_selection(points, n, first=int(np.argmax(found.scores)) if len(found.scores) else 0)
    z, images, scores = found.latents[order], found.images[order], found.scores[order]
    accepted = np.ones(len(order), bool)
    short = n - len(order)
    if short > 0 and found.rejected is not None and len(found.rejected[0]):
        rz, ri, rs = (a[:short] for a in found.rejected)
        z, images, scores = np.concatenate([z, rz]), np.concatenate([images, ri]), np.concatenate([scores, rs])
        accepted = np.concatenate([accepted, np.zeros(len(rs), bool)])
    index, l2 = nearest_neighbours(images, reference)
    feature_l2 = closer = None
    yardstick = {}
    if embed is not None:
        features = embed(reference) if reference_features is None else reference_features
        feature_l2 = nearest_neighbours(embed(images), features)[1]
    if validation_l2 is None and validation is not None and len(validation):
        validation_l2 = nearest_neighbours(validation, reference)[1]
    if validation_l2 is not None:
        val_l2 = np.asarray(validation_l2, np.float64)
        closer = np.searchsorted(np.sort(val_l2), l2, side="left") / len(val_l2)
        yardstick = {"validation_images": int(len(val_l2)),
                     "validation_nearest_train_l2": _quantiles(val_l2)}
    summary = {
        "scorer": scorer.describe, "method": found.method, "decoder_calls": int(found.decoder_calls),
        "accepted_found": int(found.accepted), "hit_rate_per_call": found.hit_rate,
        "candidates": int(len(scores)), "accepted": int(accepted.sum()),
        "accepted_fraction": float(accepted.mean()) if len(accepted) else 0.0,
        "diverse_in": diverse_in,
        "mean_pairwise_l2": mean_pairwise_distance(images[accepted]),
        "nearest_train_l2": _quantiles(l2), **yardstick,
    }
    if feature_l2 is not None:
        summary["mean_pairwise_feature_l2"] = mean_pairwise_distance(embed(images[accepted])) if accepted.sum() > 1 \
            else 0.0
        summary["nearest_train_feature_l2"] = _quantiles(feature_l2)
    return Design(z, images, scores, accepted, index, l2, np.asarray(reference)[index], feature_l2, closer, summary)


def _quantiles(values: np.ndarray) -> dict:
    v = np.asarray(values, np.float64)
    if not len(v):
        return {}
    return {"min": float(v.min()), "median": float(np.median(v)), "mean": float(v.mean()), "max": float(v.max())}


def proposal_sampler(run_dir: str | Path, model, proposal: str = "sampler", target: int | None = None):
    """The LatentSampler a search draws from: the run's sampler (sampler.json, else the prior), the prior
    N(0, I), or the class sampler of ``target`` (samplers/classes.json; never fitted here)."""
    from keras_vae.choices import DESIGN_PROPOSALS
    from keras_vae.sampling.samplers import prior_sampler

    if proposal not in DESIGN_PROPOSALS:
        raise ConfigError(f"unknown proposal {proposal!r}: choose {', '.join(DESIGN_PROPOSALS)}")
    if proposal == "class":
        from keras_vae.sampling.classes import has_class_samplers, load_class_sampler

        if target is None:
            raise ConfigError("--proposal class draws from the class sampler of --target K: pass --target")
        if not has_class_samplers(run_dir):
            raise ConfigError(f"--proposal class: run {str(run_dir)!r} has no class samplers: fit them once with "
                              f"'keras-vae sample {run_dir} --class {target}', or use --proposal sampler")
        return load_class_sampler(run_dir, target, model.latent_dim)
    if proposal == "prior" or model.latent_sampler is None:
        return prior_sampler(model.latent_dim)
    return model.latent_sampler


def design_run(run_dir: str | Path, scorer_spec, *, target: int | None = None, min_prob: float | None = None,
               min_score: float | None = None, proposal: str = "sampler", reference_examples: int = 5000,
               validation_examples: int = 500, batch_size: int = 256, **kwargs) -> Design:
    """``design`` on a run folder: its model and sampler, its training images as the reference, its validation
    images as the yardstick, the digit classifier's features where they fit; ``kwargs`` go to ``design``."""
    from keras_vae.applications.inputs import open_run_and_source
    from keras_vae.applications.scorers import make_scorer
    from keras_vae.data.examples import load_examples

    from keras_vae.runs.folder import load_run_config

    scorer = make_scorer(scorer_spec, load_run_config(run_dir).model.image_shape, target=target, min_prob=min_prob,
                         min_score=min_score, batch_size=batch_size)  # a bad scorer fails before the model loads
    config, model, source, _ = open_run_and_source(run_dir)
    sampler = proposal_sampler(run_dir, model, proposal, target)

    def images(split: str, limit: int) -> np.ndarray:
        batch = load_examples(source, image_shape=config.model.image_shape, value_range=config.model.value_range,
                              split=split, max_examples=limit, batch_size=batch_size)
        return np.asarray(model.to_unit(batch.images)) if len(batch.images) else np.zeros((0, *model.image_shape))

    reference = images("train", reference_examples)
    validation = images("validation", validation_examples) if validation_examples else None
    return design(model_decoder(model, batch_size), scorer, sampler, reference, embed=digit_features(config),
                  validation=validation, **kwargs)


def digit_features(config) -> Callable | None:
    """images [N, 28, 28, 1] in [0, 1] -> the digit classifier's 64 features, when it fits the run's data."""
    from keras_vae.evaluation.features import embed, mnist_feature_net, uses_mnist_feature_net

    if not uses_mnist_feature_net(config):
        return None
    net, _ = mnist_feature_net()
    return lambda images: embed(net, images)
