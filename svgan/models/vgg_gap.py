"""VGG-GAP (Zunair and Ben Hamza, after Zhou et al.'s class activation maps): VGG-16's five convolutional
blocks, global average pooling, one dense layer whose softmax is the class probability.

Layer names are those of ``keras.applications.VGG16`` (``block1_conv1`` ... ``block5_conv3``),
so that a user's local ImageNet "notop" weights file loads into it (``weights=PATH``; nothing
is downloaded). ``width`` scales every block's filters (ours, for CPUs; only 1.0 is VGG-16
and can take its weights). Inputs are RGB in [0, 1]; with ImageNet weights they are converted
to the Caffe convention those weights expect (BGR, mean-subtracted, 0-255).
"""

from __future__ import annotations

import os

import keras

from ..errors import DataError
from ..losses.classification import CosineClassifier

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
LAST_CONV = "block5_conv3"  # Grad-CAM reads this layer
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable("svgan")
class CaffeInput(keras.layers.Layer):
    """RGB in [0, 1] to the input convention of Keras' ImageNet VGG-16 weights."""

    def call(self, x):
        x = keras.ops.flip(x * 255.0, axis=-1)
        return x - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, x.dtype)


def build_vgg_gap(image_size, num_classes: int, width: float = 1.0, weights: str | None = None,
                  cosine: bool = False, name: str = "vgg_gap") -> keras.Model:
    """The classifier: RGB [B, H, W, 3] in [0, 1] -> class logits [B, K] (softmax them for
    probabilities). ``cosine``: the last layer is a cosine classifier (for LDAM / LMF)."""
    if weights is not None and width != 1.0:
        raise ValueError("VGG-16 weights need width 1.0")
    images = keras.Input((*image_size, 3), name="image")
    x = CaffeInput(name="caffe_input")(images) if weights else images
    for b, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for c in range(1, convs + 1):
            # He initialisation: with Keras' default (Glorot) the signal shrinks by about half per ReLU
            # layer and thirteen of them leave a constant output (measured: no learning from scratch).
            x = keras.layers.Conv2D(max(1, int(round(filters * width))), 3, padding="same", activation="relu",
                                    kernel_initializer="he_normal", name=f"block{b}_conv{c}")(x)
        if b < len(VGG16_BLOCKS):  # the last block's maps feed GAP (and Grad-CAM) at 1/16 resolution
            x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    logits = (CosineClassifier if cosine else keras.layers.Dense)(num_classes, name="logits")(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    model = keras.Model(images, logits, name=name)
    if weights:
        load_vgg16_weights(model, weights)
    return model


def load_vgg16_weights(model: keras.Model, path: str) -> None:
    """Copy the convolutional weights of a local VGG-16 "notop" file (Keras' ImageNet file) into ``model``."""
    if not os.path.isfile(path):
        raise DataError("VGG-16 weights file not found", path)
    try:
        source = keras.applications.VGG16(include_top=False, weights=path, input_shape=(None, None, 3))
    except Exception as e:  # a wrong or truncated file: say so in one line
        raise DataError(f"not a VGG-16 notop weights file ({type(e).__name__}: {str(e).splitlines()[0]})", path) from None
    for b, (_, convs) in enumerate(VGG16_BLOCKS, start=1):
        for c in range(1, convs + 1):
            layer = f"block{b}_conv{c}"
            model.get_layer(layer).set_weights(source.get_layer(layer).get_weights())
