"""The classic ACDC diagnosis: a classifier on the clinical features of a segmentation.

The challenge's best diagnosis methods (Isensee et al., Wolterink et al., Khened et al.,
STACOM 2017) computed clinical features (``svgan.data.cardiac``: volumes, ejection
fractions, mass, wall thickness, indexed by body surface area) of their own predicted
segmentation and applied a small classifier fitted on the training patients. This module
does the same, beside the model's own disease head (``svgan evaluate`` reports both on
the same patients), with two forests:

- fitted on the training patients' ground-truth features (``truth_fitted_classifier``; the
  features are in the manifest), the one ``postprocess.diagnosis: clinical_features`` answers with;
- fitted on the features of the run's own predictions of its training patients
  (``predict_training_features``), which are made once, on request, and kept in
  ``RUN/predicted_features_train.json`` (a shipped model carries them).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..data.cardiac import FEATURES
from ..data.datasets import ACDC, get_dataset, split_records
from ..data.io import atomic_path
from ..errors import DataError
from ..pretrained import METADATA_NAME, TRAINING_FEATURES_NAME, sha256
from ..runs import GENERATOR_NAME

TRAINING_PREDICTIONS = "predictions_train"  # the run's predictions of its training patients, for people to look at

def feature_matrix(rows: list[dict], features=FEATURES) -> np.ndarray:
    """[N, len(features)] of the feature rows, a missing or infinite value as -1."""
    x = np.array([[float(r[k]) for k in features] for r in rows], dtype=np.float64)
    return np.nan_to_num(x, nan=-1.0, posinf=-1.0, neginf=-1.0)  # a missing value is its own branch for the trees


class ClinicalClassifier:
    """A random forest on ``features`` (default ``FEATURES``), fitted on the training patients' features only.

    Random forests were the challenge entrants' usual choice; they need no feature
    scaling, and thresholds on single features are how the groups are defined. ``model``: any
    scikit-learn classifier to fit on the same feature matrix instead of the forest (the
    benchmarks compare a logistic regression).
    """

    def __init__(self, trees: int = 500, seed: int = 0, features=FEATURES, model=None):
        from sklearn.ensemble import RandomForestClassifier

        self.model = model if model is not None else RandomForestClassifier(n_estimators=trees, random_state=seed,
                                                                             min_samples_leaf=1)
        self.features = tuple(features)

    def fit(self, rows: list[dict], diseases) -> "ClinicalClassifier":
        diseases = np.asarray(diseases, int)
        if len(rows) == 0 or len(rows) != len(diseases):
            raise ValueError(f"need one disease per feature row, got {len(rows)} rows and {len(diseases)} labels")
        self.model.fit(feature_matrix(rows, self.features), diseases)
        return self

    def predict_proba(self, rows: list[dict], num_classes: int) -> np.ndarray:
        """[N, num_classes] probabilities; classes absent from the training rows get 0."""
        out = np.zeros((len(rows), num_classes))
        if rows:
            out[:, self.model.classes_] = self.model.predict_proba(feature_matrix(rows, self.features))
        return out


def _features_from_source(entry: dict) -> dict:
    record = ACDC.discover(entry["source"], entry["format"])[0]
    volume = ACDC.load(record, ACDC.modalities, True)
    return ACDC.clinical_features(volume, record.info)


def truth_feature_rows(manifest) -> list[dict]:
    """The ground truth's ``FEATURES`` (plus ``patient`` and ``disease``) of every training patient of
    known group: from the manifest, where ``svgan prepare`` writes them, or, for a folder prepared
    before it did, from the patients' source folders (a ``DataError`` names one that is gone)."""
    rows = []
    for pid in manifest.diagnosed_ids("train"):
        entry = manifest.patients[pid]
        features = entry.get("clinical_features") or _features_from_source(entry)
        rows.append({"patient": pid, "disease": entry["disease"], **features})
    return rows


def truth_fitted_classifier(manifest) -> ClinicalClassifier | None:
    """The challenge entries' diagnosis: a ``ClinicalClassifier`` fitted on the training patients'
    ground-truth features, to be applied to the features of a predicted segmentation. None
    without a training patient of known group."""
    rows = truth_feature_rows(manifest)
    return ClinicalClassifier().fit(rows, [r["disease"] for r in rows]) if rows else None


def training_features_key(run_dir: str, label_key: dict) -> dict:
    """What the kept features of a run's training predictions depend on: the generator (its sha256) and
    the prediction settings that shape the label maps (``PredictionSettings.label_key``)."""
    return {"generator_sha256": sha256(os.path.join(run_dir, GENERATOR_NAME)), **label_key}


def kept_training_features(run_dir: str, key: dict) -> list[dict] | None:
    """The kept features of the run's predictions of its training patients if they were made under
    ``key`` (``training_features_key``); else None."""
    path = os.path.join(run_dir, TRAINING_FEATURES_NAME)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        kept = json.load(f)
    return kept["rows"] if kept["settings"] == key else None


def predict_training_features(run_dir: str, manifest, predictor, key: dict, progress=None) -> list[dict]:
    """Clinical features of the run's predictions of every training patient of known group, predicted
    now into ``RUN/predictions_train`` and kept under ``key`` for next time. A model bundle cannot
    predict them (its patients are not at hand): a ``DataError`` says so."""
    path = os.path.join(run_dir, TRAINING_FEATURES_NAME)
    if os.path.isfile(os.path.join(run_dir, METADATA_NAME)):
        raise DataError("a model bundle's training patients are not at hand, and its kept features were made with "
                        "other prediction settings", path)
    diagnosed = set(manifest.diagnosed_ids("train"))
    records = [r for r in split_records(manifest, "train") if r.patient_id in diagnosed]
    folder = os.path.join(run_dir, TRAINING_PREDICTIONS)
    os.makedirs(folder, exist_ok=True)
    dataset = get_dataset(manifest.dataset)
    rows = []
    if progress:
        progress(0)  # the bar says what is being predicted before the first patient takes its time
    for i, record in enumerate(records):
        volume, labels, diagnosis = predictor.predict(record)
        predictor.save(volume, labels, diagnosis, record, folder)
        rows.append({"patient": record.patient_id, "disease": manifest.patients[record.patient_id]["disease"],
                     **dataset.clinical_features(volume, record.info, labels)})
        if progress:
            progress(i + 1)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump({"settings": key, "rows": rows}, f, indent=1)
    return rows


def _predicted_features(clinical_rows: list[dict]) -> list[dict]:
    return [{k[5:]: v for k, v in c.items() if k.startswith("pred_")} for c in clinical_rows]


def truth_fit_diagnosis(manifest, clinical_rows: list[dict]) -> dict | None:
    """The forest fitted on the training patients' ground-truth features, on the predicted features of
    the scored patients of known group (``clinical_rows``: ``svgan evaluate``'s ``pred_*`` / ``true_*``
    rows): true classes, probabilities and each patient's group. None without a scored patient or a
    training patient of known group."""
    scored = [c for c in clinical_rows if c["disease"] is not None]
    model = truth_fitted_classifier(manifest) if scored else None
    if model is None:
        return None
    classes = manifest.disease_classes
    probs = model.predict_proba(_predicted_features(scored), len(classes))
    return {"truths": [c["disease"] for c in scored], "probabilities": probs.tolist(),
            "predictions": {c["patient"]: classes[int(np.argmax(p))] for c, p in zip(scored, probs)}}


def prediction_fit_diagnosis(training_rows: list[dict], manifest, clinical_rows: list[dict]) -> dict | None:
    """The forest fitted on the features of the run's predictions of its training patients
    (``predict_training_features``), on the scored patients of known group; None without either."""
    scored = [c for c in clinical_rows if c["disease"] is not None]
    if not scored or not training_rows:
        return None
    classes = manifest.disease_classes
    model = ClinicalClassifier().fit(training_rows, [r["disease"] for r in training_rows])
    probs = model.predict_proba(_predicted_features(scored), len(classes))
    return {"truths": [c["disease"] for c in scored], "probabilities": probs.tolist(),
            "predictions": {c["patient"]: classes[int(np.argmax(p))] for c, p in zip(scored, probs)}}
