"""Latent samplers: the prior N(0, I) or a fit of the aggregate posterior (``samplers``), fitting
them after training (``posterior``), drawing evaluation samples (``draw``) and the portable seeded
noise every runtime reproduces (``noise``).

A sampler never imports a model: models are passed in and used through their public methods.
"""
