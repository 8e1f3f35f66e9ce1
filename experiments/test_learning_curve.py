"""experiments/learning_curve.py: the budgets it trains are the minutes it claims."""

import importlib.util
import math
import os

import pytest

from svgan.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "configs", "real_acdc.yaml")
# The recipe's shape when the curve was measured (November 2026), so that the recipe itself may change.
NOVEMBER_RECIPE = ["train.epochs=9", "train.supervised_epochs=8", "train.steps_per_epoch=263", "model.base_filters=32",
                   "pipeline.crop_size=[96, 96]", "pipeline.crop_placement=foreground"]


@pytest.fixture(scope="module")
def curve():
    spec = importlib.util.spec_from_file_location("learning_curve", os.path.join(ROOT, "experiments", "learning_curve.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_november_recipe_fills_its_stated_minutes_at_the_reference_rates(curve):
    cfg = load_config(RECIPE, NOVEMBER_RECIPE)
    # 96 x 96 crops: 0.56 of a whole-image supervised step (0.52 s), 0.55 of an adversarial one (1.12 x 0.91 s);
    # base 32 filters: 2.0 and 1.74 times the base-16 steps
    supervised, adversarial = 0.52 * 0.56 * 2.0, 1.12 * 0.91 * 0.55 * 1.74
    by_hand = (8 * 263 * supervised + 1 * 263 * adversarial) / 60  # 8 supervised epochs, 1 adversarial, 263 steps each
    assert curve.reference_minutes(cfg) == pytest.approx(by_hand)
    assert 20 <= curve.reference_minutes(cfg) <= 30  # the 25-30 minutes with validation on top


def test_a_step_on_an_unmeasured_crop_costs_its_share_of_the_pixels(curve):
    whole = load_config(RECIPE, NOVEMBER_RECIPE + ["pipeline.crop_size=null", "model.base_filters=16", "train.steps_per_epoch=500"])
    half = load_config(RECIPE, NOVEMBER_RECIPE + ["pipeline.crop_size=[64, 128]", "model.base_filters=16", "train.steps_per_epoch=500"])
    assert curve.reference_minutes(half) == pytest.approx(curve.reference_minutes(whole) / 2)
    assert curve.reference_minutes(whole) == pytest.approx((8 * 500 * 0.52 + 500 * 1.12 * 0.91) / 60)


@pytest.mark.parametrize("variant", ["recipe", "gan_from_step_one"])
def test_each_variant_at_ten_minutes_has_the_steps_of_ten_minutes(curve, variant):
    cfg = load_config(RECIPE, NOVEMBER_RECIPE + curve.variant_overrides(load_config(RECIPE, NOVEMBER_RECIPE), variant, 10.0))
    assert curve.variant_of(cfg) == variant
    assert cfg.train.epochs == 9
    one_epoch_of_one_step = curve.reference_minutes(load_config(RECIPE, NOVEMBER_RECIPE + ["train.steps_per_epoch=1"]
                                                                + (["train.supervised_epochs=0"] if variant != "recipe" else [])))
    # rounding each epoch's steps to a whole number moves the total by at most half a step per epoch
    assert abs(curve.reference_minutes(cfg) - 10.0) <= one_epoch_of_one_step / 2 + 1e-9


def test_a_run_that_never_leaves_the_supervised_stage_is_its_own_curve(curve):
    assert curve.variant_of(load_config(RECIPE, NOVEMBER_RECIPE + ["train.supervised_epochs=9"])) == "supervised_only"
    assert curve.variant_of(load_config(RECIPE, NOVEMBER_RECIPE + ["loss.adversarial_weight=0"])) == "supervised_only"


def test_minutes_to_reach_a_dice_on_a_line_in_log_minutes(curve):
    # 10 min -> 0.80 and 100 min -> 0.90: 0.85 lies half-way in log minutes, at sqrt(10 * 100) minutes
    windows = "recipe, 96 x 96 windows on the heart"
    rows = [{"variant": "recipe", "input": "96 x 96 windows on the heart", "minutes": 10.0, "dice_RV": 0.80},
            {"variant": "recipe", "input": "96 x 96 windows on the heart", "minutes": 100.0, "dice_RV": 0.90}]
    assert curve.minutes_to_reach(rows, windows, "RV", 0.85) == pytest.approx(31.6227766)
    # 0.95 is beyond both points: the line carries on, 0.15 above 0.80 is 1.5 decades above 10 minutes
    assert curve.minutes_to_reach(rows, windows, "RV", 0.95) == pytest.approx(10 * 10 ** 1.5)
    assert curve.minutes_to_reach(rows, windows, "RV", 0.75) == pytest.approx(10 / 10 ** 0.5)  # below both points
    assert math.isnan(curve.minutes_to_reach(rows[:1], windows, "RV", 0.85))  # one budget: no line
    falling = [dict(rows[0], dice_RV=0.9), dict(rows[1], dice_RV=0.8)]
    assert math.isnan(curve.minutes_to_reach(falling, windows, "RV", 0.95))
    # a point of the same variant on other input is another curve, not a third point of this one
    whole_images = dict(rows[0], input="whole images", dice_RV=0.5)
    assert curve.minutes_to_reach(rows + [whole_images], windows, "RV", 0.85) == pytest.approx(31.6227766)


def test_runs_on_whole_images_and_on_windows_are_separate_curves(curve):
    base16 = ["model.base_filters=16"]  # the width the curves' earlier rows were trained at: no suffix
    assert curve.training_input(load_config(RECIPE, NOVEMBER_RECIPE + base16)) == "96 x 96 windows on the heart"
    assert curve.training_input(load_config(RECIPE, NOVEMBER_RECIPE + base16 + ["pipeline.crop_size=null"])) == "whole images"
    assert curve.training_input(load_config(RECIPE, NOVEMBER_RECIPE + base16 + ["pipeline.crop_placement=anywhere"])) == "96 x 96 windows anywhere"
    assert curve.training_input(load_config(RECIPE, NOVEMBER_RECIPE + base16 + ["pipeline.foreground_fraction=0.33"])) == \
        "96 x 96 windows, 0.33 on the heart"
    assert curve.training_input(load_config(RECIPE, NOVEMBER_RECIPE + ["pipeline.crop_size=null"])) == "whole images, base 32 filters"


def test_a_table_written_by_one_call_reads_back_as_the_same_rows(curve, tmp_path):
    from svgan.data.io import write_csv

    rows = [{"variant": "recipe", "input": "whole images", "minutes": 24.2, "dice_LV": 0.887, "steps": 2520,
             "minutes_here": math.nan},
            {"variant": "gan_from_step_one", "input": "whole images", "minutes": 9.9, "dice_LV": 0.81, "steps": 585,
             "minutes_here": 30.5}]
    write_csv(str(tmp_path / "learning_curve.csv"), rows)
    back = curve.read_table(str(tmp_path / "learning_curve.csv"))
    assert [r["variant"] for r in back] == ["recipe", "gan_from_step_one"]
    assert [r["minutes"] for r in back] == [24.2, 9.9] and [r["steps"] for r in back] == [2520, 585]
    assert math.isnan(back[0]["minutes_here"]) and back[1]["minutes_here"] == 30.5


def test_a_run_of_another_recipe_is_not_resumed_under_this_one(curve):
    recipe = load_config(RECIPE, NOVEMBER_RECIPE)
    assert curve.changed_settings(recipe, load_config(RECIPE, NOVEMBER_RECIPE)) == []
    whole_images = load_config(RECIPE, NOVEMBER_RECIPE + ["pipeline.crop_size=null", "train.steps_per_epoch=280"])
    assert curve.changed_settings(whole_images, recipe) == ["pipeline.crop_size", "train.steps_per_epoch"]


def test_a_generator_width_without_a_measured_step_cost_is_an_error(curve):
    # Base 32's measured cost is pinned by hand in the recipe's minutes above and its own curve in
    # the labels above; a width nobody timed must not be priced by a guess.
    with pytest.raises(ValueError, match="base_filters=24"):
        curve.reference_minutes(load_config(RECIPE, NOVEMBER_RECIPE + ["model.base_filters=24"]))
