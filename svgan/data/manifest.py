"""The manifest of a prepared folder: the single source of splits and class frequencies.

``manifest.json`` beside one ``<ID>.npz`` per patient holds, per patient, the
split, disease, slice count, geometry needed to write predictions back, and
label voxel counts; per split, the class voxel counts (segmentation) and
patient counts (disease) that the selective weights of Rezaei et al., Eq. 2 read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .io import atomic_path
from .split import SPLITS

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    root: str
    data: dict

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def patients(self) -> dict:
        return self.data["patients"]

    @property
    def class_names(self) -> list[str]:
        return self.data["class_names"]

    @property
    def disease_classes(self) -> list[str]:
        return self.data["disease_classes"]

    def split_ids(self, split: str) -> list[str]:
        """Prepared patients of a split, sorted."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} (expected one of {SPLITS})")
        return sorted(pid for pid, p in self.patients.items() if p["split"] == split)

    def diagnosed_ids(self, split: str) -> list[str]:
        """Prepared patients of a split whose disease class is known, sorted."""
        return [pid for pid in self.split_ids(split) if self.patients[pid].get("disease") is not None]

    def patient_file(self, pid: str) -> str:
        return os.path.join(self.root, self.patients[pid]["file"])

    def class_voxel_counts(self, split: str = "train") -> np.ndarray:
        return np.asarray(self.data["class_voxel_counts"][split], dtype=np.int64)

    def disease_patient_counts(self, split: str = "train") -> np.ndarray:
        return np.asarray(self.data["disease_patient_counts"][split], dtype=np.int64)


def load_manifest(root: str) -> Manifest:
    path = os.path.join(root, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise DataError("no manifest.json: not a prepared folder (run `svgan prepare` first)", root)
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"manifest is unreadable: {e}", path) from None
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(f"manifest format {data.get('format_version')} is not {FORMAT_VERSION}; prepare again", path)
    return Manifest(root, data)


def save_manifest(root: str, data: dict) -> None:
    with atomic_path(os.path.join(root, MANIFEST_NAME)) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1)


def totals(patients: dict, num_classes: int, num_diseases: int) -> dict:
    """Per-split class voxel counts and disease patient counts from the per-patient entries."""
    voxels = {s: [0] * num_classes for s in SPLITS}
    diseases = {s: [0] * num_diseases for s in SPLITS}
    for p in patients.values():
        for k, n in enumerate(p["label_counts"]):
            voxels[p["split"]][k] += int(n)
        if p["disease"] is not None:
            diseases[p["split"]][p["disease"]] += 1
    return {"class_voxel_counts": voxels, "disease_patient_counts": diseases}


def summary_table(manifest: Manifest) -> str:
    """Patients per split and disease class, and label voxel fractions, as Markdown."""
    d = manifest.data
    names, diseases = manifest.class_names, manifest.disease_classes
    lines = [f"Dataset: {d['dataset']} ({len(manifest.patients)} prepared patients; modalities {', '.join(d['modalities'])})", ""]
    lines.append("| split | " + " | ".join(diseases) + " | unknown | total |")
    lines.append("|---" * (len(diseases) + 3) + "|")
    for split in SPLITS:
        ids = manifest.split_ids(split)
        per = [sum(1 for i in ids if manifest.patients[i]["disease"] == k) for k in range(len(diseases))]
        unknown = sum(1 for i in ids if manifest.patients[i]["disease"] is None)
        lines.append(f"| {split} | " + " | ".join(map(str, per)) + f" | {unknown} | {len(ids)} |")
    lines += ["", "Label voxels per disease class, in % (native grid: of all voxels / of foreground voxels):", ""]
    lines.append("| class | patients | " + " | ".join(names[1:]) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    groups = [(diseases[k], [p for p in manifest.patients.values() if p["disease"] == k]) for k in range(len(diseases))]
    groups.append(("all", list(manifest.patients.values())))
    for name, members in groups:
        if not members:
            continue
        counts = np.sum([p["native_label_counts"] for p in members], axis=0)
        total = sum(p["native_voxels"] for p in members)
        fg = sum(p["native_foreground_voxels"] for p in members)
        cells = [f"{100 * counts[k] / total:.2f} / {100 * counts[k] / fg:.2f}" for k in range(1, len(names))]
        lines.append(f"| {name} | {len(members)} | " + " | ".join(cells) + " |")
    if d.get("failed"):
        lines += ["", f"Failed patients ({len(d['failed'])}):"] + [f"- {pid}: {msg}" for pid, msg in sorted(d["failed"].items())]
    return "\n".join(lines)
