"""``svgan oversampling``: Zunair and Ben Hamza's Table 1 on a user's 2D image set, one command.

Variants, each trained per seed on the same split and scored on its test split:
``baseline`` (VGG-GAP with focal loss on the original training images), ``augment5`` and
``augment10`` (the training split grown 5 and 10 times by classic offline augmentation),
``cyclegan`` (the training split plus CycleGAN translations of majority-class training images
into the minority class until the two are balanced; one CycleGAN, trained once, serves every
seed). Writes ``OUT/<variant>/seed<k>/`` runs, ``oversampling.csv`` (one row per run),
``oversampling.md`` (mean and std across seeds of AUC, sensitivity, specificity, false
negatives and macro-F1) and ``roc.png`` (every run's ROC curve). Finished runs are not trained
again, so an interrupted comparison picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ..config import ImagesConfig
from ..data.images2d import load_splits, training_set
from ..data.io import atomic_path, write_csv
from ..errors import ConfigError
from ..evaluation.classification import evaluate_classifier
from ..figures import pyplot, save_figure
from ..synthesis.oversample import synthesize
from .classifier import train_classifier

VARIANTS = ("baseline", "augment5", "augment10", "cyclegan")
COLUMNS = ("auc", "sensitivity", "specificity", "false_negatives", "macro_f1")


def _variant_config(cfg: ImagesConfig, variant: str, seed: int, synthetic_dir: str | None) -> ImagesConfig:
    data = dataclasses.replace(cfg.data, augment_factor=1, synthetic_dirs=[])
    if variant.startswith("augment"):
        data = dataclasses.replace(data, augment_factor=int(variant[len("augment"):]))
    elif variant == "cyclegan":
        data = dataclasses.replace(data, synthetic_dirs=[synthetic_dir], oversample_to_ratio=1.0)
    return dataclasses.replace(cfg, data=data, seed=seed)


def compare_oversampling(cfg: ImagesConfig, out_dir: str, seeds: int, variants=VARIANTS, data_root: str | None = None,
                         verbose: bool = True) -> dict:
    unknown = [v for v in variants if v not in VARIANTS and not (v.startswith("augment") and v[7:].isdigit())]
    if unknown or seeds < 1:
        raise ConfigError(f"svgan oversampling: unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)}, augmentK)"
                          if unknown else "svgan oversampling needs at least one seed")
    splits = load_splits(cfg, data_root)
    train = splits["train"]
    counts = np.asarray(train.counts())
    synthetic_dir = os.path.join(out_dir, "synthetic")
    if "cyclegan" in variants and not os.path.isdir(synthetic_dir):
        major, minor = int(np.argmax(counts)), int(np.argmin(counts))
        if verbose:
            print(f"CycleGAN: {train.classes[major]} -> {train.classes[minor]}, {counts[major] - counts[minor]} images", flush=True)
        synthesize(cfg, train.classes[major], train.classes[minor], int(counts[major] - counts[minor]), synthetic_dir,
                   data_root, run_dir=os.path.join(out_dir, "cyclegan"), verbose=verbose, train=train)
    runs = []
    for variant in variants:
        for k in range(seeds):
            run_dir = os.path.join(out_dir, variant, f"seed{k}")
            summary = os.path.join(run_dir, "evaluation", "summary.json")
            if not os.path.isfile(summary):
                vcfg = _variant_config(cfg, variant, cfg.seed + k, synthetic_dir)
                train_set = training_set(vcfg, train)
                if verbose:
                    print(f"{variant}, seed {vcfg.seed}: {len(train_set.labels)} training images {train_set.counts()}", flush=True)
                model = train_classifier(vcfg, train_set, splits["validation"], run_dir, verbose=verbose)
                evaluate_classifier(model, splits["test"], os.path.join(run_dir, "evaluation"))
            with open(summary) as f:
                m = json.load(f)
            runs.append({"variant": variant, "seed": cfg.seed + k, **{c: m[c] for c in COLUMNS}, "roc": m["roc"]})
    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, "oversampling.csv"), runs, ["variant", "seed", *COLUMNS])
    table = _markdown(runs, variants, seeds, splits["test"])
    with atomic_path(os.path.join(out_dir, "oversampling.md")) as tmp, open(tmp, "w") as f:
        f.write(table + "\n")
    _roc_plot(runs, os.path.join(out_dir, "roc.png"))
    return {"runs": runs, "table": table}


def _markdown(runs, variants, seeds: int, test) -> str:
    positive = test.classes[-1]
    lines = [f"Mean ± std over {seeds} seed(s) on the test split ({len(test.labels)} images, "
             f"{int(np.sum(test.labels == len(test.classes) - 1))} {positive}); sensitivity, specificity and false "
             f"negatives for {positive} at the argmax (0.5 for two classes).", "",
             "| variant | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for v in variants:
        rows = [r for r in runs if r["variant"] == v]
        cells = []
        for c in COLUMNS:
            x = np.asarray([r[c] for r in rows], float)
            cells.append(f"{np.nanmean(x):.3f} ± {np.nanstd(x, ddof=1) if len(x) > 1 else 0.0:.3f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _roc_plot(runs, path: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 5))
    colours = {}
    for r in runs:
        label = None
        if r["variant"] not in colours:  # one legend entry per variant, with its mean AUC
            colours[r["variant"]] = f"C{len(colours)}"
            label = f"{r['variant']} (AUC {np.nanmean([x['auc'] for x in runs if x['variant'] == r['variant']]):.3f})"
        ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], color=colours[r["variant"]], alpha=0.8, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)
