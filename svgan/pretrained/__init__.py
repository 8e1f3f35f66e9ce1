"""Trained models that ship inside the package, used by name: ``svgan predict acdc IN OUT``.

A shipped model is a run folder cut down to what prediction reads (``svgan export`` writes one
from any run), plus ``metadata.json``:

    generator.keras      the trained generator (the run's own file, float32)
    config.yaml          the run's configuration (prediction settings included)
    manifest.json        the run's manifest without local paths: classes, splits, the training
                         patients' ground-truth clinical features (the diagnosis forest's data)
    metadata.json        name, version, task, inputs and outputs, the svgan / Keras / TensorFlow
                         versions it was saved with, how it was trained, its scores on kept
                         patients, licence and citation, and the sha256 of every file above

Nothing is downloaded: the files are package data, installed by ``pip install``. Loading one
checks every sha256 and the Keras major version first, so that a damaged file or an
incompatible Keras is one line naming the file instead of a traceback. Its model card, for
people, is ``docs/models/<name>.md``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil

from .. import __version__
from ..data.io import atomic_folder
from ..errors import SvganError
from ..runs import CONFIG_NAME, GENERATOR_NAME, load_run

METADATA_NAME = "metadata.json"
SHIPPED_ROOT = os.path.dirname(os.path.abspath(__file__))
BUNDLE_FILES = (GENERATOR_NAME, CONFIG_NAME, "manifest.json")
# The clinical features of the model's own predictions of its training patients (``svgan
# evaluate``'s forest fitted on predictions), kept so that the patients need not be at hand.
TRAINING_FEATURES_NAME = "predicted_features_train.json"


class ModelError(SvganError):
    """A shipped or exported model cannot be used (unknown name, damaged file, incompatible versions)."""


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(bundle_dir: str) -> dict:
    path = os.path.join(bundle_dir, METADATA_NAME)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelError("missing metadata.json (not a model bundle)", path) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"unreadable metadata: {e}", path) from None


def shipped_models(root: str | None = None) -> dict[str, str]:
    """{name: bundle folder} of the models that ship in ``root`` (the package's own by default)."""
    root = root or SHIPPED_ROOT
    return {name: os.path.join(root, name) for name in sorted(os.listdir(root))
            if os.path.isfile(os.path.join(root, name, METADATA_NAME))}


def verify_bundle(bundle_dir: str) -> dict:
    """Check every file's sha256 and the Keras major version; returns the metadata."""
    metadata = read_metadata(bundle_dir)
    for name, expected in metadata["files"].items():
        path = os.path.join(bundle_dir, name)
        if not os.path.isfile(path):
            raise ModelError("missing file of the model bundle (reinstall svgan)", path)
        if sha256(path) != expected["sha256"]:
            raise ModelError("sha256 does not match metadata.json: the file is damaged or was changed (reinstall svgan)", path)
    _check_versions(bundle_dir, metadata)
    return metadata


def _check_versions(bundle_dir: str, metadata: dict) -> None:
    import keras

    saved = metadata["versions"]["keras"]
    if saved.split(".")[0] != keras.__version__.split(".")[0]:
        raise ModelError(f"saved with Keras {saved}; this environment has Keras {keras.__version__}, which cannot "
                         f"read it (install keras>={saved.split('.')[0]},<{int(saved.split('.')[0]) + 1})",
                         os.path.join(bundle_dir, GENERATOR_NAME))


def resolve(run_or_model: str, root: str | None = None) -> tuple[str, dict | None]:
    """A run folder as it is, or a shipped model's name: (folder, metadata or None for a run folder).
    A shipped model is verified first (``verify_bundle``)."""
    if os.path.isfile(os.path.join(run_or_model, CONFIG_NAME)):
        if os.path.isfile(os.path.join(run_or_model, METADATA_NAME)):  # an exported bundle given by its path
            return run_or_model, verify_bundle(run_or_model)
        return run_or_model, None
    models = shipped_models(root)
    if run_or_model in models:
        return models[run_or_model], verify_bundle(models[run_or_model])
    if os.path.isdir(run_or_model):
        raise SvganError("not a run folder (no config.yaml) and not a shipped model", run_or_model)
    raise SvganError(f"no run folder or shipped model called {run_or_model!r} (shipped: {', '.join(models) or 'none'}; "
                     "svgan models lists them)")


def describe(name: str, metadata: dict) -> str:
    """One line for ``svgan models``: task, inputs, training data, and the scores the bundle records
    (``scores``: {"validation" | "kept_patients": {"patients", "dice": {region: mean}, "diagnosis_accuracy"}})."""
    parts = []
    for split, label in (("validation", "validation"), ("kept_patients", "kept")):
        s = metadata.get("scores", {}).get(split, {})
        if s.get("dice"):
            parts.append(f"{label} ({s['patients']} patients): Dice " + " / ".join(f"{r} {v:.3f}" for r, v in s["dice"].items())
                         + (f", diagnosis {s['diagnosis_accuracy']:.2f}" if "diagnosis_accuracy" in s else ""))
    return (f"{name} {metadata['version']}: {metadata['task']} | input: {metadata['inputs']['summary']} | trained on "
            f"{metadata['training']['data']}" + "".join(f" | {p}" for p in parts))


def export_bundle(run_dir: str, out_dir: str, name: str, version: str = "1.0.0", details: dict | None = None) -> dict:
    """Write ``run_dir``'s model as a bundle into the new folder ``out_dir``: the files of ``BUNDLE_FILES``
    without local paths, the kept training-prediction features where the run has them, and
    ``metadata.json`` (``details`` adds its fields: task, training, scores, ...; a section such as
    ``training`` adds to the default one, so its patient lists stay)."""
    import keras

    from .._tf import import_tf

    tf = import_tf()
    cfg, manifest = load_run(run_dir)
    if not os.path.isfile(os.path.join(run_dir, GENERATOR_NAME)):
        raise SvganError("the run has no generator.keras yet", run_dir)
    with atomic_folder(out_dir) as tmp:
        shutil.copyfile(os.path.join(run_dir, GENERATOR_NAME), os.path.join(tmp, GENERATOR_NAME))
        cfg.data.prepared_dir = None  # a path on the machine that trained it
        cfg.save(os.path.join(tmp, CONFIG_NAME))
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(_without_local_paths(manifest.data), f, indent=1)
        files = list(BUNDLE_FILES)
        features = os.path.join(run_dir, TRAINING_FEATURES_NAME)
        if os.path.isfile(features):
            shutil.copyfile(features, os.path.join(tmp, TRAINING_FEATURES_NAME))
            files.append(TRAINING_FEATURES_NAME)
        metadata = {
            "name": name, "version": version, "task": f"{manifest.dataset} model",
            "created": datetime.date.today().isoformat(),
            "versions": {"svgan": __version__, "keras": keras.__version__, "tensorflow": tf.__version__},
            "classes": {"labels": manifest.class_names, "diseases": manifest.disease_classes},
            "inputs": {"summary": f"{manifest.dataset} patient folders"},
            "training": {"data": f"{len(manifest.split_ids('train'))} {manifest.dataset} patients",
                         "patients": {s: manifest.split_ids(s) for s in ("train", "validation", "test")}},
        }
        for key, value in (details or {}).items():  # a details section adds to the default one of its name
            merge = isinstance(value, dict) and isinstance(metadata.get(key), dict)
            metadata[key] = {**metadata[key], **value} if merge else value
        metadata["files"] = {f: {"sha256": sha256(os.path.join(tmp, f)), "bytes": os.path.getsize(os.path.join(tmp, f))}
                             for f in files}
        with open(os.path.join(tmp, METADATA_NAME), "w") as f:
            json.dump(metadata, f, indent=1)
    return metadata


def _without_local_paths(data: dict) -> dict:
    """The manifest with each patient's source as its folder name and each image path as its file name."""
    out = json.loads(json.dumps(data))
    out["raw_dir"] = os.path.basename(os.path.normpath(out.get("raw_dir") or "")) or None
    for entry in out["patients"].values():
        entry["source"] = os.path.basename(os.path.normpath(entry.get("source", "")))
        for g in entry.get("geometry", []):
            if "path" in g:
                g["path"] = os.path.basename(g["path"])
    return out
