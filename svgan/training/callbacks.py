"""Training behaviours that any loop of ``loop.run_epochs`` can use: progress bar, history file,
curves, TensorBoard scalars, the time budget and early stopping."""

from __future__ import annotations

import math
import os
import time

from .._tf import import_tf
from ..figures import pyplot, save_figure
from ..runs import CURVES_NAME, LOGS, read_history, write_history
from .loop import STOP, Callback


class ProgressBar(Callback):
    """A Keras progress bar per epoch, and one line per epoch with its losses and ``monitor``."""

    def __init__(self, steps_per_epoch, epochs: int, loss_names, monitor: str | None = None, title: str = "Epoch",
                 verbose: bool = True):
        """``steps_per_epoch``: a function of the epoch (0-based) giving its number of steps."""
        self.steps_per_epoch, self.epochs, self.loss_names = steps_per_epoch, epochs, list(loss_names)
        self.monitor, self.title, self.verbose = monitor, title, verbose
        self.bar = None

    def on_epoch_begin(self, epoch):
        import keras

        if self.verbose:
            print(f"{self.title} {epoch + 1}/{self.epochs}", flush=True)
        self.bar = keras.utils.Progbar(self.steps_per_epoch(epoch), stateful_metrics=self.loss_names, verbose=int(self.verbose))

    def on_step_end(self, step, losses):
        self.bar.update(step, list(losses.items()))

    def on_epoch_end(self, epoch, logs):
        if not self.verbose:
            return None
        line = ", ".join(f"{k} {logs[k]:.4f}" for k in self.loss_names if k in logs)
        if self.monitor and f"val_{self.monitor}" in logs:
            line += f" validation Dice {logs[f'val_{self.monitor}']:.3f}" + (" (best)" if logs.get("improved") else "")
        print(f"epoch {epoch + 1}: {line}", flush=True)
        return None


class HistoryFile(Callback):
    """``history.csv`` of the run folder: every epoch's row with its ``seconds`` (from this callback's
    epoch begin to its epoch end: steps, and whatever runs before it), rewritten after each epoch. On
    resume the rows up to the epoch the run restarts from are kept and the rest dropped."""

    def __init__(self, run_dir: str, start_epoch: int, first_columns=()):
        self.run_dir, self.first_columns = run_dir, list(first_columns)
        self.rows = read_history(run_dir, up_to_epoch=start_epoch) if start_epoch else []
        self.epoch_started = time.time()

    def on_epoch_begin(self, epoch):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs):
        self.rows.append({**logs, "seconds": time.time() - self.epoch_started})
        write_history(self.run_dir, self.rows, ["epoch", *self.first_columns])
        return None


class Curves(Callback):
    """``curves.png``: the losses and the validation Dice (and accuracy) of every epoch so far."""

    def __init__(self, run_dir: str, history: HistoryFile, loss_names):
        self.path, self.history, self.loss_names = os.path.join(run_dir, CURVES_NAME), history, list(loss_names)

    def on_epoch_end(self, epoch, logs):
        plot_curves(self.history.rows, self.path, self.loss_names)
        return None


def plot_curves(rows: list[dict], path: str, loss_names) -> None:
    plt = pyplot()

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k in loss_names:
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
    save_figure(fig, path)


class TensorBoard(Callback):
    """TensorBoard scalars in ``RUN/logs``: every step's losses at the optimizer's update count
    (``global_step()``), every epoch's numeric columns, and ``epoch_images(epoch)`` if given."""

    def __init__(self, run_dir: str, global_step, epoch_images=None):
        self.writer = import_tf().summary.create_file_writer(os.path.join(run_dir, LOGS))
        self.global_step, self.epoch_images = global_step, epoch_images

    def on_step_end(self, step, losses):
        tf = import_tf()
        with self.writer.as_default(step=self.global_step()):
            for k, v in losses.items():
                tf.summary.scalar(f"train/{k}", v)

    def on_epoch_end(self, epoch, logs):
        tf = import_tf()
        with self.writer.as_default(step=epoch + 1):
            for k, v in logs.items():
                if k != "epoch" and isinstance(v, float) and math.isfinite(v):
                    tf.summary.scalar(f"epoch/{k}", v)
            if self.epoch_images:
                self.epoch_images(epoch)
        self.writer.flush()
        return None


def out_of_time(elapsed_s: float, last_epoch_s: float, max_minutes: float | None) -> bool:
    """Whether the next epoch, if it lasts as long as the last one, would end past the budget.

    So ``train.max_minutes`` bounds the whole run (only a first epoch longer than the
    budget can overrun it).
    """
    return max_minutes is not None and elapsed_s + last_epoch_s > 60.0 * max_minutes


class TimeBudget(Callback):
    """Stops before an epoch that, lasting as long as the last one, would end past ``max_minutes``
    of the whole run."""

    def __init__(self, max_minutes: float | None, epochs: int):
        self.max_minutes, self.epochs = max_minutes, epochs
        self.started = self.epoch_started = time.time()

    def on_train_begin(self):
        self.started = time.time()

    def on_epoch_begin(self, epoch):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs):
        seconds = time.time() - self.epoch_started
        if epoch + 1 < self.epochs and out_of_time(time.time() - self.started, seconds, self.max_minutes):
            return {STOP: f"time budget of {self.max_minutes} minutes: another epoch of "
                          f"{seconds / 60:.1f} minutes would not end within it"}
        return None


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a better validation score; ``bad_epochs()`` reads the
    count, which lives in the checkpoint so that it survives a resume."""

    def __init__(self, patience: int | None, bad_epochs):
        self.patience, self.bad_epochs = patience, bad_epochs

    def on_epoch_end(self, epoch, logs):
        if self.patience is not None and self.bad_epochs() >= self.patience:
            return {STOP: f"early stopping after {self.patience} epochs without a better validation Dice"}
        return None
