"""Losses of Rezaei et al. against hand-computed values and slow, obvious NumPy loops."""

import math

import numpy as np
import pytest

from svgan.losses import (DiscriminatorLoss, GeneratorAdversarialLoss, WeightedCategoricalCrossentropy,
                          WeightedL1Classification, discriminator_loss, generator_adversarial_loss,
                          selective_class_weights, total_generator_loss, weighted_categorical_crossentropy,
                          weighted_crossentropy_classification, weighted_l1_classification)


def test_selective_weights_on_a_known_frequency_table():
    # |C| = 100 voxels, N = 4 classes: w_c = sqrt(100 / (4 f_c)).
    w = selective_class_weights([90, 5, 4, 1])
    assert np.allclose(w, [math.sqrt(100 / 360), math.sqrt(5.0), 2.5, 5.0], rtol=1e-6)
    assert w[0] < 1 < w[1] < w[2] < w[3]  # large classes below 1, the rarest the highest


def test_selective_weights_balanced_and_absent_classes():
    assert np.allclose(selective_class_weights([7, 7, 7]), 1.0)
    # An absent class is weighted as if seen once: sqrt(10 / (2 * 1)).
    assert np.allclose(selective_class_weights([10, 0]), [math.sqrt(10 / 20), math.sqrt(5.0)])
    with pytest.raises(ValueError):
        selective_class_weights([0, 0])


def test_weighted_cross_entropy_by_hand():
    # One pixel, two equal logits: -log(1/2) = log 2, times w_1 = 3.
    value = weighted_categorical_crossentropy(np.array([1]), np.array([[0.0, 0.0]], np.float32), [1.0, 3.0])
    assert float(value) == pytest.approx(3 * math.log(2), rel=1e-6)


def test_weighted_cross_entropy_matches_a_slow_loop():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 3, 4, 5))
    weights = np.array([0.5, 2.0, 3.0, 7.0], np.float32)
    total, n = 0.0, 0
    for idx in np.ndindex(labels.shape):
        z = logits[idx].astype(np.float64)
        log_p = z - np.log(np.sum(np.exp(z)))
        total += -weights[labels[idx]] * log_p[labels[idx]]
        n += 1
    assert float(weighted_categorical_crossentropy(labels, logits, weights)) == pytest.approx(total / n, rel=1e-5)


def test_weighted_l1_by_hand_and_unknown_labels_ignored():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    logits = np.log(probs).astype(np.float32)
    # Patient 1 (class 0): 1 * |1 - 0.7| + 2 * |0 - 0.3| = 0.9; patient 2 (class 1): 1 * 0.2 + 2 * 0.2 = 0.6;
    # patient 3 unknown (-1): contributes 0. Mean over the batch = (0.9 + 0.6 + 0) / 3 = 0.5.
    value = weighted_l1_classification(np.array([0, 1, -1]), logits, [1.0, 2.0])
    assert float(value) == pytest.approx(0.5, rel=1e-5)


def test_weighted_crossentropy_classification_by_hand():
    logits = np.log(np.array([[0.7, 0.3], [0.2, 0.8]])).astype(np.float32)
    # -1 * log 0.7 for class 0 (w = 1), -2 * log 0.8 for class 1 (w = 2), mean over the 2 patients.
    expected = (-math.log(0.7) - 2 * math.log(0.8)) / 2
    value = weighted_crossentropy_classification(np.array([0, 1]), logits, [1.0, 2.0])
    assert float(value) == pytest.approx(expected, rel=1e-5)


def _bce(x, z):
    return -(z * np.log(1 / (1 + np.exp(-x))) + (1 - z) * np.log(1 - 1 / (1 + np.exp(-x))))


def test_adversarial_losses_match_the_bce_formula():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 3, 8, 8))
    expected_d = 0.5 * (_bce(real, 1).mean() + _bce(fake, 0).mean())
    assert float(discriminator_loss(real.astype(np.float32), fake.astype(np.float32))) == pytest.approx(expected_d, rel=1e-5)
    # Non-saturating generator term: -log D(G(x)).
    assert float(generator_adversarial_loss(fake.astype(np.float32))) == pytest.approx(_bce(fake, 1).mean(), rel=1e-5)
    # Stable for large logits (the naive formula overflows).
    assert math.isfinite(float(discriminator_loss(np.array([500.0], np.float32), np.array([-500.0], np.float32))))


def test_total_is_the_weighted_sum_of_eq_5():
    assert total_generator_loss(1.0, 2.0, 3.0) == 6.0
    assert total_generator_loss(1.0, 2.0, 3.0, (0.5, 1.0, 2.0)) == 0.5 + 2.0 + 6.0


def test_keras_loss_classes_agree_with_the_cores_and_round_trip_their_config():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 3, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 3, 4, 4))
    loss = WeightedCategoricalCrossentropy([1.0, 2.0, 4.0])
    clone = WeightedCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.class_weights == [1.0, 2.0, 4.0]
    assert float(clone(labels, logits)) == pytest.approx(float(weighted_categorical_crossentropy(labels, logits, [1, 2, 4])), rel=1e-6)
    l1 = WeightedL1Classification.from_config(WeightedL1Classification([1.0, 3.0]).get_config())
    d_logits = rng.normal(size=(4, 2)).astype(np.float32)
    assert float(l1(np.array([0, 1, 1, 0]), d_logits)) == pytest.approx(
        float(weighted_l1_classification(np.array([0, 1, 1, 0]), d_logits, [1.0, 3.0])), rel=1e-6)
    real, fake = rng.normal(size=(2, 5)).astype(np.float32), rng.normal(size=(2, 5)).astype(np.float32)
    assert float(DiscriminatorLoss()(real, fake)) == pytest.approx(float(discriminator_loss(real, fake)), rel=1e-6)
    assert float(GeneratorAdversarialLoss()(np.ones_like(fake), fake)) == pytest.approx(float(generator_adversarial_loss(fake)), rel=1e-6)
