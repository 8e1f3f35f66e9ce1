"""Rates of a convolution's gradients: TensorFlow's backward kernels against ``SameConv2D``'s forward convolutions.

    python benchmarks/conv_gradients.py

For each decoder and encoder layer shape of the real-ACDC generator (a training step's 32 slices
of 96 x 96 windows, base 32) it prints GFLOP/s of the forward convolution, of TensorFlow's
``Conv2DBackpropInput`` and ``Conv2DBackpropFilter``, and of ``svgan.models.convolution``'s
input and kernel gradients, with the largest relative difference between the two gradients,
and this process's float32 matmul rate for scale. Each figure is the best of three runs.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from svgan._tf import import_tf  # noqa: E402
from svgan.models.convolution import input_gradient, kernel_gradient  # noqa: E402

# (slices, side, input channels, output channels): the generator's decoder levels 0-3 and encoder level 1
SHAPES = [(32, 96, 96, 32), (32, 48, 192, 64), (32, 24, 384, 128), (32, 12, 832, 256), (32, 48, 32, 64)]


def best_seconds(fn, *args, repeats: int = 3) -> float:
    fn(*args).numpy()  # trace and warm up
    times = []
    for _ in range(repeats):
        begun = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - begun)
    return min(times)


def main() -> None:
    tf = import_tf()
    n = 2048
    a = tf.random.normal((n, n))
    print(f"float32 matmul: {2 * n ** 3 / best_seconds(tf.function(tf.matmul), a, a) / 1e9:.0f} GFLOP/s")
    for slices, side, c_in, c_out in SHAPES:
        x = tf.random.normal((slices, side, side, c_in))
        kernel = tf.random.normal((3, 3, c_in, c_out))
        dy = tf.random.normal((slices, side, side, c_out))
        flops = 2 * slices * side * side * 9 * c_in * c_out
        ops = {
            "forward": (tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")), (x, kernel)),
            "TF input grad": (tf.function(lambda k, g: tf.compat.v1.nn.conv2d_backprop_input(
                tf.shape(x), k, g, [1, 1, 1, 1], "SAME")), (kernel, dy)),
            "svgan input grad": (tf.function(input_gradient), (kernel, dy)),
            "TF kernel grad": (tf.function(lambda x, g: tf.compat.v1.nn.conv2d_backprop_filter(
                x, tf.constant(kernel.shape.as_list()), g, [1, 1, 1, 1], "SAME")), (x, dy)),
            "svgan kernel grad": (tf.function(lambda x, g: kernel_gradient(x, g, (3, 3))), (x, dy)),
        }
        rates = {name: flops / best_seconds(fn, *args) / 1e9 for name, (fn, args) in ops.items()}

        def relative(a, b):
            return float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(a)))

        d_input = relative(ops["TF input grad"][0](kernel, dy), input_gradient(kernel, dy))
        d_kernel = relative(ops["TF kernel grad"][0](x, dy), kernel_gradient(x, dy, (3, 3)))
        print(f"{slices} x {side}x{side}, {c_in} -> {c_out}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + f" GFLOP/s; largest relative difference input {d_input:.1e}, kernel {d_kernel:.1e}")


if __name__ == "__main__":
    main()
