"""One SGD step of the tiny VAEGAN preset, under MultiWorkerMirroredStrategy (a worker of TF_CONFIG's cluster)
or in one process, with the weights before and after it saved to an .npz (test_multiworker's parity test).

    python -m tests.support.sgd_step worker|single OUT.npz OVERRIDES_JSON LEARNING_RATE

prints one JSON line (variable paths, replicas, loss, both optimizers' iterations); ``one_step`` is the same
in the calling process (the single-process reference runs in the test process: one TensorFlow start less).
"""
from __future__ import annotations

import json
import sys


def one_step(mode: str, out: str, overrides: str, lr: float) -> dict:
    """Seeded init, then one ``fit`` step with SGD(lr) for both optimizers on the first batch of the real
    pipeline; mode 'worker' joins the TF_CONFIG cluster (it must be the process's first strategy)."""
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.training.distributed import make_distribution

    config = merge(get_preset("tiny"), json.loads(overrides))
    dist = make_distribution("multiworker" if mode == "worker" else "none", config.train.batch_size)
    import keras
    import numpy as np

    from keras_vae.data import make_datasets
    from keras_vae.models import build_model

    keras.utils.set_random_seed(0)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=0)
    with dist.scope():
        model = build_model(config)
        model.compile(g_optimizer=keras.optimizers.SGD(lr), d_optimizer=keras.optimizers.SGD(lr))
    names = [v.path for v in model.weights]
    before = [np.array(v) for v in model.weights]
    history = model.fit(dist.prepare(data.train.repeat()), epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    after = [np.array(v) for v in model.weights]
    np.savez(out, **{f"before_{i}": b for i, b in enumerate(before)}, **{f"after_{i}": a for i, a in enumerate(after)})
    return {"names": names, "replicas": dist.replicas, "loss": history.history["loss"][-1],
            "g_iterations": int(model.g_optimizer.iterations.numpy()),
            "d_iterations": int(model.d_optimizer.iterations.numpy())}


if __name__ == "__main__":
    mode, out, overrides, lr = sys.argv[1:5]
    print(json.dumps(one_step(mode, out, overrides, float(lr))))
