"""Quality and prediction time of a shipped (or exported) model on patients it kept out of training.

    python benchmarks/shipped_model.py acdc --data ../shared/data/acdc-training
    python benchmarks/shipped_model.py PATH/TO/BUNDLE --data FOLDER --patients patient001,patient002

By default the patients are the bundle's own kept ones (``metadata.json``: ``training.patients.test``),
linked from ``--data`` into a temporary folder (nothing is copied). Each patient is predicted once,
as ``svgan evaluate`` predicts it (``RunPredictor.write``: both phases, the configured test-time
views), timed on its own, and that folder is scored as ``svgan evaluate`` scores it. Prints Dice and
HD95 per structure and phase, the diagnosis accuracy and confusion matrix, the clinical indices'
correlations, and the median and longest prediction time per patient.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from svgan.data.datasets import discover_patients  # noqa: E402
from svgan.evaluation.prediction import RunPredictor  # noqa: E402
from svgan.evaluation.report import evaluate_run  # noqa: E402
from svgan.pretrained import resolve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a shipped model's name or a bundle folder")
    parser.add_argument("--data", required=True, help="a raw folder holding the patients")
    parser.add_argument("--patients", help="comma-separated patient IDs (default: the bundle's kept test patients)")
    args = parser.parse_args()

    folder, metadata = resolve(args.model)
    if metadata is None:
        sys.exit(f"{args.model} is a run folder, not a model bundle: svgan evaluate scores it")
    ids = args.patients.split(",") if args.patients else metadata["training"]["patients"]["test"]
    if not ids:
        sys.exit(f"{args.model} kept no test patients: name some with --patients")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "patients")
        os.makedirs(raw)
        for pid in ids:
            os.symlink(os.path.abspath(os.path.join(args.data, pid)), os.path.join(raw, pid))
        predictor = RunPredictor.from_run(folder)
        predictions, seconds = os.path.join(tmp, "predictions"), []
        os.makedirs(predictions)
        for record in discover_patients(raw, predictor.manifest.dataset, predictor.cfg.data.format):
            begun = time.perf_counter()
            predictor.write(record, predictions)
            seconds.append(time.perf_counter() - begun)
        summary = evaluate_run(folder, data_dir=raw, predictions_dir=predictions, out_dir=os.path.join(tmp, "evaluation"))
        with open(os.path.join(tmp, "evaluation", "metrics_per_patient.csv")) as f:
            rows = list(csv.DictReader(f))

    print(f"{metadata['name']} {metadata['version']} on {summary['patients']} patients "
          f"({len(summary.get('seen_in_training', []))} of them seen in training)")
    for region in summary["regions"]:
        for phase in sorted({r["phase"] for r in rows}):
            values = [r for r in rows if r["region"] == region and r["phase"] == phase]
            dice = statistics.mean(float(r["dice"]) for r in values)
            hd95 = statistics.mean(float(r["hd95"]) for r in values)
            print(f"  {region} {phase}: Dice {dice:.3f}, HD95 {hd95:.2f} mm")
        s = summary["regions"][region]
        print(f"  {region} both phases: Dice {s['dice']['mean']:.3f} (median {s['dice']['median']:.3f}), "
              f"HD95 {s['hd95']['mean']:.2f} mm")
    d = summary.get("diagnosis")
    if d:
        print(f"  diagnosis ({d['source']}): accuracy {d['accuracy']:.3f}; confusion matrix (rows true, columns "
              f"predicted) {d['confusion_matrix']}")
    for name, agreement in summary.get("clinical_indices", {}).items():
        print(f"  {name}: r {agreement['correlation']:.3f}, bias {agreement['bias']:+.1f}")
    print(f"  prediction per patient (both phases, {len(predictor.settings.views) + 1} views): median "
          f"{statistics.median(seconds):.1f} s, longest {max(seconds):.1f} s")


if __name__ == "__main__":
    main()
