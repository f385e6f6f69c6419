"""``keras_vae.load(path)``: one entry point for everything keras-vae writes.

    run folder (RUN_DIR/model.keras + config.json, e.g. runs/latest)  -> the trained keras.Model
    a .keras file                                                      -> the keras.Model
    an export folder (decoder.onnx, export.json) or a decoder .onnx    -> serving.OnnxDecoder
    an encoder .onnx file                                              -> serving.OnnxEncoder

Run folders and .keras files import TensorFlow; ONNX files use onnxruntime only. For the run's
configuration too, use ``keras_vae.runs.folder.load_run(run_dir) -> (RunConfig, model)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keras_vae.errors import ArtifactError

DECODER_ONNX = "decoder.onnx"  # = keras_vae.export.contract.DECODER_ONNX (not imported: keep this module light)
ENCODER_ONNX = "encoder.onnx"
EXPORT_JSON = "export.json"


def _onnx_role(path: Path) -> str:
    """'encoder' or 'decoder' from the file's keras_vae.role metadata (decoder when absent)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types
        raise ArtifactError(f"{str(path)!r} is not a readable ONNX file ({type(exc).__name__}): re-export it") from None
    meta = {p.key: p.value for p in model.metadata_props}
    return meta.get("keras_vae.role", "decoder")


def load(path: str | Path, **kwargs: Any):
    """Load a run folder or ``.keras`` file (-> keras.Model) or an export folder / ``.onnx`` file
    (-> ``OnnxDecoder``, or ``OnnxEncoder`` for an encoder file). ``kwargs`` go to the ONNX classes
    (``providers``, ``verify``). Anything else raises ``ArtifactError`` naming what was expected."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{str(path)!r} does not exist: pass a run folder (runs/<name>), a .keras file, "
                            "an export folder or an .onnx file")
    if path.is_dir():
        if (path / "model.keras").is_file():
            from keras_vae.runs.folder import check_run_dir, load_model

            return load_model(check_run_dir(path) / "model.keras")
        if (path / DECODER_ONNX).is_file():
            from keras_vae.serving.onnx_decoder import OnnxDecoder

            return OnnxDecoder(path, **kwargs)
        hint = " (the export has no decoder.onnx: re-run 'keras-vae export')" if (path / EXPORT_JSON).is_file() else ""
        raise ArtifactError(f"{str(path)!r} holds neither model.keras (a run folder) nor decoder.onnx (an export "
                            f"folder){hint}")
    if path.suffix == ".keras":
        from keras_vae.runs.folder import load_model

        return load_model(path)
    if path.suffix == ".onnx":
        if _onnx_role(path) == "encoder":
            from keras_vae.serving.onnx_encoder import OnnxEncoder

            return OnnxEncoder(path, **kwargs)
        from keras_vae.serving.onnx_decoder import OnnxDecoder

        return OnnxDecoder(path, **kwargs)
    raise ArtifactError(f"cannot load {str(path)!r}: expected a run folder, a .keras file, an export folder or "
                        "an .onnx file")


def export_info(export_dir: str | Path) -> dict[str, Any]:
    """The export.json of an export folder, with a clear error when it is missing or corrupt."""
    path = Path(export_dir) / EXPORT_JSON
    if not path.is_file():
        raise ArtifactError(f"{str(export_dir)!r} has no {EXPORT_JSON}: pass a folder written by 'keras-vae export'")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{str(path)!r} is not valid JSON ({exc}): re-run 'keras-vae export'") from None
