"""Metrics against medpy (the reference the challenges reuse) and a brute-force surface distance."""

import math

import numpy as np
import pytest
from medpy.metric import binary as mp
from scipy import ndimage

from svgan.evaluation.metrics import (average_surface_distance, dice, hausdorff, image_diagonal, iou, precision,
                                      sensitivity, specificity)


def _blob(shape, centre, radii, rng, noise=0.15):
    grid = np.indices(shape, dtype=float)
    r = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, radii))
    return r < 1 + noise * rng.normal(size=shape)


CASES = [  # shape, spacing: isotropic, ACDC-like anisotropic, and a blob touching the array edge
    ((24, 28, 12), (1.0, 1.0, 1.0)),
    ((30, 26, 9), (1.5625, 1.5625, 10.0)),
    ((20, 22, 16), (0.7, 1.3, 2.5)),
]


@pytest.mark.parametrize("shape, spacing", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_medpy_on_anisotropic_masks(shape, spacing, seed):
    rng = np.random.default_rng(seed)
    c = np.array(shape) / 2
    ref = _blob(shape, c, np.array(shape) / 4, rng)
    pred = _blob(shape, c + rng.normal(0, 1.5, 3), np.array(shape) / 3.5, rng)
    if seed == 1:
        pred[0:3, :, :] = True  # touches the array border, where erosion treats outside as background
    assert dice(pred, ref) == pytest.approx(mp.dc(pred, ref), abs=1e-6)
    assert iou(pred, ref) == pytest.approx(mp.jc(pred, ref), abs=1e-6)
    assert sensitivity(pred, ref) == pytest.approx(mp.sensitivity(pred, ref), abs=1e-6)
    assert specificity(pred, ref) == pytest.approx(mp.specificity(pred, ref), abs=1e-6)
    assert precision(pred, ref) == pytest.approx(mp.precision(pred, ref), abs=1e-6)
    assert hausdorff(pred, ref, spacing) == pytest.approx(mp.hd(pred, ref, spacing), abs=1e-6)
    assert hausdorff(pred, ref, spacing, 95) == pytest.approx(mp.hd95(pred, ref, spacing), abs=1e-6)
    assert average_surface_distance(pred, ref, spacing) == pytest.approx(mp.assd(pred, ref, spacing), abs=1e-6)
    assert average_surface_distance(pred, ref, spacing, symmetric=False) == pytest.approx(mp.asd(pred, ref, spacing), abs=1e-6)


def _brute_directed(a, b, spacing):
    """For each border voxel of a, the distance to the nearest border voxel of b, by all pairs."""
    s = ndimage.generate_binary_structure(3, 1)
    ab = np.argwhere(a ^ ndimage.binary_erosion(a, structure=s)) * np.asarray(spacing)
    bb = np.argwhere(b ^ ndimage.binary_erosion(b, structure=s)) * np.asarray(spacing)
    return np.sqrt(((ab[:, None, :] - bb[None, :, :]) ** 2).sum(-1)).min(1)


def test_max_directed_hd95_matches_brute_force_and_differs_from_pooled():
    shape, spacing = (14, 12, 6), (1.2, 0.9, 4.0)
    ref = np.zeros(shape, bool)
    ref[3:9, 3:8, 1:4] = True
    pred = np.zeros(shape, bool)
    pred[4:12, 2:9, 2:5] = True
    pred[0, 0, 5] = True  # a far outlier voxel
    d_pr, d_rp = _brute_directed(pred, ref, spacing), _brute_directed(ref, pred, spacing)
    expected_max = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
    expected_pooled = np.percentile(np.concatenate([d_pr, d_rp]), 95)
    assert hausdorff(pred, ref, spacing, 95, method="max_directed") == pytest.approx(expected_max, abs=1e-9)
    assert hausdorff(pred, ref, spacing, 95) == pytest.approx(expected_pooled, abs=1e-9)
    assert hausdorff(pred, ref, spacing) == pytest.approx(max(d_pr.max(), d_rp.max()), abs=1e-9)


def test_empty_masks_follow_the_brats_rule():
    shape, spacing = (240, 240, 155), (1.0, 1.0, 1.0)
    empty = np.zeros(shape, bool)
    one = empty.copy()
    one[100, 100, 70] = True
    assert image_diagonal(shape, spacing) == pytest.approx(373.12866, abs=1e-5)
    assert (dice(empty, empty), sensitivity(empty, empty), hausdorff(empty, empty, spacing)) == (1.0, 1.0, 0.0)
    assert dice(one, empty) == 0.0 and dice(empty, one) == 0.0
    assert hausdorff(one, empty, spacing, 95) == pytest.approx(373.12866, abs=1e-5)
    assert hausdorff(empty, one, spacing) == pytest.approx(373.12866, abs=1e-5)
    assert hausdorff(one, empty, spacing, empty_distance=374.0) == 374.0
    assert math.isnan(average_surface_distance(empty, one, spacing, empty_distance=float("nan")))
    assert sensitivity(empty, one) == 0.0  # a missed lesion
    assert sensitivity(one, empty) == 0.0 and precision(one, empty) == 0.0  # as medpy: empty denominator -> 0


def test_bad_input_is_an_error_not_a_number():
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="not a binary mask"):
        dice(a + 2, a)
    with pytest.raises(ValueError, match="shape mismatch"):
        hausdorff(a, np.zeros((4, 4, 3)), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        a[1, 1, 1] = 1
        hausdorff(a, a, (1.0, 1.0))
