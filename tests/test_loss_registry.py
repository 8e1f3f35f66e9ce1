"""Loss selection from the config: one registry, every name usable as Eq. 5's segmentation term."""

import typing

import numpy as np
import pytest

from svgan.config import LossConfig
from svgan.data.manifest import load_manifest
from svgan.data.pipeline import make_dataset
from svgan.errors import ConfigError
from svgan.losses import weighted_categorical_crossentropy
from svgan.losses.registry import CLASSIFICATION_LOSSES, SEGMENTATION_LOSSES, build_segmentation_loss
from svgan.losses.segmentation import unified_focal_loss
from svgan.training.fit import Trainer
from svgan.training.stages import SUPERVISED

from conftest import tiny_config


def test_config_names_are_the_registry_names():
    hints = typing.get_type_hints(LossConfig)
    assert set(typing.get_args(hints["segmentation_loss"])) == set(SEGMENTATION_LOSSES)
    assert set(typing.get_args(hints["classification_loss"])) == set(CLASSIFICATION_LOSSES)


def test_bad_loss_arguments_are_one_config_error():
    with pytest.raises(ConfigError, match="segmentation_loss 'dice'.*unknown parameters"):
        build_segmentation_loss("dice", [1.0, 1.0], {"gamma": 2})
    with pytest.raises(ConfigError, match="unknown loss 'dyce'"):
        build_segmentation_loss("dyce", [1.0, 1.0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEGMENTATION_LOSSES))
def test_every_segmentation_loss_trains_the_core_model(name, brats_prepared, tmp_path):
    manifest = load_manifest(brats_prepared)
    args = "{rare_classes: [1, 3]}" if name == "unified_focal" else "{}"
    cfg = tiny_config("brats", "train.steps_per_epoch=1", "pipeline.batch_size=2", f"loss.segmentation_loss={name}",
                      f"loss.segmentation_loss_args={args}")
    trainer = Trainer(cfg, manifest, str(tmp_path))
    b = next(iter(make_dataset(manifest, "train", cfg, training=True)))
    batch = {k: b[k] for k in ("image", "label", "disease")}
    losses = trainer.gan.generator_losses(batch, training=False)
    logits = trainer.G(batch["image"], training=False)["segmentation"]
    # The step's term is the named loss on the generator's logits, computed here independently.
    if name == "weighted_crossentropy":
        expected = weighted_categorical_crossentropy(batch["label"], logits, trainer.seg_weights)
    elif name == "unified_focal":
        expected = np.mean(unified_focal_loss(batch["label"], logits, rare_classes=[1, 3], from_logits=True))
    else:
        expected = float(trainer.gan.segmentation_loss(batch["label"], logits))
        assert type(trainer.gan.segmentation_loss) is SEGMENTATION_LOSSES[name][0]
    assert float(losses["segmentation"]) == pytest.approx(float(expected), rel=1e-5)
    # One compiled step of the supervised stage: the segmentation term's gradient reaches the
    # generator. The adversarial step takes the same term (GANStep.supervised_losses) and adds D,
    # whose trace would double this test's time.
    trainer.gan.stage = SUPERVISED
    before = trainer.G.get_layer("seg_logits").kernel.numpy().copy()
    step = trainer.gan.step(batch)
    assert np.isfinite(float(step["g_loss"])) and float(step["segmentation"]) == pytest.approx(float(expected), rel=1e-5)
    assert not np.array_equal(before, trainer.G.get_layer("seg_logits").kernel.numpy())


def test_focal_classification_defaults_follow_the_class_count(brats_prepared, tmp_path):
    from svgan.losses.focal import focal_loss
    from svgan.losses.registry import build_classification_loss

    assert build_classification_loss("focal", [1.0, 1.0]).alpha == 0.25  # Zunair and Ben Hamza, binary
    assert build_classification_loss("focal", [1.0] * 5).alpha is None
    assert build_classification_loss("focal", [1.0] * 5, {"alpha": [1, 2, 3, 4, 5]}).alpha == [1, 2, 3, 4, 5]
    manifest = load_manifest(brats_prepared)
    cfg = tiny_config("brats", "pipeline.batch_size=2", "loss.classification_loss=focal",
                      "loss.classify_labelled_windows_only=false")
    trainer = Trainer(cfg, manifest, str(tmp_path))
    b = next(iter(make_dataset(manifest, "train", cfg, training=True)))
    batch = {k: b[k] for k in ("image", "label", "disease")}
    logits = trainer.G(batch["image"], training=False)["disease"]
    expected = np.mean(focal_loss(batch["disease"], logits, alpha=0.25, gamma=2.0, from_logits=True))
    assert float(trainer.gan.generator_losses(batch, training=False)["classification"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ldam", "lmf"])
def test_margin_losses_train_the_volume_head_through_a_cosine_classifier_with_deferred_reweighting(
        name, brats_prepared, tmp_path):
    from svgan.losses.classification import CosineClassifier
    from svgan.training.fit import schedules
    from svgan.training.reweighting import DeferredReweighting
    from svgan.losses.focal import focal_loss

    manifest = load_manifest(brats_prepared)
    counts = manifest.disease_patient_counts("train").astype(float)
    assert counts.min() > 0, "the fixture's training split needs both grades"
    cfg = tiny_config("brats", "pipeline.batch_size=2", "model.classifier=volumes", f"loss.classification_loss={name}",
                      "loss.drw_start_epoch=2", "loss.classify_labelled_windows_only=false")
    trainer = Trainer(cfg, manifest, str(tmp_path))
    assert isinstance(trainer.G.get_layer("cls_logits"), CosineClassifier)
    assert trainer.gan.classification_loss is trainer.classification_loss  # one object for step, head fit and DRW
    b = next(iter(make_dataset(manifest, "train", cfg, training=True)))
    batch = {k: b[k] for k in ("image", "label", "disease")}
    cosines = trainer.G(batch["image"], training=False)["disease"].numpy().astype(float)
    assert np.all(np.abs(cosines) <= 1 + 1e-6)
    # Independently: margins 0.5 * n^-1/4 / max(n^-1/4), the true class's cosine lowered by its
    # margin, cross-entropy at scale 30 (Cao et al. 2019); LMF adds the focal term (gamma 1.5).
    inv = counts ** -0.25
    margins = 0.5 * inv / inv.max()
    y = batch["disease"].numpy()
    z = 30.0 * (cosines - np.eye(len(counts))[y] * margins)
    ldam = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1)))
    expected = ldam.mean()
    if name == "lmf":
        expected += np.mean(focal_loss(batch["disease"], cosines.astype(np.float32), None, 1.5, from_logits=True))
    assert float(trainer.gan.generator_losses(batch, training=False)["classification"]) == pytest.approx(expected, rel=1e-4)
    # Deferred re-weighting: plain weights for epoch 1, effective-number weights (beta 0.9999) from epoch 2.
    drw = [s for s in schedules(cfg, trainer) if isinstance(s, DeferredReweighting)]
    assert len(drw) == 1
    drw[0].on_epoch_begin(0)
    assert np.allclose(trainer.classification_loss.class_weights.numpy(), 1.0)
    drw[0].on_epoch_begin(1)
    raw = (1 - 0.9999) / (1 - 0.9999 ** counts)
    assert np.allclose(trainer.classification_loss.class_weights.numpy(), raw * len(counts) / raw.sum(), rtol=1e-5)
    assert np.isfinite(float(trainer.gan.step(batch)["g_loss"]))


def test_margin_losses_need_the_volume_head_and_reweighting_needs_a_margin_loss():
    with pytest.raises(ConfigError, match="needs model.classifier: volumes"):
        tiny_config("brats", "loss.classification_loss=ldam")
    with pytest.raises(ConfigError, match="drw_start_epoch needs"):
        tiny_config("brats", "model.classifier=volumes", "loss.drw_start_epoch=3")
    with pytest.raises(ConfigError, match="ldam"):
        from svgan.losses.registry import build_classification_loss

        build_classification_loss("ldam", [1.0, 1.0], class_counts=[5, 0])  # a class without patients has no margin
