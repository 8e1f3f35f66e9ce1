"""Minority patients for BraTS / ACDC by CycleGAN translation of prepared slices (Zunair and Ben Hamza's idea
on volumes): ``svgan synthesize --data PREPARED --from HGG --to LGG --count N OUT``.

A CycleGAN learns, on the training split's 2D slices (every modality as a channel, both
phases for ACDC) that show labelled anatomy, the mapping between two disease classes. Then
``count`` training patients of the source class are translated slice by slice into synthetic
patients of the target class that keep their label maps (the translation changes appearance,
not anatomy: the cycle and identity terms hold it to the source's geometry) and their
background (voxels outside the prepared foreground stay 0).

The output is a prepared folder that the trainer reads like any other: ``OUT/manifest.json``
lists the original patients (their files stay where they are, by absolute path) with their
original splits, plus the synthetic ones, in the training split only, each with
``synthetic: {source, generator, seed}``; the class counts of Eq. 2 include them. The
synthetic images live in the prepared (normalised) intensity space, as every prepared slice;
the network sees them scaled by one factor (the 99.9th percentile of the training slices'
magnitude, in the provenance) and scaled back. ``svgan train --data OUT`` trains with them;
evaluation reads the original patients' raw folders, untouched.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np

from ..config import CycleGANConfig
from ..data.io import atomic_folder, require_new_folder
from ..data.manifest import MANIFEST_NAME, load_manifest, save_manifest, totals
from ..data.prepare import load_prepared, save_arrays
from ..errors import DataError
from .cyclegan import GENERATOR_FILES, train_cyclegan, translate

PROVENANCE_NAME = "synthesis.json"


def _slices(manifest, ids) -> np.ndarray:
    """Every slice [N, H, W, C] (phases flattened) of these patients that shows labelled anatomy."""
    out = []
    for pid in ids:
        image, label = load_prepared(manifest.patient_file(pid))
        image, label = image.reshape(-1, *image.shape[2:]), label.reshape(-1, *label.shape[2:])
        out.append(image[(label > 0).any(axis=(1, 2))])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def synthesize_patients(cfg: CycleGANConfig, prepared_dir: str, source: str, target: str, count: int, out_dir: str,
                        run_dir: str, seed: int = 0, verbose: bool = True) -> dict:
    import keras

    manifest = load_manifest(prepared_dir)
    classes = manifest.disease_classes
    for name in (source, target):
        if name not in classes:
            raise DataError(f"unknown class {name!r} (classes: {', '.join(classes)})", prepared_dir)
    if source == target or count < 1:
        raise DataError("--from and --to must differ and --count must be >= 1")
    require_new_folder(out_dir)
    train = manifest.split_ids("train")
    from_ids = [p for p in train if manifest.patients[p]["disease"] == classes.index(source)]
    to_ids = [p for p in train if manifest.patients[p]["disease"] == classes.index(target)]
    a, b = _slices(manifest, from_ids), _slices(manifest, to_ids)
    if not len(a) or not len(b):
        raise DataError(f"the training split needs labelled slices of both {source!r} and {target!r}", prepared_dir)
    scale = float(np.percentile(np.abs(np.concatenate([a, b])), 99.9)) or 1.0
    size = a.shape[1:3]
    if any(s % 2 ** cfg.depth for s in size):
        raise DataError(f"slices of {list(size)} need sizes divisible by 2^cyclegan.depth = {2 ** cfg.depth}", prepared_dir)
    train_cyclegan(cfg, np.clip(a / scale, -1, 1), np.clip(b / scale, -1, 1), run_dir, size, seed, verbose)
    generator_path = os.path.abspath(os.path.join(run_dir, GENERATOR_FILES["ab"]))
    generator = keras.models.load_model(generator_path)

    data = copy.deepcopy(manifest.data)
    for pid, entry in data["patients"].items():
        entry["file"] = os.path.abspath(manifest.patient_file(pid))
    rng = np.random.default_rng(seed)
    chosen = [from_ids[i] for i in np.resize(rng.permutation(len(from_ids)), count)]
    made = []
    with atomic_folder(out_dir) as folder:
        for i, pid in enumerate(chosen):
            image, label = load_prepared(manifest.patient_file(pid))
            flat = image.reshape(-1, *image.shape[2:])
            synthetic = translate(generator, np.clip(flat / scale, -1, 1)) * scale
            synthetic[np.all(flat == 0, axis=-1)] = 0  # the background stays
            new_id = f"synthetic_{target}_{i:04d}_from_{pid}"
            save_arrays(os.path.join(folder, f"{new_id}.npz"), synthetic.reshape(image.shape), label)
            entry = copy.deepcopy(manifest.patients[pid])
            entry.update({"file": f"{new_id}.npz", "disease": classes.index(target), "split": "train",
                          "synthetic": {"source": pid, "generator": generator_path, "seed": seed, "scale": scale}})
            data["patients"][new_id] = entry
            data["split"][new_id] = "train"
            made.append(new_id)
        data.update(totals(data["patients"], len(manifest.class_names), len(classes)))
        with open(os.path.join(folder, PROVENANCE_NAME), "w") as f:
            json.dump({"from": source, "to": target, "prepared": os.path.abspath(prepared_dir), "generator": generator_path,
                       "seed": seed, "scale": scale, "patients": {m: data["patients"][m]["synthetic"]["source"] for m in made}},
                      f, indent=1)
        save_manifest(folder, data)
    return {"out_dir": out_dir, "patients": made, "cyclegan_run": run_dir,
            "train_patients_per_class": dict(zip(classes, data["disease_patient_counts"]["train"]))}


def is_prepared_folder(path: str | None) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, MANIFEST_NAME))
