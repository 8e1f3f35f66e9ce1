"""Registered layers shared by the generator and the discriminator.

They are registered with ``keras.saving.register_keras_serializable`` so that
``.keras`` files load back with plain ``keras.models.load_model`` (a Lambda
layer would not). Sequences are folded into the batch (``[B, T, H, W, C] ->
[B*T, H, W, C]``) for the per-slice convolutions: it works for any T, where
TimeDistributed around a multi-output encoder does not.
"""

from __future__ import annotations

from .._tf import import_tf

import_tf()  # before keras, which would import TensorFlow loudly

import keras  # noqa: E402
from keras import ops  # noqa: E402

from .convolution import SameConv2D  # noqa: E402

PACKAGE = "svgan"


@keras.saving.register_keras_serializable(PACKAGE)
class FoldTime(keras.layers.Layer):
    """[B, T, ...] -> [B*T, ...]."""

    def call(self, x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(PACKAGE)
class UnfoldTime(keras.layers.Layer):
    """[B*T, ...] -> [B, T, ...], with T read from a reference sequence tensor."""

    def call(self, x, reference):
        steps = ops.shape(reference)[1]
        return ops.reshape(x, (-1, steps) + tuple(x.shape[1:]))

    def compute_output_shape(self, x_shape, reference_shape):
        return (reference_shape[0], reference_shape[1]) + tuple(x_shape[1:])


@keras.saving.register_keras_serializable(PACKAGE)
class ReverseTime(keras.layers.Layer):
    """Slice order reversed: position i holds slice n-1-i."""

    def call(self, x):
        return ops.flip(x, axis=1)


@keras.saving.register_keras_serializable(PACKAGE)
class BroadcastToMap(keras.layers.Layer):
    """[B*T, F] vectors repeated over the spatial grid of a reference map [B*T, h, w, c]."""

    def call(self, vectors, reference):
        shape = ops.shape(reference)
        return ops.broadcast_to(vectors[:, None, None, :], (shape[0], shape[1], shape[2], vectors.shape[-1]))

    def compute_output_shape(self, vectors_shape, reference_shape):
        return tuple(reference_shape[:3]) + (vectors_shape[-1],)


@keras.saving.register_keras_serializable(PACKAGE)
class BoundLogits(keras.layers.Layer):
    """limit * tanh(x / limit): per-slice class logits stay within +-limit.

    This caps the confidence of a single slice, so that no slice's softmax reaches exactly
    0 or 1 in float32. It does not keep Eq. 4's L1 learning: once RMSprop drives the
    pre-activation far out, tanh saturates and the gradient vanishes all the same
    (measured on the demo: the classifier stays at the majority class with limit 6 and 2).
    """

    def __init__(self, limit: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.limit = float(limit)

    def call(self, x):
        return self.limit * ops.tanh(x / self.limit)

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}


@keras.saving.register_keras_serializable(PACKAGE)
class AggregateSlices(keras.layers.Layer):
    """Patient logits from per-slice logits [B, T, M]: log of the mean slice probability.

    softmax of the result is the average of the slices' class probabilities, the
    slice-aggregated prediction that Rezaei et al.'s Eq. 4 compares with the label.
    """

    def call(self, slice_logits):
        probs = ops.softmax(ops.cast(slice_logits, "float32"), axis=-1)
        return ops.log(ops.mean(probs, axis=1) + 1e-7)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(PACKAGE)
class PhaseStructureSizes(keras.layers.Layer):
    """Patient-level features from per-slice class fractions [B, T, K]: the size of each structure per phase.

    The sequence holds ``phases`` blocks of equal length (ACDC: the ED slices, then the
    same positions at ES). For every phase and every foreground class it gives the log
    of the mean fraction of the slice the class covers (a volume per slice: the window's
    mean does not depend on how many slices it spans) and the log of the largest such
    fraction (the widest cross-section). In logs, ratios are differences, so a dense
    layer can form an ejection fraction (ES over ED) or a wall-to-cavity ratio
    linearly. The gradient is stopped: the head learns to read the segmentation, and
    the segmentation is shaped by its own losses alone.
    """

    def __init__(self, phases: int = 1, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.phases, self.epsilon = int(phases), float(epsilon)

    def call(self, fractions):
        fractions = ops.stop_gradient(ops.cast(fractions, "float32"))[..., 1:]  # background out
        k = fractions.shape[-1]
        per_phase = ops.reshape(fractions, (-1, self.phases, ops.shape(fractions)[1] // self.phases, k))
        mean = ops.log(ops.mean(per_phase, axis=2) + self.epsilon)
        peak = ops.log(ops.max(per_phase, axis=2) + self.epsilon)
        return ops.reshape(ops.concatenate([mean, peak], axis=-1), (-1, self.phases * 2 * k))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.phases * 2 * (input_shape[-1] - 1))

    def get_config(self):
        return {**super().get_config(), "phases": self.phases, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(PACKAGE)
class Standardize(keras.layers.Layer):
    """(x - mean) / scale per feature, with mean and scale as non-trainable weights (0 and 1 at first).

    Whoever fits the layers after it sets them from training data (``DiseaseHeadFit``); they
    are saved with the model and in checkpoints like any weight.
    """

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(input_shape[-1],), initializer="zeros", trainable=False, name="mean")
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", trainable=False, name="scale")

    def call(self, x):
        return (ops.cast(x, "float32") - self.mean) / self.scale


def conv_block(x, filters: int, convs: int, kernel_size: int, norm: str, activation: str, name: str):
    """``convs`` x (3x3 convolution, optional group norm, activation)."""
    for i in range(convs):
        x = SameConv2D(filters, kernel_size, padding="same", use_bias=norm == "none", name=f"{name}_conv{i}")(x)
        if norm == "group":
            x = keras.layers.GroupNormalization(groups=min(8, filters), name=f"{name}_norm{i}")(x)
        if activation == "leaky_relu":
            x = keras.layers.LeakyReLU(0.2, name=f"{name}_act{i}")(x)
        else:
            x = keras.layers.Activation(activation, name=f"{name}_act{i}")(x)
    return x


def bidirectional_recurrence(sequence, kind: str, units: int, name: str):
    """Bidirectional recurrence across the slices of [B, T, h, w, c] maps; returns [B, T, h, w, 2*units] or [B, T, 2*units]."""
    if kind == "convlstm":
        cell = keras.layers.ConvLSTM2D(units, 3, padding="same", return_sequences=True, name=f"{name}_convlstm")
        return keras.layers.Bidirectional(cell, merge_mode="concat", name=name)(sequence)
    pooled = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name=f"{name}_pool")(sequence)
    cell = keras.layers.LSTM(units, return_sequences=True, name=f"{name}_lstm")
    return keras.layers.Bidirectional(cell, merge_mode="concat", name=name)(pooled)


@keras.saving.register_keras_serializable(PACKAGE)
class AttentionGate(keras.layers.Layer):
    """Additive attention gate of Cui et al., Eq. 1 (Oktay et al., "Attention U-Net", MIDL 2018, Eq. 1-2).

        q = psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi,    alpha = sigmoid(q)

    ``x``: the skip connection [N, H, W, Cx]; ``g``: the gating signal from the coarser level
    [N, H/2, W/2, Cg]. W_x is a 2x2 convolution of stride 2 (x brought to g's grid), W_g and psi
    are 1x1 convolutions; the coefficients are resampled bilinearly to x's grid (Cui et al.:
    "trilinear interpolation" in 3D) and scale every channel of x. Returns (alpha * x, alpha).
    Cui et al.'s text names the two non-linearities the other way round (sigma_1 outside, sigma_2
    inside); the published gate applies the ReLU inside and the sigmoid outside, as here.
    """

    def __init__(self, inter_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.inter_channels = int(inter_channels)
        self.theta_x = keras.layers.Conv2D(self.inter_channels, 2, strides=2, use_bias=False, name="theta_x")
        self.phi_g = keras.layers.Conv2D(self.inter_channels, 1, use_bias=True, name="phi_g")
        self.psi = keras.layers.Conv2D(1, 1, use_bias=True, name="psi")

    def build(self, input_shapes):
        x_shape, g_shape = input_shapes
        self.theta_x.build(x_shape)
        self.phi_g.build(g_shape)
        self.psi.build((*g_shape[:-1], self.inter_channels))

    def call(self, inputs):
        x, g = inputs
        q = self.psi(ops.relu(self.theta_x(x) + self.phi_g(g)))
        alpha = ops.sigmoid(q)
        alpha = ops.image.resize(alpha, ops.shape(x)[1:3], interpolation="bilinear")
        return x * ops.cast(alpha, x.dtype), alpha

    def compute_output_shape(self, input_shapes):
        x_shape = input_shapes[0]
        return x_shape, (*x_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "inter_channels": self.inter_channels}
