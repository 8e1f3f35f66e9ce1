"""One registry from config names to loss classes: the segmentation and classification terms of Eq. 5.

``loss.segmentation_loss`` and ``loss.classification_loss`` name an entry; the trainer asks
``build_segmentation_loss`` / ``build_classification_loss`` for a ``keras.losses.Loss`` and calls
it on (integer labels, logits). The seed 000 losses take the selective class weights of Eq. 2;
the toolkit's losses take their own parameters (``loss.segmentation_loss_args``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .focal import FocalLoss
from .gan import WeightedCategoricalCrossentropy, WeightedCrossentropyClassification, WeightedL1Classification
from .segmentation import ComboLoss, DiceLoss, FocalTverskyLoss, TverskyLoss, UnifiedFocalLoss

# name -> (loss class, takes the Eq. 2 class weights)
SEGMENTATION_LOSSES = {
    "weighted_crossentropy": (WeightedCategoricalCrossentropy, True),  # seed 000 Eq. 3
    "dice": (DiceLoss, False),
    "tversky": (TverskyLoss, False),
    "focal_tversky": (FocalTverskyLoss, False),
    "focal": (FocalLoss, False),
    "combo": (ComboLoss, False),
    "unified_focal": (UnifiedFocalLoss, False),  # seed 001 Eq. 12 (asymmetric; asymmetric: false for Eq. 9)
}
CLASSIFICATION_LOSSES = {
    "l1": (WeightedL1Classification, True),  # seed 000 Eq. 4
    "crossentropy": (WeightedCrossentropyClassification, True),
    "focal": (FocalLoss, False),  # seed 002's classifier loss; alpha 0.25, gamma 2 for two classes
}
# Seed 002 (MelaNet): alpha = 0.25 on class 1, 0.75 on class 0 (Lin et al.'s binary convention);
# a scalar alpha means nothing for more classes, where the default is no alpha.
FOCAL_CLASSIFICATION_DEFAULTS = {"gamma": 2.0, "alpha": 0.25}


def _build(table: dict, name: str, class_weights, args: dict | None, what: str):
    if name not in table:
        raise ConfigError(f"loss.{what}: unknown loss {name!r} (known: {', '.join(table)})")
    cls, weighted = table[name]
    args = dict(args or {})
    try:
        if weighted:
            return cls([float(w) for w in class_weights], **args)
        return cls(from_logits=True, **args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss.{what} {name!r}: {e}") from None


def build_segmentation_loss(name: str, class_weights, args: dict | None = None):
    """A Keras loss on (integer labels [B, ...], logits [B, ..., K]) -> scalar."""
    return _build(SEGMENTATION_LOSSES, name, class_weights, args, "segmentation_loss")


def build_classification_loss(name: str, class_weights, args: dict | None = None):
    """A Keras loss on (disease classes [B], -1 = unknown; disease logits [B, M]) -> scalar."""
    if name == "focal":
        defaults = dict(FOCAL_CLASSIFICATION_DEFAULTS)
        if len(class_weights) != 2:
            defaults["alpha"] = None
        args = {**defaults, **(args or {})}
    return _build(CLASSIFICATION_LOSSES, name, class_weights, args, "classification_loss")
