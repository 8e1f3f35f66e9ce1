"""Shared input handling of the toolkit losses: labels, probabilities, per-class region counts.

Every loss takes channels-last predictions ``y_pred`` [B, ..., K] (any number of spatial
axes, none for classification) and labels ``y_true`` either as integer classes
[B, ...] (one axis fewer) or one-hot / soft targets [B, ..., K].
"""

from __future__ import annotations

from .._tf import import_tf

import_tf()  # before keras, which would import TensorFlow loudly

from keras import ops  # noqa: E402

EPSILON = 1e-7
CLASS_REDUCTIONS = ("mean", "sum")


def targets_and_probabilities(y_true, y_pred, from_logits: bool):
    """(targets [B, ..., K] float32, probabilities, log-probabilities), all float32.

    From logits the log-probabilities are log-softmax (finite for any logits); from
    probabilities they are the log of the probabilities clipped to [EPSILON, 1].
    """
    y_pred = ops.cast(y_pred, "float32")
    k = ops.shape(y_pred)[-1]
    if len(y_true.shape) == len(y_pred.shape) - 1:
        targets = ops.one_hot(ops.cast(y_true, "int32"), k, dtype="float32")
    else:
        targets = ops.cast(y_true, "float32")
    if from_logits:
        log_probs = ops.log_softmax(y_pred, axis=-1)
        probs = ops.exp(log_probs)
    else:
        probs = y_pred
        log_probs = ops.log(ops.clip(y_pred, EPSILON, 1.0))
    return targets, probs, log_probs


def region_counts(targets, probs):
    """Soft (true positives, false negatives, false positives) per example and class, [B, K] each."""
    axes = tuple(range(1, len(probs.shape) - 1))
    tp = ops.sum(targets * probs, axis=axes)
    fn = ops.sum(targets * (1.0 - probs), axis=axes)
    fp = ops.sum((1.0 - targets) * probs, axis=axes)
    return tp, fn, fp


def per_pixel_mean(values):
    """Mean over every axis but the batch axis: [B, ...] -> [B]."""
    axes = tuple(range(1, len(values.shape)))
    return ops.mean(values, axis=axes) if axes else values


def reduce_classes(per_class, reduction: str):
    """[B, K] -> [B] by mean or sum over classes."""
    if reduction == "mean":
        return ops.mean(per_class, axis=-1)
    if reduction == "sum":
        return ops.sum(per_class, axis=-1)
    raise ValueError(f"class_reduction must be one of {CLASS_REDUCTIONS}, got {reduction!r}")


def focal_power(base, exponent: float):
    """base ** exponent with base clamped to >= EPSILON: finite gradients at base 0 for exponents < 1."""
    if exponent == 0:
        return ops.ones_like(base)
    return ops.power(ops.maximum(base, EPSILON), exponent)
