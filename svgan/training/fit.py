"""Training the multi-task GAN of Rezaei et al.: the ``Trainer`` and the ``train`` loop.

``train`` runs ``loop.run_epochs`` over the trainer's epochs with the callbacks of
``gan_callbacks``: every training behaviour (stages, progressive resizing, deferred
re-weighting, the volume head's fit, validation, the best model and checkpoints, history,
curves, TensorBoard, early stopping, the time budget, the progress bar) is one small object
there, and a new one is one more entry in that list. The run folder's layout is
``svgan.runs``'.

Exact resume: every epoch's input pipeline is seeded by (seed, epoch), so a
checkpoint's epoch and step say exactly which batches come next; ops are
deterministic (``train.deterministic``), so a resumed run retraces the same
weights. A non-finite loss stops the run before anything is saved; Ctrl-C
saves a checkpoint at the current step and stops.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import time

import numpy as np

from .._tf import import_tf
from ..config import Config
from ..data.io import atomic_path
from ..data.manifest import Manifest, load_manifest
from ..data.pipeline import make_dataset
from ..data.prepare import load_prepared
from ..errors import SvganError
from ..evaluation.attention_maps import save_attention_figure
from ..evaluation.inference import make_predict_fn, predict_patient
from ..evaluation.prepared_report import evaluate_prepared
from ..losses import selective_class_weights
from ..losses.registry import build_classification_loss
from ..models.discriminator import build_discriminator
from ..runs import (ATTENTION_NAME, CHECKPOINTS, CONFIG_NAME, GENERATOR_NAME, build_run_generator, create_run,
                    new_run_dir, record_resumed_config, write_summary)
from . import runtime as runtime_module
from .callbacks import Curves, EarlyStopping, HistoryFile, ProgressBar, TensorBoard, TimeBudget
from .gan_step import LOSS_NAMES, GANStep
from .budget import TrainingBudget
from .head_fit import DiseaseHeadFit
from .loop import STOP, Callback, TrainingError, TrainingInterrupted, run_epochs
from .progressive import ProgressiveResizing
from .reweighting import DeferredReweighting
from .stages import TrainingStages

__all__ = ["Trainer", "TrainingError", "TrainingInterrupted", "gan_callbacks", "schedules", "train"]

MONITOR = "dice_mean"  # validation metric for early stopping and the best model


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
    """The in-plane size the saved generator works at: ``pipeline.image_size``, else the prepared size."""
    if cfg.pipeline.image_size:
        return tuple(cfg.pipeline.image_size)
    first = next(iter(manifest.patients.values()))
    return tuple(first["crop"]["output_shape"][:2])


class Trainer:
    """G, D, the GAN step, the input pipeline and the run's state (epoch, step, best score), checkpointed
    together. ``cfg`` is the current stage's configuration (progressive resizing changes its image
    size); ``base_cfg`` the run's."""

    def __init__(self, cfg: Config, manifest: Manifest, run_dir: str):
        tf = import_tf()
        self.cfg, self.manifest, self.run_dir = cfg, manifest, run_dir
        if not manifest.split_ids("train"):
            raise TrainingError("the training split is empty", manifest.root)
        self.base_cfg = cfg
        self.runtime = runtime_module.configure(cfg.train, cfg.seed)
        # full_size: the saved generator's (validation and prediction run whole images there); size: the
        # size training runs at now (random crops, or a progressive-resizing stage).
        self.full_size = model_size(manifest, cfg)
        self.size = tuple(cfg.pipeline.crop_size) if cfg.pipeline.crop_size else self.full_size
        self._inference = None  # (generator at full_size, its predictor) when training runs at another size
        self.seg_weights, self.disease_weights = class_weights(manifest, cfg)
        # One disease loss for the whole run: the GAN step (rebuilt when progressive resizing changes
        # the size), the head fit and deferred re-weighting all use this object.
        self.classification_loss = build_classification_loss(
            cfg.loss.classification_loss, self.disease_weights, cfg.loss.classification_loss_args,
            class_counts=manifest.disease_patient_counts("train"))
        self.epoch_steps = None  # a budget's steps for each epoch (set_epoch_steps); None: steps_per_epoch() each
        self.G, self.D = self._build_models(self.size)
        self.gan = self._gan_step()
        self.epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, name="step_in_epoch")
        self.best = tf.Variable(-math.inf, dtype=tf.float64, name="best_validation")
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, name="epochs_without_improvement")
        self._track_models()

    def _build_models(self, size: tuple[int, int], discriminator: bool = True):
        manifest = self.manifest
        with self.runtime.strategy.scope():
            G = build_run_generator(self.cfg, manifest, size)
            D = build_discriminator(self.cfg.model, size, len(manifest.data["modalities"]),
                                    len(manifest.class_names)) if discriminator else None
        return G, D

    def inference_model(self):
        """``(generator, its predict_fn)`` at ``full_size`` with the current weights: ``G`` itself, or,
        while training runs at another size, a full-size twin whose weights are copied from ``G`` now."""
        if self.size == self.full_size:
            return self.G, self.predict_fn
        if self._inference is None:
            G, _ = self._build_models(self.full_size, discriminator=False)
            self._inference = (G, make_predict_fn(G))
        self._inference[0].set_weights(self.G.get_weights())
        return self._inference

    def _gan_step(self) -> GANStep:
        t = self.cfg.train
        return GANStep(self.cfg, self.G, self.D, self.seg_weights, self.disease_weights, self.runtime,
                       total_steps=self.steps_before(t.epochs), classification_loss=self.classification_loss,
                       adversarial_start=self.steps_before(t.supervised_epochs))

    def _track_models(self) -> None:
        """Checkpoint and prediction function for the current G, D and optimizers."""
        tf = import_tf()
        self.checkpoint = tf.train.Checkpoint(generator=self.G, discriminator=self.D, g_opt=self.gan.g_opt,
                                              d_opt=self.gan.d_opt, epoch=self.epoch, step=self.step_in_epoch,
                                              best=self.best, bad_epochs=self.bad_epochs)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(self.run_dir, CHECKPOINTS), max_to_keep=3)
        self.predict_fn = make_predict_fn(self.G)

    def replan(self, cfg: Config) -> None:
        """Train under ``cfg`` from now on (a budget's planned steps): the GAN step, its optimizers and
        learning-rate schedule are laid out again over its steps. Before the first step only."""
        self.cfg = self.base_cfg = cfg
        self.gan = self._gan_step()
        self._track_models()

    def set_epoch_steps(self, epoch_steps: list[int]) -> None:
        """Train ``epoch_steps[e]`` steps in epoch ``e`` (a budget's re-plan, between epochs): the
        learning-rate horizons and the adversarial stage's start follow, in the same compiled step."""
        t = self.base_cfg.train
        if len(epoch_steps) != t.epochs:
            raise TrainingError(f"a plan of {len(epoch_steps)} epochs for a run of train.epochs={t.epochs}", self.run_dir)
        self.epoch_steps = [int(n) for n in epoch_steps]
        self.gan.set_horizon(self.steps_before(t.epochs), self.steps_before(t.supervised_epochs))

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
        if self.cfg.train.steps_per_epoch or self.epoch_steps:
            ds = ds.repeat().take(self.steps_in_epoch(epoch))
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

    def steps_in_epoch(self, epoch: int) -> int:
        return self.epoch_steps[epoch] if self.epoch_steps else self.steps_per_epoch()

    def steps_before(self, epoch: int) -> int:
        """Generator updates in epochs 0 .. ``epoch - 1``."""
        return sum(self.steps_in_epoch(e) for e in range(epoch))

    # ---------------------------------------------------------------- one epoch

    def train_epoch(self, on_step=None) -> dict:
        """Train from the current (epoch, step) to the end of the epoch, calling ``on_step(step, losses)``
        after each step; returns the mean of each loss the stage computes (the supervised stage has no
        d_loss or adversarial term) and the step rate."""
        epoch, skip = int(self.epoch.numpy()), int(self.step_in_epoch.numpy())
        updates_before = int(self.gan.g_opt.iterations.numpy())
        sums = {}
        count, started = 0, time.time()
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
                if on_step:
                    on_step(count, losses)
        except KeyboardInterrupt:
            # A signal that lands after a step's update but before its count would have the resume train
            # that batch twice: count the generator updates this epoch made instead (one per step).
            uncounted = (int(self.gan.g_opt.iterations.numpy()) - updates_before) - (int(self.step_in_epoch.numpy()) - skip)
            if uncounted > 0:
                self.step_in_epoch.assign_add(uncounted)
            path = self.manager.save()
            raise TrainingInterrupted(
                f"interrupted at epoch {epoch + 1}, step {int(self.step_in_epoch.numpy())}; checkpoint {path}; "
                f"resume with: svgan train --resume {self.run_dir}") from None
        if count == 0:
            raise TrainingError("the training pipeline produced no batch (fewer windows than the batch size?)", self.run_dir)
        seconds = time.time() - started
        # The step rate lets a reader compare machines (training steps only, validation excluded).
        return {**{k: v / count for k, v in sums.items()}, "steps": count, "s_per_step": seconds / count,
                "steps_per_s": count / seconds}

    def end_epoch(self, score: float | None) -> bool:
        """Book-keeping after an epoch with validation ``score`` (None: no validation): the kept model
        (``train.keep_model``), early stopping state, checkpoint. Returns 'improved'."""
        improved = score is None or score > float(self.best.numpy())
        if improved:
            if score is not None:
                self.best.assign(score)
            self.bad_epochs.assign(0)
        else:
            self.bad_epochs.assign_add(1)
        if improved or self.base_cfg.train.keep_model == "last":
            self.save_generator()
        self.epoch.assign_add(1)
        self.step_in_epoch.assign(0)
        self.manager.save()
        return improved

    def save_generator(self, path: str | None = None) -> str:
        """The generator at the model's full size (whatever size training runs at)."""
        path = path or os.path.join(self.run_dir, GENERATOR_NAME)
        G, _ = self.inference_model()
        with atomic_path(path) as tmp:
            G.save(tmp)
        return path


# ---------------------------------------------------------------- the GAN's own callbacks

class HeadFit(Callback):
    """The volume head's classification pass (``head_fit.DiseaseHeadFit``) on the trainer's current
    generator after an epoch's steps: every epoch, or with ``train.head_fit_epochs`` ``stage_ends``
    after the last epoch of each stage, ``last`` after the run's last epoch (``fits_after``)."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.fit, self.fitted_generator = trainer, None, None

    @staticmethod
    def applies(cfg: Config) -> bool:
        """Whether a run under ``cfg`` fits its head at all (the volume head, with iterations to run)."""
        return cfg.model.classifier == "volumes" and cfg.train.head_fit_iterations > 0

    @staticmethod
    def fits_after(epoch: int, train) -> bool:
        """Whether the pass runs after epoch ``epoch`` (0-based) under ``train`` (a ``TrainConfig``)."""
        ends = {"every": (epoch + 1,), "stage_ends": (train.supervised_epochs, train.epochs), "last": (train.epochs,)}
        return epoch + 1 in ends[train.head_fit_epochs]

    def on_epoch_end(self, epoch, logs):
        t = self.trainer
        if not self.fits_after(epoch, t.base_cfg.train):
            return None
        G, _ = t.inference_model()  # whole images, as prediction reads them
        if self.fitted_generator is not G:  # resizing rebuilds G: the pass reads the new one
            cfg = t.cfg
            self.fit = DiseaseHeadFit(G, t.manifest, cfg.pipeline.sequence_length, t.classification_loss,
                                      cfg.train.head_fit_iterations, class_sampling=cfg.pipeline.class_sampling)
            self.fitted_generator = G
        columns = self.fit.on_epoch_end()
        if G is not t.G:  # the fitted head back into the generator that trains
            t.G.set_weights(G.get_weights())
        return columns


class Validation(Callback):
    """Scores of the current generator on the validation split, as ``val_*`` columns."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def on_epoch_end(self, epoch, logs):
        t = self.trainer
        G, predict_fn = t.inference_model()  # whole images at the saved model's size
        scores = evaluate_prepared(G, t.manifest, "validation", t.base_cfg, predict_fn)
        return {f"val_{k}": v for k, v in scores.items() if k != "patients"}


class BestModelAndCheckpoint(Callback):
    """The kept generator (``generator.keras``: the best on the validation score, or every epoch's
    with ``train.keep_model: last`` or without a validation split), the early-stopping count, then
    the epoch's checkpoint."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def on_epoch_end(self, epoch, logs):
        return {"improved": float(self.trainer.end_epoch(logs.get(f"val_{MONITOR}")))}


class EpochImages(Callback):
    """Figures of the current generator on the first validation patient: its attention coefficients
    (``attention.png``, Cui et al.) with ``model.attention_gates``; input, truth and prediction of the
    middle slice in TensorBoard with ``train.image_summaries`` (called by ``TensorBoard``)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def _first_patient(self):
        manifest = self.trainer.manifest
        ids = manifest.split_ids("validation") or manifest.split_ids("train")
        return ids[0], load_prepared(manifest.patient_file(ids[0]))

    def on_epoch_end(self, epoch, logs):
        t = self.trainer
        if t.cfg.model.attention_gates:
            pid, (image, _) = self._first_patient()
            G, _ = t.inference_model()
            if tuple(image.shape[2:4]) != tuple(t.full_size):
                image = _resized(image, t.full_size)
            save_attention_figure(G, image, os.path.join(t.run_dir, ATTENTION_NAME), f"{pid}, epoch {epoch + 1}")
        return None

    def tensorboard_images(self, epoch):
        tf = import_tf()
        t = self.trainer
        _, (image, label) = self._first_patient()
        _, predict_fn = t.inference_model()
        probs, _ = predict_patient(predict_fn, image, t.cfg.pipeline.sequence_length, 1,
                                   t.base_cfg.pipeline.image_size)
        z = image.shape[1] // 2
        k = max(1, len(t.manifest.class_names) - 1)
        scan = image[0, z, :, :, :1]
        scan = (scan - scan.min()) / max(float(scan.max() - scan.min()), 1e-6)
        panels = np.concatenate([scan, label[0, z][..., None] / k, probs[0, z].argmax(-1)[..., None] / k], axis=1)
        tf.summary.image("validation/input_truth_prediction", panels[None].astype(np.float32), step=epoch + 1)


def _resized(image: np.ndarray, size) -> np.ndarray:
    tf = import_tf()
    p, z, h, w, c = image.shape
    return tf.reshape(tf.image.resize(tf.reshape(image, (-1, h, w, c)), size), (p, z, *size, c)).numpy()


def schedules(cfg: Config, trainer: Trainer) -> list[Callback]:
    """What changes the training before an epoch's steps, in this order: the image size (which
    rebuilds G, D and the GAN step), the disease loss's class weights, the stage."""
    out = []
    if cfg.train.progressive_sizes:
        out.append(ProgressiveResizing(trainer, cfg.train.progressive_sizes, cfg.train.progressive_epochs,
                                       trainer.full_size))
    if cfg.loss.drw_start_epoch:
        out.append(DeferredReweighting(trainer.classification_loss, cfg.loss.drw_start_epoch))
    out.append(TrainingStages(trainer, cfg.train.supervised_epochs))
    return out


def gan_callbacks(cfg: Config, trainer: Trainer, start_epoch: int, verbose: bool = True, started: float | None = None,
                  resume: bool = False) -> list[Callback]:
    """Every behaviour of a GAN training run, in the order the loop calls them. ``started``: when the
    run's process began training (a budget counts from there)."""
    has_validation = bool(trainer.manifest.split_ids("validation"))
    images = EpochImages(trainer)
    history = HistoryFile(trainer.run_dir, start_epoch, LOSS_NAMES)
    out = []
    if cfg.train.budget_minutes:  # first: it lays out the steps every later schedule reads
        out.append(TrainingBudget(trainer, time.time() if started is None else started, resume, verbose))
    out += schedules(cfg, trainer)
    if HeadFit.applies(cfg):
        out.append(HeadFit(trainer))
    if has_validation:
        out.append(Validation(trainer))
    out += [BestModelAndCheckpoint(trainer), history, Curves(trainer.run_dir, history, LOSS_NAMES), images,
            TensorBoard(trainer.run_dir, lambda: int(trainer.gan.g_opt.iterations.numpy()),
                        images.tensorboard_images if cfg.train.image_summaries else None)]
    if has_validation:
        out.append(EarlyStopping(cfg.train.early_stopping_patience, lambda: int(trainer.bad_epochs.numpy())))
    out += [TimeBudget(cfg.train.max_minutes, cfg.train.epochs),
            ProgressBar(trainer.steps_in_epoch, cfg.train.epochs, LOSS_NAMES, MONITOR, verbose=verbose)]
    return out


# ---------------------------------------------------------------- the whole run

def train(cfg: Config, prepared_dir: str, run_dir: str | None = None, resume: bool = False, verbose: bool = True) -> dict:
    """Train (or resume) a run; returns the final summary (also in RUN/summary.json)."""
    started = time.time()
    manifest = load_manifest(prepared_dir)
    if manifest.dataset != cfg.data.dataset:
        raise SvganError(f"prepared for {manifest.dataset} but the config says data.dataset={cfg.data.dataset}", prepared_dir)
    run_dir = run_dir or new_run_dir(cfg)
    if not resume:
        cfg = create_run(cfg, prepared_dir, run_dir)
    trainer = Trainer(cfg, manifest, run_dir)
    if resume and not trainer.restore():
        raise SvganError("no checkpoint to resume from", os.path.join(run_dir, CHECKPOINTS))
    if resume:
        for change in record_resumed_config(cfg, run_dir):
            if verbose:
                print(f"resumed with {change} (saved in {CONFIG_NAME})", flush=True)
    start_epoch = int(trainer.epoch.numpy())
    callbacks = gan_callbacks(cfg, trainer, start_epoch, verbose, started, resume)
    if verbose:
        r = trainer.runtime
        print(f"Training {cfg.data.dataset} from epoch {start_epoch + 1} to {cfg.train.epochs} in {run_dir} "
              f"({r.replicas} replica(s), {r.policy}, "
              f"{'XLA' if r.jit_compile else 'tf.function'}; class weights {np.round(trainer.seg_weights, 2).tolist()})", flush=True)

    last = run_epochs(callbacks, lambda epoch, on_step: trainer.train_epoch(on_step), start_epoch, cfg.train.epochs)
    history = next(c for c in callbacks if isinstance(c, HistoryFile)).rows
    summary = {"stopped": last[STOP]} if STOP in last else {}
    trained = [r for r in history if r.get("steps")]
    if trained:  # over the epochs of this run folder, resumed ones included
        steps, seconds = sum(r["steps"] for r in trained), sum(r["steps"] * r["s_per_step"] for r in trained)
        summary.update({"steps": int(steps), "s_per_step": seconds / steps, "steps_per_s": steps / seconds})
    has_validation = bool(manifest.split_ids("validation"))
    summary.update({"run_dir": run_dir, "epochs_done": int(trainer.epoch.numpy()),
                    "best_validation_dice": float(trainer.best.numpy()) if has_validation else None,
                    "minutes": (time.time() - started) / 60, "history": os.path.join(run_dir, "history.csv"),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    write_summary(run_dir, summary)
    if verbose and summary.get("stopped"):
        print(summary["stopped"])
    return summary
