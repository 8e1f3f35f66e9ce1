"""The ACDC model that ships in the package: listed, verified on load, and segmenting a real patient.

These are smoke tests, not quality claims: the patient predicted below is one the model trained on.
Its scores on the patients it kept out of training are in docs/models/acdc.md, measured by
benchmarks/shipped_model.py.
"""

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from svgan import pretrained
from svgan.cli import main

from conftest import SHARED_DATA, requires_shared_data

COHORT = os.path.join(SHARED_DATA, "acdc-training")
TRAINED_ON = "patient001"  # DCM; in the model's training split (metadata.json: training.patients.train)
BUNDLE = os.path.join(pretrained.SHIPPED_ROOT, "acdc")
MAX_BYTES = 30 * 2**20  # every committed version adds its size to the repository's history


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_the_shipped_acdc_model_is_listed_verified_and_small():
    assert "acdc" in pretrained.shipped_models()
    metadata = pretrained.verify_bundle(BUNDLE)  # every file's sha256 and the Keras version
    assert TRAINED_ON in metadata["training"]["patients"]["train"]
    assert set(metadata["versions"]) == {"svgan", "keras", "tensorflow"}
    assert sum(entry["bytes"] for entry in metadata["files"].values()) <= MAX_BYTES
    kept = set(metadata["training"]["patients"]["test"])
    assert len(kept) == 20 and not kept & set(metadata["training"]["patients"]["train"])


def test_svgan_models_gives_the_acdc_model_one_line_with_its_scores(capsys):
    assert main(["models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("acdc "))
    assert "validation (10 patients): Dice LV" in line and "kept (20 patients): Dice LV" in line


def test_a_damaged_copy_of_the_shipped_weights_is_one_line_naming_the_file(tmp_path, capsys):
    copy = tmp_path / "acdc"
    shutil.copytree(BUNDLE, copy)
    weights = copy / "generator.keras"
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["predict", str(copy), str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(weights) in err and "sha256" in err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
@requires_shared_data
def test_the_shipped_acdc_model_segments_and_diagnoses_a_real_patient_by_name(tmp_path):
    raw = tmp_path / "in"
    raw.mkdir()
    os.symlink(os.path.join(COHORT, TRAINED_ON), raw / TRAINED_ON)
    assert main(["predict", "acdc", str(raw), str(tmp_path / "out")]) == 0
    info = dict(line.split(":", 1) for line in open(os.path.join(COHORT, TRAINED_ON, "Info.cfg")) if ":" in line)
    for phase in ("ED", "ES"):
        frame = f"{TRAINED_ON}_frame{int(info[phase]):02d}"
        truth = nib.load(os.path.join(COHORT, TRAINED_ON, frame + "_gt.nii.gz"))
        pred = nib.load(tmp_path / "out" / f"{frame}_pred.nii.gz")
        assert pred.shape == truth.shape and np.allclose(pred.affine, truth.affine)
        p, t = np.asarray(pred.dataobj), np.asarray(truth.dataobj)
        for label, name in ((1, "RV"), (2, "MYO"), (3, "LV")):
            # A loose floor on a patient it trained on: plausible masks, not a quality figure.
            assert dice(p == label, t == label) >= 0.7, (phase, name)
    with open(tmp_path / "out" / f"{TRAINED_ON}_pred.json") as f:
        probabilities = json.load(f)["probabilities"]
    assert set(probabilities) == {"NOR", "MINF", "DCM", "HCM", "ARV"}
    assert abs(sum(probabilities.values()) - 1.0) < 1e-4
