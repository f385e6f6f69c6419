"""What a trained VAE is used for, as library functions (the CLI subcommands call these).

    latent       linear and spherical interpolation, attribute vectors from labels
    encoding     posterior codes and reconstructions of every example of a source
    anomaly      per-image anomaly scores, thresholds at a false-positive rate, ROC-AUC
    completion   filling masked pixels (inpainting) and its baselines, PSNR on the masked region

``latent`` is NumPy only; the others call the model (TensorFlow).
"""
