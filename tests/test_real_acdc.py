"""The whole path on real ACDC patients (../shared/data/acdc-training): prepare with the checked-in
real-data config, train a few steps, evaluate held-out real patients, predict back to native geometry."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import yaml

from svgan.cli import main

from conftest import REPO, SHARED_DATA, TINY_MODEL, requires_shared_data

COHORT = os.path.join(SHARED_DATA, "acdc-training")
TRAIN_PATIENTS = ("patient001", "patient021")  # DCM, HCM
HELD_OUT = "patient061"  # NOR
FAST = TINY_MODEL + ["model.classifier_units=[8]", "train.epochs=1", "train.supervised_epochs=0", "train.steps_per_epoch=3",
                     "pipeline.sequence_length=8"]


def _link_patients(folder, ids):
    """A raw ACDC folder of links to real patients (the data is never copied)."""
    os.makedirs(folder, exist_ok=True)
    for pid in ids:
        os.symlink(os.path.join(COHORT, pid), os.path.join(folder, pid))
    return str(folder)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_acdc")
    raw = _link_patients(root / "raw", TRAIN_PATIENTS)
    config = os.path.join(REPO, "configs", "real_acdc.yaml")
    assert main(["prepare", "acdc", raw, str(root / "prepared"), "--config", config, "--workers", "1",
                 "--set", "prepare.split_fractions=[1.0, 0.0, 0.0]"]) == 0
    run = str(root / "run")
    assert main(["train", "--config", config, "--data", str(root / "prepared"), "--run-dir", run,
                 *[a for o in FAST for a in ("--set", o)]]) == 0
    return root, run


@pytest.mark.slow
@requires_shared_data
def test_real_patients_train_and_are_scored_held_out_with_both_diagnoses(real_run, tmp_path):
    root, run = real_run
    with open(os.path.join(run, "history.csv")) as f:
        header = f.readline().strip().split(",")
    assert {"steps", "s_per_step", "steps_per_s"} <= set(header)  # the step rate of every epoch
    held_out = _link_patients(tmp_path / "held_out", [HELD_OUT])
    assert main(["evaluate", run, "--data", held_out, "--out", str(tmp_path / "plain")]) == 0
    with open(tmp_path / "plain" / "summary.json") as f:
        plain = json.load(f)
    # Not asked for: the training patients are not predicted, and the summary says how to ask.
    assert "--forest-on-predictions" in plain["diagnosis_clinical_reference"]["not_computed"]
    assert not os.path.exists(os.path.join(run, "predictions_train"))
    assert main(["evaluate", run, "--data", held_out, "--out", str(tmp_path / "eval"), "--forest-on-predictions"]) == 0
    with open(tmp_path / "eval" / "summary.json") as f:
        summary = json.load(f)
    assert summary["patients"] == 1 and summary["seen_in_training"] == []
    assert set(summary["regions"]) == {"LV", "RV", "MYO"}
    assert sum(map(sum, summary["diagnosis"]["confusion_matrix"])) == 1  # the model's own head
    ref = summary["diagnosis_clinical_reference"]
    assert ref["training_patients"] == len(TRAIN_PATIENTS) and ref["patients"] == 1
    assert ref["predictions"][HELD_OUT] in ("NOR", "MINF", "DCM", "HCM", "ARV")
    assert os.path.isfile(tmp_path / "eval" / "confusion_matrix_clinical_reference.csv")
    # The run's predictions of its training patients, which that forest was fitted on, and their features are kept.
    kept = os.listdir(os.path.join(run, "predictions_train"))
    assert {f"{pid}_pred.json" for pid in TRAIN_PATIENTS} <= set(kept)
    with open(os.path.join(run, "predicted_features_train.json")) as f:
        features = json.load(f)
    assert sorted(r["patient"] for r in features["rows"]) == sorted(TRAIN_PATIENTS)
    with open(os.path.join(run, "config.yaml")) as f:
        assert features["settings"]["test_time_views"] == yaml.safe_load(f)["postprocess"]["test_time_views"]


@pytest.mark.slow
@requires_shared_data
def test_kept_training_predictions_are_reused_only_under_the_same_test_time_views(real_run, tmp_path):
    _, run = real_run
    held_out = _link_patients(tmp_path / "held_out", [HELD_OUT])
    kept = os.path.join(run, "predictions_train", f"{TRAIN_PATIENTS[0]}_pred.json")

    def evaluate_with(views):
        out = str(tmp_path / f"eval_{len(os.listdir(tmp_path))}")
        assert main(["evaluate", run, "--data", held_out, "--out", out, "--set", f"postprocess.test_time_views={views}",
                     "--forest-on-predictions"]) == 0
        return os.stat(kept).st_mtime_ns

    once = evaluate_with("[]")
    assert evaluate_with("[]") == once  # same settings: the kept predictions serve again
    assert evaluate_with("[[8, 1]]") != once  # other views make other label maps: predicted again


@pytest.mark.slow
@requires_shared_data
def test_a_patient_the_run_trained_on_is_flagged_and_one_without_group_is_scored_for_segmentation_only(real_run, tmp_path):
    _, run = real_run
    folder = tmp_path / "mixed"
    _link_patients(folder, [TRAIN_PATIENTS[0]])
    nogroup = folder / "patient099"  # a testing-style patient: Info.cfg without Group
    nogroup.mkdir()
    for name in os.listdir(os.path.join(COHORT, "patient099")):
        if name.endswith(".nii.gz"):
            os.symlink(os.path.join(COHORT, "patient099", name), nogroup / name)
    with open(os.path.join(COHORT, "patient099", "Info.cfg")) as f:
        (nogroup / "Info.cfg").write_text("".join(line for line in f if not line.startswith("Group")))
    assert main(["evaluate", run, "--data", str(folder), "--out", str(tmp_path / "eval"), "--forest-on-predictions"]) == 0
    with open(tmp_path / "eval" / "summary.json") as f:
        summary = json.load(f)
    assert summary["patients"] == 2 and summary["seen_in_training"] == [TRAIN_PATIENTS[0]]
    # Only the patient with a known group enters either diagnosis.
    assert sum(map(sum, summary["diagnosis"]["confusion_matrix"])) == 1
    assert summary["diagnosis_clinical_reference"]["patients"] == 1


@pytest.mark.slow
@requires_shared_data
def test_prediction_of_a_real_patient_has_its_header_shape_and_acdc_labels(real_run, tmp_path):
    _, run = real_run
    held_out = _link_patients(tmp_path / "in", [HELD_OUT])
    assert main(["predict", run, held_out, str(tmp_path / "out")]) == 0
    info = dict(line.split(":", 1) for line in open(os.path.join(COHORT, HELD_OUT, "Info.cfg")) if ":" in line)
    for phase in ("ED", "ES"):
        frame = f"{HELD_OUT}_frame{int(info[phase]):02d}"
        source = nib.load(os.path.join(COHORT, HELD_OUT, frame + ".nii.gz"))
        pred = nib.load(tmp_path / "out" / f"{frame}_pred.nii.gz")
        assert pred.shape == source.shape
        assert np.array_equal(pred.affine, source.affine) and pred.header.get_zooms() == source.header.get_zooms()
        assert (int(pred.header["sform_code"]), int(pred.header["qform_code"])) == \
            (int(source.header["sform_code"]), int(source.header["qform_code"]))
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3}
    with open(tmp_path / "out" / f"{HELD_OUT}_pred.json") as f:
        assert set(json.load(f)["probabilities"]) == {"NOR", "MINF", "DCM", "HCM", "ARV"}


@pytest.mark.slow
@requires_shared_data
def test_largest_component_prediction_leaves_one_piece_per_structure(real_run, tmp_path):
    from scipy import ndimage

    _, run = real_run
    held_out = _link_patients(tmp_path / "in", [HELD_OUT])
    assert main(["predict", run, held_out, str(tmp_path / "out"), "--set", "postprocess.largest_component=true"]) == 0
    for name in os.listdir(tmp_path / "out"):
        if name.endswith("_pred.nii.gz"):
            pred = np.asarray(nib.load(tmp_path / "out" / name).dataobj)
            for c in (1, 2, 3):
                if (pred == c).any():
                    # Restoring the native grid may split a piece thinner than a voxel; never into more than a few.
                    _, n = ndimage.label(pred == c, structure=np.ones((3, 3, 3)))
                    assert n <= 3, (name, c, n)


@pytest.mark.slow
@requires_shared_data
def test_test_time_views_keep_the_input_geometry_and_an_unturned_view_changes_nothing(real_run, tmp_path):
    _, run = real_run
    held_out = _link_patients(tmp_path / "in", [HELD_OUT])
    outputs = {}
    # The run's own config (the recipe's) has nine views; each prediction here names its own.
    for name, views in (("plain", "[]"), ("unturned", "[[0, 1]]"), ("turned", "[[8, 1], [0, 1.1]]")):
        assert main(["predict", run, held_out, str(tmp_path / name), "--set", f"postprocess.test_time_views={views}"]) == 0
        with open(tmp_path / name / f"{HELD_OUT}_pred.json") as f:
            head = json.load(f)["head_probabilities"]
        labels = {n: nib.load(tmp_path / name / n) for n in sorted(os.listdir(tmp_path / name)) if n.endswith(".nii.gz")}
        outputs[name] = head, labels
    plain_head, plain_labels = outputs["plain"]
    for name in ("unturned", "turned"):
        head, labels = outputs[name]
        assert labels.keys() == plain_labels.keys()
        for n, img in labels.items():
            assert img.shape == plain_labels[n].shape and np.array_equal(img.affine, plain_labels[n].affine)
    # A view turned by nothing is the patient itself: the average of two equal predictions.
    assert outputs["unturned"][0] == pytest.approx(plain_head, abs=1e-5)
    for n, img in outputs["unturned"][1].items():
        assert np.array_equal(np.asarray(img.dataobj), np.asarray(plain_labels[n].dataobj))
    assert outputs["turned"][0] != pytest.approx(plain_head, abs=1e-5)
