"""The generator of Rezaei et al.: a UNet per slice with a bidirectional LSTM across slices.

Input: a sequence of T slices of one patient, [B, T, H, W, C]. Each slice goes
through the same encoder (``depth`` max-poolings) and decoder with skip
connections between encoder level i and the decoder level that mirrors it
(Rezaei et al.'s "layer i and n-1-i"). In the bottleneck a bidirectional recurrence
runs across the T slices of the patient and its output is concatenated with the
bottleneck maps that feed the decoder.

Outputs:
- ``segmentation``: per-slice logits [B, T, H, W, K];
- ``disease``: patient logits [B, M]. With ``classifier: slices`` (Rezaei et al.), the log of
  the mean over slices of per-slice class probabilities (``AggregateSlices``), so that
  softmax(disease) is the slice-aggregated prediction of Eq. 4. With ``classifier:
  volumes``, logits of dense layers over the size of each predicted structure per
  phase (``PhaseStructureSizes``): the ACDC groups are defined by such whole-heart
  quantities across ED and ES, which no single slice shows.

The per-slice class features join, for slice i, the pooled last decoder map, the
average and peak class probabilities and the pooled first encoder map (Rezaei et al.:
"concatenated depth features from last decoder layer with skip connection of
encoder part") with the pooled recurrent features of slice i and of slice n-1-i: the paper connects features "from n-1-i and i" before its
dense layers; with a bidirectional recurrence, slice n-1-i's backward state has seen
what slice i's forward state has not. The head pools before its dense layers, so
its size does not depend on the image size.
"""

from __future__ import annotations

import keras

from ..config import ModelConfig
from ..losses.classification import CosineClassifier
from .blocks import (AggregateSlices, AttentionGate, BoundLogits, BroadcastToMap, FoldTime, PhaseStructureSizes, ReverseTime, Standardize,
                     UnfoldTime, bidirectional_recurrence, conv_block)


def build_generator(cfg: ModelConfig, image_size: tuple[int, int], channels: int, num_classes: int,
                    num_diseases: int, num_phases: int = 1, name: str = "generator",
                    cosine_classifier: bool = False) -> keras.Model:
    """``num_phases``: blocks of equal length a sequence is made of (ACDC: 2, ED then ES).
    ``cosine_classifier``: the volume head's logits are cosines (LDAM, LMF;
    ``svgan.losses.registry.uses_cosine_classifier`` decides from the config)."""
    h, w = image_size
    images = keras.Input((None, h, w, channels), name="image")
    x = FoldTime(name="fold")(images)

    skips = []
    for level in range(cfg.depth):
        x = conv_block(x, cfg.base_filters * 2 ** level, cfg.convs_per_level, cfg.kernel_size, cfg.norm, "relu", f"enc{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    bottleneck = conv_block(x, cfg.base_filters * 2 ** cfg.depth, cfg.convs_per_level, cfg.kernel_size, cfg.norm,
                            "relu", "bottleneck")

    # Bidirectional recurrence across the slices of each patient sequence.
    sequence = UnfoldTime(name="unfold_bottleneck")(bottleneck, images)
    recurrent = bidirectional_recurrence(sequence, cfg.recurrent, cfg.recurrent_units, "slice_recurrence")
    if cfg.recurrent == "convlstm":
        recurrent_maps = FoldTime(name="fold_recurrent")(recurrent)
        recurrent_vectors = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="recurrent_pool")(recurrent)
    else:
        recurrent_vectors = recurrent
        recurrent_maps = BroadcastToMap(name="recurrent_broadcast")(FoldTime(name="fold_recurrent")(recurrent), bottleneck)
    x = keras.layers.Concatenate(name="bottleneck_concat")([bottleneck, recurrent_maps])
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="bottleneck_dropout")(x)

    for level in reversed(range(cfg.depth)):
        skip = skips[level]
        if cfg.attention_gates:  # Cui et al.: the coarser decoder level gates the skip connection
            skip, _ = AttentionGate(max(1, skip.shape[-1] // 2), name=f"attention{level}")([skip, x])
        x = keras.layers.UpSampling2D(2, name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skip])
        x = conv_block(x, cfg.base_filters * 2 ** level, cfg.convs_per_level, cfg.kernel_size, cfg.norm, "relu", f"dec{level}")
    seg = keras.layers.Conv2D(num_classes, 1, name="seg_logits")(x)
    seg = keras.layers.Activation("linear", dtype="float32", name="seg_float32")(seg)
    segmentation = UnfoldTime(name="segmentation")(seg, images)

    if cfg.classifier == "volumes":
        fractions = UnfoldTime(name="unfold_class_fractions")(
            keras.layers.GlobalAveragePooling2D(name="class_fractions")(keras.layers.Softmax(name="seg_probs")(seg)), images)
        features = PhaseStructureSizes(num_phases, name="structure_sizes")(fractions)
        features = Standardize(name="cls_standardize")(features)
        # A cosine classifier ignores the length of its input: a ReLU layer before it whose units all
        # switch off leaves a window no direction at all (measured under LDAM at s = 30 on the demo:
        # up to 69 % of the training windows); leaky ReLU (slope 0.2) keeps every window's direction.
        activation = "leaky_relu" if cosine_classifier else "relu"
        for i, units in enumerate(cfg.classifier_units):
            features = keras.layers.Dense(units, activation=activation, name=f"cls_dense{i}")(features)
        last = CosineClassifier if cosine_classifier else keras.layers.Dense
        disease = last(num_diseases, name="cls_logits")(features)
        disease = keras.layers.Activation("linear", dtype="float32", name="disease")(disease)
        return keras.Model(images, {"segmentation": segmentation, "disease": disease}, name=name)

    # Disease head: pooled per-slice features, slices i and n-1-i joined, a couple of dense layers.
    # The pooled class probabilities (the share of each predicted label in the slice) carry the
    # tumour composition that tells HGG from LGG, or the cavity sizes that tell ACDC groups apart.
    seg_probs = keras.layers.Softmax(name="seg_probs")(seg)
    # Their maximum says whether a label is present at all (a small enhancing rim hardly moves an
    # average over the slice, but its peak probability is near 1).
    pooled = [keras.layers.GlobalAveragePooling2D(name="pool_decoder")(x),
              keras.layers.GlobalAveragePooling2D(name="pool_encoder")(skips[0]),
              keras.layers.GlobalAveragePooling2D(name="pool_classes")(seg_probs),
              keras.layers.GlobalMaxPooling2D(name="peak_classes")(seg_probs)]
    per_slice = [UnfoldTime(name=f"unfold_{p.name.split('/')[0]}_{i}")(p, images) for i, p in enumerate(pooled)]
    features = keras.layers.Concatenate(name="slice_features")(
        per_slice + [recurrent_vectors, ReverseTime(name="mirror_slices")(recurrent_vectors)])
    # Pooled ReLU maps reach large values; unnormalised, they saturate the softmax at exactly 0/1
    # within the first steps and the L1 loss of Eq. 4 then has no gradient left.
    features = keras.layers.LayerNormalization(name="cls_norm")(features)
    for i, units in enumerate(cfg.classifier_units):
        features = keras.layers.Dense(units, activation="relu", name=f"cls_dense{i}")(features)
    slice_logits = keras.layers.Dense(num_diseases, name="cls_slice_logits")(features)
    slice_logits = BoundLogits(cfg.classifier_logit_bound, name="cls_bounded")(slice_logits)
    disease = AggregateSlices(name="disease", dtype="float32")(slice_logits)
    return keras.Model(images, {"segmentation": segmentation, "disease": disease}, name=name)
