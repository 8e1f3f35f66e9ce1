"""ACDC diagnosis methods side by side on one run's predicted segmentations.

    python experiments/diagnosis_methods.py RUN EVALUATION [EVALUATION ...]

Each EVALUATION is an ``svgan evaluate RUN --split S --out EVALUATION`` folder: its
``clinical_indices.csv`` holds the clinical features of each predicted segmentation and its
``predictions/<ID>_pred.json`` the model head's probabilities. Classifiers are fitted on the
ground-truth features of the run's training patients (the challenge entries' practice), with
every feature and without the wall-thickness ones (the features segmentation errors at the
basal and apical slices distort most), and compared with the model's head, with the mean of
the head's and the forest's probabilities, and with the forest applied to the true features
(what a perfect segmentation would give). Prints, per folder, each method's accuracy and the
patients it gets wrong, then how well each predicted feature agrees with the truth (Pearson r
and mean difference).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fitted(kind: str, features, train_rows: list[dict]):
    """The evaluation's ``ClinicalClassifier`` on ``features``, fitted on ``train_rows``: its forest,
    or a logistic regression on the same matrix."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from svgan.evaluation.clinical import ClinicalClassifier

    model = None if kind == "forest" else make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return ClinicalClassifier(features=features, model=model).fit(train_rows, [r["disease"] for r in train_rows])


def _scored_patients(folder: str, classes) -> list[dict]:
    """Patient, true group, predicted features and head probabilities of one evaluation folder."""
    from svgan.data.cardiac import FEATURES

    patients = []
    with open(os.path.join(folder, "clinical_indices.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["disease"] in ("", "None"):
                continue
            with open(os.path.join(folder, "predictions", f"{row['patient']}_pred.json")) as g:
                head = json.load(g)["head_probabilities"]
            patients.append({"patient": row["patient"], "disease": int(row["disease"]),
                             "pred": {k: float(row[f"pred_{k}"] or "nan") for k in FEATURES},
                             "true": {k: float(row[f"true_{k}"] or "nan") for k in FEATURES},
                             "head": np.array([head[c] for c in classes])})
    return patients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (its manifest names the training patients)")
    parser.add_argument("evaluations", nargs="+", help="svgan evaluate output folders of that run")
    args = parser.parse_args()

    from svgan.data.cardiac import FEATURES
    from svgan.evaluation.clinical import truth_feature_rows
    from svgan.runs import load_run

    _, manifest = load_run(args.run)
    classes = manifest.disease_classes
    train_rows = truth_feature_rows(manifest)
    no_thickness = [k for k in FEATURES if "thickness" not in k]
    methods = {f"{kind}, {name}": _fitted(kind, features, train_rows)
               for kind in ("forest", "logistic regression")
               for name, features in (("every feature", FEATURES), ("no wall thickness", no_thickness))}
    for folder in args.evaluations:
        patients = _scored_patients(folder, classes)
        truth = np.array([p["disease"] for p in patients])
        features = [p["pred"] for p in patients]
        head = np.stack([p["head"] for p in patients])
        probabilities = {"model head": head,
                         **{name: fit.predict_proba(features, len(classes)) for name, fit in methods.items()}}
        probabilities["mean of head and forest, every feature"] = (head + probabilities["forest, every feature"]) / 2
        # The ceiling: the same forest on the ground truth's features of the scored patients.
        probabilities["forest, every feature, on true features"] = methods["forest, every feature"].predict_proba(
            [p["true"] for p in patients], len(classes))
        print(f"{folder}: {len(patients)} patients")
        for name, p in probabilities.items():
            wrong = [f"{q['patient']} {classes[t]}->{classes[c]}" for q, t, c in zip(patients, truth, p.argmax(1)) if t != c]
            print(f"  {name:42s} accuracy {np.mean(p.argmax(1) == truth):.2f}  wrong: {', '.join(wrong) or '-'}")
        print("  predicted against true feature: Pearson r, mean difference")
        for k in FEATURES:
            t = np.array([p["true"][k] for p in patients])
            q = np.array([p["pred"][k] for p in patients])
            ok = np.isfinite(t) & np.isfinite(q)
            print(f"    {k:28s} r {np.corrcoef(t[ok], q[ok])[0, 1]:+.2f}  difference {np.mean(q[ok] - t[ok]):+.2f}")


if __name__ == "__main__":
    main()
