"""TF Serving warmup requests: ``PredictionLog`` records in ``<version>/assets.extra/``.

TF Serving replays these when it loads a version, so the first real request does not pay for
graph initialisation. Needs ``tensorflow-serving-api`` (matching TensorFlow's version).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import tensorflow as tf

from keras_vae.export import contract


def serving_api_available() -> str | None:
    """None when tensorflow-serving-api imports, else the reason it does not."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no warmup file
        return f"tensorflow-serving-api is not usable: {type(exc).__name__}: {exc}"
    return None


def write_records(path: str | Path, model_name: str,
                  requests: Iterable[tuple[str, Mapping[str, np.ndarray]]]) -> int:
    """Write one PredictionLog per (signature, {input name: array}) as a TFRecord file at ``path``;
    returns the number of records."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
            count += 1
    return count


def write_warmup_requests(version_dir: str | Path, model_name: str,
                          requests: Iterable[tuple[str, Mapping[str, np.ndarray]]]) -> tuple[Path, int]:
    """Write the version's warmup file (``contract.WARMUP_FILE``); returns (path, number of records)."""
    path = Path(version_dir) / contract.WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, write_records(path, model_name, requests)


def read_predict_requests(path: str | Path) -> list:
    """The ``PredictRequest`` protos of every record of a warmup file."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: a record is a {log.WhichOneof('log_type')}, not a predict_log")
        requests.append(log.predict_log.request)
    return requests


def read_warmup_requests(path: str | Path) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """(model name, signature, {input name: array}) of every record in a warmup file."""
    return [(r.model_spec.name, r.model_spec.signature_name, {k: tf.make_ndarray(v) for k, v in r.inputs.items()})
            for r in read_predict_requests(path)]
