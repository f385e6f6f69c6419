"""TF Serving deployment kit: config files (``write_kit``) and warmup records (``write_warmup_requests``).

The kit files in this folder (models.config, batching_parameters.txt, docker-compose.yml,
kubernetes.yaml) are the output of ``render_kit("vae")``, kept as a readable example; generate the
ones for your export with ``write_kit(EXPORT_DIR, NAME)``. See docs/tf-serving.md.
"""
from __future__ import annotations

from keras_vae.serving.tfserving.kit import DEFAULT_IMAGE, KIT_FILES, render_kit, savedmodel_versions, write_kit
from keras_vae.serving.tfserving.warmup import (WARMUP_DIR, WARMUP_FILE, read_warmup_requests,
                                      write_warmup_requests)

__all__ = ["write_kit", "render_kit", "savedmodel_versions", "KIT_FILES", "DEFAULT_IMAGE",
           "write_warmup_requests", "read_warmup_requests", "WARMUP_DIR", "WARMUP_FILE"]
