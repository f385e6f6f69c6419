"""Options shared by the subcommands that build a RunConfig (train, ablate): preset, file, flags."""
from __future__ import annotations

import argparse
from typing import Any

from keras_vae.choices import PRECISIONS

from keras_vae.config import RunConfig, load_config_file, merge
from keras_vae.errors import ConfigError, choices
from keras_vae.config.presets import DEFAULT_CONDITIONAL_PRESET, DEFAULT_PRESET, get_preset, preset_names
from keras_vae.utils.validation import positive_float, seed_type, short

# flag -> (section, field): the common overrides; any other field via --set section.field=value
FLAG_FIELDS = {
    "data": ("data", "source"),
    "data_dir": ("data", "data_dir"),
    "epochs": ("train", "epochs"),
    "steps_per_epoch": ("train", "steps_per_epoch"),
    "batch_size": ("train", "batch_size"),
    "learning_rate": ("train", "learning_rate"),
    "latent_dim": ("model", "latent_dim"),
    "seed": ("train", "seed"),
    "precision": ("train", "precision"),
    "jit_compile": ("train", "jit_compile"),
    "iwae_samples": ("train", "iwae_samples"),
    "strategy": ("train", "strategy"),  # the flag itself: keras_vae.commands.train
}


def preset_default(section: str, name: str) -> str:
    """'(default: from the preset; mnist-mlp: 150, mnist-28: 5)': a field's value in each model kind's default
    preset, for the help of a flag whose default is the preset's."""
    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return f"{value:g}" if isinstance(value, float) else str(value)

    values = [f"{preset}: {shown(getattr(getattr(get_preset(preset), section), name))}"
              for preset in DEFAULT_PRESET.values()]
    return f"(default: from the preset; {', '.join(values)})"


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add --model, --preset, --config, --set and the common override flags to ``parser``."""
    group = parser.add_argument_group("configuration (preset, then --config file, then flags)")
    group.add_argument("--model", choices=sorted(DEFAULT_PRESET), default=None,
                       help="model kind; picks its default preset (vae: %s, vaegan: %s) when --preset is not given "
                            "(default: vae, or the kind of --preset)" % (DEFAULT_PRESET["vae"], DEFAULT_PRESET["vaegan"]))
    group.add_argument("--preset", default=None, metavar="NAME",
                       help="named configuration: " + ", ".join(preset_names())
                            + " (default: the --config file's preset, else --model's default preset)")
    group.add_argument("--config", default=None, metavar="FILE",
                       help="YAML or JSON file with sections model/loss/data/train (and optionally preset)")
    group.add_argument("--data", default=None, metavar="SPEC",
                       help="data source: 'embedded' (MNIST digits shipped offline), 'tfds:NAME', 'folder:PATH' or "
                            "'npy:FILE' (.npy/.npz) " + preset_default("data", "source"))
    group.add_argument("--data-dir", default=None, metavar="DIR",
                       help="tensorflow-datasets data_dir (default: tensorflow-datasets' own, ~/tensorflow_datasets)")
    group.add_argument("--epochs", type=int, default=None, metavar="N",
                       help="training epochs " + preset_default("train", "epochs"))
    group.add_argument("--steps-per-epoch", type=int, default=None, metavar="N",
                       help="batches per epoch (default: one pass over the training split)")
    group.add_argument("--batch-size", type=int, default=None, metavar="N",
                       help="examples per batch " + preset_default("train", "batch_size"))
    group.add_argument("--learning-rate", type=positive_float, default=None, metavar="LR",
                       help="VAE optimizer learning rate " + preset_default("train", "learning_rate"))
    group.add_argument("--latent-dim", type=int, default=None, metavar="N",
                       help="latent size " + preset_default("model", "latent_dim"))
    group.add_argument("--seed", type=seed_type, default=None,
                       help="random seed (data order, init, noise), 0 .. 2^32-1 " + preset_default("train", "seed"))
    group.add_argument("--precision", default=None, choices=PRECISIONS,
                       help="Keras dtype policy; auto: mixed_bfloat16 where the CPU (avx512_bf16/amx_bf16) or every "
                            "GPU (compute capability >= 8.0) has native bfloat16, else float32 "
                            + preset_default("train", "precision").replace(")", "; the paper presets: auto)"))
    group.add_argument("--jit-compile", default=None, action=argparse.BooleanOptionalAction,
                       help="compile train steps with XLA (measured slower on CPU here) "
                            + preset_default("train", "jit_compile"))
    group.add_argument("--iwae-samples", type=int, default=None, metavar="K",
                       help="importance samples for the final log-likelihood estimate "
                            + preset_default("train", "iwae_samples"))
    group.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override any configuration field, e.g. --set loss.beta=0.5 (repeatable)")


def _parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {short(item)} must look like SECTION.FIELD=VALUE, e.g. loss.beta=0.5")
        overrides.setdefault(section, {})[name] = value
    return overrides


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Preset (from --preset, the config file, or --model's default: its class-conditional one with --conditional
    and no --labelled) + config file + flags, validated."""
    file_values = load_config_file(args.config) if args.config else {}
    conditional = getattr(args, "conditional", False) and not getattr(args, "labelled", None)
    defaults = DEFAULT_CONDITIONAL_PRESET if conditional else DEFAULT_PRESET
    preset = args.preset or file_values.get("preset") or defaults[args.model or "vae"]
    config = get_preset(preset)
    if conditional and preset == "quick":  # --quick --conditional: the class-conditional default's latent size
        config = merge(config, {"model": {"latent_dim": get_preset(DEFAULT_CONDITIONAL_PRESET["vae"]).model.latent_dim}})
    if args.model and config.model.kind != args.model:
        if preset == "quick" and getattr(args, "quick", False):
            raise ConfigError(f"--quick is the classic VAE's short run and has no {args.model!r} version: drop "
                              f"--quick for the default {args.model!r} job (preset {DEFAULT_PRESET[args.model]}), "
                              "or add --epochs N to shorten it")
        kind_presets = [name for name in preset_names() if get_preset(name).model.kind == args.model]
        raise ConfigError(f"preset {preset!r} is a {config.model.kind!r} model but --model is {args.model!r}: "
                          f"drop --model or pick a {args.model!r} preset: {choices(kind_presets)}")
    config = merge(config, file_values)
    flags: dict[str, dict[str, Any]] = {}
    for flag, (section, name) in FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            flags.setdefault(section, {})[name] = value
    config = merge(config, flags)
    return merge(config, _parse_set(args.set))
