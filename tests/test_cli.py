import hashlib
import os

import nibabel as nib
import numpy as np

from svgan.cli import main


def _digest(folder):
    """Hash of every file's voxel data (gzip headers carry a timestamp, the voxels do not)."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(name.encode())
            if name.endswith(".nii.gz"):
                h.update(np.asarray(nib.load(path).dataobj).tobytes())
            else:
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def test_synth_is_deterministic_for_a_seed(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["synth", "acdc", str(tmp_path / name), "--patients", "2", "--shape", "32", "32", "4",
                     "--frames", "6", "--seed", "4"]) == 0
    assert main(["synth", "acdc", str(tmp_path / "c"), "--patients", "2", "--shape", "32", "32", "4",
                 "--frames", "6", "--seed", "5"]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert "Wrote 2 patients" in capsys.readouterr().out


def test_synth_acdc_group_option_and_bad_group(tmp_path, capsys):
    assert main(["synth", "acdc", str(tmp_path / "a"), "--patients", "3", "--shape", "24", "24", "3",
                 "--frames", "4", "--groups", "HCM=1,ARV=2", "--no-4d"]) == 0
    assert "HCM 1, RV 2" in capsys.readouterr().out
    assert not any(f.endswith("_4d.nii.gz") for f in os.listdir(tmp_path / "a" / "patient001"))
    assert main(["synth", "acdc", str(tmp_path / "b"), "--groups", "XYZ=1"]) == 2
    assert "unknown ACDC groups ['XYZ']" in capsys.readouterr().err


def test_prepare_with_a_bad_config_value_is_one_line(tmp_path, capsys):
    assert main(["prepare", "brats", str(tmp_path), str(tmp_path / "out"), "--set", "pipeline.batch_size=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["svgan prepare: error: pipeline.batch_size must be >= 1"]
    assert not os.path.exists(tmp_path / "out")


def test_summary_of_a_folder_that_is_not_prepared(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    assert "not a prepared folder" in capsys.readouterr().err
