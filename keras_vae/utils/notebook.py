"""Set-up shared by the walkthrough notebooks: budget, quiet TensorFlow, inline figures.

``KERAS_VAE_NOTEBOOK_BUDGET=tiny`` (what the test suite sets when it executes the notebooks) makes
each notebook train for a few steps only; unset (or ``full``) they run at the budget whose outputs
are stored in notebooks/. TensorFlow prints start-up lines (oneDNN, CUDA probing) straight to the
process's stderr before its logging is configured; ``setup`` imports it with that file descriptor
pointed at /dev/null so notebooks show results, not noise (errors raised later still show).
"""
from __future__ import annotations

import contextlib
import os
import sys

BUDGET_VARIABLE = "KERAS_VAE_NOTEBOOK_BUDGET"
BUDGETS = ("tiny", "full")


def budget() -> str:
    """'tiny' or 'full' from KERAS_VAE_NOTEBOOK_BUDGET (default 'full')."""
    value = os.environ.get(BUDGET_VARIABLE, "full").strip().lower() or "full"
    if value not in BUDGETS:
        raise ValueError(f"{BUDGET_VARIABLE}={value!r}: choose 'tiny' or 'full'")
    return value


@contextlib.contextmanager
def silenced_stderr_fd():
    """Point file descriptor 2 at /dev/null inside the block (C++ log lines), then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def setup(seed: int = 0) -> str:
    """Quiet TensorFlow start-up, seed Keras, keep matplotlib inline; returns the budget ('tiny' or 'full')."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with silenced_stderr_fd():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device probing (CUDA) logs here, inside the silenced block
        import keras
    tf.get_logger().setLevel("ERROR")  # e.g. tf.function retracing notices
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    keras.utils.set_random_seed(seed)
    return budget()
