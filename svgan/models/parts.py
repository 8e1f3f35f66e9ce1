"""The generator in parts, so that inference can do each slice's work once.

The generator (``generator.py``) runs its encoder and decoder slice by slice; only the
bidirectional recurrence in the bottleneck, and the disease head, read across the
slices of a window. ``split_generator`` cuts a built or loaded generator into:

- ``encoder``: slices [N, H, W, C] -> the skip connection of every level and the
  bottleneck maps [N, h, w, c];
- ``recurrence``: bottleneck sequences [B, T, h, w, c] -> the recurrent features [B, T, ...];
- ``decoder``: (bottleneck [N, h, w, c], recurrent features of each slice, skips) ->
  segmentation logits [N, H, W, K] and the slice's inputs to the disease head;
- ``head``: the disease head's per-slice inputs laid out as windows [B, T, ...] -> disease
  logits [B, M] (for the ``slices`` head also the window's recurrent vectors).

The parts are sub-graphs of the generator itself (Keras models over its own tensors and
layers): they share its weights, need no retraining, and are cut from any ``generator.keras``
at load time. Composed on one window they give the generator's own outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras


@dataclass
class GeneratorParts:
    encoder: keras.Model
    recurrence: keras.Model
    decoder: keras.Model
    head: keras.Model
    head_from_recurrence: bool  # the head also reads the window's recurrent vectors (``classifier: slices``)
    # Recurrent features -> the vectors the ``slices`` head reads; None where they are the same.
    recurrent_vectors: keras.Model | None


def _producer_input(tensor):
    """The first input tensor of the layer that produced ``tensor``."""
    operation = tensor._keras_history.operation
    inputs = operation._inbound_nodes[0].input_tensors
    return inputs[0]


def split_generator(G: keras.Model) -> GeneratorParts:
    """Cut ``G`` (``build_generator``'s model, or one loaded from a ``.keras`` file) into its parts."""
    depth = sum(1 for layer in G.layers if layer.name.startswith("pool") and layer.name[4:].isdigit())
    slices = G.get_layer("fold").output
    skips = [G.get_layer(f"pool{level}").input for level in range(depth)]
    bottleneck = G.get_layer("bottleneck_concat").input[0]
    recurrent_per_slice = G.get_layer("fold_recurrent").output  # the recurrent features, one row per slice
    encoder = keras.Model(slices, [*skips, bottleneck], name="generator_encoder")
    recurrence = keras.Model(G.get_layer("unfold_bottleneck").output, G.get_layer("slice_recurrence").output,
                             name="generator_recurrence")
    seg_logits = G.get_layer("seg_float32").output
    disease = G.get_layer("disease").output
    names = {layer.name for layer in G.layers}
    if "structure_sizes" in names:  # classifier: volumes, which reads each slice's class fractions
        windowed = [G.get_layer("unfold_class_fractions").output]
        head = keras.Model(windowed, disease, name="generator_head")
        per_slice = [_producer_input(t) for t in windowed]
        return GeneratorParts(encoder, recurrence, keras.Model([bottleneck, recurrent_per_slice, *skips],
                                                               [seg_logits, *per_slice], name="generator_decoder"),
                              head, False, None)
    # classifier: slices: pooled maps of each slice, then the window's recurrent vectors (slice i and n-1-i).
    *windowed, vectors, _mirror = G.get_layer("slice_features").input
    head = keras.Model([*windowed, vectors], disease, name="generator_head")
    per_slice = [_producer_input(t) for t in windowed]
    decoder = keras.Model([bottleneck, recurrent_per_slice, *skips], [seg_logits, *per_slice], name="generator_decoder")
    recurrent = G.get_layer("slice_recurrence").output
    # recurrent: convlstm pools its maps into vectors; an lstm's outputs are the vectors already.
    recurrent_vectors = None if vectors is recurrent else keras.Model(recurrent, vectors, name="generator_recurrent_vectors")
    return GeneratorParts(encoder, recurrence, decoder, head, True, recurrent_vectors)
