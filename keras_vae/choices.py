"""Every list of choices a user can pick from, defined once: the configuration, the CLI's
``choices=`` and the documentation all read these tuples. Pure Python (no TensorFlow).
"""
from __future__ import annotations

# model
MODEL_KINDS = ("vae", "vaegan")
ARCHITECTURES = ("mlp", "conv", "resnet")
LIKELIHOODS = ("bernoulli", "gaussian", "laplace")
BN_MODES = ("batch", "reference")
OUTPUT_BIASES = ("zero", "data_mean")  # keras_vae.models.output_bias
# element-wise Keras activations (keras.activations names; softmax-like and parametrised ones excluded)
ACTIVATIONS = ("celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish",
               "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "mish", "relu", "relu6", "selu", "sigmoid",
               "silu", "soft_shrink", "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "squareplus",
               "swish", "tanh", "tanh_shrink")

# loss
KL_KINDS = ("standard", "population")
POPULATION_VARIANCES = ("means", "mixture", "covariance")
ADVERSARIAL_LOSSES = ("bce", "hinge")
OBJECTIVES = ("elbo", "iwae")

# training
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
PRECISIONS = ("auto",) + DTYPE_POLICIES  # auto: keras_vae.training.precision picks by hardware
STRATEGIES = ("auto", "none", "mirrored", "multiworker")
LR_SCHEDULES = ("constant", "cosine")

# data
SOURCE_KINDS = ("embedded", "tfds", "folder", "npy")

# after training
SAMPLER_KINDS = ("prior", "gaussian", "gmm", "flow")
LATENT_PROJECTIONS = ("pca", "tsne")

# applications (keras_vae.applications)
DATA_SPLITS = ("all", "train", "validation")  # which examples of a source: both splits, or one
ANOMALY_SCORES = ("neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis", "complexity_corrected",
                  "likelihood_ratio")
COMPLETION_METHODS = ("iterative", "latent", "metropolis", "importance")  # model-based; the baselines always run
SAMPLING_COMPLETION_METHODS = ("metropolis", "importance")  # need the decoder's density p(x|z); draw K completions
DESIGN_METHODS = ("subset", "cem", "rejection")  # keras_vae.applications.design: latent search
DESIGN_PROPOSALS = ("sampler", "prior", "class")  # where a design search draws latents from
DIVERSITY_SPACES = ("pixel", "latent")  # where design candidates are spread
