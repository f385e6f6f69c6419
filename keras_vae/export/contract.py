"""The artifact contract shared by the exporters (``export``) and their consumers (``serving``).

Pure Python on purpose: ``serving`` imports it without TensorFlow.

ONNX files (opset >= 17, dynamic batch axis ``N``):
- ``decoder.onnx``: input ``z`` float32 [N, latent_dim] -> output ``image`` float32 [N, H, W, C] in [0, 1].
- ``encoder.onnx``: input ``image`` float32 [N, H, W, C] in [0, 1] -> outputs ``mean`` and
  ``log_variance``, float32 [N, latent_dim].
Each carries ``metadata_props`` under the keys below (values are strings; lists as JSON).

SavedModel (TF Serving layout ``savedmodel/<name>/<version>/``) signatures:
``serving_default`` (decode), ``decode_uint8``, ``encode``, ``reconstruct`` with the same names.
"""
from __future__ import annotations

DECODER_ONNX = "decoder.onnx"
ENCODER_ONNX = "encoder.onnx"
EXPORT_JSON = "export.json"
SAVEDMODEL_DIR = "savedmodel"

LATENT_INPUT = "z"
IMAGE_INPUT = "image"
IMAGE_OUTPUT = "image"
MEAN_OUTPUT = "mean"
LOG_VARIANCE_OUTPUT = "log_variance"

SIGNATURES = ("serving_default", "decode_uint8", "encode", "reconstruct")

# metadata_props keys in every exported ONNX file
META_LATENT_DIM = "keras_vae.latent_dim"  # "16"
META_IMAGE_SHAPE = "keras_vae.image_shape"  # "[28, 28, 1]" (H, W, C)
META_VALUE_RANGE = "keras_vae.value_range"  # "[0, 1]": range of the ONNX image tensors
META_MODEL_KIND = "keras_vae.model_kind"  # "vae" | "vaegan"
META_PACKAGE_VERSION = "keras_vae.package_version"
META_SOURCE_RUN = "keras_vae.source_run"  # the run folder the model came from
META_SOURCE_SHA256 = "keras_vae.source_sha256"  # SHA-256 of the source model.keras
META_ROLE = "keras_vae.role"  # "decoder" | "encoder"

# export.json: {"files": {"decoder.onnx": {"sha256": "...", "bytes": n}, ...}, "parity": {...}, ...}

# --- added by the exporter ------------------------------------------------------------------
ONNX_OPSET = 17
BATCH_AXIS = "N"  # dim_param of the dynamic batch axis on every ONNX input and output

# Optional smaller decoders (same inputs/outputs/metadata as decoder.onnx, float32 I/O):
DECODER_FLOAT16_ONNX = "decoder.float16.onnx"  # weights and arithmetic in float16
DECODER_QUANTIZED_ONNX = "decoder.int8.onnx"  # onnxruntime dynamic quantization (int8 weights)
META_PRECISION = "keras_vae.training.precision"  # "float32" | "float16" | "int8-dynamic"

# TF Serving: PredictionLog records replayed by the server when it loads a version.
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # relative to savedmodel/<name>/<version>/

# The SavedModel name defaults to the model kind ("vae" | "vaegan"); versions are integers >= 1.
# The exporter's parity bounds are derived per signature, output and batch from float32 round-off of the
# network (keras_vae.export.roundoff; recorded in export.json "parity"). PARITY_TOLERANCE is NOT what the
# exporter checks: it stays as a loose fixed tolerance for the tiny float32 test models only.
PARITY_TOLERANCE = 1e-4
PARITY_UINT8_TOLERANCE = 1  # one grey level (rounding at a half step); the exporter allows floor(255 b) + 1
PARITY_BATCH_SIZES = (1, 7, 64)
# A parity (and sampler-check) batch is used only while its largest float32 activation fits this many bytes
# (batch 1 always): paper-256 (256x256x128 values per image) checks 1 and 7, the smaller presets all three.
PARITY_MAX_ACTIVATION_BYTES = 256 << 20

# The largest batch one call or request may carry: OnnxDecoder's max_batch default and the contract
# server's limit (a bigger request is refused with 400, never decoded into gigabytes).
MAX_BATCH = 1024
# --- the latent sampler travels with the export -----------------------------------------------
# EXPORT_DIR/sampler.json    the run's sampler (keras_vae.sampling.samplers format; the prior N(0, I) when the
#                            run has none), also copied into savedmodel/<name>/<version>/assets.extra/
# EXPORT_DIR/sampler.onnx    inputs "eps" float32 [N, latent_dim] (standard normal noise) and "u"
#                            float32 [N] (uniform in [0, 1)) -> output "z" float32 [N, latent_dim]:
#                            k = min(#{cumsum(weights) <= u}, K - 1); z = means[k] + scale_tril[k] @ eps.
# The noise comes from keras_vae.sampling.noise.portable_noise(seed, n, latent_dim) (twins: TF in the
# SavedModel, serving/node/noise.js in Node and the browser), so one seed gives the same latents in
# every runtime.
SAMPLER_JSON = "sampler.json"
SAMPLER_ONNX = "sampler.onnx"
SAMPLER_ASSET = "assets.extra/sampler.json"  # relative to savedmodel/<name>/<version>/
SAMPLER_EPS_INPUT = "eps"
SAMPLER_U_INPUT = "u"
LATENT_OUTPUT = "z"
META_SAMPLER_KIND = "keras_vae.sampler_kind"  # "prior" | "gaussian" | "gmm" (sampler.onnx only)
META_NOISE = "keras_vae.sampling.noise"  # keras_vae.sampling.noise.NOISE_ALGORITHM the sampler expects
# SavedModel signatures "sample" (image float32 [n, H, W, C] in [0, 1], z) and "sample_uint8"
# (image uint8, z): scalar inputs "n" (int32, >= 1) and "seed" (int64, in [0, 2^32)).
SAMPLE_SIGNATURES = ("sample", "sample_uint8")
SAMPLE_N_INPUT = "n"
SAMPLE_SEED_INPUT = "seed"
SAMPLER_PARITY_SEEDS = (0, 1)  # seeds the exporter checks: SavedModel and sampler.onnx vs LatentSampler
# --- attribute vectors from labels travel with the export -------------------------------------
# EXPORT_DIR/attributes.json  per-class mean codes of the run's training data (keras_vae.applications.attributes
#                             format), written when the run's data source has labels; the explorer and the
#                             Node CLI edit z + alpha * (mean[a] - mean[b]) with it. Listed and hashed in export.json.
ATTRIBUTES_JSON = "attributes.json"
# --- class-conditional exports (the model's num_classes = K > 0) -------------------------------
# Every signature and ONNX graph of a conditional export takes the class beside its other input, as an
# integer label (not a one-hot): one name, one dtype in every runtime (JSON, Node, the browser).
# - decoder.onnx (and its variants), encoder.onnx: input "label" int32 [N] in [0, K) beside "z" / "image".
# - sampler.onnx: inputs eps, u and "label" int32 [N] -> z drawn from class label's sampler (the run's
#   samplers/classes.json, copied as EXPORT_DIR/class_samplers.json; N(0, I) for a class it lacks or when the
#   run has none). The per-class rule is the mixture rule above with that class's weights, means and factors.
# - SavedModel: serving_default, decode_uint8 take "label" int32 [N] beside "z"; encode, reconstruct beside
#   "image"; sample, sample_uint8 take "label" int32 scalar beside n and seed (all n draws of one class). A label
#   outside [0, K) fails the request with InvalidArgument naming the input and its range.
# - export.json "conditional": {"num_classes": K, "label_input": "label", "label_dtype": "int32",
#   "class_samplers": {class: kind}, ...}; absent for an unconditional export (which takes no label).
# - every ONNX file of a conditional export carries META_NUM_CLASSES; an unconditional one does not.
LABEL_INPUT = "label"
LABEL_DTYPE = "int32"
META_NUM_CLASSES = "keras_vae.num_classes"  # "10"
CLASS_SAMPLERS_JSON = "class_samplers.json"  # keras_vae.sampling.classes format (samplers/classes.json of the run)
SAMPLER_KIND_CLASSES = "classes"  # META_SAMPLER_KIND of a sampler.onnx that takes a label
