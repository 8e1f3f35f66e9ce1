"""The generator's and discriminator's 'same' convolutions, with gradients that suit the CPU.

TensorFlow's CPU build computes convolutions with Eigen (oneDNN is not in the wheel:
``IsMklEnabled()`` is False for TensorFlow 2.21 on x86). Eigen's forward kernel runs near the
machine's matrix-product rate, but its backward kernels (``Conv2DBackpropInput`` and
``Conv2DBackpropFilter``) ran at 0.4-0.7 of it on the real-ACDC generator's layers
(``benchmarks/conv_gradients.py``), and they are two thirds of a training step. Both gradients
of a stride-1 'same' convolution are themselves forward convolutions:

- with respect to the input: the output gradient convolved ('same') with the kernel turned by
  180 degrees, its input and output channels swapped;
- with respect to the kernel: the zero-padded input and the output gradient correlated over
  the batch, which is a 'valid' forward convolution with the batch as the channel axis
  (input [C_in, H + k - 1, W + k - 1, N] by kernel [H, W, N, C_out] gives [C_in, k, k, C_out]).

``SameConv2D`` computes them so on CPUs. The model computes the same function and the same
gradients (to float32 rounding: tests/test_convolution.py checks them against TensorFlow's
own); on a GPU, where cuDNN's backward kernels are fast, it is a plain ``Conv2D``.
"""

from __future__ import annotations

import functools

from .._tf import import_tf

import_tf()

import keras  # noqa: E402

PACKAGE = "svgan"


@functools.lru_cache(maxsize=None)
def _gpu_visible() -> bool:
    return bool(import_tf().config.list_logical_devices("GPU"))


def input_gradient(dy, kernel):
    """d(conv(x, kernel))/dx applied to ``dy`` for a stride-1 'same' convolution with an odd kernel."""
    tf = import_tf()
    return tf.nn.conv2d(dy, tf.transpose(tf.reverse(kernel, [0, 1]), (0, 1, 3, 2)), 1, "SAME")


def kernel_gradient(x, dy, kernel_size):
    """d(conv(x, kernel))/dkernel applied to ``dy``: [k_h, k_w, C_in, C_out]."""
    tf = import_tf()
    ph, pw = kernel_size[0] // 2, kernel_size[1] // 2
    padded = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
    # Batch as the channel axis: the sum over the batch and the image is the convolution's own sum.
    out = tf.nn.conv2d(tf.transpose(padded, (3, 1, 2, 0)), tf.transpose(dy, (1, 2, 0, 3)), 1, "VALID")
    return tf.transpose(out, (1, 2, 0, 3))


def same_conv2d(x, kernel):
    """A stride-1 'same' 2D convolution (NHWC, odd kernel) whose gradients are forward convolutions."""
    tf = import_tf()

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            return input_gradient(dy, kernel), kernel_gradient(x, dy, kernel.shape[:2])

        return tf.nn.conv2d(x, kernel, 1, "SAME"), grad

    return conv(x, tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(PACKAGE)
class SameConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (stride 1, 'same' padding, odd kernel) with ``same_conv2d``'s gradients
    on CPUs; any other setting, or a visible GPU, takes Keras's own convolution."""

    def convolution_op(self, inputs, kernel):
        plain = (_gpu_visible() or self.data_format != "channels_last" or self.padding != "same"
                 or tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1) or self.groups != 1
                 or any(k % 2 == 0 for k in self.kernel_size))
        if plain:
            return super().convolution_op(inputs, kernel)
        return same_conv2d(inputs, kernel)
