"""The GAN step and the training loop: gradients, tf.distribute, learning, exact resume, failures."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.cli import main
from svgan.config import load_config
from svgan.data.manifest import load_manifest
from svgan.data.pipeline import make_dataset
from svgan.evaluation.prepared_report import evaluate_prepared
from svgan.runs import record_resumed_config
from svgan.training import gan_step
from svgan.training.fit import TrainingError, TrainingInterrupted, Trainer, train
from svgan.training.runtime import Runtime, choose_policy, cpu_computes_bfloat16

from conftest import REPO, TINY_MODEL, interrupted_at_call, tiny_config, tiny_overrides

tf = import_tf()
import keras  # noqa: E402


def _cfg(*overrides):
    return tiny_config("brats", "train.steps_per_epoch=3", "train.epochs=2", "pipeline.batch_size=2",
                       "loss.adversarial_weight=0.1", *overrides)


def _batch(manifest, cfg):
    b = next(iter(make_dataset(manifest, "train", cfg, training=True)))
    return {k: b[k] for k in ("image", "label", "disease")}


def _weights(trainer):
    return [v.numpy().copy() for v in trainer.G.weights + trainer.D.weights]


@pytest.mark.slow
def test_every_head_and_the_discriminator_get_gradients(brats_prepared, tmp_path):
    manifest = load_manifest(brats_prepared)
    cfg = _cfg()
    trainer = Trainer(cfg, manifest, str(tmp_path))
    batch = _batch(manifest, cfg)
    with tf.GradientTape(persistent=True) as tape:
        g = trainer.gan.generator_losses(batch)
        d = trainer.gan.discriminator_losses(batch)
    G, D = trainer.G, trainer.D
    checks = [(g["segmentation"], G.get_layer("seg_logits").kernel),
              (g["classification"], G.get_layer("cls_slice_logits").kernel),
              (g["classification"], G.get_layer("cls_dense0").kernel),
              (g["classification"], G.get_layer("slice_recurrence").trainable_variables[0]),
              (g["adversarial"], G.get_layer("enc0_conv0").kernel),
              (d, D.get_layer("d_pixel_logits").kernel),
              (d, D.get_layer("d_enc0_conv0").kernel)]
    for loss, variable in checks:
        grad = tape.gradient(loss, variable)
        assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, variable.path
    before = _weights(trainer)
    trainer.gan.step(batch)
    after = _weights(trainer)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after) if a.size > 1), "every weight tensor moves"


def _two_forward_step(gan, batch):
    """The step as written before it ran G once: G forward inside D's loss, D update, then a
    second G forward for G's own loss and its update (eager, on the same optimizers)."""
    G, D = gan.G, gan.D
    with tf.GradientTape() as tape:
        d_loss = gan.discriminator_losses(batch)
    gan.d_opt.apply_gradients(zip(tape.gradient(d_loss, D.trainable_variables), D.trainable_variables))
    with tf.GradientTape() as tape:
        losses = gan.generator_losses(batch)
    gan.g_opt.apply_gradients(zip(tape.gradient(losses["g_loss"], G.trainable_variables), G.trainable_variables))
    return {**losses, "d_loss": d_loss}


@pytest.mark.slow
def test_the_one_forward_gan_step_equals_d_then_g_with_two_forward_passes(brats_prepared, tmp_path):
    manifest = load_manifest(brats_prepared)
    cfg = _cfg()
    one, two = Trainer(cfg, manifest, str(tmp_path / "one")), Trainer(cfg, manifest, str(tmp_path / "two"))
    two.G.set_weights(one.G.get_weights())
    two.D.set_weights(one.D.get_weights())
    batch = _batch(manifest, cfg)
    for _ in range(2):  # the second step starts from moved weights and non-empty optimizer slots
        compiled = one.gan.step(batch)
        reference = _two_forward_step(two.gan, batch)
        for k in gan_step.LOSS_NAMES:
            assert float(compiled[k]) == pytest.approx(float(reference[k]), rel=1e-5, abs=1e-6), k
    for a, b in zip(one.G.weights + one.D.weights, two.G.weights + two.D.weights):
        assert np.allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6), a.path


@pytest.mark.slow
def test_a_cosine_schedule_with_a_discriminator_that_never_updates_trains(brats_prepared, tmp_path):
    # d_steps 0: the discriminator's schedule has no update to decay over and stays constant.
    summary = train(_cfg("train.d_steps=0", "train.lr_schedule=cosine", "train.epochs=1"), brats_prepared,
                    run_dir=str(tmp_path), verbose=False)
    assert summary["steps"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("losses", [[], ["loss.segmentation_loss=dice", "loss.classification_loss=focal"]])
def test_a_step_under_mirrored_strategy_equals_a_step_without(losses, brats_prepared, tmp_path):
    manifest = load_manifest(brats_prepared)
    cfg = _cfg(*losses)
    single = Trainer(cfg, manifest, str(tmp_path / "a"))
    assert len(tf.config.list_logical_devices("CPU")) == 2
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    runtime = Runtime(strategy, "float32", False, 0)
    from svgan.models import build_discriminator, build_generator

    with strategy.scope():
        G = build_generator(cfg.model, (48, 48), 4, 4, 2)
        D = build_discriminator(cfg.model, (48, 48), 4, 4)
    G.set_weights(single.G.get_weights())
    D.set_weights(single.D.get_weights())
    mirrored = gan_step.GANStep(cfg, G, D, single.seg_weights, single.disease_weights, runtime)
    batch = _batch(manifest, cfg)
    assert batch["image"].shape[0] == 2  # one example per replica
    local = single.gan.step(batch)
    distributed_batch = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
    replicated = mirrored.step(distributed_batch)
    for k in local:
        assert float(replicated[k]) == pytest.approx(float(local[k]), rel=1e-4, abs=1e-6)
    for a, b in zip(single.G.weights + single.D.weights, G.weights + D.weights):
        assert np.allclose(a.numpy(), b.numpy(), atol=2e-5), a.path


@pytest.mark.slow
def test_tiny_training_lowers_the_loss_and_beats_all_background(brats_prepared, tmp_path):
    manifest = load_manifest(brats_prepared)
    # A larger learning rate than the paper's 1e-4, so that a few dozen steps show learning.
    cfg = _cfg("train.steps_per_epoch=12", "train.epochs=4", "model.base_filters=8", "model.recurrent_units=8",
               "train.early_stopping_patience=100", "train.learning_rate=1e-3")
    train(cfg, brats_prepared, run_dir=str(tmp_path), verbose=False)
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["segmentation"]) < 0.8 * float(rows[0]["segmentation"])
    generator = keras.models.load_model(tmp_path / "generator.keras")
    report = evaluate_prepared(generator, manifest, "train", cfg)
    # An all-background prediction scores Dice 0 on the whole tumour of every one of these patients.
    assert all(n > 0 for n in manifest.class_voxel_counts("train")[1:])
    assert report["dice_WT"] > 0.05


def _final_weights(run_dir, cfg, manifest):
    trainer = Trainer(cfg, manifest, str(run_dir))
    assert trainer.restore()
    return _weights(trainer)


@pytest.fixture(scope="session")
def one_epoch_run(brats_prepared, tmp_path_factory):
    """The first epoch of ``_cfg()``'s two-epoch run, trained once for the tests that resume it
    or compare with it (read-only: a test that resumes it works on a copy)."""
    run = tmp_path_factory.mktemp("one_epoch") / "run"
    train(_cfg("train.epochs=1"), brats_prepared, run_dir=str(run), verbose=False)
    return run


def _loss_curve(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [(r["epoch"], r["g_loss"], r["d_loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_exact_resume_after_an_epoch_and_after_ctrl_c(brats_prepared, one_epoch_run, tmp_path, monkeypatch):
    manifest = load_manifest(brats_prepared)
    cfg = _cfg()
    train(cfg, brats_prepared, run_dir=str(tmp_path / "straight"), verbose=False)
    straight = _final_weights(tmp_path / "straight", cfg, manifest)

    # Stopped after epoch 1, resumed for epoch 2: the same weights and the same loss curve as the
    # run without a break (whose first epoch is a separate run from the same seed).
    shutil.copytree(one_epoch_run, tmp_path / "resumed")
    train(cfg, brats_prepared, run_dir=str(tmp_path / "resumed"), resume=True, verbose=False)
    resumed = _final_weights(tmp_path / "resumed", cfg, manifest)
    assert all(np.array_equal(a, b) for a, b in zip(straight, resumed))
    straight_curve = _loss_curve(tmp_path / "straight")
    assert len(straight_curve) == 2 and _loss_curve(tmp_path / "resumed") == straight_curve

    # Ctrl-C in the middle of epoch 1 saves a checkpoint at that step; resuming retraces the same run.
    with monkeypatch.context() as patched:
        interrupted_at_call(patched, 2)
        with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1, step 1"):
            train(cfg, brats_prepared, run_dir=str(tmp_path / "ctrl_c"), verbose=False)
    train(cfg, brats_prepared, run_dir=str(tmp_path / "ctrl_c"), resume=True, verbose=False)
    assert all(np.array_equal(a, b) for a, b in zip(straight, _final_weights(tmp_path / "ctrl_c", cfg, manifest)))

    # Ctrl-C (or SIGTERM) landing after a step's update, before the trainer counted the step: the
    # checkpoint counts it, so the resume does not train that batch twice.
    with monkeypatch.context() as patched:
        interrupted_at_call(patched, 2, after_update=True)
        with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1, step 2"):
            train(cfg, brats_prepared, run_dir=str(tmp_path / "late_ctrl_c"), verbose=False)
    train(cfg, brats_prepared, run_dir=str(tmp_path / "late_ctrl_c"), resume=True, verbose=False)
    assert all(np.array_equal(a, b) for a, b in zip(straight, _final_weights(tmp_path / "late_ctrl_c", cfg, manifest)))


@pytest.mark.slow
def test_sigterm_stops_svgan_train_as_ctrl_c_does_with_a_checkpoint_at_the_step(brats_prepared, tmp_path, monkeypatch,
                                                                                 capsys):
    # kill, a scheduler's time limit and docker stop send SIGTERM, whose default ends Python at once and
    # loses every step since the last end-of-epoch checkpoint.
    run = str(tmp_path / "run")
    sets = sum((["--set", o] for o in tiny_overrides("brats", "train.steps_per_epoch=3", "train.epochs=2")), [])
    handler_before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patched:
        interrupted_at_call(patched, 5, signal.SIGTERM)  # epoch 2, step 2
        assert main(["train", "--data", brats_prepared, "--run-dir", run] + sets) == 2
    assert "interrupted at epoch 2, step 1; checkpoint" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is handler_before
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(run, "checkpoints")))
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert main(["train", "--resume", run]) == 0
    with open(os.path.join(run, "history.csv")) as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("keep", ["best_validation", "last"])
def test_the_kept_generator_is_the_best_validation_epochs_or_the_last(brats_prepared, one_epoch_run, tmp_path, monkeypatch,
                                                                       keep):
    from svgan.training import fit

    falling = iter([0.9, 0.5])  # epoch 1 validates best, epoch 2 worse
    monkeypatch.setattr(fit, "evaluate_prepared", lambda *a, **k: {"dice_mean": next(falling)})
    cfg = _cfg(f"train.keep_model={keep}", "train.early_stopping_patience=100")
    train(cfg, brats_prepared, run_dir=str(tmp_path / "run"), verbose=False)
    kept = keras.models.load_model(tmp_path / "run" / "generator.keras").get_weights()
    manifest = load_manifest(brats_prepared)
    last = _final_weights(tmp_path / "run", cfg, manifest)[:len(kept)]
    after_epoch_one = keras.models.load_model(one_epoch_run / "generator.keras").get_weights()
    expected = last if keep == "last" else after_epoch_one  # the same seed trains the same first epoch
    assert all(np.array_equal(a, b) for a, b in zip(kept, expected))
    assert not all(np.array_equal(a, b) for a, b in zip(last, after_epoch_one))  # the two epochs differ


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(brats_prepared, tmp_path, monkeypatch):
    cfg = _cfg()
    real_step = gan_step.GANStep.step
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        losses = real_step(self, batch)
        if calls["n"] == 5:  # epoch 2, step 2
            losses["segmentation"] = tf.constant(float("nan"))
        return losses

    monkeypatch.setattr(gan_step.GANStep, "step", poisoned)
    with pytest.raises(TrainingError, match="non-finite loss at epoch 2, step 2: segmentation=nan"):
        train(cfg, brats_prepared, run_dir=str(tmp_path), verbose=False)
    ckpt = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    assert os.path.basename(ckpt.model_checkpoint_path) == "ckpt-1"
    reader = tf.train.load_checkpoint(ckpt.model_checkpoint_path)
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert os.path.isfile(tmp_path / "generator.keras")


@pytest.mark.slow
def test_cli_train_evaluate_and_resume(brats_prepared, tmp_path, capsys):
    run = str(tmp_path / "run")
    sets = ["--set", "model.base_filters=4", "--set", "model.recurrent_units=4", "--set", "model.discriminator_filters=4",
            "--set", "model.classifier_units=[8]", "--set", "prepare.image_size=[48, 48]", "--set", "pipeline.sequence_length=4",
            "--set", "train.steps_per_epoch=2", "--set", "train.epochs=1"]
    assert main(["train", "--data", brats_prepared, "--run-dir", run] + sets) == 0
    for name in ("config.yaml", "manifest.json", "generator.keras", "history.csv", "curves.png", "summary.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert os.listdir(os.path.join(run, "logs")) and os.listdir(os.path.join(run, "checkpoints"))
    assert main(["evaluate", run, "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "| mean |" in out and "Dice WT" in out and "Diagnosis (head): accuracy" in out
    assert os.path.isfile(os.path.join(run, "evaluation", "metrics_per_patient.csv"))
    assert main(["train", "--resume", run, "--set", "train.epochs=2"]) == 0
    with open(os.path.join(run, "history.csv")) as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    assert load_config(os.path.join(run, "config.yaml")).train.epochs == 2
    assert "resumed with train.epochs: 1 -> 2 (saved in config.yaml)" in capsys.readouterr().out


def test_a_resume_with_overrides_records_them_in_the_run_folder(tmp_path):
    run = str(tmp_path)
    load_config(None, ["train.epochs=15", "train.supervised_epochs=13"]).save(os.path.join(run, "config.yaml"))
    assert record_resumed_config(load_config(os.path.join(run, "config.yaml")), run) == []
    changed = load_config(os.path.join(run, "config.yaml"), ["train.epochs=12", "train.supervised_epochs=10"])
    assert record_resumed_config(changed, run) == ["train.epochs: 15 -> 12", "train.supervised_epochs: 13 -> 10"]
    saved = load_config(os.path.join(run, "config.yaml"))
    assert (saved.train.epochs, saved.train.supervised_epochs) == (12, 10)
    assert sorted(os.listdir(run)) == ["config.yaml"]  # no temporary file left beside it


@pytest.mark.slow
def test_xla_and_mixed_precision_paths_run_on_cpu(brats_prepared, tmp_path):
    # Separate process: XLA cannot run with op determinism, and the precision policy is global.
    script = f"""
import numpy as np
from svgan._tf import import_tf
tf = import_tf()
import keras
from svgan.data.manifest import load_manifest
from svgan.data.pipeline import make_dataset
from svgan.training.fit import Trainer
import sys; sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
from conftest import tiny_config
manifest = load_manifest({brats_prepared!r})
for setting, value in (("train.jit_compile", "on"), ("train.mixed_precision", "on"), ("train.mixed_precision", "bfloat16")):
    cfg = tiny_config("brats")
    setattr(cfg.train, setting.split(".")[1], value)
    trainer = Trainer(cfg, manifest, {str(tmp_path)!r} + "/" + setting + value)
    batch = next(iter(make_dataset(manifest, "train", cfg, training=True)))
    batch = {{k: batch[k] for k in ("image", "label", "disease")}}
    before = trainer.G.get_layer("seg_logits").kernel.numpy().copy()
    losses = {{k: float(v) for k, v in trainer.gan.step(batch).items()}}
    assert all(np.isfinite(v) for v in losses.values()), losses
    assert not np.array_equal(before, trainer.G.get_layer("seg_logits").kernel.numpy())
    print(setting, value, trainer.runtime.jit_compile, trainer.runtime.loss_scaling, keras.mixed_precision.global_policy().name)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train.jit_compile on True False float32" in result.stdout
    assert "train.mixed_precision on False True mixed_float16" in result.stdout
    # bfloat16 needs no loss scaling, and only where this CPU computes it natively.
    bfloat16 = "mixed_bfloat16" if cpu_computes_bfloat16() else "float32"
    assert f"train.mixed_precision bfloat16 False False {bfloat16}" in result.stdout


def test_bfloat16_is_chosen_only_where_the_cpu_has_bfloat16_instructions(tmp_path):
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512vl\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512vl\n")
    assert cpu_computes_bfloat16(str(with_bf16))
    assert not cpu_computes_bfloat16(str(without))
    assert not cpu_computes_bfloat16(str(tmp_path / "missing"))
    # A GPU computes bfloat16 whatever the CPU; "auto" and "on" keep their float16 meaning.
    assert choose_policy("bfloat16", gpus=1) == "mixed_bfloat16"
    assert choose_policy("on", gpus=0) == "mixed_float16"
    assert choose_policy("auto", gpus=0) == "float32"
    assert choose_policy("auto", gpus=1) == "mixed_float16"


@pytest.mark.slow
def test_multi_worker_strategy_from_tf_config(brats_prepared, tmp_path):
    # One worker on loopback: TF_CONFIG selects MultiWorkerMirroredStrategy, and a distributed step runs.
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
    script = f"""
import numpy as np
import sys; sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
from conftest import tiny_config
from svgan.data.manifest import load_manifest
from svgan.training.fit import Trainer
cfg = tiny_config("brats", "train.steps_per_epoch=1")
trainer = Trainer(cfg, load_manifest({brats_prepared!r}), {str(tmp_path)!r})
losses = [{{k: float(v) for k, v in trainer.gan.step(b).items()}} for b in trainer._dataset(0, 0)]
assert len(losses) == 1 and all(np.isfinite(v) for v in losses[0].values()), losses
import tensorflow as tf
print("multi-worker", isinstance(trainer.runtime.strategy, tf.distribute.MultiWorkerMirroredStrategy), trainer.runtime.replicas)
"""
    env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "multi-worker True 1" in result.stdout


def test_time_budget_stops_before_an_epoch_that_would_overrun_it():
    from svgan.training.callbacks import out_of_time

    assert not out_of_time(20 * 60, 5 * 60, max_minutes=30)  # 20 + 5 <= 30: one more epoch
    assert out_of_time(26 * 60, 5 * 60, max_minutes=30)  # 26 + 5 > 30: stop now
    assert not out_of_time(10 ** 6, 10 ** 6, max_minutes=None)


def test_head_fit_pass_standardises_the_features_and_fits_every_training_patient(acdc_prepared, tmp_path):
    from svgan.data.manifest import load_manifest
    from svgan.models import build_generator
    from svgan.losses.gan import WeightedCrossentropyClassification
    from svgan.training.head_fit import DiseaseHeadFit

    cfg = tiny_config("acdc", "model.classifier=volumes", "prepare.split_fractions=[1.0, 0.0, 0.0]")
    manifest = load_manifest(acdc_prepared)
    # Seeded: the untrained generator's structure sizes, and so whether every window is told
    # apart, depend on its initial weights, which otherwise depend on the tests run before.
    keras.utils.set_random_seed(0)
    G = build_generator(cfg.model, (48, 48), 1, 4, 5, num_phases=2)
    fit = DiseaseHeadFit(G, manifest, cfg.pipeline.sequence_length, WeightedCrossentropyClassification(np.ones(5)),
                         iterations=500)
    x, y, _ = fit.window_features()
    result = fit.on_epoch_end()
    standardize = G.get_layer("cls_standardize")
    np.testing.assert_allclose(standardize.mean.numpy(), x.mean(0), rtol=1e-5)
    # The training patients' groups are told apart from their (untrained) structure sizes alone.
    ids = [pid for pid in manifest.split_ids("train") if manifest.patients[pid]["disease"] is not None]
    if len(set(y)) == len(ids):  # one patient per group, as the fixture writes them
        assert result["head_fit_window_accuracy"] == 1.0
    assert result["head_fit_loss"] < np.log(5)


@pytest.mark.slow
def test_volume_head_run_records_the_head_fit_in_its_history(acdc_prepared, tmp_path):
    run = str(tmp_path / "run")
    train(tiny_config("acdc", "model.classifier=volumes", "train.epochs=1", "train.steps_per_epoch=2",
                      "train.head_fit_iterations=20"), acdc_prepared, run_dir=run, verbose=False)
    with open(os.path.join(run, "history.csv")) as f:
        row = next(csv.DictReader(f))
    assert float(row["head_fit_loss"]) > 0 and float(row["steps"]) == 2 and float(row["s_per_step"]) > 0


@pytest.mark.slow
def test_volume_head_reads_the_tumour_classes_of_a_one_phase_brats_run(brats_prepared, tmp_path):
    # BraTS has one phase: the head reads mean and peak log sizes of NCR, ED and ET (6 features),
    # is fitted after the epoch, and the saved generator gives a grade distribution per window.
    run = str(tmp_path / "run")
    train(_cfg("model.classifier=volumes", "train.epochs=1", "train.head_fit_iterations=20"),
          brats_prepared, run_dir=run, verbose=False)
    with open(os.path.join(run, "history.csv")) as f:
        row = next(csv.DictReader(f))
    assert 0 < float(row["head_fit_loss"]) and 0 <= float(row["head_fit_window_accuracy"]) <= 1
    import svgan.models  # noqa: F401  (registers the layers)

    G = keras.models.load_model(os.path.join(run, "generator.keras"))
    assert G.get_layer("structure_sizes").output.shape[-1] == 6
    assert np.any(G.get_layer("cls_standardize").mean.numpy() != 0)  # set by the head fit
    disease = keras.ops.softmax(G(np.zeros((1, 4, 48, 48, 4), np.float32))["disease"]).numpy()
    assert disease.shape == (1, 2) and np.isclose(disease.sum(), 1.0)


def test_cosine_learning_rate_falls_from_the_rate_to_zero_over_the_run():
    schedule = gan_step.learning_rate(4e-4, "cosine", total_steps=100)
    # 0.5 * (1 + cos(pi * step / total)) * rate
    assert float(schedule(0)) == pytest.approx(4e-4)
    assert float(schedule(50)) == pytest.approx(2e-4)
    assert float(schedule(25)) == pytest.approx(4e-4 * 0.5 * (1 + np.cos(np.pi / 4)))
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-12)
    assert gan_step.learning_rate(4e-4, "constant", None) == 4e-4


@pytest.mark.slow
def test_run_with_attention_gates_writes_the_attention_figure(brats_prepared, tmp_path):
    cfg = _cfg("train.epochs=1", "train.steps_per_epoch=1", "model.attention_gates=true")
    train(cfg, brats_prepared, run_dir=str(tmp_path), verbose=False)
    assert (tmp_path / "attention.png").stat().st_size > 1000
    assert keras.models.load_model(tmp_path / "generator.keras").get_layer("attention0") is not None


def test_progressive_stage_follows_the_epoch():
    from svgan.training.progressive import stage_size

    sizes, epochs = [[32, 32], [48, 48]], [2, 1]
    assert [stage_size(e, sizes, epochs, (64, 64)) for e in range(5)] == [(32, 32), (32, 32), (48, 48), (64, 64), (64, 64)]
    assert stage_size(0, [], [], (64, 64)) == (64, 64)


@pytest.mark.slow
def test_progressive_resizing_carries_weights_and_optimizer_state_and_resumes_mid_schedule(brats_prepared, tmp_path):
    manifest = load_manifest(brats_prepared)
    cfg = _cfg("train.epochs=3", "train.steps_per_epoch=1", "train.progressive_sizes=[[32, 32]]",
               "train.progressive_epochs=[2]")

    # resize() copies every weight and the optimizers' slots and step counters.
    trainer = Trainer(cfg, manifest, str(tmp_path / "probe"))
    trainer.gan.step(_batch(manifest, cfg))
    before = _weights(trainer) + [v.numpy() for v in trainer.gan.g_opt.variables + trainer.gan.d_opt.variables]
    trainer.resize((32, 32))
    assert trainer.G.inputs[0].shape[2:4] == (32, 32) and trainer.cfg.pipeline.image_size == [32, 32]
    after = _weights(trainer) + [v.numpy() for v in trainer.gan.g_opt.variables + trainer.gan.d_opt.variables]
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert int(trainer.gan.g_opt.iterations.numpy()) == 1

    # Two epochs at 32 x 32, then one at the full 48 x 48; the saved model is always full size.
    train(cfg, brats_prepared, run_dir=str(tmp_path / "straight"), verbose=False)
    with open(tmp_path / "straight" / "history.csv") as f:
        assert [int(float(r["image_height"])) for r in csv.DictReader(f)] == [32, 32, 48]
    assert keras.models.load_model(tmp_path / "straight" / "generator.keras").inputs[0].shape[2:4] == (48, 48)
    straight = _final_weights(tmp_path / "straight", cfg, manifest)

    # Stopped after epoch 1 (mid-stage) and resumed: the same weights as the uninterrupted run.
    one = _cfg("train.epochs=1", "train.steps_per_epoch=1", "train.progressive_sizes=[[32, 32]]",
               "train.progressive_epochs=[2]")
    train(one, brats_prepared, run_dir=str(tmp_path / "resumed"), verbose=False)
    train(cfg, brats_prepared, run_dir=str(tmp_path / "resumed"), resume=True, verbose=False)
    assert all(np.array_equal(a, b) for a, b in zip(straight, _final_weights(tmp_path / "resumed", cfg, manifest)))


@pytest.mark.slow
def test_ablate_trains_each_variant_per_seed_and_tabulates_mean_and_spread(brats_prepared, tmp_path, capsys):
    from svgan.training.ablation import variant_overrides

    out = str(tmp_path / "ablation")
    args = ["ablate", "--data", brats_prepared, "--variants", "weighted,progressive", "--seeds", "2", "--out", out]
    for k in ("data.dataset=brats", "prepare.n4_bias_correction=false", "prepare.image_size=[48, 48]",
              "pipeline.sequence_length=4", "train.epochs=2",
              "train.steps_per_epoch=1", "train.image_summaries=false", *TINY_MODEL):
        args += ["--set", k]
    assert main(args) == 0
    with open(os.path.join(out, "ablation.csv")) as f:
        runs = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"]) for r in runs] == [("weighted", "0"), ("weighted", "1"), ("progressive", "0"),
                                                           ("progressive", "1")]
    # Each row is the run's own evaluation; the table's mean and spread are those of the two seeds.
    for r in runs:
        with open(os.path.join(r["run_dir"], "evaluation", "summary.json")) as f:
            assert float(r["dice_WT"]) == pytest.approx(json.load(f)["regions"]["WT"]["dice"]["mean"])
    dice = [float(r["dice_WT"]) for r in runs if r["variant"] == "progressive"]
    table = open(os.path.join(out, "ablation.md")).read()
    assert f"| progressive | {np.mean(dice):.3f} ± {np.std(dice, ddof=1):.3f}" in table
    assert os.path.getsize(os.path.join(out, "ablation.png")) > 1000
    # The progressive variant trained its first epoch at three quarters of 48 (half of it, 24,
    # is no multiple of 16, and two epochs leave room for one smaller stage only).
    with open(os.path.join(out, "progressive", "seed0", "history.csv")) as f:
        assert int(float(next(csv.DictReader(f))["image_height"])) < 48
    assert variant_overrides("progressive", tiny_config("brats", "train.epochs=2"), (48, 48)) == [
        "train.progressive_sizes=[[32, 32]]", "train.progressive_epochs=[1]"]
    assert variant_overrides("progressive", tiny_config("brats", "train.epochs=8"), (96, 96)) == [
        "train.progressive_sizes=[[48, 48], [64, 64]]", "train.progressive_epochs=[2, 2]"]
    # A second call finds every run finished and trains nothing.
    before = os.path.getmtime(os.path.join(out, "weighted", "seed0", "generator.keras"))
    assert main(args) == 0 and os.path.getmtime(os.path.join(out, "weighted", "seed0", "generator.keras")) == before
    with pytest.raises(Exception, match="unknown ablation variant"):
        variant_overrides("nonsense", tiny_config("brats"), (48, 48))


def test_head_fit_weighs_patients_as_the_class_sampling_draws_them():
    from types import SimpleNamespace

    from svgan.training.head_fit import patient_weights

    diseases = {"a": 0, "b": 0, "c": 0, "d": 1, "e": None}
    manifest = SimpleNamespace(patients={k: {"disease": d} for k, d in diseases.items()},
                               split_ids=lambda split: list(diseases),
                               disease_patient_counts=lambda split: np.array([3, 1]))
    assert patient_weights(manifest, "natural") == pytest.approx({"a": 1, "b": 1, "c": 1, "d": 1})
    # Balanced: each grade gets half the draws; 4 known patients, so HGG 0.5 * 4 / 3, LGG 0.5 * 4 / 1.
    assert patient_weights(manifest, "balanced") == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 2 / 3, "d": 2.0})
    # Square root: shares sqrt(3) : 1.
    s = np.sqrt(3) + 1
    assert patient_weights(manifest, "sqrt")["d"] == pytest.approx(4 / s)


def test_ablation_variants_combine_with_plus_and_ldam_reweights_at_four_fifths_of_the_run():
    from svgan.training.ablation import variant_overrides

    cfg = tiny_config("brats", "train.epochs=8")
    assert variant_overrides("ldam_drw+balanced", cfg, (48, 48)) == [
        "loss.classification_loss=ldam", "loss.drw_start_epoch=6", "pipeline.class_sampling=balanced"]  # 0.8 * 8 = 6.4
    assert variant_overrides("volumes+lmf", cfg, (48, 48)) == ["model.classifier=volumes", "loss.classification_loss=lmf"]
    with pytest.raises(Exception, match="unknown ablation variant 'lfm'"):
        variant_overrides("volumes+lfm", cfg, (48, 48))


@pytest.mark.slow
def test_training_on_crops_validates_fits_the_head_and_saves_the_whole_image_model(brats_prepared, tmp_path):
    # 32 x 32 crops of the 48 x 48 prepared images: G and D train at 32; validation, the volume head's
    # fit and the saved generator work on whole 48 x 48 images with the same weights.
    cfg = _cfg("pipeline.crop_size=[32, 32]", "model.classifier=volumes", "train.epochs=1", "train.head_fit_iterations=20")
    manifest = load_manifest(brats_prepared)
    assert manifest.split_ids("validation")
    trainer = Trainer(cfg, manifest, str(tmp_path / "probe"))
    assert trainer.G.inputs[0].shape[2:4] == (32, 32) and trainer.full_size == (48, 48)
    whole, _ = trainer.inference_model()
    assert whole.inputs[0].shape[2:4] == (48, 48)
    assert all(np.array_equal(a, b) for a, b in zip(whole.get_weights(), trainer.G.get_weights()))
    run = tmp_path / "run"
    train(cfg, brats_prepared, run_dir=str(run), verbose=False)
    with open(run / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["val_dice_mean"]) >= 0 and float(row["head_fit_loss"]) > 0
    saved = keras.models.load_model(run / "generator.keras")
    assert saved.inputs[0].shape[2:4] == (48, 48)
    # The head fitted on whole images is the head that was saved and checkpointed.
    restored = Trainer(cfg, manifest, str(run))
    assert restored.restore()
    np.testing.assert_array_equal(saved.get_layer("cls_standardize").mean.numpy(),
                                  restored.G.get_layer("cls_standardize").mean.numpy())
    assert np.any(saved.get_layer("cls_standardize").mean.numpy() != 0)
