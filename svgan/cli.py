"""The ``svgan`` command line: one entry point, one sub-command per job.

Each sub-command ends by saying where its output is. Errors meant for users
(``SvganError``) print as one line and exit with status 2; ``prepare`` prepares
what it can, lists the patients it could not, and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ._signals import sigterm_as_ctrl_c
from ._tf import import_tf
from .errors import SvganError
from .evaluation.inference import WINDOW_MODES

WINDOWS_HELP = ("central (default): each slice decoded once, from the overlapping window in which it sits most centrally, "
                "at one pass's cost; average: overlapping windows averaged (twice the arithmetic); single: each slice once "
                "in consecutive windows")


def _progress_bar(total: int, label: str):
    """A Keras progress bar callback ``update(done)`` whose label prints at its first update (so a bar
    of work that turns out not to be needed never shows); None when there is nothing to do."""
    if total <= 0:
        return None
    bar = []

    def update(done):
        if not bar:
            import_tf()
            from keras.utils import Progbar

            print(label, flush=True)
            bar.append(Progbar(total, unit_name="patient"))
        bar[0].update(done)

    return update


def _parse_groups(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            out[name.strip().upper()] = float(value)
        except ValueError:
            raise SvganError(f"--groups: {item!r} is not NAME=WEIGHT (e.g. NOR=2,MINF=1)") from None
    return out


def cmd_synth(args) -> int:
    start = time.time()
    if args.dataset == "lesions":
        from .data.synthetic.lesions import write_lesion_set

        try:
            counts = write_lesion_set(args.out_dir, args.patients, args.seed, args.size, args.malignant_fraction,
                                      _progress_bar(args.patients, f"Writing {args.patients} synthetic lesion images"))
        except ValueError as e:
            raise SvganError(str(e)) from None
        print(f"Wrote {sum(counts.values())} images ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
              f"in {time.time() - start:.1f} s to {os.path.abspath(args.out_dir)}")
        return 0
    if args.dataset == "brats":
        from .data.synthetic.brats import FULL_SHAPE, write_brats_cohort

        shape = tuple(args.shape or FULL_SHAPE)
        written = write_brats_cohort(args.out_dir, args.patients, args.seed, shape, args.hgg_fraction,
                                     _progress_bar(args.patients, f"Writing {args.patients} synthetic BraTS patients"))
    else:
        from .data.synthetic.acdc import FULL_SHAPE, write_acdc_cohort

        shape = tuple(args.shape or FULL_SHAPE)
        try:
            groups = _parse_groups(args.groups)
            written = write_acdc_cohort(args.out_dir, args.patients, args.seed, shape, frames=args.frames,
                                        proportions=groups, write_4d=not args.no_4d,
                                        progress=_progress_bar(args.patients, f"Writing {args.patients} synthetic ACDC patients"))
        except ValueError as e:
            raise SvganError(str(e)) from None
    counts: dict[str, int] = {}
    for _, cls in written:
        counts[cls] = counts.get(cls, 0) + 1
    print(f"Wrote {len(written)} patients ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}) "
          f"in {time.time() - start:.1f} s to {os.path.abspath(args.out_dir)}")
    return 0


def _config(args, dataset: str | None = None):
    from .config import load_config

    overrides = list(args.set or [])
    if dataset:
        overrides.insert(0, f"data.dataset={dataset}")
    return load_config(args.config, overrides)


def cmd_prepare(args) -> int:
    from .data.manifest import load_manifest, summary_table
    from .data.prepare import prepare_dataset
    from .data.datasets import discover_patients

    cfg = _config(args, args.dataset)
    n = len(discover_patients(args.raw_dir, cfg.data.dataset, cfg.data.format))
    start = time.time()
    report = prepare_dataset(cfg, args.raw_dir, args.out_dir, workers=args.workers, overwrite=args.overwrite,
                             progress=_progress_bar(n, f"Preparing {n} {cfg.data.dataset} patients with {args.workers} worker(s)"))
    print(f"Prepared {len(report.prepared)}, skipped {len(report.skipped)} already prepared, "
          f"failed {len(report.failed)} in {time.time() - start:.1f} s -> {os.path.abspath(args.out_dir)}")
    if args.summary:
        print(summary_table(load_manifest(args.out_dir)))
    if report.failed:
        print(f"{len(report.failed)} patient(s) could not be prepared:", file=sys.stderr)
        for pid, message in sorted(report.failed.items()):
            print(f"  {pid}: {message}", file=sys.stderr)
        return 1
    return 0


def cmd_summary(args) -> int:
    from .data.manifest import load_manifest, summary_table

    print(summary_table(load_manifest(args.prepared_dir)))
    return 0


def cmd_train(args) -> int:
    from .runs import CONFIG_NAME, describe_run
    from .training.fit import train

    if args.resume:
        from .config import load_config

        cfg = load_config(os.path.join(args.resume, CONFIG_NAME), list(args.set or []))
        prepared = args.data or cfg.data.prepared_dir
        summary = train(cfg, prepared, run_dir=args.resume, resume=True)
    else:
        if args.minutes is not None:
            args.set = list(args.set or []) + [f"train.budget_minutes={args.minutes}"]
        cfg = _config(args)
        prepared = args.data or cfg.data.prepared_dir
        if not prepared:
            raise SvganError("no prepared data: give --data PREPARED_DIR or set data.prepared_dir")
        summary = train(cfg, prepared, run_dir=args.run_dir)
    print(describe_run(summary))
    return 0


def cmd_ablate(args) -> int:
    from .training.ablation import run_ablation

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    result = run_ablation(args.config, args.data, variants, args.seeds, args.out, list(args.set or []))
    with open(os.path.join(args.out, "ablation.md")) as f:
        print(f.read())
    print(f"Ablation of {len(variants)} variant(s) x {args.seeds} seed(s) ({len(result['runs'])} runs) in {args.out}")
    return 0


def _images_config(args):
    from .config import load_images_config

    overrides = list(args.set or [])
    if getattr(args, "weights", None):
        overrides.append(f"classifier.weights={os.path.abspath(args.weights)}")
    cfg = load_images_config(args.config, overrides)
    if getattr(args, "data", None):
        cfg.data.root = args.data
    return cfg


def cmd_synthesize(args) -> int:
    from .synthesis.oversample import cyclegan_run_dir, synthesize
    from .synthesis.volumes import is_prepared_folder, synthesize_patients

    cfg = _images_config(args)
    source, target = getattr(args, "from"), args.to
    if is_prepared_folder(args.data):  # BraTS / ACDC: synthetic patients in a new prepared folder
        result = synthesize_patients(cfg.cyclegan, args.data, source, target, args.count, args.out_dir,
                                     args.run_dir or cyclegan_run_dir(cfg, source, target), cfg.seed)
        print(f"Wrote {len(result['patients'])} synthetic {target} patient(s) into the prepared folder "
              f"{os.path.abspath(result['out_dir'])} (training patients per class now {result['train_patients_per_class']}; "
              f"CycleGAN run {result['cyclegan_run']}); train on it with svgan train --data {result['out_dir']}")
        return 0
    result = synthesize(cfg, source, target, args.count, args.out_dir, run_dir=args.run_dir)
    print(f"Wrote {result['images']} synthetic {target} image(s) to {os.path.abspath(result['out_dir'])} "
          f"(CycleGAN run {result['cyclegan_run']}); add the folder to data.synthetic_dirs to train with them")
    return 0


def cmd_classify(args) -> int:
    from .data.images2d import load_splits, training_set
    from .evaluation.classification import evaluate_classifier
    from .training.classifier import train_classifier

    cfg = _images_config(args)
    splits = load_splits(cfg)
    run_dir = args.out or os.path.join(cfg.run_dir, f"classifier-{time.strftime('%Y%m%d-%H%M%S')}")
    train = training_set(cfg, splits["train"])
    print(f"Training VGG-GAP on {len(train.labels)} images {dict(zip(train.classes, train.counts()))}; "
          f"validation {len(splits['validation'].labels)}, test {len(splits['test'].labels)}", flush=True)
    model = train_classifier(cfg, train, splits["validation"], run_dir)
    m = evaluate_classifier(model, splits["test"], os.path.join(run_dir, "evaluation"))
    print(f"Test: AUC {m['auc']:.3f}, sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f}, "
          f"false negatives {m['false_negatives']}, macro-F1 {m['macro_f1']:.3f} ({m['positive_class']} positive); "
          f"run folder {run_dir}")
    return 0


def cmd_oversampling(args) -> int:
    from .training.oversampling import compare_oversampling

    cfg = _images_config(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    result = compare_oversampling(cfg, args.out, args.seeds, variants)
    print(result["table"])
    print(f"{len(result['runs'])} runs in {args.out} (oversampling.md, oversampling.csv, roc.png)")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation.report import evaluate_run
    from .pretrained import resolve
    from .runs import load_run

    run_dir, bundle = resolve(args.run_dir)
    if bundle is not None and not args.data:
        raise SvganError(f"{args.run_dir} is a model bundle: its patients are not at hand; give --data FOLDER of patients "
                         "with ground truth")
    out = args.out or (f"evaluation-{bundle['name']}" if bundle is not None else None)  # never inside the package
    _, manifest = load_run(run_dir)
    n = len(manifest.split_ids(args.split)) if not args.data else 0
    n_train = len(manifest.diagnosed_ids("train"))
    training_bar = _progress_bar(n_train, f"Predicting the {n_train} training patients of {run_dir} once, for the forest "
                                          "fitted on predictions (kept in predicted_features_train.json)")
    summary = evaluate_run(run_dir, args.split, args.data, args.predictions, out, args.hausdorff,
                           progress=_progress_bar(n, f"Evaluating {n} patients of the {args.split} split"),
                           overrides=args.set, windows=args.windows, forest_on_predictions=args.forest_on_predictions,
                           training_progress=training_bar)
    print(f"{manifest.dataset}: {summary['patients']} patients scored on their native grid")
    print(summary["table"])
    d = summary.get("diagnosis")
    if d:
        print(f"Diagnosis ({d['source']}): accuracy {d['accuracy']:.3f}, balanced accuracy {d['balanced_accuracy']:.3f}, "
              f"macro-F1 {d['macro_f1']:.3f}; " + ", ".join(
                  f"{c} sensitivity {d[f'sensitivity_{c}']:.2f} AUC {d[f'auc_{c}']:.2f}" for c in manifest.disease_classes))
    ref = summary.get("diagnosis_clinical_reference", {})
    for key, what in (("diagnosis_head", "the model's disease head"),
                      ("diagnosis_clinical_truth_fit", "random forest on clinical features, fitted on the training patients' ground truth"),
                      ("diagnosis_clinical_reference", "random forest on clinical features, fitted on the training patients' predictions")):
        other = summary.get(key, {})
        if "accuracy" in other:
            print(f"  {what}: accuracy {other['accuracy']:.3f}, balanced accuracy {other['balanced_accuracy']:.3f}, "
                  f"macro-F1 {other['macro_f1']:.3f}")
    if "not_computed" in ref:
        print(f"Clinical-feature reference not computed: {ref['not_computed']}")
    if summary.get("seen_in_training"):
        print(f"warning: the run trained or validated on {len(summary['seen_in_training'])} of these patients "
              f"({', '.join(summary['seen_in_training'][:5])}...): their scores are not held-out scores", file=sys.stderr)
    for pid, message in sorted(summary["skipped"].items()):
        print(f"skipped {pid}: {message}", file=sys.stderr)
    print(f"Results in {os.path.abspath(summary['out_dir'])}")
    return 1 if summary["skipped"] else 0


def cmd_predict(args) -> int:
    from .data.datasets import discover_patients
    from .evaluation.prediction import RunPredictor, predict_records

    from .pretrained import resolve

    predictor = RunPredictor.from_run(resolve(args.run_dir)[0], overrides=args.set, windows=args.windows)
    records = discover_patients(args.input, predictor.manifest.dataset, predictor.cfg.data.format)
    failed = predict_records(predictor, records, args.out_dir, _progress_bar(len(records), f"Predicting {len(records)} patient(s)"))
    print(f"Predicted {len(records) - len(failed)} of {len(records)} patient(s) into {os.path.abspath(args.out_dir)}")
    for pid, message in sorted(failed.items()):
        print(f"  {pid}: {message}", file=sys.stderr)
    return 1 if failed else 0


def cmd_models(args) -> int:
    from .pretrained import describe, read_metadata, shipped_models

    models = shipped_models()
    for name, folder in models.items():
        print(describe(name, read_metadata(folder)))
    if not models:
        print("No model ships with this installation.")
    return 0


def cmd_export(args) -> int:
    from .pretrained import SHIPPED_ROOT, export_bundle

    details = None
    if args.details:
        import json

        try:
            with open(args.details) as f:
                details = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise SvganError(f"cannot read the model's details: {e}", args.details) from None
        if not isinstance(details, dict):
            raise SvganError("the model's details must be a JSON object (task, inputs, training, scores, ...)", args.details)
    metadata = export_bundle(args.run_dir, args.out_dir, args.name, args.version, details)
    size = sum(f["bytes"] for f in metadata["files"].values()) / 1e6
    shipped = os.path.dirname(os.path.abspath(args.out_dir)) == SHIPPED_ROOT and \
        os.path.basename(os.path.normpath(args.out_dir)) == args.name
    print(f"Exported {args.run_dir} as model {args.name} {args.version} ({size:.1f} MB) into {os.path.abspath(args.out_dir)}; "
          f"use it with: svgan predict {args.name if shipped else args.out_dir} INPUT OUT")
    return 0


def _prediction_options(p) -> None:
    """What ``svgan evaluate`` and ``svgan predict`` share: config changes and the window mode."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change the run's config for this prediction, e.g. postprocess.largest_component=true")
    p.add_argument("--windows", choices=WINDOW_MODES, default="central", help=WINDOWS_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svgan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic dataset in the real challenge's folder layout")
    p.add_argument("dataset", choices=["brats", "acdc", "lesions"])
    p.add_argument("out_dir")
    p.add_argument("--patients", type=int, default=24, help="patients (lesions: images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="volume shape (BraTS default 240 240 155 at 1 mm; ACDC 224 224 10)")
    p.add_argument("--hgg-fraction", type=float, default=0.75, help="BraTS: share of HGG patients (BraTS 2017: 210/285)")
    p.add_argument("--frames", type=int, default=30, help="ACDC: frames of the cardiac cycle (NbFrame)")
    p.add_argument("--groups", help="ACDC: group proportions, e.g. NOR=2,MINF=1,DCM=1,HCM=1,RV=1 (default balanced)")
    p.add_argument("--no-4d", action="store_true", help="ACDC: do not write the 4D cine file")
    p.add_argument("--size", type=int, default=64, help="lesions: image side in pixels")
    p.add_argument("--malignant-fraction", type=float, default=0.2, help="lesions: share of malignant images")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("synthesize", help="train a CycleGAN between two classes and write synthetic minority samples")
    p.add_argument("--config", help="YAML configuration with a cyclegan section (configs/demo_lesions.yaml)")
    p.add_argument("--data", help="image folder root/<class>/*.png|jpg (default: data.root), or a prepared BraTS / "
                                  "ACDC folder (synthetic patients, written as a new prepared folder)")
    p.add_argument("--from", required=True, metavar="CLASS", help="class to translate from (the majority)")
    p.add_argument("--to", required=True, metavar="CLASS", help="class to synthesise (the minority)")
    p.add_argument("--count", type=int, required=True, help="synthetic images to write")
    p.add_argument("--run-dir", help="CycleGAN run folder (default: run_dir/cyclegan-FROM-to-TO; resumed if present)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. cyclegan.epochs=50")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("classify", help="2D images: train VGG-GAP (focal loss) and score it on the test split")
    p.add_argument("--config", help="YAML configuration of the 2D path")
    p.add_argument("--data", help="image folder root/<class>/*.png|jpg (default: data.root)")
    p.add_argument("--out", help="run folder (default: run_dir/classifier-<time>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. data.synthetic_dirs=[synthetic/]")
    p.add_argument("--weights", metavar="PATH", help="a local VGG-16 notop weights file (ImageNet); nothing is downloaded")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("oversampling", help="2D images: Zunair and Ben Hamza's Table 1 (baseline, augment 5x / 10x, CycleGAN)")
    p.add_argument("--config", help="YAML configuration of the 2D path")
    p.add_argument("--data", help="image folder root/<class>/*.png|jpg (default: data.root)")
    p.add_argument("--out", required=True, help="folder for the runs, oversampling.md / .csv and roc.png")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--variants", default="baseline,augment5,augment10,cyclegan")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--weights", metavar="PATH", help="a local VGG-16 notop weights file (ImageNet); nothing is downloaded")
    p.set_defaults(func=cmd_oversampling)

    p = sub.add_parser("prepare", help="preprocess a raw BraTS / ACDC folder into training data")
    p.add_argument("dataset", choices=["brats", "acdc"])
    p.add_argument("raw_dir")
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML configuration (configs/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. prepare.nyul=false")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--overwrite", action="store_true", help="prepare every patient again with the current settings")
    p.add_argument("--summary", action="store_true", help="print the dataset summary afterwards")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train the multi-task GAN on a prepared folder")
    p.add_argument("--config", help="YAML configuration (configs/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. train.epochs=10")
    p.add_argument("--data", help="prepared folder (default: data.prepared_dir of the config)")
    p.add_argument("--run-dir", help="run folder (default: train.run_dir/<dataset>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume a run from its latest checkpoint")
    p.add_argument("--minutes", type=float, help="train within N minutes of this machine, epoch ends included: steps are "
                                                 "timed first and the schedule fitted to the budget (train.budget_minutes)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ablate", help="train variants of a configuration on the same split and seeds and compare them")
    p.add_argument("--config", help="base YAML configuration")
    p.add_argument("--data", required=True, help="prepared folder; every run is scored on its test split")
    p.add_argument("--variants", default="weighted,unweighted,unified,attention,progressive",
                   help="comma-separated names from svgan.training.ablation.VARIANTS")
    p.add_argument("--seeds", type=int, default=3, help="runs per variant, seeds config.seed, +1, ... (default 3)")
    p.add_argument("--out", required=True, help="folder for the runs, ablation.csv, ablation.md and ablation.png")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field of the base configuration")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("evaluate", help="Dice / Hausdorff / sensitivity and diagnosis metrics of a run on held-out patients")
    p.add_argument("run_dir", metavar="RUN_OR_MODEL", help="a run folder, or a shipped model's name (svgan models)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"],
                   help="split of the run's data to score (default: test)")
    p.add_argument("--data", help="a raw BraTS / ACDC folder with ground truth to score instead of the split")
    p.add_argument("--predictions", help="score the *_pred.nii.gz files of this folder (any tool's) instead of the run's model")
    p.add_argument("--out", help="output folder (default: RUN/evaluation; for a shipped model ./evaluation-NAME)")
    p.add_argument("--forest-on-predictions", action="store_true",
                   help="ACDC: also fit the clinical-feature forest on the run's predictions of its training patients "
                        "(predicted once, with a progress bar, and kept in RUN/predicted_features_train.json)")
    p.add_argument("--hausdorff", default="pooled", choices=["pooled", "max_directed"],
                   help="HD95 as one percentile of both directions pooled (medpy, default) or the larger directed one")
    _prediction_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="write NIfTI predictions in the input's own geometry")
    p.add_argument("run_dir", metavar="RUN_OR_MODEL", help="a run folder, or a shipped model's name (svgan models)")
    p.add_argument("input", help="a raw patient folder, or a folder of them")
    p.add_argument("out_dir")
    _prediction_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the trained models that ship with svgan (use them by name)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("export", help="write a run's model as a self-contained bundle (what the shipped models are)")
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="a new folder")
    p.add_argument("--name", required=True)
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--details", metavar="JSON", help="a JSON object merged into metadata.json: task, inputs, training, "
                                                      "scores, intended use, licence, citation")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("summary", help="patients per class and label voxel fractions of a prepared folder")
    p.add_argument("prepared_dir")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_ctrl_c():
            return args.func(args)
    except SvganError as e:
        print(f"svgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"svgan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
