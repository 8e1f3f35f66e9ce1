"""Clinical features of a cardiac segmentation (volumes, EF, mass, wall thickness, BSA) by hand, and the reference classifier."""

import math

import numpy as np
import pytest

from svgan.evaluation.clinical import (FEATURES, ClinicalClassifier, body_surface_area, clinical_features, height_weight,
                                       max_wall_thickness)


def _heart(thickness_px: int) -> np.ndarray:
    """[2, 30, 20, 3] label map: in slice 1 an LV cavity of rows 5-14, a myocardial band below it, RV beside."""
    label = np.zeros((2, 30, 20, 3), np.uint8)
    for phase, cavity_rows in ((0, range(5, 15)), (1, range(9, 15))):
        label[phase, list(cavity_rows), 2:12, 1] = 3
        label[phase, 15:15 + thickness_px, 2:12, 1] = 2
        label[phase, 5:10, 14:18, 1] = 1
    return label


def test_volumes_ejection_fractions_and_mass_counted_by_hand():
    label = _heart(4)
    spacing = (1.5, 1.25, 8.0)  # 15 mm^3 = 0.015 ml per voxel
    f = clinical_features(label, spacing, height_cm=180.0, weight_kg=80.0)
    # ED: LV 10 rows x 10 columns = 100 voxels; ES: 6 x 10 = 60. RV 5 x 4 = 20 in both phases. MYO 4 x 10 = 40.
    assert f["LV_EDV"] == pytest.approx(1.5) and f["LV_ESV"] == pytest.approx(0.9)
    assert f["LV_EF"] == pytest.approx(40.0)
    assert f["RV_EDV"] == pytest.approx(0.3) and f["RV_EF"] == pytest.approx(0.0)
    assert f["MYO_mass"] == pytest.approx(40 * 0.015 * 1.05)
    bsa = math.sqrt(180.0 * 80.0 / 3600.0)  # = 2.0 m^2
    assert bsa == pytest.approx(2.0)
    assert f["LV_EDVi"] == pytest.approx(1.5 / 2.0) and f["MYO_massi"] == pytest.approx(40 * 0.015 * 1.05 / 2.0)
    assert f["RV_LV_EDV_ratio"] == pytest.approx(0.2)
    assert set(FEATURES) <= set(f)


def test_wall_thickness_of_a_band_is_its_width_in_mm_along_the_sampled_axis():
    label = _heart(4)
    # The band runs along axis 0, 4 pixels of 1.5 mm.
    assert max_wall_thickness(label[0] == 2, label[0] == 3, (1.5, 1.25, 8.0)) == pytest.approx(6.0)
    # A thicker band in another slice is the maximum; slices without cavity do not count.
    label[0, 15:22, 2:12, 2] = 2
    label[0, 5:15, 2:12, 2] = 3
    label[0, 0:10, 0:10, 0] = 2  # myocardium without cavity
    assert max_wall_thickness(label[0] == 2, label[0] == 3, (1.5, 1.25, 8.0)) == pytest.approx(7 * 1.5)


def test_wall_thickness_of_a_ring_is_the_difference_of_its_radii():
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 31.5, xx - 31.5)
    cavity, myo = (r < 10)[..., None], ((r >= 10) & (r < 16))[..., None]
    # 6 mm of wall at 1 mm pixels, within one pixel of discretisation.
    assert abs(max_wall_thickness(myo, cavity, (1.0, 1.0, 10.0)) - 6.0) <= 1.0
    assert max_wall_thickness(np.zeros_like(myo), cavity, (1.0, 1.0, 10.0)) == 0.0


def test_body_surface_area_and_info_cfg_numbers():
    assert body_surface_area(184.0, 95.0) == pytest.approx(math.sqrt(184 * 95 / 3600))
    assert height_weight({"Height": "184.0", "Weight": "95.0"}) == (184.0, 95.0)
    assert height_weight({"Height": "n/a"}) == (None, None)
    f = clinical_features(_heart(3), (1.0, 1.0, 10.0), None, None)
    assert math.isnan(f["LV_EDVi"]) and not math.isnan(f["LV_EDV"])


def test_reference_classifier_learns_separable_groups_and_gives_zero_to_unseen_classes():
    rng = np.random.default_rng(0)
    rows, diseases = [], []
    for k in range(3):
        for _ in range(10):
            row = {name: float(rng.normal()) for name in FEATURES}
            row["LV_EF"] = 20.0 + 25.0 * k + rng.normal()  # the groups differ in ejection fraction alone
            rows.append(row)
            diseases.append(k)
    model = ClinicalClassifier(trees=50).fit(rows, diseases)
    probe = [{**rows[0], "LV_EF": 20.0}, {**rows[0], "LV_EF": 70.0}]
    probs = model.predict_proba(probe, num_classes=4)
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1.0)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 2 and np.all(probs[:, 3] == 0)
    with pytest.raises(ValueError):
        ClinicalClassifier().fit(rows, diseases[:-1])
