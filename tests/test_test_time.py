"""Test-time augmentation: views turned about the image centre and their probabilities turned back."""

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.config import load_config
from svgan.errors import ConfigError
from svgan.evaluation.test_time import predict_patient_views, similarity_transform, warp

tf = import_tf()


def test_a_quarter_turn_moves_every_pixel_as_numpy_rotates_it():
    image = np.arange(5 * 5, dtype=np.float32).reshape(1, 5, 5, 1)
    turned = warp(image, similarity_transform(90, 1.0, 5, 5), "CONSTANT")
    # Output (x, y) reads input (y, 4 - x) about the centre (2, 2): rows become columns, read bottom-up.
    expected = np.rot90(image[0, :, :, 0], k=-1)
    assert not np.array_equal(expected, image[0, :, :, 0])
    np.testing.assert_allclose(turned[0, :, :, 0], expected, atol=1e-4)


def test_a_view_turned_back_returns_the_image_where_it_stayed_inside_the_field():
    rng = np.random.default_rng(0)
    # A smooth image, so that bilinear interpolation twice changes it little.
    yy, xx = np.mgrid[0:32, 0:32]
    image = (np.sin(xx / 5.0) + np.cos(yy / 7.0) + 0.01 * rng.normal(size=(32, 32)))[None, :, :, None].astype(np.float32)
    for degrees, scale in ((8, 1.0), (-8, 1.0), (0, 1.1), (10, 0.9)):
        view = warp(image, similarity_transform(degrees, scale, 32, 32), "CONSTANT")
        back = warp(view, similarity_transform(-degrees, 1.0 / scale, 32, 32), "NEAREST")
        centre = (slice(8, 24), slice(8, 24))
        assert np.abs(back[0][centre] - image[0][centre]).max() < 0.05, (degrees, scale)
        assert np.abs(view[0][centre] - image[0][centre]).max() > 0.05  # the view itself did move


def _per_pixel_predictor(column_dependent: bool):
    """A stand-in generator for ``mode="single"``: class-1 probability a function of each pixel's own
    value, plus (``column_dependent``) of its column; disease probabilities from the mean intensity."""

    def predict(images):
        x = tf.convert_to_tensor(images)[..., 0]
        p1 = tf.sigmoid(x)
        if column_dependent:
            width = x.shape[-1]
            p1 = tf.broadcast_to(tf.range(width, dtype=tf.float32) / (width - 1), x.shape)
        seg = tf.stack([1 - p1, p1], -1)
        m = tf.sigmoid(tf.reduce_mean(x, axis=[1, 2, 3]))
        return seg, tf.stack([m, 1 - m], -1)

    return predict


def test_no_views_is_plain_inference_and_quarter_turns_leave_a_per_pixel_model_unchanged():
    image = np.random.default_rng(1).normal(size=(2, 6, 16, 16, 1)).astype(np.float32)  # 2 phases, 6 slices
    predict = _per_pixel_predictor(column_dependent=False)
    plain, plain_disease = predict_patient_views(predict, image, 8, mode="single")
    p1 = 1 / (1 + np.exp(-image[..., 0]))
    np.testing.assert_allclose(plain[..., 1], p1, rtol=1e-5)
    # Quarter turns move whole pixels (no interpolation), and a per-pixel model commutes with them.
    turned, turned_disease = predict_patient_views(predict, image, 8, mode="single", views=[[90, 1], [180, 1], [-90, 1]])
    np.testing.assert_allclose(turned, plain, atol=1e-4)
    np.testing.assert_allclose(turned_disease, plain_disease, atol=1e-5)


def test_the_views_probabilities_are_averaged_after_turning_back():
    # The model answers class 1 with probability column / (W - 1) whatever it sees. A half turn
    # mirrors columns, so turned back it says (W - 1 - column) / (W - 1), and the mean of the two is 1/2.
    image = np.zeros((1, 4, 8, 8, 1), np.float32)
    probs, _ = predict_patient_views(_per_pixel_predictor(column_dependent=True), image, 4, mode="single",
                                     views=[[180, 1]])
    np.testing.assert_allclose(probs[..., 1], 0.5, atol=1e-4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("views", ["[[10]]", "[[10, 0]]", "[[200, 1]]"])
def test_a_view_without_an_angle_and_a_positive_scale_is_a_config_error(views):
    with pytest.raises(ConfigError, match="postprocess.test_time_views"):
        load_config(None, [f"postprocess.test_time_views={views}"])
