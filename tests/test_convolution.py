"""SameConv2D: the same convolution and the same gradients as TensorFlow's own, computed otherwise."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.models.convolution import SameConv2D, same_conv2d

tf = import_tf()


def _gradients(conv, x, kernel, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = conv(x, kernel)
        loss = tf.reduce_sum(y * upstream)
    return (y, *tape.gradient(loss, [x, kernel]))


@pytest.mark.parametrize("shape,kernel_size,c_out", [((2, 9, 7, 3), 3, 5), ((3, 8, 8, 4), 1, 2), ((1, 11, 6, 2), 5, 3),
                                                    ((4, 12, 12, 16), 3, 8)])
def test_gradients_equal_tensorflows_own(shape, kernel_size, c_out):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, shape[-1], c_out)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=shape[:3] + (c_out,)).astype(np.float32))
    reference = _gradients(lambda a, k: tf.nn.conv2d(a, k, 1, "SAME"), x, kernel, upstream)
    ours = _gradients(same_conv2d, x, kernel, upstream)
    for name, r, o in zip(("output", "input gradient", "kernel gradient"), reference, ours):
        np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


def test_kernel_gradient_by_hand():
    # One 3x3 image, one channel, a 3x3 kernel: dL/dk[i, j] = sum over outputs of dy * x shifted by (i-1, j-1).
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    dy = np.zeros((1, 3, 3, 1), np.float32)
    dy[0, 1, 1, 0] = 1.0  # only the centre output: its receptive field is the whole image
    _, _, grad_kernel = _gradients(same_conv2d, tf.constant(x), tf.zeros((3, 3, 1, 1)), tf.constant(dy))
    np.testing.assert_allclose(grad_kernel.numpy()[:, :, 0, 0], x[0, :, :, 0])


def test_layer_matches_conv2d_and_loads_back(tmp_path):
    inputs = keras.Input((10, 10, 3))
    model = keras.Model(inputs, SameConv2D(4, 3, padding="same", name="conv")(inputs))
    plain = keras.layers.Conv2D(4, 3, padding="same")
    plain.build((None, 10, 10, 3))
    plain.set_weights(model.get_layer("conv").get_weights())
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("conv"), SameConv2D)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_other_settings_take_keras_convolution():
    layer = SameConv2D(2, 3, strides=2, padding="same")
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 1)).astype(np.float32)
    assert layer(x).shape == (1, 4, 4, 2)  # strided: Keras's own path, not same_conv2d's stride-1 one
