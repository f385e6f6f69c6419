"""The ablation of Rivera (ICIP 2024), section 2: what each ingredient of "How to Train Your VAE" changes.

Five variants of one preset, trained with identical budgets (steps, batch size, seed, data):

    standard-kl             per-example KL(q(z|x) || N(0, I))          (the classic ELBO)
    mixture-kl              population KL of the batch mixture's moments
    mixture-kl+varreg       + the variance-collapse regularizer
    +patchgan               + the PatchGAN discriminator (the paper's full model)
    +patchgan-bn-reference  the full model with ``bn_mode=reference``: BatchNorm on moving statistics
                            and no dropout, what the reference code does under Keras 3 (the first
                            four use ``bn_mode=batch``); its learning rates are capped (``TRAIN_NOTES``)

Training fits each variant's aggregate-posterior sampler (``keras_vae.sampling.posterior``); each row
then holds, from ``keras_vae.ablation.evaluate`` (the functions of ``keras_vae.evaluation``): sample Frechet
distance, KID, precision/recall and sharpness of samples from that sampler and from the prior N(0, I),
on the in-house feature network, against the validation images; reconstruction MSE/MAE/PSNR/SSIM;
active units, posterior variance and the aggregate posterior's moments. Outputs in ``out_dir``:
ablation.json (every number with its sample size and definition), ablation.md (the table),
ablation.png (every variant's grids), and per variant a run folder with samples-aggregate.png,
samples-prior.png, ablation_samples.npz (the samples the numbers come from) and ablation_row.json.
The report covers every variant in the folder made with the same preset, budget, seed and sample
size, so ``--variants`` runs (one process each, say) into one folder add up to one table. A variant
whose training diverges (``keras_vae.training.loop.TrainingDiverged``) gets a row too: status
"diverged", where (epoch, step, loss term) and why its numbers are absent; the others still run.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from keras_vae.config import RunConfig
from keras_vae.errors import ConfigError, choices
from keras_vae.evaluation.sample_quality import high_frequency_energy  # noqa: F401 - re-exported (tests, users)
from keras_vae.utils.files import atomic_path

_FULL = {"kl": "population", "use_variance_regularizer": True, "use_discriminator": True}
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "standard-kl": {"loss": {"kl": "standard", "use_variance_regularizer": False, "use_discriminator": False},
                    "model": {"bn_mode": "batch"}},
    "mixture-kl": {"loss": {"kl": "population", "use_variance_regularizer": False, "use_discriminator": False},
                   "model": {"bn_mode": "batch"}},
    "mixture-kl+varreg": {"loss": {"kl": "population", "use_variance_regularizer": True, "use_discriminator": False},
                          "model": {"bn_mode": "batch"}},
    "+patchgan": {"loss": _FULL, "model": {"bn_mode": "batch"}},
    "+patchgan-bn-reference": {"loss": _FULL, "model": {"bn_mode": "reference"},
                               "train": {"max_learning_rate": 4e-4}},
}
# Why a variant's "train" override exists (the table's footnote). max_learning_rate caps both Adam rates
# (generator and discriminator): min(preset's rate, cap), so presets already below it are unchanged.
TRAIN_NOTES: dict[str, str] = {
    "+patchgan-bn-reference": (
        "BatchNorm on moving statistics diverges at mnist-28's 4e-3 (the adversarial term is NaN at step 3); over "
        "mnist-28's first epoch (141 steps at the full rate, seeds 0 and 1) 2e-3 and 1e-3 each had a seed where one "
        "step's variance regulariser reached 1e7-2e8, 4e-4 stayed below 1e4 on both (docs/ablation.md)"),
}
DEFAULT_SAMPLES = 1000
DEFAULT_DRAWS = 5  # independent sample sets per variant and sampler: FD of 1000 samples moves by a few points
GRID_SAMPLES = 64
FIGURE_SAMPLES = 36
FIGURE_FILE = "ablation.png"


def folder_name(variant: str) -> str:
    """The run folder of a variant inside the ablation folder ('+' is spelled 'plus-')."""
    return variant.replace("+", "plus-")


def select_variants(names: Sequence[str] | None) -> list[str]:
    """The variants to run, in table order; ``None`` means all. Unknown names raise ConfigError."""
    if not names:
        return list(VARIANTS)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown ablation variant {unknown[0]!r}: choose {choices(VARIANTS)} (comma-separated)")
    return [name for name in VARIANTS if name in names]


def _variant_train(train, override: dict[str, Any]):
    """``train`` with a variant's "train" override: ``max_learning_rate`` caps both Adam learning rates."""
    cap = override.get("max_learning_rate")
    if cap is None:
        return train
    return dataclasses.replace(train, learning_rate=min(train.learning_rate, cap),
                               disc_learning_rate=min(train.disc_learning_rate, cap))


def variant_configs(config: RunConfig, steps: int, seed: int | None = None,
                    names: Sequence[str] | None = None) -> dict[str, RunConfig]:
    """The variants of ``config``: same everything, ``steps`` steps (spread over the preset's epochs
    when they divide it, so a per-epoch learning-rate schedule runs as in the preset; else one
    epoch); only the loss switches, ``model.bn_mode`` and a variant's learning-rate cap differ."""
    seed = config.train.seed if seed is None else int(seed)
    steps, epochs = int(steps), max(int(config.train.epochs), 1)
    epochs = epochs if steps % epochs == 0 else 1
    train = dataclasses.replace(config.train, epochs=epochs, steps_per_epoch=steps // epochs, seed=seed)
    return {name: dataclasses.replace(config, loss=dataclasses.replace(config.loss, **VARIANTS[name]["loss"]),
                                      model=dataclasses.replace(config.model, **VARIANTS[name]["model"]),
                                      train=_variant_train(train, VARIANTS[name].get("train", {})))
            for name in select_variants(names)}


def learning_rates(variant: RunConfig) -> dict[str, float]:
    """The Adam learning rates a variant trains at (generator: the cosine schedule's start, if any)."""
    return {"generator": variant.train.learning_rate, "discriminator": variant.train.disc_learning_rate}


def diverged(row: dict[str, Any]) -> bool:
    """Whether a row is a variant whose training diverged (rows without a status finished)."""
    return row.get("status") == "diverged"


def where_diverged(row: dict[str, Any]) -> str:
    """"step 3 of epoch 1, loss term 'adversarial' became nan" from a diverged row's ``divergence`` (the
    status file keeps NaN/inf as null: then "became non-finite")."""
    d = row.get("divergence") or {}
    if not d:
        return "where unknown"
    step = f"step {d['step']}" if isinstance(d.get("step"), int) else f"the {d.get('step')}"
    what = ("the weights became non-finite" if d.get("term") == "weights" else
            f"loss term {d.get('term')!r} became {d.get('value') or 'non-finite'}")
    return f"{step} of epoch {d.get('epoch')}, {what}"


def diverged_row(variant: RunConfig, status: dict[str, Any], error: str, seconds: float | None) -> dict[str, Any]:
    """The row of a variant whose training diverged: where (``status``: what training recorded, see
    ``_diverged_status``), the training's one-line error, its learning rates, and why the evaluation
    numbers are absent (the variant did not train its budget, so it is not evaluated)."""
    divergence = status.get("divergence")
    divergence = None if divergence is None else {
        **divergence, "value": None if divergence.get("value") is None else str(divergence["value"])}
    row: dict[str, Any] = {"status": "diverged", "divergence": divergence, "error": error,
                           "learning_rate": learning_rates(variant),
                           "training": {"train_seconds": None if seconds is None else round(seconds, 2)}}
    kept = status.get("kept_epoch")
    if kept is not None:
        row["kept_epoch"] = kept
    row["absent"] = (f"training diverged ({where_diverged(row)}) before the budget's end, so the variant is not "
                     "evaluated: no samples, reconstruction or latent numbers"
                     + (f" (its last good checkpoint, after epoch {kept}, is its model.keras)" if kept else ""))
    return row


def _diverged_status(run_dir: Path) -> dict[str, Any]:
    """What the training recorded in the run's status ({"divergence": {epoch, step, term, value}, "kept_epoch"}):
    in the replacement folder when it was replacing a finished run (``train(force=True)``), else in the run;
    {} when neither says 'diverged'."""
    from keras_vae.runs import lifecycle

    for folder in (run_dir / lifecycle.REPLACEMENT_DIR, run_dir):
        status = lifecycle.read_status(folder) or {}
        if status.get("status") == "diverged" and isinstance(status.get("divergence"), dict):
            return status
    return {}


def training_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a variant's metrics.json says about its training: time, discriminator accuracies (last epoch)."""
    diag = (metrics.get("epochs") or [{}])[-1].get("diagnostics") or {}
    return {"train_seconds": metrics.get("train_seconds"),
            "disc_accuracy_real": diag.get("disc_accuracy_real"),
            "disc_accuracy_reconstructed": diag.get("disc_accuracy_reconstructed")}


def value(row: dict[str, Any], section: str, metric: str) -> Any:
    """One number of a row (``row[section][metric]['value']``), None when absent."""
    item = (row.get(section) or {}).get(metric)
    return item.get("value") if isinstance(item, dict) else item


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _fd(row: dict[str, Any], section: str) -> str:
    """FD, with its spread over the draws when there were several ("23.1 ± 1.9")."""
    spread = (row.get(section) or {}).get("frechet_distance_std")
    fd = _fmt(value(row, section, "frechet_distance"), 3)
    return fd if spread is None else f"{fd} ± {_fmt(spread['value'], 2)}"


def _pr(row: dict[str, Any], section: str) -> str:
    return f"{_fmt(value(row, section, 'precision'), 2)} / {_fmt(value(row, section, 'recall'), 2)}"


def _lr(name: str, row: dict[str, Any]) -> str:
    """The generator's Adam rate ("0.001"; "0.004 / 0.001" when the discriminator's differs); a mark when
    the variant's definition caps it (the footnote says why)."""
    rates = row.get("learning_rate") or {}
    g, d = rates.get("generator"), rates.get("discriminator")
    text = _fmt(g, 3) if d in (None, g) else f"{_fmt(g, 3)} / {_fmt(d, 3)}"
    return text + (" *" if name in TRAIN_NOTES else "")


COLUMNS: list[tuple[str, Callable[[str, dict[str, Any]], str]]] = [
    ("variant", lambda name, row: name),
    ("Adam lr", _lr),
    ("sampler", lambda name, row: f"{row['sampler']['kind']} (K={row['sampler']['components']})"),
    ("FD, sampler", lambda name, row: _fd(row, "aggregate_samples")),
    ("prec. / recall, sampler", lambda name, row: _pr(row, "aggregate_samples")),
    ("FD, prior", lambda name, row: _fd(row, "prior_samples")),
    ("prec. / recall, prior", lambda name, row: _pr(row, "prior_samples")),
    ("recon PSNR dB", lambda name, row: _fmt(value(row, "reconstruction", "psnr"))),
    ("recon SSIM", lambda name, row: _fmt(value(row, "reconstruction", "ssim"))),
    ("recon MAE", lambda name, row: _fmt(value(row, "reconstruction", "mae"))),
    ("active units", lambda name, row: f"{value(row, 'latent', 'active_units')}/"
                                       f"{row['latent']['active_units'].get('of')}"),
    ("mean post. var", lambda name, row: _fmt(value(row, "latent", "mean_posterior_variance"))),
    ("aggr. mean rms (prior 0)", lambda name, row: _fmt(value(row, "latent", "aggregate_mean_rms"))),
    ("aggr. var (prior 1)", lambda name, row: _fmt(value(row, "latent", "aggregate_variance_mean"))),
    ("train s", lambda name, row: _fmt((row.get("training") or {}).get("train_seconds"))),
]


_ALWAYS = ("variant", "Adam lr", "train s")  # the columns a diverged row has


def _diverged_cells(name: str, row: dict[str, Any]) -> list[str]:
    """A diverged row: its name, learning rate and time; 'diverged at ...' in the sampler column, '-' elsewhere."""
    cells = []
    for title, cell in COLUMNS:
        if title in _ALWAYS:
            cells.append(cell(name, row))
        elif title == "sampler":
            cells.append(f"**diverged** ({where_diverged(row)})")
        else:
            cells.append("-")
    return cells


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per variant, columns ``COLUMNS``; a diverged variant's numbers are '-'."""
    lines = ["| " + " | ".join(title for title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, row in rows.items():
        cells = _diverged_cells(name, row) if diverged(row) else [cell(name, row) for _, cell in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def footnotes(rows: dict[str, dict[str, Any]]) -> str:
    """The lines under the table: why a variant's learning rate differs from the preset's, and why a
    diverged variant has no numbers ("" when neither applies)."""
    lines = [f"\\* {name}: Adam learning rates (generator and discriminator) at most "
             f"{_fmt(VARIANTS[name]['train']['max_learning_rate'])}: {TRAIN_NOTES[name]}."
             for name in rows if name in TRAIN_NOTES]
    lines += [f"{name} diverged: {row.get('absent')}." for name, row in rows.items() if diverged(row)]
    return "".join(line + "\n\n" for line in lines)


def definitions_text(header: dict[str, Any]) -> str:
    """The Markdown paragraph under the table: what each column is and on how many images."""
    from keras_vae.evaluation.report import DEFINITIONS

    n, n_val, draws = header.get("samples"), header.get("validation_images"), header.get("draws", 1)
    seed = header.get("seed")
    drawn = (f"{n} samples per variant and sampler (seed {seed})" if draws == 1 else
             f"means over {draws} independent draws of {n} samples per variant and sampler (seeds {seed}-"
             f"{seed + draws - 1}; FD ± its standard deviation over the draws)")
    lines = [
        f"Sample columns: {drawn} against {n_val} "
        f"validation images, embedded by {header.get('feature_net')}. 'sampler' is the aggregate-posterior "
        "sampler training chose by held-out code likelihood (sampler.json; gaussian = N(m, C), gmm = mixture "
        "with K components); 'prior' is N(0, I), the paper code's choice.",
        f"- FD: {DEFINITIONS['frechet_distance']}.",
        f"- precision: {DEFINITIONS['precision']}; recall: {DEFINITIONS['recall']}.",
        f"- recon PSNR / SSIM / MAE on {n_val} validation images: {DEFINITIONS['psnr']}; {DEFINITIONS['ssim']}; "
        f"{DEFINITIONS['mae']}.",
        f"- active units: {DEFINITIONS['active_units']}. mean post. var: {DEFINITIONS['mean_posterior_variance']}.",
        f"- aggr. mean rms: {DEFINITIONS['aggregate_mean_rms']}. aggr. var: {DEFINITIONS['aggregate_variance_mean']}.",
        ("- Adam lr: the generator's learning rate (the cosine schedule's start when the preset has one; "
         "generator / discriminator when they differ)."),
        ("- train s: wall seconds of the variant's run (training and its end-of-run phases) from its metrics.json "
         "(of a diverged variant: until it diverged); on a shared machine it measures the load as well."),
        "- KID, sharpness, MSE, KL and discriminator accuracies are in ablation.json.",
    ]
    return "\n".join(lines) + "\n"


def write_report(rows: dict[str, dict[str, Any]], out_dir: str | Path, header: dict[str, Any]) -> tuple[Path, Path]:
    """ablation.json (header + rows) and ablation.md (header + table + definitions) in ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "ablation.json", out_dir / "ablation.md"
    title = (f"# Ablation: {header.get('preset')}, {header.get('steps')} steps, batch {header.get('batch_size')}, "
             f"seed {header.get('seed')}")
    finished = [name for name, row in rows.items() if not diverged(row)]
    grids = [f"![{name}]({folder_name(name)}/samples-aggregate.png)" for name in finished]
    figure = [f"![all variants]({FIGURE_FILE})", ""] if finished else []
    text = "\n".join([title, "", markdown_table(rows), footnotes(rows) + definitions_text(header), *figure,
                      *grids, ""])
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({**header, "variants": rows}, indent=2) + "\n")
    with atomic_path(md_path) as tmp:
        tmp.write_text(text)
    return json_path, md_path


ROW_FILE = "ablation_row.json"
SAME_RUN_KEYS = ("preset", "steps", "batch_size", "seed", "samples", "validation_images", "data")


def save_row(run_dir: str | Path, header: dict[str, Any], row: dict[str, Any]) -> Path:
    """A variant's row beside its run (``run_dir/ablation_row.json``, atomically), with the ablation's header."""
    path = Path(run_dir) / ROW_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"header": header, "row": row}, indent=2) + "\n")
    return path


def collect_rows(out_dir: str | Path, header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variant (finished or diverged) in ``out_dir`` whose row was made with the same preset, budget, seed, samples
    and data as ``header``, in table order. So variants run separately (``--variants``, e.g. in parallel
    processes) into one folder make one table."""
    header = json.loads(json.dumps(header))  # as stored (tuples become lists)
    rows = {}
    for name in VARIANTS:
        path = Path(out_dir) / folder_name(name) / ROW_FILE
        if not path.is_file():
            continue
        stored = json.loads(path.read_text())
        if all(stored["header"].get(key) == header.get(key) for key in SAME_RUN_KEYS):
            rows[name] = stored["row"]
    return rows


def plot_rows(out_dir: str | Path, rows: dict[str, dict[str, Any]], header: dict[str, Any]) -> Path | None:
    """ablation.png from the grids saved in each finished variant's ablation_samples.npz (None: none finished)."""
    import numpy as np

    from keras_vae.ablation.evaluate import SAMPLES_FILE
    from keras_vae.ablation.plots import plot_ablation

    grids = {}
    for name in [name for name, row in rows.items() if not diverged(row)]:
        with np.load(Path(out_dir) / folder_name(name) / SAMPLES_FILE) as saved:
            grids[name] = {key: saved[f"grid_{key}"][:FIGURE_SAMPLES] for key in ("aggregate", "prior")}
    if not grids:
        return None
    columns = [("aggregate", "fitted sampler"), ("prior", "prior N(0, I)")]
    return plot_ablation(grids, Path(out_dir) / FIGURE_FILE, columns,
                         f"{header['preset']}, {header['steps']} steps per variant, seed {header['seed']}")


def run_ablation(config: RunConfig, steps: int, out_dir: str | Path, seed: int | None = None,
                 train_fn: Callable | None = None, verbose: int | str = 0,
                 announce: Callable[[str], None] | None = None, variants: Sequence[str] | None = None,
                 num_samples: int = DEFAULT_SAMPLES, draws: int = DEFAULT_DRAWS) -> dict[str, dict[str, Any]]:
    """Train the variants into ``out_dir/<folder>``, evaluate each, write the report and figure (after each
    variant, over every matching variant in ``out_dir``: see ``collect_rows``); returns the report's rows.
    A variant whose training diverges (TrainingDiverged) is recorded as a diverged row and the next one
    runs; any other error stops the study. ``announce(line)``, if given, hears which variant starts and
    how the finished one scored (or where it diverged)."""
    import time

    from keras_vae.ablation.evaluate import evaluate_variant
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data
    from keras_vae.training.loop import TrainingDiverged
    from keras_vae.training.loop import train as default_train

    train_fn = train_fn or default_train
    say = announce or (lambda line: None)
    out_dir = Path(out_dir)
    configs = variant_configs(config, steps, seed, variants)
    first = next(iter(configs.values()))
    say("validation images and feature network (shared by all variants) ...")
    data = evaluation_data(first)
    feature = feature_net_for_run(first, out_dir, train_if_missing=True)  # cached in out_dir/features if trained
    header = _header(config, steps, first, num_samples, len(data.real_unit), feature[1], draws)
    rows: dict[str, dict[str, Any]] = {}
    for index, (name, variant) in enumerate(configs.items(), start=1):
        run_dir = out_dir / folder_name(name)
        capped = " (this variant's cap: see the table's footnote)" if name in TRAIN_NOTES else ""
        say(f"[{index}/{len(configs)}] {name}: {steps} steps at Adam lr {_fmt(variant.train.learning_rate, 3)}{capped}"
            f" -> {run_dir}")
        started = time.monotonic()
        try:
            result = train_fn(variant, run_dir, verbose=verbose, force=True)
        except TrainingDiverged as exc:
            row = diverged_row(variant, _diverged_status(run_dir), str(exc).splitlines()[0] if str(exc) else "",
                               time.monotonic() - started)
            save_row(run_dir, header, row)
            say(f"[{index}/{len(configs)}] {name}: DIVERGED ({where_diverged(row)}); recorded as a diverged row, "
                "going on with the other variants")
            rows = collect_rows(out_dir, header)
            write_report(rows, out_dir, header)
            plot_rows(out_dir, rows, header)
            continue
        say(f"[{index}/{len(configs)}] {name}: {draws} x {num_samples} samples from its sampler and from the prior, "
            "metrics ...")
        row, _ = evaluate_variant(result.model, variant, run_dir, data, feature, num_samples=num_samples,
                                  seed=variant.train.seed, grid=GRID_SAMPLES, draws=draws)
        row = {"status": "finished", "learning_rate": learning_rates(variant), **row,
               "training": training_summary(result.metrics)}
        save_row(run_dir, header, row)
        say(f"[{index}/{len(configs)}] {name}: done in {row['training']['train_seconds']} s, FD sampler "
            f"{_fd(row, 'aggregate_samples')} / prior {_fd(row, 'prior_samples')}, recon PSNR "
            f"{_fmt(value(row, 'reconstruction', 'psnr'))} dB, active units {value(row, 'latent', 'active_units')}")
        rows = collect_rows(out_dir, header)
        write_report(rows, out_dir, header)
        plot_rows(out_dir, rows, header)
    return rows


def _header(config: RunConfig, steps: int, variant: RunConfig, num_samples: int, num_validation: int,
            feature_info: Any, draws: int = 1) -> dict[str, Any]:
    feature_net = (f"the in-house feature network trained on {feature_info.trained_on} (task "
                   f"{feature_info.task}, validation accuracy {feature_info.validation_accuracy:.3f}; not Inception: "
                   "compare only within this table)") if hasattr(feature_info, "trained_on") else str(feature_info)
    return {"preset": config.preset, "steps": int(steps), "batch_size": variant.train.batch_size,
            "seed": variant.train.seed, "samples": int(num_samples), "draws": int(draws),
            "validation_images": int(num_validation),
            "feature_net": feature_net, "data": dataclasses.asdict(variant.data),
            "variant_switches": VARIANTS}
