import glob
import os

import pytest

from svgan.config import Config, load_config
from svgan.errors import ConfigError

from conftest import REPO


def test_defaults_are_the_papers_values():
    cfg = Config().validate()
    assert cfg.augment.rotation_degrees == 10.0  # Rezaei et al.: rotation between -10 and 10 degrees
    assert cfg.prepare.zscore and cfg.prepare.nyul and cfg.prepare.n4_bias_correction  # Rezaei et al. section 3
    assert cfg.data.resolved_modalities() == ("flair", "t1", "t1ce", "t2")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))))
def test_shipped_configs_load(path):
    import yaml

    from svgan.config import load_images_config

    with open(path) as f:
        sections = set(yaml.safe_load(f))
    if sections & {"cyclegan", "classifier"}:  # the 2D image path's configuration (Zunair and Ben Hamza)
        assert load_images_config(path).data.image_size
    else:
        assert load_config(path).data.dataset in ("brats", "acdc")


def test_set_overrides_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  batch_size: 4\n")
    cfg = load_config(path, ["pipeline.batch_size=8", "augment.scale_range=[0.8, 1.2]", "train.learning_rate=1e-3"])
    assert cfg.pipeline.batch_size == 8
    assert cfg.train.learning_rate == 0.001  # YAML reads 1e-3 as a string; we read it as a number
    assert cfg.augment.scale_range == [0.8, 1.2]


def test_a_bare_on_or_off_means_the_setting_not_a_boolean(tmp_path):
    # YAML 1.1 reads unquoted on / off as true / false; the settings that take "on" / "off" accept them.
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  jit_compile: on\n  mixed_precision: off\n")
    cfg = load_config(path)
    assert (cfg.train.jit_compile, cfg.train.mixed_precision) == ("on", "off")
    assert load_config(None, ["train.jit_compile=off"]).train.jit_compile == "off"
    with pytest.raises(ConfigError, match="is not one of"):  # a setting without on / off still refuses booleans
        load_config(None, ["train.lr_schedule=on"])


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(None, ["data.dataset=acdc", "pipeline.sequence_length=16"])
    cfg.save(tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("pipeline.batch_size=0", "pipeline.batch_size must be >= 1"),
    ("pipeline.batch_size=two", "expected an integer"),
    ("pipeline.bacth_size=2", "unknown field pipeline.bacth_size"),
    ("prepare.crop=middle", "is not one of"),
    ("prepare.split_fractions=[0.5, 0.5, 0.5]", "summing to 1"),
    ("data.modalities=[flair, dwi]", "unknown modality 'dwi'"),
    ("augment.rotation_degrees=-5", "rotation_degrees"),
    ("augment.gamma_range=[1.5, 0.7]", r"augment.gamma_range must be \[lo, hi\]"),
    ("augment.contrast_range=[0, 1]", r"augment.contrast_range must be \[lo, hi\]"),
])
def test_bad_values_give_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_acdc_sequences_must_split_evenly_into_ed_and_es():
    with pytest.raises(ConfigError, match="a multiple of acdc.s 2 phases"):
        load_config(None, ["data.dataset=acdc", "pipeline.sequence_length=7"])


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("pipeline: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_removed_setting_loads_at_its_inert_value_and_is_refused_otherwise(tmp_path):
    old_run = tmp_path / "config.yaml"
    old_run.write_text("postprocess:\n  largest_component: true\n  foreground_window: false\n")
    assert load_config(str(old_run)).postprocess.largest_component  # a run folder saved before the removal loads
    with pytest.raises(ConfigError, match="postprocess.foreground_window: the two-pass window prediction was removed"):
        load_config(str(old_run), ["postprocess.foreground_window=true"])
