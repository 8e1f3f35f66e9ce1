"""Prediction in two passes: the whole image finds the foreground, a window of the training
windows' size centred on it is predicted again.

A model trained on ``pipeline.crop_size`` windows centred on the labelled voxels
(``pipeline.crop_placement: foreground``) learnt from that view: the structure near the middle,
a fixed share of surroundings. On a whole image it sees more background than it learnt from,
and its group normalisation (statistics over the whole image) reads other statistics. The
first pass (the patient once, on the whole image) gives the centre of mass of the voxels it
calls foreground, over every phase and slice; the second pass predicts the window of the
training size centred there, to the nearest pixel (zeros outside the image, as the training
windows are filled), with ``postprocess.test_time_views`` turned about the window's centre;
its probabilities replace the first pass's inside the window. The disease is the first pass's:
the model's head was fitted on whole images, and the volume head reads each structure's share of
the image, which a window changes.

Cost: one whole-image pass plus (views + 1) window passes (a 96 x 96 window of a 128 x 128
image costs about 0.56 of it), against (views + 1) whole-image passes without it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .inference import predict_patient
from .test_time import predict_patient_views


def window_origin(foreground: np.ndarray, size) -> tuple[int, int] | None:
    """(top, left) of the ``size`` (rows, columns) window centred, to the nearest pixel, on the centre of
    mass of ``foreground`` [..., H, W] (the training windows' rule); None when nothing is foreground."""
    if not foreground.any():
        return None
    row, col = ndimage.center_of_mass(foreground)[-2:]
    return int(np.round(row - (size[0] - 1) / 2.0)), int(np.round(col - (size[1] - 1) / 2.0))


def _overlap(origin: int, size: int, extent: int) -> tuple[slice, slice]:
    """(slice of the image, slice of the window) where a window at ``origin`` overlaps [0, extent)."""
    lo, hi = max(0, origin), min(extent, origin + size)
    return slice(lo, hi), slice(lo - origin, hi - origin)


def cut_window(volume: np.ndarray, top: int, left: int, size) -> np.ndarray:
    """The ``size`` window of ``volume`` [..., H, W, C] at (top, left); zeros where it leaves the image."""
    h, w = volume.shape[-3:-1]
    out = np.zeros(volume.shape[:-3] + (size[0], size[1], volume.shape[-1]), volume.dtype)
    (rows, win_rows), (cols, win_cols) = _overlap(top, size[0], h), _overlap(left, size[1], w)
    out[..., win_rows, win_cols, :] = volume[..., rows, cols, :]
    return out


def paste_window(volume: np.ndarray, window: np.ndarray, top: int, left: int) -> np.ndarray:
    """``volume`` [..., H, W, K] with the part of ``window`` [..., h, w, K] at (top, left) that lies in it."""
    h, w = volume.shape[-3:-1]
    out = np.array(volume, copy=True)
    (rows, win_rows), (cols, win_cols) = _overlap(top, window.shape[-3], h), _overlap(left, window.shape[-2], w)
    out[..., rows, cols, :] = window[..., win_rows, win_cols, :]
    return out


def predict_on_foreground_window(predict_fn, window_predict_fn, image: np.ndarray, window_size, sequence_length: int,
                                 batch_size: int = 2, mode: str = "central", views=()) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities [P, Z, H, W, K], disease probabilities [M]) of a prepared patient
    ``image`` [P, Z, H, W, C]: the whole image once (``predict_fn``), then the ``window_size`` window
    on its foreground with ``views`` (``window_predict_fn``: the same generator built for that size).
    Nothing found in the first pass: the whole image with ``views``, as without a window."""
    whole, disease = predict_patient(predict_fn, image, sequence_length, batch_size, None, mode)
    origin = window_origin(whole.argmax(-1) > 0, window_size)
    if origin is None:
        return predict_patient_views(predict_fn, image, sequence_length, batch_size, None, mode, views,
                                     unchanged=(whole, disease))
    top, left = origin
    window, _ = predict_patient_views(window_predict_fn, cut_window(image, top, left, window_size), sequence_length,
                                      batch_size, None, mode, views)
    return paste_window(whole, window, top, left), disease
