"""Readers on files written in each release's real naming, on the real samples, and on bad input."""

import os

import nibabel as nib
import numpy as np
import pytest

from svgan.data.conventions import DISEASE_CLASSES, LABEL_CONVENTIONS
from svgan.data.datasets import discover_patients, load_patient
from svgan.errors import DataError

from conftest import SHARED_DATA, requires_shared_data, write_nifti

SHAPE = (6, 5, 4)
BRATS = ("flair", "t1", "t1ce", "t2")


def _volume(value, shape=SHAPE):
    return np.full(shape, value, dtype=np.float32)


def _labels(values, shape=SHAPE):
    seg = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(values):
        seg[i, 0, 0] = v
    return seg


def _brats_case(folder, names, seg_values, modalities=BRATS):
    """Write one BraTS patient: ``names`` maps role -> file name; channel k holds the value k + 1."""
    for k, m in enumerate(modalities):
        write_nifti(os.path.join(folder, names[m]), _volume(k + 1))
    write_nifti(os.path.join(folder, names["seg"]), _labels(seg_values))


def test_brats2017_layout_with_grade_folders(tmp_path):
    for grade, pid in (("HGG", "Brats17_TCIA_105_1"), ("LGG", "Brats17_2013_0_1")):
        _brats_case(tmp_path / grade / pid, {m: f"{pid}_{m}.nii.gz" for m in BRATS + ("seg",)}, [0, 1, 2, 4])
    records = discover_patients(str(tmp_path), "brats")
    assert [(r.patient_id, r.format, r.disease) for r in records] == [
        ("Brats17_TCIA_105_1", "brats", 0), ("Brats17_2013_0_1", "brats", 1)]
    vol = load_patient(records[0], BRATS)
    assert vol.image.shape == (1,) + SHAPE + (4,)
    # Channels come in the requested order whatever the file order on disk.
    assert [vol.image[0, 0, 0, 0, c] for c in range(4)] == [1, 2, 3, 4]
    assert vol.label[0, :4, 0, 0].tolist() == [0, 1, 2, 3]  # BraTS 4 -> class 3


def test_brats2020_grades_come_from_name_mapping_csv(tmp_path):
    for pid in ("BraTS20_Training_001", "BraTS20_Training_300"):
        _brats_case(tmp_path / pid, {m: f"{pid}_{m}.nii" for m in BRATS + ("seg",)}, [0, 2])
    (tmp_path / "name_mapping.csv").write_text(
        "Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,BraTS_2019_subject_ID,BraTS_2020_subject_ID\n"
        "HGG,Brats17_CBICA_AAB_1,Brats18_CBICA_AAB_1,BraTS19_CBICA_AAB_1,BraTS20_Training_001\n"
        "LGG,Brats17_2013_0_1,Brats18_2013_0_1,BraTS19_2013_0_1,BraTS20_Training_300\n")
    records = discover_patients(str(tmp_path), "brats")
    assert [r.disease for r in records] == [0, 1]


def test_brats2021_layout_has_no_grade(tmp_path):
    pid = "BraTS2021_00000"
    _brats_case(tmp_path / pid, {m: f"{pid}_{m}.nii.gz" for m in BRATS + ("seg",)}, [4])
    (record,) = discover_patients(str(tmp_path), "brats")
    assert record.format == "brats" and record.disease is None
    assert load_patient(record, BRATS).label[0, 0, 0, 0] == 3


def test_brats2023_names_and_labels(tmp_path):
    pid = "BraTS-GLI-00000-000"
    names = {"flair": f"{pid}-t2f.nii.gz", "t1": f"{pid}-t1n.nii.gz", "t1ce": f"{pid}-t1c.nii.gz",
             "t2": f"{pid}-t2w.nii.gz", "seg": f"{pid}-seg.nii.gz"}
    _brats_case(tmp_path / pid, names, [0, 1, 2, 3])
    (record,) = discover_patients(str(tmp_path), "brats")
    assert record.format == "brats2023"
    vol = load_patient(record, BRATS)
    assert [vol.image[0, 0, 0, 0, c] for c in range(4)] == [1, 2, 3, 4]
    assert vol.label[0, :4, 0, 0].tolist() == [0, 1, 2, 3]  # 2023's 3 is enhancing = class 3
    # And written back in the 2023 convention, not 2017's 4.
    assert LABEL_CONVENTIONS["brats2023"].to_dataset(np.array([3])).tolist() == [3]


def test_brats2015_vsd_layout_in_metaimage(tmp_path):
    import SimpleITK as sitk

    folder = tmp_path / "HGG" / "brats_2013_pat0001_1"
    names = {"flair": "VSD.Brain.XX.O.MR_Flair.54512", "t1": "VSD.Brain.XX.O.MR_T1.54513",
             "t1ce": "VSD.Brain.XX.O.MR_T1c.54514", "t2": "VSD.Brain.XX.O.MR_T2.54515",
             "seg": "VSD.Brain_3more.XX.O.OT.54517"}
    for role, name in names.items():
        arr = _labels([0, 1, 2, 3, 4]) if role == "seg" else _volume(BRATS.index(role) + 1)
        img = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))
        img.SetSpacing((1.0, 1.0, 1.0))
        os.makedirs(folder / name)
        sitk.WriteImage(img, str(folder / name / f"{name}.mha"))
    (record,) = discover_patients(str(tmp_path), "brats")
    assert (record.patient_id, record.format, record.disease) == ("brats_2013_pat0001_1", "brats2015", 0)
    vol = load_patient(record, BRATS)
    assert [vol.image[0, 0, 0, 0, c] for c in range(4)] == [1, 2, 3, 4]
    # 2013-2015: 1 necrosis and 3 non-enhancing core are both tumour core (class 1); 4 enhancing.
    assert vol.label[0, :5, 0, 0].tolist() == [0, 1, 2, 1, 3]


@requires_shared_data
def test_real_brats2015_sample_labels_follow_the_convention():
    root = os.path.join(SHARED_DATA, "brats2015")
    (record,) = discover_patients(root, "brats")
    assert record.format == "brats2015" and sorted(record.files) == ["flair", "mask", "seg", "t1ce"]
    vol = load_patient(record, ("flair", "t1ce"))
    raw = np.asarray(nib.load(record.files["seg"]).dataobj)
    # Independent count on the raw file: classes are {0}, {1, 3}, {2}, {4}.
    expected = [np.sum(raw == 0), np.sum((raw == 1) | (raw == 3)), np.sum(raw == 2), np.sum(raw == 4)]
    assert np.bincount(vol.label.ravel(), minlength=4).tolist() == [int(n) for n in expected]
    assert vol.foreground.sum() == np.sum(np.asarray(nib.load(record.files["mask"]).dataobj) > 0.5)
    assert vol.geometry[0].spacing == (1.0, 1.0, 1.0)


@requires_shared_data
def test_real_acdc_patient_spacing_comes_from_the_zooms():
    (record,) = discover_patients(os.path.join(SHARED_DATA, "acdc"), "acdc")
    assert record.disease == DISEASE_CLASSES["acdc"].index("DCM")
    assert "patient001_4d.nii.gz" not in os.listdir(record.folder)  # the 4D file is optional
    vol = load_patient(record, ("cine",))
    assert vol.phases == ("ED", "ES")
    assert vol.image.shape == (2, 216, 256, 10, 1)
    # The affine implies 1 mm voxels; the true spacing is only in the header zooms.
    assert np.allclose(np.abs(np.diag(vol.geometry[0].affine))[:3], 1.0)
    assert vol.geometry[0].spacing == (1.5625, 1.5625, 10.0)
    gt = np.asarray(nib.load(record.files["ED_gt"]).dataobj)
    assert np.array_equal(vol.label[0], gt)  # ACDC labels are already contiguous


def test_acdc_info_cfg_rv_group_is_arv(tmp_path):
    folder = tmp_path / "training" / "patient081"
    for frame in (1, 9):
        write_nifti(folder / f"patient081_frame{frame:02d}.nii.gz", _volume(5.0), zooms=(1.5, 1.5, 10.0))
        write_nifti(folder / f"patient081_frame{frame:02d}_gt.nii.gz", _labels([1, 2, 3]), zooms=(1.5, 1.5, 10.0))
    (folder / "Info.cfg").write_text("ED: 1\nES: 9\nGroup: RV\nHeight: 170.0\nNbFrame: 25\nWeight: 70.0\n")
    (record,) = discover_patients(str(tmp_path), "acdc")
    assert record.disease == DISEASE_CLASSES["acdc"].index("ARV")
    vol = load_patient(record, ("cine",))
    assert vol.label.shape == (2,) + SHAPE


def test_acdc_testing_patient_without_ground_truth_loads_for_prediction(tmp_path):
    folder = tmp_path / "testing" / "patient101"
    for frame in (1, 14):
        write_nifti(folder / f"patient101_frame{frame:02d}.nii.gz", _volume(5.0))
    (folder / "Info.cfg").write_text("ED: 1\nES: 14\nHeight: 170.0\nNbFrame: 28\nWeight: 70.0\n")
    (record,) = discover_patients(str(tmp_path), "acdc")
    assert record.disease is None
    assert load_patient(record, ("cine",), require_labels=False).label is None
    with pytest.raises(DataError, match="missing ED ground truth"):
        load_patient(record, ("cine",))


# ---------------------------------------------------------------- bad input

def _good_brats(tmp_path, pid="Brats17_X_1"):
    folder = tmp_path / "HGG" / pid
    _brats_case(folder, {m: f"{pid}_{m}.nii.gz" for m in BRATS + ("seg",)}, [0, 1, 2, 4])
    return folder, pid


def _load_only(tmp_path):
    (record,) = discover_patients(str(tmp_path), "brats")
    return load_patient(record, BRATS)


def test_missing_modality_names_the_patient_and_modality(tmp_path):
    folder, pid = _good_brats(tmp_path)
    os.remove(folder / f"{pid}_t1ce.nii.gz")
    with pytest.raises(DataError, match=rf"{pid}: missing modality t1ce"):
        _load_only(tmp_path)


def test_shape_mismatch_names_the_file(tmp_path):
    folder, pid = _good_brats(tmp_path)
    write_nifti(folder / f"{pid}_t2.nii.gz", _volume(1, (6, 5, 3)))
    with pytest.raises(DataError, match=rf"{pid}_t2.nii.gz: shape \(6, 5, 3\) differs"):
        _load_only(tmp_path)


def test_affine_mismatch_between_image_and_mask_names_the_mask(tmp_path):
    folder, pid = _good_brats(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    write_nifti(folder / f"{pid}_seg.nii.gz", _labels([1]), affine=shifted)
    with pytest.raises(DataError, match=rf"{pid}_seg.nii.gz: affine differs"):
        _load_only(tmp_path)


def test_labels_outside_the_convention(tmp_path):
    folder, pid = _good_brats(tmp_path)
    write_nifti(folder / f"{pid}_seg.nii.gz", _labels([1, 3]))  # 3 is not a 2017 label
    with pytest.raises(DataError, match=rf"{pid}_seg.nii.gz: labels \[3\] are outside the brats convention"):
        _load_only(tmp_path)


def test_nan_voxels(tmp_path):
    folder, pid = _good_brats(tmp_path)
    bad = _volume(1.0)
    bad[1, 1, 1] = np.nan
    bad[2, 2, 2] = np.inf
    write_nifti(folder / f"{pid}_flair.nii.gz", bad)
    with pytest.raises(DataError, match=rf"{pid}_flair.nii.gz: 2 voxels are NaN or infinite"):
        _load_only(tmp_path)


def test_truncated_nifti(tmp_path):
    folder, pid = _good_brats(tmp_path)
    path = folder / f"{pid}_t1.nii.gz"
    write_nifti(path, np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{pid}_t1.nii.gz: cannot read image \(truncated or corrupt"):
        _load_only(tmp_path)


def test_info_cfg_without_es(tmp_path):
    folder = tmp_path / "patient001"
    folder.mkdir()
    (folder / "Info.cfg").write_text("ED: 1\nGroup: NOR\n")
    (record,) = discover_patients(str(tmp_path), "acdc")
    with pytest.raises(DataError, match=r"Info.cfg: no ES frame given"):
        load_patient(record, ("cine",))


def test_empty_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="no BraTS patient folders found"):
        discover_patients(str(tmp_path), "brats")
    with pytest.raises(DataError, match="no ACDC patient folders"):
        discover_patients(str(tmp_path), "acdc")
    with pytest.raises(DataError, match="dataset folder not found"):
        discover_patients(str(tmp_path / "nope"), "brats")


def test_empty_patient_folder(tmp_path):
    _good_brats(tmp_path)
    (tmp_path / "HGG" / "Brats17_empty_1").mkdir()
    records = discover_patients(str(tmp_path), "brats")
    empty = [r for r in records if r.patient_id == "Brats17_empty_1"][0]
    with pytest.raises(DataError, match="Brats17_empty_1: patient folder holds no image files"):
        load_patient(empty, BRATS)
