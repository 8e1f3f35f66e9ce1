"""One registry from config names to loss classes: the segmentation and classification terms of Eq. 5.

``loss.segmentation_loss`` and ``loss.classification_loss`` name an entry; the trainer asks
``build_segmentation_loss`` / ``build_classification_loss`` for a ``keras.losses.Loss`` and calls
it on (integer labels, logits). The Rezaei et al. losses take the selective class weights of Eq. 2;
LDAM and LMF take the training patients' class counts (their margins); the other losses take
their own parameters (``loss.*_loss_args``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .classification import LDAMLoss, LMFLoss
from .focal import FocalLoss
from .gan import WeightedCategoricalCrossentropy, WeightedCrossentropyClassification, WeightedL1Classification
from .segmentation import ComboLoss, DiceLoss, FocalTverskyLoss, TverskyLoss, UnifiedFocalLoss

# name -> (loss class, what it is built from: "weights" = the Eq. 2 class weights, "counts" = the
# training class counts, None = its own parameters only)
SEGMENTATION_LOSSES = {
    "weighted_crossentropy": (WeightedCategoricalCrossentropy, "weights"),  # Rezaei et al., Eq. 3
    "dice": (DiceLoss, None),
    "tversky": (TverskyLoss, None),
    "focal_tversky": (FocalTverskyLoss, None),
    "focal": (FocalLoss, None),
    "combo": (ComboLoss, None),
    "unified_focal": (UnifiedFocalLoss, None),  # Cui et al., Eq. 12 (asymmetric; asymmetric: false for Eq. 9)
}
CLASSIFICATION_LOSSES = {
    "l1": (WeightedL1Classification, "weights"),  # Rezaei et al., Eq. 4
    "crossentropy": (WeightedCrossentropyClassification, "weights"),
    "focal": (FocalLoss, None),  # Zunair and Ben Hamza's classifier loss; alpha 0.25, gamma 2 for two classes
    "ldam": (LDAMLoss, "counts"),  # Sadi et al. / Cao et al. 2019, on a cosine classifier
    "lmf": (LMFLoss, "counts"),  # Sadi et al., Eq. 5
}
# LDAM's scale s = 30 is meant for cosine logits: these losses get a CosineClassifier head.
MARGIN_LOSSES = ("ldam", "lmf")
# Zunair and Ben Hamza (MelaNet): alpha = 0.25 on class 1, 0.75 on class 0 (Lin et al.'s binary convention);
# a scalar alpha means nothing for more classes, where the default is no alpha.
FOCAL_CLASSIFICATION_DEFAULTS = {"gamma": 2.0, "alpha": 0.25}


def _build(table: dict, name: str, class_weights, args: dict | None, what: str, class_counts=None):
    if name not in table:
        raise ConfigError(f"loss.{what}: unknown loss {name!r} (known: {', '.join(table)})")
    cls, built_from = table[name]
    args = dict(args or {})
    try:
        if built_from == "weights":
            return cls([float(w) for w in class_weights], **args)
        if built_from == "counts":
            return cls([int(c) for c in class_counts], **args)
        return cls(from_logits=True, **args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss.{what} {name!r}: {e}") from None


def build_segmentation_loss(name: str, class_weights, args: dict | None = None):
    """A Keras loss on (integer labels [B, ...], logits [B, ..., K]) -> scalar."""
    return _build(SEGMENTATION_LOSSES, name, class_weights, args, "segmentation_loss")


def build_classification_loss(name: str, class_weights, args: dict | None = None, class_counts=None):
    """A Keras loss on (disease classes [B], -1 = unknown; disease logits [B, M]) -> scalar.

    ``class_counts``: training patients per class in label order (LDAM's and LMF's margins).
    Every classification loss returns one value per example from ``call``, so ``sample_weight``
    weighs examples.
    """
    if name == "focal":
        defaults = dict(FOCAL_CLASSIFICATION_DEFAULTS)
        if len(class_weights) != 2:
            defaults["alpha"] = None
        args = {**defaults, **(args or {})}
    return _build(CLASSIFICATION_LOSSES, name, class_weights, args, "classification_loss", class_counts)


def uses_cosine_classifier(model_cfg, loss_cfg) -> bool:
    """Whether the disease head ends in a cosine classifier: ``model.classifier_layer``, where
    "auto" means yes for the margin losses (LDAM, LMF) and no otherwise."""
    if model_cfg.classifier_layer == "auto":
        return loss_cfg.classification_loss in MARGIN_LOSSES
    return model_cfg.classifier_layer == "cosine"
