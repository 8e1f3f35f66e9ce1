"""Training stages: the generator alone first, then the adversarial game with a ramped weight."""

import csv
import os

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.cli import main
from svgan.config import load_config
from svgan.data.manifest import load_manifest
from svgan.training.fit import TrainingInterrupted, Trainer, train
from svgan.training.stages import AdversarialWeight, stage_of

from conftest import REPO, SHARED_DATA, TINY_MODEL, interrupted_at_call, requires_shared_data

tf = import_tf()

COHORT = os.path.join(SHARED_DATA, "acdc-training")
PATIENTS = ("patient002", "patient042", "patient062")  # DCM, MINF, NOR
CONFIG = os.path.join(REPO, "configs", "real_acdc.yaml")
# Epoch 1 supervised, epochs 2-3 adversarial, the weight reaching 0.1 over 3 updates (2 per epoch).
# 32 x 32 training windows of the 64 x 64 test images, as the recipe trains on windows of its images.
# The head fit at each stage's end: the run stopped after epoch 1 and extended to 3 then fits where
# the straight run does (with the recipe's "last", the shorter run's last epoch would be fitted too).
STAGED = TINY_MODEL + ["pipeline.sequence_length=4", "pipeline.crop_size=[32, 32]", "train.steps_per_epoch=2", "train.epochs=3",
                       "train.supervised_epochs=1", "train.adversarial_ramp_steps=3", "loss.adversarial_weight=0.1",
                       "train.lr_schedule=constant", "train.head_fit_iterations=5", "train.max_minutes=null",
                       "train.head_fit_epochs=stage_ends"]


def test_adversarial_weight_is_zero_before_the_stage_then_ramps_linearly():
    w = AdversarialWeight(0.5, start=10, ramp_steps=4)
    # By hand: 0 before update 10, then 0.5 * k / 4 at the k-th adversarial update, then 0.5.
    assert [float(w(s)) for s in (0, 9, 10, 11, 12, 13, 14, 100)] == pytest.approx([0, 0, 0.125, 0.25, 0.375, 0.5, 0.5, 0.5])
    assert float(AdversarialWeight(0.5, start=10)(10)) == 0.5  # no ramp: the full weight at once
    assert float(AdversarialWeight(1.0)(0)) == 1.0  # Rezaei et al.: from the first step
    assert float(w(tf.constant(12, tf.int64))) == pytest.approx(0.375)  # as the compiled step reads it
    assert [stage_of(e, 2) for e in range(4)] == ["supervised", "supervised", "adversarial", "adversarial"]


def test_stage_settings_are_checked():
    with pytest.raises(Exception, match="train.supervised_epochs must be in"):
        load_config(None, ["train.epochs=3", "train.supervised_epochs=4"])
    with pytest.raises(Exception, match="train.adversarial_ramp_steps must be >= 0"):
        load_config(None, ["train.adversarial_ramp_steps=-1"])


@pytest.fixture(scope="module")
def real_prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("staged_acdc")
    raw = root / "raw"
    raw.mkdir()
    for pid in PATIENTS:  # links: the data is never copied
        os.symlink(os.path.join(COHORT, pid), raw / pid)
    out = str(root / "prepared")
    assert main(["prepare", "acdc", str(raw), out, "--config", CONFIG, "--workers", "1",
                 "--set", "prepare.split_fractions=[1.0, 0.0, 0.0]", "--set", "prepare.image_size=[64, 64]",
                 "--set", "prepare.target_spacing=[4.0, 4.0, null]", "--set", "pipeline.crop_size=[32, 32]"]) == 0
    return out


def _discriminator(run_dir, cfg, manifest):
    trainer = Trainer(cfg, manifest, str(run_dir))
    restored = trainer.restore()
    return [v.numpy().copy() for v in trainer.D.weights], int(trainer.gan.d_opt.iterations.numpy()), restored, trainer


@pytest.mark.slow
@requires_shared_data
def test_a_staged_run_on_real_patients_holds_the_discriminator_until_the_boundary_and_resumes_exactly(
        real_prepared, tmp_path, monkeypatch):
    manifest = load_manifest(real_prepared)
    cfg = load_config(CONFIG, STAGED)
    initial, _, _, _ = _discriminator(tmp_path / "fresh", cfg, manifest)

    # Epoch 1 alone: the supervised stage. D is exactly as initialised and never updated.
    train(load_config(CONFIG, STAGED + ["train.epochs=1"]), real_prepared, run_dir=str(tmp_path / "split"), verbose=False)
    after_one, d_updates, restored, trainer = _discriminator(tmp_path / "split", cfg, manifest)
    assert restored and d_updates == 0 and int(trainer.gan.g_opt.iterations.numpy()) == 2
    assert all(np.array_equal(a, b) for a, b in zip(initial, after_one))

    # Resumed across the boundary: the adversarial stage moves D, once per generator update.
    train(cfg, real_prepared, run_dir=str(tmp_path / "split"), resume=True, verbose=False)
    after_three, d_updates, _, trainer = _discriminator(tmp_path / "split", cfg, manifest)
    assert d_updates == 4 and int(trainer.gan.g_opt.iterations.numpy()) == 6
    assert any(not np.array_equal(a, b) for a, b in zip(initial, after_three))
    with open(tmp_path / "split" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["stage"] for r in rows] == ["supervised", "adversarial", "adversarial"]
    # The weight at each epoch's last update (updates 1, 3, 5; the stage starts at update 2):
    # 0, then 0.1 * 2 / 3, then 0.1.
    assert [float(r["adversarial_weight"]) for r in rows] == pytest.approx([0.0, 0.2 / 3, 0.1])
    assert rows[0]["d_loss"] == "" and rows[0]["adversarial"] == "" and float(rows[1]["d_loss"]) > 0

    # The same run without a break, and one interrupted mid-ramp (epoch 2, update 3) by Ctrl-C.
    train(cfg, real_prepared, run_dir=str(tmp_path / "straight"), verbose=False)
    straight = _discriminator(tmp_path / "straight", cfg, manifest)[3]
    with monkeypatch.context() as patched:
        interrupted_at_call(patched, 4)
        with pytest.raises(TrainingInterrupted, match="interrupted at epoch 2, step 1"):
            train(cfg, real_prepared, run_dir=str(tmp_path / "ctrl_c"), verbose=False)
    train(cfg, real_prepared, run_dir=str(tmp_path / "ctrl_c"), resume=True, verbose=False)
    for other in ("split", "ctrl_c"):
        resumed = _discriminator(tmp_path / other, cfg, manifest)[3]
        for a, b in zip(straight.G.weights + straight.D.weights, resumed.G.weights + resumed.D.weights):
            assert np.array_equal(a.numpy(), b.numpy()), (other, a.path)
