"""``svgan evaluate``: challenge-grade scores of a run on held-out patients, on their native grid.

Evaluation is prediction, then scoring a folder: the run predicts the patients into
``OUT/predictions`` exactly as ``svgan predict`` writes them (``prediction.py``), and
``score_folder`` scores that folder, or any tool's folder of predictions, against the
ground truth. For every patient: Dice, IoU, sensitivity, specificity, precision, Hausdorff,
HD95 and average surface distance per region (BraTS WT / TC / ET; ACDC LV / RV /
MYO at ED and at ES), with the spacing from the header zooms; for ACDC also the
clinical indices (LV and RV volumes and ejection fractions, myocardial mass at
1.05 g/ml) of prediction and ground truth. Then the diagnosis metrics, and the
outputs in ``OUT`` (default ``RUN/evaluation``):

    metrics_per_patient.csv   one row per patient, phase and region
    acdc_challenge.csv        ACDC only: the column order of the challenge's own script
    clinical_indices.csv      ACDC only: per-patient clinical features (volumes, EF, mass, wall
                              thickness, indexed by body surface area), prediction and truth
    confusion_matrix_clinical_reference.csv
                              ACDC with --forest-on-predictions: the diagnosis of a random forest on the
                              clinical features of the predicted segmentation, fitted on the run's
                              predictions of its training patients (made once, kept in
                              ``RUN/predicted_features_train.json``), beside the model's own head and
                              the forest fitted on the training patients' ground truth
                              (``postprocess.diagnosis``; the challenge entrants' method; ``clinical.py``)
    predictions/              the run's predictions that were scored
    summary.json              everything summarised, skipped patients with their reasons
    table.md                  a table shaped like Rezaei et al.'s Table 1 (mean, std, median)
    confusion_matrix.csv
    figures/                  overlays, Dice box plots, ROC curves

A patient that cannot be read or scored is skipped and reported, not fatal.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from ..data.conventions import LABEL_CONVENTIONS
from ..data.datasets import discover_patients, get_dataset, load_patient, split_records
from ..data.io import atomic_path, check_same_grid, load_volume, write_csv
from ..errors import DataError
from ..figures import pyplot, save_figure
from ..runs import load_run
from . import metrics
from .clinical import (kept_training_features, predict_training_features, prediction_fit_diagnosis, training_features_key,
                       truth_fit_diagnosis)
from .diagnosis import diagnosis_metrics, roc_curve
from .native import prediction_names
from .prediction import RunPredictor, predict_records

METRICS = ("dice", "iou", "sensitivity", "specificity", "precision", "hausdorff", "hd95", "asd")
AGREEMENT_INDICES = ("LV_EDV", "LV_ESV", "LV_EF", "RV_EDV", "RV_ESV", "RV_EF", "MYO_mass", "MYO_max_thickness")


def region_scores(pred: np.ndarray, truth: np.ndarray, classes, spacing, hd_method: str) -> dict:
    p, t = np.isin(pred, classes), np.isin(truth, classes)
    return {
        "dice": metrics.dice(p, t), "iou": metrics.iou(p, t), "sensitivity": metrics.sensitivity(p, t),
        "specificity": metrics.specificity(p, t), "precision": metrics.precision(p, t),
        "hausdorff": metrics.hausdorff(p, t, spacing, 100, hd_method),
        "hd95": metrics.hausdorff(p, t, spacing, 95, hd_method),
        "asd": metrics.average_surface_distance(p, t, spacing),
    }


def agreement(pred_values, true_values) -> dict:
    """Pearson correlation, bias (mean of prediction minus truth) and standard deviation of the difference."""
    p, t = np.asarray(pred_values, float), np.asarray(true_values, float)
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    d = p - t
    corr = float(np.corrcoef(p, t)[0, 1]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else float("nan")
    return {"correlation": corr, "bias": float(d.mean()) if len(d) else float("nan"),
            "std": float(d.std(ddof=1)) if len(d) > 1 else float("nan")}


def _stats(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "median": float(np.median(v)), "n": int(len(v))}


def table_markdown(dataset: str, summary: dict) -> str:
    """Rezaei et al., Table 1: Dice, Hausdorff (HD95) and sensitivity per region, plus classification accuracy."""
    regions = list(get_dataset(dataset).regions)
    head = "| statistic | Cls Acc | " + " | ".join(f"Dice {r}" for r in regions) + " | " + \
        " | ".join(f"HD95 {r}" for r in regions) + " | " + " | ".join(f"Sen {r}" for r in regions) + " |"
    lines = [head, "|---" * (2 + 3 * len(regions)) + "|"]
    acc = summary.get("diagnosis", {}).get("accuracy", float("nan"))
    for stat in ("mean", "std", "median"):
        cells = [f"{summary['regions'][r][m][stat]:.3f}" for m in ("dice", "hd95", "sensitivity") for r in regions]
        lines.append(f"| {stat} | {acc:.3f} | " + " | ".join(cells) + " |" if stat == "mean" else
                     f"| {stat} | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load_external_prediction(folder: str, volume, info, fmt: str) -> np.ndarray:
    labels = []
    for name, geom in zip(prediction_names(volume, info), volume.geometry):
        path = os.path.join(folder, name)
        data, g = load_volume(path)  # DataError names a missing or corrupt file
        check_same_grid(geom, g)
        labels.append(LABEL_CONVENTIONS[fmt].to_training(data, path))
    return np.stack(labels)


def _figures(out_dir: str, dataset: str, rows: list[dict], overlays: list, roc: dict) -> None:
    plt = pyplot()

    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    regions = list(get_dataset(dataset).regions)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.boxplot([[r["dice"] for r in rows if r["region"] == name] for name in regions])
    ax.set_xticks(range(1, len(regions) + 1), regions)
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    save_figure(fig, os.path.join(fig_dir, "dice_boxplot.png"))
    for pid, image, truth, pred in overlays:  # like Rezaei et al., Fig. 2: input, ground truth, prediction
        z = int(np.argmax((truth > 0).sum((0, 1)))) if truth.any() else truth.shape[2] // 2
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
        for ax, (title, overlay) in zip(axes, (("input", None), ("ground truth", truth), ("prediction", pred))):
            ax.imshow(image[:, :, z].T, cmap="gray", origin="lower")
            if overlay is not None:
                ax.imshow(np.ma.masked_equal(overlay[:, :, z].T, 0), cmap="jet", alpha=0.5, origin="lower",
                          vmin=0, vmax=max(1, overlay.max()))
            ax.set_title(title)
            ax.axis("off")
        fig.suptitle(f"{pid}, slice {z}")
        save_figure(fig, os.path.join(fig_dir, f"overlay_{pid}.png"))
    if roc:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for name, (fpr, tpr, auc) in roc.items():
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(loc="lower right")
        save_figure(fig, os.path.join(fig_dir, "roc.png"))


def evaluate_run(run_dir: str, split: str = "test", data_dir: str | None = None, predictions_dir: str | None = None,
                 out_dir: str | None = None, hd_method: str = "pooled", progress=None,
                 overrides: list[str] | None = None, windows: str = "central", forest_on_predictions: bool = False,
                 training_progress=None) -> dict:
    """Score a run against ground truth in four steps: predict the patients (into ``OUT/predictions``,
    as ``svgan predict`` writes them; or take any tool's ``predictions_dir``), score that folder,
    diagnose, write the outputs. See the module docstring.

    ``overrides``: ``section.field=value`` changes to the run's config for this evaluation
    (``postprocess.largest_component=true``, say). ``windows``: how slices are inferred
    (``inference.WINDOW_MODES``). ``forest_on_predictions``: also fit the clinical-feature forest on
    the run's predictions of its training patients, predicting them first where they are not kept
    (``training_progress`` follows that)."""
    cfg, manifest = load_run(run_dir, overrides=overrides)
    dataset = get_dataset(manifest.dataset)
    records = discover_patients(data_dir, dataset.name, cfg.data.format) if data_dir else split_records(manifest, split)
    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    summary = {"split": None if data_dir else split, "data": data_dir, "predictions": predictions_dir,
               "hausdorff_method": hd_method}

    predictor, skipped = None, {}
    if predictions_dir is None:  # 1. predict
        predictor = RunPredictor.from_run(run_dir, overrides, windows)
        predictions_dir = os.path.join(out_dir, "predictions")
        skipped = predict_records(predictor, records, predictions_dir, progress)
        progress = None  # the bar followed the predictions
    scored = score_folder(predictions_dir, [r for r in records if r.patient_id not in skipped], cfg, hd_method, progress)
    skipped.update(scored["skipped"])  # 2. score
    rows = scored["rows"]
    summary.update({"patients": len({r["patient"] for r in rows}), "skipped": skipped,
                    "regions": {region: {m: _stats([r[m] for r in rows if r["region"] == region]) for m in METRICS}
                                for region in dataset.regions}})
    if data_dir:
        seen = sorted(r.patient_id for r in records if _trained_on(manifest, r))
        summary["seen_in_training"] = seen  # listed, not hidden: their scores are not held-out scores
    diagnoses = diagnose(run_dir, cfg, manifest, scored, predictor, forest_on_predictions, training_progress)  # 3.
    summary.update(diagnoses["summary"])
    write_outputs(out_dir, dataset, cfg, summary, scored, diagnoses)  # 4. write
    return summary


def diagnose(run_dir: str, cfg, manifest, scored: dict, predictor, forest_on_predictions: bool, training_progress=None) -> dict:
    """The diagnoses of the scored patients: the model's head (``diagnosis_head``); for a cardiac dataset
    the clinical indices' agreement, the forest fitted on the training patients' ground truth
    (``diagnosis_clinical_truth_fit``) and the one fitted on their predictions
    (``diagnosis_clinical_reference``); and the configured one as the headline (``diagnosis``).
    Returns ``summary`` (those entries), ``rows`` (one per patient), ``roc`` and ``confusion`` files."""
    dataset = get_dataset(manifest.dataset)
    classes = manifest.disease_classes
    out = {"summary": {}, "rows": [], "roc": {}, "confusion": {}}
    head = [d for d in scored["diagnosis"] if d["head"] is not None]
    truths = [d["disease"] for d in head if d["disease"] is not None]
    probabilities = [d["head"] for d in head if d["disease"] is not None]
    out["rows"] = [{"patient": d["patient"], "true": "" if d["disease"] is None else classes[d["disease"]],
                    "predicted": classes[int(np.argmax(d["head"]))],
                    **{f"p_{c}": float(v) for c, v in zip(classes, d["head"])}} for d in head]
    if truths:
        out["summary"]["diagnosis_head"] = diagnosis_metrics(truths, probabilities, classes)
    truth_fit = None
    if dataset.cardiac:
        clinical = scored["clinical"]
        out["summary"]["clinical_indices"] = {
            k: agreement([c[f"pred_{k}"] for c in clinical], [c[f"true_{k}"] for c in clinical]) for k in AGREEMENT_INDICES}
        truth_fit = truth_fit_diagnosis(manifest, clinical)
        if truth_fit is not None:
            metrics = diagnosis_metrics(truth_fit["truths"], truth_fit["probabilities"], classes)
            out["summary"]["diagnosis_clinical_truth_fit"] = {**metrics, "patients": len(truth_fit["truths"])}
            for row in out["rows"]:
                row["predicted_clinical_features"] = truth_fit["predictions"].get(row["patient"], "")
        reference = _prediction_fit(run_dir, manifest, predictor, clinical, forest_on_predictions, training_progress)
        if isinstance(reference, str):
            out["summary"]["diagnosis_clinical_reference"] = {"not_computed": reference}
        elif reference is not None:
            out["summary"]["diagnosis_clinical_reference"] = reference
            out["confusion"]["confusion_matrix_clinical_reference.csv"] = reference["confusion_matrix"]
    if cfg.postprocess.diagnosis == "clinical_features" and truth_fit is not None:
        # The configured diagnosis is the headline (and the ROC curves); the head's own stays in diagnosis_head.
        truths, probabilities = truth_fit["truths"], truth_fit["probabilities"]
    if truths:
        d = diagnosis_metrics(truths, probabilities, classes)
        d["source"] = cfg.postprocess.diagnosis
        out["summary"]["diagnosis"] = d
        t, pr = np.asarray(truths), np.asarray(probabilities)
        for k, name in enumerate(classes):
            if np.any(t == k) and np.any(t != k):
                fpr, tpr = roc_curve(pr[t == k, k], pr[t != k, k])
                out["roc"][name] = (fpr, tpr, d[f"auc_{name}"])
        out["confusion"]["confusion_matrix.csv"] = d["confusion_matrix"]
    return out


def _prediction_fit(run_dir: str, manifest, predictor, clinical: list[dict], requested: bool, progress=None):
    """Diagnosis metrics of the forest fitted on the run's predictions of its training patients, on the
    scored patients; a reason string where it was not computed (not asked for, or not possible)."""
    scored = [c for c in clinical if c["disease"] is not None]
    if not scored:
        return None
    if predictor is None:
        return "needs the run's generator to segment its training patients (evaluate without --predictions)"
    try:
        key = training_features_key(run_dir, predictor.settings.label_key())
        train_rows = kept_training_features(run_dir, key)
        if train_rows is None:
            if not requested:
                return (f"needs the run's predictions of its {len(manifest.diagnosed_ids('train'))} training patients, "
                        "not kept for these settings: svgan evaluate --forest-on-predictions makes them once")
            train_rows = predict_training_features(run_dir, manifest, predictor, key, progress)
    except (DataError, OSError) as e:
        return f"training patients could not be read: {e}"
    fit = prediction_fit_diagnosis(train_rows, manifest, clinical)
    if fit is None:
        return "no training patient with a known group"
    out = diagnosis_metrics(fit["truths"], fit["probabilities"], manifest.disease_classes)
    out.update({"patients": len(scored), "training_patients": len(train_rows), "predictions": fit["predictions"]})
    return out


def write_outputs(out_dir: str, dataset, cfg, summary: dict, scored: dict, diagnoses: dict) -> None:
    """Every file of ``OUT`` but the predictions: the per-patient tables, the confusion matrices,
    ``table.md``, ``summary.json`` and the figures."""
    rows, clinical = scored["rows"], scored["clinical"]
    for name, matrix in diagnoses["confusion"].items():
        _write_confusion(os.path.join(out_dir, name), dataset.disease_classes, matrix)
    write_csv(os.path.join(out_dir, "metrics_per_patient.csv"), rows, ["patient", "phase", "region", *METRICS])
    if diagnoses["rows"]:
        write_csv(os.path.join(out_dir, "diagnosis_per_patient.csv"), diagnoses["rows"])
    if dataset.cardiac:
        write_csv(os.path.join(out_dir, "acdc_challenge.csv"), scored["challenge_rows"],
                  ["Name"] + [f"{m} {r}" if m != "Err" else f"Err {r}(ml)" for r in ("LV", "RV", "MYO") for m in ("Dice", "Volume", "Err")])
        write_csv(os.path.join(out_dir, "clinical_indices.csv"), clinical)
    table = table_markdown(dataset.name, summary) if rows else "(no patient could be scored)"
    if rows and "accuracy" in summary.get("diagnosis_clinical_reference", {}):
        model_acc = summary.get("diagnosis_head", {}).get("accuracy", float("nan"))
        ref = summary["diagnosis_clinical_reference"]
        truth_acc = summary.get("diagnosis_clinical_truth_fit", {}).get("accuracy", float("nan"))
        table += (f"\n\nDiagnosis on the same {ref['patients']} patients (Cls Acc above: {cfg.postprocess.diagnosis}): "
                  f"the model's own head {model_acc:.3f}; random forests on the clinical features of the predicted "
                  f"segmentation, fitted on the {ref['training_patients']} training patients' ground-truth features "
                  f"{truth_acc:.3f}, fitted on their predicted features {ref['accuracy']:.3f}.")
    with atomic_path(os.path.join(out_dir, "table.md")) as tmp, open(tmp, "w") as f:
        f.write(table + "\n")
    with atomic_path(os.path.join(out_dir, "summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    if rows:
        _figures(out_dir, dataset.name, rows, scored["overlays"], diagnoses["roc"])
    summary["table"] = table
    summary["out_dir"] = out_dir


def score_folder(predictions_dir: str, records, cfg, hd_method: str = "pooled", progress=None) -> dict:
    """Every record's prediction in ``predictions_dir`` (``*_pred.nii.gz`` on the input's grid, any tool's,
    and ``*_pred.json`` where there is one) against its ground truth: region scores per phase, the challenge's
    columns and clinical features for a cardiac dataset, the diagnosis probabilities of the JSON file."""
    out = {"rows": [], "challenge_rows": [], "clinical": [], "diagnosis": [], "overlays": [], "skipped": {}}
    for i, record in enumerate(records):
        dataset = get_dataset(record.dataset)
        try:
            volume = load_patient(record, cfg.data.resolved_modalities(), require_labels=True)
            pred = _load_external_prediction(predictions_dir, volume, record.info, record.format)
        except DataError as e:
            out["skipped"][record.patient_id] = str(e)
            if progress:
                progress(i + 1)
            continue
        spacing = volume.geometry[0].spacing
        for p, phase in enumerate(volume.phases):
            dice_of = {}
            for region, classes in dataset.regions.items():
                scores = region_scores(pred[p], volume.label[p], classes, spacing, hd_method)
                out["rows"].append({"patient": volume.patient_id, "phase": phase, "region": region, **scores})
                dice_of[region] = scores["dice"]
            if dataset.cardiac:
                ml = float(np.prod(spacing)) / 1000.0
                row = {"Name": prediction_names(volume, record.info)[p].replace("_pred", "")}
                for region, (k,) in dataset.regions.items():
                    pv, tv = np.count_nonzero(pred[p] == k) * ml, np.count_nonzero(volume.label[p] == k) * ml
                    row.update({f"Dice {region}": dice_of[region], f"Volume {region}": pv, f"Err {region}(ml)": pv - tv})
                out["challenge_rows"].append(row)
        if dataset.cardiac:
            out["clinical"].append({"patient": volume.patient_id, "disease": volume.disease,
                                    **{f"pred_{k}": v for k, v in dataset.clinical_features(volume, record.info, pred).items()},
                                    **{f"true_{k}": v for k, v in dataset.clinical_features(volume, record.info).items()}})
        out["diagnosis"].append({"patient": volume.patient_id, "disease": volume.disease,
                                 "head": _head_probabilities(predictions_dir, volume.patient_id, dataset.disease_classes)})
        if len(out["overlays"]) < 3:
            out["overlays"].append((volume.patient_id, volume.image[0, ..., 0], volume.label[0], pred[0]))
        if progress:
            progress(i + 1)
    return out


def _write_confusion(path: str, classes, matrix) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted"] + list(classes))
        for name, counts in zip(classes, matrix):
            w.writerow([name] + list(counts))


def _trained_on(manifest, record) -> bool:
    """Whether a raw patient is one the run trained or validated on: same ID and same source folder (a
    model bundle keeps only the folder's name: same ID and same folder name)."""
    entry = manifest.patients.get(record.patient_id)
    if entry is None or entry.get("split") not in ("train", "validation"):
        return False
    source = entry.get("source", "")
    if not os.path.isabs(source):
        return source == os.path.basename(os.path.normpath(record.folder))
    return os.path.realpath(source) == os.path.realpath(record.folder)


def _head_probabilities(folder: str, pid: str, classes) -> list | None:
    """The disease probabilities of ``<ID>_pred.json``: the model head's (``svgan predict``'s
    ``head_probabilities``) or another tool's ``probabilities``; None without the file."""
    path = os.path.join(folder, f"{pid}_pred.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        written = json.load(f)
    probs = written.get("head_probabilities", written.get("probabilities"))
    if probs is None:
        return None
    values = [probs[c] for c in classes] if isinstance(probs, dict) else list(probs)[:len(classes)]
    return np.asarray(values, float).tolist()
