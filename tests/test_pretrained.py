"""Model bundles: what ``svgan export`` writes and what ships in the package, used by name and verified on load."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from svgan import pretrained
from svgan.cli import main
from svgan.training.fit import train

from conftest import tiny_config


@pytest.fixture(scope="module")
def bundle_root(acdc_prepared, tmp_path_factory):
    """A folder of shipped models holding one tiny exported ACDC model, ``tiny``."""
    root = tmp_path_factory.mktemp("shipped")
    run = str(root / "run")
    train(tiny_config("acdc", "train.epochs=1", "train.steps_per_epoch=2"), acdc_prepared, run_dir=run, verbose=False)
    models = root / "models"
    models.mkdir()
    pretrained.export_bundle(run, str(models / "tiny"), "tiny", details={
        "task": "tiny test model",
        "scores": {"validation": {"patients": 2, "dice": {"LV": 0.5, "RV": 0.25, "MYO": 0.125}, "diagnosis_accuracy": 0.5}}})
    return models


@pytest.fixture
def shipped(bundle_root, monkeypatch):
    monkeypatch.setattr(pretrained, "SHIPPED_ROOT", str(bundle_root))
    return bundle_root


@pytest.mark.slow
def test_export_writes_hashes_versions_and_no_local_paths(bundle_root, acdc_prepared):
    folder = bundle_root / "tiny"
    metadata = json.loads((folder / "metadata.json").read_text())
    assert set(metadata["files"]) >= {"generator.keras", "config.yaml", "manifest.json"}
    for name, entry in metadata["files"].items():
        assert entry["sha256"] == pretrained.sha256(str(folder / name))
    assert set(metadata["versions"]) == {"svgan", "keras", "tensorflow"}
    text = (folder / "manifest.json").read_text() + (folder / "config.yaml").read_text()
    assert os.path.dirname(os.path.abspath(acdc_prepared)) not in text  # nothing of the machine that trained it


@pytest.mark.slow
def test_models_lists_the_shipped_models(shipped, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny 1.0.0: tiny test model | input:")
    assert out.strip().endswith("| validation (2 patients): Dice LV 0.500 / RV 0.250 / MYO 0.125, diagnosis 0.50")


@pytest.mark.slow
def test_a_shipped_model_predicts_by_name(shipped, acdc_raw, tmp_path):
    assert main(["predict", "tiny", acdc_raw, str(tmp_path / "out")]) == 0
    assert len([f for f in os.listdir(tmp_path / "out") if f.endswith("_pred.nii.gz")]) == 2 * 5  # ED and ES of 5


@pytest.mark.slow
def test_a_damaged_weights_file_is_one_line_naming_it(shipped, tmp_path, capsys):
    damaged = tmp_path / "models"
    shutil.copytree(shipped / "tiny", damaged / "tiny")
    path = damaged / "tiny" / "generator.keras"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.ModelError, match="sha256 does not match"):
        pretrained.resolve("tiny", str(damaged))
    assert main(["predict", str(damaged / "tiny"), str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "sha256" in err


@pytest.mark.slow
def test_a_missing_weights_file_and_an_unknown_name_are_one_line(shipped, tmp_path, capsys):
    shutil.copytree(shipped / "tiny", tmp_path / "tiny")
    os.remove(tmp_path / "tiny" / "generator.keras")
    with pytest.raises(pretrained.ModelError, match="missing file"):
        pretrained.verify_bundle(str(tmp_path / "tiny"))
    assert main(["predict", "no-such-model", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "shipped: tiny" in capsys.readouterr().err


@pytest.mark.slow
def test_another_keras_major_version_is_refused_in_one_line(shipped, tmp_path):
    shutil.copytree(shipped / "tiny", tmp_path / "tiny")
    meta_path = tmp_path / "tiny" / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    metadata["versions"]["keras"] = "2.15.0"
    meta_path.write_text(json.dumps(metadata))
    with pytest.raises(pretrained.ModelError, match="saved with Keras 2.15.0"):
        pretrained.verify_bundle(str(tmp_path / "tiny"))


@pytest.mark.slow
def test_evaluating_a_bundle_needs_data_and_writes_outside_it(shipped, acdc_raw, tmp_path, monkeypatch, capsys):
    assert main(["evaluate", "tiny"]) == 2
    assert "--data" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "tiny", "--data", acdc_raw]) == 0
    summary = json.loads((tmp_path / "evaluation-tiny" / "summary.json").read_text())
    assert summary["patients"] == 5
    assert len(summary["seen_in_training"]) >= 1  # the bundle knows its patients by folder name
    assert "not_computed" in summary["diagnosis_clinical_reference"]  # no kept training features in this bundle
    assert not os.path.exists(shipped / "tiny" / "evaluation")


@pytest.mark.slow
def test_export_takes_the_models_details_from_a_json_file(bundle_root, tmp_path, capsys):
    run = str(bundle_root.parent / "run")
    details = tmp_path / "details.json"
    details.write_text(json.dumps({"task": "segments phantoms", "licence": "research use",
                                   "training": {"command": "svgan train ...", "data": "5 phantoms"}}))
    assert main(["export", run, str(tmp_path / "b"), "--name", "b", "--details", str(details)]) == 0
    metadata = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert metadata["task"] == "segments phantoms" and metadata["licence"] == "research use"
    # The details' training section adds to the default one: the patient lists the export wrote stay.
    assert metadata["training"]["command"] == "svgan train ..." and metadata["training"]["data"] == "5 phantoms"
    assert set(metadata["training"]["patients"]) == {"train", "validation", "test"}
    details.write_text("[1, 2]")
    assert main(["export", run, str(tmp_path / "c"), "--name", "c", "--details", str(details)]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c")  # nothing half-written
