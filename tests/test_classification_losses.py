"""LDAM, deferred re-weighting and LMF (Sadi et al.) against values worked out by hand."""

import math
import warnings

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.losses.classification import (CosineClassifier, LDAMLoss, LMFLoss,
                                         effective_number_weights, ldam_loss, ldam_margins, lmf_loss)
from svgan.losses.focal import focal_loss
from svgan.training.reweighting import DeferredReweighting

tf = import_tf()
import keras  # noqa: E402


def _lse(values):
    return math.log(sum(math.exp(v) for v in values))


def test_margins_follow_the_counts_in_label_order():
    # n^(-1/4) for 100, 10, 1: 0.31623, 0.56234, 1; scaled so the largest is 0.5.
    assert np.allclose(ldam_margins([100, 10, 1]), [0.158114, 0.281170, 0.5], rtol=1e-5)
    assert np.allclose(ldam_margins([1, 10, 100]), [0.5, 0.281170, 0.158114], rtol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        ldam_margins([5, 0, 3])


def test_ldam_by_hand_and_unknown_classes_count_zero():
    logits = np.array([[0.2, -0.1, 0.5], [0.3, 0.1, -0.2]], np.float32)
    margins = [0.1, 0.3, 0.5]
    # Example 0, class 1: z_1 - 0.3 = -0.4; at s = 30: -(-12) + log(e^6 + e^-12 + e^15).
    expected0 = 12 + _lse([6.0, -12.0, 15.0])
    got = ldam_loss(np.array([1, -1]), logits, margins, scale=30.0)
    assert float(got[0]) == pytest.approx(expected0, rel=1e-5)
    assert float(got[1]) == 0.0
    # Per-class weights multiply by the weight of the true class only.
    weighted = ldam_loss(np.array([1, 0]), logits, margins, 30.0, class_weights=[2.0, 3.0, 5.0])
    plain = ldam_loss(np.array([1, 0]), logits, margins, 30.0)
    assert np.allclose(weighted, np.array(plain) * [3.0, 2.0], rtol=1e-6)


def test_ldam_warns_on_raw_logits_at_scale_30_only():
    with pytest.warns(UserWarning, match="cosine logits"):
        ldam_loss(np.array([0]), np.array([[4.0, -2.0]], np.float32), [0.5, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ldam_loss(np.array([0]), np.array([[0.9, -0.5]], np.float32), [0.5, 0.3])


def test_effective_number_weights_by_hand():
    beta = 0.9999
    raw = [(1 - beta) / (1 - beta ** 1000), (1 - beta) / (1 - beta ** 10)]
    expected = np.array(raw) * 2 / sum(raw)
    assert np.allclose(effective_number_weights([1000, 10], beta), expected, rtol=1e-6)
    assert effective_number_weights([1000, 10])[1] > 1 > effective_number_weights([1000, 10])[0]


def test_deferred_reweighting_switches_at_its_epoch_inside_a_compiled_step():
    loss = LDAMLoss([90, 10], scale=1.0)
    drw = DeferredReweighting(loss, start_epoch=3)
    labels, logits = tf.constant([1, 1]), tf.constant([[0.5, -0.5], [0.2, 0.1]])

    @tf.function
    def compiled():
        return loss(labels, logits)

    assert drw.on_epoch_begin(1) == {"drw_reweighted": 0.0}  # the trainer's index 1 is epoch 2
    before = float(compiled())
    assert drw.on_epoch_begin(2) == {"drw_reweighted": 1.0}  # epoch 3
    after = float(compiled())
    w = effective_number_weights([90, 10])
    assert after == pytest.approx(before * w[1], rel=1e-5)  # every example is class 1
    assert np.allclose(drw.weights_for(1), 1.0) and np.allclose(drw.weights_for(5), w)


def test_lmf_is_alpha_ldam_plus_beta_focal():
    logits = np.array([[0.6, -0.2, 0.1], [-0.3, 0.4, 0.2]], np.float32)
    labels = np.array([2, 1])
    margins = ldam_margins([50, 20, 5])
    ldam = np.array(ldam_loss(labels, logits, margins, 30.0))
    focal = np.array(focal_loss(labels, logits, None, 1.5, from_logits=True))
    assert np.allclose(lmf_loss(labels, logits, margins), ldam + focal, rtol=1e-6)
    assert np.allclose(lmf_loss(labels, logits, margins, alpha=0.3, beta=2.0), 0.3 * ldam + 2.0 * focal, rtol=1e-6)
    # Focal term by hand for example 0 (gamma 1.5, true class 2).
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert focal[0] == pytest.approx(-(1 - p[2]) ** 1.5 * math.log(p[2]), rel=1e-5)


def test_cosine_classifier_and_losses_survive_serialisation():
    layer = CosineClassifier(3)
    out = layer(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32) * 10)
    assert out.shape == (4, 3) and float(tf.reduce_max(tf.abs(out))) <= 1.0 + 1e-6
    for loss in (LDAMLoss([30, 5, 2], max_margin=0.4), LMFLoss([30, 5, 2], gamma=2.0)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert restored.get_config() == loss.get_config()
        assert np.allclose(restored.margins, loss.margins)
        assert float(restored(np.array([2]), out[:1])) == pytest.approx(float(loss(np.array([2]), out[:1])), rel=1e-6)
