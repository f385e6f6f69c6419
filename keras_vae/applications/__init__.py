"""What a trained VAE is used for, as library functions (the CLI subcommands call these).

    inputs       a run folder and the data source it is applied to, read in batches
    latent       linear and spherical interpolation, attribute vectors from labels
    attributes   per-class mean codes as a file (attributes.json, exported) and the edit every runtime applies
    encoding     posterior codes and reconstructions of every example of a source
    anomaly      per-image anomaly scores, thresholds at a false-positive rate, ROC-AUC
    completion   filling masked pixels (inpainting) and its baselines, PSNR on the masked region
    scorers      what design generation must satisfy: a callable, an ONNX or Keras classifier, the digit classifier
    design       N diverse images a scorer accepts, searched in latent space, with their nearest training images
    report       CSV tables of the outputs

``latent`` is NumPy only (``attributes`` too, except ``fit_attributes``); the others call the model (TensorFlow).
"""
