"""Generator and discriminator: shapes, the paper's layer counts, the slice rule, saving."""

import os
import subprocess
import sys

import numpy as np
import pytest

from svgan._tf import import_tf
from svgan.config import ModelConfig
from svgan.models import build_discriminator, build_generator
from svgan.models.blocks import ReverseTime

tf = import_tf()
import keras  # noqa: E402

SMALL = ModelConfig(base_filters=4, recurrent_units=4, discriminator_filters=4, classifier_units=[8])


@pytest.fixture(scope="module")
def generator():
    return build_generator(SMALL, (32, 32), 2, 4, 3)


def _count(model, cls):
    return sum(isinstance(layer, cls) for layer in model.layers)


def test_generator_shapes_for_any_sequence_length(generator):
    for t in (1, 3, 6):
        out = generator(tf.random.normal((2, t, 32, 32, 2)))
        assert out["segmentation"].shape == (2, t, 32, 32, 4)
        assert out["disease"].shape == (2, 3)


def test_layer_counts_follow_the_paper(generator):
    # Rezaei et al.: ten convolutional layers and four max-pooling layers in the generator,
    # five convolutional and four max-pooling layers in the discriminator (plus its 1x1 pixel classifier).
    assert _count(generator, keras.layers.Conv2D) == 10
    assert _count(generator, keras.layers.MaxPooling2D) == 4
    d = build_discriminator(SMALL, (32, 32), 2, 4)
    assert _count(d, keras.layers.Conv2D) == 6 and _count(d, keras.layers.MaxPooling2D) == 4
    recurrent = [layer for layer in generator.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert len(recurrent) == 1 and isinstance(recurrent[0].forward_layer, keras.layers.ConvLSTM2D)


def test_disease_output_is_the_mean_of_slice_probabilities(generator):
    x = tf.random.normal((2, 5, 32, 32, 2))
    slices = keras.Model(generator.input, generator.get_layer("cls_bounded").output)(x).numpy()
    expected = np.exp(slices) / np.exp(slices).sum(-1, keepdims=True)
    probs = tf.nn.softmax(generator(x)["disease"]).numpy()
    assert np.allclose(probs, expected.mean(axis=1), atol=1e-5)


def test_recurrence_mixes_slices_but_the_unet_is_per_slice(generator):
    x = tf.random.normal((1, 4, 32, 32, 2)).numpy()
    y = x.copy()
    y[0, 3] += 1.0  # change the last slice only
    a, b = generator(x)["segmentation"].numpy(), generator(y)["segmentation"].numpy()
    assert not np.allclose(a[0, 0], b[0, 0])  # the bidirectional recurrence carries slice 3 to slice 0


def test_reverse_time_mirrors_slice_order():
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    assert np.array_equal(ReverseTime()(x).numpy(), x[:, ::-1])


def test_lstm_over_pooled_vectors_option():
    g = build_generator(ModelConfig(base_filters=4, recurrent_units=4, recurrent="lstm", classifier_units=[8]), (32, 32), 1, 3, 2)
    out = g(tf.random.normal((1, 3, 32, 32, 1)))
    assert out["segmentation"].shape == (1, 3, 32, 32, 3)
    assert any(isinstance(layer, keras.layers.Bidirectional) and isinstance(layer.forward_layer, keras.layers.LSTM)
               for layer in g.layers)


@pytest.mark.parametrize("patch, side", [(1, 32), (4, 8)])
def test_discriminator_emits_one_logit_per_pixel_or_patch(patch, side):
    cfg = ModelConfig(base_filters=4, recurrent_units=4, discriminator_filters=4, patch_size=patch)
    d = build_discriminator(cfg, (32, 32), 2, 4)
    assert d([tf.zeros((2, 3, 32, 32, 2)), tf.zeros((2, 3, 32, 32, 4))]).shape == (2, 3, side, side)


@pytest.mark.slow
def test_saved_generator_loads_in_a_fresh_process_with_plain_load_model(generator, tmp_path):
    path = str(tmp_path / "generator.keras")
    generator.save(path)
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", generator(x)["segmentation"].numpy())
    script = (
        "import numpy as np, svgan.models, keras\n"
        f"m = keras.models.load_model({path!r})\n"
        f"out = m(np.load({str(tmp_path / 'x.npy')!r}))['segmentation']\n"
        f"assert np.allclose(np.asarray(out), np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-6)\n"
        "print('loaded')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr[-2000:]


def test_structure_sizes_by_hand():
    from svgan.models.blocks import PhaseStructureSizes

    # One sequence of 2 ED slices then 2 ES slices; class fractions per slice (background, RV, LV).
    fractions = np.array([[[0.7, 0.1, 0.2], [0.9, 0.0, 0.1],
                           [0.8, 0.1, 0.1], [0.95, 0.05, 0.0]]], np.float32)
    eps = 1e-3
    out = PhaseStructureSizes(phases=2, epsilon=eps)(fractions).numpy()[0]
    ed_mean, ed_peak = [0.05, 0.15], [0.1, 0.2]
    es_mean, es_peak = [0.075, 0.05], [0.1, 0.1]
    expected = np.log(np.array(ed_mean + ed_peak + es_mean + es_peak) + eps)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_volume_head_learns_only_from_its_own_layers_and_reloads(tmp_path):
    cfg = ModelConfig(base_filters=4, recurrent_units=4, discriminator_filters=4, classifier_units=[8], classifier="volumes")
    g = build_generator(cfg, (32, 32), 1, 4, 5, num_phases=2)
    x = tf.random.normal((2, 6, 32, 32, 1))
    with tf.GradientTape() as tape:
        disease = g(x)["disease"]
        loss = tf.reduce_sum(disease * tf.random.normal(disease.shape))
    grads = dict(zip([v.path for v in g.trainable_variables], tape.gradient(loss, g.trainable_variables)))
    reached = {path.split("/")[0] for path, grad in grads.items() if grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0}
    assert reached == {"cls_dense0", "cls_logits"}  # the segmentation is not bent by the disease loss
    path = str(tmp_path / "g.keras")
    g.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x)["disease"].numpy(), g(x)["disease"].numpy(), atol=1e-6)


def test_attention_gate_coefficients_lie_in_0_1_and_scale_the_skip():
    from svgan.models.blocks import AttentionGate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 6)).astype(np.float32)
    g = rng.normal(size=(2, 4, 4, 10)).astype(np.float32) * 3
    gate = AttentionGate(4)
    out, alpha = gate([x, g])
    alpha = np.asarray(alpha)
    assert alpha.shape == (2, 8, 8, 1) and alpha.min() >= 0.0 and alpha.max() <= 1.0 and alpha.std() > 0
    assert np.allclose(out, x * alpha, atol=1e-6)
    # With psi's kernel at zero every coefficient is sigmoid(b_psi), whatever x and g: sigmoid(0.7) = 0.668188.
    gate.psi.kernel.assign(np.zeros(gate.psi.kernel.shape, np.float32))
    gate.psi.bias.assign([0.7])
    out, alpha = gate([x, g])
    assert np.allclose(alpha, 0.668188, atol=1e-6) and np.allclose(out, 0.668188 * x, atol=1e-5)


def test_generator_with_attention_gates_saves_its_maps_and_reloads(tmp_path):
    from svgan.evaluation.attention_maps import attention_maps, save_attention_figure

    cfg = ModelConfig(base_filters=4, recurrent_units=4, depth=2, attention_gates=True, classifier_units=[8])
    G = build_generator(cfg, (16, 16), 2, 3, 2)
    images = np.random.default_rng(1).normal(size=(1, 3, 16, 16, 2)).astype(np.float32)
    maps = attention_maps(G, images)
    assert [m.shape for m in maps] == [(1, 3, 8, 8), (1, 3, 16, 16)]  # coarsest gate first
    assert all(0.0 <= m.min() and m.max() <= 1.0 for m in maps)
    path = tmp_path / "g.keras"
    G.save(path)
    again = keras.models.load_model(path)
    assert np.allclose(again(images)["segmentation"], G(images)["segmentation"], atol=1e-5)
    save_attention_figure(again, images[0][None], str(tmp_path / "attention.png"))
    assert (tmp_path / "attention.png").stat().st_size > 1000
    assert not attention_maps(build_generator(ModelConfig(base_filters=4, recurrent_units=4, depth=2), (16, 16), 2, 3, 2),
                              images)
