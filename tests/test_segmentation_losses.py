"""Toolkit segmentation losses against hand values and slow NumPy loops (Cui et al.)."""

import math

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.losses.focal import FocalLoss, focal_loss
from svgan.losses.segmentation import (ComboLoss, DiceLoss, FocalTverskyLoss, TverskyLoss, UnifiedFocalLoss,
                                       combo_loss, dice_loss, focal_tversky_loss, tversky_index, tversky_loss,
                                       unified_focal_loss)

tf = import_tf()
import keras  # noqa: E402


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _slow_counts(onehot, probs):
    """TP, FN, FP per example and class by explicit loops."""
    b, k = probs.shape[0], probs.shape[-1]
    tp, fn, fp = np.zeros((b, k)), np.zeros((b, k)), np.zeros((b, k))
    for i in range(b):
        p, y = probs[i].reshape(-1, k), onehot[i].reshape(-1, k)
        for c in range(k):
            for j in range(p.shape[0]):
                tp[i, c] += p[j, c] * y[j, c]
                fn[i, c] += (1 - p[j, c]) * y[j, c]
                fp[i, c] += p[j, c] * (1 - y[j, c])
    return tp, fn, fp


def test_dice_and_tversky_by_hand():
    # One example, four pixels, two classes. Class 1: p = .9 .2 .6 .1, truth 1 1 0 0.
    p1 = np.array([0.9, 0.2, 0.6, 0.1])
    probs = np.stack([1 - p1, p1], -1)[None].astype(np.float32)
    labels = np.array([[1, 1, 0, 0]])
    # Class 1: TP = 1.1, FN = 0.9, FP = 0.7. Class 0: TP = 0.4 + 0.9 = 1.3, FN = 0.7, FP = 0.9.
    dice1, dice0 = 2.2 / (2.2 + 0.9 + 0.7), 2.6 / (2.6 + 0.7 + 0.9)
    assert float(dice_loss(labels, probs, smooth=0)[0]) == pytest.approx(1 - (dice0 + dice1) / 2, rel=1e-5)
    assert float(dice_loss(labels, probs, smooth=0, class_reduction="sum")[0]) == pytest.approx(2 - dice0 - dice1, rel=1e-5)
    ti1 = 1.1 / (1.1 + 0.7 * 0.9 + 0.3 * 0.7)
    ti0 = 1.3 / (1.3 + 0.7 * 0.7 + 0.3 * 0.9)
    assert np.allclose(tversky_index(labels, probs, smooth=0)[0], [ti0, ti1], rtol=1e-5)
    assert float(tversky_loss(labels, probs, smooth=0)[0]) == pytest.approx(1 - (ti0 + ti1) / 2, rel=1e-5)
    ft = ((1 - ti0) ** 0.75 + (1 - ti1) ** 0.75) / 2
    assert float(focal_tversky_loss(labels, probs, smooth=0)[0]) == pytest.approx(ft, rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy_and_alpha_weighs_the_true_class():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(3, 5, 6))
    log_p = np.log(_softmax(logits.astype(np.float64)))
    ce = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    assert np.allclose(focal_loss(labels, logits, gamma=0.0, from_logits=True), ce.mean((1, 2)), rtol=1e-5)
    alpha = [0.1, 0.2, 0.3, 0.4]
    p_t = np.exp(-ce)
    expected = (np.take(alpha, labels) * (1 - p_t) ** 2 * ce).mean((1, 2))
    assert np.allclose(focal_loss(labels, logits, alpha=alpha, gamma=2.0, from_logits=True), expected, rtol=1e-5)


def test_focal_scalar_alpha_is_binary_only_and_changes_the_loss():
    logits = np.array([[2.0, -1.0], [0.5, 0.3]], np.float32)
    labels = np.array([1, 0])
    p = _softmax(logits.astype(np.float64))
    # alpha 0.25: class 1 weighted 0.25, class 0 weighted 0.75 (Lin et al.).
    expected = [-0.25 * (1 - p[0, 1]) ** 2 * math.log(p[0, 1]), -0.75 * (1 - p[1, 0]) ** 2 * math.log(p[1, 0])]
    assert np.allclose(focal_loss(labels, logits, alpha=0.25, from_logits=True), expected, rtol=1e-5)
    assert not np.allclose(focal_loss(labels, logits, alpha=0.25, from_logits=True),
                           focal_loss(labels, logits, alpha=0.5, from_logits=True))
    with pytest.raises(ValueError, match="2 classes"):
        focal_loss(np.array([0]), np.zeros((1, 3), np.float32), alpha=0.25)


def _slow_unified(onehot, probs, weight, delta, gamma, rare, asymmetric):
    k = probs.shape[-1]
    b = probs.shape[0]
    out = np.zeros(b)
    tp, fn, fp = _slow_counts(onehot, probs)
    for i in range(b):
        p, y = probs[i].reshape(-1, k), onehot[i].reshape(-1, k)
        focal = 0.0
        for j in range(p.shape[0]):
            c = int(np.argmax(y[j]))
            w = delta if c in rare else 1 - delta
            mod = 1.0 if (asymmetric and c in rare) else (1 - p[j, c]) ** gamma
            focal += -w * mod * math.log(p[j, c])
        focal /= p.shape[0]
        terms = []
        for c in range(k):
            d = 1 - (tp[i, c] + 1e-6) / (tp[i, c] + delta * fn[i, c] + (1 - delta) * fp[i, c] + 1e-6)
            terms.append(d if (asymmetric and c not in rare) else d ** (1 - gamma))
        out[i] = weight * focal + (1 - weight) * np.mean(terms)
    return out


@pytest.mark.parametrize("asymmetric", [True, False])
def test_unified_focal_matches_a_slow_loop_on_volumes(asymmetric):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 3, 4, 5, 4)) * 2
    labels = rng.integers(0, 4, size=(2, 3, 4, 5))
    probs = _softmax(logits)
    onehot = np.eye(4)[labels]
    expected = _slow_unified(onehot, probs, 0.5, 0.6, 0.5, [2, 3], asymmetric)
    got = unified_focal_loss(labels, logits.astype(np.float32), rare_classes=[2, 3], asymmetric=asymmetric,
                             from_logits=True)
    assert np.allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("asymmetric", [True, False])
def test_unified_focal_reduces_to_cross_entropy_and_dice(asymmetric):
    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(size=(2, 6, 7, 3))).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 6, 7))
    ce = -np.log(np.take_along_axis(probs.astype(np.float64), labels[..., None], -1)[..., 0]).mean((1, 2))
    as_ce = unified_focal_loss(labels, probs, weight=1.0, delta=0.5, gamma=0.0, asymmetric=asymmetric)
    assert np.allclose(as_ce, 0.5 * ce, rtol=1e-5)
    as_dice = unified_focal_loss(labels, probs, weight=0.0, delta=0.5, gamma=0.0, asymmetric=asymmetric)
    assert np.allclose(as_dice, dice_loss(labels, probs), rtol=1e-5)


def test_combo_matches_a_slow_loop():
    rng = np.random.default_rng(4)
    probs = _softmax(rng.normal(size=(2, 5, 4, 3)))
    labels = rng.integers(0, 3, size=(2, 5, 4))
    onehot = np.eye(3)[labels]
    tp, fn, fp = _slow_counts(onehot, probs)
    expected = []
    for i in range(2):
        bce = -(0.7 * onehot[i] * np.log(probs[i]) + 0.3 * (1 - onehot[i]) * np.log(1 - probs[i]))
        dice = (2 * tp[i] + 1e-6) / (2 * tp[i] + fn[i] + fp[i] + 1e-6)
        expected.append(0.4 * bce.mean() + 0.6 * np.mean(1 - dice))
    assert np.allclose(combo_loss(labels, probs.astype(np.float32), alpha=0.4, beta=0.7), expected, rtol=1e-5)


ALL_LOSSES = [DiceLoss(), TverskyLoss(), FocalTverskyLoss(), ComboLoss(), UnifiedFocalLoss(),
              UnifiedFocalLoss(asymmetric=False), FocalLoss(gamma=2.0)]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: l.name)
def test_values_and_gradients_stay_finite_at_the_extremes(loss):
    labels = np.array([[0, 1, 2, 2], [1, 1, 0, 2]])
    perfect = np.eye(3, dtype=np.float32)[labels]  # p in {0, 1}, Tversky index exactly 1
    wrong = np.eye(3, dtype=np.float32)[(labels + 1) % 3]
    for probs in (perfect, wrong):
        x = tf.Variable(probs)
        with tf.GradientTape() as tape:
            value = loss(labels, x)
        grad = tape.gradient(value, x)
        assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy())), loss.name
    big = tf.Variable((perfect * 200.0 - 100.0))  # saturated logits
    logits_loss = type(loss).from_config({**loss.get_config(), "from_logits": True})
    with tf.GradientTape() as tape:
        value = logits_loss(labels, big)
    assert np.isfinite(float(value)) and np.all(np.isfinite(tape.gradient(value, big).numpy()))
    assert float(loss(labels, perfect)) < float(loss(labels, wrong))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: l.name)
def test_any_spatial_rank_integer_or_one_hot_labels_and_config_round_trip(loss):
    rng = np.random.default_rng(5)
    for shape in [(3,), (3, 5), (3, 4, 5), (3, 2, 4, 5)]:
        labels = rng.integers(0, 3, size=shape)
        probs = _softmax(rng.normal(size=(*shape, 3))).astype(np.float32)
        a = float(loss(labels, probs))
        b = float(loss(np.eye(3, dtype=np.float32)[labels], probs))
        assert a == pytest.approx(b, rel=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert float(restored(labels, probs)) == pytest.approx(a, rel=1e-6)


def test_unknown_parameters_and_reductions_are_refused():
    with pytest.raises(TypeError, match="unknown"):
        DiceLoss(delta=0.3)
    with pytest.raises(ValueError, match="class_reduction"):
        TverskyLoss(class_reduction="median")
    with pytest.raises(ValueError, match="rare classes"):
        unified_focal_loss(np.array([[0, 1]]), np.full((1, 2, 2), 0.5, np.float32), rare_classes=[5])
