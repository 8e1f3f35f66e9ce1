"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, Eq. 5), any rank.

    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)

p_t is the probability of the true class from the plain (unweighted) softmax; alpha_t is
the weight of the true class only. Zunair and Ben Hamza (MelaNet) trains its classifier with
alpha = 0.25, gamma = 2; Cui et al., Eq. 2 writes the same loss as alpha (1 - C_t)^gamma BCE.
With gamma = 0 and no alpha it is the cross-entropy. The same core serves per-pixel
segmentation ([B, ..., K]) and classification ([B, K]).
"""

from __future__ import annotations

from ._common import focal_power, per_pixel_mean, targets_and_probabilities

import keras  # noqa: E402  (after _common, which imports TensorFlow first)
from keras import ops  # noqa: E402


def class_alpha(alpha, num_classes: int):
    """Per-class weights [K] from None (all 1), a list of K values, or a scalar for 2 classes.

    A scalar is Lin et al.'s binary convention: alpha for class 1 (the rare, positive class)
    and 1 - alpha for class 0. With more than two classes a scalar is ambiguous and refused.
    """
    if alpha is None:
        return [1.0] * num_classes
    if isinstance(alpha, (int, float)):
        if num_classes != 2:
            raise ValueError(f"a scalar focal alpha ({alpha}) is defined for 2 classes only; give one weight "
                             f"per class for {num_classes} classes")
        return [1.0 - float(alpha), float(alpha)]
    alpha = [float(a) for a in alpha]
    if len(alpha) != num_classes:
        raise ValueError(f"focal alpha has {len(alpha)} weights for {num_classes} classes")
    return alpha


def focal_loss(y_true, y_pred, alpha=None, gamma: float = 2.0, from_logits: bool = False):
    """Per-example focal loss [B]: the mean over positions (if any) of -alpha_t (1 - p_t)^gamma log p_t.

    ``y_true``: integer classes [B, ...] or one-hot / soft targets [B, ..., K]; soft targets
    weigh each class's term -alpha_c (1 - p_c)^gamma log p_c by its target value.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    targets, probs, log_probs = targets_and_probabilities(y_true, y_pred, from_logits)
    weights = ops.convert_to_tensor(class_alpha(alpha, int(y_pred.shape[-1])), "float32")
    per_class = -targets * weights * focal_power(1.0 - probs, gamma) * log_probs
    return per_pixel_mean(ops.sum(per_class, axis=-1))


@keras.saving.register_keras_serializable("svgan")
class FocalLoss(keras.losses.Loss):
    """Focal loss of Lin et al. (2017), Eq. 5 there; Cui et al., Eq. 2, Zunair and Ben Hamza's classifier loss."""

    def __init__(self, alpha=None, gamma: float = 2.0, from_logits: bool = False, reduction="sum_over_batch_size",
                 name="focal", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.alpha = alpha if alpha is None or isinstance(alpha, (int, float)) else [float(a) for a in alpha]
        self.gamma, self.from_logits = float(gamma), bool(from_logits)

    def call(self, y_true, y_pred):
        return focal_loss(y_true, y_pred, self.alpha, self.gamma, self.from_logits)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits}
