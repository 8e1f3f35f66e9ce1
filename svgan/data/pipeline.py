"""tf.data input pipeline: sequences of T consecutive slices of one patient.

Each element is a dict:

- ``image`` [T, H, W, C] float32, ``label`` [T, H, W] int32 (or one-hot float32 [T, H, W, K]),
- ``disease`` int32 (-1 where the release gives no class),
- ``slice_index`` [T] int32: the slice each position holds, -1 for padding past the last slice,
- ``phase`` [T] int32: 0, or for ACDC 0 = ED and 1 = ES,
- ``patient`` string.

For ACDC a sequence holds T/2 slice positions at end-diastole followed by the
same positions at end-systole, so that the classifier sees the contraction.

Training streams patients from disk (``patients_in_flight`` at a time), draws
random windows, shuffles them and augments each sequence with one random
transform shared by all its slices, modalities and its mask (Rezaei et al.: random
crop, scaling, rotation in [-10, 10] degrees, Gaussian noise). Evaluation is
deterministic, never augmented, and covers every slice of every patient exactly
once (the last window of a patient is padded).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .._tf import import_tf
from ..config import Config
from .manifest import Manifest
from .prepare import load_prepared


def window_starts(num_slices: int, window: int, training: bool, rng: np.random.Generator | None = None,
                  count: int | None = None) -> list[int]:
    """First slice of each window of ``window`` positions over ``num_slices`` slices.

    Evaluation: 0, window, 2*window, ... so that each slice is covered exactly once.
    Training: ``count`` random starts (default: enough to cover the patient once),
    uniform over the positions where the window fits (0 if it never fits).
    """
    if not training:
        return list(range(0, num_slices, window))
    if count is None:
        count = max(1, math.ceil(num_slices / window))
    high = max(0, num_slices - window)
    return [int(s) for s in rng.integers(0, high + 1, size=count)]


def extract_sequence(image: np.ndarray, label: np.ndarray | None, start: int, length: int):
    """Window of a prepared patient (image [P, Z, H, W, C]): phases laid end to end, zero-padded.

    Returns (image [T, H, W, C], label [T, H, W], slice_index [T], phase [T]) with
    T = length * P.
    """
    n_phases, n_slices = image.shape[:2]
    idx = np.arange(start, start + length)
    valid = idx < n_slices
    shape = (n_phases * length,) + image.shape[2:]
    seq = np.zeros(shape, dtype=np.float32)
    lab = np.zeros(shape[:3], dtype=np.int32)
    for p in range(n_phases):
        seq[p * length: p * length + int(valid.sum())] = image[p, idx[valid]]
        if label is not None:
            lab[p * length: p * length + int(valid.sum())] = label[p, idx[valid]]
    slice_index = np.tile(np.where(valid, idx, -1), n_phases).astype(np.int32)
    phase = np.repeat(np.arange(n_phases), length).astype(np.int32)
    return seq, lab, slice_index, phase


def _affine_transform(tf, seed, height: int, width: int, out_h: int, out_w: int, aug, crop: bool = False,
                      centre=None, spread=None) -> "tf.Tensor":
    """One random projective transform (rotation, scale, shift) as the 8 ImageProjectiveTransform coefficients.

    The transform maps output pixel (x, y) to input pixel (x', y'); scaling up zooms in,
    which together with the shift is the random crop. ``crop``: the output is a window of
    out_h x out_w input pixels (no resizing) whose centre is drawn uniformly within ``spread``
    (rows, columns) of ``centre`` (row, column of input pixels), plus the usual shift; otherwise
    the whole image, shifted, is resized to the output size.
    """
    u = tf.random.stateless_uniform([4], seed=seed)
    theta = (2.0 * u[0] - 1.0) * aug.rotation_degrees * math.pi / 180.0
    scale = aug.scale_range[0] + u[1] * (aug.scale_range[1] - aug.scale_range[0])
    if centre is None:
        centre, spread = image_centre((height, width)), np.zeros(2, np.float32)
    shift_x = (2.0 * u[2] - 1.0) * (aug.max_shift_fraction * width + spread[1])
    shift_y = (2.0 * u[3] - 1.0) * (aug.max_shift_fraction * height + spread[0])
    # Output -> input: centre, undo output resizing, rotate by -theta, divide by the zoom, re-centre.
    sx, sy = (1.0, 1.0) if crop else (width / out_w, height / out_h)
    c, s = tf.cos(theta) / scale, tf.sin(theta) / scale
    cx_out, cy_out = (out_w - 1) / 2.0, (out_h - 1) / 2.0
    cx_in, cy_in = centre[1] + shift_x, centre[0] + shift_y
    a0, a1 = c * sx, s * sy
    b0, b1 = -s * sx, c * sy
    a2 = cx_in - a0 * cx_out - a1 * cy_out
    b2 = cy_in - b0 * cx_out - b1 * cy_out
    return tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]


def _window_transform(tf, centre, out_h: int, out_w: int) -> "tf.Tensor":
    """The translation whose output is the out_h x out_w window of input pixels centred, to the nearest
    whole pixel, on ``centre`` (row, column): an exact window, no interpolation."""
    top = tf.round(centre[0] - (out_h - 1) / 2.0)
    left = tf.round(centre[1] - (out_w - 1) / 2.0)
    return tf.stack([1.0, 0.0, left, 0.0, 1.0, top, 0.0, 0.0])[None]


def foreground_centre(label: np.ndarray) -> np.ndarray:
    """(row, column) of the mean position of the labelled voxels of a sequence's label [T, H, W];
    the image centre where nothing is labelled."""
    if not label.any():
        return image_centre(label.shape[1:])
    return np.array(ndimage.center_of_mass(label > 0)[1:], np.float32)


def image_centre(shape) -> np.ndarray:
    """(row, column) of the centre of an image of ``shape`` [H, W]."""
    return np.array([(shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0], np.float32)


def _warp_image_and_label(tf, image, label, transform, out_h, out_w):
    """``image`` (bilinear) and its integer ``label`` (nearest) through one transform."""
    image = _warp(tf, image, transform, out_h, out_w, "BILINEAR")
    label = tf.cast(_warp(tf, tf.cast(label[..., None], tf.float32), transform, out_h, out_w, "NEAREST")[..., 0], tf.int32)
    return image, label


def _warp(tf, images, transform, out_h, out_w, interpolation: str):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transform, output_shape=tf.constant([out_h, out_w], tf.int32),
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT")


CLASS_SAMPLING_EXPONENTS = {"natural": 1.0, "sqrt": 0.5, "balanced": 0.0}


def patient_draws(diseases: list, sampling: str, rng: np.random.Generator) -> np.ndarray:
    """Patient indices for one training epoch under ``pipeline.class_sampling``.

    "natural": every patient once, shuffled. Otherwise len(diseases) draws with replacement:
    class c (None, unknown, is a class of its own) with probability proportional to
    n_c ** exponent (sqrt: 0.5, balanced: 0), then a patient of that class uniformly.
    """
    n = len(diseases)
    if sampling == "natural":
        return rng.permutation(n)
    keys = ["?" if d is None else str(d) for d in diseases]
    counts = {k: keys.count(k) for k in set(keys)}
    shares = class_draw_shares(counts, sampling)
    probs = np.array([shares[k] / counts[k] for k in keys])
    return rng.choice(n, size=n, replace=True, p=probs / probs.sum())


def class_draw_shares(counts: dict, sampling: str) -> dict:
    """The share of training draws that each class gets under ``pipeline.class_sampling``.

    ``counts`` maps a class to its number of training patients; the share is proportional to
    count ** exponent (natural 1, sqrt 0.5, balanced 0). This is the class prior the disease
    head sees during training.
    """
    exponent = CLASS_SAMPLING_EXPONENTS[sampling]
    mass = {k: c ** exponent for k, c in counts.items() if c > 0}
    total = sum(mass.values())
    return {k: mass.get(k, 0.0) / total for k in counts}


def _change_intensity(tf, image, seed, aug):
    """``image`` (one sequence) with the contrast factor and gamma of ``aug`` drawn for ``seed``: the
    same change for every slice, so a patient's slices stay comparable."""
    if list(aug.contrast_range) != [1.0, 1.0]:
        lo, hi = aug.contrast_range
        image = image * tf.random.stateless_uniform([], seed=seed + 1, minval=lo, maxval=hi)
    if list(aug.gamma_range) != [1.0, 1.0]:
        lo, hi = aug.gamma_range
        gamma = tf.random.stateless_uniform([], seed=seed + 2, minval=lo, maxval=hi)
        low, high = tf.reduce_min(image), tf.reduce_max(image)
        spread = tf.maximum(high - low, 1e-6)
        image = low + spread * ((image - low) / spread) ** gamma
    return image


def make_dataset(manifest: Manifest, split: str, cfg: Config, training: bool, seed: int | None = None,
                 patient_ids: list[str] | None = None):
    """A tf.data.Dataset of batched sequences for one split (see the module docstring)."""
    tf = import_tf()
    pipe, aug = cfg.pipeline, cfg.augment
    seed = cfg.seed if seed is None else seed
    ids = patient_ids if patient_ids is not None else manifest.split_ids(split)
    if not ids:
        raise ValueError(f"split {split!r} of {manifest.root} has no prepared patients")
    n_phases = len(manifest.patients[ids[0]]["phases"])
    length = pipe.sequence_length // n_phases  # slice positions per phase
    seq_len = length * n_phases
    h, w = map(int, manifest.patients[ids[0]]["crop"]["output_shape"][:2])
    channels = len(manifest.data["modalities"])
    out_h, out_w = (pipe.image_size or [h, w])
    crop = training and bool(pipe.crop_size)
    if crop:
        out_h, out_w = pipe.crop_size
    # The share of training windows centred on the labelled voxels; the rest may sit anywhere they fit.
    on_foreground = (pipe.foreground_fraction if pipe.crop_placement == "foreground" else 0.0) if crop else 0.0
    anywhere_spread = np.array([max(0, h - out_h) / 2.0, max(0, w - out_w) / 2.0], np.float32)
    num_classes = len(manifest.class_names)

    def placement(lab, rng):
        """(centre, spread) of a training window: its centre is drawn within spread of centre."""
        if on_foreground >= 1 or (on_foreground > 0 and rng.random() < on_foreground):
            return foreground_centre(lab), np.zeros(2, np.float32)
        return image_centre(lab.shape[1:]), anywhere_spread if crop else np.zeros(2, np.float32)

    def windows(index, random_seed):
        pid = ids[int(index)]
        image, label = load_prepared(manifest.patient_file(pid))
        rng = np.random.default_rng([int(random_seed) & 0x7FFFFFFF, int(index)])
        disease = manifest.patients[pid]["disease"]
        for start in window_starts(image.shape[1], length, training, rng, pipe.windows_per_patient):
            seq, lab, slice_index, phase = extract_sequence(image, label, start, length)
            centre, spread = placement(lab, rng)
            yield seq, lab, np.int32(-1 if disease is None else disease), slice_index, phase, pid.encode(), centre, spread

    signature = (
        tf.TensorSpec([seq_len, h, w, channels], tf.float32),
        tf.TensorSpec([seq_len, h, w], tf.int32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([seq_len], tf.int32),
        tf.TensorSpec([seq_len], tf.int32),
        tf.TensorSpec([], tf.string),
        tf.TensorSpec([2], tf.float32),
        tf.TensorSpec([2], tf.float32),
    )

    def patient_windows(index, random_seed):
        return tf.data.Dataset.from_generator(windows, args=(index, random_seed), output_signature=signature)

    patients = tf.data.Dataset.range(len(ids))
    if training and pipe.class_sampling != "natural":
        draws = patient_draws([manifest.patients[pid]["disease"] for pid in ids], pipe.class_sampling,
                              np.random.default_rng([seed & 0x7FFFFFFF, 11]))
        patients = tf.data.Dataset.from_tensor_slices(draws.astype(np.int64))
    elif training:
        patients = patients.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(patients, randoms).interleave(
        patient_windows, cycle_length=pipe.patients_in_flight if training else 1, block_length=1,
        num_parallel_calls=None)
    if training:
        ds = ds.shuffle(pipe.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)

    def to_dict(image, label, disease, slice_index, phase, patient, centre, spread, element_seed=None):
        if training and aug.enabled:
            s = tf.stack([element_seed, tf.constant(seed, tf.int64)])
            transform = _affine_transform(tf, s, h, w, out_h, out_w, aug, crop, centre, spread)
            image, label = _warp_image_and_label(tf, image, label, transform, out_h, out_w)
            image = _change_intensity(tf, image, s, aug)
            if aug.noise_std > 0:
                noise = tf.random.stateless_normal(tf.shape(image), seed=s[::-1])
                image = image + aug.noise_std * noise
        elif on_foreground > 0:  # not augmented: the window on the foreground, or the central one
            image, label = _warp_image_and_label(tf, image, label, _window_transform(tf, centre, out_h, out_w), out_h, out_w)
        elif crop:  # not augmented: the central window
            image = tf.image.resize_with_crop_or_pad(image, out_h, out_w)
            label = tf.image.resize_with_crop_or_pad(label[..., None], out_h, out_w)[..., 0]
        elif (out_h, out_w) != (h, w):
            image = tf.image.resize(image, (out_h, out_w), method="bilinear")
            label = tf.cast(tf.image.resize(label[..., None], (out_h, out_w), method="nearest")[..., 0], tf.int32)
        if pipe.one_hot:
            label = tf.one_hot(label, num_classes, dtype=tf.float32)
        return {"image": image, "label": label, "disease": disease, "slice_index": slice_index,
                "phase": phase, "patient": patient}

    if training and aug.enabled:
        element_seeds = tf.data.Dataset.random(seed=seed + 2, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, element_seeds).map(
            lambda el, s: to_dict(*el, element_seed=s), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(to_dict, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(pipe.batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
