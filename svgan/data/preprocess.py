"""Preprocessing of one patient (Rezaei et al., section 3) and its exact inverse for labels.

Order: N4 bias-field correction -> z-score inside the foreground -> resampling
to the target spacing -> crop box -> resize to the in-plane size; the Nyul-Udupa
mapping (``apply_nyul``) comes last, once the standard landmarks are known.
The percentiles that Nyul needs are taken on the native foreground, before any
interpolation.

Prepared arrays are slice-major: image [P, Z, H, W, C], label [P, Z, H, W], with
H along the first array axis of the input and W along the second.

``CropRecord`` holds everything needed to map a prepared label map back onto the
input grid (``restore_labels``); a prediction written with it lines up with the
input in a viewer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..config import PrepareConfig
from ..errors import DataError
from .readers import PatientVolume


@dataclass
class CropRecord:
    """Maps between the input grid and the prepared grid (all in array-axis order x, y, z)."""

    input_shape: list[int]  # shape of the input volume
    input_spacing: list[float]  # header zooms of the input
    resampled_shape: list[int]  # shape after resampling to the target spacing
    box_start: list[int]  # crop box in the resampled grid; may reach outside it (zero fill)
    box_stop: list[int]
    output_shape: list[int]  # (H, W, Z) of the prepared arrays

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class PreparedPatient:
    patient_id: str
    disease: int | None
    image: np.ndarray  # [P, Z, H, W, C] float32
    label: np.ndarray | None  # [P, Z, H, W] uint8
    crop: CropRecord
    percentiles: np.ndarray  # [C, L] z-scored foreground intensities at the Nyul percentiles
    notes: list[str]
    foreground_voxels: int  # foreground voxels of one phase on the input grid


# ---------------------------------------------------------------- intensity steps

def n4_correct(volume: np.ndarray, mask: np.ndarray, spacing, shrink_factor: int, iterations: list[int]) -> np.ndarray:
    """N4 bias-field correction (SimpleITK) fitted on a shrunk copy, applied at full resolution."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.transpose(volume, (2, 1, 0)).astype(np.float32))
    image.SetSpacing([float(s) for s in spacing])
    mask_img = sitk.GetImageFromArray(np.transpose(mask, (2, 1, 0)).astype(np.uint8))
    mask_img.CopyInformation(image)
    shrink = [max(1, min(shrink_factor, s // 4)) for s in image.GetSize()]
    small = sitk.Shrink(image, shrink)
    small_mask = sitk.Shrink(mask_img, shrink)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
    corrector.Execute(small, small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(image)
    bias = np.transpose(sitk.GetArrayFromImage(log_bias), (2, 1, 0))
    return (volume / np.exp(bias)).astype(np.float32)


def zscore(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance inside the mask; the background is set to 0."""
    values = volume[mask]
    std = values.std()
    out = np.zeros_like(volume, dtype=np.float32)
    out[mask] = (values - values.mean()) / (std if std > 0 else 1.0)
    return out


def learn_nyul_landmarks(percentiles: list[np.ndarray]) -> np.ndarray:
    """Standard landmarks [C, L]: the mean over training patients of their foreground percentiles.

    Nyul, Udupa & Zhang (IEEE TMI 2000) map each image's percentile landmarks onto a
    standard scale; as the images are already z-scored, the mean training landmarks are
    that scale, which keeps the values in z-score units.
    """
    if not percentiles:
        raise DataError("Nyul standardisation needs at least one prepared training patient")
    return np.mean(np.stack(percentiles), axis=0)


def nyul_map(values: np.ndarray, landmarks: np.ndarray, standard: np.ndarray) -> np.ndarray:
    """Piecewise-linear map landmarks -> standard, extended linearly beyond both ends."""
    landmarks = np.array(landmarks, dtype=np.float64)
    for i in range(1, len(landmarks)):  # ties (e.g. a constant background percentile) must not divide by 0
        landmarks[i] = max(landmarks[i], landmarks[i - 1] + 1e-6)
    out = np.interp(values, landmarks, standard)
    lo_slope = (standard[1] - standard[0]) / (landmarks[1] - landmarks[0])
    hi_slope = (standard[-1] - standard[-2]) / (landmarks[-1] - landmarks[-2])
    out = np.where(values < landmarks[0], standard[0] + (values - landmarks[0]) * lo_slope, out)
    out = np.where(values > landmarks[-1], standard[-1] + (values - landmarks[-1]) * hi_slope, out)
    return out.astype(np.float32)


def apply_nyul(image: np.ndarray, percentiles: np.ndarray, standard: np.ndarray) -> None:
    """Map a prepared image [..., C] in place; background (exactly 0 after z-score) stays 0."""
    for c in range(image.shape[-1]):
        channel = image[..., c]
        fg = channel != 0
        channel[fg] = nyul_map(channel[fg], percentiles[c], standard[c])


# ---------------------------------------------------------------- geometry steps

def _resample(volume: np.ndarray, shape, order: int) -> np.ndarray:
    if tuple(shape) == volume.shape:
        return volume
    factors = [n / o for n, o in zip(shape, volume.shape)]
    # grid_mode aligns voxel edges, so that resampling there and back is the same physical grid.
    return ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)


def _extract_box(volume: np.ndarray, start, stop) -> np.ndarray:
    """volume[start:stop] with zero fill wherever the box leaves the volume."""
    out = np.zeros([b - a for a, b in zip(start, stop)], dtype=volume.dtype)
    src = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(start, stop, volume.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, start))
    if all(s.stop > s.start for s in src):
        out[dst] = volume[src]
    return out


def _box(reference_start, reference_stop, target_hw, allow_resize: bool):
    """Crop box centred on the reference box, of the target in-plane size times a scale >= 1."""
    size = [b - a for a, b in zip(reference_start, reference_stop)]
    scale = 1.0
    if allow_resize:
        scale = max(1.0, size[0] / target_hw[0], size[1] / target_hw[1])
    start, stop = list(reference_start), list(reference_stop)
    for axis in (0, 1):
        box_size = int(math.ceil(target_hw[axis] * scale - 1e-9))
        centre = (reference_start[axis] + reference_stop[axis]) / 2.0
        start[axis] = int(math.floor(centre - box_size / 2.0 + 0.5))
        stop[axis] = start[axis] + box_size
    return start, stop


def preprocess_patient(volume: PatientVolume, cfg: PrepareConfig,
                       foreground_threshold: float | None = None,
                       nyul_standard: np.ndarray | None = None) -> PreparedPatient:
    """Run every preprocessing step on one patient (Nyul only when ``nyul_standard`` is given)."""
    image = volume.image.astype(np.float32)  # [P, X, Y, Z, C]
    n_phases, n_channels = image.shape[0], image.shape[-1]
    spacing = [float(s) for s in volume.geometry[0].spacing]
    threshold = cfg.foreground_threshold if foreground_threshold is None else foreground_threshold
    notes: list[str] = []

    if volume.foreground is not None:
        foreground = volume.foreground
    else:
        foreground = np.any(image > threshold, axis=(0, 4))
    if not foreground.any():
        raise DataError("image has no foreground voxels (all values <= "
                        f"{threshold}); is the file empty?", volume.geometry[0].path)

    percentiles = np.zeros((n_channels, len(cfg.nyul_percentiles)), dtype=np.float32)
    for c in range(n_channels):
        fg_values = []
        for p in range(n_phases):
            channel = image[p, ..., c]
            if cfg.n4_bias_correction:
                if channel[foreground].min() < 0:
                    notes.append(f"N4 skipped for channel {c}: negative intensities (already normalised data)")
                else:
                    channel = n4_correct(channel, foreground, spacing, cfg.n4_shrink_factor, cfg.n4_iterations)
            if cfg.zscore:
                channel = zscore(channel, foreground)
            else:
                channel = np.where(foreground, channel, 0.0).astype(np.float32)
            image[p, ..., c] = channel
            fg_values.append(channel[foreground])
        percentiles[c] = np.percentile(np.concatenate(fg_values), cfg.nyul_percentiles)

    # Resample to the target spacing (null keeps an axis native).
    target = [s if t is None else float(t) for s, t in zip(spacing, cfg.target_spacing)]
    resampled_shape = [max(1, int(round(n * s / t))) for n, s, t in zip(foreground.shape, spacing, target)]
    fg_resampled = _resample(foreground.astype(np.uint8), resampled_shape, 0).astype(bool)

    # Crop box in the resampled grid.
    if cfg.crop == "foreground":
        where = np.argwhere(fg_resampled)
        ref_start, ref_stop = list(where.min(0)), list(where.max(0) + 1)
    else:
        ref_start, ref_stop = [0, 0, 0], list(resampled_shape)
    start, stop = _box(ref_start, ref_stop, cfg.image_size, allow_resize=cfg.crop != "center")
    box_shape = [b - a for a, b in zip(start, stop)]
    out_hwz = [int(cfg.image_size[0]), int(cfg.image_size[1]), int(box_shape[2])]

    def forward(vol: np.ndarray, order: int) -> np.ndarray:
        vol = _resample(vol, resampled_shape, order)
        vol = _extract_box(vol, start, stop)
        return np.transpose(_resample(vol, out_hwz, order), (2, 0, 1))  # -> [Z, H, W]

    prepared = np.zeros((n_phases, out_hwz[2], out_hwz[0], out_hwz[1], n_channels), dtype=np.float32)
    for p in range(n_phases):
        for c in range(n_channels):
            prepared[p, ..., c] = forward(image[p, ..., c], 1)
    # Keep the background exactly 0 after interpolation (Nyul and the model rely on it).
    prepared *= (forward(foreground.astype(np.uint8), 0) > 0)[None, ..., None]
    label = None
    if volume.label is not None:
        label = np.stack([forward(volume.label[p], 0) for p in range(n_phases)]).astype(np.uint8)
        lost = int(np.count_nonzero(volume.label)) - _count_labels_kept(volume.label, start, stop, resampled_shape)
        if lost > 0:
            notes.append(f"{lost} labelled voxels lie outside the crop box")

    crop = CropRecord(list(foreground.shape), spacing, resampled_shape, [int(s) for s in start],
                      [int(s) for s in stop], out_hwz)
    result = PreparedPatient(volume.patient_id, volume.disease, prepared, label, crop, percentiles, notes,
                             int(np.count_nonzero(foreground)))
    if nyul_standard is not None:
        apply_nyul(result.image, percentiles, nyul_standard)
    return result


def _count_labels_kept(label: np.ndarray, start, stop, resampled_shape) -> int:
    """Labelled input voxels whose position falls inside the crop box (in the resampled grid)."""
    count = 0
    for p in range(label.shape[0]):
        idx = np.argwhere(label[p] > 0)
        if idx.size == 0:
            continue
        pos = (idx + 0.5) * np.asarray(resampled_shape) / np.asarray(label.shape[1:])
        inside = np.all((pos >= np.asarray(start)) & (pos <= np.asarray(stop)), axis=1)
        count += int(inside.sum())
    return count


def _restore(volume: np.ndarray, crop: CropRecord, order: int, outside) -> np.ndarray:
    """Inverse of the geometry steps for one map: [Z, H, W] prepared -> input grid [X, Y, Z], ``outside``
    wherever the crop box did not reach."""
    box_shape = [b - a for a, b in zip(crop.box_start, crop.box_stop)]
    vol = np.transpose(volume, (1, 2, 0))  # -> [H, W, Z]
    vol = _resample(vol, box_shape, order)
    resampled = np.full(crop.resampled_shape, outside, dtype=volume.dtype)
    src = tuple(slice(max(a, 0) - a, min(b, n) - a) for a, b, n in zip(crop.box_start, crop.box_stop, crop.resampled_shape))
    dst = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(crop.box_start, crop.box_stop, crop.resampled_shape))
    resampled[dst] = vol[src]
    return _resample(resampled, crop.input_shape, order)


def restore_labels(label: np.ndarray, crop: CropRecord) -> np.ndarray:
    """Inverse of the geometry steps for one label map: [Z, H, W] prepared -> input grid [X, Y, Z] (nearest)."""
    return _restore(label, crop, 0, 0)


def restore_probabilities(probs: np.ndarray, crop: CropRecord) -> np.ndarray:
    """Class probabilities [Z, H, W, K] on the prepared grid -> the input grid [X, Y, Z, K], linearly
    interpolated, background (class 0) outside the crop box. Their argmax draws the boundary between
    the prepared grid's samples, where nearest-neighbour labels would put it on the coarser grid's
    staircase (nnU-Net resamples its softmax the same way)."""
    return np.stack([_restore(probs[..., k].astype(np.float32), crop, 1, 1.0 if k == 0 else 0.0)
                     for k in range(probs.shape[-1])], axis=-1)
