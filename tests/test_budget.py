"""train.budget_minutes: steps timed first, the schedule fitted to the budget, the plan kept for a resume;
and the head fit's schedule (train.head_fit_epochs)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import yaml

from svgan.config import load_config
from svgan.errors import ConfigError
from svgan.runs import read_history
from svgan.training.budget import PLAN_NAME, plan_steps
from svgan.training.fit import TrainingInterrupted, train

from conftest import interrupted_at_call, tiny_config


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

    # Measured times stood in by fixed ones, so that the plan is a few steps on any machine.
    monkeypatch.setattr(TrainingBudget, "_time_steps", lambda self, stages: ({"supervised": 5.0, "adversarial": 10.0},
                                                                             {"supervised": 0.0, "adversarial": 0.0}))
    monkeypatch.setattr(TrainingBudget, "_time_epoch_ends", lambda self: [0.0, 0.0])
    cfg = tiny_config("acdc", "train.epochs=2", "train.supervised_epochs=1", "train.steps_per_epoch=40",
                      "train.adversarial_ramp_steps=20", "train.budget_minutes=3")
    run = str(tmp_path / "run")
    interrupted_at_call(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted):
        train(cfg, acdc_prepared, run_dir=run, verbose=False)
    with open(os.path.join(run, PLAN_NAME)) as f:
        plan = json.load(f)
    # (3 minutes less the 3 % margin, 174.6 s, less the time to build the run and plan) / (5 + 10) s per
    # step of each epoch; the stand-in epoch ends and compilation cost nothing
    assert plan["steps_per_epoch"] == math.floor((60.0 * 3 * (1.0 - 0.03) - plan["planning_seconds"]) / 15)
    assert 1 <= plan["steps_per_epoch"] <= 11
    assert plan["adversarial_ramp_steps"] == round(20 * plan["steps_per_epoch"] / 40)
    with open(os.path.join(run, "config.yaml")) as f:
        recorded = yaml.safe_load(f)["train"]
    assert recorded["steps_per_epoch"] == plan["steps_per_epoch"]
    assert recorded["adversarial_ramp_steps"] == plan["adversarial_ramp_steps"]
    monkeypatch.setattr(TrainingBudget, "_time_steps", lambda self, stages: pytest.fail("a resume measured again"))
    train(load_config(os.path.join(run, "config.yaml")), acdc_prepared, run_dir=run, resume=True, verbose=False)
    # Two steps before the interruption, the rest of the planned epoch after it, then a whole planned one.
    assert [r["steps"] for r in read_history(run)] == [plan["steps_per_epoch"] - 2, plan["steps_per_epoch"]]


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
