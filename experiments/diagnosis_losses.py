"""The disease losses compared on trained runs' volume heads: L1 (Eq. 4), cross-entropy, focal,
LDAM-DRW and LMF, each with natural and class-balanced patient weighting.

    python experiments/diagnosis_losses.py --run demo_data/runs/brats_volumes --run demo_data/runs/brats_volumes_seed1 \
        --data /tmp/heldout_brats
    python experiments/diagnosis_losses.py --run real_data/runs/acdc --split test

Why on trained runs: the volume head reads the segmentation with its gradient stopped, so the
disease loss trains the head's dense layers and nothing else. For each run, the segmentation is
held fixed; the structure-size features of the training windows and of the evaluated patients'
windows are computed once; then for each variant a fresh head (the same seeded initialisation;
a cosine classifier for LDAM and LMF) is fitted as training fits it, one head-fit pass of
``train.head_fit_iterations`` per epoch the run trained, with the variant's loss, its deferred
re-weighting schedule and its patient weights, and is scored on the evaluated patients with
the evaluation's rule (the foreground-weighted mean of window probabilities). What this leaves
out: in a full training run the class sampling also changes which windows the segmentation
trains on (``svgan ablate`` measures that, at the cost of a run per variant).

A check comes first: the run's own head, applied to the cached features, must give the
probabilities that ``svgan evaluate --windows average`` gives for every patient (the windows whose
features it records).
Prints one markdown table: mean and standard deviation across runs of balanced accuracy,
macro-F1, ROC AUC and the minority class's sensitivity, and the seconds each head fit took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOSSES = ["l1", "crossentropy", "focal", "ldam_drw", "lmf"]
SAMPLINGS = ["natural", "balanced"]


def _recording_predict_fn(G, record: list):
    """``predict_fn`` for ``RunPredictor`` that also keeps each window's features and foreground count."""
    import keras

    from svgan.evaluation.inference import make_predict_fn
    from svgan.training.head_fit import FEATURE_LAYER

    predict = make_predict_fn(G)
    features = keras.Model(G.inputs, G.get_layer(FEATURE_LAYER).output)

    def recording(images):
        seg, disease = predict(images)
        record.append((features(images, training=False).numpy(), (seg.numpy().argmax(-1) > 0).sum(axis=(1, 2, 3))))
        return seg, disease

    return recording


def evaluated_windows(G, cfg, manifest, records):
    """Per evaluated patient: (true class, window features [W, F], foreground counts [W], evaluate's probabilities)."""
    from svgan.evaluation.prediction import PredictionSettings, RunPredictor

    out = []
    calls = []
    # Whole-generator windows every half window (svgan evaluate --windows average), whose per-window
    # features the recording function can keep; the central default decodes slices once from parts.
    predictor = RunPredictor(_recording_predict_fn(G, calls), cfg, manifest, PredictionSettings.from_config(cfg, "average"))
    for record in records:
        calls.clear()
        volume, _, diagnosis = predictor.predict(record)
        if volume.disease is None:
            continue
        probs = np.array([diagnosis["head_probabilities"][c] for c in manifest.disease_classes])
        out.append((volume.disease, np.concatenate([c[0] for c in calls]), np.concatenate([c[1] for c in calls]).astype(float),
                    probs))
    return out


def patient_probabilities(window_probs: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """The evaluation's rule (``patient_disease``); overlapping windows are never padded, so
    every window has the same number of real slices."""
    from svgan.evaluation.inference import patient_disease

    return patient_disease(window_probs, fg, np.ones(len(fg)))


def head_for_variant(G, run_cfg_path: str, overrides: list[str], manifest, size, seed: int):
    """A generator built for the variant, with every weight of ``G`` except the disease head's."""
    import keras

    from svgan.config import load_config
    from svgan.losses.registry import uses_cosine_classifier
    from svgan.models.generator import build_generator

    cfg = load_config(run_cfg_path, overrides)
    keras.utils.set_random_seed(seed)
    phases = len(next(iter(manifest.patients.values()))["phases"])
    Gv = build_generator(cfg.model, size, len(manifest.data["modalities"]), len(manifest.class_names),
                         len(manifest.disease_classes), phases, cosine_classifier=uses_cosine_classifier(cfg.model, cfg.loss))
    for layer in Gv.layers:
        if layer.weights and not layer.name.startswith("cls_"):
            layer.set_weights(G.get_layer(layer.name).get_weights())
    return cfg, Gv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="a trained run folder with the volume head (repeat for seeds)")
    parser.add_argument("--data", help="raw held-out patients to score on (default: the run's --split)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--samplings", default=",".join(SAMPLINGS))
    args = parser.parse_args()

    from svgan._tf import import_tf

    import_tf()
    import keras

    import svgan.models  # noqa: F401  (registers the layers)
    from svgan.data.datasets import discover_patients
    from svgan.evaluation.diagnosis import diagnosis_metrics
    from svgan.data.datasets import split_records
    from svgan.training.reweighting import DeferredReweighting
    from svgan.losses.registry import build_classification_loss
    from svgan.training.ablation import variant_overrides
    from svgan.runs import CONFIG_NAME, GENERATOR_NAME, load_run
    from svgan.training.fit import class_weights
    from svgan.training.head_fit import DiseaseHeadFit, patient_weights

    variants = [(loss, sampling) for loss in args.losses.split(",") for sampling in args.samplings.split(",")]
    results = {v: [] for v in variants}
    for run in args.run:
        cfg, manifest = load_run(run)
        if cfg.model.classifier != "volumes":
            raise SystemExit(f"{run}: not a volume-head run (model.classifier is {cfg.model.classifier})")
        G = keras.models.load_model(os.path.join(run, GENERATOR_NAME))
        size = tuple(G.inputs[0].shape[2:4])
        epochs = int(cfg.train.epochs)
        records = discover_patients(args.data, manifest.dataset, cfg.data.format) if args.data else split_records(manifest, args.split)
        start = time.time()
        evaluated = evaluated_windows(G, cfg, manifest, records)
        # The check: the cached features through the run's own head give evaluate's probabilities.
        own = DiseaseHeadFit(G, manifest, cfg.pipeline.sequence_length, None, 0)
        gap = max(float(np.abs(patient_probabilities(keras.ops.softmax(own.head_logits(f)).numpy(), fg) - p).max())
                  for _, f, fg, p in evaluated)
        if gap > 1e-4:
            raise SystemExit(f"{run}: cached features do not reproduce the evaluation's probabilities (gap {gap:.2e})")
        x, y, w_natural = own.window_features()
        classes = manifest.disease_classes
        counts = manifest.disease_patient_counts("train")
        minority = int(np.argmin(counts))
        print(f"{run}: {len(evaluated)} evaluated patients ({np.bincount([e[0] for e in evaluated], minlength=len(classes)).tolist()} "
              f"per class), {len(x)} training windows, training patients per class {counts.tolist()}; "
              f"features in {time.time() - start:.0f} s; cached-feature check: largest gap {gap:.1e}", flush=True)
        for loss_name, sampling in variants:
            name = loss_name if sampling == "natural" else f"{loss_name}+{sampling}"
            overrides = variant_overrides(name, cfg, size)
            vcfg, Gv = head_for_variant(G, os.path.join(run, CONFIG_NAME), overrides, manifest, size, cfg.seed)
            loss = build_classification_loss(vcfg.loss.classification_loss, class_weights(manifest, vcfg)[1],
                                             vcfg.loss.classification_loss_args, class_counts=counts)
            fit = DiseaseHeadFit(Gv, manifest, vcfg.pipeline.sequence_length, loss, vcfg.train.head_fit_iterations)
            factor = {manifest.patients[pid]["disease"]: v for pid, v in patient_weights(manifest, sampling).items()}
            w = w_natural * np.array([factor[c] for c in y])
            drw = DeferredReweighting(loss, vcfg.loss.drw_start_epoch) if vcfg.loss.drw_start_epoch else None
            fit_start = time.time()
            for epoch in range(epochs):
                if drw:
                    drw.on_epoch_begin(epoch)
                fit.fit(x, y, w)
            seconds = time.time() - fit_start
            probs = [patient_probabilities(keras.ops.softmax(fit.head_logits(f)).numpy(), fg) for _, f, fg, _ in evaluated]
            m = diagnosis_metrics([e[0] for e in evaluated], probs, classes)
            aucs = [v for k, v in m.items() if k.startswith("auc_") and v == v]
            row = {"balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
                   "auc": float(np.mean(aucs)) if aucs else float("nan"),
                   "minority_sensitivity": m[f"sensitivity_{classes[minority]}"], "fit_seconds": seconds}
            results[(loss_name, sampling)].append(row)
            print(f"  {name:22s} " + " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)

    columns = ["balanced_accuracy", "macro_f1", "auc", "minority_sensitivity", "fit_seconds"]
    print(f"\nMean ± std over {len(args.run)} run(s); minority class: {classes[minority]}\n")
    print("| loss | patient weighting | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for (loss_name, sampling), rows in results.items():
        cells = []
        for c in columns:
            v = np.array([r[c] for r in rows], float)
            cells.append(f"{np.nanmean(v):.3f} ± {np.nanstd(v, ddof=1) if len(v) > 1 else 0.0:.3f}")
        print(f"| {loss_name} | {sampling} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
