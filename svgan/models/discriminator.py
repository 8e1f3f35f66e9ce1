"""The discriminator of Rezaei et al.: a fully convolutional PatchGAN with a bidirectional LSTM.

Conditioned on the image sequence concatenated with a segmentation (one-hot
ground truth, or the generator's class probabilities), it runs the same
encoder as the generator (``depth`` + 1 convolutions, ``depth`` max-poolings),
a bidirectional recurrence across the slices after its last convolution, and
emits one real/fake logit per pixel at the input resolution (PatchGAN with
N = 1, which Rezaei et al. found best for segmentation). The recurrent features are
upsampled and joined with the first convolution's maps so that the per-pixel
decision sees both local detail and the sequence context. ``patch_size`` N > 1
averages the pixel logits over N x N patches, for comparison with Isola et al.
"""

from __future__ import annotations

import keras

from ..config import ModelConfig
from .blocks import FoldTime, UnfoldTime, bidirectional_recurrence, conv_block


def build_discriminator(cfg: ModelConfig, image_size: tuple[int, int], channels: int, num_classes: int,
                        name: str = "discriminator") -> keras.Model:
    h, w = image_size
    images = keras.Input((None, h, w, channels), name="image")
    segmentation = keras.Input((None, h, w, num_classes), name="segmentation")
    x = FoldTime(name="fold")(keras.layers.Concatenate(name="condition")([images, segmentation]))
    first = None
    for level in range(cfg.depth):
        x = conv_block(x, cfg.discriminator_filters * 2 ** level, 1, cfg.kernel_size, "none", "leaky_relu", f"d_enc{level}")
        first = x if first is None else first
        x = keras.layers.MaxPooling2D(2, name=f"d_pool{level}")(x)
    x = conv_block(x, cfg.discriminator_filters * 2 ** cfg.depth, 1, cfg.kernel_size, "none", "leaky_relu", "d_last")

    sequence = UnfoldTime(name="unfold")(x, images)
    recurrent = bidirectional_recurrence(sequence, "convlstm", cfg.recurrent_units, "d_recurrence")
    x = FoldTime(name="fold_recurrent")(recurrent)
    x = keras.layers.UpSampling2D(2 ** cfg.depth, interpolation="bilinear", name="d_upsample")(x)
    x = keras.layers.Concatenate(name="d_join")([x, first])
    logits = keras.layers.Conv2D(1, 1, name="d_pixel_logits")(x)
    if cfg.patch_size > 1:
        logits = keras.layers.AveragePooling2D(cfg.patch_size, name="d_patch")(logits)
    logits = keras.layers.Reshape((logits.shape[1], logits.shape[2]), name="d_squeeze")(logits)
    logits = keras.layers.Activation("linear", dtype="float32", name="d_float32")(logits)
    return keras.Model([images, segmentation], UnfoldTime(name="realness")(logits, images), name=name)
