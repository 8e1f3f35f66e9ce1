"""What differs between BraTS and ACDC, in one object per dataset.

Readers, preparation, configuration, training and evaluation ask the ``Dataset`` of a
name (``get_dataset``) instead of comparing dataset names: its channels, disease
classes, evaluation regions, number of phases, how to find and read its patients on
disk, and, for a cardiac dataset, its clinical features (what the ACDC groups are
defined by and what the clinical-feature diagnosis reads). A new dataset is one more
entry in ``DATASETS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError
from .cardiac import clinical_features, height_weight
from .conventions import DISEASE_CLASSES, REGIONS
from .readers import PatientRecord, PatientVolume, discover_acdc, discover_brats, load_acdc, load_brats


@dataclass(frozen=True)
class Dataset:
    name: str
    modalities: tuple[str, ...]  # canonical channel names, in order
    disease_classes: tuple[str, ...]  # training order
    regions: dict  # evaluation region -> training classes
    phases: int  # time points per patient laid end to end in a sequence (ACDC: ED and ES)
    default_format: str  # the label convention of a folder with no patient to say otherwise
    crop: str  # the natural prepare.crop: a skull-stripped brain's bounding box, or the image centre
    discover: Callable[[str, str], list[PatientRecord]]  # (raw folder, format) -> records
    load: Callable[[PatientRecord, tuple, bool], PatientVolume]  # (record, modalities, require labels)
    # Cardiac: ED and ES label maps of LV, RV and myocardium, whose clinical features (volumes, ejection
    # fractions, mass, wall thickness) define the disease groups and feed the clinical-feature diagnosis.
    cardiac: bool = False

    def clinical_features(self, volume: PatientVolume, info: dict, label=None) -> dict:
        """The clinical features of ``label`` (default: the volume's ground truth) on the volume's grid;
        height and weight from the patient's ``info``."""
        if not self.cardiac:
            raise ValueError(f"{self.name} has no cardiac clinical features")
        label = volume.label if label is None else label
        return clinical_features(label, volume.geometry[0].spacing, *height_weight(info))


BRATS = Dataset("brats", ("flair", "t1", "t1ce", "t2"), DISEASE_CLASSES["brats"], REGIONS["brats"], 1, "brats",
                "foreground", lambda raw, fmt="auto": discover_brats(raw, fmt), load_brats)
ACDC = Dataset("acdc", ("cine",), DISEASE_CLASSES["acdc"], REGIONS["acdc"], 2, "acdc", "center",
               lambda raw, fmt="auto": discover_acdc(raw), lambda record, modalities, labels: load_acdc(record, labels),
               cardiac=True)
DATASETS = {d.name: d for d in (BRATS, ACDC)}


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return DATASETS[name]


def discover_patients(raw_dir: str, dataset: str, fmt: str = "auto") -> list[PatientRecord]:
    """Every patient folder of a raw dataset folder, before any volume is read."""
    return get_dataset(dataset).discover(raw_dir, fmt)


def split_records(manifest, split: str) -> list[PatientRecord]:
    """The raw patient records of a prepared split (each patient's source folder, as prepared)."""
    return [discover_patients(manifest.patients[pid]["source"], manifest.dataset, manifest.patients[pid]["format"])[0]
            for pid in manifest.split_ids(split)]


def load_patient(record: PatientRecord, modalities: tuple[str, ...], require_labels: bool = True) -> PatientVolume:
    """Read and check one patient. Raises DataError naming the patient file at fault."""
    return get_dataset(record.dataset).load(record, modalities, require_labels)
