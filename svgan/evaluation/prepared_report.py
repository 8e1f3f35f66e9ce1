"""Scores of a generator on the prepared patients of one split (prepared grid, no resampling back).

Used for validation during training (early stopping, best model). The patients go through the
prediction path's steps on the prepared grid (``prediction.RunPredictor``: probabilities, the
largest component, the head's prior correction), each once: without test-time views, which would
cost every epoch end a pass per view, and without the native grid, which validation does not
need to compare epochs. Per region: mean Dice and sensitivity over patients; per label class:
voxel sensitivity; disease: accuracy, per-class sensitivity and the majority-class rate.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..data.conventions import REGIONS
from ..data.manifest import Manifest
from ..data.prepare import load_prepared
from .inference import make_predict_fn
from .metrics import dice, sensitivity
from .prediction import PredictionSettings, RunPredictor


def evaluate_prepared(generator, manifest: Manifest, split: str, cfg: Config, predict_fn=None,
                      patient_ids: list[str] | None = None) -> dict:
    predictor = RunPredictor(predict_fn or make_predict_fn(generator), cfg, manifest,
                             PredictionSettings.from_config(cfg, views=()))
    regions = REGIONS[manifest.dataset]
    names = manifest.class_names
    ids = patient_ids if patient_ids is not None else manifest.split_ids(split)
    per_region = {r: {"dice": [], "sensitivity": []} for r in regions}
    label_hits = np.zeros(len(names))
    label_total = np.zeros(len(names))
    diseases, predictions, probabilities = [], [], []
    for pid in ids:
        image, label = load_prepared(manifest.patient_file(pid))
        probs, disease_probs = predictor.probabilities(image)
        disease_probs = predictor.head_probabilities(disease_probs)
        pred = predictor.postprocess(probs.argmax(-1))
        for region, classes in regions.items():
            p, r = np.isin(pred, classes), np.isin(label, classes)
            per_region[region]["dice"].append(dice(p, r))
            per_region[region]["sensitivity"].append(sensitivity(p, r))
        for k in range(len(names)):
            ref = label == k
            label_total[k] += ref.sum()
            label_hits[k] += np.logical_and(ref, pred == k).sum()
        disease = manifest.patients[pid]["disease"]
        if disease is not None:
            diseases.append(disease)
            predictions.append(int(np.argmax(disease_probs)))
            probabilities.append(disease_probs.tolist())
    out = {"patients": len(ids)}
    for region, scores in per_region.items():
        out[f"dice_{region}"] = float(np.mean(scores["dice"])) if ids else float("nan")
        out[f"sensitivity_{region}"] = float(np.mean(scores["sensitivity"])) if ids else float("nan")
    out["dice_mean"] = float(np.mean([out[f"dice_{r}"] for r in regions]))
    for k, name in enumerate(names[1:], start=1):
        out[f"label_sensitivity_{k}"] = float(label_hits[k] / label_total[k]) if label_total[k] else float("nan")
    if diseases:
        d, p = np.asarray(diseases), np.asarray(predictions)
        out["accuracy"] = float(np.mean(d == p))
        out["majority_rate"] = float(np.bincount(d).max() / len(d))
        for k, name in enumerate(manifest.disease_classes):
            if np.any(d == k):
                out[f"disease_sensitivity_{name}"] = float(np.mean(p[d == k] == k))
    return out
