"""Lean search harness for the default job's recipe: fit + IWAE NLL (K=1000, 500 val digits), no figures.

Trains the mnist-mlp preset plus JSON overrides with the job's own pieces (data pipeline, model,
output-bias initialisation, recipe callbacks) but without its per-epoch diagnostics, TensorBoard images
and figures, which do not touch the weights (the previous default reproduced the job's NLL exactly):

    THREADS=1 PYTHONPATH=. python benchmarks/classic_search.py NAME SEED '{"model": {...}, "train": {...}}'

Prints one JSON line: NLL and ELBO on the validation digits, kept epoch, validation ELBO at some
epochs, user+sys CPU seconds of fit and of the evaluation. Rows of benchmarks/results/default_vae_recipe.jsonl.
"""
import json
import os
import resource
import sys
import time


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    name, seed, overrides = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    import tensorflow as tf
    threads = int(os.environ.get("THREADS", "1"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras_vae.config import merge
    from keras_vae.data import make_datasets
    from keras_vae.evaluation.metrics import likelihood_evaluation
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset
    from keras_vae.training.recipe import recipe_callbacks

    extra = overrides.pop("_extra", {})  # recorded only (run D used an early in-harness bias initialisation)
    config = merge(get_preset("mnist-mlp"), overrides)
    config = merge(config, {"train": {"seed": seed}})
    keras.utils.set_random_seed(seed)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=seed)
    val_images, _ = data.validation_arrays()
    model = build_model(config)
    model.compile_for_training(config.train)
    from keras_vae.models.output_bias import initialize_output_bias
    initialize_output_bias(model, data.train)  # as training.train does (a no-op unless model.output_bias)
    record: dict = {}
    c0, w0 = cpu(), time.time()
    hist = model.fit(data.train, validation_data=data.validation, epochs=config.train.epochs, verbose=0,
                     callbacks=recipe_callbacks(config, record))
    c1 = cpu()
    ev = likelihood_evaluation(model, val_images[:500], num_samples=1000, seed=seed)
    c2 = cpu()
    velbo = hist.history.get("val_elbo", [])
    print(json.dumps({"name": name, "seed": seed, "nll": round(ev["nll"], 3), "elbo": round(ev["elbo"], 3),
                      "kept": record.get("kept_epoch"), "fit_cpu": round(c1 - c0, 1), "eval_cpu": round(c2 - c1, 1),
                      "fit_wall": round(time.time() - w0, 1),
                      "val_elbo_at": {e: round(velbo[e - 1], 2) for e in (25, 50, 75, 100, 125, 150, 200)
                                      if e <= len(velbo)},
                      "overrides": overrides, "extra": extra}), flush=True)


if __name__ == "__main__":
    main()
