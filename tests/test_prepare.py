"""``svgan prepare``: manifest contents, re-runs, bad patients, and nothing half-written."""

import json
import os
import shutil

import numpy as np
import pytest

from svgan.cli import main
from svgan.data.manifest import load_manifest, summary_table
from svgan.data.prepare import load_prepared, prepare_dataset
from svgan.data.datasets import discover_patients, load_patient
from svgan.errors import ConfigError

from conftest import tiny_config, write_nifti


def test_manifest_counts_match_the_prepared_files(brats_prepared):
    m = load_manifest(brats_prepared)
    assert m.dataset == "brats" and m.disease_classes == ["HGG", "LGG"]
    assert len(m.patients) == 8
    expected = np.zeros(4, np.int64)
    for pid in m.split_ids("train"):
        image, label = load_prepared(m.patient_file(pid))
        assert image.shape == (1, m.patients[pid]["num_slices"], 48, 48, 4)
        expected += np.bincount(label.ravel(), minlength=4)
    assert m.class_voxel_counts("train").tolist() == expected.tolist()
    train_diseases = [m.patients[p]["disease"] for p in m.split_ids("train")]
    assert m.disease_patient_counts("train").tolist() == [train_diseases.count(0), train_diseases.count(1)]
    assert sum(len(m.split_ids(s)) for s in ("train", "validation", "test")) == 8


def test_native_label_counts_match_the_raw_files(brats_raw, brats_prepared):
    m = load_manifest(brats_prepared)
    for record in discover_patients(brats_raw, "brats")[:2]:
        vol = load_patient(record, ("flair", "t1", "t1ce", "t2"))
        assert m.patients[record.patient_id]["native_label_counts"] == np.bincount(vol.label.ravel(), minlength=4).tolist()


def test_nyul_landmarks_are_learned_on_the_training_split_only(brats_prepared):
    m = load_manifest(brats_prepared)
    train = [np.asarray(m.patients[p]["percentiles"]) for p in m.split_ids("train")]
    assert np.allclose(m.data["nyul_standard"], np.mean(train, axis=0), atol=1e-4)
    # After mapping, each training patient's median (the 50th-percentile landmark) sits on the standard.
    median_index = m.data["nyul_percentiles"].index(50.0)
    pid = m.split_ids("train")[0]
    image, _ = load_prepared(m.patient_file(pid))
    flair = image[..., 0][image[..., 0] != 0]
    assert np.median(flair) == pytest.approx(m.data["nyul_standard"][0][median_index], abs=0.05)


def test_acdc_prepared_holds_ed_and_es(acdc_prepared):
    m = load_manifest(acdc_prepared)
    pid = m.split_ids("train")[0]
    image, label = load_prepared(m.patient_file(pid))
    assert image.shape[0] == 2 and label.shape[0] == 2 and m.patients[pid]["phases"] == ["ED", "ES"]
    # The heart contracts: less LV blood at ES than at ED.
    assert np.sum(label[1] == 3) < np.sum(label[0] == 3)


def _copy_cohort(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_rerun_skips_prepared_patients_and_keeps_the_split(brats_raw, tmp_path):
    out = str(tmp_path / "prep")
    cfg = tiny_config("brats", nyul="false")
    first = prepare_dataset(cfg, brats_raw, out)
    split = load_manifest(out).data["split"]
    second = prepare_dataset(tiny_config("brats", nyul="false", split_seed=99), brats_raw, out)
    assert len(first.prepared) == 8 and second.prepared == [] and len(second.skipped) == 8
    assert load_manifest(out).data["split"] == split  # fixed once written, whatever the seed now
    with pytest.raises(ConfigError, match="prepared with different settings \\(prepare.image_size\\)"):
        prepare_dataset(tiny_config("brats", nyul="false", image_size="[32, 32]"), brats_raw, out)
    third = prepare_dataset(tiny_config("brats", nyul="false", image_size="[32, 32]"), brats_raw, out, overwrite=True)
    assert len(third.prepared) == 8
    assert load_prepared(load_manifest(out).patient_file(third.prepared[0]))[0].shape[2:4] == (32, 32)


def test_bad_patients_are_reported_and_the_good_ones_prepared(brats_raw, tmp_path, capsys):
    raw = _copy_cohort(brats_raw, tmp_path / "raw")
    records = discover_patients(raw, "brats")
    bad_missing, bad_nan = records[0], records[1]
    os.remove(bad_missing.files["t1ce"])
    flair = bad_nan.files["flair"]
    write_nifti(flair, np.full((48, 48, 31), np.nan, np.float32), affine=load_patient(records[2], ("t1",)).geometry[0].affine)
    out = tmp_path / "prep"
    code = main(["prepare", "brats", raw, str(out), "--workers", "2", "--set", "prepare.n4_bias_correction=false",
                 "--set", "prepare.image_size=[48, 48]"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{bad_missing.patient_id}: {bad_missing.folder}: missing modality t1ce" in err
    assert "NaN or infinite" in err and os.path.basename(flair) in err
    m = load_manifest(str(out))
    assert len(m.patients) == 6 and set(m.data["failed"]) == {bad_missing.patient_id, bad_nan.patient_id}
    # Nothing half-written: only the good patients' files and the manifest.
    assert sorted(os.listdir(out)) == sorted([f"{p}.npz" for p in m.patients] + ["manifest.json"])
    assert "Failed patients (2)" in summary_table(m)


def test_an_interrupted_write_leaves_no_file(brats_raw, tmp_path, monkeypatch):
    import svgan.data.prepare as prepare_module

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module.np, "savez_compressed", explode)
    out = tmp_path / "prep"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(tiny_config("brats", nyul="false"), brats_raw, str(out))
    assert os.listdir(out) == []


@pytest.mark.slow
def test_data_prep_module_runs_prepare(acdc_raw, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "prep"
    result = subprocess.run([sys.executable, "-m", "data_prep", "acdc", acdc_raw, str(out), "--workers", "1",
                             "--set", "prepare.n4_bias_correction=false", "--set", "prepare.image_size=[32, 32]",
                             "--set", "prepare.crop=center", "--summary"],
                            capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    assert "Prepared 5" in result.stdout and "| ARV |" in result.stdout
    assert json.loads((out / "manifest.json").read_text())["dataset"] == "acdc"


def test_prepared_read_survives_the_python_311_ast_thread_race(tmp_path, monkeypatch):
    # numpy parses .npy headers with ast; on CPython 3.11 a parse in another thread can make it
    # raise a spurious SystemError (gh-106905). The read retries; a lasting error still names the file.
    from svgan.data import prepare
    from svgan.errors import DataError

    path = str(tmp_path / "p.npz")
    np.savez_compressed(path, image=np.ones((1, 2, 4, 4, 1), np.float16), label=np.zeros((1, 2, 4, 4), np.uint8))
    real_load, failures = np.load, []

    def flaky_load(p, *a, **k):
        if len(failures) < 2:
            failures.append(p)
            raise SystemError("AST constructor recursion depth mismatch (before=33, after=150)")
        return real_load(p, *a, **k)

    monkeypatch.setattr(prepare.np, "load", flaky_load)
    image, label = load_prepared(path)
    assert len(failures) == 2 and image.dtype == np.float32 and image.shape == (1, 2, 4, 4, 1) and label.shape == (1, 2, 4, 4)

    def broken_load(p, *a, **k):
        raise SystemError("AST constructor recursion depth mismatch (before=1, after=2)")

    monkeypatch.setattr(prepare.np, "load", broken_load)
    with pytest.raises(DataError, match="p.npz"):
        load_prepared(path)
