"""Prediction on a raw patient in its own geometry, and writing it back as NIfTI.

The raw volumes go through exactly the preprocessing of training (the run's
``prepare`` settings and the Nyul landmarks of its manifest), every slice is
inferred (``inference.predict_patient``, by default each slice decoded once from the
overlapping window in which it sits most centrally; with ``postprocess.test_time_views`` also on
rotated and scaled views, averaged; with ``postprocess.foreground_window`` again on a window
centred on the first pass's foreground), and the crop, resize and resampling
are undone on the class probabilities (``restore_probabilities``) before the argmax,
so that the label map has the input's shape. It is written with the input's
own header (affine, qform/sform codes, zooms: ACDC's spacing lives only in the
zooms), in the dataset's label convention.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from ..config import Config
from ..data.conventions import LABEL_CONVENTIONS
from ..data.io import NIFTI_SUFFIXES, Geometry, save_nifti
from ..data.preprocess import preprocess_patient, restore_probabilities
from ..data.readers import PatientVolume
from .foreground_window import predict_on_foreground_window
from .test_time import predict_patient_views
from .postprocess import keep_largest_component


def predict_volume(predict_fn, volume: PatientVolume, cfg: Config, nyul_standard=None,
                   mode: str = "central", window_predict_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """(training classes [P, X, Y, Z] on the input grid, disease probabilities [M]).
    ``window_predict_fn``: with ``postprocess.foreground_window``, the generator built for
    ``pipeline.crop_size`` images (``predict_fn``'s is built for whole ones)."""
    standard = None if not cfg.prepare.nyul or nyul_standard is None else np.asarray(nyul_standard)
    prepared = preprocess_patient(volume, cfg.prepare, nyul_standard=standard)
    pipe, post = cfg.pipeline, cfg.postprocess
    if post.foreground_window:
        if window_predict_fn is None:
            raise ValueError("postprocess.foreground_window needs window_predict_fn, the generator at pipeline.crop_size")
        probs, disease = predict_on_foreground_window(predict_fn, window_predict_fn, prepared.image, pipe.crop_size,
                                                      pipe.sequence_length, pipe.batch_size, mode, post.test_time_views)
    else:
        probs, disease = predict_patient_views(predict_fn, prepared.image, pipe.sequence_length, pipe.batch_size,
                                               pipe.image_size, mode, post.test_time_views)
    native = np.stack([restore_probabilities(probs[p], prepared.crop).argmax(-1).astype(np.uint8)
                       for p in range(probs.shape[0])])
    if cfg.postprocess.largest_component:
        native = keep_largest_component(native)  # each phase's [X, Y, Z] volume
    return native, disease


def write_prediction(classes: np.ndarray, convention: str, geometry: Geometry, out_path: str) -> None:
    """Write training classes [X, Y, Z] as the dataset's labels with the input file's header."""
    data = LABEL_CONVENTIONS[convention].to_dataset(classes).astype(np.uint8)
    if tuple(data.shape) != tuple(geometry.shape):
        raise ValueError(f"prediction shape {data.shape} differs from the input {tuple(geometry.shape)}")
    if geometry.path.lower().endswith(NIFTI_SUFFIXES):
        header = nib.load(geometry.path).header.copy()
        header.set_data_dtype(np.uint8)
        header.set_slope_inter(1.0, 0.0)
        img = nib.Nifti1Image(data, None, header=header)  # None: keep the header's affine and zooms as they are
    else:  # MetaImage input (BraTS 2013-2015): NIfTI with the same world geometry
        img = nib.Nifti1Image(data, geometry.affine)
        img.header.set_zooms(geometry.spacing)
    save_nifti(img, out_path)


def prediction_names(volume: PatientVolume, info: dict) -> list[str]:
    """Output file names: ``<ID>_pred.nii.gz``; ACDC ``<ID>_frameYY_pred.nii.gz`` for ED and ES."""
    if volume.phases == ("ED", "ES"):
        return [f"{volume.patient_id}_frame{int(info[p]):02d}_pred.nii.gz" for p in ("ED", "ES")]
    return [f"{volume.patient_id}_pred.nii.gz"]


def prediction_paths(folder: str, volume: PatientVolume, info: dict) -> list[str]:
    return [os.path.join(folder, n) for n in prediction_names(volume, info)]
