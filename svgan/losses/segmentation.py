"""Multi-class segmentation losses of the imbalance toolkit (Cui et al., with their published forms).

Inputs: channels-last ``y_pred`` [B, ..., K] over any number of spatial axes (2D slices,
3D volumes, the core model's [B, T, H, W, K] sequences), probabilities by default or
logits with ``from_logits=True`` (the core model's generator emits logits); ``y_true``
integer classes [B, ...] or one-hot [B, ..., K]. Every function returns one value per
example [B]; the Keras classes reduce over the batch (``reduction``).

Region terms (Dice, Tversky) are computed per example and class from soft counts over all
positions of the example, TP = sum p y, FN = sum (1 - p) y, FP = sum p (1 - y), with a
smoothing constant so that a class absent from both target and prediction scores an index
of 1 (loss 0). Per-class terms are combined by ``class_reduction``: "mean" (default here:
values stay on the scale of one class whatever K is, so the weight between a region term
and a pixel term does not depend on the number of classes) or "sum" (as the published
equations write it). Focal exponents are applied to quantities clamped at 1e-7, so values
and gradients stay finite at p in {0, 1} and at a Tversky index of exactly 1.

Conventions for false negatives and false positives differ between papers (Salehi et al.
write alpha for FP and beta for FN; Abraham and Khan the reverse). Here they are named:
``fn_weight`` and ``fp_weight``; the unified loss's delta weighs false negatives.
"""

from __future__ import annotations

from ._common import (CLASS_REDUCTIONS, EPSILON, focal_power, per_pixel_mean, reduce_classes, region_counts,
                      targets_and_probabilities)
from .focal import focal_loss

import keras  # noqa: E402  (after _common, which imports TensorFlow first)
from keras import ops  # noqa: E402

SMOOTH = 1e-6


def tversky_index(y_true, y_pred, fn_weight: float = 0.7, fp_weight: float = 0.3, from_logits: bool = False,
                  smooth: float = SMOOTH):
    """Tversky index per example and class [B, K]: (TP + s) / (TP + fn_weight FN + fp_weight FP + s).

    Salehi et al., "Tversky loss function for image segmentation using 3D fully convolutional
    deep networks" (2017), Eq. 3; weights 0.5 / 0.5 give the Dice coefficient.
    """
    targets, probs, _ = targets_and_probabilities(y_true, y_pred, from_logits)
    tp, fn, fp = region_counts(targets, probs)
    return (tp + smooth) / (tp + fn_weight * fn + fp_weight * fp + smooth)


def dice_loss(y_true, y_pred, from_logits: bool = False, smooth: float = SMOOTH, class_reduction: str = "mean"):
    """1 - soft Dice per class, (2 TP + s) / (2 TP + FN + FP + s), combined over classes [B]."""
    index = tversky_index(y_true, y_pred, 0.5, 0.5, from_logits, smooth)
    return reduce_classes(1.0 - index, class_reduction)


def tversky_loss(y_true, y_pred, fn_weight: float = 0.7, fp_weight: float = 0.3, from_logits: bool = False,
                 smooth: float = SMOOTH, class_reduction: str = "mean"):
    """1 - Tversky index per class, combined over classes [B] (Salehi et al. 2017; FN weighted 0.7 there)."""
    index = tversky_index(y_true, y_pred, fn_weight, fp_weight, from_logits, smooth)
    return reduce_classes(1.0 - index, class_reduction)


def focal_tversky_loss(y_true, y_pred, fn_weight: float = 0.7, fp_weight: float = 0.3, gamma: float = 0.75,
                       from_logits: bool = False, smooth: float = SMOOTH, class_reduction: str = "mean"):
    """(1 - Tversky index)^gamma per class, combined over classes [B].

    Abraham and Khan, "A novel focal Tversky loss function..." (ISBI 2019), Eq. 4 writes the
    exponent as 1/gamma with gamma = 4/3; here ``gamma`` is the exponent itself (0.75), as in
    Yeung et al. 2022. Cui et al., Eq. 3 writes the 1/gamma form.
    """
    index = tversky_index(y_true, y_pred, fn_weight, fp_weight, from_logits, smooth)
    return reduce_classes(focal_power(1.0 - index, gamma), class_reduction)


def combo_loss(y_true, y_pred, alpha: float = 0.5, beta: float = 0.5, from_logits: bool = False,
               smooth: float = SMOOTH, class_reduction: str = "mean"):
    """Combo loss (Taghanaki et al., "Combo loss", CMIG 2019, Eq. 4), multi-class, as a loss >= 0.

        alpha * CE_beta + (1 - alpha) * (1 - Dice)

    CE_beta is the per-class binary cross-entropy averaged over positions and classes,
    -(beta y log p + (1 - beta)(1 - y) log(1 - p)) (beta > 0.5 penalises false negatives);
    the paper subtracts the Dice coefficient itself, which differs from this by a constant.
    """
    targets, probs, _ = targets_and_probabilities(y_true, y_pred, from_logits)
    p = ops.clip(probs, EPSILON, 1.0 - EPSILON)
    bce = -(beta * targets * ops.log(p) + (1.0 - beta) * (1.0 - targets) * ops.log(1.0 - p))
    ce = per_pixel_mean(ops.mean(bce, axis=-1))
    tp, fn, fp = region_counts(targets, probs)
    dice = (2.0 * tp + smooth) / (2.0 * tp + fn + fp + smooth)
    return alpha * ce + (1.0 - alpha) * reduce_classes(1.0 - dice, class_reduction)


def _rare_mask(rare_classes, num_classes: int):
    """[K] floats, 1 for the rare classes (default: every class but 0, the background)."""
    rare = list(range(1, num_classes)) if rare_classes is None else [int(c) for c in rare_classes]
    if any(c < 0 or c >= num_classes for c in rare):
        raise ValueError(f"rare classes {rare} outside 0..{num_classes - 1}")
    return [1.0 if c in rare else 0.0 for c in range(num_classes)]


def unified_focal_loss(y_true, y_pred, weight: float = 0.5, delta: float = 0.6, gamma: float = 0.5,
                       rare_classes=None, asymmetric: bool = True, from_logits: bool = False,
                       smooth: float = SMOOTH, class_reduction: str = "mean"):
    """Unified focal loss (Yeung et al., CMIG 95, 2022, 102026), multi-class, per example [B].

        L = weight * L_focal + (1 - weight) * L_focal_tversky          (Cui et al., Eq. 9 and 12)

    Focal part, per position with true class c, averaged over positions:
        class weight (delta for a rare class, 1 - delta for the others)
        x (1 - p_c)^gamma                     (suppression; asymmetric: only for non-rare classes)
        x -log p_c
    Focal Tversky part, per class with mTI_c = TP / (TP + delta FN + (1 - delta) FP):
        (1 - mTI_c)^(1 - gamma)               (enhancement; asymmetric: only for rare classes,
                                               the others contribute 1 - mTI_c)
    combined over classes by ``class_reduction``. Defaults are Cui et al.'s: weight (lambda) 0.5,
    delta 0.6, gamma 0.5; ``rare_classes`` default to every class but 0.

    Special cases (stated by Yeung et al. and Cui et al.): gamma = 0 and delta = 0.5 give half the
    cross-entropy with weight 1 (delta = 1/2 weighs each class's term by one half) and the
    Dice loss with weight 0.

    Where Cui et al.'s extracted text differs from the published form: Eq. 6 and 7 swap the
    exponents (1 - tau on the focal term, tau on the Tversky term); Eq. 8's denominator
    repeats the TP sum instead of the FP sum; Eq. 9 reads "delta F_a + (1 - delta T_a)" and
    Eq. 12 uses tau as the mixing weight, where the published loss mixes with lambda; Eq. 10
    takes the log of the rare class's probability in the background sum instead of each
    class's own.
    """
    if not 0.0 <= weight <= 1.0 or not 0.0 <= delta <= 1.0 or not 0.0 <= gamma < 1.0:
        raise ValueError(f"unified focal loss needs weight, delta in [0, 1] and gamma in [0, 1); "
                         f"got {weight}, {delta}, {gamma}")
    targets, probs, log_probs = targets_and_probabilities(y_true, y_pred, from_logits)
    rare = ops.convert_to_tensor(_rare_mask(rare_classes, int(y_pred.shape[-1])), "float32")
    class_weights = delta * rare + (1.0 - delta) * (1.0 - rare)

    suppression = focal_power(1.0 - probs, gamma)
    if asymmetric:
        suppression = rare + (1.0 - rare) * suppression
    focal = per_pixel_mean(ops.sum(-targets * class_weights * suppression * log_probs, axis=-1))

    tp, fn, fp = region_counts(targets, probs)
    dissimilarity = 1.0 - (tp + smooth) / (tp + delta * fn + (1.0 - delta) * fp + smooth)
    enhanced = focal_power(dissimilarity, 1.0 - gamma)
    if asymmetric:
        enhanced = rare * enhanced + (1.0 - rare) * dissimilarity
    tversky = reduce_classes(enhanced, class_reduction)
    return weight * focal + (1.0 - weight) * tversky


# ---------------------------------------------------------------- Keras Loss classes

class _SegmentationLoss(keras.losses.Loss):
    """Keras wrapper: ``fn(y_true, y_pred, **params)`` per example, reduced over the batch."""

    fn = None
    defaults: dict = {}

    def __init__(self, from_logits: bool = False, reduction="sum_over_batch_size", name=None, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameters {sorted(unknown)}")
        super().__init__(name=name or type(self).__name__, reduction=reduction)
        self.from_logits = bool(from_logits)
        self.params = {**self.defaults, **params}
        if "class_reduction" in self.params and self.params["class_reduction"] not in CLASS_REDUCTIONS:
            raise ValueError(f"class_reduction must be one of {CLASS_REDUCTIONS}, got {self.params['class_reduction']!r}")

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, from_logits=self.from_logits, **self.params)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, **self.params}


_REGION = {"smooth": SMOOTH, "class_reduction": "mean"}


@keras.saving.register_keras_serializable("svgan")
class DiceLoss(_SegmentationLoss):
    """1 - soft Dice per class, combined over classes."""

    fn = staticmethod(dice_loss)
    defaults = dict(_REGION)


@keras.saving.register_keras_serializable("svgan")
class TverskyLoss(_SegmentationLoss):
    """1 - Tversky index (Salehi et al. 2017, Eq. 3), FN weighted 0.7, FP 0.3."""

    fn = staticmethod(tversky_loss)
    defaults = {"fn_weight": 0.7, "fp_weight": 0.3, **_REGION}


@keras.saving.register_keras_serializable("svgan")
class FocalTverskyLoss(_SegmentationLoss):
    """(1 - Tversky index)^0.75 (Abraham and Khan 2019, Eq. 4; Cui et al., Eq. 3)."""

    fn = staticmethod(focal_tversky_loss)
    defaults = {"fn_weight": 0.7, "fp_weight": 0.3, "gamma": 0.75, **_REGION}


@keras.saving.register_keras_serializable("svgan")
class ComboLoss(_SegmentationLoss):
    """alpha * beta-weighted binary CE + (1 - alpha) * Dice loss (Taghanaki et al. 2019, Eq. 4)."""

    fn = staticmethod(combo_loss)
    defaults = {"alpha": 0.5, "beta": 0.5, **_REGION}


@keras.saving.register_keras_serializable("svgan")
class UnifiedFocalLoss(_SegmentationLoss):
    """Unified focal loss (Yeung et al. 2022; Cui et al., Eq. 6-12), asymmetric by default."""

    fn = staticmethod(unified_focal_loss)
    defaults = {"weight": 0.5, "delta": 0.6, "gamma": 0.5, "rare_classes": None, "asymmetric": True, **_REGION}


__all__ = ["tversky_index", "dice_loss", "tversky_loss", "focal_tversky_loss", "combo_loss", "unified_focal_loss",
           "focal_loss", "DiceLoss", "TverskyLoss", "FocalTverskyLoss", "ComboLoss", "UnifiedFocalLoss"]
