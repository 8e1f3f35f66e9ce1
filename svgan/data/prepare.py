"""``svgan prepare``: raw challenge folder -> one compressed file per patient + manifest.json.

Patients are processed in parallel (``workers`` processes). A patient that
fails is reported with its error line and left out; the others are prepared.
Every file is written under a temporary name and renamed into place, so an
interrupted run leaves no half-written file. Patients already prepared with the
same settings are skipped unless ``overwrite``. The split and the Nyul
landmarks are fixed once written: later runs re-use them.

With Nyul standardisation the landmarks must come from the training split
before any patient can be mapped, so patients are first prepared into a
temporary folder, the landmarks learned from the training patients'
percentiles, and the mapped files then written into place.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..errors import ConfigError, DataError
from .conventions import DISEASE_CLASSES, LABEL_CONVENTIONS
from .io import atomic_path
from .manifest import FORMAT_VERSION, MANIFEST_NAME, load_manifest, save_manifest, totals
from .preprocess import apply_nyul, learn_nyul_landmarks, preprocess_patient
from .readers import PatientRecord
from .datasets import discover_patients, get_dataset, load_patient
from .split import extend_split


@dataclass
class PrepareReport:
    out_dir: str
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _settings(cfg: Config) -> dict:
    """What a prepared file depends on; a folder prepared otherwise needs --overwrite."""
    return {"dataset": cfg.data.dataset, "modalities": list(cfg.data.resolved_modalities()),
            "prepare": {k: v for k, v in vars(cfg.prepare).items() if k not in ("split_fractions", "split_seed")}}


def save_arrays(path: str, image: np.ndarray, label: np.ndarray | None) -> None:
    # float16 halves disk and read time; z-scored intensities keep ~3 significant digits.
    arrays = {"image": image.astype(np.float16)}
    if label is not None:
        arrays["label"] = label
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


# CPython 3.11 shares the AST constructor's recursion counter between threads (gh-106905,
# fixed in 3.12): numpy parses each .npy header with ast.literal_eval, so a read in a tf.data
# thread can fail with a spurious SystemError while autograph parses code in another thread.
# The failure is transient; a few retries are enough.
_AST_RACE = "AST constructor recursion depth mismatch"
_READ_ATTEMPTS = 5


def load_prepared(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(image [P, Z, H, W, C] float32, label [P, Z, H, W] uint8 or None) of a prepared patient."""
    try:
        for attempt in range(_READ_ATTEMPTS):
            try:
                with np.load(path) as f:
                    image = f["image"].astype(np.float32)
                    label = f["label"] if "label" in f.files else None
                break
            except SystemError as e:
                if _AST_RACE not in str(e) or attempt == _READ_ATTEMPTS - 1:
                    raise
    except FileNotFoundError:
        raise DataError("prepared patient file not found (prepare again)", path) from None
    except Exception as e:
        raise DataError(f"prepared patient file is unreadable: {e}", path) from None
    return image, label


def _prepare_one(record: PatientRecord, cfg: Config, out_path: str, nyul_standard) -> dict:
    """Worker: read, preprocess, write; returns the manifest entry (or raises DataError)."""
    volume = load_patient(record, cfg.data.resolved_modalities(), require_labels=True)
    prepared = preprocess_patient(volume, cfg.prepare, nyul_standard=nyul_standard)
    save_arrays(out_path, prepared.image, prepared.label)
    num_classes = LABEL_CONVENTIONS[record.format].num_classes
    native = np.bincount(volume.label.ravel(), minlength=num_classes)
    entry = {
        "file": os.path.basename(out_path),
        "disease": record.disease,
        "source": os.path.abspath(record.folder),
        "format": record.format,
        "phases": list(volume.phases),
        "num_slices": int(prepared.image.shape[1]),
        "label_counts": np.bincount(prepared.label.ravel(), minlength=num_classes).tolist(),
        "native_label_counts": native.tolist(),
        "native_voxels": int(volume.label.size),
        "native_foreground_voxels": prepared.foreground_voxels * volume.label.shape[0],
        "geometry": [g.to_json() for g in volume.geometry],
        "crop": prepared.crop.to_json(),
        "percentiles": prepared.percentiles.round(5).tolist(),
        "notes": prepared.notes,
    }
    dataset = get_dataset(record.dataset)
    if dataset.cardiac:
        # The ground truth's clinical features on the native grid: what a diagnosis classifier fitted
        # on the training patients' truth reads (svgan.evaluation.clinical), kept with the run.
        entry["clinical_features"] = dataset.clinical_features(volume, record.info)
    return entry


def _run_task(args):
    record, cfg, out_path, nyul_standard = args
    try:
        return record.patient_id, _prepare_one(record, cfg, out_path, nyul_standard), None
    except DataError as e:
        return record.patient_id, None, str(e)
    except MemoryError:
        return record.patient_id, None, f"{record.folder}: out of memory"
    except Exception as e:  # one bad patient must not stop the cohort
        return record.patient_id, None, f"{record.folder}: unexpected {type(e).__name__}: {e}"


def _run_all(tasks, workers: int, progress) -> list:
    results = []
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            results.append(_run_task(t))
            if progress:
                progress(len(results))
        return results
    # spawn: TensorFlow may already be loaded in this process and is not fork-safe.
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in pool.map(_run_task, tasks):
            results.append(r)
            if progress:
                progress(len(results))
    return results


def prepare_dataset(cfg: Config, raw_dir: str, out_dir: str, workers: int = 1, overwrite: bool = False,
                    progress=None) -> PrepareReport:
    """Prepare every patient of ``raw_dir`` into ``out_dir``; see the module docstring."""
    records = discover_patients(raw_dir, cfg.data.dataset, cfg.data.format)
    os.makedirs(out_dir, exist_ok=True)
    settings = _settings(cfg)
    old = None
    if os.path.isfile(os.path.join(out_dir, MANIFEST_NAME)) and not overwrite:
        old = load_manifest(out_dir).data
        if old["settings"] != settings:
            changed = sorted(k for k in settings["prepare"] if old["settings"]["prepare"].get(k) != settings["prepare"][k])
            what = ", ".join(f"prepare.{k}" for k in changed) or "dataset/modalities"
            raise ConfigError(f"prepared with different settings ({what}); use --overwrite to prepare again",
                              os.path.join(out_dir, MANIFEST_NAME))
    patients = dict(old["patients"]) if old else {}
    split = extend_split(old["split"] if old else {}, {r.patient_id: r.disease for r in records},
                         cfg.prepare.split_fractions, cfg.prepare.split_seed)
    standard = np.asarray(old["nyul_standard"]) if old and old.get("nyul_standard") is not None else None

    report = PrepareReport(out_dir)
    todo = []
    for r in records:
        done = r.patient_id in patients and os.path.isfile(os.path.join(out_dir, patients[r.patient_id]["file"]))
        (report.skipped if done else todo).append(r.patient_id if done else r)

    learn_landmarks = cfg.prepare.nyul and standard is None
    staging = tempfile.mkdtemp(prefix="svgan-prepare-") if learn_landmarks else None
    try:
        target_dir = staging or out_dir
        tasks = [(r, cfg, os.path.join(target_dir, f"{r.patient_id}.npz"), standard if cfg.prepare.nyul else None)
                 for r in todo]
        for pid, entry, error in _run_all(tasks, workers, progress):
            if error:
                report.failed[pid] = error
            else:
                entry["split"] = split[pid]
                patients[pid] = entry
                report.prepared.append(pid)
        if learn_landmarks:
            train = [np.asarray(patients[p]["percentiles"]) for p in report.prepared if split[p] == "train"]
            standard = learn_nyul_landmarks(train)
            for pid in report.prepared:
                _map_staged(os.path.join(staging, f"{pid}.npz"), os.path.join(out_dir, f"{pid}.npz"),
                            np.asarray(patients[pid]["percentiles"]), standard)
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)

    dataset = cfg.data.dataset
    fmt = next((p["format"] for p in patients.values()), get_dataset(dataset).default_format)
    num_classes = LABEL_CONVENTIONS[fmt].num_classes
    data = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "modalities": list(cfg.data.resolved_modalities()),
        "class_names": list(LABEL_CONVENTIONS[fmt].class_names),
        "disease_classes": list(DISEASE_CLASSES[dataset]),
        "raw_dir": os.path.abspath(raw_dir),
        "settings": settings,
        "split_fractions": list(cfg.prepare.split_fractions),
        "split_seed": cfg.prepare.split_seed,
        "split": split,
        "nyul_percentiles": list(cfg.prepare.nyul_percentiles),
        "nyul_standard": None if standard is None else np.asarray(standard).round(5).tolist(),
        "patients": patients,
        "failed": report.failed,
    }
    data.update(totals(patients, num_classes, len(DISEASE_CLASSES[dataset])))
    save_manifest(out_dir, data)
    return report


def _map_staged(staged: str, final: str, percentiles: np.ndarray, standard: np.ndarray) -> None:
    image, label = load_prepared(staged)
    apply_nyul(image, percentiles, standard)
    save_arrays(final, image, label)
