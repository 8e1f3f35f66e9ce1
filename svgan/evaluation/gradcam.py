"""Grad-CAM (Selvaraju et al., ICCV 2017) heat maps of a 2D classifier, as Zunair and Ben Hamza show them.

For class c: the gradient of its logit with respect to the last convolutional maps A^k,
averaged over positions, weighs each map; the map is ReLU(sum_k alpha_k A^k), scaled to
[0, 1] per image and resized to the image.
"""

from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..figures import pyplot, save_figure
from ..models.vgg_gap import LAST_CONV

import keras  # noqa: E402  (after the models, which import TensorFlow quietly first)


def gradcam(model, images: np.ndarray, class_index: int, layer: str | None = None) -> np.ndarray:
    """Heat maps [N, H, W] in [0, 1] for uint8 images [N, H, W, 3] and one class."""
    tf = import_tf()
    probe = keras.Model(model.inputs, [model.get_layer(layer or LAST_CONV).output, model.outputs[0]])
    x = tf.constant(images.astype(np.float32) / 255.0)
    with tf.GradientTape() as tape:
        maps, logits = probe(x, training=False)
        score = logits[:, class_index]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    cam = tf.image.resize(cam, images.shape[1:3])[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(1)[:, None, None]
    return np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0)


def save_gradcam_figure(model, images: np.ndarray, titles: list[str], class_index: int, path: str) -> None:
    """Each image above its Grad-CAM overlay for ``class_index``."""
    plt = pyplot()

    cams = gradcam(model, images, class_index)
    fig, axes = plt.subplots(2, len(images), figsize=(2.2 * len(images), 4.6), squeeze=False)
    for i, (image, cam) in enumerate(zip(images, cams)):
        axes[0, i].imshow(image)
        axes[0, i].set_title(titles[i], fontsize=8)
        axes[1, i].imshow(image)
        axes[1, i].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=8)
    save_figure(fig, path)
