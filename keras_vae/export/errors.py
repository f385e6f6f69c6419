"""Errors of the exporters (pure Python)."""
from __future__ import annotations

from keras_vae.errors import ArtifactError


class ParityError(ArtifactError):
    """An exported artifact's outputs differ from the Keras model's by more than their round-off bound."""

    def __init__(self, signature: str, artifact: str, batch_size: int, output: str, difference: float,
                 tolerance: float) -> None:
        self.signature, self.artifact, self.batch_size = signature, artifact, batch_size
        self.output, self.difference, self.tolerance = output, difference, tolerance
        super().__init__(
            f"parity failed for signature {signature!r} ({artifact}, output {output!r}, batch {batch_size}): "
            f"max abs difference {difference:.3g} from the Keras model exceeds its round-off bound {tolerance:.3g} "
            f"(keras_vae/export/roundoff.py); nothing was written"
        )
