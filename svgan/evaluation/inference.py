"""Whole-patient inference with a generator: every slice, window by window.

A prepared patient (image [P, Z, H, W, C]) is cut into windows of the model's
sequence length, run through the generator a few windows at a time (so that
memory does not grow with the number of slices), and reassembled into
per-slice class probabilities [P, Z, H, W, K]. With ``overlap`` the windows
advance by half their length and the probabilities of a slice seen by several
windows are averaged (a slice near a window's edge sees the recurrence from one
side only); without it each slice is seen once, as in the pipeline's evaluation
mode (cheaper, used for validation during training).

Patient-level disease rule: the generator gives, per window, the mean of its
slices' class probabilities; the patient's probabilities are the mean of its
windows' probabilities weighted by the number of voxels the window predicts as
non-background, so that windows showing the lesion (or the heart) decide and
windows of healthy tissue, which carry no evidence of the class, do not. Where no
window predicts any foreground, windows count by their number of real slices.
"""

from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..data.pipeline import extract_sequence, window_starts


def make_predict_fn(generator):
    """A compiled inference function (variable T and batch) for the generator."""
    tf = import_tf()

    @tf.function(reduce_retracing=True)
    def predict(images):
        out = generator(images, training=False)
        return tf.nn.softmax(out["segmentation"]), tf.nn.softmax(out["disease"])

    return predict


def overlapping_starts(num_slices: int, window: int) -> list[int]:
    """Window starts every half window, the last one ending on the last slice."""
    if num_slices <= window:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, num_slices - window + 1, stride))
    if starts[-1] + window < num_slices:
        starts.append(num_slices - window)
    return starts


def predict_patient(predict_fn, image: np.ndarray, sequence_length: int, batch_size: int = 2,
                    model_size: tuple[int, int] | None = None, overlap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities [P, Z, H, W, K], disease probabilities [M]) for one prepared patient."""
    tf = import_tf()
    n_phases, n_slices, h, w = image.shape[:4]
    length = sequence_length // n_phases
    sequences, indices = [], []
    starts = overlapping_starts(n_slices, length) if overlap else window_starts(n_slices, length, training=False)
    for start in starts:
        seq, _, slice_index, _ = extract_sequence(image, None, start, length)
        sequences.append(seq)
        indices.append(slice_index)
    probs = None
    window_probs, fg_weights, slice_weights = [], [], []
    for b in range(0, len(sequences), batch_size):
        x = tf.constant(np.stack(sequences[b:b + batch_size]))
        if model_size is not None and tuple(model_size) != (h, w):
            x = tf.reshape(tf.image.resize(tf.reshape(x, (-1, h, w, x.shape[-1])), model_size), (x.shape[0], x.shape[1], *model_size, x.shape[-1]))
        seg, disease = predict_fn(x)
        if model_size is not None and tuple(model_size) != (h, w):
            k = seg.shape[-1]
            seg = tf.reshape(tf.image.resize(tf.reshape(seg, (-1, *model_size, k)), (h, w)), (seg.shape[0], seg.shape[1], h, w, k))
        seg, disease = seg.numpy(), disease.numpy()
        if probs is None:
            probs = np.zeros((n_phases, n_slices, h, w, seg.shape[-1]), np.float32)
            seen = np.zeros((n_phases, n_slices), np.float32)
        for i, slice_index in enumerate(indices[b:b + batch_size]):
            valid = slice_index >= 0
            for p in range(n_phases):
                rows = np.arange(p * length, (p + 1) * length)[valid[p * length:(p + 1) * length]]
                probs[p, slice_index[rows]] += seg[i, rows]
                seen[p, slice_index[rows]] += 1
            window_probs.append(disease[i])
            fg_weights.append(float(np.sum(seg[i, valid].argmax(-1) > 0)))
            slice_weights.append(float(valid.sum()))
    probs /= seen[..., None, None, None]
    return probs, patient_disease(window_probs, fg_weights, slice_weights)


def patient_disease(window_probs, foreground_voxels, real_slices) -> np.ndarray:
    """The patient's disease probabilities [M] from its windows' [W, M]: the mean weighted by each
    window's predicted foreground voxels, or by its real slices where no window has foreground."""
    weights = np.asarray(foreground_voxels if np.sum(foreground_voxels) > 0 else real_slices, float)
    return (weights[:, None] * np.asarray(window_probs)).sum(0) / weights.sum()
