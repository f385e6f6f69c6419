"""The default VAEGAN with and without the moving average of its weights, on one training trajectory.

    python benchmarks/vaegan_weight_averaging.py OUT_DIR [--seed S] [--momenta 0.99,0.995]

Trains preset mnist-28 with ``train.ema_momentum=0`` (``keras_vae.training.loop.train``: the whole default
job, into OUT_DIR/last) while a callback keeps the moving average of the encoder's and decoder's weights for
each momentum (w_avg = w_1, then m w_avg + (1 - m) w_t, in float64; the average does not change what training
does, so one trajectory serves every momentum). Then, for each momentum, the averaged weights go through what
the end of a run does (``finish_training``: BatchNorm refresh, mixture search, covariance scale; model.keras;
``end_of_training``: 5 draws of 1000 samples against the validation digits) into OUT_DIR/ema-M. Prints one
JSON line per variant: FD mean and spread, precision, recall, intensity, reconstruction PSNR, the chosen
mixture and scale. Those steps see the training set in another order than the run's own end of training did,
and the order alone moves FD by about 2 points: compare weights with ``--after-fit`` (below), not these lines. Training is deterministic on one machine, so OUT_DIR/last with seed 0 has the weights of
``keras-vae train --model vaegan --set train.ema_momentum=0``.

    python benchmarks/vaegan_weight_averaging.py OUT_DIR --after-fit RUN/model.keras [...] [--orders 0,1,2]
        [--recompute-examples N]

The end of training alone, on given weights: for each model.keras (its run's config.json beside it) and each
ORDER, the steps after fit (BatchNorm refresh from 2048 training images, the codes, the mixture search, the
covariance scale chosen on the first 500 codes held out, the 5-draw evaluation) with the training set shuffled
by seed ORDER instead of the run's. Those steps depend on the order (which images refresh BatchNorm, EM's
starting points, which 500 are held out), so comparing two weights needs them under the same orders.
``--recompute-examples N`` refreshes BatchNorm from the first N training images of each order instead
(N >= the training set's size: one pass over all of it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def _summary(name: str, metrics: dict) -> dict:
    q = metrics["evaluation"]["sections"]["sample_quality"]
    r = metrics["evaluation"]["sections"]["reconstruction"]
    s = metrics["final"]["sampler"]
    return {"variant": name, "fd": round(q["frechet_distance"]["value"], 2),
            "fd_std": round(q["frechet_distance_std"]["value"], 2), "precision": round(q["precision"]["value"], 3),
            "recall": round(q["recall"]["value"], 3), "intensity": round(q["intensity"]["value"], 3),
            "psnr": round(r["psnr"]["value"], 2), "ssim": round(r["ssim"]["value"], 3),
            "components": s["components"], "shrinkage": s.get("gmm_shrinkage"),
            "scale": s["gmm_covariance_scale"]["scale"],
            "held_out_ll": round(s["candidates"]["gmm"], 2)}


def main(out_dir: Path, seed: int, momenta: list[float]) -> None:
    import keras

    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.data import make_datasets
    from keras_vae.evaluation.report import end_of_training
    from keras_vae.runs.folder import load_model
    from keras_vae.training.after_fit import finish_training
    from keras_vae.training.loop import train
    from keras_vae.utils.files import write_json

    class Averages(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.averages = {m: None for m in momenta}

        def on_train_batch_end(self, batch, logs=None):
            weights = [np.array(v, np.float64) for v in self.model.vae_variables]
            for m, average in self.averages.items():
                self.averages[m] = weights if average is None else [
                    m * a + (1 - m) * w for a, w in zip(average, weights)]

    config = merge(get_preset("mnist-28"), {"train": {"seed": seed, "ema_momentum": 0.0}})
    averages = Averages()
    start = time.process_time()
    result = train(config, out_dir / "last", verbose=0, callbacks=[averages])
    print(json.dumps({**_summary("last step's weights", result.metrics),
                      "job_cpu_s": round(time.process_time() - start, 1)}), flush=True)

    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    val_images, _ = data.validation_arrays()
    for m, average in averages.averages.items():
        variant = merge(config, {"train": {"ema_momentum": m}})
        run = out_dir / f"ema-{m:g}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        write_json(run / "config.json", variant.to_dict())
        model = load_model(out_dir / "last" / "model.keras")
        for variable, value in zip(model.vae_variables, average, strict=True):
            variable.assign(value.astype(np.float32))
        start = time.process_time()
        final = {**finish_training(model, data.train, val_images, run, seed=config.train.seed)}
        model.save(run / "model.keras")
        metrics = {"final": final, "evaluation": end_of_training(model, variant, run, step=config.train.epochs)}
        write_json(run / "metrics.json", metrics)
        print(json.dumps({**_summary(f"moving average, momentum {m:g}", metrics),
                          "after_fit_cpu_s": round(time.process_time() - start, 1)}), flush=True)


def after_fit(out_dir: Path, models: list[Path], orders: list[int], recompute_examples: int | None = None) -> None:
    from keras_vae.config import RunConfig
    from keras_vae.data import make_datasets
    from keras_vae.evaluation.report import end_of_training
    from keras_vae.runs.folder import load_model
    from keras_vae.training import after_fit as after_fit_module
    from keras_vae.training.after_fit import finish_training
    from keras_vae.utils.files import read_json, write_json

    if recompute_examples is not None:  # BatchNorm refresh from this many training images instead of the default
        after_fit_module.RECOMPUTE_EXAMPLES = recompute_examples
    for index, path in enumerate(models):
        config = RunConfig.from_dict(read_json(path.parent / "config.json"))
        for order in orders:
            data = make_datasets(config.data, image_shape=config.model.image_shape,
                                 value_range=config.model.value_range, batch_size=config.train.batch_size, seed=order)
            val_images, _ = data.validation_arrays()
            model = load_model(path)
            run = out_dir / f"{index}-{path.parent.name}-order{order}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            write_json(run / "config.json", config.to_dict())
            start = time.process_time()
            final = finish_training(model, data.train, val_images, run, seed=config.train.seed)
            metrics = {"final": final, "evaluation": end_of_training(model, config, run, step=config.train.epochs)}
            write_json(run / "metrics.json", metrics)
            print(json.dumps({**_summary(str(path), metrics), "order": order,
                              "after_fit_cpu_s": round(time.process_time() - start, 1)}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--momenta", default="0.99,0.995")
    parser.add_argument("--after-fit", nargs="+", type=Path, metavar="MODEL", help="only the end of training")
    parser.add_argument("--orders", default="0,1,2")
    parser.add_argument("--recompute-examples", type=int, default=None,
                        help="with --after-fit: training images that refresh BatchNorm (default: finish_training's)")
    args = parser.parse_args()
    if args.after_fit:
        after_fit(args.out_dir, args.after_fit, [int(k) for k in args.orders.split(",")], args.recompute_examples)
    else:
        main(args.out_dir, args.seed, [float(m) for m in args.momenta.split(",")])
