"""The training loop: epochs of GAN steps, validation, checkpoints and logs in a run folder.

A run folder holds everything needed to resume, evaluate and predict:

    config.yaml          the resolved configuration
    manifest.json        a copy of the prepared data's manifest (splits, class counts, geometry)
    checkpoints/         tf.train.CheckpointManager: G, D, both optimizers, epoch, step, early-stopping state
    generator.keras      the best generator on the validation Dice (loads with keras.models.load_model)
    history.csv          one row per epoch: mean losses, validation scores, seconds
    curves.png           the training curves
    attention.png        with model.attention_gates: each gate's coefficients on a validation slice
    logs/                TensorBoard scalars and image summaries

Exact resume: every epoch's input pipeline is seeded by (seed, epoch), so a
checkpoint's epoch and step say exactly which batches come next; ops are
deterministic (``train.deterministic``), so a resumed run retraces the same
weights. A non-finite loss stops the run before anything is saved; Ctrl-C
saves a checkpoint at the current step and stops.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import resource
import shutil
import time

import numpy as np

from .._tf import import_tf
from ..config import Config, load_config
from ..data.io import atomic_path, write_csv
from ..data.manifest import MANIFEST_NAME, Manifest, load_manifest
from ..data.pipeline import make_dataset
from ..errors import SvganError
from ..evaluation.inference import make_predict_fn
from ..evaluation.prepared_report import evaluate_prepared
from ..losses import selective_class_weights
from ..losses.classification import DeferredReweighting
from ..losses.registry import build_classification_loss, uses_cosine_classifier
from ..models.discriminator import build_discriminator
from ..models.generator import build_generator
from . import runtime as runtime_module
from .gan_step import LOSS_NAMES, GANStep
from .head_fit import DiseaseHeadFit
from .progressive import ProgressiveResizing
from .stages import TrainingStages

CONFIG_NAME = "config.yaml"
GENERATOR_NAME = "generator.keras"
MONITOR = "dice_mean"  # validation metric for early stopping and the best model


class TrainingError(SvganError):
    """Training cannot go on (non-finite loss, empty split)."""


class TrainingInterrupted(SvganError):
    """Ctrl-C: a checkpoint was saved; the run can be resumed."""


def epoch_callbacks(cfg: Config, trainer: "Trainer") -> list:
    """What runs after each epoch's steps and before validation; each ``on_epoch_end()`` returns history columns."""
    callbacks = []
    if cfg.model.classifier == "volumes" and cfg.train.head_fit_iterations > 0:
        callbacks.append(DiseaseHeadFit(trainer.G, trainer.manifest, cfg.pipeline.sequence_length,
                                        trainer.classification_loss, cfg.train.head_fit_iterations,
                                        class_sampling=cfg.pipeline.class_sampling))
    return callbacks


def epoch_schedules(cfg: Config, trainer: "Trainer") -> list:
    """What runs before each epoch's steps; each ``on_epoch_begin(epoch)`` returns history columns."""
    schedules = []
    if cfg.train.progressive_sizes:
        schedules.append(ProgressiveResizing(trainer, cfg.train.progressive_sizes, cfg.train.progressive_epochs,
                                             trainer.full_size))
    if cfg.loss.drw_start_epoch:
        schedules.append(DeferredReweighting(trainer.classification_loss, cfg.loss.drw_start_epoch))
    # After resizing, which rebuilds the GAN step whose stage this sets.
    schedules.append(TrainingStages(trainer, cfg.train.supervised_epochs))
    return schedules


def out_of_time(elapsed_s: float, last_epoch_s: float, max_minutes: float | None) -> bool:
    """Whether the next epoch, if it lasts as long as the last one, would end past the budget.

    So ``train.max_minutes`` bounds the whole run (only a first epoch longer than the
    budget can overrun it).
    """
    return max_minutes is not None and elapsed_s + last_epoch_s > 60.0 * max_minutes


def epoch_seed(seed: int, epoch: int) -> int:
    return int(seed) * 1_000_003 + int(epoch)


def class_weights(manifest: Manifest, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 2 weights for segmentation classes (voxels) and diseases (patients) of the training split."""
    n_classes, n_diseases = len(manifest.class_names), len(manifest.disease_classes)
    if not cfg.loss.selective_weights:
        return np.ones(n_classes, np.float32), np.ones(n_diseases, np.float32)
    seg = selective_class_weights(manifest.class_voxel_counts("train"))
    counts = manifest.disease_patient_counts("train")
    disease = selective_class_weights(counts) if counts.sum() > 0 else np.ones(n_diseases, np.float32)
    return seg, disease


def model_size(manifest: Manifest, cfg: Config) -> tuple[int, int]:
    if cfg.pipeline.image_size:
        return tuple(cfg.pipeline.image_size)
    first = next(iter(manifest.patients.values()))
    return tuple(first["crop"]["output_shape"][:2])


class Trainer:
    def __init__(self, cfg: Config, manifest: Manifest, run_dir: str):
        tf = import_tf()
        self.cfg, self.manifest, self.run_dir = cfg, manifest, run_dir
        if not manifest.split_ids("train"):
            raise TrainingError("the training split is empty", manifest.root)
        self.base_cfg = cfg  # self.cfg is the current stage's (progressive resizing changes its image size)
        self.runtime = runtime_module.configure(cfg.train, cfg.seed)
        self.full_size = self.size = model_size(manifest, cfg)
        self.seg_weights, self.disease_weights = class_weights(manifest, cfg)
        # One disease loss for the whole run: the GAN step (rebuilt when progressive resizing changes
        # the size), the head fit and deferred re-weighting all use this object.
        self.classification_loss = build_classification_loss(
            cfg.loss.classification_loss, self.disease_weights, cfg.loss.classification_loss_args,
            class_counts=manifest.disease_patient_counts("train"))
        self.G, self.D = self._build_models(self.size)
        self.gan = self._gan_step()
        self.epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, name="step_in_epoch")
        self.best = tf.Variable(-math.inf, dtype=tf.float64, name="best_validation")
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, name="epochs_without_improvement")
        self._track_models()
        self.schedules = epoch_schedules(cfg, self)

    def _build_models(self, size: tuple[int, int]):
        manifest = self.manifest
        channels = len(manifest.data["modalities"])
        n_classes, n_diseases = len(manifest.class_names), len(manifest.disease_classes)
        phases = len(next(iter(manifest.patients.values()))["phases"])
        with self.runtime.strategy.scope():
            G = build_generator(self.cfg.model, size, channels, n_classes, n_diseases, phases,
                                cosine_classifier=uses_cosine_classifier(self.cfg.model, self.cfg.loss))
            D = build_discriminator(self.cfg.model, size, channels, n_classes)
        return G, D

    def _gan_step(self) -> GANStep:
        steps = self.steps_per_epoch()
        return GANStep(self.cfg, self.G, self.D, self.seg_weights, self.disease_weights, self.runtime,
                       total_steps=self.cfg.train.epochs * steps, classification_loss=self.classification_loss,
                       adversarial_start=self.cfg.train.supervised_epochs * steps)

    def _track_models(self) -> None:
        """Checkpoint, prediction function and epoch callbacks for the current G, D and optimizers."""
        tf = import_tf()
        self.checkpoint = tf.train.Checkpoint(generator=self.G, discriminator=self.D, g_opt=self.gan.g_opt,
                                              d_opt=self.gan.d_opt, epoch=self.epoch, step=self.step_in_epoch,
                                              best=self.best, bad_epochs=self.bad_epochs)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(self.run_dir, "checkpoints"), max_to_keep=3)
        self.predict_fn = make_predict_fn(self.G)
        self.epoch_callbacks = epoch_callbacks(self.cfg, self)

    def resize(self, size) -> None:
        """Train at in-plane ``size`` from now on: G and D rebuilt at that size with the current
        weights and optimizer state (every weight of both is independent of the image size)."""
        size = tuple(int(v) for v in size)
        if size == self.size:
            return
        pipeline = dataclasses.replace(self.base_cfg.pipeline, image_size=None if size == self.full_size and
                                       not self.base_cfg.pipeline.image_size else list(size))
        self.cfg = dataclasses.replace(self.base_cfg, pipeline=pipeline)
        G, D = self._build_models(size)
        G.set_weights(self.G.get_weights())
        D.set_weights(self.D.get_weights())
        old = self.gan
        self.G, self.D, self.size = G, D, size
        self.gan = self._gan_step()
        for previous, new in ((old.g_opt, self.gan.g_opt), (old.d_opt, self.gan.d_opt)):
            if len(previous.variables) != len(new.variables):
                raise TrainingError("optimizer state does not carry over between image sizes", self.run_dir)
            for a, b in zip(previous.variables, new.variables):
                b.assign(a)
        self._track_models()

    # ---------------------------------------------------------------- set-up

    def restore(self) -> bool:
        """Restore the latest checkpoint of the run folder, if any."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            return True
        return False

    def _dataset(self, epoch: int, skip: int):
        tf = import_tf()
        ds = make_dataset(self.manifest, "train", self.cfg, training=True, seed=epoch_seed(self.cfg.seed, epoch))
        ds = ds.map(lambda b: {"image": b["image"], "label": b["label"], "disease": b["disease"]})
        if self.cfg.train.steps_per_epoch:
            ds = ds.repeat().take(self.cfg.train.steps_per_epoch)
        if skip:
            ds = ds.skip(skip)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.runtime.strategy.experimental_distribute_dataset(ds.with_options(options))

    def steps_per_epoch(self) -> int:
        """Batches in one training epoch (windows of every training patient, whole batches only)."""
        if self.cfg.train.steps_per_epoch:
            return self.cfg.train.steps_per_epoch
        pipe = self.cfg.pipeline
        windows = 0
        for pid in self.manifest.split_ids("train"):
            p = self.manifest.patients[pid]
            length = pipe.sequence_length // len(p["phases"])
            windows += pipe.windows_per_patient or max(1, math.ceil(p["num_slices"] / length))
        return windows // pipe.batch_size

    # ---------------------------------------------------------------- one epoch

    def train_epoch(self, progress=None, on_step=None) -> dict:
        """Train from the current (epoch, step) to the end of the epoch; returns the mean of each loss
        the stage computes (the supervised stage has no d_loss or adversarial term)."""
        epoch, skip = int(self.epoch.numpy()), int(self.step_in_epoch.numpy())
        sums = {}
        count = 0
        try:
            for batch in self._dataset(epoch, skip):
                losses = {k: float(v.numpy()) for k, v in self.gan.step(batch).items()}
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                if bad:
                    raise TrainingError(
                        f"non-finite loss at epoch {epoch + 1}, step {int(self.step_in_epoch.numpy()) + 1}: "
                        + ", ".join(f"{k}={v}" for k, v in bad.items())
                        + "; the last checkpoint (end of the previous epoch) is intact", self.run_dir)
                self.step_in_epoch.assign_add(1)
                count += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                if progress:
                    progress(count, losses)
                if on_step:
                    on_step(losses)
        except KeyboardInterrupt:
            path = self.manager.save()
            raise TrainingInterrupted(
                f"interrupted at epoch {epoch + 1}, step {int(self.step_in_epoch.numpy())}; checkpoint {path}; "
                f"resume with: svgan train --resume {self.run_dir}") from None
        if count == 0:
            raise TrainingError("the training pipeline produced no batch (fewer windows than the batch size?)", self.run_dir)
        return {k: v / count for k, v in sums.items()}

    def end_epoch(self, validation: dict | None) -> bool:
        """Book-keeping after an epoch: best model, early stopping state, checkpoint. Returns 'improved'."""
        improved = False
        score = None if validation is None else validation.get(MONITOR)
        if score is None or score > float(self.best.numpy()):
            improved = True
            if score is not None:
                self.best.assign(score)
            self.bad_epochs.assign(0)
            self.save_generator()
        else:
            self.bad_epochs.assign_add(1)
        self.epoch.assign_add(1)
        self.step_in_epoch.assign(0)
        self.manager.save()
        return improved

    def save_generator(self, path: str | None = None) -> str:
        """The generator at the model's full size (whatever size the current stage trains at)."""
        path = path or os.path.join(self.run_dir, GENERATOR_NAME)
        G = self.G
        if self.size != self.full_size:
            G, _ = self._build_models(self.full_size)
            G.set_weights(self.G.get_weights())
        with atomic_path(path) as tmp:
            G.save(tmp)
        return path


# ---------------------------------------------------------------- the whole run

def new_run_dir(cfg: Config, root: str | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root or cfg.train.run_dir, f"{cfg.data.dataset}-{stamp}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def _write_history(path: str, rows: list[dict]) -> None:
    if not rows:
        return
    # Every loss column in one place, though a supervised epoch has no d_loss or adversarial term.
    keys = ["epoch"] + [k for k in LOSS_NAMES if any(k in r for r in rows)]
    for r in rows:
        keys += [k for k in r if k not in keys]
    write_csv(path, rows, keys)


def _read_history(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    def value(text):
        try:
            return float(text)
        except ValueError:
            return text  # a word, such as the stage's name

    with open(path, newline="") as f:  # an empty cell: not computed in that epoch, and left out
        rows = [{k: value(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    for row in rows:
        row["epoch"] = int(row["epoch"])
    return rows


def plot_curves(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k in LOSS_NAMES:
        axes[0].plot(epochs, [r.get(k, float("nan")) for r in rows], label=k)
    axes[0].set_xlabel("epoch")
    axes[0].set_title("training losses")
    axes[0].legend()
    for k in sorted(rows[-1]):
        if k.startswith("val_dice") or k == "val_accuracy":
            axes[1].plot(epochs, [r.get(k, float("nan")) for r in rows], label=k[4:])
    axes[1].set_xlabel("epoch")
    axes[1].set_title("validation")
    axes[1].set_ylim(0, 1)
    if axes[1].lines:  # no validation split, no validation curves
        axes[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _image_summary(trainer: Trainer, step: int) -> None:
    """Input, ground truth and prediction of the middle slice of the first validation patient."""
    tf = import_tf()
    from ..data.prepare import load_prepared
    from ..evaluation.inference import predict_patient

    ids = trainer.manifest.split_ids("validation") or trainer.manifest.split_ids("train")
    image, label = load_prepared(trainer.manifest.patient_file(ids[0]))
    probs, _ = predict_patient(trainer.predict_fn, image, trainer.cfg.pipeline.sequence_length, 1, trainer.cfg.pipeline.image_size)
    z = image.shape[1] // 2
    k = max(1, len(trainer.manifest.class_names) - 1)
    scan = image[0, z, :, :, :1]
    scan = (scan - scan.min()) / max(float(scan.max() - scan.min()), 1e-6)
    panels = np.concatenate([scan, label[0, z][..., None] / k, probs[0, z].argmax(-1)[..., None] / k], axis=1)
    tf.summary.image("validation/input_truth_prediction", panels[None].astype(np.float32), step=step)


def _attention_figure(trainer: Trainer, path: str, epoch: int) -> None:
    """Cui et al.'s attention coefficients on the middle slice of the first validation patient."""
    tf = import_tf()
    from ..data.prepare import load_prepared
    from ..evaluation.attention_maps import save_attention_figure

    ids = trainer.manifest.split_ids("validation") or trainer.manifest.split_ids("train")
    image, _ = load_prepared(trainer.manifest.patient_file(ids[0]))
    size = model_size(trainer.manifest, trainer.cfg)
    if tuple(image.shape[2:4]) != tuple(size):
        p, z, h, w, c = image.shape
        image = tf.reshape(tf.image.resize(tf.reshape(image, (-1, h, w, c)), size), (p, z, *size, c)).numpy()
    save_attention_figure(trainer.G, image, path, f"{ids[0]}, epoch {epoch}")


def train(cfg: Config, prepared_dir: str, run_dir: str | None = None, resume: bool = False, verbose: bool = True) -> dict:
    """Train (or resume) a run; returns the final summary (also in RUN/summary.json)."""
    tf = import_tf()
    import keras

    manifest = load_manifest(prepared_dir)
    if manifest.dataset != cfg.data.dataset:
        raise SvganError(f"prepared for {manifest.dataset} but the config says data.dataset={cfg.data.dataset}", prepared_dir)
    run_dir = run_dir or new_run_dir(cfg)
    os.makedirs(run_dir, exist_ok=True)
    cfg.data.prepared_dir = os.path.abspath(prepared_dir)
    if not resume:
        cfg.save(os.path.join(run_dir, CONFIG_NAME))
        shutil.copyfile(os.path.join(prepared_dir, MANIFEST_NAME), os.path.join(run_dir, MANIFEST_NAME))
    trainer = Trainer(cfg, manifest, run_dir)
    if resume and not trainer.restore():
        raise SvganError("no checkpoint to resume from", os.path.join(run_dir, "checkpoints"))
    history_path = os.path.join(run_dir, "history.csv")
    start_epoch = int(trainer.epoch.numpy())
    rows = [r for r in _read_history(history_path) if r["epoch"] <= start_epoch] if resume else []
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs"))
    has_validation = bool(manifest.split_ids("validation"))
    started = time.time()
    if verbose:
        r = trainer.runtime
        print(f"Training {cfg.data.dataset} from epoch {start_epoch + 1} to {cfg.train.epochs} in {run_dir} "
              f"({r.replicas} replica(s), {'mixed_float16' if r.mixed_precision else 'float32'}, "
              f"{'XLA' if r.jit_compile else 'tf.function'}; class weights {np.round(trainer.seg_weights, 2).tolist()})", flush=True)
    summary = {}
    for epoch in range(start_epoch, cfg.train.epochs):
        epoch_start = time.time()
        bar = keras.utils.Progbar(trainer.steps_per_epoch(), stateful_metrics=list(LOSS_NAMES), verbose=1 if verbose else 0)
        if verbose:
            print(f"Epoch {epoch + 1}/{cfg.train.epochs}", flush=True)

        def on_step(losses):
            with writer.as_default(step=int(trainer.gan.g_opt.iterations.numpy())):
                for k, v in losses.items():
                    tf.summary.scalar(f"train/{k}", v)

        extra = {}
        for schedule in trainer.schedules:
            extra.update(schedule.on_epoch_begin(epoch))
        steps_before = int(trainer.step_in_epoch.numpy())
        means = trainer.train_epoch(progress=lambda n, losses: bar.update(n, list(losses.items())), on_step=on_step)
        train_seconds, steps = time.time() - epoch_start, int(trainer.step_in_epoch.numpy()) - steps_before
        for callback in trainer.epoch_callbacks:
            extra.update(callback.on_epoch_end())
        validation = (evaluate_prepared(trainer.G, manifest, "validation", trainer.cfg, trainer.predict_fn)
                      if has_validation else None)
        improved = trainer.end_epoch(validation)
        # The step rate lets a reader compare machines (training steps only, validation excluded).
        row = {"epoch": epoch + 1, **means, "seconds": time.time() - epoch_start, "steps": steps,
               "s_per_step": train_seconds / steps, "steps_per_s": steps / train_seconds, **extra}
        if validation:
            row.update({f"val_{k}": v for k, v in validation.items() if k != "patients"})
        rows.append(row)
        _write_history(history_path, rows)
        plot_curves(rows, os.path.join(run_dir, "curves.png"))
        if cfg.model.attention_gates:
            _attention_figure(trainer, os.path.join(run_dir, "attention.png"), epoch + 1)
        with writer.as_default(step=epoch + 1):
            for k, v in row.items():
                if k != "epoch" and isinstance(v, float) and math.isfinite(v):
                    tf.summary.scalar(f"epoch/{k}", v)
            if cfg.train.image_summaries:
                _image_summary(trainer, epoch + 1)
        writer.flush()
        if verbose:
            val = "" if not validation else f" validation Dice {validation[MONITOR]:.3f}" + (" (best)" if improved else "")
            print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {means[k]:.4f}" for k in LOSS_NAMES if k in means) + val, flush=True)
        patience = cfg.train.early_stopping_patience
        if patience is not None and has_validation and int(trainer.bad_epochs.numpy()) >= patience:
            summary["stopped"] = f"early stopping after {patience} epochs without a better validation Dice"
            break
        if epoch + 1 < cfg.train.epochs and out_of_time(time.time() - started, row["seconds"], cfg.train.max_minutes):
            summary["stopped"] = (f"time budget of {cfg.train.max_minutes} minutes: another epoch of "
                                  f"{row['seconds'] / 60:.1f} minutes would not end within it")
            break
    trained = [r for r in rows if r.get("steps")]
    if trained:  # over the epochs of this run folder, resumed ones included
        steps, seconds = sum(r["steps"] for r in trained), sum(r["steps"] * r["s_per_step"] for r in trained)
        summary.update({"steps": int(steps), "s_per_step": seconds / steps, "steps_per_s": steps / seconds})
    summary.update({"run_dir": run_dir, "epochs_done": int(trainer.epoch.numpy()),
                    "best_validation_dice": None if not has_validation else float(trainer.best.numpy()),
                    "minutes": (time.time() - started) / 60, "history": history_path,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    with atomic_path(os.path.join(run_dir, "summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    if verbose and summary.get("stopped"):
        print(summary["stopped"])
    return summary


def load_run(run_dir: str, prepared_dir: str | None = None, overrides: list[str] | None = None) -> tuple[Config, Manifest]:
    """The resolved config of a run folder (with ``--set`` style ``overrides``, e.g. for
    post-processing at evaluation) and its manifest copy, whose patient files live in the
    prepared folder the run was trained on (or ``prepared_dir``)."""
    if not os.path.isfile(os.path.join(run_dir, CONFIG_NAME)):
        raise SvganError("not a run folder (no config.yaml)", run_dir)
    cfg = load_config(os.path.join(run_dir, CONFIG_NAME), overrides)
    copy = load_manifest(run_dir)
    return cfg, Manifest(prepared_dir or cfg.data.prepared_dir, copy.data)
