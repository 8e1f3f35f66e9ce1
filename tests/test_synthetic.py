"""The phantoms: layout, determinism, and the anatomy and contrasts they promise."""

import math
import os

import nibabel as nib
import numpy as np
import pytest

from svgan.data.readers import read_info_cfg
from svgan.data.datasets import discover_patients, load_patient
from svgan.data.synthetic.acdc import group_counts, make_acdc_patient, SPACING
from svgan.data.synthetic.brats import make_brats_patient


@pytest.fixture(scope="module")
def brats_pair():
    shape = (64, 64, 42)
    return {g: make_brats_patient(np.random.default_rng(7), g, shape) for g in ("HGG", "LGG")}


def test_brats_cohort_layout_and_grade_ratio(brats_raw):
    assert sorted(os.listdir(brats_raw)) == ["HGG", "LGG"]
    records = discover_patients(brats_raw, "brats")
    assert [r.disease for r in records].count(0) == 6 and [r.disease for r in records].count(1) == 2  # 3:1
    pid = records[0].patient_id
    assert sorted(os.listdir(records[0].folder)) == sorted(f"{pid}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2", "seg"))
    vol = load_patient(records[0], ("flair", "t1", "t1ce", "t2"))
    img = nib.load(records[0].files["t1"])
    assert img.get_data_dtype() == np.int16
    assert np.allclose(vol.geometry[0].spacing, 240 / 48)  # isotropic; 1 mm at full size
    brain = vol.image[0, ..., 1] > 0
    assert np.all(vol.image[0][~brain] == 0), "skull-stripped: background exactly zero in every modality"


def test_brats_phantom_is_deterministic_for_a_seed():
    a = make_brats_patient(np.random.default_rng([5, 1]), "HGG", (32, 32, 21))
    b = make_brats_patient(np.random.default_rng([5, 1]), "HGG", (32, 32, 21))
    c = make_brats_patient(np.random.default_rng([6, 1]), "HGG", (32, 32, 21))
    assert all(np.array_equal(a[0][m], b[0][m]) for m in a[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_hgg_has_necrosis_inside_an_enhancing_rim_and_lgg_is_mostly_edema_and_core(brats_pair):
    (_, hgg, _), (_, lgg, _) = brats_pair["HGG"], brats_pair["LGG"]
    counts_h = np.bincount(hgg.ravel(), minlength=5)
    counts_l = np.bincount(lgg.ravel(), minlength=5)
    assert counts_h[1] > 0 and counts_h[4] > 0 and counts_h[2] > 0
    assert counts_l[4] <= 0.1 * (counts_l[1] + counts_l[2])  # little or no enhancement
    # The rim encloses the necrosis: the necrosis's centre of mass has enhancing tumour on both sides along x.
    cx, cy, cz = np.round(np.argwhere(hgg == 1).mean(0)).astype(int)
    line = hgg[:, cy, cz]
    assert line[cx] == 1 and 4 in line[:cx] and 4 in line[cx:]


def test_tumour_is_a_few_percent_of_the_brain(brats_pair):
    for images, label, _ in brats_pair.values():
        brain = images["t1"] > 0
        wt = np.isin(label, (1, 2, 4)).sum() / brain.sum()
        assert 0.005 < wt < 0.15


def test_modality_contrasts_follow_real_mri(brats_pair):
    images, label, _ = brats_pair["HGG"]
    mean = {m: {k: images[m][label == k].mean() for k in (1, 2, 4)} for m in images}
    healthy = {m: images[m][(label == 0) & (images[m] > 0)].mean() for m in images}
    assert mean["flair"][2] > healthy["flair"]  # edema is FLAIR-hyperintense
    assert mean["t2"][2] > healthy["t2"]  # and T2-hyperintense
    assert mean["t1ce"][4] > 1.2 * healthy["t1ce"]  # the rim enhances after contrast
    assert mean["t1"][4] < healthy["t1"]  # ... and does not on native T1
    assert mean["t1ce"][1] < healthy["t1ce"]  # necrosis is dark on T1ce


def _volumes_ml(label, spacing):
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {k: (label == k).sum() * voxel_ml for k in (1, 2, 3)}


@pytest.mark.parametrize("group", ["NOR", "MINF", "DCM", "HCM", "RV"])
def test_acdc_groups_differ_by_the_clinical_criteria(group):
    info, frames, cine = make_acdc_patient(np.random.default_rng(11), group, (112, 112, 8), SPACING, frames=12)
    ed = frames[info["ED"]][1]
    es = frames[info["ES"]][1]
    bsa = math.sqrt(info["Height"] * info["Weight"] / 3600.0)
    v_ed, v_es = _volumes_ml(ed, SPACING), _volumes_ml(es, SPACING)
    lvef = 1 - v_es[3] / v_ed[3]
    rvef = 1 - v_es[1] / v_ed[1]
    lvedvi, rvedvi = v_ed[3] / bsa, v_ed[1] / bsa
    myo_mass_index = v_ed[2] * 1.05 / bsa
    if group == "NOR":
        assert 0.5 < lvef < 0.75 and lvedvi < 100 and rvedvi < 110 and rvef > 0.45
    if group == "DCM":
        assert lvef < 0.40 and lvedvi > 100
    if group == "MINF":
        assert lvef < 0.40
    if group == "HCM":
        assert lvef > 0.55 and myo_mass_index > 110
    if group == "RV":
        assert rvedvi > 110 or rvef < 0.40
        assert lvef > 0.5


def test_acdc_minf_has_an_akinetic_thin_sector():
    info, frames, _ = make_acdc_patient(np.random.default_rng(2), "MINF", (128, 128, 8), SPACING, frames=12)
    ed, es = frames[info["ED"]][1][..., 3], frames[info["ES"]][1][..., 3]
    centre = np.argwhere(ed == 3).mean(0)
    angles = np.degrees(np.arctan2(*(np.argwhere(ed == 2) - centre).T[::-1])) % 360
    # Myocardial pixels per 30-degree sector: the infarct sector is clearly thinner than the median.
    per_sector = np.bincount((angles // 30).astype(int), minlength=12)
    assert per_sector.min() < 0.75 * np.median(per_sector)
    # and does not thicken: its systolic myocardium is no larger than at diastole.
    thin = int(np.argmin(per_sector))
    angles_es = np.degrees(np.arctan2(*(np.argwhere(es == 2) - centre).T[::-1])) % 360
    assert np.sum((angles_es // 30).astype(int) == thin) <= 1.2 * per_sector[thin]


def test_acdc_cohort_layout_headers_and_4d_consistency(acdc_raw):
    records = discover_patients(acdc_raw, "acdc")
    assert [r.patient_id for r in records] == [f"patient{i:03d}" for i in range(1, 6)]
    r = records[0]
    info = read_info_cfg(r.files["info"])
    assert set(info) == {"ED", "ES", "Group", "Height", "NbFrame", "Weight"}
    cine = nib.load(os.path.join(r.folder, f"{r.patient_id}_4d.nii.gz"))
    ed = nib.load(r.files["ED"])
    assert cine.shape[3] == int(info["NbFrame"])
    assert np.array_equal(np.asarray(cine.dataobj)[..., int(info["ED"]) - 1], np.asarray(ed.dataobj))
    assert np.array_equal(np.asarray(cine.dataobj)[..., int(info["ES"]) - 1], np.asarray(nib.load(r.files["ES"]).dataobj))
    # Like the real files: no spacing in the affine, the true spacing in the zooms.
    assert np.allclose(ed.affine, np.diag([-1, -1, 1, 1]))
    assert int(ed.header["qform_code"]) == 0 and int(ed.header["sform_code"]) == 2
    assert ed.header.get_zooms()[:3] == SPACING


def test_acdc_group_proportions():
    assert group_counts(100) == {"DCM": 20, "HCM": 20, "MINF": 20, "NOR": 20, "RV": 20}
    assert group_counts(7, {"NOR": 5, "ARV": 2}) == {"DCM": 0, "HCM": 0, "MINF": 0, "NOR": 5, "RV": 2}
    assert sum(group_counts(24).values()) == 24
