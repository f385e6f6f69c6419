"""A keras-vae model trained the plain Keras way: NumPy images in, ``model.fit`` with callbacks, .keras out.

    python examples/keras_fit.py                       # 20 epochs on the embedded MNIST digits, ~1 min
    python examples/keras_fit.py --epochs 2 --out /tmp/vae_example

Any uint8 image array (N, H, W) or (N, H, W, C) works in place of the digits. The run folder that
``keras-vae train`` writes is not involved: this is what to copy into your own training code.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

import keras_vae
from keras_vae.config import LossConfig, ModelConfig
from keras_vae.data import make_datasets_from_arrays
from keras_vae.data.embedded import load_embedded_mnist


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--examples", type=int, default=5000, help="how many of the 5,000 digits to use")
    parser.add_argument("--out", default="vae_example", help="folder for the model, logs and checkpoints")
    args = parser.parse_args(argv)
    out = Path(args.out)
    keras.utils.set_random_seed(0)

    images, labels = load_embedded_mnist()  # uint8 (5000, 28, 28), int64 labels
    images, labels = images[: args.examples], labels[: args.examples]
    model = keras_vae.VAE(ModelConfig(latent_dim=8, hidden_units=(256,)), LossConfig(kl_warmup_steps=200), seed=0)
    # image shape and value range come from the model; batches of 100, seed 0, 10% held out for validation
    data = make_datasets_from_arrays(images, labels, model=model, batch_size=100, binarize=True)

    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(
        data.train,
        validation_data=data.validation,
        epochs=args.epochs,
        shuffle=False,  # the tf.data pipeline already shuffles (seeded)
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

    x, _ = data.validation_arrays()
    log_px = keras_vae.load(out / "model.keras").log_likelihood(x[:100], num_samples=100)  # IWAE, K = 100
    summary = {"epochs": len(history.history["loss"]), "val_elbo": history.history["val_elbo"][-1],
               "iwae_log_px": float(np.mean(log_px)), "model": str(out / "model.keras")}
    print(summary)
    return summary


if __name__ == "__main__":
    main()
