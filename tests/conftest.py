"""Shared fixtures: tiny synthetic cohorts in the real layouts, and the real samples in ../shared/data."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.config import load_config

# Two logical CPU devices stand in for two GPUs in the tf.distribute tests. This must
# happen before TensorFlow initialises its devices, i.e. before any test runs an op.
_tf = import_tf()
_cpus = _tf.config.list_physical_devices("CPU")
_tf.config.set_logical_device_configuration(_cpus[0], [_tf.config.LogicalDeviceConfiguration()] * 2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")

requires_shared_data = pytest.mark.skipif(
    not os.path.isdir(SHARED_DATA), reason=f"real samples not found at {SHARED_DATA} (a checkout without ../shared)")


def write_nifti(path, array, affine=None, zooms=None):
    img = nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine)
    if zooms is not None:
        img.header.set_zooms(zooms)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(img, path)
    return path


# A model small enough that a training step takes a few hundredths of a second on CPU.
TINY_MODEL = ["model.base_filters=4", "model.recurrent_units=4", "model.discriminator_filters=4",
              "model.classifier_units=[8]", "train.image_summaries=false"]


def interrupted_at_call(monkeypatch, n: int, signal_number: int | None = None, after_update: bool = False) -> None:
    """Ctrl-C at the ``n``-th training step (1-based): GANStep.step raises KeyboardInterrupt there,
    or, given ``signal_number``, sends that signal to this process there (as ``kill`` would); with
    ``after_update`` the interruption comes once that step's update is applied, before it returns."""
    from svgan.training import gan_step

    real_step, calls = gan_step.GANStep.step, {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] != n:
            return real_step(self, batch)
        if after_update:
            real_step(self, batch)
        if signal_number is None:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal_number)
        return real_step(self, batch)

    monkeypatch.setattr(gan_step.GANStep, "step", interrupted)


def tiny_config(dataset: str, *more_overrides: str, **prepare):
    """Fast settings for tests: no N4, small in-plane size, a tiny model; then ``more_overrides``."""
    return load_config(None, tiny_overrides(dataset, *more_overrides, **prepare))


def tiny_overrides(dataset: str, *more_overrides: str, **prepare) -> list[str]:
    """``tiny_config``'s settings as KEY=VALUE strings (for ``svgan ... --set``)."""
    overrides = [f"data.dataset={dataset}", "prepare.n4_bias_correction=false"]
    if dataset == "brats":
        overrides += ["prepare.image_size=[48, 48]", "pipeline.sequence_length=4"]
    else:
        overrides += ["prepare.image_size=[48, 48]", "prepare.crop=center", "pipeline.sequence_length=8",
                      "prepare.target_spacing=[2.0, 2.0, null]"]
    return overrides + [f"prepare.{k}={v}" for k, v in prepare.items()] + TINY_MODEL + list(more_overrides)


@pytest.fixture(scope="session")
def brats_raw(tmp_path_factory):
    """8 phantom BraTS patients (6 HGG, 2 LGG) at 5 mm in the BraTS 2017 layout."""
    from svgan.data.synthetic.brats import write_brats_cohort

    out = str(tmp_path_factory.mktemp("brats_raw"))
    write_brats_cohort(out, patients=8, seed=3, shape=(48, 48, 31))
    return out


@pytest.fixture(scope="session")
def acdc_raw(tmp_path_factory):
    """5 phantom ACDC patients (one per group) in the ACDC layout."""
    from svgan.data.synthetic.acdc import write_acdc_cohort

    out = str(tmp_path_factory.mktemp("acdc_raw"))
    write_acdc_cohort(out, patients=5, seed=3, shape=(64, 64, 6), frames=8)
    return out


@pytest.fixture(scope="session")
def brats_prepared(brats_raw, tmp_path_factory):
    from svgan.data.prepare import prepare_dataset

    out = str(tmp_path_factory.mktemp("brats_prepared"))
    report = prepare_dataset(tiny_config("brats"), brats_raw, out)
    assert not report.failed
    return out


@pytest.fixture(scope="session")
def acdc_prepared(acdc_raw, tmp_path_factory):
    from svgan.data.prepare import prepare_dataset

    out = str(tmp_path_factory.mktemp("acdc_prepared"))
    report = prepare_dataset(tiny_config("acdc"), acdc_raw, out)
    assert not report.failed
    return out
