"""One protocol for training loops: epochs of steps, and small callback objects around them.

Every training behaviour (stages, schedules, resizing, re-weighting, validation, the best
model, checkpoints, history, curves, logging, budgets) is a ``Callback``; ``run_epochs``
calls them in list order:

    on_train_begin()                   once, before the first epoch
    on_epoch_begin(epoch) -> columns   before the epoch's steps (epoch counts from 0)
    on_step_end(step, losses)          after every step (step counts from 1 within the epoch)
    on_epoch_end(epoch, logs) -> columns
                                       after the steps; ``logs`` is the epoch's history row so far
                                       (the losses, then every earlier callback's columns)
    on_train_end(logs)                 once, with the last row (and ``stopped`` if one stopped)

A callback stops training after the current epoch by returning ``{STOP: "why"}`` from
``on_epoch_end``. Callbacks read the models from the trainer when they need them, never
keep them: a schedule may rebuild them (progressive resizing does).
"""

from __future__ import annotations

from ..errors import SvganError

STOP = "stopped"


class TrainingError(SvganError):
    """Training cannot go on (non-finite loss, empty split); one line names the run folder."""


class TrainingInterrupted(SvganError):
    """Ctrl-C: a checkpoint was saved; the run can be resumed."""


class Callback:
    """A training behaviour; override the hooks it needs (each returns history columns or nothing)."""

    def on_train_begin(self) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> dict | None:
        return None

    def on_step_end(self, step: int, losses: dict) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> dict | None:
        return None

    def on_train_end(self, logs: dict) -> None:
        pass


def run_epochs(callbacks: list[Callback], train_epoch, start_epoch: int, epochs: int) -> dict:
    """Epochs ``start_epoch`` .. ``epochs - 1``: ``train_epoch(epoch, on_step)`` runs one epoch's steps,
    calling ``on_step(step, losses)`` after each, and returns its columns (mean losses, seconds).
    Returns the last epoch's row (with ``STOP`` where a callback stopped the run)."""
    for callback in callbacks:
        callback.on_train_begin()

    def on_step(step: int, losses: dict) -> None:
        for callback in callbacks:
            callback.on_step_end(step, losses)

    logs = {}
    for epoch in range(start_epoch, epochs):
        logs = {"epoch": epoch + 1}
        for callback in callbacks:
            logs.update(callback.on_epoch_begin(epoch) or {})
        logs.update(train_epoch(epoch, on_step))
        for callback in callbacks:
            logs.update(callback.on_epoch_end(epoch, logs) or {})
        if STOP in logs:
            break
    for callback in callbacks:
        callback.on_train_end(logs)
    return logs
