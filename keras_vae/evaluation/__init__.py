"""Evaluation of trained models: sample quality, reconstruction quality, likelihood and latent health.

- ``keras_vae.evaluation.features``: the in-house feature network (a small conv classifier trained on
  the embedded MNIST digits, weights shipped in the package; or trained on a run's own data and cached
  in its folder). Frechet distances on it are NOT Inception FID: they compare models on the same data only.
- ``keras_vae.evaluation.sample_quality``: Frechet distance, KID, precision/recall (k-NN manifolds),
  sharpness (NumPy only).
- ``keras_vae.evaluation.image_quality``: MSE, MAE, PSNR, SSIM, MS-SSIM on [0, 1] images (tf.image).
- ``keras_vae.evaluation.report``: everything above for one model, as JSON and Markdown
  (``keras-vae evaluate``; a small version goes to metrics.json at the end of training).

Importing this package does not import TensorFlow; the submodules that need it import it themselves.
"""
