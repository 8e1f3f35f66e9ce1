"""A training budget in minutes that holds on the machine the run is on (``train.budget_minutes``).

A run bounded by steps takes as long as its machine makes it take; ``train.max_minutes`` stops a
run at a wall-clock limit but cuts its stages and learning-rate schedule wherever the limit falls.
Li, Yumer and Ramanan ("Budgeted Training", ICLR 2020) instead decay the learning rate over the
budget, and AutoGluon times its epochs before it commits to them. ``TrainingBudget`` does both,
and keeps doing it while the run trains:

1. before the first step it times what the run will do on this machine: a few steps of each stage
   the run trains (supervised, adversarial; the first ones compile and are timed apart) on batches
   the run never reads, with the weights put back afterwards; one checkpoint; and the prediction of
   one prepared patient, which the epoch ends repeat for the head fit, validation and the
   TensorBoard image;
2. it scales ``train.steps_per_epoch`` and ``train.adversarial_ramp_steps`` by one factor so that
   the steps, their compilation and every epoch end fit what is left of the budget, and the trainer
   lays out the stages and the learning-rate schedule over those steps (``Trainer.replan``);
3. before every later epoch it plans the remaining epochs' steps again from the step times the run
   has measured so far and the time left (``replan_remaining``): a machine whose steps drift from
   the first measurement (other work, thermal limits, a slower stage) still ends on time. The
   learning-rate horizons and the adversarial stage's start move with the plan
   (``Trainer.set_epoch_steps``), so the schedule still decays to 0 at the run's last step.

The plan (measured times, the steps of every epoch, each re-plan, predicted minutes) goes to the
log and to ``RUN/budget_plan.json``, written before each epoch starts; the run's ``config.yaml``
records the first plan's steps. A resumed run follows the recorded steps of every epoch and does
not plan again (its clock restarted), so it retraces the straight run's batches.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics
import tempfile
import time

from ..data.io import atomic_path
from ..data.prepare import load_prepared
from ..errors import ConfigError
from ..evaluation.inference import predict_patient
from ..evaluation.prepared_report import evaluate_prepared
from ..runs import CONFIG_NAME
from .loop import Callback
from .stages import ADVERSARIAL, SUPERVISED, stage_of

PLAN_NAME = "budget_plan.json"
COMPILE_STEPS = 2  # the first calls of a stage's step trace and compile it
TIMED_STEPS = 4
# The timing batches' pipeline seed: an epoch number no run reaches, so the run's own batches are untouched.
TIMING_EPOCH = 10 ** 6
# Share of the budget held back for what the plan does not time (figures, history, step-time spread).
MARGIN = 0.03
# A re-plan changes the remaining epochs' steps only by at least this share (and one step): step
# times jitter by a few per cent between epochs, and a plan that changes every epoch reads badly.
REPLAN_TOLERANCE = 0.02


@dataclasses.dataclass
class BudgetPlan:
    budget_minutes: float
    planning_seconds: float  # from the start of training to the end of the plan's measurements
    step_seconds: dict  # stage -> median seconds per step
    compile_seconds: dict  # stage -> seconds the first step costs beyond a timed one (paid again after the plan)
    epoch_end_seconds: list  # per epoch: checkpoint, head fit, validation, image
    steps_per_epoch: int
    adversarial_ramp_steps: int
    stages: dict  # stage -> epochs
    predicted_minutes: float
    epoch_steps: list = dataclasses.field(default_factory=list)  # the steps of every epoch, re-planned as the run goes
    replans: list = dataclasses.field(default_factory=list)  # one record per change of epoch_steps

    def describe(self) -> str:
        steps = ", ".join(f"{stage} {self.step_seconds[stage]:.2f} s per step" for stage in self.step_seconds)
        return (f"Budget of {self.budget_minutes:g} minutes: measured {steps}, epoch ends "
                f"{min(self.epoch_end_seconds):.0f}-{max(self.epoch_end_seconds):.0f} s, planning "
                f"{self.planning_seconds:.0f} s; planned {self.steps_per_epoch} steps per epoch ("
                + ", ".join(f"{stage} {epochs} epochs" for stage, epochs in self.stages.items())
                + f"), about {self.predicted_minutes:.1f} minutes in all")


def stage_epochs(train) -> dict:
    counts = {}
    for epoch in range(train.epochs):
        stage = stage_of(epoch, train.supervised_epochs)
        counts[stage] = counts.get(stage, 0) + 1
    return counts


def usable_seconds(train) -> float:
    """``train.budget_minutes`` in seconds, less the ``MARGIN`` held back."""
    return 60.0 * train.budget_minutes * (1.0 - MARGIN)


def plan_steps(train, elapsed_s: float, step_s: dict, compile_s: dict, epoch_end_s: list, reference_steps: int) -> BudgetPlan:
    """The largest steps per epoch that fit ``train.budget_minutes`` (less ``MARGIN``) after ``elapsed_s``."""
    budget_s = usable_seconds(train)
    stages = stage_epochs(train)
    fixed = elapsed_s + sum(epoch_end_s) + sum(compile_s.values())
    per_step_of_each_epoch = sum(epochs * step_s[stage] for stage, epochs in stages.items())
    steps = math.floor((budget_s - fixed) / per_step_of_each_epoch)
    if steps < 1:
        raise ConfigError(f"train.budget_minutes={train.budget_minutes:g} is too small on this machine: planning, "
                          f"compilation and epoch ends alone take {fixed / 60:.1f} minutes")
    ramp = round(train.adversarial_ramp_steps * steps / reference_steps)
    predicted = fixed + steps * per_step_of_each_epoch
    return BudgetPlan(train.budget_minutes, elapsed_s, step_s, compile_s, list(epoch_end_s), steps, ramp, stages,
                      predicted / 60.0, epoch_steps=[steps] * train.epochs)


def replan_remaining(train, elapsed_s: float, epoch_steps: list, done_epochs: int, measured_step_s: dict,
                     planned_step_s: dict, epoch_end_s: list, compile_s: dict) -> list:
    """``epoch_steps`` with the epochs from ``done_epochs`` on re-planned to fit what is left of
    ``train.budget_minutes`` (less ``MARGIN``) after ``elapsed_s``, at the step times measured so far.

    A stage the run has not reached yet is assumed to have slowed or sped up as the measured ones
    did against the plan; its compilation is still to be paid. At least one step per epoch."""
    budget_s = usable_seconds(train)
    remaining = range(done_epochs, train.epochs)
    drift = statistics.mean(measured_step_s[s] / planned_step_s[s] for s in measured_step_s) if measured_step_s else 1.0
    step_s = {s: measured_step_s.get(s, planned_step_s[s] * drift) for s in planned_step_s}
    fixed = elapsed_s + sum(epoch_end_s[e] for e in remaining) + sum(
        compile_s[s] for s in planned_step_s if s not in measured_step_s)
    per_step_of_each_epoch = sum(step_s[stage_of(e, train.supervised_epochs)] for e in remaining)
    steps = max(1, math.floor((budget_s - fixed) / per_step_of_each_epoch)) if per_step_of_each_epoch else 0
    return list(epoch_steps[:done_epochs]) + [steps] * len(remaining)


class TrainingBudget(Callback):
    """Plans a run with ``train.budget_minutes`` before its first step and re-plans its remaining
    epochs before each later one (see the module docstring); a resumed run follows the plan its
    folder records."""

    def __init__(self, trainer, started: float, resume: bool, verbose: bool = True):
        self.trainer, self.started, self.resume, self.verbose = trainer, started, resume, verbose
        self.plan = None
        self.measured = {}  # stage -> [steps, seconds] trained by this process, compilation excluded
        self.path = os.path.join(trainer.run_dir, PLAN_NAME)

    def on_train_begin(self):
        t = self.trainer
        if self.resume:
            if not os.path.isfile(self.path):
                raise ConfigError("train.budget_minutes is set but the run has no budget plan: a budget applies "
                                  "from a run's start", os.path.join(t.run_dir, CONFIG_NAME))
            with open(self.path) as f:
                recorded = json.load(f)
            t.set_epoch_steps(recorded.get("epoch_steps") or [recorded["steps_per_epoch"]] * t.base_cfg.train.epochs)
            return
        cfg = t.base_cfg
        step_s, compile_s = self._time_steps(stage_epochs(cfg.train))
        epoch_end_s = self._time_epoch_ends()
        self.plan = plan_steps(cfg.train, time.time() - self.started, step_s, compile_s, epoch_end_s,
                               t.steps_per_epoch())
        train = dataclasses.replace(cfg.train, steps_per_epoch=self.plan.steps_per_epoch,
                                    adversarial_ramp_steps=self.plan.adversarial_ramp_steps)
        planned = dataclasses.replace(cfg, train=train)
        t.replan(planned)
        t.set_epoch_steps(self.plan.epoch_steps)
        planned.save(os.path.join(t.run_dir, CONFIG_NAME))
        self._write()
        if self.verbose:
            print(self.plan.describe(), flush=True)

    def on_epoch_begin(self, epoch):
        if self.plan is None or not self.measured:  # resumed, or nothing measured yet
            return None
        t, plan = self.trainer, self.plan
        measured_s = {stage: max(seconds, 1e-3) / steps for stage, (steps, seconds) in self.measured.items()}
        elapsed = time.time() - self.started
        steps = replan_remaining(t.base_cfg.train, elapsed, plan.epoch_steps, epoch, measured_s, plan.step_seconds,
                                 plan.epoch_end_seconds, plan.compile_seconds)
        current = plan.epoch_steps[epoch]
        if abs(steps[epoch] - current) < max(1, REPLAN_TOLERANCE * current):
            return None
        plan.epoch_steps = steps
        plan.replans.append({"before_epoch": epoch + 1, "elapsed_seconds": round(elapsed, 1),
                             "step_seconds": {k: round(v, 3) for k, v in measured_s.items()},
                             "steps_per_epoch": steps[epoch]})
        t.set_epoch_steps(steps)
        self._write()
        if self.verbose:
            rates = ", ".join(f"{stage} {s:.2f} s per step (planned {plan.step_seconds[stage]:.2f})"
                              for stage, s in measured_s.items())
            print(f"Budget re-planned before epoch {epoch + 1} at {elapsed / 60:.1f} minutes: measured {rates}; "
                  f"{steps[epoch]} steps per epoch from here instead of {current}", flush=True)
        return None

    def on_epoch_end(self, epoch, logs):
        if self.plan is None or not logs.get("steps"):
            return None
        stage = stage_of(epoch, self.trainer.base_cfg.train.supervised_epochs)
        seconds = logs["steps"] * logs["s_per_step"]
        if stage not in self.measured:  # the stage's first epoch in this process compiled its step
            self.measured[stage] = [0, 0.0]
            seconds -= self.plan.compile_seconds.get(stage, 0.0)
        self.measured[stage][0] += logs["steps"]
        self.measured[stage][1] += max(seconds, 0.0)
        return None

    def _write(self) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w") as f:
            json.dump(dataclasses.asdict(self.plan), f, indent=1)

    def _time_steps(self, stages: dict) -> tuple[dict, dict]:
        t = self.trainer
        saved = [t.G.get_weights(), t.D.get_weights()]
        batches = iter(t._dataset(TIMING_EPOCH, 0))
        step_s, compile_s = {}, {}
        for stage in (SUPERVISED, ADVERSARIAL):
            if stage not in stages:
                continue
            t.gan.stage = stage
            times = []
            for _ in range(COMPILE_STEPS + TIMED_STEPS):
                try:
                    batch = next(batches)
                except StopIteration:
                    batches = iter(t._dataset(TIMING_EPOCH, 0))
                    batch = next(batches)
                begun = time.perf_counter()
                float(t.gan.step(batch)["g_loss"])  # waits for the step
                times.append(time.perf_counter() - begun)
            step_s[stage] = statistics.median(times[COMPILE_STEPS:])
            compile_s[stage] = max(0.0, times[0] - step_s[stage])
        t.G.set_weights(saved[0])
        t.D.set_weights(saved[1])
        return step_s, compile_s

    def _time_epoch_ends(self) -> list:
        from .fit import HeadFit

        t = self.trainer
        cfg, manifest = t.base_cfg, t.manifest
        G, predict_fn = t.inference_model()
        image, _ = load_prepared(manifest.patient_file(manifest.split_ids("train")[0]))
        seconds = []
        for _ in range(2):  # the first compiles the prediction function
            begun = time.perf_counter()
            predict_patient(predict_fn, image, cfg.pipeline.sequence_length, cfg.pipeline.batch_size, cfg.pipeline.image_size)
            seconds.append(time.perf_counter() - begun)
        predict_s = seconds[-1]
        validation_ids = manifest.split_ids("validation")
        validation_s = 0.0
        if validation_ids:
            begun = time.perf_counter()
            evaluate_prepared(G, manifest, "validation", cfg, predict_fn, patient_ids=validation_ids[:1])
            validation_s = (time.perf_counter() - begun) * len(validation_ids)
        folder = tempfile.mkdtemp(prefix=".budget.", dir=t.run_dir)
        try:
            begun = time.perf_counter()
            t.checkpoint.write(os.path.join(folder, "ckpt"))
            t.save_generator(os.path.join(folder, "generator.keras"))
            save_s = time.perf_counter() - begun
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        head_s = len(manifest.split_ids("train")) * predict_s
        image_s = predict_s if cfg.train.image_summaries else 0.0
        return [save_s + validation_s + image_s + (head_s if HeadFit.applies(cfg) and HeadFit.fits_after(e, cfg.train) else 0.0)
                for e in range(cfg.train.epochs)]
