"""Dice per structure and diagnosis accuracy against training minutes, for a recipe and for
Rezaei et al.'s GAN trained from the first step, on a prepared folder's test split.

    python experiments/learning_curve.py --data real_data/prepared/acdc --out real_data/learning_curve \
        --config configs/real_acdc.yaml --minutes 10 recipe 90

For each budget M (minutes of training steps on a reference machine) and each variant it trains
one run whose step count fills M minutes at the reference step rates, then scores the test split
with ``svgan evaluate``:

- ``recipe``: the configuration as given, the steps of each epoch (and the adversarial ramp)
  scaled so that its steps fill M minutes: the same epochs, stages and schedule shape at every budget;
- ``gan_from_step_one``: the same configuration with the adversarial stage from the first step
  (``train.supervised_epochs: 0``, no ramp), Rezaei et al.'s training, the same epochs of as many
  steps as fill M minutes.

Runs live in ``OUT/<variant>_<M>min``; a finished one is scored again but not retrained, an
interrupted one resumes. ``--runs RUN ...`` adds run folders trained elsewhere on the same
prepared folder (e.g. by ``make real-acdc-benchmark``), each placed by its own config: its
variant (``supervised_only`` when it never reaches the adversarial stage), what its training
steps saw (whole images or windows) and its reference minutes. ``--table CSV ...`` adds the rows
an earlier call wrote (its ``learning_curve.csv``), so that a curve outlives its run folders; the
README's figure is ``learning_curve.png`` of a call with ``--minutes --table
experiments/learning_curve/real_acdc_learning_curve.csv``, the rows measured so far.

Minutes are stated two ways: at the reference rates (what the step count costs on the machine
the recipe is sized for) and as measured here (``summary.json``). Writes ``learning_curve.md`` /
``.csv`` (the table) and ``learning_curve.png`` (the figure).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM raises KeyboardInterrupt, so that ``svgan.training.fit.train`` saves a checkpoint as on Ctrl-C."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

# Seconds per step on the reference machine (2 cores at normal speed) at the real-ACDC shape
# (batch 2 x 16 slices at 128 x 128, base 16): the generator-only step 0.52 s and the two-forward
# GAN step 1.12 s were measured there; the one-forward GAN step costs 0.91 of the two-forward one
# (benchmarks/model_speed.py --only real-acdc --part train, before and after, on one machine).
REFERENCE_S_PER_STEP = {"supervised": 0.52, "adversarial": 1.12 * 0.91}
# A step on training crops (pipeline.crop_size) costs this fraction of a whole-image step: measured
# on this project's machine, alone, twice each (benchmarks/model_speed.py --only real-acdc --part
# train with and without the crop). Other crop sizes: the fraction of pixels.
CROP_COST = {(96, 96): {"supervised": 0.56, "adversarial": 0.55}}
WHOLE_IMAGE = (128, 128)
# A generator of another width (model.base_filters) costs this multiple of a step of the base-16
# generator the rates above were measured with: measured on this project's machine on 96 x 96
# windows, alone (benchmarks/model_speed.py --only real-acdc --part train --set model.base_filters=32).
# Not the ratio of the convolutions' arithmetic (4 for twice the width): much of a step's time on
# two cores goes to work that does not grow with the width (normalisation, the input pipeline).
REFERENCE_WIDTH = 16
WIDTH_COST = {REFERENCE_WIDTH: {"supervised": 1.0, "adversarial": 1.0}, 32: {"supervised": 2.0, "adversarial": 1.74}}
# A step in mixed bfloat16 (train.mixed_precision: bfloat16) costs this fraction of a float32 step of
# the same width on a CPU with AMX and AVX512-BF16 instructions: measured on one such machine of this
# project's, alone, twice each (benchmarks/model_speed.py --only real-acdc --part train with
# train.mixed_precision bfloat16 and off). On a CPU without them the run stays in float32 and a step
# costs a float32 one, so these minutes hold only where the training machine has the instructions.
# Keyed by model.base_filters.
BFLOAT16_COST = {32: {"supervised": 0.55, "adversarial": 0.68}}
TRAINED_VARIANTS = ("recipe", "gan_from_step_one")  # what this script trains
VARIANTS = TRAINED_VARIANTS + ("supervised_only",)  # what --runs may add
# Held-out Dice a user of the recipe aims at (the level of the ACDC challenge's entries; Bernard et
# al. 2018): the table states the minutes at which each variant's fitted curve reaches it.
QUALITY_BAR = {"LV": 0.92, "RV": 0.85, "MYO": 0.85}


def reference_s_per_step(cfg) -> dict:
    """Seconds per supervised and adversarial step of ``cfg`` on the reference machine."""
    crop = tuple(cfg.pipeline.crop_size or WHOLE_IMAGE)
    pixels = crop[0] * crop[1] / (WHOLE_IMAGE[0] * WHOLE_IMAGE[1])
    cost = CROP_COST.get(crop, {"supervised": pixels, "adversarial": pixels})
    width = WIDTH_COST.get(cfg.model.base_filters)
    if width is None:
        raise ValueError(f"no reference step cost for model.base_filters={cfg.model.base_filters} (measured: "
                         f"{sorted(WIDTH_COST)}): time it with benchmarks/model_speed.py and add it to WIDTH_COST")
    precision = {"supervised": 1.0, "adversarial": 1.0}
    if cfg.train.mixed_precision == "bfloat16":
        precision = BFLOAT16_COST.get(cfg.model.base_filters)
        if precision is None:
            raise ValueError(f"no bfloat16 step cost for model.base_filters={cfg.model.base_filters} (measured: "
                             f"{sorted(BFLOAT16_COST)}): time it with benchmarks/model_speed.py and add it to BFLOAT16_COST")
    return {stage: s * cost[stage] * width[stage] * precision[stage] for stage, s in REFERENCE_S_PER_STEP.items()}


def reference_minutes(cfg) -> float:
    """Minutes of training steps of ``cfg`` at the reference rates."""
    t, rate = cfg.train, reference_s_per_step(cfg)
    steps = t.steps_per_epoch
    return steps * (t.supervised_epochs * rate["supervised"]
                    + (t.epochs - t.supervised_epochs) * rate["adversarial"]) / 60.0


def variant_of(cfg) -> str:
    """Which curve a run of ``cfg`` belongs to."""
    t = cfg.train
    if t.supervised_epochs == 0:
        return "gan_from_step_one"
    if t.supervised_epochs >= t.epochs or cfg.loss.adversarial_weight == 0:
        return "supervised_only"
    return "recipe"


def training_input(cfg) -> str:
    """What the training steps of ``cfg`` see (whole images, or windows and where they are placed),
    with which generator width, when not the reference one, and in bfloat16. Runs that differ in
    this are separate curves: a window step costs less than a whole-image one, a wider generator's
    more, a bfloat16 one less."""
    p = cfg.pipeline
    window = f"{p.crop_size[0]} x {p.crop_size[1]} windows" if p.crop_size else ""
    if not p.crop_size:
        seen = "whole images"
    elif p.crop_placement != "foreground":
        seen = f"{window} anywhere"
    elif p.foreground_fraction < 1:
        seen = f"{window}, {p.foreground_fraction:g} on the heart"
    else:
        seen = f"{window} on the heart"
    width = cfg.model.base_filters
    seen = seen if width == REFERENCE_WIDTH else f"{seen}, base {width} filters"
    return f"{seen}, bfloat16" if cfg.train.mixed_precision == "bfloat16" else seen


def series_of(row: dict) -> str:
    """The curve a table row belongs to."""
    return f"{row['variant']}, {row['input']}"


def read_table(path: str) -> list[dict]:
    """Rows of a ``learning_curve.csv``, numbers as ints or floats (NaN where a cell is empty)."""
    import csv

    def value(cell: str):
        for number in (int, float):
            try:
                return number(cell) if cell else math.nan
            except ValueError:
                pass
        return cell

    with open(path, newline="") as f:
        return [{key: value(cell) for key, cell in row.items()} for row in csv.DictReader(f)]


def variant_overrides(cfg, variant: str, minutes: float) -> list[str]:
    """``--set`` overrides that make ``cfg`` (with ``train.steps_per_epoch`` set) the variant at ``minutes``:
    the same epochs and stages, each epoch's steps scaled so that the steps fill the budget."""
    t = cfg.train
    if variant == "gan_from_step_one":
        per_epoch = minutes * 60 / (t.epochs * reference_s_per_step(cfg)["adversarial"])
        return [f"train.steps_per_epoch={max(1, round(per_epoch))}", "train.supervised_epochs=0",
                "train.adversarial_ramp_steps=0"]
    scale = minutes / reference_minutes(cfg)
    return [f"train.steps_per_epoch={max(1, round(t.steps_per_epoch * scale))}",
            f"train.adversarial_ramp_steps={round(t.adversarial_ramp_steps * scale)}"]


def changed_settings(saved, wanted) -> list[str]:
    """The settings (``section.key``) in which a run folder's config differs from the one asked for."""
    changed = []
    for section in ("model", "loss", "pipeline", "augment", "train"):
        old, new = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(wanted, section))
        changed += [f"{section}.{key}" for key in new if old.get(key) != new[key]]
    return changed


def _test_scores(run_dir: str) -> dict:
    """The run's test-split evaluation: ``RUN/evaluation/summary.json`` when it was written after
    the run's generator (e.g. by ``make real-acdc-benchmark``), else a new ``svgan evaluate``."""
    from svgan.evaluation.report import evaluate_run

    path = os.path.join(run_dir, "evaluation", "summary.json")
    if os.path.isfile(path) and os.path.getmtime(path) > os.path.getmtime(os.path.join(run_dir, "generator.keras")):
        with open(path) as f:
            summary = json.load(f)
        if summary.get("split") == "test":
            return summary
    return evaluate_run(run_dir, "test", forest_on_predictions=True)


def _row(variant: str, cfg, run_dir: str) -> dict:
    """The table row of a finished run of ``cfg``: which curve, where on it, and its test scores."""
    return {"variant": variant, "input": training_input(cfg), "minutes": round(reference_minutes(cfg), 1),
            **_score(run_dir)}


def _score(run_dir: str) -> dict:
    summary = _test_scores(run_dir)
    with open(os.path.join(run_dir, "summary.json")) as f:
        trained = json.load(f)
    row = {f"dice_{r}": summary["regions"][r]["dice"]["mean"] for r in summary["regions"]}
    row.update({f"hd95_{r}": summary["regions"][r]["hd95"]["mean"] for r in summary["regions"]})
    row["diagnosis_head"] = summary.get("diagnosis_head", {}).get("accuracy", math.nan)
    row["diagnosis_clinical_features"] = summary.get("diagnosis_clinical_truth_fit", {}).get("accuracy", math.nan)
    row["diagnosis_forest_on_predictions"] = summary.get("diagnosis_clinical_reference", {}).get("accuracy", math.nan)
    row.update({"steps": trained.get("steps"), "minutes_here": trained.get("minutes"),
                "s_per_step_here": trained.get("s_per_step"), "patients": summary["patients"]})
    return row


def minutes_to_reach(rows: list[dict], series: str, region: str, target: float) -> float:
    """Reference minutes at which the least-squares line of Dice against log(minutes) through the
    points of one curve (``series_of``) reaches ``target``: a planning figure, extrapolated where the target lies beyond
    the points (Dice saturates, so a line in log-minutes is, if anything, too hopeful). NaN with fewer
    than two budgets or a curve that does not rise."""
    points = sorted((r["minutes"], r[f"dice_{region}"]) for r in rows if series_of(r) == series)
    if len({m for m, _ in points}) < 2:
        return math.nan
    slope, intercept = np.polyfit([math.log(m) for m, _ in points], [d for _, d in points], 1)
    if slope <= 0:
        return math.nan
    return math.exp((target - intercept) / slope)


def _figure(rows: list[dict], path: str) -> None:
    """Dice per structure and the model head's diagnosis accuracy (the package's default diagnosis)
    against minutes: one line per curve, the marker for the variant and the colour for the input."""
    from svgan.figures import pyplot, save_figure

    plt = pyplot()
    regions = [k[5:] for k in rows[0] if k.startswith("dice_")]
    markers = dict(zip(VARIANTS, ("o-", "s--", "^:")))
    inputs = list(dict.fromkeys(r["input"] for r in rows))
    colours = dict(zip(inputs, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, len(regions) + 1, figsize=(3.2 * (len(regions) + 1), 4.0), sharex=True)
    for series in dict.fromkeys(series_of(r) for r in rows):
        mine = sorted((r for r in rows if series_of(r) == series), key=lambda r: r["minutes"])
        style = dict(color=colours[mine[0]["input"]], label=series)
        x = [r["minutes"] for r in mine]
        for ax, column in zip(axes, [f"dice_{region}" for region in regions] + ["diagnosis_head"]):
            ax.plot(x, [r[column] for r in mine], markers[mine[0]["variant"]], **style)
    for ax, title in zip(axes, [f"Dice {region}" for region in regions] + ["diagnosis accuracy (head)"]):
        ax.set_title(title)
        ax.set_xscale("log")
        ax.set_xlabel("training minutes (reference machine)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.92, bottom=0.32, wspace=0.3)  # room for the legend below
    save_figure(fig, path, dpi=90, tight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared folder (scored on its test split)")
    parser.add_argument("--config", required=True, help="the recipe, with train.steps_per_epoch set")
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", nargs="*", default=["10", "recipe", "90"],
                        help="budgets in minutes of training steps on the reference machine; 'recipe': the recipe's own; "
                             "none (a bare --minutes): only score --runs")
    parser.add_argument("--variants", nargs="+", default=list(TRAINED_VARIANTS), choices=TRAINED_VARIANTS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the recipe")
    parser.add_argument("--runs", nargs="*", default=[], metavar="RUN",
                        help="finished run folders on the same prepared folder to score and add")
    parser.add_argument("--table", nargs="*", default=[], metavar="CSV",
                        help="learning_curve.csv files of earlier calls whose rows to add")
    args = parser.parse_args()

    from svgan.config import load_config
    from svgan.data.io import write_csv
    from svgan.errors import SvganError
    from svgan.runs import load_run
    from svgan.training.fit import train

    base = load_config(args.config, args.set)
    if not base.train.steps_per_epoch:
        sys.exit("the recipe needs train.steps_per_epoch (epochs of a fixed number of steps)")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for budget in args.minutes:
        minutes = reference_minutes(base) if budget == "recipe" else float(budget)
        for variant in args.variants:
            run_dir = os.path.join(args.out, f"{variant}_{round(minutes):d}min")
            overrides = args.set + ["train.max_minutes=null"] + variant_overrides(base, variant, minutes)
            cfg = load_config(args.config, overrides)
            if not os.path.isfile(os.path.join(run_dir, "summary.json")):
                resume = os.path.isdir(os.path.join(run_dir, "checkpoints"))
                changed = changed_settings(load_run(run_dir)[0], cfg) if resume else []
                if changed:  # e.g. the recipe changed since the run started: resuming would mix two recipes
                    sys.exit(f"{run_dir}: trained with other settings than asked for ({', '.join(changed)}); "
                             f"finish it with `svgan train --resume {run_dir}` or give another --out")
                print(f"{variant}, {minutes:g} minutes: {' '.join(overrides)}", flush=True)
                try:
                    with _sigterm_as_ctrl_c():
                        train(cfg, args.data, run_dir=run_dir, resume=resume)
                except SvganError as e:  # Ctrl-C or SIGTERM (checkpoint saved: the next call resumes) or bad input
                    sys.exit(str(e))
            row = _row(variant, cfg, run_dir)
            rows.append(row)
            print(row, flush=True)
    for run_dir in args.runs:
        cfg, _ = load_run(run_dir)
        row = _row(variant_of(cfg), cfg, run_dir)
        rows.append(row)
        print(run_dir, row, flush=True)
    for path in args.table:
        rows += read_table(path)
    if not rows:
        sys.exit("nothing to tabulate: give budgets, --runs or --table")
    write_csv(os.path.join(args.out, "learning_curve.csv"), rows)
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = (r.get(c, "") for c in columns)
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    lines += ["", "Reference minutes at which a line through each curve's points (Dice against log minutes) "
              "reaches the quality bar; beyond the largest budget this is an extrapolation:", "",
              "| curve | " + " | ".join(f"{r} >= {v}" for r, v in QUALITY_BAR.items()) + " |",
              "|---|" + "---|" * len(QUALITY_BAR)]
    for series in dict.fromkeys(series_of(r) for r in rows):
        lines.append(f"| {series} | " + " | ".join(f"{minutes_to_reach(rows, series, r, v):.0f}"
                                                   for r, v in QUALITY_BAR.items()) + " |")
    with open(os.path.join(args.out, "learning_curve.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _figure(rows, os.path.join(args.out, "learning_curve.png"))
    print("\n".join(lines))
    print(f"Figure: {os.path.join(args.out, 'learning_curve.png')}")


if __name__ == "__main__":
    main()
