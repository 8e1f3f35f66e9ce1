"""Test-time augmentation: class probabilities averaged over rotated and scaled views of a patient.

Each view turns every slice of the patient by one similarity transform about the image
centre, of the kind the training augmentation draws (Rezaei et al.'s in-plane rotations, our
scalings): the whole patient is inferred on it (``inference.predict_patient``), its class
probabilities are turned back onto the original grid, and the views' probabilities are
averaged with those of the unchanged patient; so are the disease probabilities. No flips: the
heart's left-right layout is fixed in cine MRI and the training augmentation never mirrors,
so a mirrored view shows the model anatomy it has not seen (a one-off check on real ACDC
validation patients lost RV Dice with every flip).

``postprocess.test_time_views`` lists the views as [degrees, scale] pairs; the empty list (the
default, Rezaei et al.'s inference) predicts the patient once.
"""

from __future__ import annotations

import math

import numpy as np

from .._tf import import_tf
from .inference import predict_patient


def similarity_transform(degrees: float, scale: float, height: int, width: int) -> np.ndarray:
    """The 8 ImageProjectiveTransform coefficients (output pixel -> input pixel) of a view turned by
    ``degrees`` and zoomed by ``scale`` (> 1 zooms in) about the centre of a height x width image."""
    theta = math.radians(degrees)
    c, s = math.cos(theta) / scale, math.sin(theta) / scale
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return np.array([[c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy, 0.0, 0.0]], np.float32)


def warp(volume: np.ndarray, transform: np.ndarray, fill_mode: str) -> np.ndarray:
    """Every [H, W, C] map of ``volume`` [..., H, W, C] through ``transform`` (bilinear)."""
    tf = import_tf()
    h, w, c = volume.shape[-3:]
    flat = np.ascontiguousarray(volume, np.float32).reshape(-1, h, w, c)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=flat, transforms=transform, output_shape=tf.constant([h, w], tf.int32), fill_value=0.0,
        interpolation="BILINEAR", fill_mode=fill_mode)
    return out.numpy().reshape(volume.shape[:-1] + (out.shape[-1],))


def predict_patient_views(predict_fn, image: np.ndarray, sequence_length: int, batch_size: int = 2,
                          model_size=None, mode: str = "central", views=()) -> tuple[np.ndarray, np.ndarray]:
    """``predict_patient`` on the patient as it is and on each of ``views`` ([degrees, scale] pairs),
    the probabilities of each view turned back and all of them averaged."""
    probs, disease = predict_patient(predict_fn, image, sequence_length, batch_size, model_size, mode)
    if not views:
        return probs, disease
    h, w = image.shape[2:4]
    probs, disease = probs.astype(np.float64), disease.astype(np.float64)
    for degrees, scale in views:
        # The image outside the field reads as 0 (the z-scored mean, as the training warps fill it);
        # probabilities turned back are extended from the view's edge, which lies in the background.
        view = warp(image, similarity_transform(degrees, scale, h, w), "CONSTANT")
        view_probs, view_disease = predict_patient(predict_fn, view, sequence_length, batch_size, model_size, mode)
        probs += warp(view_probs, similarity_transform(-degrees, 1.0 / scale, h, w), "NEAREST")
        disease += view_disease
    n = len(views) + 1
    return (probs / n).astype(np.float32), (disease / n).astype(np.float32)
