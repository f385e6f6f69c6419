"""keras-vae design: N diverse images a scorer accepts, searched in a run's latent space, each beside its nearest
training image."""
from __future__ import annotations

import argparse

from keras_vae.choices import DESIGN_METHODS, DESIGN_PROPOSALS, DIVERSITY_SPACES
from keras_vae.utils.validation import seed_type


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "design", help="N diverse images a scorer accepts (generation under constraints) -> DIR",
        description="Search the run's latent space for images a scorer accepts (--scorer: 'digit', the package's "
                    "MNIST digit classifier for 28x28x1 runs; FILE.onnx or FILE.keras, a classifier or scorer of "
                    "[B, H, W, C] images in [0, 1]; or module:function, a Python callable; class scores [B, K] with "
                    "--target K and --min-prob P, one score per image [B] with --min-score S). --method subset "
                    "(subset simulation with pCN moves: draws of the proposal conditioned on acceptance), cem (the "
                    "cross-entropy method) or rejection spends --budget decoder calls; --n candidates are then "
                    "chosen from the accepted ones by greedy farthest-point selection. Each candidate is reported "
                    "with its nearest training image (L2 distance in [0, 1] pixels; also in the digit classifier's "
                    "feature space when it fits) and the fraction of real validation images that lie closer to the "
                    "training set (0: closer than any real held-out image, likely a copy). Writes DIR/design.csv, "
                    "DIR/design.npz (latents, uint8 images, nearest training images), DIR/design.json (summary) and "
                    "DIR/design.png (each candidate beside its nearest training image).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by 'keras-vae train'")
    group = parser.add_argument_group("the constraint")
    group.add_argument("--scorer", default="digit", metavar="SCORER",
                       help="digit, FILE.onnx, FILE.keras or module:function (a module on PYTHONPATH or a .py file)")
    group.add_argument("--target", type=int, default=None, metavar="K", help="class to generate (class scorers)")
    group.add_argument("--min-prob", type=float, default=None, metavar="P",
                       help="accept images whose class probability p(K) >= P (default with --target: 0.9)")
    group.add_argument("--min-score", type=float, default=None, metavar="S",
                       help="accept images whose score >= S (scorers that return one score per image)")
    group = parser.add_argument_group("the search")
    group.add_argument("--n", type=int, default=16, help="candidates to return")
    group.add_argument("--budget", type=int, default=4096, metavar="CALLS", help="decoder calls the search may spend")
    group.add_argument("--method", default="subset", choices=DESIGN_METHODS, help="search method")
    group.add_argument("--population", type=int, default=256, metavar="P", help="particles per step (subset, cem)")
    group.add_argument("--proposal", default="sampler", choices=DESIGN_PROPOSALS,
                       help="latents drawn from the run's sampler (sampler.json, else N(0, I)), the prior N(0, I), "
                            "or the class sampler of --target (samplers/classes.json: fit it once with "
                            "'keras-vae sample RUN --class K')")
    group.add_argument("--diverse-in", default="pixel", choices=DIVERSITY_SPACES,
                       help="space of the farthest-point selection")
    group.add_argument("--seed", type=seed_type, default=0, help="seed of the search")
    group = parser.add_argument_group("novelty")
    group.add_argument("--reference-examples", type=int, default=5000, metavar="N",
                       help="training images the nearest neighbour is searched among")
    group.add_argument("--validation-examples", type=int, default=500, metavar="N",
                       help="real validation images whose nearest-training distances are the yardstick of 'new'")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="latents per decoder call")
    parser.add_argument("--out", default="design", metavar="DIR", help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.commands.app_options import check_positive
    from keras_vae.utils.files import resolve_folder
    from keras_vae.utils.validation import check_output_dir

    check_positive(args, "n", "budget", "population", "reference_examples", "validation_examples", "batch_size")
    check_output_dir(args.out)
    args.run_dir = resolve_folder(args.run_dir)
    from keras_vae.applications.design import design_run

    result = design_run(args.run_dir, args.scorer, target=args.target, min_prob=args.min_prob,
                        min_score=args.min_score, n=args.n, budget=args.budget, method=args.method,
                        population=args.population, proposal=args.proposal, diverse_in=args.diverse_in,
                        seed=args.seed, reference_examples=args.reference_examples,
                        validation_examples=args.validation_examples, batch_size=args.batch_size)
    paths = result.save(args.out, extra={"run_dir": str(args.run_dir), "seed": args.seed,
                                         "proposal": args.proposal, "budget": args.budget})
    s = result.summary
    novelty = f"nearest training image L2 median {s['nearest_train_l2'].get('median', float('nan')):.2f}"
    if "validation_nearest_train_l2" in s:
        novelty += f" (real validation images: {s['validation_nearest_train_l2']['median']:.2f})"
    print(f"design: {s['accepted']} of {s['candidates']} candidates accept {s['scorer']} ({s['method']}, "
          f"{s['decoder_calls']} decoder calls, {s['accepted_found']} accepted, {s['hit_rate_per_call']:.3f} per call); "
          f"mean pairwise L2 {s['mean_pairwise_l2']:.2f}; {novelty}; wrote {', '.join(str(p) for p in paths.values())}")
    return 0
