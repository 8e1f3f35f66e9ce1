"""Diagnosis metrics and clinical indices by hand; predict and evaluate on the native grid."""

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest

from svgan.cli import main
from svgan.config import PrepareConfig
from svgan.data.manifest import load_manifest
from svgan.data.preprocess import preprocess_patient, restore_labels
from svgan.data.datasets import discover_patients, load_patient
from svgan.evaluation.diagnosis import diagnosis_metrics, prior_adjusted, roc_auc, training_class_prior
from svgan.evaluation.native import write_prediction
from svgan.data.cardiac import ventricle_indices
from svgan.evaluation.report import agreement, evaluate_run
from svgan.training.fit import train

from conftest import tiny_config, write_nifti


def test_diagnosis_metrics_by_hand():
    truth = [0, 0, 1, 1, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.5, 0.2, 0.3]])
    d = diagnosis_metrics(truth, probs, ["a", "b", "c"])
    assert d["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert d["accuracy"] == pytest.approx(3 / 5)
    assert (d["sensitivity_a"], d["sensitivity_b"], d["sensitivity_c"]) == (0.5, 1.0, 0.0)
    assert d["specificity_a"] == pytest.approx(2 / 3)  # class a: tn 2 (patients 3, 4), fp 1 (patient 5)
    assert d["balanced_accuracy"] == pytest.approx(0.5)
    assert d["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # AUC for c: positive score 0.3 against negatives 0.1, 0.1, 0.1, 0.4 -> 3 of 4 pairs.
    assert d["auc_c"] == pytest.approx(0.75)
    assert roc_auc([0.5], [0.5]) == 0.5 and np.isnan(roc_auc([], [0.1]))


def test_prior_correction_divides_by_the_training_shares_by_hand():
    # A head trained on 3 HGG : 1 LGG answers p = (0.6, 0.4). Divided by the prior (0.75, 0.25):
    # (0.8, 1.6) -> (1/3, 2/3), so LGG wins; tau = 0.5 divides by sqrt: (0.6/0.866, 0.4/0.5)
    # = (0.6928, 0.8) -> (0.4641, 0.5359).
    p = np.array([0.6, 0.4])
    np.testing.assert_allclose(prior_adjusted(p, [0.75, 0.25], 1.0), [1 / 3, 2 / 3])
    np.testing.assert_allclose(prior_adjusted(p, [0.75, 0.25], 0.5), [0.46410, 0.53590], atol=1e-5)
    np.testing.assert_array_equal(prior_adjusted(p, [0.75, 0.25], 0.0), p)
    # A class that no training patient had cannot be favoured by the division.
    np.testing.assert_allclose(prior_adjusted([0.5, 0.3, 0.2], [0.5, 0.5, 0.0], 1.0), [0.625, 0.375, 0.0])


def test_training_class_prior_follows_the_split_and_the_sampling(brats_prepared):
    manifest = load_manifest(brats_prepared)
    train = [manifest.patients[i]["disease"] for i in manifest.split_ids("train")]
    n_hgg, n_lgg = train.count(0), train.count(1)
    assert n_hgg > n_lgg > 0
    np.testing.assert_allclose(training_class_prior(manifest, "natural"), [n_hgg / (n_hgg + n_lgg), n_lgg / (n_hgg + n_lgg)])
    r = np.sqrt([n_hgg, n_lgg])
    np.testing.assert_allclose(training_class_prior(manifest, "sqrt"), r / r.sum())
    np.testing.assert_allclose(training_class_prior(manifest, "balanced"), [0.5, 0.5])


def test_acdc_clinical_indices_by_hand():
    label = np.zeros((2, 4, 5, 3), np.uint8)
    label[0].flat[:10] = 3  # ED: 10 LV voxels
    label[1].flat[:4] = 3  # ES: 4
    label[0].flat[10:15] = 1  # ED RV 5
    label[1].flat[10:14] = 1  # ES RV 4
    label[0].flat[20:26] = 2  # ED MYO 6
    spacing = (2.0, 2.0, 10.0)  # 0.04 ml per voxel
    idx = ventricle_indices(label, spacing)
    assert idx["LV_EDV"] == pytest.approx(0.4) and idx["LV_ESV"] == pytest.approx(0.16)
    assert idx["LV_EF"] == pytest.approx(60.0) and idx["RV_EF"] == pytest.approx(20.0)
    assert idx["MYO_mass"] == pytest.approx(6 * 0.04 * 1.05)


def test_agreement_statistics():
    pred, true = [10.0, 20.0, 35.0, 41.0], [12.0, 18.0, 30.0, 40.0]
    d = np.subtract(pred, true)
    p, t = np.subtract(pred, np.mean(pred)), np.subtract(true, np.mean(true))
    r = (p * t).sum() / np.sqrt((p * p).sum() * (t * t).sum())
    a = agreement(pred, true)
    assert a["correlation"] == pytest.approx(r) and a["bias"] == pytest.approx(d.mean())
    assert a["std"] == pytest.approx(np.sqrt(((d - d.mean()) ** 2).sum() / 3))


def _oblique_affine(zooms):
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ rot @ np.diag(zooms)
    affine[:3, 3] = [-90.0, 40.0, 12.5]
    return affine


def test_prediction_geometry_round_trips_on_oblique_anisotropic_input(tmp_path):
    zooms = (1.2, 0.9, 3.0)
    affine = _oblique_affine(zooms)
    pid = "BraTS2021_00042"
    folder = tmp_path / "raw" / pid
    shape = (50, 60, 14)
    rng = np.random.default_rng(0)
    seg = np.zeros(shape, np.uint8)
    seg[15:30, 20:40, 4:10] = 2
    seg[18:26, 25:33, 5:9] = 1
    seg[20:23, 27:30, 6:8] = 4
    for m in ("flair", "t1", "t1ce", "t2"):
        img = np.zeros(shape, np.float32)
        img[5:45, 8:52, 1:13] = rng.normal(100, 10, (40, 44, 12))
        write_nifti(folder / f"{pid}_{m}.nii.gz", img, affine=affine)
    write_nifti(folder / f"{pid}_seg.nii.gz", seg, affine=affine)
    (record,) = discover_patients(str(tmp_path / "raw"), "brats")
    volume = load_patient(record, ("flair", "t1", "t1ce", "t2"))
    for target, exact in (([None, None, None], True), ([1.0, 1.0, None], False)):
        # Native spacing (crop and pad only): a perfect prepared-grid prediction comes back exactly.
        # Resampled to 1 mm (0.9 mm is down-sampled, so not invertible voxel for voxel): it comes back aligned.
        cfg = PrepareConfig(n4_bias_correction=False, nyul=False, target_spacing=target, image_size=[64, 64])
        prepared = preprocess_patient(volume, cfg)
        back = restore_labels(prepared.label[0], prepared.crop)
        out = tmp_path / "pred" / f"{pid}_pred.nii.gz"
        write_prediction(back, record.format, volume.geometry[0], str(out))
        written, source = nib.load(out), nib.load(record.files["flair"])
        assert written.shape == source.shape
        assert np.allclose(written.affine, source.affine) and written.header.get_zooms() == source.header.get_zooms()
        assert int(written.header["qform_code"]) == int(source.header["qform_code"])
        assert int(written.header["sform_code"]) == int(source.header["sform_code"])
        labels = np.asarray(written.dataobj)  # in the 2017 convention again (4 = enhancing)
        if exact:
            assert np.array_equal(labels, seg)
        else:
            for k in (1, 2, 4):
                overlap = 2 * np.sum((labels == k) & (seg == k)) / (np.sum(labels == k) + np.sum(seg == k))
                assert overlap > 0.85, (k, overlap)


@pytest.fixture(scope="module")
def tiny_run(brats_prepared, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("run"))
    train(tiny_config("brats", "train.epochs=1", "train.steps_per_epoch=2"), brats_prepared, run_dir=run, verbose=False)
    return run


@pytest.mark.slow
def test_predict_writes_input_geometry_and_evaluate_scores_it_like_the_model(tiny_run, brats_prepared, tmp_path, capsys):
    manifest = load_manifest(brats_prepared)
    test_ids = manifest.split_ids("test")
    preds = tmp_path / "preds"
    for pid in test_ids:
        assert main(["predict", tiny_run, manifest.patients[pid]["source"], str(preds)]) == 0
        written = nib.load(preds / f"{pid}_pred.nii.gz")
        source = nib.load(os.path.join(manifest.patients[pid]["source"], f"{pid}_flair.nii.gz"))
        assert written.shape == source.shape and np.allclose(written.affine, source.affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 4}
        info = json.loads((preds / f"{pid}_pred.json").read_text())
        assert set(info["probabilities"]) == {"HGG", "LGG"} and info["disease"] in ("HGG", "LGG")
    # One pass per slice: the same geometry and labels as the central-window prediction on most voxels.
    single = tmp_path / "single"
    assert main(["predict", tiny_run, manifest.patients[test_ids[0]]["source"], str(single), "--windows", "single"]) == 0
    one = np.asarray(nib.load(single / f"{test_ids[0]}_pred.nii.gz").dataobj)
    two = np.asarray(nib.load(preds / f"{test_ids[0]}_pred.nii.gz").dataobj)
    assert one.shape == two.shape and np.mean(one == two) > 0.9
    model = evaluate_run(tiny_run, "test", out_dir=str(tmp_path / "a"))
    external = evaluate_run(tiny_run, "test", predictions_dir=str(preds), out_dir=str(tmp_path / "b"))
    assert model["regions"] == external["regions"]
    assert model["diagnosis"]["confusion_matrix"] == external["diagnosis"]["confusion_matrix"]
    for name in ("metrics_per_patient.csv", "summary.json", "table.md", "confusion_matrix.csv"):
        assert os.path.isfile(tmp_path / "a" / name), name
    assert os.path.isfile(tmp_path / "a" / "figures" / "dice_boxplot.png")
    with open(tmp_path / "a" / "metrics_per_patient.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * len(test_ids) and {r["region"] for r in rows} == {"WT", "TC", "ET"}
    assert "| mean |" in (tmp_path / "a" / "table.md").read_text()

    # A missing and a misplaced prediction are reported and skipped, the others scored.
    os.remove(preds / f"{test_ids[0]}_pred.nii.gz")
    if len(test_ids) > 1:
        img = nib.load(preds / f"{test_ids[1]}_pred.nii.gz")
        moved = img.affine.copy()
        moved[0, 3] += 3.0
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved), preds / f"{test_ids[1]}_pred.nii.gz")
    result = evaluate_run(tiny_run, "test", predictions_dir=str(preds), out_dir=str(tmp_path / "c"))
    assert "file not found" in result["skipped"][test_ids[0]]
    if len(test_ids) > 1:
        assert "affine differs" in result["skipped"][test_ids[1]]
    assert result["patients"] == len(test_ids) - len(result["skipped"])


@pytest.mark.slow
def test_acdc_evaluation_reports_both_phases_challenge_columns_and_clinical_agreement(acdc_prepared, tmp_path):
    run = str(tmp_path / "run")
    train(tiny_config("acdc", "train.epochs=1", "train.steps_per_epoch=2"), acdc_prepared, run_dir=run, verbose=False)
    summary = evaluate_run(run, "train", out_dir=str(tmp_path / "eval"))
    assert not summary["skipped"] and set(summary["regions"]) == {"LV", "RV", "MYO"}
    with open(tmp_path / "eval" / "acdc_challenge.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["Name", "Dice LV", "Volume LV", "Err LV(ml)", "Dice RV", "Volume RV", "Err RV(ml)",
                                 "Dice MYO", "Volume MYO", "Err MYO(ml)"]
    assert len(rows) == 2 * summary["patients"] and rows[0]["Name"].endswith(".nii.gz")
    with open(tmp_path / "eval" / "metrics_per_patient.csv") as f:
        assert {r["phase"] for r in csv.DictReader(f)} == {"ED", "ES"}
    assert set(summary["clinical_indices"]) == {"LV_EDV", "LV_ESV", "LV_EF", "RV_EDV", "RV_ESV", "RV_EF", "MYO_mass",
                                               "MYO_max_thickness"}
    assert set(summary["clinical_indices"]["LV_EF"]) == {"correlation", "bias", "std"}
