"""Whole-patient inference with a generator: every slice, window by window.

A prepared patient (image [P, Z, H, W, C]) is cut into windows of the model's
sequence length and reassembled into per-slice class probabilities [P, Z, H, W, K].
Three ways (``WINDOW_MODES``):

- ``central`` (the default): windows every half window, as ``average`` reads them, at
  about the cost of one pass. The encoder and decoder work slice by slice and only the
  bidirectional recurrence in the bottleneck reads across slices, so each slice is
  encoded once, the (cheap) recurrence runs over every overlapping window, and each
  slice is decoded once, from the window in which it sits most centrally: there its
  recurrent features have context on both sides. Encoder outputs are kept only while a
  window still needs them, so memory does not grow with the number of slices.
- ``average``: the whole generator on windows every half window, the probabilities of a
  slice seen by several windows averaged (twice the arithmetic of one pass).
- ``single``: the whole generator on consecutive windows, each slice once, those near a
  window's edge with context from one side only (the training pipeline's evaluation windows).

Patient-level disease rule: the generator gives, per window, the mean of its
slices' class probabilities (or the volume head's answer); the patient's probabilities are
the mean of its windows' probabilities weighted by the number of voxels the window predicts
as non-background, so that windows showing the lesion (or the heart) decide and windows of
healthy tissue, which carry no evidence of the class, do not. Where no window predicts any
foreground, windows count by their number of real slices. In ``central`` mode a window's
disease head reads its slices as they were decoded (each from its own most central window)
with this window's own recurrent features.
"""

from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..data.pipeline import extract_sequence, window_starts

WINDOW_MODES = ("central", "average", "single")


class Predictor:
    """A generator ready for whole-patient inference: compiled calls of the whole model on
    windows (``predictor(images)`` -> segmentation and disease probabilities) and of its parts
    (``svgan.models.parts``) for the ``central`` mode."""

    def __init__(self, generator):
        from ..models.parts import split_generator  # imports Keras: only once a model is there to predict with

        tf = import_tf()
        self.generator = generator
        self.parts = split_generator(generator)
        compiled = lambda fn: tf.function(fn, reduce_retracing=True)  # noqa: E731  (variable batch and T)
        parts = self.parts

        def window(images):
            out = generator(images, training=False)
            return tf.nn.softmax(out["segmentation"]), tf.nn.softmax(out["disease"])

        def recurrence(sequence):
            recurrent = parts.recurrence(sequence, training=False)
            if not parts.head_from_recurrence:
                return recurrent, recurrent
            return recurrent, recurrent if parts.recurrent_vectors is None else parts.recurrent_vectors(recurrent, training=False)

        def decode(inputs):
            seg, *features = parts.decoder(inputs, training=False)
            return tf.nn.softmax(seg), features

        self.window = compiled(window)
        self.encode = compiled(lambda slices: parts.encoder(slices, training=False))
        self.recurrence = compiled(recurrence)
        self.decode = compiled(decode)
        self.head = compiled(lambda inputs: tf.nn.softmax(parts.head(inputs, training=False)))

    def __call__(self, images):
        return self.window(images)


def make_predict_fn(generator) -> Predictor:
    """A ``Predictor`` for the generator (variable T and batch)."""
    return Predictor(generator)


def overlapping_starts(num_slices: int, window: int) -> list[int]:
    """Window starts every half window, the last one ending on the last slice."""
    if num_slices <= window:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, num_slices - window + 1, stride))
    if starts[-1] + window < num_slices:
        starts.append(num_slices - window)
    return starts


def central_owners(num_slices: int, starts: list[int], window: int) -> np.ndarray:
    """For each slice, the index of the window (of ``starts``) whose centre is nearest to it; ties
    go to the earlier window. Every window holds the slices it owns."""
    centres = np.asarray(starts, float) + (window - 1) / 2.0
    return np.argmin(np.abs(np.arange(num_slices)[:, None] - centres[None, :]), axis=1)


def _resize(tf, volume, size):
    """[..., h, w, c] resized in-plane to ``size`` (bilinear)."""
    lead, (h, w, c) = volume.shape[:-3], volume.shape[-3:]
    flat = tf.image.resize(tf.reshape(volume, (-1, h, w, c)), size)
    return tf.reshape(flat, (*lead, *size, c)).numpy()


def predict_patient(predict_fn: Predictor, image: np.ndarray, sequence_length: int, batch_size: int = 2,
                    model_size: tuple[int, int] | None = None, mode: str = "central") -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities [P, Z, H, W, K], disease probabilities [M]) for one prepared patient;
    ``mode``: one of ``WINDOW_MODES``."""
    if mode not in WINDOW_MODES:
        raise ValueError(f"unknown window mode {mode!r} (known: {', '.join(WINDOW_MODES)})")
    tf = import_tf()
    n_phases, n_slices, h, w = image.shape[:4]
    length = sequence_length // n_phases
    resized = model_size is not None and tuple(model_size) != (h, w)
    x = _resize(tf, image, tuple(model_size)) if resized else image
    if mode == "central" and n_slices > length:
        probs, disease = _central(predict_fn, x, length, batch_size)
    else:
        starts = overlapping_starts(n_slices, length) if mode == "average" else window_starts(n_slices, length, training=False)
        probs, disease = _whole_windows(predict_fn, x, length, batch_size, starts)
    if resized:
        probs = _resize(tf, probs, (h, w))
    return probs, disease


def _whole_windows(predict_fn, image, length: int, batch_size: int, starts: list[int]):
    """The whole generator on the windows at ``starts``, probabilities averaged where they overlap."""
    n_phases, n_slices = image.shape[:2]
    sequences, indices = [], []
    for start in starts:
        seq, _, slice_index, _ = extract_sequence(image, None, start, length)
        sequences.append(seq)
        indices.append(slice_index)
    probs = seen = None
    window_probs, fg_weights, slice_weights = [], [], []
    for b in range(0, len(sequences), batch_size):
        seg, disease = (v.numpy() for v in predict_fn(np.stack(sequences[b:b + batch_size])))
        if probs is None:
            probs = np.zeros((n_phases, n_slices, *seg.shape[2:]), np.float32)
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


def _central(predict_fn: Predictor, image, length: int, batch_size: int):
    """``central`` mode on a patient longer than one window (so every window is full, never padded)."""
    n_phases, n_slices = image.shape[:2]
    starts = overlapping_starts(n_slices, length)
    owners = central_owners(n_slices, starts, length)
    chunk = max(1, batch_size) * n_phases * length  # slices per encoder or decoder call
    encoded = {}  # (phase, slice) -> encoder outputs (skips..., bottleneck), while a window needs them
    probs = features = foreground = None
    window_vectors = []
    for k, start in enumerate(starts):
        keys = [(p, z) for p in range(n_phases) for z in range(start, start + length)]  # the window's layout
        new = [key for key in keys if key not in encoded]
        for b in range(0, len(new), chunk):
            outputs = [t.numpy() for t in predict_fn.encode(np.stack([image[key] for key in new[b:b + chunk]]))]
            for i, key in enumerate(new[b:b + chunk]):
                encoded[key] = [t[i] for t in outputs]
        sequence = np.stack([encoded[key][-1] for key in keys])[None]
        recurrent, vectors = (t[0].numpy() for t in predict_fn.recurrence(sequence))
        window_vectors.append(vectors)
        owned = [i for i, (_, z) in enumerate(keys) if owners[z] == k]
        for b in range(0, len(owned), chunk):
            rows = owned[b:b + chunk]
            skips = [np.stack([encoded[keys[i]][level] for i in rows]) for level in range(len(encoded[keys[0]]) - 1)]
            bottleneck = np.stack([encoded[keys[i]][-1] for i in rows])
            seg, slice_features = predict_fn.decode([bottleneck, recurrent[rows], *skips])
            seg, slice_features = seg.numpy(), [f.numpy() for f in slice_features]
            if probs is None:
                probs = np.zeros((n_phases, n_slices, *seg.shape[1:]), np.float32)
                features = [np.zeros((n_phases, n_slices, *f.shape[1:]), np.float32) for f in slice_features]
                foreground = np.zeros((n_phases, n_slices))
            for j, i in enumerate(rows):
                probs[keys[i]] = seg[j]
                foreground[keys[i]] = np.sum(seg[j].argmax(-1) > 0)
                for store, f in zip(features, slice_features):
                    store[keys[i]] = f[j]
        following = starts[k + 1] if k + 1 < len(starts) else n_slices
        encoded = {key: v for key, v in encoded.items() if key[1] >= following}
    # Each window's disease from its slices as decoded, laid out as the window was: phase blocks.
    windowed = [np.stack([f[:, s:s + length].reshape(n_phases * length, *f.shape[2:]) for s in starts]) for f in features]
    if predict_fn.parts.head_from_recurrence:
        windowed.append(np.stack(window_vectors))
    window_probs = predict_fn.head(windowed).numpy()
    fg_weights = [float(foreground[:, s:s + length].sum()) for s in starts]
    return probs, patient_disease(window_probs, fg_weights, [float(n_phases * length)] * len(starts))


def patient_disease(window_probs, foreground_voxels, real_slices) -> np.ndarray:
    """The patient's disease probabilities [M] from its windows' [W, M]: the mean weighted by each
    window's predicted foreground voxels, or by its real slices where no window has foreground."""
    weights = np.asarray(foreground_voxels if np.sum(foreground_voxels) > 0 else real_slices, float)
    return (weights[:, None] * np.asarray(window_probs)).sum(0) / weights.sum()
