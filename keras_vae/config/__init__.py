"""Run configuration: frozen dataclasses (``schema``), value coercion and merging (``coercion``),
YAML/JSON files (``files``) and named presets (``presets``).

    RunConfig.from_dict(load_config_file("my_run.yaml"))      # a file, validated once
    merge(get_preset("mnist-28"), {"train": {"epochs": 3}})  # a preset with overrides
"""
from keras_vae.config.coercion import merge, section_from_dict
from keras_vae.config.files import load_config_file
from keras_vae.config.schema import (MAX_IWAE_SAMPLES, OPTIMIZER_FIELDS, LossConfig, ModelConfig, RunConfig,
                                     TrainConfig, check_resnet_geometry)
from keras_vae.data.config import DataConfig

__all__ = ["RunConfig", "ModelConfig", "LossConfig", "TrainConfig", "DataConfig", "merge", "section_from_dict",
           "load_config_file", "check_resnet_geometry", "MAX_IWAE_SAMPLES", "OPTIMIZER_FIELDS"]
