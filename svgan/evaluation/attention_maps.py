"""The attention coefficients of a generator's gates (Cui et al.'s selective attention), as arrays and a figure."""

from __future__ import annotations

import numpy as np

from ..figures import pyplot, save_figure
from ..models.blocks import AttentionGate

import keras  # noqa: E402  (after the models, which import TensorFlow quietly first)


def attention_maps(generator, images) -> list[np.ndarray]:
    """Coefficients in [0, 1] of every attention gate, coarsest first, each [B, T, H_l, W_l] for images [B, T, H, W, C]."""
    gates = [layer for layer in generator.layers if isinstance(layer, AttentionGate)]
    if not gates:
        return []
    probe = keras.Model(generator.input, [gate.output[1] for gate in gates])
    outputs = probe(images, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    b, t = images.shape[:2]
    return [np.asarray(a).reshape(b, t, *np.asarray(a).shape[1:3]) for a in outputs]


def save_attention_figure(generator, image: np.ndarray, path: str, title: str = "") -> None:
    """Middle slice of one prepared patient (image [P, Z, H, W, C]) and each gate's coefficients on it."""
    plt = pyplot()
    z = image.shape[1] // 2
    maps = attention_maps(generator, image[:1, z:z + 1].astype(np.float32))
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3 * (len(maps) + 1), 3.2))
    axes[0].imshow(image[0, z, :, :, 0], cmap="gray")
    axes[0].set_title("input (channel 0)")
    for ax, a in zip(axes[1:], maps):
        shown = ax.imshow(a[0, 0], cmap="magma", vmin=0.0, vmax=1.0)
        ax.set_title(f"gate at {a.shape[2]}x{a.shape[3]}")
    for ax in axes:
        ax.axis("off")
    fig.colorbar(shown, ax=axes[1:].tolist(), fraction=0.02)
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=90, tight=False)  # the shared colour bar does not suit a tight layout
