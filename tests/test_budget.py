"""train.budget_minutes: steps timed first, the schedule fitted to the budget, the plan kept for a resume;
and the head fit's schedule (train.head_fit_epochs)."""

from __future__ import annotations

import json
import math
import os
import types

import numpy as np
import pytest
import yaml

from svgan.config import load_config
from svgan.errors import ConfigError
from svgan.runs import read_history
from svgan.training.budget import PLAN_NAME, plan_steps, replan_remaining
from svgan.training.fit import TrainingInterrupted, train

from conftest import interrupted_at_call, tiny_config


def step_clock(monkeypatch, seconds_per_step: dict) -> None:
    """The trainer's and the budget's clock stands still except that every training step advances it
    by ``seconds_per_step[stage]``: a machine with known step times, whatever this one's are."""
    from svgan.training import budget, fit, gan_step

    clock = {"now": 1.0e6}
    fake_time = types.SimpleNamespace(time=lambda: clock["now"], perf_counter=lambda: clock["now"])
    monkeypatch.setattr(fit, "time", fake_time)
    monkeypatch.setattr(budget, "time", fake_time)
    real_step = gan_step.GANStep.step

    def timed_step(gan, batch):
        clock["now"] += seconds_per_step[gan.stage]
        return real_step(gan, batch)

    monkeypatch.setattr(gan_step.GANStep, "step", timed_step)


def planned_times(monkeypatch, step_s: dict, epochs: int) -> None:
    """The budget's measurements stood in by ``step_s`` per stage, no compilation and free epoch ends."""
    from svgan.training.budget import TrainingBudget

    monkeypatch.setattr(TrainingBudget, "_time_steps", lambda self, stages: (dict(step_s), {s: 0.0 for s in step_s}))
    monkeypatch.setattr(TrainingBudget, "_time_epoch_ends", lambda self: [0.0] * epochs)


def test_plan_fits_steps_compilation_and_epoch_ends_by_hand():
    train_cfg = load_config(None, ["train.budget_minutes=10", "train.epochs=3", "train.supervised_epochs=2",
                                   "train.steps_per_epoch=20", "train.adversarial_ramp_steps=10"]).train
    plan = plan_steps(train_cfg, elapsed_s=20.0, step_s={"supervised": 1.0, "adversarial": 2.0},
                      compile_s={"supervised": 4.0, "adversarial": 6.0}, epoch_end_s=[5.0, 5.0, 5.0], reference_steps=20)
    # 600 s less the 3 % margin = 582 s; fixed 20 + 15 + 10 = 45 s; an epoch's step costs 2 x 1.0 + 1 x 2.0 = 4 s.
    assert plan.steps_per_epoch == 134  # floor((582 - 45) / 4)
    assert plan.adversarial_ramp_steps == 67  # the ramp keeps its share of an epoch: 10 / 20
    assert plan.predicted_minutes == pytest.approx((45 + 134 * 4) / 60)
    assert plan.stages == {"supervised": 2, "adversarial": 1}


def test_replan_fits_the_remaining_epochs_to_the_step_times_measured_so_far_by_hand():
    train_cfg = load_config(None, ["train.budget_minutes=10", "train.epochs=3", "train.supervised_epochs=2"]).train
    planned = {"supervised": 1.0, "adversarial": 2.0}
    # After epoch 1 of 134 steps, at 200 s: supervised steps ran at 1.25 s, so the adversarial stage is
    # assumed 25 % slower too (2.5 s) and its 6 s compilation is still to come.
    steps = replan_remaining(train_cfg, elapsed_s=200.0, epoch_steps=[134, 134, 134], done_epochs=1,
                             measured_step_s={"supervised": 1.25}, planned_step_s=planned,
                             epoch_end_s=[5.0, 5.0, 5.0], compile_s={"supervised": 4.0, "adversarial": 6.0})
    # 582 s less 200 elapsed, 10 of epoch ends and 6 of compilation = 366 s; an epoch's step costs 1.25 + 2.5.
    assert steps == [134, 97, 97]  # floor(366 / 3.75) = 97
    # Both stages measured, the run ahead of plan: the last epoch grows.
    steps = replan_remaining(train_cfg, elapsed_s=400.0, epoch_steps=[134, 97, 97], done_epochs=2,
                             measured_step_s={"supervised": 1.0, "adversarial": 1.5}, planned_step_s=planned,
                             epoch_end_s=[5.0, 5.0, 5.0], compile_s={"supervised": 4.0, "adversarial": 6.0})
    assert steps == [134, 97, 118]  # floor((582 - 400 - 5) / 1.5) = 118


def test_a_budget_too_small_is_one_clear_error():
    train_cfg = load_config(None, ["train.budget_minutes=0.1", "train.epochs=2"]).train
    with pytest.raises(ConfigError, match="too small on this machine"):
        plan_steps(train_cfg, 5.0, {"adversarial": 1.0}, {"adversarial": 1.0}, [1.0, 1.0], 10)


@pytest.mark.slow
def test_timing_measures_each_stage_and_puts_the_weights_back(acdc_prepared, tmp_path):
    from svgan.data.manifest import load_manifest
    from svgan.training.budget import TrainingBudget
    from svgan.training.fit import Trainer

    cfg = tiny_config("acdc", "train.epochs=2", "train.supervised_epochs=1", "train.steps_per_epoch=3")
    trainer = Trainer(cfg, load_manifest(acdc_prepared), str(tmp_path))
    before = [w.copy() for w in trainer.G.get_weights()]
    budget = TrainingBudget(trainer, started=0.0, resume=False, verbose=False)
    step_s, compile_s = budget._time_steps({"supervised": 1, "adversarial": 1})
    assert set(step_s) == set(compile_s) == {"supervised", "adversarial"} and min(step_s.values()) > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, trainer.G.get_weights()))
    ends = budget._time_epoch_ends()
    assert len(ends) == 2 and min(ends) > 0
    assert os.listdir(tmp_path) == []  # the timed checkpoint is not left behind


@pytest.mark.slow
def test_budgeted_run_records_its_plan_trains_it_and_a_resume_follows_it(acdc_prepared, tmp_path, monkeypatch):
    from svgan.training.budget import TrainingBudget

    # Steps take what the plan measured, so the plan holds and is never changed.
    planned_times(monkeypatch, {"supervised": 5.0, "adversarial": 10.0}, epochs=2)
    step_clock(monkeypatch, {"supervised": 5.0, "adversarial": 10.0})
    cfg = tiny_config("acdc", "train.epochs=2", "train.supervised_epochs=1", "train.steps_per_epoch=40",
                      "train.adversarial_ramp_steps=20", "train.budget_minutes=3")
    run = str(tmp_path / "run")
    interrupted_at_call(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted):
        train(cfg, acdc_prepared, run_dir=run, verbose=False)
    with open(os.path.join(run, PLAN_NAME)) as f:
        plan = json.load(f)
    # 3 minutes less the 3 % margin, 174.6 s, over (5 + 10) s per step of each epoch; building the run
    # and planning took no time on the stopped clock
    assert plan["planning_seconds"] == 0.0
    assert plan["steps_per_epoch"] == 11 and plan["epoch_steps"] == [11, 11]
    assert plan["adversarial_ramp_steps"] == round(20 * 11 / 40)
    with open(os.path.join(run, "config.yaml")) as f:
        recorded = yaml.safe_load(f)["train"]
    assert recorded["steps_per_epoch"] == plan["steps_per_epoch"]
    assert recorded["adversarial_ramp_steps"] == plan["adversarial_ramp_steps"]
    monkeypatch.setattr(TrainingBudget, "_time_steps", lambda self, stages: pytest.fail("a resume measured again"))
    train(load_config(os.path.join(run, "config.yaml")), acdc_prepared, run_dir=run, resume=True, verbose=False)
    # Two steps before the interruption, the rest of the planned epoch after it, then a whole planned one.
    assert [r["steps"] for r in read_history(run)] == [9, 11]


def _checkpointed_state(run: str) -> dict:
    """Every variable of the run's last checkpoint (weights, optimizer slots, counters) but the count of saves."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(run, "checkpoints")))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


@pytest.mark.slow
def test_steps_slower_than_planned_shorten_the_later_epochs_and_a_resume_retraces_the_re_planned_run(
        acdc_prepared, tmp_path, monkeypatch):
    from svgan.training import budget

    planned_times(monkeypatch, {"supervised": 5.0, "adversarial": 10.0}, epochs=2)
    step_clock(monkeypatch, {"supervised": 7.5, "adversarial": 15.0})  # every step 1.5x the measurement
    trainers = []
    real_init = budget.TrainingBudget.__init__
    monkeypatch.setattr(budget.TrainingBudget, "__init__",
                        lambda self, trainer, *a, **k: (trainers.append(trainer), real_init(self, trainer, *a, **k))[1])
    cfg = tiny_config("acdc", "train.epochs=2", "train.supervised_epochs=1", "train.steps_per_epoch=40",
                      "train.adversarial_ramp_steps=0", "train.budget_minutes=3", "train.lr_schedule=cosine")
    straight = str(tmp_path / "straight")
    summary = train(cfg, acdc_prepared, run_dir=straight, verbose=False)
    with open(os.path.join(straight, PLAN_NAME)) as f:
        plan = json.load(f)
    # Planned: floor(174.6 / 15) = 11 steps per epoch. After epoch 1 (11 x 7.5 = 82.5 s) the adversarial
    # stage is assumed 1.5x slower too: floor((174.6 - 82.5) / 15) = 6 steps.
    assert plan["epoch_steps"] == [11, 6]
    assert plan["replans"] == [{"before_epoch": 2, "elapsed_seconds": 82.5, "step_seconds": {"supervised": 7.5},
                                "steps_per_epoch": 6}]
    assert [r["steps"] for r in read_history(straight)] == [11, 6]
    assert summary["minutes"] * 60 == pytest.approx(11 * 7.5 + 6 * 15.0)  # 172.5 s: inside the budget
    gan = trainers[-1].gan  # the schedule ends with the re-planned run: cosine to 0 at update 17
    assert float(gan.g_rate.decay_steps) == 17 and float(gan.adversarial_weight.start) == 11
    assert float(gan.g_rate(16)) > 0 and float(gan.g_rate(17)) == pytest.approx(0.0, abs=1e-12)

    # Interrupted after the re-plan (epoch 2, step 2), then resumed: the resume follows the recorded
    # steps, horizons included, and ends with the straight run's weights.
    interrupted = str(tmp_path / "interrupted")
    with monkeypatch.context() as patched:
        interrupted_at_call(patched, 11 + 3)
        with pytest.raises(TrainingInterrupted, match="interrupted at epoch 2, step 2"):
            train(cfg, acdc_prepared, run_dir=interrupted, verbose=False)
    train(load_config(os.path.join(interrupted, "config.yaml")), acdc_prepared, run_dir=interrupted, resume=True,
          verbose=False)
    assert float(trainers[-1].gan.g_rate.decay_steps) == 17
    assert [r["steps"] for r in read_history(interrupted)] == [11, 4]
    straight_state, resumed_state = _checkpointed_state(straight), _checkpointed_state(interrupted)
    assert straight_state.keys() == resumed_state.keys()
    assert any(k.startswith("g_opt/_trainable_variables/") for k in straight_state)  # the generator's weights
    assert all(np.array_equal(straight_state[k], resumed_state[k]) for k in straight_state)


@pytest.mark.slow
@pytest.mark.parametrize("when, fitted_after", [("stage_ends", [2, 4]), ("last", [4])])
def test_head_fit_runs_after_the_epochs_its_setting_names_only(acdc_prepared, tmp_path, when, fitted_after):
    cfg = tiny_config("acdc", "model.classifier=volumes", "train.epochs=4", "train.supervised_epochs=2",
                      "train.steps_per_epoch=2", f"train.head_fit_epochs={when}", "train.keep_model=last",
                      "train.early_stopping_patience=null", "train.head_fit_iterations=5")
    run = str(tmp_path / "run")
    train(cfg, acdc_prepared, run_dir=run, verbose=False)
    fitted = [r["epoch"] for r in read_history(run) if "head_fit_loss" in r]
    assert fitted == fitted_after


@pytest.mark.parametrize("when", ["stage_ends", "last"])
def test_head_fit_at_some_epochs_refuses_a_kept_model_it_may_not_have_fitted(when):
    with pytest.raises(ConfigError, match=f"head_fit_epochs: {when} needs train.keep_model: last"):
        load_config(None, [f"train.head_fit_epochs={when}", "train.keep_model=best_validation"])


def test_set_horizon_moves_both_rates_and_the_adversarial_start_by_hand(acdc_prepared, tmp_path):
    from svgan.data.manifest import load_manifest
    from svgan.training.fit import Trainer

    cfg = tiny_config("acdc", "train.lr_schedule=cosine", "train.learning_rate=0.01", "train.epochs=2",
                      "train.supervised_epochs=1", "train.steps_per_epoch=10", "train.adversarial_ramp_steps=0",
                      "loss.adversarial_weight=0.5")
    gan = Trainer(cfg, load_manifest(acdc_prepared), str(tmp_path)).gan
    cosine = lambda k, total: 0.01 * 0.5 * (1 + math.cos(math.pi * min(k, total) / total))  # noqa: E731
    assert float(gan.g_rate(5)) == pytest.approx(cosine(5, 20))  # the plan: 20 updates, the stage at 10
    assert float(gan.adversarial_weight(9)) == 0.0 and float(gan.adversarial_weight(10)) == 0.5
    gan.set_horizon(total_steps=16, adversarial_start=6)
    assert float(gan.g_rate(5)) == pytest.approx(cosine(5, 16))
    assert float(gan.d_rate(3)) == pytest.approx(cosine(3, 10))  # D updates from the stage's start: 16 - 6
    assert float(gan.adversarial_weight(5)) == 0.0 and float(gan.adversarial_weight(6)) == 0.5
