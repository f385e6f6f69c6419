"""Design generation (keras_vae.applications.design) against rejection sampling at equal decoder calls (not a test).

    PYTHONPATH=. python benchmarks/design_search.py [--run runs/vae-default] [--budget 2048] [--n 16]

The trained classic VAE of the default job (read only: it is copied to a temporary folder, where the class
samplers are fitted). Constraints, with the package's digit classifier as scorer: "a digit d" for d = 0..9
(p(d) >= 0.9), and a harder one, "a heavy 7": p(7) >= 0.9 and stroke mass (mean pixel value) in the top 10%
of the training 7s, as the callable score min(log p(7) - log 0.9, log(mass / q90)) >= 0. Each arm spends the
same --budget decoder calls (one call = one latent decoded and scored) and returns --n candidates chosen by
the same farthest-point selection in pixel space:

    rejection, prior    z ~ N(0, I)
    rejection, sampler  z ~ the run's aggregate-posterior sampler (sampler.json)
    subset, sampler     subset simulation with pCN moves in the sampler's noise space
    cem, sampler        the cross-entropy method started from the sampler
    rejection, class    z ~ the class sampler of the target digit (samplers/classes.json)
    subset, class       subset simulation from the class sampler

Reported per arm: accepted latents per decoder call, the accepted fraction of the N returned, the mean
pairwise L2 distance of the returned accepted set (pixels in [0, 1]; digit-classifier features) and of N
random accepted ones (the pool's own spread, no selection), and the nearest-training-image L2 distances
(median), beside the same distance for 500 real validation digits (the yardstick of "new").
Writes design_search.json and design_search.md.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, environment, write_result  # noqa: E402

ARMS = (("rejection", "prior"), ("rejection", "sampler"), ("subset", "sampler"), ("cem", "sampler"),
        ("rejection", "class"), ("subset", "class"))
MIN_PROB = 0.9
MASS_QUANTILE = 0.9


def arm_name(method: str, proposal: str) -> str:
    return f"{method}, {proposal}"


def heavy_seven(classifier, mass_q: float):
    """Callable score of "a 7 with stroke mass in the top 10%": >= 0 iff p(7) >= 0.9 and mass >= mass_q."""
    def score(images: np.ndarray) -> np.ndarray:
        logits = np.asarray(classifier(images), np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        log_p7 = logits[:, 7] - np.log(np.exp(logits).sum(axis=1))
        mass = images.reshape(len(images), -1).mean(axis=1)
        return np.minimum(log_p7 - math.log(MIN_PROB), np.log(np.maximum(mass, 1e-12) / mass_q))
    score.__name__ = "heavy_seven"
    return score


def run_arm(decode, scorer, proposal, reference, yardstick, embed, *, method, budget, n, population, seed):
    from keras_vae.applications.design import CountingDecoder, mean_pairwise_distance, search, select_candidates

    decoder = CountingDecoder(decode)  # a fresh count per arm, one traced decoder for all
    start = time.perf_counter()
    found = search(decoder, scorer, proposal, budget=budget, method=method, population=population, seed=seed,
                   keep_rejected=n)
    seconds = time.perf_counter() - start
    chosen = select_candidates(found, scorer, reference, n=n, embed=embed, **yardstick)
    rng = np.random.default_rng(seed)
    k = min(n, len(found.scores))
    pick = rng.choice(len(found.scores), k, replace=False) if k else np.zeros(0, int)
    s = chosen.summary
    return {"decoder_calls": found.decoder_calls, "accepted_found": int(found.accepted),
            "hit_rate_per_call": found.hit_rate, "accepted_fraction": s["accepted_fraction"],
            "mean_pairwise_l2": s["mean_pairwise_l2"], "mean_pairwise_feature_l2": s.get("mean_pairwise_feature_l2"),
            "random_pool_pairwise_l2": mean_pairwise_distance(found.images[pick]),
            "random_pool_pairwise_feature_l2": mean_pairwise_distance(embed(found.images[pick])) if k > 1 else 0.0,
            "nearest_train_l2_median": s["nearest_train_l2"].get("median"),
            "nearest_train_feature_l2_median": s.get("nearest_train_feature_l2", {}).get("median"),
            "copies": int(np.sum(chosen.closer_than_validation[chosen.accepted] < 0.05)),
            "search_seconds": round(seconds, 2)}


def mean_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def markdown(result: dict) -> str:
    b, n = result["budget"], result["n"]
    lines = ["# Design generation: search against rejection sampling at equal decoder calls", "",
             f"Classic VAE `{result['run']}` (preset {result['preset']}, {result['epochs']} epochs, run sampler: "
             f"{result['sampler_kind']}); scorer: the package's digit classifier. Every arm spends {b} decoder calls "
             f"and returns N = {n} candidates by farthest-point selection in pixel space. Produced by "
             f"`benchmarks/design_search.py` in {result['seconds']:.0f} s ({result['cpu_seconds']:.0f} CPU s) on {result['environment']['cpu']} "
             f"({result['environment']['cpu_count']} cores, shared).", "",
             f"Real validation digits ({result['validation_images']}): nearest-training-image L2 median "
             f"{result['validation_nearest_l2']['median']:.2f} (pixels in [0, 1]), "
             f"{result['validation_nearest_feature_l2']['median']:.2f} in feature space; a candidate counts as a "
             "copy when fewer than 5% of validation digits are that close to the training set.", ""]
    for constraint, block in result["constraints"].items():
        lines += [f"## {constraint}", "",
                  "| arm | accepted per call | accepted of N | pairwise L2 (selected) | pairwise L2 (random N of pool) "
                  "| pairwise feature L2 (selected) | nearest train L2 (median) | nearest train feature L2 | copies |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm, row in block["mean"].items():
            lines.append(f"| {arm} | {row['hit_rate_per_call']:.3f} | {row['accepted_fraction'] * n:.1f} | "
                         f"{row['mean_pairwise_l2']:.2f} | {row['random_pool_pairwise_l2']:.2f} | "
                         f"{row['mean_pairwise_feature_l2']:.2f} | {row['nearest_train_l2_median']:.2f} | "
                         f"{row['nearest_train_feature_l2_median']:.2f} | {row['copies']:.1f} |")
        if len(block["targets"]) > 1:
            lines += ["", "Accepted per call, per digit:", "",
                      "| arm | " + " | ".join(block["targets"]) + " |", "|---|" + "---|" * len(block["targets"])]
            for arm in block["mean"]:
                lines.append(f"| {arm} | " + " | ".join(f"{block['per_target'][t][arm]['hit_rate_per_call']:.3f}"
                                                          for t in block["targets"]) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/vae-default", help="trained run folder (only read)")
    parser.add_argument("--budget", type=int, default=2048)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--digits", default="0123456789")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from keras_vae.applications.design import digit_features, model_decoder, nearest_neighbours, proposal_sampler
    from keras_vae.applications.inputs import open_run_and_source
    from keras_vae.applications.scorers import digit_classifier, make_scorer
    from keras_vae.data.examples import load_examples
    from keras_vae.training.class_samplers import fit_class_samplers

    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run)
        if not (run / "samplers" / "classes.json").is_file():
            fit_class_samplers(run)
        config, model, source, _ = open_run_and_source(run)
        shape = config.model.image_shape

        def images(split: str, limit: int):
            batch = load_examples(source, image_shape=shape, value_range=config.model.value_range, split=split,
                                  max_examples=limit)
            return np.asarray(model.to_unit(batch.images)), batch.labels

        reference, train_labels = images("train", 5000)
        validation, _ = images("validation", 500)
        embed = digit_features(config)
        val_l2 = nearest_neighbours(validation, reference)[1]
        reference_features = embed(reference)
        val_feature_l2 = nearest_neighbours(embed(validation), reference_features)[1]
        yardstick = {"reference_features": reference_features, "validation_l2": val_l2}
        mass_q = float(np.quantile(reference[train_labels == 7].reshape(-1, 784).mean(axis=1), MASS_QUANTILE))
        result = {"environment": environment(), "run": Path(args.run).name, "preset": config.preset,
                  "epochs": config.train.epochs, "sampler_kind": model.latent_sampler.kind, "budget": args.budget,
                  "n": args.n, "population": args.population, "min_prob": MIN_PROB,
                  "validation_images": len(validation), "heavy_seven_mass_q90": mass_q,
                  "validation_nearest_l2": {"median": float(np.median(val_l2)), "mean": float(val_l2.mean())},
                  "validation_nearest_feature_l2": {"median": float(np.median(val_feature_l2))},
                  "constraints": {}}
        classifier = digit_classifier(tuple(shape))
        decode = model_decoder(model).decode
        constraints = {f"a digit d, p(d) >= {MIN_PROB}": [(str(d), make_scorer("digit", shape, target=int(d),
                                                                               min_prob=MIN_PROB))
                                                         for d in args.digits],
                       "a heavy 7: p(7) >= 0.9 and stroke mass in the training 7s' top 10%":
                           [("7", make_scorer(heavy_seven(classifier, mass_q), shape, min_score=0.0))]}
        for title, targets in constraints.items():
            block = {"targets": [t for t, _ in targets], "per_target": {}}
            for t, scorer in targets:
                rows = {}
                for method, proposal in ARMS:
                    sampler = proposal_sampler(run, model, proposal, int(t))
                    rows[arm_name(method, proposal)] = run_arm(
                        decode, scorer, sampler, reference, yardstick, embed, method=method, budget=args.budget,
                        n=args.n, population=args.population, seed=int(t))
                    print(title, t, arm_name(method, proposal), rows[arm_name(method, proposal)], flush=True)
                block["per_target"][t] = rows
            block["mean"] = {arm_name(*a): {key: mean_of([block["per_target"][t][arm_name(*a)] for t in block["targets"]],
                                                         key)
                                            for key in block["per_target"][block["targets"][0]][arm_name(*a)]}
                             for a in ARMS}
            result["constraints"][title] = block
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    text = markdown(result)
    write_result("design_search", result, text, Path(args.out))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
