"""What a semi-supervised run (``data.labelled`` = N > 0, model M2) adds to the training loop: the mixed
batches of N stratified labelled and the remaining unlabelled training images, and the model's data counts."""
from __future__ import annotations

from typing import Any

from keras_vae.config import RunConfig
from keras_vae.data import load_source
from keras_vae.data.labelled import SemiSupervisedData, semi_supervised_datasets
from keras_vae.errors import ConfigError


def semi_supervised_data(config: RunConfig) -> SemiSupervisedData | None:
    """The run's mixed batches (keras_vae.data.labelled), or None unless ``config.data.labelled`` > 0."""
    n = config.data.labelled
    if not n:
        return None
    if not config.model.num_classes:
        raise ConfigError("data.labelled > 0 trains the semi-supervised M2, which needs model.num_classes: use "
                          "keras-vae train --labelled N (it sets 10 classes), or --set model.num_classes=K")
    d = config.data
    return semi_supervised_datasets(load_source(d), n, config.model.num_classes, image_shape=config.model.image_shape,
                                    value_range=config.model.value_range, batch_size=config.train.batch_size,
                                    seed=config.train.seed, binarize=d.binarize, flip=d.flip, cache=d.cache,
                                    shuffle_buffer=d.shuffle_buffer)


def model_fields(semi: SemiSupervisedData | None) -> dict[str, Any]:
    """The keywords ``build_model`` passes to SemiSupervisedVAE: N_l and N_u (nothing for other runs)."""
    return {} if semi is None else {"num_labelled": semi.num_labelled, "num_unlabelled": semi.num_unlabelled}
