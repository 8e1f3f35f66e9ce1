"""Generator, discriminator and their registered layers.

Importing this package registers the custom layers, after which a saved
``generator.keras`` loads with plain ``keras.models.load_model``.
"""

from . import blocks  # noqa: F401  (registers the layers)
from .discriminator import build_discriminator
from .generator import build_generator

__all__ = ["build_generator", "build_discriminator"]
