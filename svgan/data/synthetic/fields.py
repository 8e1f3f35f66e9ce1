"""Random smooth fields and MR noise shared by the phantoms."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _upsampling_matrix(n_out: int, n_in: int, order: int) -> np.ndarray:
    """[n_out, n_in] weights of a 1D spline interpolation from n_in control points to n_out samples."""
    t = np.linspace(0, n_in - 1, n_out)
    eye = np.eye(n_in)
    return np.stack([ndimage.map_coordinates(eye[k], [t], order=order, mode="nearest") for k in range(n_in)], axis=1)


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, control_points: int = 5, order: int = 3) -> np.ndarray:
    """A smooth random field of unit standard deviation: a coarse random grid upsampled.

    The tensor-product spline is applied one axis at a time, which costs a few
    multiply-adds per voxel instead of an interpolation per voxel.
    """
    coarse = rng.standard_normal([max(2, min(control_points, s)) for s in shape])
    field = coarse
    for axis, n_out in enumerate(shape):
        weights = _upsampling_matrix(n_out, coarse.shape[axis], order)
        field = np.moveaxis(np.tensordot(weights, np.moveaxis(field, axis, 0), axes=(1, 0)), 0, axis)
    field = field.astype(np.float32)
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise on both channels, as MR magnitude images are."""
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def ellipsoid_radius(coords: list[np.ndarray], center, semi_axes) -> np.ndarray:
    """Normalised radius: < 1 inside the axis-aligned ellipsoid (any number of dimensions)."""
    total = 0.0
    for c, m, a in zip(coords, center, semi_axes):
        total = total + ((c - m) / a) ** 2
    return np.sqrt(total)
