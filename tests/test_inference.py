"""Whole-patient inference: the generator in parts, and each slice decoded once from its most central window."""

import os

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.config import load_config
from svgan.data.pipeline import extract_sequence
from svgan.data.preprocess import preprocess_patient
from svgan.data.datasets import discover_patients, load_patient
from svgan.evaluation.inference import central_owners, make_predict_fn, overlapping_starts, predict_patient
from svgan.models import build_generator
from svgan.models.parts import split_generator

from conftest import SHARED_DATA, TINY_MODEL, requires_shared_data, tiny_config

tf = import_tf()
import keras  # noqa: E402

VARIANTS = {"slices head, ConvLSTM": [], "volume head": ["model.classifier=volumes"],
            "LSTM over pooled vectors": ["model.recurrent=lstm"], "attention gates": ["model.attention_gates=true"]}


def _generator(overrides, size=32, channels=1, phases=2, seed=0):
    cfg = load_config(None, TINY_MODEL + list(overrides))
    keras.utils.set_random_seed(seed)
    return build_generator(cfg.model, (size, size), channels, 4, 5, phases)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_parts_of_a_saved_generator_compose_to_its_own_output_on_a_window(variant, tmp_path):
    G = _generator(VARIANTS[variant])
    G.save(tmp_path / "generator.keras")
    G = keras.models.load_model(tmp_path / "generator.keras")  # cut at load time, from the file
    parts = split_generator(G)
    x = np.random.default_rng(1).normal(size=(2, 8, 32, 32, 1)).astype(np.float32)
    whole = G(x)
    *skips, bottleneck = parts.encoder(x.reshape(16, 32, 32, 1))
    recurrent = parts.recurrence(tf.reshape(bottleneck, (2, 8, *bottleneck.shape[1:])))
    seg, *features = parts.decoder([bottleneck, tf.reshape(recurrent, (16, *recurrent.shape[2:])), *skips])
    windowed = [tf.reshape(f, (2, 8, *f.shape[1:])) for f in features]
    if parts.head_from_recurrence:
        windowed.append(recurrent if parts.recurrent_vectors is None else parts.recurrent_vectors(recurrent))
    np.testing.assert_allclose(tf.reshape(seg, (2, 8, 32, 32, 4)), whole["segmentation"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts.head(windowed), whole["disease"], rtol=1e-5, atol=1e-5)
    assert parts.encoder.weights[0] is G.get_layer("enc0_conv0").kernel  # shared, not copied


def test_every_slice_belongs_to_the_window_whose_centre_is_nearest():
    # 11 slices, windows of 4 every 2: starts 0, 2, 4, 6, 7; centres 1.5, 3.5, 5.5, 7.5, 8.5.
    starts = overlapping_starts(11, 4)
    assert starts == [0, 2, 4, 6, 7]
    owners = central_owners(11, starts, 4)
    # Slice 8 is 0.5 from both 7.5 and 8.5: a tie, which goes to the earlier window.
    assert owners.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for z, k in enumerate(owners):
        assert starts[k] <= z < starts[k] + 4


class _Counting:
    """A Predictor whose encoder and decoder calls count the slices they see."""

    def __init__(self, predictor):
        self.inner, self.encoded, self.decoded = predictor, 0, 0
        self.parts, self.recurrence, self.head, self.window = predictor.parts, predictor.recurrence, predictor.head, predictor.window

    def __call__(self, images):
        return self.inner(images)

    def encode(self, slices):
        self.encoded += len(slices)
        return self.inner.encode(slices)

    def decode(self, inputs):
        self.decoded += len(inputs[0])
        return self.inner.decode(inputs)


def _expected_central(G, image, length):
    """Slow and obvious: each slice's probabilities from the whole generator on the window that owns it."""
    n_phases, n_slices = image.shape[:2]
    starts = overlapping_starts(n_slices, length)
    owners = central_owners(n_slices, starts, length)
    out = np.zeros((n_phases, n_slices, *image.shape[2:4], 4), np.float32)
    for k, start in enumerate(starts):
        seq = extract_sequence(image, None, start, length)[0]
        probs = tf.nn.softmax(G(seq[None])["segmentation"])[0].numpy().reshape(n_phases, length, *out.shape[2:])
        for z in range(start, start + length):
            if owners[z] == k:
                out[:, z] = probs[:, z - start]
    return out


@pytest.mark.parametrize("variant", ["slices head, ConvLSTM", "volume head"])
@pytest.mark.parametrize("n_slices", [3, 4, 7, 10])  # shorter than a window, one window, odd, several windows
@pytest.mark.parametrize("phases", [1, 2])  # BraTS-like, ACDC-like (ED then ES)
def test_central_windows_decode_each_slice_once_and_equal_its_owner_window(variant, n_slices, phases):
    length = 4
    G = _generator(VARIANTS[variant], phases=phases)
    predictor = _Counting(make_predict_fn(G))
    image = np.random.default_rng(n_slices).normal(size=(phases, n_slices, 32, 32, 1)).astype(np.float32)
    probs, disease = predict_patient(predictor, image, phases * length, mode="central")
    assert probs.shape == (phases, n_slices, 32, 32, 4) and disease.shape == (5,)
    assert np.isclose(disease.sum(), 1.0)
    if n_slices > length:
        assert predictor.encoded == predictor.decoded == phases * n_slices  # each slice once, both ways
        np.testing.assert_allclose(probs, _expected_central(G, image, length), rtol=1e-5, atol=1e-6)
    else:  # one window: the whole generator on it, padded as in every other mode
        single, single_disease = predict_patient(predictor, image, phases * length, mode="single")
        np.testing.assert_allclose(probs, single, rtol=1e-6)
        np.testing.assert_allclose(disease, single_disease, rtol=1e-6)
    # The disease of central windows is that of the averaged windows up to how each slice was decoded.
    average = predict_patient(predictor, image, phases * length, mode="average")[1]
    assert np.abs(disease - average).max() < 0.05


def test_a_model_at_another_size_than_the_prepared_patient_is_fed_resized_slices():
    G = _generator([], size=32, phases=1)
    image = np.random.default_rng(0).normal(size=(1, 9, 48, 48, 1)).astype(np.float32)
    probs, _ = predict_patient(make_predict_fn(G), image, 4, model_size=(32, 32), mode="central")
    assert probs.shape == (1, 9, 48, 48, 4) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)


@requires_shared_data
@pytest.mark.parametrize("dataset, folder, channels, phases", [
    ("acdc", os.path.join(SHARED_DATA, "acdc-training"), 1, 2), ("brats", os.path.join(SHARED_DATA, "brats2015"), 2, 1)])
def test_central_windows_on_a_real_patient(dataset, folder, channels, phases):
    # An ACDC patient (ED and ES, 10 slices) and the BraTS case (FLAIR and T1c, 155 slices after preparation).
    record = discover_patients(folder, dataset)[0]
    modalities = ("cine",) if dataset == "acdc" else ("flair", "t1ce")
    cfg = tiny_config(dataset, f"data.modalities={list(modalities)}")
    prepared = preprocess_patient(load_patient(record, modalities), cfg.prepare)
    G = _generator([], size=48, channels=channels, phases=phases)
    predictor = _Counting(make_predict_fn(G))
    length = 4
    probs, disease = predict_patient(predictor, prepared.image, phases * length, mode="central")
    n_slices = prepared.image.shape[1]
    assert n_slices > length and predictor.decoded == predictor.encoded == phases * n_slices
    assert probs.shape == (*prepared.image.shape[:4], 4) and np.isclose(disease.sum(), 1.0)
    # Spot-check the middle slice against the whole generator on the window that owns it.
    starts = overlapping_starts(n_slices, length)
    z = n_slices // 2
    k = central_owners(n_slices, starts, length)[z]
    seq = extract_sequence(prepared.image, None, starts[k], length)[0]
    whole = tf.nn.softmax(G(seq[None])["segmentation"])[0].numpy().reshape(phases, length, *probs.shape[2:])
    np.testing.assert_allclose(probs[:, z], whole[:, z - starts[k]], rtol=1e-5, atol=1e-6)
