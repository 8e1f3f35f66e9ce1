"""Label maps on the input's own grid written back as NIfTI, and their file names.

A prediction (``prediction.RunPredictor``) is written with the input's own header (affine,
qform/sform codes, zooms: ACDC's spacing lives only in the zooms), in the dataset's label
convention.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from ..data.conventions import LABEL_CONVENTIONS
from ..data.io import NIFTI_SUFFIXES, Geometry, save_nifti
from ..data.readers import PatientVolume


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
