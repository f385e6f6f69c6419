"""keras-vae train: train a model and write a run folder."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from keras_vae.choices import STRATEGIES

from keras_vae.commands.options import add_config_options, resolve_config
from keras_vae.utils.validation import check_output_dir

QUICK_PRESET = "quick"  # keras_vae.config.presets
CONDITIONAL_CLASSES = 10  # --conditional without model.num_classes: the ten digits (or the ten classes of CIFAR-10, ...)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model and write a run folder",
        description="Train a VAE (default: the classic VAE on the embedded MNIST digits, offline) and write "
                    "model.keras, config.json, metrics.json, figures and TensorBoard logs to the run folder. "
                    "A run under runs/ also points the link runs/latest at its folder. "
                    "Re-running with the same --out resumes an interrupted run (--restart starts it over); "
                    "--force replaces a finished run once the new one has finished.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(parser)
    parser.add_argument("--quick", action="store_true",
                        help="a first run of the classic VAE in about a minute on 2 CPU cores: --preset quick (its "
                             "default model and recipe for 10 epochs, a smaller IWAE estimate); prints where its "
                             "images are (the VAEGAN has no quick run: --model vaegan --epochs N shortens its default)")
    parser.add_argument("--conditional", action="store_true",
                        help="train the class-conditional VAE (Sohn et al. 2015): the label one-hot joins the "
                             f"encoder's and the decoder's input; sets model.num_classes to {CONDITIONAL_CLASSES} "
                             "unless --set model.num_classes=N gives it; without --preset the classic model is "
                             "preset mnist-mlp-conditional (mnist-mlp at latent 8); needs a labelled source "
                             "(docs/conditional.md) (default: unconditional)")
    parser.add_argument("--labelled", default=None, type=int, metavar="N",
                        help="semi-supervised training (model M2 of Kingma et al. 2014, docs/semi-supervised.md): "
                             "only N training images keep their labels (N / 10 per class, chosen by the seed), the "
                             "rest train unlabelled; implies --conditional; metrics.json gets the validation "
                             "classification error (data.labelled; default: 0, off)")
    parser.add_argument("--out", default=None, metavar="DIR", help="run folder (default: runs/<timestamp>)")
    parser.add_argument("--force", action="store_true", help="replace a finished run already in --out")
    parser.add_argument("--restart", action="store_true",
                        help="discard the checkpoint of an interrupted run in --out (e.g. a corrupt one) "
                             "and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (the summary lines stay)")
    parser.add_argument("--strategy", default=None, choices=STRATEGIES,
                        help="tf.distribute strategy (train.strategy): auto (the default) and none train in this "
                             "process; mirrored uses this machine's GPUs; multiworker joins the cluster that "
                             "the TF_CONFIG environment variable describes (only the chief writes --out; "
                             "see docs/distributed.md)")
    parser.add_argument("--peer-timeout", default=argparse.SUPPRESS, type=_peer_timeout, metavar="SECONDS",
                        help="multiworker: how long this task waits for the other tasks of TF_CONFIG to join the "
                             "cluster (it names the ones it waits for every 10 s), then stops with an error; "
                             "'none' or 0 waits without a limit (default: $KERAS_VAE_PEER_TIMEOUT, else 300)")
    return parser


def _peer_timeout(text: str) -> float | None:
    from keras_vae.training.peers import parse_peer_timeout

    try:
        return parse_peer_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if getattr(args, "quick", False):
        if args.preset not in (None, QUICK_PRESET):
            from keras_vae.errors import ConfigError

            raise ConfigError(f"--quick is --preset {QUICK_PRESET}, and --preset is {args.preset!r}: drop one of them")
        args.preset = QUICK_PRESET
    config = resolve_config(args)
    if getattr(args, "labelled", None) is not None:
        from keras_vae.config import merge

        config = merge(config, {"data": {"labelled": args.labelled}})
    if (getattr(args, "conditional", False) or config.data.labelled) and not config.model.num_classes:
        from keras_vae.config import merge

        config = merge(config, {"model": {"num_classes": CONDITIONAL_CLASSES}})
    if config.data.labelled:
        from keras_vae.data.config import check_stratifiable

        check_stratifiable(config.data.labelled, config.model.num_classes)  # before TensorFlow loads
    if config.train.strategy == "multiworker" and not args.out:
        from keras_vae.errors import ConfigError

        raise ConfigError("--strategy multiworker needs --out: pass the same folder to every worker (the chief "
                          "writes the run there, the others resume from its checkpoint)")
    out = check_output_dir(Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    args.run_folder = out  # for the line an interruption prints (keras_vae.cli)
    from keras_vae.training.distributed import make_distribution

    # before the rest of TensorFlow: checks TF_CONFIG and the batch, and starts a multi-worker strategy
    # while the process is still fresh (TensorFlow refuses to configure collectives later)
    distribution = make_distribution(config.train.strategy, config.train.batch_size,
                                     peer_timeout=getattr(args, "peer_timeout", ""))
    from keras_vae.utils.progress import Reporter
    from keras_vae.runs.folder import update_latest_link
    from keras_vae.training.loop import train  # imports TensorFlow

    interactive = sys.stdout.isatty()
    verbose = 0 if args.quiet else (1 if interactive else 2)  # per-step bar on a terminal, a line per epoch in logs
    from keras_vae.training.distributed import worker_loss_reported

    with worker_loss_reported(distribution, out):  # a lost worker: one line saying how to resume
        result = train(config, out, verbose=verbose, force=args.force, restart=args.restart,
                       report=Reporter(bars=not args.quiet))
    if not result.is_chief:
        print(f"worker {distribution.cluster.name} finished; the chief writes the run folder {result.out_dir}")
        return 0
    link = update_latest_link(result.out_dir)
    metrics = result.metrics
    final = metrics.get("final", {})
    print(f"run folder: {result.out_dir}" + (f"  (also {link})" if link else ""))
    from keras_vae.runs.folder import FIGURE_FILES

    images = [name for name in FIGURE_FILES if (result.out_dir / name).is_file()]
    if images:
        print(f"images: {', '.join(str(result.out_dir / name) for name in images)}")
    print(f"data: {metrics.get('data')}")
    if "validation" in final:
        v = final["validation"]
        print(f"validation ELBO: {v['elbo']:.2f} nats   IWAE log p(x) (K={v['iwae_k']}): "
              f"{v['log_likelihood']:.2f} nats   (NLL {v['nll']:.2f})")
    print(f"validation reconstruction MAE: {final.get('reconstruction_mae', float('nan')):.4f}")
    if "classification_error" in final:
        print(f"validation classification error (q(y|x), {metrics.get('num_validation')} images): "
              f"{100 * final['classification_error']:.2f}%")
    resumed = "  (total of the interrupted and the resumed part)" if metrics.get("resumed") else ""
    print(f"time: {metrics.get('train_seconds')} s{resumed}")
    return 0
