"""The 2D image path of Zunair and Ben Hamza: folders per class, augmentation, synthetic images, VGG-GAP,
CycleGAN, `svgan synthesize`, the classifier's evaluation and the Table 1 comparison."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from svgan.cli import main
from svgan.config import load_images_config
from svgan.data.images2d import (augmented, discover_images, load_image, load_splits, read_synthetic, training_set,
                                 with_synthetic)
from svgan.errors import ConfigError, DataError

TINY = ["data.image_size=[16, 16]", "data.split_fractions=[0.5, 0.2, 0.3]", "cyclegan.filters=4", "cyclegan.depth=2",
        "cyclegan.discriminator_filters=4", "cyclegan.epochs=1", "classifier.width=0.0625", "classifier.epochs=2",
        "classifier.batch_size=8", "classifier.learning_rate=1.0"]


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    from svgan.data.synthetic.lesions import write_lesion_set

    root = str(tmp_path_factory.mktemp("lesions"))
    assert write_lesion_set(root, images=40, seed=2, size=24) == {"benign": 32, "malignant": 8}
    return root


def _config(root, *more):
    return load_images_config(None, [f"data.root={root}", *TINY, *more])


def test_images_are_padded_to_a_square_then_resized(tmp_path):
    red = np.zeros((10, 20, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "wide.png")
    out = load_image(str(tmp_path / "wide.png"), (8, 8))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    # 20 x 10 padded to 20 x 20: black bands of 5 rows above and below, i.e. 2 of 8 rows each.
    assert out[0].max() == 0 and out[-1].max() == 0
    assert out[4, 4, 0] == 255 and out[4, 4, 1] == 0


def test_class_order_is_the_configured_one_else_sorted_and_bad_files_are_one_error(tmp_path):
    for name in ("zeta", "alpha"):
        os.makedirs(tmp_path / name)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name / "a.png")
    assert discover_images(str(tmp_path))[2] == ["alpha", "zeta"]
    paths, labels, names = discover_images(str(tmp_path), ["zeta", "alpha"])
    assert names == ["zeta", "alpha"] and labels == [0, 1] and paths[0].endswith(os.path.join("zeta", "a.png"))
    with pytest.raises(DataError, match="no folder for class 'beta'"):
        discover_images(str(tmp_path), ["alpha", "beta"])
    (tmp_path / "zeta" / "broken.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load_image(str(tmp_path / "zeta" / "broken.png"), (4, 4))


def test_splits_are_stratified_and_additions_enter_the_training_split_only(lesions, tmp_path):
    cfg = _config(lesions)
    splits = load_splits(cfg)
    assert sum(len(s.labels) for s in splits.values()) == 40
    assert all(min(s.counts()) > 0 for s in splits.values())  # both classes in every split
    assert not set(splits["train"].paths) & set(splits["test"].paths)
    train = splits["train"]
    grown = augmented(train, 3, seed=0)
    assert len(grown.labels) == 3 * len(train.labels) and grown.counts() == [3 * c for c in train.counts()]
    assert np.array_equal(grown.images[:len(train.labels)], train.images)
    assert not np.array_equal(grown.images[len(train.labels):2 * len(train.labels)], train.images)  # changed copies
    # Synthetic malignant images fill the minority class up to the majority's count, no further.
    folder = tmp_path / "synthetic"
    folder.mkdir()
    records = []
    for i in range(30):
        Image.fromarray(np.full((24, 24, 3), i, np.uint8)).save(folder / f"s{i}.png")
        records.append({"file": f"s{i}.png", "class": "malignant", "source": "x"})
    (folder / "provenance.json").write_text(json.dumps({"images": records}))
    synthetic = read_synthetic(str(folder), train.classes, cfg.data.image_size)
    mixed = with_synthetic(train, synthetic, ratio=1.0)
    benign, malignant = train.counts()
    assert mixed.counts() == [benign, benign] and len(mixed.labels) == len(train.labels) + benign - malignant
    assert with_synthetic(train, synthetic, ratio=None).counts() == [benign, malignant + 30]
    cfg = _config(lesions, f"data.synthetic_dirs=[{folder}]", "data.augment_factor=2")
    assert training_set(cfg, train).counts() == [2 * benign, 2 * benign]
    (folder / "provenance.json").write_text(json.dumps({"images": [{**records[0], "class": "melanoma"}]}))
    with pytest.raises(DataError, match="synthetic class 'melanoma'"):
        read_synthetic(str(folder), train.classes, cfg.data.image_size)


def test_bad_2d_config_values_are_one_error():
    with pytest.raises(ConfigError, match="classifier.weights"):
        load_images_config(None, ["classifier.width=0.5", "classifier.weights=/x.h5"])
    with pytest.raises(ConfigError, match="data.image_size"):
        load_images_config(None, ["data.image_size=[20, 20]"])  # not divisible by 2^4


def test_vgg_gap_takes_a_local_vgg16_notop_file_and_refuses_a_wrong_one(tmp_path):
    import keras

    from svgan.models.vgg_gap import build_vgg_gap

    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg16_notop.weights.h5")
    source.save_weights(path)
    model = build_vgg_gap((32, 32), 2, weights=path)
    for layer in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(model.get_layer(layer).get_weights()[0], source.get_layer(layer).get_weights()[0])
    assert model.output.shape[-1] == 2 and model.get_layer("gap") is not None
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="junk.h5: not a VGG-16 notop weights file"):
        build_vgg_gap((32, 32), 2, weights=str(tmp_path / "junk.h5"))


def test_focal_loss_of_the_classifier_weighs_the_positive_class_by_alpha():
    from svgan.training.classifier import build_loss

    loss = build_loss(load_images_config(None, []), [30, 10])
    assert loss.alpha == 0.25 and loss.gamma == 2.0  # Zunair and Ben Hamza: alpha_t 0.25 for positives, 0.75 for negatives
    logits = np.array([[0.3, -0.2]], np.float32)
    p1 = np.exp(-0.2) / (np.exp(0.3) + np.exp(-0.2))
    assert float(loss(np.array([1]), logits)) == pytest.approx(-0.25 * (1 - p1) ** 2 * np.log(p1), rel=1e-5)
    assert float(loss(np.array([0]), logits)) == pytest.approx(-0.75 * p1 ** 2 * np.log(1 - p1), rel=1e-5)


@pytest.mark.slow
def test_classifier_is_scored_with_rows_as_truth_and_sensitivity_tp_over_tp_plus_fn(lesions, tmp_path):
    from svgan.evaluation.gradcam import gradcam
    from svgan.evaluation.classification import evaluate_classifier
    from svgan.training.classifier import train_classifier

    cfg = _config(lesions)
    splits = load_splits(cfg)
    model = train_classifier(cfg, splits["train"], splits["validation"], str(tmp_path / "run"), verbose=False)
    m = evaluate_classifier(model, splits["test"], str(tmp_path / "eval"))
    with open(tmp_path / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    truth = np.array([r["true"] == "malignant" for r in rows])
    said = np.array([r["predicted"] == "malignant" for r in rows])
    tp, fn, fp, tn = (truth & said).sum(), (truth & ~said).sum(), (~truth & said).sum(), (~truth & ~said).sum()
    assert m["false_negatives"] == fn and m["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn)) and m["specificity"] == pytest.approx(tn / (tn + fp))
    assert os.path.isfile(tmp_path / "eval" / "gradcam.png") and os.path.isfile(tmp_path / "run" / "classifier.keras")
    cams = gradcam(model, splits["test"].images[:3], 1)
    assert cams.shape == (3, 16, 16) and cams.min() >= 0 and cams.max() <= 1


@pytest.mark.slow
def test_cyclegan_resumes_from_its_last_epoch(lesions, tmp_path):
    from svgan.synthesis.cyclegan import epoch_pairs, to_model_range, train_cyclegan

    cfg = _config(lesions, "cyclegan.steps_per_epoch=3")
    train = load_splits(cfg)["train"]
    a, b = to_model_range(train.images[train.labels == 0]), to_model_range(train.images[train.labels == 1])
    run = str(tmp_path / "cyclegan")
    train_cyclegan(cfg.cyclegan, a, b, run, cfg.data.image_size, verbose=False)
    with open(os.path.join(run, "history.csv")) as f:
        first = list(csv.DictReader(f))
    cfg.cyclegan.epochs = 2
    summary = train_cyclegan(cfg.cyclegan, a, b, run, cfg.data.image_size, verbose=False)
    with open(os.path.join(run, "history.csv")) as f:
        both = list(csv.DictReader(f))
    assert summary["epochs"] == 2 and len(both) == 2 and both[0] == first[0]  # epoch 1 not trained again
    assert all(np.isfinite(float(both[1][k])) for k in ("g_loss", "d_loss", "cycle"))
    assert os.path.isfile(os.path.join(run, "samples.png")) and os.path.isfile(os.path.join(run, "generator_ab.keras"))
    # Undersampling: every image of the smaller class once per epoch, each with a random partner.
    ia, ib = epoch_pairs(10, 4, epoch=0, seed=0, steps=None)
    assert sorted(ib) == [0, 1, 2, 3] and len(ia) == 4 and ia.max() < 10


@pytest.mark.slow
def test_a_non_finite_cyclegan_loss_stops_with_one_error_line_and_keeps_the_checkpoint(lesions, tmp_path, monkeypatch):
    from svgan.synthesis import cyclegan
    from svgan.training.loop import TrainingError

    cfg = _config(lesions, "cyclegan.steps_per_epoch=2", "cyclegan.epochs=2")
    train = load_splits(cfg)["train"]
    a, b = cyclegan.to_model_range(train.images[train.labels == 0]), cyclegan.to_model_range(train.images[train.labels == 1])
    real_init, calls = cyclegan.CycleGAN.__init__, {"n": 0}

    def poisoned_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        step = self.step

        def poisoned(xa, xb):
            calls["n"] += 1
            losses = step(xa, xb)
            return {**losses, "cycle": float("nan")} if calls["n"] == 3 else losses  # epoch 2, step 1

        self.step = poisoned

    monkeypatch.setattr(cyclegan.CycleGAN, "__init__", poisoned_init)
    run = str(tmp_path / "cyclegan")
    with pytest.raises(TrainingError, match="non-finite CycleGAN loss at epoch 2, step 1: cycle=nan") as error:
        cyclegan.train_cyclegan(cfg.cyclegan, a, b, run, cfg.data.image_size, verbose=False)
    assert "\n" not in str(error.value) and run in str(error.value)  # one line, naming the run folder
    with open(os.path.join(run, "history.csv")) as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]  # epoch 1 kept, checkpoint included
    assert os.path.isdir(os.path.join(run, "checkpoints"))


@pytest.mark.slow
def test_synthesize_translates_training_images_only_and_refuses_a_used_folder(lesions, tmp_path):
    out = str(tmp_path / "synthetic")
    args = ["synthesize", "--data", lesions, "--from", "benign", "--to", "malignant", "--count", "5", "--run-dir",
            str(tmp_path / "cg"), out] + [x for s in TINY for x in ("--set", s)]
    assert main(args) == 0
    with open(os.path.join(out, "provenance.json")) as f:
        provenance = json.load(f)
    train = load_splits(_config(lesions))["train"]
    assert len(provenance["images"]) == 5 and {r["class"] for r in provenance["images"]} == {"malignant"}
    assert {r["source"] for r in provenance["images"]} <= {os.path.abspath(p) for p in train.paths}
    assert all(load_image(os.path.join(out, r["file"]), (16, 16)).shape == (16, 16, 3) for r in provenance["images"])
    assert sorted(os.listdir(tmp_path)) == ["cg", "synthetic"]  # no temporary folder left beside the output
    assert main(args) == 2  # the folder is not empty any more: one error line, nothing overwritten


@pytest.mark.slow
def test_oversampling_compares_the_variants_in_one_table(lesions, tmp_path, capsys):
    out = str(tmp_path / "table1")
    args = ["oversampling", "--data", lesions, "--out", out, "--seeds", "1", "--variants", "baseline,augment2,cyclegan"]
    assert main(args + [x for s in TINY for x in ("--set", s)]) == 0
    with open(os.path.join(out, "oversampling.csv")) as f:
        runs = list(csv.DictReader(f))
    assert [r["variant"] for r in runs] == ["baseline", "augment2", "cyclegan"]
    assert all(0 <= float(r["auc"]) <= 1 and int(r["false_negatives"]) >= 0 for r in runs)
    assert os.path.isfile(os.path.join(out, "roc.png")) and "| cyclegan |" in capsys.readouterr().out
    # The CycleGAN variant trained on the real training images plus translations up to balance.
    with open(os.path.join(out, "synthetic", "provenance.json")) as f:
        added = len(json.load(f)["images"])
    train = load_splits(_config(lesions))["train"]
    assert added == train.counts()[0] - train.counts()[1]


@pytest.mark.slow
def test_synthetic_brats_patients_keep_their_label_maps_and_join_the_training_split_only(brats_prepared, tmp_path):
    from svgan.data.manifest import load_manifest
    from svgan.data.pipeline import make_dataset
    from svgan.data.prepare import load_prepared

    from conftest import tiny_config

    out = str(tmp_path / "prepared_with_synthetic")
    cg = ["cyclegan.filters=4", "cyclegan.depth=2", "cyclegan.discriminator_filters=4", "cyclegan.epochs=1",
          "cyclegan.steps_per_epoch=2"]
    args = ["synthesize", "--data", brats_prepared, "--from", "HGG", "--to", "LGG", "--count", "2", "--run-dir",
            str(tmp_path / "cg"), out] + [x for s in cg for x in ("--set", s)]
    assert main(args) == 0
    before, after = load_manifest(brats_prepared), load_manifest(out)
    synthetic = sorted(set(after.patients) - set(before.patients))
    assert len(synthetic) == 2 and all(after.patients[p]["split"] == "train" for p in synthetic)
    for split in ("validation", "test"):
        assert after.split_ids(split) == before.split_ids(split)
    counts = before.disease_patient_counts("train")
    assert after.disease_patient_counts("train").tolist() == [counts[0], counts[1] + 2]
    for pid in synthetic:
        source = after.patients[pid]["synthetic"]["source"]
        assert before.patients[source]["disease"] == 0 and before.patients[source]["split"] == "train"
        image, label = load_prepared(after.patient_file(pid))
        src_image, src_label = load_prepared(before.patient_file(source))
        assert np.array_equal(label, src_label) and image.shape == src_image.shape
        assert np.all(image[np.all(src_image == 0, axis=-1)] == 0)  # background kept
        assert not np.allclose(image, src_image)  # translated
    # The trainer's pipeline reads the new folder, originals by their absolute paths.
    cfg = tiny_config("brats", "pipeline.batch_size=2")
    batch = next(iter(make_dataset(after, "train", cfg, training=True)))
    assert batch["image"].shape[0] == 2
    assert main(args) == 2  # a used output folder is one error
