"""The classic ACDC diagnosis: a classifier on the clinical features of a segmentation.

The challenge's best diagnosis methods (Isensee et al., Wolterink et al., Khened et al.,
STACOM 2017) computed clinical features (``svgan.data.cardiac``: volumes, ejection
fractions, mass, wall thickness, indexed by body surface area) of their own predicted
segmentation and applied a small classifier fitted on the training patients. This module
does the same, beside the model's own disease head (``svgan evaluate`` reports both on
the same patients).
"""

from __future__ import annotations

import numpy as np

from ..data.cardiac import FEATURES
from ..data.datasets import ACDC

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
    for pid in manifest.split_ids("train"):
        entry = manifest.patients[pid]
        if entry.get("disease") is None:
            continue
        features = entry.get("clinical_features") or _features_from_source(entry)
        rows.append({"patient": pid, "disease": entry["disease"], **features})
    return rows


def truth_fitted_classifier(manifest) -> ClinicalClassifier | None:
    """The challenge entries' diagnosis: a ``ClinicalClassifier`` fitted on the training patients'
    ground-truth features, to be applied to the features of a predicted segmentation. None
    without a training patient of known group."""
    rows = truth_feature_rows(manifest)
    return ClinicalClassifier().fit(rows, [r["disease"] for r in rows]) if rows else None
