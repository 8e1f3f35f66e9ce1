"""Prediction in two passes: the whole image, then the training-sized window on its foreground."""

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.config import load_config
from svgan.errors import ConfigError
from svgan.evaluation.foreground_window import cut_window, paste_window, predict_on_foreground_window, window_origin

tf = import_tf()


def test_the_window_is_centred_on_the_foregrounds_centre_of_mass_to_the_nearest_pixel():
    foreground = np.zeros((2, 3, 32, 32), bool)
    foreground[0, 1, 10:14, 20:22] = True  # centre of mass (11.5, 20.5)
    # An 8 x 8 window centred there starts at row 11.5 - 3.5 = 8, column 20.5 - 3.5 = 17.
    assert window_origin(foreground, (8, 8)) == (8, 17)
    foreground[1, 2, 30, 31] = True  # any phase and slice counts: 9 voxels, centre (122 / 9, 195 / 9) = (13.56, 21.67)
    assert window_origin(foreground, (8, 8)) == (10, 18)
    assert window_origin(np.zeros((2, 3, 32, 32), bool), (8, 8)) is None


def test_a_window_that_leaves_the_image_reads_zeros_there_and_pastes_back_only_what_lies_inside():
    image = np.arange(1, 1 + 6 * 6, dtype=np.float32).reshape(1, 6, 6, 1)
    window = cut_window(image, -1, 3, (4, 4))  # rows -1..2, columns 3..6
    assert window.shape == (1, 4, 4, 1)
    assert np.all(window[0, 0] == 0) and np.all(window[0, :, 3] == 0)
    np.testing.assert_array_equal(window[0, 1:, :3, 0], image[0, 0:3, 3:6, 0])
    pasted = paste_window(np.zeros_like(image), window + 100, -1, 3)
    expected = np.zeros_like(image)
    expected[0, 0:3, 3:6] = image[0, 0:3, 3:6] + 100
    np.testing.assert_array_equal(pasted, expected)


class _Recording:
    """A stand-in generator for ``mode="single"`` that keeps the images it was given. ``per_pixel``:
    class-1 probability sigmoid(pixel); otherwise column / (W - 1) of its input, whatever it sees."""

    def __init__(self, per_pixel: bool):
        self.per_pixel, self.inputs = per_pixel, []

    def __call__(self, images):
        self.inputs.append(np.array(images))
        x = tf.convert_to_tensor(images)[..., 0]
        if self.per_pixel:
            p1 = tf.sigmoid(x)
        else:
            width = x.shape[-1]
            p1 = tf.broadcast_to(tf.range(width, dtype=tf.float32) / (width - 1), x.shape)
        m = tf.sigmoid(tf.reduce_mean(x, axis=[1, 2, 3]))
        return tf.stack([1 - p1, p1], -1), tf.stack([m, 1 - m], -1)


def test_the_second_pass_sees_the_window_on_the_first_passs_foreground():
    image = np.full((1, 4, 32, 32, 1), -4.0, np.float32)
    image[:, :, 20:26, 2:6] = 4.0  # the "heart": centre of mass (22.5, 3.5); a 16 x 16 window at (15, -4)
    whole_model, window_model = _Recording(per_pixel=True), _Recording(per_pixel=True)
    probs, disease = predict_on_foreground_window(whole_model, window_model, image, (16, 16), 4, mode="single")
    assert [x.shape[2:4] for x in whole_model.inputs] == [(32, 32)]
    assert [x.shape[2:4] for x in window_model.inputs] == [(16, 16)]
    np.testing.assert_array_equal(window_model.inputs[0][0], cut_window(image[0], 15, -4, (16, 16)))
    # A per-pixel model gives the same probabilities in the window as on the whole image.
    np.testing.assert_allclose(probs[..., 1], 1 / (1 + np.exp(-image[..., 0])), rtol=1e-5)
    # The disease is the whole image's: the head reads structure shares of the whole image.
    whole_mean = image.mean()
    np.testing.assert_allclose(disease, [1 / (1 + np.exp(-whole_mean)), 1 - 1 / (1 + np.exp(-whole_mean))], rtol=1e-5)


def test_the_windows_probabilities_replace_the_first_passs_where_the_window_lies():
    # The model's class 1 grows from 0 to 1 across its input's columns. On the whole 32 x 32 image the
    # foreground (p > 0.5) is columns 16-31 of every row: centre (15.5, 23.5), so the 16 x 16 window
    # starts at (8, 16) and covers rows 8-23, columns 16-31, where it says (column - 16) / 15.
    image = np.zeros((1, 4, 32, 32, 1), np.float32)
    probs, _ = predict_on_foreground_window(*[_Recording(per_pixel=False)] * 2, image, (16, 16), 4, mode="single")
    columns = np.arange(32, dtype=np.float32)
    expected = np.broadcast_to(columns / 31, (1, 4, 32, 32)).copy()
    expected[:, :, 8:24, 16:32] = (columns[16:] - 16) / 15
    np.testing.assert_allclose(probs[..., 1], expected, atol=1e-6)


def test_no_foreground_predicts_the_whole_image_with_its_views_once_each():
    image = np.full((1, 4, 16, 16, 1), -4.0, np.float32)
    model = _Recording(per_pixel=True)
    probs, _ = predict_on_foreground_window(model, model, image, (8, 8), 4, mode="single", views=[[90, 1], [180, 1]])
    assert [x.shape[2:4] for x in model.inputs] == [(16, 16)] * 3  # the unchanged image is not predicted twice
    np.testing.assert_allclose(probs[..., 1], 1 / (1 + np.exp(4.0)), rtol=1e-4)


def test_the_foreground_window_needs_the_training_window_size():
    with pytest.raises(ConfigError, match="postprocess.foreground_window needs pipeline.crop_size"):
        load_config(None, ["postprocess.foreground_window=true"])
    cfg = load_config(None, ["postprocess.foreground_window=true", "pipeline.crop_size=[96, 96]",
                             "prepare.image_size=[128, 128]"])
    assert cfg.postprocess.foreground_window
