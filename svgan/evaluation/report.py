"""``svgan evaluate``: challenge-grade scores of a run on held-out patients, on their native grid.

For every patient: Dice, IoU, sensitivity, specificity, precision, Hausdorff,
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
                              ACDC only: the diagnosis of a random forest on the clinical features
                              of the predicted segmentation, fitted on the run's training patients
                              (the challenge entrants' method; ``clinical.py``), beside the model's own
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

from .._tf import import_tf
from ..data.conventions import LABEL_CONVENTIONS, REGIONS
from ..data.io import atomic_path, check_same_grid, load_volume, write_csv
from ..data.readers import discover_patients, load_patient
from ..errors import DataError, SvganError
from . import metrics
from .clinical import ClinicalClassifier, clinical_features, height_weight, truth_fitted_classifier
from .diagnosis import diagnosis_metrics, prior_adjusted, roc_curve, training_class_prior
from .native import predict_volume, prediction_names

METRICS = ("dice", "iou", "sensitivity", "specificity", "precision", "hausdorff", "hd95", "asd")
AGREEMENT_INDICES = ("LV_EDV", "LV_ESV", "LV_EF", "RV_EDV", "RV_ESV", "RV_EF", "MYO_mass", "MYO_max_thickness")
CLINICAL_CACHE = "clinical_features_train.json"


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
    regions = list(REGIONS[dataset])
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    regions = list(REGIONS[dataset])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.boxplot([[r["dice"] for r in rows if r["region"] == name] for name in regions])
    ax.set_xticks(range(1, len(regions) + 1), regions)
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(os.path.join(fig_dir, "dice_boxplot.png"), dpi=80)
    plt.close(fig)
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
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, f"overlay_{pid}.png"), dpi=80)
        plt.close(fig)
    if roc:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for name, (fpr, tpr, auc) in roc.items():
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(os.path.join(fig_dir, "roc.png"), dpi=80)
        plt.close(fig)


def split_records(manifest, split: str) -> list:
    """The raw patient records of a prepared split (each patient's source folder, as prepared)."""
    return [discover_patients(manifest.patients[pid]["source"], manifest.dataset, manifest.patients[pid]["format"])[0]
            for pid in manifest.split_ids(split)]


def evaluate_run(run_dir: str, split: str = "test", data_dir: str | None = None, predictions_dir: str | None = None,
                 out_dir: str | None = None, hd_method: str = "pooled", progress=None,
                 overrides: list[str] | None = None, windows: str = "central") -> dict:
    """Score a run (or a folder of predictions) against ground truth; see the module docstring.

    ``overrides``: ``section.field=value`` changes to the run's config for this evaluation
    (``postprocess.largest_component=true``, say). ``windows``: how slices are inferred
    (``inference.WINDOW_MODES``)."""
    from ..training.fit import GENERATOR_NAME, load_run

    cfg, manifest = load_run(run_dir, overrides=overrides)
    dataset = manifest.dataset
    records = discover_patients(data_dir, dataset, cfg.data.format) if data_dir else split_records(manifest, split)
    predict_fn = None
    if predictions_dir is None:
        import_tf()
        import keras

        from .. import models  # noqa: F401  (registers the layers)
        from .inference import make_predict_fn

        path = os.path.join(run_dir, GENERATOR_NAME)
        if not os.path.isfile(path):
            raise SvganError("no generator.keras in the run folder (has it finished an epoch?)", run_dir)
        predict_fn = make_predict_fn(keras.models.load_model(path))

    rows, challenge_rows, clinical, skipped, overlays = [], [], [], {}, []
    truths, probabilities, diagnosis_rows = [], [], []
    prior = training_class_prior(manifest, cfg.pipeline.class_sampling)
    for i, record in enumerate(records):
        try:
            volume = load_patient(record, cfg.data.resolved_modalities(), require_labels=True)
            if predictions_dir:
                pred = _load_external_prediction(predictions_dir, volume, record.info, record.format)
                disease_probs = _external_disease(predictions_dir, volume.patient_id, len(manifest.disease_classes))
            else:
                pred, disease_probs = predict_volume(predict_fn, volume, cfg, manifest.data.get("nyul_standard"), mode=windows)
                disease_probs = prior_adjusted(disease_probs, prior, cfg.postprocess.disease_prior_correction)
        except DataError as e:
            skipped[record.patient_id] = str(e)
            if progress:
                progress(i + 1)
            continue
        spacing = volume.geometry[0].spacing
        for p, phase in enumerate(volume.phases):
            dice_of = {}
            for region, classes in REGIONS[dataset].items():
                scores = region_scores(pred[p], volume.label[p], classes, spacing, hd_method)
                rows.append({"patient": volume.patient_id, "phase": phase, "region": region, **scores})
                dice_of[region] = scores["dice"]
            if dataset == "acdc":
                ml = float(np.prod(spacing)) / 1000.0
                row = {"Name": prediction_names(volume, record.info)[p].replace("_pred", "")}
                for region, (k,) in REGIONS["acdc"].items():
                    pv, tv = np.count_nonzero(pred[p] == k) * ml, np.count_nonzero(volume.label[p] == k) * ml
                    row.update({f"Dice {region}": dice_of[region], f"Volume {region}": pv, f"Err {region}(ml)": pv - tv})
                challenge_rows.append(row)
        if dataset == "acdc":
            height, weight = height_weight(record.info)
            clinical.append({"patient": volume.patient_id, "disease": volume.disease,
                             **{f"pred_{k}": v for k, v in clinical_features(pred, spacing, height, weight).items()},
                             **{f"true_{k}": v for k, v in clinical_features(volume.label, spacing, height, weight).items()}})
        if disease_probs is not None:
            classes = manifest.disease_classes
            diagnosis_rows.append({"patient": volume.patient_id,
                                   "true": "" if volume.disease is None else classes[volume.disease],
                                   "predicted": classes[int(np.argmax(disease_probs))],
                                   **{f"p_{c}": float(v) for c, v in zip(classes, disease_probs)}})
        if volume.disease is not None and disease_probs is not None:
            truths.append(volume.disease)
            probabilities.append(np.asarray(disease_probs, float).tolist())
        if len(overlays) < 3:
            overlays.append((volume.patient_id, volume.image[0, ..., 0], volume.label[0], pred[0]))
        if progress:
            progress(i + 1)

    out_dir = out_dir or os.path.join(run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    summary = {"split": None if data_dir else split, "data": data_dir, "predictions": predictions_dir,
               "hausdorff_method": hd_method, "patients": len({r["patient"] for r in rows}), "skipped": skipped,
               "regions": {region: {m: _stats([r[m] for r in rows if r["region"] == region]) for m in METRICS}
                           for region in REGIONS[dataset]}}
    if data_dir:
        seen = sorted(r.patient_id for r in records if _trained_on(manifest, r))
        summary["seen_in_training"] = seen  # listed, not hidden: their scores are not held-out scores
    truth_fit = None
    if dataset == "acdc":
        summary["clinical_indices"] = {k: agreement([c[f"pred_{k}"] for c in clinical], [c[f"true_{k}"] for c in clinical])
                                       for k in AGREEMENT_INDICES}
        truth_fit = _clinical_truth_fit(manifest, clinical)
        if truth_fit is not None:
            summary["diagnosis_clinical_truth_fit"] = truth_fit["metrics"]
            for row in diagnosis_rows:
                row["predicted_clinical_features"] = truth_fit["predictions"].get(row["patient"], "")
        reference = _clinical_reference(run_dir, cfg, manifest, predict_fn, clinical)
        if isinstance(reference, str):
            summary["diagnosis_clinical_reference"] = {"not_computed": reference}
        elif reference is not None:
            summary["diagnosis_clinical_reference"] = reference
            _write_confusion(os.path.join(out_dir, "confusion_matrix_clinical_reference.csv"), manifest.disease_classes,
                             reference["confusion_matrix"])
    if truths:
        summary["diagnosis_head"] = diagnosis_metrics(truths, probabilities, manifest.disease_classes)
    if cfg.postprocess.diagnosis == "clinical_features" and truth_fit is not None:
        # The configured diagnosis is the headline (and the ROC curves); the head's own stays in diagnosis_head.
        truths, probabilities = truth_fit["truths"], truth_fit["probabilities"]
    roc = {}
    if truths:
        d = diagnosis_metrics(truths, probabilities, manifest.disease_classes)
        d["source"] = cfg.postprocess.diagnosis
        summary["diagnosis"] = d
        t, pr = np.asarray(truths), np.asarray(probabilities)
        for k, name in enumerate(manifest.disease_classes):
            if np.any(t == k) and np.any(t != k):
                fpr, tpr = roc_curve(pr[t == k, k], pr[t != k, k])
                roc[name] = (fpr, tpr, d[f"auc_{name}"])
        _write_confusion(os.path.join(out_dir, "confusion_matrix.csv"), manifest.disease_classes, d["confusion_matrix"])
    write_csv(os.path.join(out_dir, "metrics_per_patient.csv"), rows, ["patient", "phase", "region", *METRICS])
    if diagnosis_rows:
        write_csv(os.path.join(out_dir, "diagnosis_per_patient.csv"), diagnosis_rows)
    if dataset == "acdc":
        write_csv(os.path.join(out_dir, "acdc_challenge.csv"), challenge_rows,
                   ["Name"] + [f"{m} {r}" if m != "Err" else f"Err {r}(ml)" for r in ("LV", "RV", "MYO") for m in ("Dice", "Volume", "Err")])
        write_csv(os.path.join(out_dir, "clinical_indices.csv"), clinical)
    table = table_markdown(dataset, summary) if rows else "(no patient could be scored)"
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
        _figures(out_dir, dataset, rows, overlays, roc)
    summary["table"] = table
    summary["out_dir"] = out_dir
    return summary


def _write_confusion(path: str, classes, matrix) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted"] + list(classes))
        for name, counts in zip(classes, matrix):
            w.writerow([name] + list(counts))


def _trained_on(manifest, record) -> bool:
    """Whether a raw patient is one the run trained or validated on (same ID, same source folder)."""
    entry = manifest.patients.get(record.patient_id)
    return (entry is not None and entry.get("split") in ("train", "validation")
            and os.path.realpath(entry.get("source", "")) == os.path.realpath(record.folder))


def _training_clinical_features(run_dir: str, cfg, manifest, predict_fn) -> list[dict]:
    """Features of the run's own segmentation of every training patient, cached in the run folder.

    The cache is keyed by the generator file's size and time stamp, so that a run that
    trained on is measured again.
    """
    from ..training.fit import GENERATOR_NAME

    gen = os.stat(os.path.join(run_dir, GENERATOR_NAME))
    key = {"generator_size": gen.st_size, "generator_mtime_ns": gen.st_mtime_ns,
           "largest_component": cfg.postprocess.largest_component}
    path = os.path.join(run_dir, CLINICAL_CACHE)
    if os.path.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["rows"]
    rows = []
    for pid in manifest.split_ids("train"):
        entry = manifest.patients[pid]
        if entry.get("disease") is None:
            continue
        record = discover_patients(entry["source"], "acdc", entry["format"])[0]
        volume = load_patient(record, cfg.data.resolved_modalities(), require_labels=False)
        pred, _ = predict_volume(predict_fn, volume, cfg, manifest.data.get("nyul_standard"))
        height, weight = height_weight(record.info)
        rows.append({"patient": pid, "disease": entry["disease"],
                     **clinical_features(pred, volume.geometry[0].spacing, height, weight)})
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump({"key": key, "rows": rows}, f, indent=1)
    return rows


def _clinical_reference(run_dir: str, cfg, manifest, predict_fn, clinical: list[dict]):
    """Diagnosis metrics of the clinical-feature classifier on the scored patients; a reason string where it cannot run."""
    scored = [c for c in clinical if c["disease"] is not None]
    if not scored:
        return None
    if predict_fn is None and not os.path.isfile(os.path.join(run_dir, CLINICAL_CACHE)):
        return "needs the run's generator to segment its training patients (evaluate without --predictions once)"
    try:
        train_rows = _training_clinical_features(run_dir, cfg, manifest, predict_fn)
    except (DataError, OSError) as e:
        return f"training patients could not be read: {e}"
    if not train_rows:
        return "no training patient with a known group"
    classes = manifest.disease_classes
    model = ClinicalClassifier().fit(train_rows, [r["disease"] for r in train_rows])
    probs = model.predict_proba([{k[5:]: v for k, v in c.items() if k.startswith("pred_")} for c in scored], len(classes))
    out = diagnosis_metrics([c["disease"] for c in scored], probs, classes)
    out.update({"patients": len(scored), "training_patients": len(train_rows),
                "predictions": {c["patient"]: classes[int(np.argmax(p))] for c, p in zip(scored, probs)}})
    return out


def _clinical_truth_fit(manifest, clinical: list[dict]):
    """The forest fitted on the training patients' ground-truth features, applied to the predicted
    features of the scored patients of known group: metrics, true classes, probabilities and each
    patient's predicted group. None without a scored patient or a training patient of known group."""
    scored = [c for c in clinical if c["disease"] is not None]
    model = truth_fitted_classifier(manifest) if scored else None
    if model is None:
        return None
    classes = manifest.disease_classes
    probs = model.predict_proba([{k[5:]: v for k, v in c.items() if k.startswith("pred_")} for c in scored], len(classes))
    truths = [c["disease"] for c in scored]
    metrics = diagnosis_metrics(truths, probs, classes)
    metrics["patients"] = len(scored)
    return {"metrics": metrics, "truths": truths, "probabilities": probs.tolist(),
            "predictions": {c["patient"]: classes[int(np.argmax(p))] for c, p in zip(scored, probs)}}


def _external_disease(folder: str, pid: str, num_classes: int):
    path = os.path.join(folder, f"{pid}_pred.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        probs = json.load(f).get("probabilities")
    return None if probs is None else list(probs.values())[:num_classes]
