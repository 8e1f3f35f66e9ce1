"""Losses: functional cores on tensors and keras.losses.Loss classes, with their paper equations."""

from .class_weights import selective_class_weights
from .gan import (DiscriminatorLoss, GeneratorAdversarialLoss, WeightedCategoricalCrossentropy,
                  WeightedL1Classification, discriminator_loss, generator_adversarial_loss,
                  total_generator_loss, weighted_categorical_crossentropy, weighted_crossentropy_classification,
                  weighted_l1_classification)

__all__ = [
    "selective_class_weights", "discriminator_loss", "generator_adversarial_loss", "weighted_categorical_crossentropy",
    "weighted_l1_classification", "weighted_crossentropy_classification", "total_generator_loss", "WeightedCategoricalCrossentropy",
    "WeightedL1Classification", "GeneratorAdversarialLoss", "DiscriminatorLoss",
]
