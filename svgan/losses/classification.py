"""Classification losses for imbalanced classes: LDAM with deferred re-weighting, and LMF (Sadi et al.).

- LDAM (Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
  NeurIPS 2019, Eq. 10-13): the true class's logit is lowered by a margin
  Delta_j = C / n_j^(1/4) before a softmax cross-entropy at logit scale s,
      L = -log( e^{s (z_y - Delta_y)} / (e^{s (z_y - Delta_y)} + sum_{j != y} e^{s z_j}) ),
  with C set so that the largest margin is ``max_margin`` (0.5). The margins come from the
  class counts in label order (index j is class j), never from a file-system listing. The
  paper's s = 30 assumes cosine logits in [-1, 1] (``CosineClassifier``): on raw logits it
  multiplies them thirty-fold, which is a known misuse; the loss warns when it sees logits
  outside [-1, 1].
- Deferred re-weighting (LDAM paper, Section 3.2): plain weights until a switch epoch, then
  the effective-number weights of Cui et al. (CVPR 2019), w_j = (1 - beta) / (1 - beta^{n_j}),
  beta = 0.9999, normalised to sum to the number of classes (``svgan.training.reweighting``).
- LMF (Sadi et al., Sadi et al., Eq. 5): L = alpha * LDAM + beta * focal, alpha = beta = 1, focal
  gamma = 1.5.
- Focal loss: ``svgan.losses.focal`` (the same core serves pixels and patients).

Labels are integer classes [B]; -1 marks an unknown class and contributes 0 (as in Rezaei et al.'s
disease losses). Every function returns one value per example [B].
"""

from __future__ import annotations

import warnings

import numpy as np

from .._tf import import_tf
from ._common import targets_and_probabilities
from .focal import focal_loss

import keras  # noqa: E402  (after _common, which imports TensorFlow first)
from keras import ops  # noqa: E402

LDAM_MAX_MARGIN = 0.5  # Cao et al. 2019
LDAM_SCALE = 30.0  # Cao et al. 2019, for cosine logits
DRW_BETA = 0.9999  # Cao et al. 2019, after Cui et al. 2019
LMF_GAMMA = 1.5  # Sadi et al.


def _counts(class_counts) -> np.ndarray:
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"need a count per class for at least 2 classes, got {class_counts!r}")
    if np.any(counts <= 0):
        raise ValueError(f"every class needs at least one training example for LDAM margins, got counts {counts.tolist()}")
    return counts


def ldam_margins(class_counts, max_margin: float = LDAM_MAX_MARGIN) -> np.ndarray:
    """Delta_j = C / n_j^(1/4) with C such that the largest margin (the rarest class) is ``max_margin``."""
    inv = _counts(class_counts) ** -0.25
    return (inv * (max_margin / inv.max())).astype(np.float32)


def effective_number_weights(class_counts, beta: float = DRW_BETA) -> np.ndarray:
    """Cui et al. 2019: w_j proportional to (1 - beta) / (1 - beta^{n_j}), summing to the number of classes."""
    counts = _counts(class_counts)
    w = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return (w * counts.size / w.sum()).astype(np.float32)


def _warn_if_not_cosine(logits, scale: float) -> None:
    # Only where values are at hand (eager calls); inside a compiled step nothing is checked.
    if scale > 1.0 and import_tf().executing_eagerly():
        peak = float(np.max(np.abs(np.asarray(logits))))
        if peak > 1.0 + 1e-3:
            warnings.warn(f"LDAM scale s={scale:g} on logits up to {peak:.3g}: the scale is meant for cosine logits "
                          "in [-1, 1] (use svgan.losses.CosineClassifier); on raw logits it over-sharpens the softmax",
                          stacklevel=3)


def ldam_loss(y_true, logits, margins, scale: float = LDAM_SCALE, class_weights=None):
    """Per-example LDAM loss [B]; ``class_weights`` [K] (e.g. deferred re-weighting) weigh by the true class."""
    _warn_if_not_cosine(logits, scale)
    logits = ops.cast(logits, "float32")
    targets, _, _ = targets_and_probabilities(y_true, logits, from_logits=True)
    adjusted = scale * (logits - targets * ops.convert_to_tensor(margins, "float32"))
    per_example = -ops.sum(targets * ops.log_softmax(adjusted, axis=-1), axis=-1)
    if class_weights is not None:
        per_example = per_example * ops.sum(targets * ops.cast(class_weights, "float32"), axis=-1)
    return per_example


def lmf_loss(y_true, logits, margins, alpha: float = 1.0, beta: float = 1.0, gamma: float = LMF_GAMMA,
             scale: float = LDAM_SCALE, class_weights=None, focal_alpha=None):
    """Sadi et al., Eq. 5: alpha * LDAM + beta * focal, per example [B]; the focal term reads the plain logits."""
    return (alpha * ldam_loss(y_true, logits, margins, scale, class_weights)
            + beta * focal_loss(y_true, logits, focal_alpha, gamma, from_logits=True))


# ---------------------------------------------------------------- Keras classes

class _ReweightedLoss(keras.losses.Loss):
    """Holds per-class weights in a variable so that a compiled step sees ``set_class_weights``."""

    def __init__(self, class_counts, name, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.class_counts = [int(c) for c in class_counts]
        self.class_weights = keras.Variable(np.ones(len(self.class_counts), np.float32), trainable=False,
                                            name=f"{name}_class_weights")

    def set_class_weights(self, weights) -> None:
        self.class_weights.assign(np.asarray(weights, np.float32))


@keras.saving.register_keras_serializable("svgan")
class LDAMLoss(_ReweightedLoss):
    """LDAM (Cao et al. 2019, Eq. 10-13): margins C / n_j^(1/4) from ``class_counts`` in label order."""

    def __init__(self, class_counts, max_margin: float = LDAM_MAX_MARGIN, scale: float = LDAM_SCALE,
                 name="ldam", **kwargs):
        super().__init__(class_counts, name=name, **kwargs)
        self.max_margin, self.scale = float(max_margin), float(scale)
        self.margins = ldam_margins(self.class_counts, self.max_margin)

    def call(self, y_true, y_pred):
        return ldam_loss(y_true, y_pred, self.margins, self.scale, self.class_weights)

    def get_config(self):
        return {**super().get_config(), "class_counts": self.class_counts, "max_margin": self.max_margin,
                "scale": self.scale}


@keras.saving.register_keras_serializable("svgan")
class LMFLoss(_ReweightedLoss):
    """Sadi et al., Eq. 5: alpha * LDAM + beta * focal (alpha = beta = 1, gamma = 1.5)."""

    def __init__(self, class_counts, alpha: float = 1.0, beta: float = 1.0, gamma: float = LMF_GAMMA,
                 max_margin: float = LDAM_MAX_MARGIN, scale: float = LDAM_SCALE, focal_alpha=None, name="lmf", **kwargs):
        super().__init__(class_counts, name=name, **kwargs)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.max_margin, self.scale, self.focal_alpha = float(max_margin), float(scale), focal_alpha
        self.margins = ldam_margins(self.class_counts, self.max_margin)

    def call(self, y_true, y_pred):
        return lmf_loss(y_true, y_pred, self.margins, self.alpha, self.beta, self.gamma, self.scale,
                        self.class_weights, self.focal_alpha)

    def get_config(self):
        return {**super().get_config(), "class_counts": self.class_counts, "alpha": self.alpha, "beta": self.beta,
                "gamma": self.gamma, "max_margin": self.max_margin, "scale": self.scale,
                "focal_alpha": self.focal_alpha}


@keras.saving.register_keras_serializable("svgan")
class CosineClassifier(keras.layers.Layer):
    """Dense layer without bias on L2-normalised inputs and weights: logits are cosines in [-1, 1] (LDAM's head)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), self.units), initializer="glorot_uniform",
                                      name="kernel")

    def call(self, x):
        x = ops.cast(x, "float32")
        x = x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)
        w = self.kernel / ops.maximum(ops.norm(self.kernel, axis=0, keepdims=True), 1e-12)
        return ops.matmul(x, w)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
