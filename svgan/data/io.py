"""Reading and writing image files with clear errors and no half-written outputs.

NIfTI goes through nibabel; MetaImage (.mha/.mhd, the BraTS 2013-2015 release)
through SimpleITK. Voxel spacing always comes from the header zooms in
array-axis order, never from the affine: ACDC files carry an affine without
spacing (sform diag(-1, -1, 1)) while their zooms hold the true 1.5625 x 1.5625 x 10 mm.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..errors import DataError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES


def strip_image_suffix(name: str) -> str:
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


@dataclass
class Geometry:
    """Where a volume sits in the scanner: what a prediction needs to be written back."""

    affine: np.ndarray  # 4x4, voxel -> world (mm)
    spacing: tuple[float, float, float]  # header zooms, array-axis order
    shape: tuple[int, int, int]
    path: str  # the file whose header a prediction re-uses

    def to_json(self) -> dict:
        return {
            "affine": np.asarray(self.affine, dtype=float).round(6).tolist(),
            "spacing": [float(s) for s in self.spacing],
            "shape": [int(s) for s in self.shape],
            "path": self.path,
        }


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a 3D volume as float32 with its geometry; one DataError names the file on any problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("file not found", path)
    try:
        if path.lower().endswith(ITK_SUFFIXES):
            data, geometry = _load_itk(path)
        else:
            img = nib.load(path)
            data = np.asarray(img.dataobj, dtype=np.float32)
            zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
            geometry = Geometry(np.asarray(img.affine, dtype=float), zooms, tuple(data.shape[:3]), path)
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # nibabel/zlib/ITK raise many types for truncated or corrupt files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read image (truncated or corrupt file?): {reason}", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"expected a 3D volume, got shape {data.shape}", path)
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise DataError(f"{bad} voxels are NaN or infinite", path)
    return data, geometry


def _load_itk(path: str) -> tuple[np.ndarray, Geometry]:
    import SimpleITK as sitk

    img = sitk.ReadImage(path)
    # ITK arrays are (z, y, x); transpose to (x, y, z) like nibabel.
    data = np.transpose(sitk.GetArrayFromImage(img).astype(np.float32), (2, 1, 0))
    spacing = tuple(float(s) for s in img.GetSpacing())
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = img.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS world -> NIfTI's RAS
    return data, Geometry(affine, spacing, tuple(data.shape), path)


def check_same_grid(reference: Geometry, other: Geometry, atol: float = 1e-3) -> None:
    """Modalities and masks of one patient must share shape, spacing and affine."""
    if tuple(other.shape) != tuple(reference.shape):
        raise DataError(f"shape {tuple(other.shape)} differs from {os.path.basename(reference.path)} {tuple(reference.shape)}", other.path)
    if not np.allclose(other.spacing, reference.spacing, atol=atol):
        raise DataError(f"voxel spacing {other.spacing} differs from {os.path.basename(reference.path)} {reference.spacing}", other.path)
    if not np.allclose(other.affine, reference.affine, atol=atol):
        raise DataError(f"affine differs from {os.path.basename(reference.path)}", other.path)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike):
    """Yield a temporary path beside ``final_path``; rename it into place only on success.

    A crash or an exception leaves neither a partial file nor the temporary one.
    """
    final_path = os.fspath(final_path)
    directory, name = os.path.split(final_path)
    os.makedirs(directory or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=_suffix(name), dir=directory or ".")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _created_mode(0o666))  # mkstemp's is 0600: the file gets the mode open() would give it
        os.replace(tmp, final_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def require_new_folder(path: str | os.PathLike) -> None:
    """A command's output folder must not exist yet, or be empty: nothing of a user's is overwritten."""
    if os.path.isdir(path) and os.listdir(path):
        raise DataError("output folder exists and is not empty; give a new folder", path)


@contextlib.contextmanager
def atomic_folder(final_dir: str | os.PathLike):
    """``atomic_path`` for a folder: yield a temporary folder beside ``final_dir`` and rename it
    into place (over an empty ``final_dir``) only on success; otherwise nothing is left."""
    final_dir = os.fspath(final_dir).rstrip("/")
    parent = os.path.dirname(final_dir) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final_dir)}.", dir=parent)
    try:
        yield tmp
        require_new_folder(final_dir)
        if os.path.isdir(final_dir):
            os.rmdir(final_dir)
        os.chmod(tmp, _created_mode(0o777))  # mkdtemp's is 0700: the folder gets the mode mkdir would give it
        os.replace(tmp, final_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _created_mode(mode: int) -> int:
    """``mode`` less the process's umask, as ``open`` and ``mkdir`` apply it."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _suffix(name: str) -> str:
    for suffix in (".nii.gz", ".nii", ".npz", ".json", ".yaml", ".cfg", ".csv", ".keras", ".png"):
        if name.endswith(suffix):
            return suffix
    return ".tmp"


def save_nifti(img: nib.Nifti1Image, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def write_csv(path: str, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows of dicts as a CSV file, written atomically; columns default to the first row's keys
    (keys outside ``columns`` are left out). Nothing is written for no rows."""
    import csv

    if not rows:
        return
    columns = columns or list(rows[0])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
