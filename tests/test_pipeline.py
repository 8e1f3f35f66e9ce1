"""The tf.data pipeline: coverage in evaluation, shared augmentation in training, determinism."""

import collections

import numpy as np
import pytest

from svgan.config import load_config
from svgan.errors import ConfigError
from svgan.data.manifest import Manifest, load_manifest
from svgan.data.pipeline import extract_sequence, make_dataset, patient_draws, window_starts
from svgan.data.prepare import load_prepared

# Training sequences of 4 slices with no random rotation, scaling, shift or noise.
STILL = ["pipeline.sequence_length=4", "augment.noise_std=0", "augment.rotation_degrees=0",
         "augment.scale_range=[1, 1]", "augment.max_shift_fraction=0"]


@pytest.mark.parametrize("num_slices, window", [(1, 4), (7, 4), (8, 4), (9, 4), (155, 8)])
def test_evaluation_windows_cover_every_slice_exactly_once(num_slices, window):
    covered = collections.Counter()
    for start in window_starts(num_slices, window, training=False):
        covered.update(i for i in range(start, start + window) if i < num_slices)
    assert covered == collections.Counter(range(num_slices))


def test_training_windows_fit_inside_the_volume():
    rng = np.random.default_rng(0)
    starts = window_starts(20, 8, True, rng, count=200)
    assert min(starts) == 0 and max(starts) == 12 and len(starts) == 200
    assert window_starts(5, 8, True, rng) == [0]  # a short patient: one window, padded


def test_acdc_sequence_is_ed_positions_then_the_same_es_positions():
    image = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2, 1)  # [P=2, Z=3, H, W, C]
    label = (image[..., 0] % 4).astype(np.uint8)
    seq, lab, slice_index, phase = extract_sequence(image, label, start=1, length=4)
    assert seq.shape == (8, 2, 2, 1)
    assert slice_index.tolist() == [1, 2, -1, -1, 1, 2, -1, -1]
    assert phase.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(seq[0], image[0, 1]) and np.array_equal(seq[4], image[1, 1]) and np.array_equal(seq[5], image[1, 2])
    assert not seq[2:4].any() and not lab[6:8].any()  # padding is zero image, background label


def test_evaluation_dataset_returns_every_slice_unaugmented(brats_prepared):
    m = load_manifest(brats_prepared)
    cfg = load_config(None, ["pipeline.sequence_length=4", "pipeline.batch_size=3"])
    seen = collections.defaultdict(list)
    for batch in make_dataset(m, "train", cfg, training=False):
        for b in range(batch["image"].shape[0]):
            pid = batch["patient"][b].numpy().decode()
            image, label = load_prepared(m.patient_file(pid))
            for t, z in enumerate(batch["slice_index"][b].numpy()):
                if z >= 0:
                    seen[pid].append(int(z))
                    assert np.array_equal(batch["image"][b, t].numpy(), image[0, z])
                    assert np.array_equal(batch["label"][b, t].numpy(), label[0, z])
            assert batch["disease"][b].numpy() == m.patients[pid]["disease"]
    assert set(seen) == set(m.split_ids("train"))
    for pid, slices in seen.items():
        assert sorted(slices) == list(range(m.patients[pid]["num_slices"]))


def _synthetic_manifest(tmp_path, n_patients=2, slices=6, size=32):
    """A prepared folder whose channels are label and 2 x label, with identical slices."""
    patients = {}
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_patients):
        pattern = np.zeros((size, size), np.uint8)
        pattern[(yy - 12) ** 2 + (xx - 14 - i) ** 2 < 49] = 1
        pattern[8:14, 18:26] = 2
        label = np.broadcast_to(pattern, (1, slices, size, size)).copy()
        image = np.stack([label, 2 * label], axis=-1).astype(np.float16)
        np.savez_compressed(tmp_path / f"p{i}.npz", image=image, label=label)
        patients[f"p{i}"] = {"file": f"p{i}.npz", "disease": i % 2, "phases": ["volume"], "split": "train",
                             "num_slices": slices, "crop": {"output_shape": [size, size, slices]}}
    return Manifest(str(tmp_path), {"patients": patients, "modalities": ["a", "b"],
                                    "class_names": ["bg", "one", "two"]})


def test_augmentation_is_shared_by_slices_modalities_and_mask(tmp_path):
    m = _synthetic_manifest(tmp_path)
    cfg = load_config(None, ["pipeline.sequence_length=4", "pipeline.batch_size=2", "augment.noise_std=0.0",
                             "augment.rotation_degrees=10", "augment.max_shift_fraction=0.1"])
    changed = 0
    for batch in make_dataset(m, "train", cfg, training=True).take(4):
        image, label = batch["image"].numpy(), batch["label"].numpy()
        for b in range(image.shape[0]):
            # Identical slices in -> identical slices out: one transform for the whole sequence.
            assert all(np.array_equal(image[b, 0], image[b, t]) for t in range(4))
            assert all(np.array_equal(label[b, 0], label[b, t]) for t in range(4))
            # Same transform for both modalities (channel b = 2 x channel a, bilinear is linear).
            assert np.allclose(image[b, ..., 1], 2 * image[b, ..., 0], atol=1e-3)
            # Mask warped like the image: away from edges the image equals its label.
            agree = np.mean(np.abs(image[b, ..., 0] - label[b]) < 0.5)
            assert agree > 0.93
            changed += not np.array_equal(label[b, 0], np.load(tmp_path / f"{batch['patient'][b].numpy().decode()}.npz")["label"][0, 0])
    assert changed > 0, "training sequences must actually be augmented"


def test_gaussian_noise_only_in_training(tmp_path):
    m = _synthetic_manifest(tmp_path)
    cfg = load_config(None, ["pipeline.sequence_length=4", "augment.noise_std=0.5", "augment.rotation_degrees=0",
                             "augment.scale_range=[1, 1]", "augment.max_shift_fraction=0"])
    train = next(iter(make_dataset(m, "train", cfg, training=True)))
    noise = train["image"].numpy()[..., 0] - train["label"].numpy()
    assert noise.std() == pytest.approx(0.5, rel=0.1)
    evaluation = next(iter(make_dataset(m, "train", cfg, training=False)))
    assert np.array_equal(evaluation["image"].numpy()[..., 0], evaluation["label"].numpy())


@pytest.mark.parametrize("change, expected", [
    # channel a is the label (0, 1, 2), channel b twice it: the sequence spans 0..4
    (["augment.contrast_range=[3, 3]"], lambda a: 3 * a),
    (["augment.gamma_range=[2, 2]"], lambda a: 4 * (a / 4) ** 2),  # rescaled to [0, 1] by /4, squared, back
    (["augment.contrast_range=[3, 3]", "augment.gamma_range=[2, 2]"], lambda a: 12 * (3 * a / 12) ** 2),
])
def test_intensity_changes_by_hand(tmp_path, change, expected):
    m = _synthetic_manifest(tmp_path)
    train = next(iter(make_dataset(m, "train", load_config(None, STILL + change), training=True)))
    label = train["label"].numpy().astype(np.float64)
    assert label.max() == 2  # the sequence holds both labels, so its intensities span 0..4
    assert np.allclose(train["image"].numpy()[..., 0], expected(label), atol=1e-4)
    assert np.allclose(train["image"].numpy()[..., 1], expected(2 * label), atol=1e-4)


def test_intensity_changes_are_drawn_per_sequence_within_their_range(tmp_path):
    # 8 patients give 16 sequences: 16 uniform draws in [0.5, 1.5] all within 0.05 of each other
    # is a chance below 1e-17 (4 sequences drew 0.92-0.96 once, after another test's global seed)
    m = _synthetic_manifest(tmp_path, n_patients=8)
    cfg = load_config(None, STILL + ["augment.contrast_range=[0.5, 1.5]", "pipeline.batch_size=1"])
    factors = []
    for batch in make_dataset(m, "train", cfg, training=True):
        image, label = batch["image"].numpy()[0, ..., 0], batch["label"].numpy()[0]
        factors.append(image[label == 2].mean() / 2)
        assert np.allclose(image, factors[-1] * label, atol=1e-4)  # one factor for the whole sequence
    assert len(factors) == 16
    assert all(0.5 <= f <= 1.5 for f in factors) and np.ptp(factors) > 0.05
    evaluation = next(iter(make_dataset(m, "train", cfg, training=False)))
    assert np.array_equal(evaluation["image"].numpy()[..., 0], evaluation["label"].numpy())


def test_same_seed_same_batches_and_other_seed_other_batches(brats_prepared):
    m = load_manifest(brats_prepared)
    cfg = load_config(None, ["pipeline.sequence_length=4", "seed=5"])
    first = [b["image"].numpy() for b in make_dataset(m, "train", cfg, training=True).take(3)]
    again = [b["image"].numpy() for b in make_dataset(m, "train", cfg, training=True).take(3)]
    other = [b["image"].numpy() for b in make_dataset(m, "train", cfg, training=True, seed=6).take(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_input_size_and_one_hot_options_for_progressive_resizing(acdc_prepared):
    m = load_manifest(acdc_prepared)
    for size in (16, 32):
        cfg = load_config(None, ["data.dataset=acdc", "pipeline.sequence_length=8", f"pipeline.image_size=[{size}, {size}]",
                                 "pipeline.one_hot=true"])
        for training in (True, False):
            batch = next(iter(make_dataset(m, "train", cfg, training=training)))
            assert batch["image"].shape[1:] == (8, size, size, 1)
            assert batch["label"].shape[1:] == (8, size, size, 4)
            assert np.allclose(batch["label"].numpy().sum(-1), 1.0)
            assert batch["phase"].numpy()[0].tolist() == [0] * 4 + [1] * 4


def test_overlapping_inference_windows_cover_every_slice_and_end_on_the_last():
    from svgan.evaluation.inference import overlapping_starts

    for n, w in [(3, 8), (8, 8), (9, 8), (20, 8), (155, 8), (10, 4)]:
        starts = overlapping_starts(n, w)
        covered = set()
        for s in starts:
            covered.update(range(s, min(s + w, n)))
        assert covered == set(range(n)) and starts[-1] + w >= n
        assert all(b - a <= max(1, w // 2) for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("sampling, lgg_share", [("natural", 0.25), ("sqrt", 1 / (1 + 3 ** 0.5)), ("balanced", 0.5)])
def test_class_sampling_draws_classes_at_the_configured_ratio(sampling, lgg_share):
    # 30 HGG (class 0) and 10 LGG (class 1): LGG is drawn with probability n^q / (30^q + 10^q).
    diseases = [0] * 30 + [1] * 10
    draws = np.concatenate([patient_draws(diseases, sampling, np.random.default_rng(s)) for s in range(300)])
    assert len(draws) == 300 * 40
    assert np.mean(np.array(diseases)[draws] == 1) == pytest.approx(lgg_share, abs=0.01)
    if sampling == "natural":
        assert sorted(patient_draws(diseases, sampling, np.random.default_rng(0))) == list(range(40))


def test_balanced_sampling_reaches_the_pipeline_and_unknown_classes_are_a_class(brats_prepared):
    # Patients 0 and 1 have no known class: as a class of their own they get half the draws.
    unknown = [patient_draws([None, None] + [0] * 6, "balanced", np.random.default_rng(s)) < 2 for s in range(1000)]
    assert np.mean(unknown) == pytest.approx(0.5, abs=0.03)
    manifest = load_manifest(brats_prepared)
    train_ids = manifest.split_ids("train")
    lgg = {i for i in train_ids if manifest.patients[i]["disease"] == 1}
    shares = {}
    for sampling in ("natural", "balanced"):
        cfg = load_config(None, ["pipeline.sequence_length=4", "prepare.image_size=[48, 48]", "pipeline.batch_size=1",
                                 f"pipeline.class_sampling={sampling}"])
        patients = [p.decode() for seed in range(6)
                    for b in make_dataset(manifest, "train", cfg, training=True, seed=seed)
                    for p in b["patient"].numpy()]
        shares[sampling] = np.mean([p in lgg for p in patients])
    assert shares["balanced"] > shares["natural"] + 0.1, shares


def test_training_crops_are_windows_of_the_image_at_its_own_resolution(brats_prepared):
    # No rotation, scaling or noise: each 32 x 32 training crop of the 48 x 48 images is a shifted window
    # (labels, nearest neighbour: exactly a window at a whole-pixel offset), anywhere it fits.
    m = load_manifest(brats_prepared)
    cfg = load_config(None, STILL + ["pipeline.crop_size=[32, 32]", "prepare.image_size=[48, 48]", "pipeline.batch_size=1"])
    offsets = set()
    for batch in make_dataset(m, "train", cfg, training=True).take(12):
        assert batch["image"].shape[1:] == (4, 32, 32, 4)
        pid = batch["patient"].numpy()[0].decode()
        _, label = load_prepared(m.patient_file(pid))
        index = batch["slice_index"].numpy()[0]
        crop = batch["label"].numpy()[0]
        whole = label[0, index]  # [4, 48, 48]
        found = [(dy, dx) for dy in range(17) for dx in range(17) if np.array_equal(crop, whole[:, dy:dy + 32, dx:dx + 32])]
        assert found, "a crop is a window of the image"
        if crop.any():
            offsets.add(found[0])
    assert len(offsets) > 1  # placed at random
    # Evaluation sequences stay whole; without augmentation a training crop is the central window.
    assert next(iter(make_dataset(m, "train", cfg, training=False)))["image"].shape[1:] == (4, 48, 48, 4)
    plain = load_config(None, ["pipeline.sequence_length=4", "pipeline.crop_size=[32, 32]", "augment.enabled=false",
                               "prepare.image_size=[48, 48]", "pipeline.batch_size=1"])
    batch = next(iter(make_dataset(m, "train", plain, training=True)))
    _, label = load_prepared(m.patient_file(batch["patient"].numpy()[0].decode()))
    assert np.array_equal(batch["label"].numpy()[0], label[0, batch["slice_index"].numpy()[0]][:, 8:40, 8:40])


def test_foreground_placed_crops_centre_the_labelled_voxels(brats_prepared):
    # No rotation, scaling, shift or noise: a foreground-placed 32 x 32 crop has its labelled voxels'
    # mean position at its centre (to within a pixel: the window sits at whole or half pixels).
    m = load_manifest(brats_prepared)
    foreground_crops = ["pipeline.sequence_length=4", "pipeline.crop_size=[32, 32]", "pipeline.crop_placement=foreground",
                        "prepare.image_size=[48, 48]", "pipeline.batch_size=1"]
    cfg = load_config(None, STILL + foreground_crops)
    centred = 0
    for batch in make_dataset(m, "train", cfg, training=True).take(12):
        pid = batch["patient"].numpy()[0].decode()
        _, label = load_prepared(m.patient_file(pid))
        whole = label[0, batch["slice_index"].numpy()[0]]  # [4, 48, 48]
        crop = batch["label"].numpy()[0]
        if not whole.any() or crop.astype(bool).sum() < whole.astype(bool).sum():
            continue  # nothing to centre on, or the window reaches past the image's edge
        rows, cols = np.nonzero(crop)[1:]
        assert abs(rows.mean() - 15.5) <= 1.0 and abs(cols.mean() - 15.5) <= 1.0
        centred += 1
    assert centred >= 3
    # Without augmentation: exactly the window of whole pixels nearest to the labelled voxels' mean.
    plain = load_config(None, foreground_crops + ["augment.enabled=false"])
    for batch in make_dataset(m, "train", plain, training=True).take(6):
        _, label = load_prepared(m.patient_file(batch["patient"].numpy()[0].decode()))
        whole = label[0, batch["slice_index"].numpy()[0]]
        rows, cols = np.nonzero(whole)[1:]
        top, left = (round(rows.mean() - 15.5), round(cols.mean() - 15.5)) if rows.size else (8, 8)
        padded = np.pad(whole, ((0, 0), (32, 32), (32, 32)))
        assert np.array_equal(batch["label"].numpy()[0], padded[:, 32 + top:64 + top, 32 + left:64 + left])


def test_a_foreground_fraction_mixes_heart_windows_with_windows_anywhere(brats_prepared):
    # Without augmentation a foreground window is the exact window nearest the labelled voxels' mean
    # and a window "anywhere" is the central one: with foreground_fraction 0.5 both kinds occur, and
    # nothing else does.
    m = load_manifest(brats_prepared)
    cfg = load_config(None, ["pipeline.sequence_length=4", "pipeline.crop_size=[32, 32]", "pipeline.crop_placement=foreground",
                             "pipeline.foreground_fraction=0.5", "prepare.image_size=[48, 48]", "pipeline.batch_size=1",
                             "augment.enabled=false"])
    kinds = {"foreground": 0, "central": 0}
    for batch in make_dataset(m, "train", cfg, training=True).take(24):
        _, label = load_prepared(m.patient_file(batch["patient"].numpy()[0].decode()))
        whole = label[0, batch["slice_index"].numpy()[0]]
        rows, cols = np.nonzero(whole)[1:]
        if not rows.size:
            continue
        top, left = round(rows.mean() - 15.5), round(cols.mean() - 15.5)
        if (top, left) == (8, 8):
            continue  # the two placements coincide
        padded = np.pad(whole, ((0, 0), (32, 32), (32, 32)))
        crop = batch["label"].numpy()[0]
        on_foreground = np.array_equal(crop, padded[:, 32 + top:64 + top, 32 + left:64 + left])
        central = np.array_equal(crop, whole[:, 8:40, 8:40])
        assert on_foreground or central
        kinds["foreground" if on_foreground else "central"] += 1
    assert kinds["foreground"] >= 2 and kinds["central"] >= 2, kinds


def test_a_foreground_fraction_outside_zero_to_one_is_refused():
    with pytest.raises(ConfigError, match="pipeline.foreground_fraction"):
        load_config(None, ["pipeline.foreground_fraction=1.5"])
