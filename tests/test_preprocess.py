"""Intensity steps against hand/NumPy values, and the geometry steps against their inverse."""

import os

import numpy as np
import pytest

from svgan.config import PrepareConfig
from svgan.data.preprocess import (learn_nyul_landmarks, n4_correct, nyul_map, preprocess_patient,
                                   restore_labels, restore_probabilities, zscore)
from svgan.data.readers import PatientVolume
from svgan.data.datasets import discover_patients, load_patient
from svgan.data.io import Geometry

from conftest import SHARED_DATA, requires_shared_data


def _patient(image, label=None, spacing=(1.0, 1.0, 1.0), foreground=None, disease=0):
    """PatientVolume from [X, Y, Z] or [P, X, Y, Z, C] arrays."""
    if image.ndim == 3:
        image = image[None, ..., None]
    if label is not None and label.ndim == 3:
        label = label[None]
    geom = Geometry(np.diag(list(spacing) + [1.0]), tuple(spacing), image.shape[1:4], "mem.nii.gz")
    return PatientVolume("p", disease, image.astype(np.float32), label, [geom] * image.shape[0],
                         ("volume",) * image.shape[0], ("x",) * image.shape[-1], foreground)


def test_zscore_inside_the_mask_only():
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 20, (10, 10, 10)).astype(np.float32)
    mask = np.zeros(vol.shape, bool)
    mask[2:8, 2:8, 2:8] = True
    out = zscore(vol, mask)
    inside = vol[mask]
    assert np.allclose(out[mask], (inside - inside.mean()) / inside.std(), atol=1e-5)
    assert np.all(out[~mask] == 0)


def test_nyul_map_by_hand():
    landmarks = np.array([0.0, 1.0, 3.0])
    standard = np.array([10.0, 20.0, 40.0])
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
    # Segments: slope 10 on [0, 1], slope 10 on [1, 3]; extended linearly at both ends.
    assert np.allclose(nyul_map(values, landmarks, standard), [0, 10, 15, 20, 30, 40, 60])
    landmarks = np.array([0.0, 2.0, 3.0])
    assert np.allclose(nyul_map(np.array([1.0, 2.5, 4.0]), landmarks, standard), [15, 30, 60])


def test_nyul_standard_is_the_mean_of_training_landmarks():
    a, b = np.array([[0.0, 1.0, 2.0]]), np.array([[2.0, 3.0, 6.0]])
    assert np.allclose(learn_nyul_landmarks([a, b]), [[1.0, 2.0, 4.0]])


def test_n4_removes_a_smooth_multiplicative_bias():
    rng = np.random.default_rng(1)
    shape = (40, 40, 30)
    x = np.linspace(-1, 1, shape[0])[:, None, None]
    truth = np.full(shape, 100.0, dtype=np.float32) + rng.normal(0, 1, shape)
    biased = truth * np.exp(0.3 * x) * np.ones(shape)
    mask = np.ones(shape, bool)
    corrected = n4_correct(biased.astype(np.float32), mask, (1, 1, 1), 2, [50, 50])
    cv = lambda v: v.std() / v.mean()  # noqa: E731
    assert cv(corrected) < 0.35 * cv(biased)


def test_crop_pad_and_resample_invert_exactly_on_anisotropic_labels():
    rng = np.random.default_rng(2)
    shape = (30, 36, 7)
    label = np.zeros(shape, np.uint8)
    label[8:20, 10:30, 1:6] = rng.integers(1, 4, (12, 20, 5))
    image = (label > 0).astype(np.float32) * 5 + 1
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, target_spacing=[1.0, 1.0, None],
                        image_size=[64, 64], crop="foreground")
    # 2 mm in-plane: resampled to 1 mm (60 x 72), larger than 64 in y -> resized into the box.
    out = preprocess_patient(_patient(image, label, spacing=(2.0, 2.0, 10.0)), cfg, foreground_threshold=0.0)
    assert out.image.shape == (1, 7, 64, 64, 1) and out.label.shape == (1, 7, 64, 64)
    assert out.crop.resampled_shape == [60, 72, 7]
    back = restore_labels(out.label[0], out.crop)
    assert back.shape == shape
    # Nearest-neighbour there and back: up to boundary effects of the 72 -> 64 resize.
    assert np.mean(back == label) > 0.97


def test_foreground_crop_keeps_every_labelled_voxel_and_inverts_bit_exactly():
    label = np.zeros((50, 40, 12), np.uint8)
    label[20:30, 12:25, 3:9] = 2
    label[22:26, 15:20, 4:8] = 1
    image = np.zeros(label.shape, np.float32)
    image[10:40, 5:35, 2:11] = 3.0  # the "brain"
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, image_size=[32, 32], crop="foreground")
    out = preprocess_patient(_patient(image, label), cfg)
    assert out.image.shape[1] == 9  # slices cropped to the foreground (2..10)
    assert np.bincount(out.label.ravel(), minlength=3)[1:].tolist() == [np.sum(label == 1), np.sum(label == 2)]
    assert np.array_equal(restore_labels(out.label[0], out.crop), label)
    assert not out.notes


def test_center_crop_reports_labels_outside_the_box():
    label = np.zeros((40, 40, 3), np.uint8)
    label[0:3, 0:3, :] = 1  # corner: outside a centred 20 x 20 box
    label[18:22, 18:22, :] = 3
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, image_size=[20, 20], crop="center")
    out = preprocess_patient(_patient(np.ones(label.shape, np.float32), label), cfg)
    assert out.label.shape == (1, 3, 20, 20)
    assert np.sum(out.label == 3) == np.sum(label == 3)
    assert out.notes == [f"{np.sum(label == 1)} labelled voxels lie outside the crop box"]


def test_background_stays_zero_and_foreground_is_z_scored():
    rng = np.random.default_rng(3)
    image = np.zeros((30, 30, 5), np.float32)
    image[5:25, 5:25] = rng.normal(500, 50, (20, 20, 5))
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, image_size=[32, 32])
    out = preprocess_patient(_patient(image, np.zeros(image.shape, np.uint8)), cfg)
    fg = out.image != 0
    assert fg.sum() == 20 * 20 * 5
    assert abs(out.image[fg].mean()) < 1e-4 and abs(out.image[fg].std() - 1) < 1e-3


@requires_shared_data
def test_real_acdc_resampling_uses_the_header_zooms():
    (record,) = discover_patients(os.path.join(SHARED_DATA, "acdc"), "acdc")
    vol = load_patient(record, ("cine",))
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, target_spacing=[1.25, 1.25, None],
                        image_size=[224, 224], crop="center")
    out = preprocess_patient(vol, cfg)
    # 216 x 256 voxels of 1.5625 mm -> 270 x 320 voxels of 1.25 mm (the affine alone would say 1 mm).
    assert out.crop.resampled_shape == [270, 320, 10]
    # LV volume in ml is preserved by resampling: same physical volume on both grids.
    voxel_ml_in, voxel_ml_out = 1.5625 * 1.5625 * 10 / 1000, 1.25 * 1.25 * 10 / 1000
    lv_in = np.sum(vol.label[0] == 3) * voxel_ml_in
    lv_out = np.sum(out.label[0] == 3) * voxel_ml_out
    assert lv_out == pytest.approx(lv_in, rel=0.02)
    assert np.array_equal(restore_labels(out.label[1], out.crop), vol.label[1])


def test_restored_probabilities_of_a_one_hot_map_invert_a_pure_crop_exactly():
    # No resampling (1 mm to 1 mm): the probabilities come back one-hot, the argmax is the label.
    label = np.zeros((50, 40, 12), np.uint8)
    label[20:30, 12:25, 3:9] = 2
    label[22:26, 15:20, 4:8] = 1
    image = np.zeros(label.shape, np.float32)
    image[10:40, 5:35, 2:11] = 3.0
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, image_size=[32, 32], crop="foreground")
    out = preprocess_patient(_patient(image, label), cfg)
    one_hot = np.eye(3, dtype=np.float32)[out.label[0]]
    probs = restore_probabilities(one_hot, out.crop)
    assert probs.shape == (*label.shape, 3)
    outside = np.ones(label.shape, bool)
    outside[tuple(slice(max(a, 0), b) for a, b in zip(out.crop.box_start, out.crop.box_stop))] = False
    assert np.all(probs[outside] == [1, 0, 0])  # background beyond the crop box
    assert np.array_equal(probs.argmax(-1), label)


@requires_shared_data
def test_restoring_probabilities_loses_less_than_restoring_labels_on_a_real_acdc_patient():
    # The ground truth taken to the 2 mm training grid and back to its native 1.56 mm grid: interpolated
    # probabilities draw the boundary between the coarse samples, nearest labels on their staircase.
    from svgan.evaluation.metrics import dice

    record = discover_patients(os.path.join(SHARED_DATA, "acdc-training"), "acdc")[0]
    volume = load_patient(record, ("cine",))
    cfg = PrepareConfig(n4_bias_correction=False, nyul=False, target_spacing=[2.0, 2.0, None], image_size=[128, 128],
                        crop="center")
    out = preprocess_patient(volume, cfg)
    scores = {"labels": [], "probabilities": []}
    for p in range(2):
        truth = volume.label[p]
        by_labels = restore_labels(out.label[p], out.crop)
        by_probs = restore_probabilities(np.eye(4, dtype=np.float32)[out.label[p]], out.crop).argmax(-1)
        for k in (1, 2, 3):
            scores["labels"].append(dice(by_labels == k, truth == k))
            scores["probabilities"].append(dice(by_probs == k, truth == k))
    assert np.mean(scores["probabilities"]) > np.mean(scores["labels"]) > 0.9
