"""The losses of Rezaei et al. (Eq. 1, 3, 4, 5): functional cores and Keras Loss classes.

Every core works on tensors and returns a scalar mean over the local batch.
Under a ``tf.distribute`` strategy the trainer divides by the number of
replicas, so that the summed gradients equal those of the global batch.
"""

from __future__ import annotations

from .._tf import import_tf

import_tf()  # before keras, which would import TensorFlow loudly

import keras  # noqa: E402
from keras import ops  # noqa: E402

def _bce_with_logits(logits, target: float):
    # max(x, 0) - x*z + log(1 + exp(-|x|)): the numerically stable form.
    logits = ops.cast(logits, "float32")
    return ops.maximum(logits, 0.0) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))


def discriminator_loss(real_logits, fake_logits):
    """Eq. 1, the discriminator's side: maximise log D(x, y) + log(1 - D(x, G(x))).

    As a loss to minimise: mean BCE(D(x, y), 1) + mean BCE(D(x, G(x)), 0), averaged
    over every pixel (N = 1 PatchGAN) or patch, then halved so that it is the mean
    of the two terms.
    """
    return 0.5 * (ops.mean(_bce_with_logits(real_logits, 1.0)) + ops.mean(_bce_with_logits(fake_logits, 0.0)))


def generator_adversarial_loss(fake_logits):
    """Eq. 1, the generator's side, in the non-saturating form: mean BCE(D(x, G(x)), 1).

    Minimising log(1 - D(G)) as written saturates when D rejects G's outputs early on;
    maximising log D(G) has the same fixed point and strong gradients (Goodfellow et
    al. 2014, and pix2pix, which Rezaei et al. builds on).
    """
    return ops.mean(_bce_with_logits(fake_logits, 1.0))


def weighted_categorical_crossentropy(labels, logits, class_weights):
    """Eq. 3's L_H(G * w_c): categorical cross-entropy with per-class weights w_c (Eq. 2).

    ``labels``: integer classes [...]; ``logits``: [..., K]. Each pixel's loss
    -log p(y) is multiplied by w_y; the result is the mean over all pixels (a
    plain mean, so that weights all 1 give the usual cross-entropy).
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "int32")
    log_probs = ops.log_softmax(logits, axis=-1)
    one_hot = ops.one_hot(labels, ops.shape(logits)[-1], dtype="float32")
    per_pixel = -ops.sum(one_hot * log_probs, axis=-1)
    weights = ops.take(ops.convert_to_tensor(class_weights, "float32"), labels)
    return ops.mean(weights * per_pixel)


def _disease_targets(disease, disease_logits):
    """(known mask [B], one-hot targets [B, M], float32 logits); class -1 = unknown."""
    disease = ops.cast(disease, "int32")
    logits = ops.cast(disease_logits, "float32")
    known = ops.cast(disease >= 0, "float32")
    target = ops.one_hot(ops.maximum(disease, 0), ops.shape(logits)[-1], dtype="float32")
    return known, target, logits


def weighted_l1_classification(disease, disease_logits, class_weights, valid=None):
    """Eq. 4: weighted L1 between the one-hot disease label and the slice-aggregated probabilities.

    ``disease``: integer classes [B] (-1 = unknown, ignored); ``disease_logits``:
    [B, M] whose softmax is the mean over the patient's slices of the per-slice
    class probabilities (the sum over i in Eq. 4, normalised). The absolute
    difference of each class is weighted by that class's w_c (Eq. 2, on patient
    counts) and summed over classes. Examples of unknown class contribute 0 and the
    mean is over all examples of the batch, so that the value does not depend on how
    a batch is split across replicas.
    """
    return ops.mean(weighted_l1_per_patient(disease, disease_logits, class_weights))


def weighted_l1_per_patient(disease, disease_logits, class_weights):
    """Eq. 4's term of each example [B] (0 for an unknown class); its batch mean is Eq. 4."""
    known, target, logits = _disease_targets(disease, disease_logits)
    probs = ops.softmax(logits, axis=-1)
    weights = ops.convert_to_tensor(class_weights, "float32")
    return ops.sum(weights * ops.abs(target - probs), axis=-1) * known


def weighted_crossentropy_classification(disease, disease_logits, class_weights):
    """Alternative to Eq. 4 (ours): -w_y log p_y on the slice-aggregated probabilities.

    Same inputs and the same treatment of unknown classes (-1) as ``weighted_l1_classification``.
    """
    return ops.mean(weighted_crossentropy_per_patient(disease, disease_logits, class_weights))


def weighted_crossentropy_per_patient(disease, disease_logits, class_weights):
    """-w_y log p_y of each example [B] (0 for an unknown class)."""
    known, target, logits = _disease_targets(disease, disease_logits)
    log_probs = ops.log_softmax(logits, axis=-1)
    weights = ops.sum(target * ops.convert_to_tensor(class_weights, "float32"), axis=-1)  # w of each true class
    return -ops.sum(target * log_probs, axis=-1) * weights * known


def total_generator_loss(adversarial, segmentation, classification, weights=(1.0, 1.0, 1.0)):
    """Eq. 5 with Eq. 3: L = a * L_adv + s * L_H(G * w_c) + c * L_cls (all weights 1 in the paper)."""
    a, s, c = weights
    return a * adversarial + s * segmentation + c * classification


# ---------------------------------------------------------------- Keras Loss classes

class _ClassWeightedLoss(keras.losses.Loss):
    """A loss ``fn(y_true, y_pred, class_weights)`` with its per-class weights in the config."""

    fn = None  # set by each subclass

    def __init__(self, class_weights, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, self.class_weights)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable("svgan")
class WeightedCategoricalCrossentropy(_ClassWeightedLoss):
    """Rezaei et al., Eq. 3: per-class weighted cross-entropy on integer labels and logits."""

    fn = staticmethod(weighted_categorical_crossentropy)

    def __init__(self, class_weights, name="weighted_categorical_crossentropy", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)


@keras.saving.register_keras_serializable("svgan")
class WeightedL1Classification(_ClassWeightedLoss):
    """Rezaei et al., Eq. 4: weighted L1 between one-hot disease labels and aggregated probabilities.

    ``call`` gives each example's value, so that ``sample_weight`` weighs patients (the head fit).
    """

    fn = staticmethod(weighted_l1_per_patient)

    def __init__(self, class_weights, name="weighted_l1_classification", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)


@keras.saving.register_keras_serializable("svgan")
class WeightedCrossentropyClassification(_ClassWeightedLoss):
    """Alternative to Rezaei et al., Eq. 4 (ours): -w_y log p_y on the slice-aggregated disease probabilities,
    one value per example."""

    fn = staticmethod(weighted_crossentropy_per_patient)

    def __init__(self, class_weights, name="weighted_crossentropy_classification", **kwargs):
        super().__init__(class_weights, name=name, **kwargs)


@keras.saving.register_keras_serializable("svgan")
class GeneratorAdversarialLoss(keras.losses.Loss):
    """Rezaei et al., Eq. 1, non-saturating generator term; ``y_pred`` are D's logits on G's output."""

    def __init__(self, name="generator_adversarial", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return generator_adversarial_loss(y_pred)


@keras.saving.register_keras_serializable("svgan")
class DiscriminatorLoss(keras.losses.Loss):
    """Rezaei et al., Eq. 1, discriminator term; ``y_true`` are D's logits on real pairs, ``y_pred`` on generated."""

    def __init__(self, name="discriminator", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return discriminator_loss(y_true, y_pred)
