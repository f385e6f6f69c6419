"""Measurements of keras-vae (never part of the test suite): ``python -m benchmarks`` runs them."""
