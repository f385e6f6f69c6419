"""A keras-vae model trained the plain Keras way: NumPy images in, ``model.fit`` with callbacks, .keras out.

    python examples/keras_fit.py                       # 20 epochs on the embedded MNIST digits, ~1 min
    python examples/keras_fit.py --epochs 2 --out /tmp/vae_example

The five lines it grows from (build, compile, fit, sample, save)::

    x = load_embedded_mnist()[0][..., None] / 255.0   # float images (N, 28, 28, 1) in [0, 1]
    vae = keras_vae.VAE(latent_dim=8)                  # any ModelConfig / LossConfig field as a keyword
    vae.compile()                                      # Adam with the model's learning_rate (the preset's 2e-3)
    vae.fit(x, epochs=10, batch_size=100)              # the first fit sets the decoder's data-mean output bias
    vae.sample(16, seed=0); vae.save("vae.keras")

Any float image array (N, H, W, C) in [0, 1] works in place of the digits (``fit`` names the fix for uint8
or a missing channel axis). ``keras_vae.data.make_datasets_from_arrays(images, model=vae, binarize=True)``
gives the presets' tf.data pipeline (dynamic binarization) instead. The run folder that ``keras-vae train``
writes is not involved: this is what to copy into your own training code.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

import keras_vae
from keras_vae.data.embedded import load_embedded_mnist


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--examples", type=int, default=5000, help="how many of the 5,000 digits to use")
    parser.add_argument("--out", default="vae_example", help="folder for the model, logs and checkpoints")
    args = parser.parse_args(argv)
    out = Path(args.out)
    keras.utils.set_random_seed(0)

    images, _ = load_embedded_mnist()  # uint8 (5000, 28, 28), int64 labels
    x = images[: args.examples, ..., None].astype("float32") / 255.0  # (N, 28, 28, 1) in [0, 1]
    # the mnist-mlp preset's model (keras-vae train's default) with these fields changed
    model = keras_vae.VAE(latent_dim=8, hidden_units=(256,), kl_warmup_steps=200, learning_rate=1e-3)

    model.compile()  # Adam(1e-3): the model's own optimizer fields
    history = model.fit(
        x,
        epochs=args.epochs,
        batch_size=100,
        validation_split=0.1,  # the last 10% (the data-mean output bias is set from the other 90%)
        verbose=2,
        callbacks=[
            keras.callbacks.TensorBoard(str(out / "logs")),                      # tensorboard --logdir <out>/logs
            keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_elbo", mode="max",
                                            save_best_only=True),
            keras.callbacks.EarlyStopping(monitor="val_elbo", mode="max", patience=5, restore_best_weights=True),
            keras.callbacks.BackupAndRestore(str(out / "backup")),               # resume after an interruption
            keras.callbacks.TerminateOnNaN(),
        ],
    )
    model.save(out / "model.keras")

    samples = model.sample(16, seed=0)  # [16, 28, 28, 1] in [0, 1], decoded from N(0, I)
    held_out = x[int(len(x) * 0.9):]  # the validation_split part
    log_px = keras_vae.load(out / "model.keras").log_likelihood(held_out[:100], num_samples=100)  # IWAE, K = 100
    summary = {"epochs": len(history.history["loss"]), "val_elbo": history.history["val_elbo"][-1],
               "iwae_log_px": float(np.mean(log_px)), "samples": tuple(samples.shape),
               "model": str(out / "model.keras")}
    print(summary)
    return summary


if __name__ == "__main__":
    main()
