"""Readers for the real BraTS and ACDC folder layouts (``svgan.data.datasets`` picks one by dataset).

Discovery (``discover_brats``, ``discover_acdc``) only looks at names and small text files,
so that a whole cohort can be listed and split before any volume is read. ``load_brats`` and
``load_acdc`` read one patient's volumes, check them against each other, and convert labels
to training classes (``conventions``).

Layouts understood:
- BraTS 2017-2020: ``[HGG|LGG/]<ID>/<ID>_{flair,t1,t1ce,t2,seg}.nii.gz``
  (2020: grades in ``name_mapping.csv``);
- BraTS 2021: ``BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,...,seg}.nii.gz`` (no grade);
- BraTS 2023: ``<ID>/<ID>-{t2f,t1n,t1c,t2w,seg}.nii.gz``, labels 1/2/3;
- BraTS 2013-2015: ``[HGG|LGG/]<ID>/VSD.*.MR_Flair.*/*.mha`` ... ``*.OT.*``, and the
  DeepMedic re-packaging ``Flair_*.nii.gz``, ``T1c_*.nii.gz``, ``OTMultiClass.nii.gz``,
  ``brainmask.nii.gz``; labels 0-4 with 3 = non-enhancing core;
- ACDC training and testing: ``patientXXX/Info.cfg``, ``patientXXX_frameYY[_gt].nii.gz``
  (the 4D cine file is optional).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .conventions import LABEL_CONVENTIONS, disease_index
from .io import Geometry, check_same_grid, is_image_file, load_volume, strip_image_suffix

# Lower-cased file stems (suffix removed) -> role, per BraTS naming generation.
_BRATS_PATTERNS = {
    "brats": {
        "flair": r"_flair$", "t1": r"_t1$", "t1ce": r"_t1ce$", "t2": r"_t2$", "seg": r"_seg$",
    },
    "brats2023": {
        "flair": r"-t2f$", "t1": r"-t1n$", "t1ce": r"-t1c$", "t2": r"-t2w$", "seg": r"-seg$",
    },
    "brats2015": {
        "flair": r"(^|[._])(mr_)?flair([._]|$)", "t1": r"(^|[._])(mr_)?t1([._]|$)",
        "t1ce": r"(^|[._])(mr_)?t1c([._]|$)", "t2": r"(^|[._])(mr_)?t2([._]|$)",
        "seg": r"(^|[._])(ot|otmulticlass)([._]|$)", "mask": r"brainmask",
    },
}
_EXPECTED_SUFFIX = {
    "brats": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
    "brats2015": {"flair": "MR_Flair / Flair_", "t1": "MR_T1 / T1_", "t1ce": "MR_T1c / T1c_", "t2": "MR_T2 / T2_", "seg": "OT / OTMultiClass"},
}
_GRADE_FOLDERS = {"HGG", "LGG"}
_ACDC_PATIENT = re.compile(r"^patient\d+$")


@dataclass
class PatientRecord:
    """A patient found on disk, before any volume is read."""

    patient_id: str
    dataset: str  # "brats" or "acdc"
    format: str  # a key of LABEL_CONVENTIONS
    folder: str
    disease: int | None  # training index, None when the release gives no class
    files: dict[str, str | None] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # ACDC Info.cfg


@dataclass
class PatientVolume:
    """One patient's volumes in training classes.

    ``image`` is [P, X, Y, Z, C] and ``label`` [P, X, Y, Z] (or None without ground
    truth), P phases: 1 for BraTS, 2 for ACDC (ED then ES). Slices run along Z.
    """

    patient_id: str
    disease: int | None
    image: np.ndarray
    label: np.ndarray | None
    geometry: list[Geometry]
    phases: tuple[str, ...]
    modalities: tuple[str, ...]
    foreground: np.ndarray | None = None  # [X, Y, Z] brain mask shipped with the data, if any


# ---------------------------------------------------------------- discovery

def _image_files(folder: str) -> list[str]:
    """Image files of a patient folder, including the BraTS 2015 one-file-per-subfolder layout."""
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and is_image_file(entry.name):
            found.append(entry.path)
        elif entry.is_dir() and entry.name.upper().startswith("VSD."):
            found += [os.path.join(entry.path, n) for n in sorted(os.listdir(entry.path))
                      if is_image_file(n) and not n.startswith(".")]
    return found


def _detect_brats_format(files: list[str]) -> str:
    stems = [strip_image_suffix(os.path.basename(f)).lower() for f in files]
    if any(re.search(r"-(t2f|t1n|t1c|t2w|seg)$", s) for s in stems):
        return "brats2023"
    if any(re.search(r"_(flair|t1|t1ce|t2|seg)$", s) for s in stems):
        return "brats"
    return "brats2015"


def _match_brats_files(folder: str, files: list[str], fmt: str) -> dict[str, str]:
    roles: dict[str, str] = {}
    for path in files:
        stem = strip_image_suffix(os.path.basename(path)).lower()
        for role, pattern in _BRATS_PATTERNS[fmt].items():
            if re.search(pattern, stem):
                if role in roles:
                    raise DataError(f"two files match {role}: {os.path.basename(roles[role])} and {os.path.basename(path)}", folder)
                roles[role] = path
                break
    return roles


def _patient_folders(raw_dir: str, is_patient) -> list[tuple[str, str | None]]:
    """(folder, grade folder name or None); descends into HGG/LGG and ACDC's training/testing."""
    if not os.path.isdir(raw_dir):
        raise DataError("dataset folder not found", raw_dir)
    if is_patient(raw_dir):
        # A single patient folder: its grade, if any, is the name of the folder it sits in.
        parent = os.path.basename(os.path.dirname(os.path.abspath(raw_dir))).upper()
        return [(raw_dir, parent if parent in _GRADE_FOLDERS else None)]
    result = []
    for entry in sorted(os.scandir(raw_dir), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name.upper() in _GRADE_FOLDERS or entry.name.lower() in ("training", "testing"):
            grade = entry.name.upper() if entry.name.upper() in _GRADE_FOLDERS else None
            result += [(sub.path, grade) for sub in sorted(os.scandir(entry.path), key=lambda e: e.name)
                       if sub.is_dir() and not sub.name.startswith(".")]
        else:
            result.append((entry.path, None))
    return result


def _brats2020_grades(raw_dir: str) -> dict[str, str]:
    """BraTS 2020 keeps grades in name_mapping.csv instead of HGG/LGG folders."""
    path = os.path.join(raw_dir, "name_mapping.csv")
    if not os.path.isfile(path):
        return {}
    grades = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            pid = row.get("BraTS_2020_subject_ID")
            if pid and row.get("Grade"):
                grades[pid] = row["Grade"]
    return grades


def discover_brats(raw_dir: str, fmt: str = "auto") -> list[PatientRecord]:
    raw_dir = os.fspath(raw_dir)
    grades_csv = _brats2020_grades(raw_dir)

    def is_patient(folder: str) -> bool:
        return bool(_image_files(folder)) and os.path.basename(folder).upper() not in _GRADE_FOLDERS

    records = []
    for folder, grade in _patient_folders(raw_dir, is_patient):
        pid = os.path.basename(os.path.normpath(folder))
        files = _image_files(folder)
        if not files:
            # Still a record: load_patient reports the empty folder as this patient's error.
            records.append(PatientRecord(pid, "brats", "brats" if fmt == "auto" else fmt, folder, None, {}))
            continue
        patient_fmt = _detect_brats_format(files) if fmt == "auto" else fmt
        grade = grade or grades_csv.get(pid)
        records.append(PatientRecord(pid, "brats", patient_fmt, folder,
                                     disease_index("brats", grade, folder), _match_brats_files(folder, files, patient_fmt)))
    if not records:
        raise DataError("no BraTS patient folders found", raw_dir)
    return records


def read_info_cfg(path: str) -> dict[str, str]:
    if not os.path.isfile(path):
        raise DataError("Info.cfg not found", path)
    info = {}
    with open(path, errors="replace") as f:
        for line in f:
            if ":" in line:
                key, value = line.split(":", 1)
                info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if key not in info:
            raise DataError(f"no {key} frame given", path)
        if not info[key].isdigit():
            raise DataError(f"{key} frame {info[key]!r} is not a frame number", path)
    return info


def discover_acdc(raw_dir: str) -> list[PatientRecord]:
    raw_dir = os.fspath(raw_dir)

    def is_patient(folder: str) -> bool:
        return os.path.isfile(os.path.join(folder, "Info.cfg"))

    records = []
    for folder, _ in _patient_folders(raw_dir, is_patient):
        pid = os.path.basename(os.path.normpath(folder))
        if not (_ACDC_PATIENT.match(pid) or is_patient(folder)):
            continue
        cfg = os.path.join(folder, "Info.cfg")
        files: dict[str, str | None] = {"info": cfg}
        info: dict[str, str] = {}
        disease = None
        if os.path.isfile(cfg):
            # Errors in Info.cfg are reported when the patient is loaded, with the others.
            try:
                info = read_info_cfg(cfg)
                disease = disease_index("acdc", info.get("Group"), cfg)
            except DataError:
                info = {}
        for phase in ("ED", "ES"):
            if phase in info:
                stem = os.path.join(folder, f"{pid}_frame{int(info[phase]):02d}")
                files[phase] = _first_existing(stem + ".nii.gz", stem + ".nii")
                files[phase + "_gt"] = _first_existing(stem + "_gt.nii.gz", stem + "_gt.nii")
        records.append(PatientRecord(pid, "acdc", "acdc", folder, disease, files, info))
    if not records:
        raise DataError("no ACDC patient folders (patientXXX with Info.cfg) found", raw_dir)
    return records


def _first_existing(*paths: str) -> str:
    for p in paths:
        if os.path.isfile(p):
            return p
    return paths[0]  # reported as missing by load_volume, with the expected name


# ---------------------------------------------------------------- loading

def load_brats(record: PatientRecord, modalities: tuple[str, ...], require_labels: bool) -> PatientVolume:
    if not record.files:
        raise DataError("patient folder holds no image files", record.folder)
    for m in modalities:
        if m not in record.files:
            expected = _EXPECTED_SUFFIX[record.format][m]
            raise DataError(f"missing modality {m} (expected a file named like *{expected}*)", record.folder)
    channels, reference = [], None
    for m in modalities:
        data, geom = load_volume(record.files[m])
        if reference is None:
            reference = geom
        else:
            check_same_grid(reference, geom)
        channels.append(data)
    label = None
    seg_path = record.files.get("seg")
    if seg_path:
        seg, geom = load_volume(seg_path)
        check_same_grid(reference, geom)
        label = LABEL_CONVENTIONS[record.format].to_training(seg, seg_path)[None]
    elif require_labels:
        expected = _EXPECTED_SUFFIX[record.format]["seg"]
        raise DataError(f"missing segmentation (expected a file named like *{expected}*)", record.folder)
    foreground = None
    if record.files.get("mask"):
        mask, geom = load_volume(record.files["mask"])
        check_same_grid(reference, geom)
        foreground = mask > 0.5
    image = np.stack(channels, axis=-1)[None]
    return PatientVolume(record.patient_id, record.disease, image, label, [reference], ("volume",),
                         tuple(modalities), foreground)


def load_acdc(record: PatientRecord, require_labels: bool) -> PatientVolume:
    info = read_info_cfg(record.files["info"])
    disease = disease_index("acdc", info.get("Group"), record.files["info"])
    images, labels, geoms = [], [], []
    for phase in ("ED", "ES"):
        data, geom = load_volume(record.files[phase])
        if geoms:
            check_same_grid(geoms[0], geom)
        images.append(data[..., None])
        geoms.append(geom)
        gt_path = record.files[phase + "_gt"]
        if os.path.isfile(gt_path):
            gt, g = load_volume(gt_path)
            check_same_grid(geom, g)
            labels.append(LABEL_CONVENTIONS["acdc"].to_training(gt, gt_path))
        elif require_labels:
            raise DataError(f"missing {phase} ground truth", gt_path)
    if labels and len(labels) != 2:
        raise DataError("ground truth exists for only one of ED and ES", record.folder)
    label = np.stack(labels) if labels else None
    return PatientVolume(record.patient_id, disease, np.stack(images), label, geoms, ("ED", "ES"), ("cine",))
