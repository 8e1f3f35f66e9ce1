"""``svgan ablate``: train variants of one configuration on the same split and seeds, score them
alike, and compare them in one table (Cui et al., Tables 2-4, Sadi et al., Table 1 on a user's data).

Each variant is a list of config overrides applied on top of the base configuration; every
(variant, seed) run lives in ``OUT/<variant>/seed<k>`` and is scored on the prepared data's
test split by the evaluation module (``RUN/evaluation``). A finished run (one with an
evaluation summary) is not trained again, so an interrupted ablation picks up where it stopped.
The table gives, per variant, the mean and standard deviation across seeds of each run's mean
Dice, HD95 and sensitivity per region, the diagnosis macro-F1, balanced accuracy and ROC AUC,
and the training seconds per step relative to the first variant.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..config import Config, load_config
from ..data.conventions import REGIONS
from ..data.io import atomic_path, write_csv
from ..data.manifest import load_manifest
from ..errors import ConfigError
from ..evaluation.report import evaluate_run
from ..figures import pyplot, save_figure
from .fit import model_size, train


def _progressive(cfg: Config, full_size) -> list[str]:
    """Half and three quarters of the full size (multiples of 2^depth, at least 16), a quarter of
    the epochs each; the smallest stages go first where the run is too short to end at full size."""
    unit = 2 ** cfg.model.depth
    stages = []
    for fraction in (0.5, 0.75):
        size = [max(16, int(s * fraction) // unit * unit) for s in full_size]
        if size != list(full_size) and size not in stages:
            stages.append(size)
    per_stage = max(1, cfg.train.epochs // 4)
    while stages and len(stages) * per_stage >= cfg.train.epochs:
        stages.pop(0)
    return [f"train.progressive_sizes={stages}", f"train.progressive_epochs={[per_stage] * len(stages)}"]


def _ldam_drw(cfg: Config, full_size) -> list[str]:
    """LDAM with deferred re-weighting from 80 % of the epochs on (Cao et al.: epoch 160 of 200)."""
    return ["loss.classification_loss=ldam", f"loss.drw_start_epoch={max(1, round(0.8 * cfg.train.epochs))}"]


# Variant name -> overrides of the base configuration (a callable gets the config and full size).
# Names joined by "+" combine variants, e.g. "lmf+balanced".
VARIANTS = {
    "weighted": [],  # the base configuration (Rezaei et al.: Eq. 2's selective weights on)
    "unweighted": ["loss.selective_weights=false"],
    "unified": ["loss.segmentation_loss=unified_focal"],
    "focal_tversky": ["loss.segmentation_loss=focal_tversky"],
    "attention": ["model.attention_gates=true"],
    "progressive": _progressive,
    # The disease head and its loss (the loss variants act on whichever head the config has).
    "slices": ["model.classifier=slices"],
    "volumes": ["model.classifier=volumes"],
    "l1": ["loss.classification_loss=l1"],
    "crossentropy": ["loss.classification_loss=crossentropy"],
    "focal": ["loss.classification_loss=focal"],
    "ldam_drw": _ldam_drw,
    "lmf": ["loss.classification_loss=lmf"],
    "balanced": ["pipeline.class_sampling=balanced"],
    "sqrt": ["pipeline.class_sampling=sqrt"],
}


def variant_overrides(name: str, cfg: Config, full_size) -> list[str]:
    overrides = []
    for part in name.split("+"):
        if part not in VARIANTS:
            raise ConfigError(f"unknown ablation variant {part!r} (known: {', '.join(VARIANTS)}; join them with +)")
        spec = VARIANTS[part]
        overrides += list(spec(cfg, full_size)) if callable(spec) else list(spec)
    return overrides


def run_ablation(config_path: str | None, prepared_dir: str, variants: list[str], seeds: int, out_dir: str,
                 overrides: list[str] | None = None, verbose: bool = True) -> dict:
    """Train and score every (variant, seed); write ``ablation.csv`` (one row per run),
    ``ablation.md`` (mean and std per variant) and ``ablation.png``. Returns the table rows."""
    if seeds < 1 or not variants:
        raise ConfigError("svgan ablate needs at least one variant and one seed")
    base = load_config(config_path, list(overrides or []))
    manifest = load_manifest(prepared_dir)
    full_size = model_size(manifest, base)
    per_run = []
    for name in variants:
        extra = variant_overrides(name, base, full_size)
        for k in range(seeds):
            run_dir = os.path.join(out_dir, name, f"seed{k}")
            cfg = load_config(config_path, list(overrides or []) + extra + [f"seed={base.seed + k}"])
            done = os.path.join(run_dir, "evaluation", "summary.json")
            if not os.path.isfile(done):
                if verbose:
                    print(f"Ablation: {name}, seed {base.seed + k} ({' '.join(extra) or 'base configuration'})", flush=True)
                resume = os.path.isdir(os.path.join(run_dir, "checkpoints"))
                train(cfg, prepared_dir, run_dir=run_dir, resume=resume, verbose=verbose)
                evaluate_run(run_dir, split="test")
            per_run.append(_run_row(name, base.seed + k, run_dir, manifest.dataset))
    rows = _table_rows(per_run, variants, manifest.dataset)
    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, "ablation.csv"), per_run)
    with atomic_path(os.path.join(out_dir, "ablation.md")) as tmp, open(tmp, "w") as f:
        f.write(_markdown(rows, manifest.dataset, seeds) + "\n")
    _bar_plot(rows, manifest.dataset, os.path.join(out_dir, "ablation.png"))
    return {"runs": per_run, "table": rows}


def _run_row(variant: str, seed: int, run_dir: str, dataset: str) -> dict:
    with open(os.path.join(run_dir, "evaluation", "summary.json")) as f:
        ev = json.load(f)
    with open(os.path.join(run_dir, "summary.json")) as f:
        tr = json.load(f)
    row = {"variant": variant, "seed": seed, "run_dir": run_dir, "s_per_step": tr.get("s_per_step", float("nan"))}
    for region in REGIONS[dataset]:
        for metric in ("dice", "hd95", "sensitivity"):
            row[f"{metric}_{region}"] = ev["regions"][region][metric]["mean"]
    d = ev.get("diagnosis", {})
    row["macro_f1"] = d.get("macro_f1", float("nan"))
    row["balanced_accuracy"] = d.get("balanced_accuracy", float("nan"))
    aucs = [v for k, v in d.items() if k.startswith("auc_") and v == v]
    # Two classes: both one-vs-rest AUCs are the same number; more: their mean.
    row["auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return row


def _columns(dataset: str) -> list[str]:
    regions = list(REGIONS[dataset])
    return ([f"dice_{r}" for r in regions] + [f"hd95_{r}" for r in regions] + [f"sensitivity_{r}" for r in regions]
            + ["macro_f1", "balanced_accuracy", "auc", "s_per_step"])


def _table_rows(per_run: list[dict], variants: list[str], dataset: str) -> list[dict]:
    rows = []
    reference = None
    for name in variants:
        runs = [r for r in per_run if r["variant"] == name]
        row = {"variant": name, "seeds": len(runs)}
        for c in _columns(dataset):
            v = np.asarray([r[c] for r in runs], float)
            v = v[np.isfinite(v)]
            row[c] = (float(v.mean()) if len(v) else float("nan"), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        reference = reference or row["s_per_step"][0]
        row["relative_step_time"] = row["s_per_step"][0] / reference
        rows.append(row)
    return rows


def _markdown(rows: list[dict], dataset: str, seeds: int) -> str:
    columns = _columns(dataset)[:-1]
    head = "| variant | " + " | ".join(columns) + " | step time |"
    lines = [f"Mean ± std over {seeds} seed(s) of each run's test-split mean; step time relative to "
             f"{rows[0]['variant']}.", "", head, "|" + "---|" * (len(columns) + 2)]
    for r in rows:
        cells = [f"{r[c][0]:.3f} ± {r[c][1]:.3f}" for c in columns]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + f" | {r['relative_step_time']:.2f} |")
    return "\n".join(lines)


def _bar_plot(rows: list[dict], dataset: str, path: str) -> None:
    plt = pyplot()

    regions = list(REGIONS[dataset])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(rows)
    for ax, metric in zip(axes, ("dice", "sensitivity")):
        for i, r in enumerate(rows):
            means = [r[f"{metric}_{g}"][0] for g in regions]
            stds = [r[f"{metric}_{g}"][1] for g in regions]
            ax.bar(np.arange(len(regions)) + i * width, means, width, yerr=stds, capsize=2, label=r["variant"])
        ax.set_xticks(np.arange(len(regions)) + 0.4 - width / 2, regions)
        ax.set_ylim(0, 1)
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
