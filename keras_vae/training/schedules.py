"""Schedules vs measurements in a run's per-epoch logs.

Some values that ``train_step`` reports are not measurements of the model but settings that change
with the step: the KL weight ``beta`` (warm-up) and the VAEGAN's ``adversarial_weight`` (start step,
adaptive weight), and the optimizers' learning rates. ``split_logs`` files them under "schedules"
(their training-time value; a validation copy such as ``val_beta`` is dropped), the rest stays
under "train" / "validation".
"""
from __future__ import annotations

from typing import Any

SCHEDULE_METRICS = ("beta", "adversarial_weight")
# optimizer attribute -> name of its learning rate in the logs
OPTIMIZERS = {"optimizer": "learning_rate", "g_optimizer": "learning_rate", "d_optimizer": "disc_learning_rate"}


def learning_rates(model) -> dict[str, float]:
    """Current learning rate of each optimizer the model holds ({} before compile)."""
    rates: dict[str, float] = {}
    for attribute, name in OPTIMIZERS.items():
        optimizer = getattr(model, attribute, None)
        lr = getattr(optimizer, "learning_rate", None) if optimizer is not None else None
        if lr is not None and name not in rates:
            try:
                rates[name] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            except (TypeError, ValueError):
                continue
    return rates


def split_logs(logs: dict[str, Any], model=None) -> dict[str, dict[str, float]]:
    """Keras epoch logs -> {"train": ..., "validation": ..., "schedules": ...} (values as floats)."""
    logs = {k: float(v) for k, v in (logs or {}).items()}
    names = tuple(getattr(model, "SCHEDULE_METRICS", SCHEDULE_METRICS))
    train = {k: v for k, v in logs.items() if not k.startswith("val_") and k not in names}
    validation = {k[4:]: v for k, v in logs.items() if k.startswith("val_") and k[4:] not in names}
    schedules = {k: logs[k] for k in names if k in logs}
    if "learning_rate" in train:  # Keras adds the optimizer's learning rate to the logs itself
        schedules["learning_rate"] = train.pop("learning_rate")
    if model is not None:
        schedules.update(learning_rates(model))
    return {"train": train, "validation": validation, "schedules": schedules}
