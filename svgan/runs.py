"""The run folder: what a training run writes, and how everything else finds it.

A run folder holds everything needed to resume, evaluate and predict:

    config.yaml          the resolved configuration (data.prepared_dir: where the patients live)
    manifest.json        a copy of the prepared data's manifest (splits, class counts, geometry)
    checkpoints/         G, D, both optimizers, epoch, step, early-stopping state
    generator.keras      the best generator on the validation Dice (loads with keras.models.load_model)
    history.csv          one row per epoch: stage, mean losses, validation scores, seconds
    curves.png           the training curves
    attention.png        with model.attention_gates: each gate's coefficients on a validation slice
    logs/                TensorBoard scalars and image summaries
    summary.json         the run's outcome: epochs, steps, step rate, minutes, why it stopped

Training creates it (``create_run``); evaluation, prediction and the CLI read it
(``load_run``, ``load_generator``, ``describe_run``). Nothing here imports TensorFlow
until a generator is loaded.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time

from .config import Config, load_config
from ._tf import import_tf
from .data.io import atomic_path, write_csv
from .data.manifest import MANIFEST_NAME, Manifest, load_manifest
from .errors import SvganError

CONFIG_NAME = "config.yaml"
GENERATOR_NAME = "generator.keras"
HISTORY_NAME = "history.csv"
SUMMARY_NAME = "summary.json"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
CURVES_NAME = "curves.png"
ATTENTION_NAME = "attention.png"


def new_run_dir(cfg: Config, root: str | None = None) -> str:
    """A new folder name ``ROOT/<dataset>-<date>-<time>`` (default root ``train.run_dir``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root or cfg.train.run_dir, f"{cfg.data.dataset}-{stamp}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def create_run(cfg: Config, prepared_dir: str, run_dir: str) -> Config:
    """Start a run folder: the configuration (pointing at ``prepared_dir``) and a copy of its manifest.
    Returns that configuration; the caller's is left as it was."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, prepared_dir=os.path.abspath(prepared_dir)))
    os.makedirs(run_dir, exist_ok=True)
    cfg.save(os.path.join(run_dir, CONFIG_NAME))
    shutil.copyfile(os.path.join(prepared_dir, MANIFEST_NAME), os.path.join(run_dir, MANIFEST_NAME))
    return cfg


def record_resumed_config(cfg: Config, run_dir: str) -> list[str]:
    """Save ``cfg`` as the run folder's configuration when a resumed run changes it (``svgan train
    --resume RUN --set ...``), so the folder says what trained its model and a later resume without
    the overrides keeps them. Returns the changed settings as ``section.key: old -> new``."""
    path = os.path.join(run_dir, CONFIG_NAME)
    before, after = _flat(load_config(path).to_dict()), _flat(cfg.to_dict())
    changes = [f"{key}: {before.get(key)!r} -> {after.get(key)!r}"
               for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    if changes:
        cfg.save(path)
    return changes


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_run(run_dir: str, prepared_dir: str | None = None, overrides: list[str] | None = None) -> tuple[Config, Manifest]:
    """The resolved config of a run folder (with ``--set`` style ``overrides``, e.g. for
    post-processing at evaluation) and its manifest copy, whose patient files live in the
    prepared folder the run was trained on (or ``prepared_dir``)."""
    if not os.path.isfile(os.path.join(run_dir, CONFIG_NAME)):
        raise SvganError("not a run folder (no config.yaml)", run_dir)
    cfg = load_config(os.path.join(run_dir, CONFIG_NAME), overrides)
    copy = load_manifest(run_dir)
    return cfg, Manifest(prepared_dir or cfg.data.prepared_dir, copy.data)


def build_run_generator(cfg: Config, manifest: Manifest, size: tuple[int, int]):
    """A new (untrained) generator of the run's architecture for ``size`` [H, W] images: what training
    builds, and what prediction at another size than the saved generator's copies its weights into."""
    from .losses.registry import uses_cosine_classifier
    from .models.generator import build_generator

    phases = len(next(iter(manifest.patients.values()))["phases"])
    return build_generator(cfg.model, size, len(manifest.data["modalities"]), len(manifest.class_names),
                           len(manifest.disease_classes), phases,
                           cosine_classifier=uses_cosine_classifier(cfg.model, cfg.loss))


def load_generator(run_dir: str):
    """The run's ``generator.keras`` (its layers registered first)."""
    path = os.path.join(run_dir, GENERATOR_NAME)
    if not os.path.isfile(path):
        raise SvganError("no generator.keras in the run folder (has it finished an epoch?)", run_dir)
    # TensorFlow and the models only now: the rest of this module serves commands that never load one.
    import_tf()
    import keras

    from . import models  # noqa: F401  (registers the layers)

    try:
        return keras.models.load_model(path)
    except Exception as e:  # a damaged zip, or a file of another Keras: one line, not a traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SvganError(f"cannot load the generator under Keras {keras.__version__}: {first}", path) from None


def write_history(run_dir: str, rows: list[dict], first_columns=()) -> None:
    """``history.csv``: one row per epoch; ``first_columns`` first (where any row has them), then
    every other column in order of appearance. A column an epoch did not compute stays empty."""
    if not rows:
        return
    keys = [k for k in first_columns if any(k in r for r in rows)]
    for r in rows:
        keys += [k for k in r if k not in keys]
    write_csv(os.path.join(run_dir, HISTORY_NAME), rows, keys)


def read_history(run_dir: str, up_to_epoch: int | None = None) -> list[dict]:
    """The rows of ``history.csv`` (integers, floats and words as written; empty cells left out), those
    after ``up_to_epoch`` dropped (a resumed run rewrites them)."""
    path = os.path.join(run_dir, HISTORY_NAME)
    if not os.path.isfile(path):
        return []

    def value(text):
        for number in (int, float):  # read back as written: "3" stays an integer
            try:
                return number(text)
            except ValueError:
                pass
        return text  # a word, such as the stage's name

    with open(path, newline="") as f:
        rows = [{k: value(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    return [r for r in rows if up_to_epoch is None or r["epoch"] <= up_to_epoch]


def write_summary(run_dir: str, summary: dict) -> None:
    with atomic_path(os.path.join(run_dir, SUMMARY_NAME)) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=1)


def describe_run(summary: dict) -> str:
    """One line for a finished (or stopped) run's summary."""
    best = summary.get("best_validation_dice")
    return (f"Run folder: {os.path.abspath(summary['run_dir'])} ({summary['epochs_done']} epochs, "
            f"{summary['minutes']:.1f} min; best validation Dice {'-' if best is None else f'{best:.3f}'})")
