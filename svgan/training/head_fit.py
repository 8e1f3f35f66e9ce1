"""The classification pass of the structure-size disease head, run after every epoch.

Why: the ``volumes`` head (``PhaseStructureSizes`` + dense layers) reads the
segmentation with its gradient stopped, so the GAN step trains only its few
dense weights, a batch of 2 windows at a time under RMSprop at the generator's
learning rate. Measured on real ACDC, its cross-entropy stayed at
ln 5 (chance over five groups) for three epochs: RMSprop moves a weight by about
the learning rate per step whatever the loss weight, far too little for the
small differences in structure size between patients. This pass fits the head
on every training patient at once: it computes the structure sizes of the windows
that inference reads (every half window over all slices of both phases, each slice
decoded once from its most central window, as ``predict_patient`` runs them for
``svgan predict``: never padded, so their mean sizes are those the head meets at
inference), sets the head's ``Standardize``
layer to their mean and standard deviation, and runs full-batch Adam on the dense layers for
a fixed number of iterations from their current weights. The objective is the run's own
disease loss (``loss.classification_loss``: Eq. 4's L1, cross-entropy, focal, LDAM, LMF, with
whatever class weights it carries, deferred re-weighting included) plus an L2 penalty on the
dense kernels. Each patient counts once in all (its windows share its weight), times the share
of draws its class gets under ``pipeline.class_sampling`` relative to natural sampling, so that
the pass sees the classes as the training pipeline draws them. A fresh optimizer per pass keeps
runs deterministic and resumable (nothing to checkpoint beyond the generator's weights).
"""

from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..data.pipeline import extract_sequence
from ..data.prepare import load_prepared
from ..evaluation.diagnosis import training_class_prior
from ..evaluation.inference import make_predict_fn, overlapping_starts, predict_patient

FEATURE_LAYER = "structure_sizes"
# The features are log sizes: a spread below 0.1 (a 10 % size difference) is noise, and dividing
# by it would let the head memorise it (measured on real ACDC: training windows fitted perfectly,
# validation at chance, with per-feature spreads of 0.015 to 0.12 after the first epoch).
MIN_SCALE = 0.1
# L2 penalty on the head's kernels in the pass (ours): 70 training patients are few.
L2 = 1e-2


def patient_weights(manifest, class_sampling: str) -> dict:
    """Weight of each training patient of known class: its class's share of draws under
    ``class_sampling`` (the training prior) over its share of the patients (all 1 for natural sampling)."""
    counts = manifest.disease_patient_counts("train")
    shares = training_class_prior(manifest, class_sampling)
    diseases = {pid: manifest.patients[pid]["disease"] for pid in manifest.split_ids("train")}
    return {pid: shares[d] * counts.sum() / counts[d] for pid, d in diseases.items() if d is not None}


class DiseaseHeadFit:
    """Epoch callback: ``on_epoch_end()`` fits the head's dense layers; returns its loss and accuracy."""

    def __init__(self, generator, manifest, sequence_length: int, loss, iterations: int,
                 learning_rate: float = 1e-2, batch_size: int = 4, class_sampling: str = "natural"):
        """``loss``: a Keras classification loss on (classes [B], logits [B, M]) whose ``call`` gives
        one value per example (every loss of ``svgan.losses.registry`` does)."""
        import keras

        self.manifest, self.length, self.iterations = manifest, sequence_length, int(iterations)
        self.learning_rate, self.batch_size = float(learning_rate), int(batch_size)
        self.loss, self.class_sampling = loss, class_sampling
        self.predictor = make_predict_fn(generator)
        # A window's per-slice class fractions (the mean class probability over the slice) -> its structure sizes;
        # and the whole way from images, for a patient of one (padded) window, which inference runs whole.
        self.sizes = keras.Model(generator.get_layer("unfold_class_fractions").output, generator.get_layer(FEATURE_LAYER).output)
        self.features = keras.Model(generator.inputs, generator.get_layer(FEATURE_LAYER).output)
        self.size = tuple(generator.inputs[0].shape[2:4])
        index = [layer.name for layer in generator.layers].index(FEATURE_LAYER)
        self.head = [layer for layer in generator.layers[index + 1:] if layer.name.startswith("cls_")]
        self.standardize = generator.get_layer("cls_standardize")
        self.variables = [v for layer in self.head for v in layer.trainable_variables]
        # A cosine classifier normalises its kernel: a penalty on its norm would only shrink it towards 0.
        self.kernels = [layer.kernel for layer in self.head if isinstance(layer, keras.layers.Dense)]

    def window_features(self):
        """(features [N, F], disease [N], weight [N]) of every window of every training patient."""
        rows, diseases, weights = [], [], []
        for pid, patient_weight in patient_weights(self.manifest, self.class_sampling).items():
            disease = self.manifest.patients[pid]["disease"]
            image, _ = load_prepared(self.manifest.patient_file(pid))
            length = self.length // image.shape[0]
            starts = overlapping_starts(image.shape[1], length)
            if len(starts) == 1:
                rows.append(self._whole_window(extract_sequence(image, None, 0, length)[0]))
            else:
                # The model's current size: progressive resizing may train it smaller than the prepared images.
                probs, _ = predict_patient(self.predictor, image, self.length, self.batch_size, self.size)
                fractions = probs.mean(axis=(2, 3))[..., None, None, :]  # [P, Z, 1, 1, K]: windows cut like images
                windows = np.stack([extract_sequence(fractions, None, s, length)[0][:, 0, 0] for s in starts])
                rows.append(self.sizes(windows, training=False).numpy())
            diseases += [disease] * len(starts)
            weights += [patient_weight / len(starts)] * len(starts)
        return np.concatenate(rows), np.asarray(diseases, np.int32), np.asarray(weights, np.float32)

    def _whole_window(self, sequence):
        tf = import_tf()
        x = tf.constant(sequence[None])
        if tuple(x.shape[2:4]) != self.size:  # progressive resizing: the model's current input size
            x = tf.reshape(tf.image.resize(tf.reshape(x, (-1, *x.shape[2:])), self.size), (*x.shape[:2], *self.size, x.shape[-1]))
        return self.features(x, training=False).numpy()

    def head_logits(self, features):
        """The head's logits [N, M] for structure-size features [N, F]."""
        h = features
        for layer in self.head:
            h = layer(h)
        return import_tf().cast(h, "float32")

    def on_epoch_end(self) -> dict:
        if self.iterations <= 0:
            return {}
        return self.fit(*self.window_features())

    def fit(self, x, y, w) -> dict:
        """One pass on features [N, F], classes [N] and window weights [N]; returns history columns."""
        import keras

        tf = import_tf()
        self.standardize.mean.assign(x.mean(0))
        self.standardize.scale.assign(np.maximum(x.std(0), MIN_SCALE))
        # Weights of mean 1: the loss's batch mean is then the weighted mean over windows.
        x, y, w = tf.constant(x), tf.constant(y), tf.constant(w * len(w) / w.sum())
        optimizer = keras.optimizers.Adam(self.learning_rate)
        optimizer.build(self.variables)

        def objective():
            return self.loss(y, self.head_logits(x), sample_weight=w)

        def penalty():
            return L2 * tf.add_n([tf.reduce_sum(k * k) for k in self.kernels]) if self.kernels else 0.0

        @tf.function
        def iterate():
            for _ in tf.range(self.iterations):
                with tf.GradientTape() as tape:
                    loss = objective() + penalty()
                optimizer.apply_gradients(zip(tape.gradient(loss, self.variables), self.variables))
            return objective()

        loss = float(iterate())
        accuracy = float(np.mean(np.argmax(self.head_logits(x).numpy(), -1) == y.numpy()))
        return {"head_fit_loss": loss, "head_fit_window_accuracy": accuracy}
