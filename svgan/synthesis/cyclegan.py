"""CycleGAN (Zhu et al., ICCV 2017) as Zunair and Ben Hamza (MelaNet) uses it: unpaired translation between
two classes of 2D images, to turn majority-class images into synthetic minority-class ones.

Two U-Net generators (G_ab: class a -> class b, G_ba: back) with instance normalisation and two
PatchGAN discriminators (CycleGAN's 70 x 70: 4 x 4 convolutions, 64-128-256-512 filters).
Zunair and Ben Hamza, Eq. 1: L = L_GAN(G_ab, D_b) + L_GAN(G_ba, D_a) + lambda L_cyc, lambda = 10, with
L_cyc = E ||G_ba(G_ab(a)) - a||_1 + E ||G_ab(G_ba(b)) - b||_1, plus CycleGAN's optional
identity term (weight 0.5 lambda: G_ab(b) should stay b). The adversarial term is least squares
(CycleGAN and the authors' code; ``cyclegan.adversarial: lsgan``) or Zunair and Ben Hamza, Eq. 2's
log-likelihood (``bce``, non-saturating for the generators). Adam 2e-4, beta1 0.5, batch 1.

Zunair and Ben Hamza balance the two classes by undersampling the larger one; here each epoch pairs every
image of the smaller class with a random image of the larger one (seeded by the epoch, so a
resumed run draws the same pairs). Images have any number of channels (RGB photographs, MRI
modalities) and are scaled to [-1, 1] by the caller. Left out, as Zunair and Ben Hamza do not mention them: CycleGAN's pool of 50 past fakes
and its linear learning-rate decay.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .._tf import import_tf
from ..config import CycleGANConfig
from ..data.io import atomic_path
from ..figures import pyplot, save_figure
from ..training.callbacks import HistoryFile, ProgressBar
from ..training.loop import Callback, TrainingError, run_epochs

import_tf()

import keras  # noqa: E402

GENERATOR_FILES = {"ab": "generator_ab.keras", "ba": "generator_ba.keras"}
LOSS_NAMES = ("g_loss", "d_loss", "adversarial", "cycle", "identity")


def _instance_norm(name: str):
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)  # one group per channel


def build_unet_generator(image_size, filters: int, depth: int, name: str, channels: int = 3) -> keras.Model:
    """A U-Net from C channels to C channels: ``depth`` stride-2 levels, instance norm, tanh output in [-1, 1]."""
    images = keras.Input((*image_size, channels), name="image")
    x, skips = images, []
    for level in range(depth):
        x = keras.layers.Conv2D(filters * 2 ** min(level, 3), 4, strides=2, padding="same", name=f"{name}_down{level}")(x)
        if level:
            x = _instance_norm(f"{name}_down{level}_norm")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_down{level}_act")(x)
        skips.append(x)
    for level in reversed(range(depth - 1)):
        x = keras.layers.Conv2DTranspose(filters * 2 ** min(level, 3), 4, strides=2, padding="same", name=f"{name}_up{level}")(x)
        x = _instance_norm(f"{name}_up{level}_norm")(x)
        x = keras.layers.ReLU(name=f"{name}_up{level}_act")(x)
        x = keras.layers.Concatenate(name=f"{name}_skip{level}")([x, skips[level]])
    x = keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same", name=f"{name}_out")(x)
    out = keras.layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(x)
    return keras.Model(images, out, name=name)


def build_patch_discriminator(image_size, filters: int, name: str, channels: int = 3) -> keras.Model:
    """CycleGAN's PatchGAN: logits per patch (a 70 x 70 receptive field at 64-128-256-512)."""
    images = keras.Input((*image_size, channels), name="image")
    x = images
    for i, mult in enumerate((1, 2, 4, 8)):
        x = keras.layers.Conv2D(filters * mult, 4, strides=2 if i < 3 else 1, padding="same", name=f"{name}_conv{i}")(x)
        if i:
            x = _instance_norm(f"{name}_conv{i}_norm")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_conv{i}_act")(x)
    logits = keras.layers.Conv2D(1, 4, padding="same", dtype="float32", name=f"{name}_logits")(x)
    return keras.Model(images, logits, name=name)


# ---------------------------------------------------------------- losses

def adversarial_losses(kind: str):
    """(discriminator loss(real, fake), generator loss(fake)) on patch logits."""
    tf = import_tf()
    if kind == "lsgan":
        def d_loss(real, fake):
            return 0.5 * (tf.reduce_mean(tf.square(real - 1.0)) + tf.reduce_mean(tf.square(fake)))

        def g_loss(fake):
            return tf.reduce_mean(tf.square(fake - 1.0))
    else:
        bce = keras.losses.BinaryCrossentropy(from_logits=True)

        def d_loss(real, fake):
            return 0.5 * (bce(tf.ones_like(real), real) + bce(tf.zeros_like(fake), fake))

        def g_loss(fake):  # non-saturating: maximise log D(G(x))
            return bce(tf.ones_like(fake), fake)
    return d_loss, g_loss


class CycleGAN:
    """G_ab, G_ba, D_a, D_b, their Adam optimizers and one compiled step."""

    def __init__(self, cfg: CycleGANConfig, image_size, channels: int = 3):
        tf = import_tf()
        self.cfg = cfg
        self.G_ab = build_unet_generator(image_size, cfg.filters, cfg.depth, "generator_ab", channels)
        self.G_ba = build_unet_generator(image_size, cfg.filters, cfg.depth, "generator_ba", channels)
        self.D_a = build_patch_discriminator(image_size, cfg.discriminator_filters, "discriminator_a", channels)
        self.D_b = build_patch_discriminator(image_size, cfg.discriminator_filters, "discriminator_b", channels)
        self.generators = self.G_ab.trainable_variables + self.G_ba.trainable_variables
        self.discriminators = self.D_a.trainable_variables + self.D_b.trainable_variables
        self.g_opt = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)
        self.d_opt = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)
        self.g_opt.build(self.generators)
        self.d_opt.build(self.discriminators)
        self.d_loss_fn, self.g_adv_fn = adversarial_losses(cfg.adversarial)
        self.step = tf.function(self._step, reduce_retracing=True)

    def _step(self, a, b):
        """One update of both generators, then of both discriminators, on images in [-1, 1]."""
        tf = import_tf()
        cfg = self.cfg
        with tf.GradientTape() as tape:
            fake_b, fake_a = self.G_ab(a, training=True), self.G_ba(b, training=True)
            adversarial = self.g_adv_fn(self.D_b(fake_b, training=True)) + self.g_adv_fn(self.D_a(fake_a, training=True))
            cycle = (tf.reduce_mean(tf.abs(self.G_ba(fake_b, training=True) - a))
                     + tf.reduce_mean(tf.abs(self.G_ab(fake_a, training=True) - b)))
            identity = tf.constant(0.0)
            if cfg.identity_weight > 0:
                identity = (tf.reduce_mean(tf.abs(self.G_ab(b, training=True) - b))
                            + tf.reduce_mean(tf.abs(self.G_ba(a, training=True) - a)))
            g_loss = adversarial + cfg.cycle_weight * (cycle + cfg.identity_weight * identity)
        self.g_opt.apply_gradients(zip(tape.gradient(g_loss, self.generators), self.generators))
        with tf.GradientTape() as tape:
            d_loss = (self.d_loss_fn(self.D_a(a, training=True), self.D_a(fake_a, training=True))
                      + self.d_loss_fn(self.D_b(b, training=True), self.D_b(fake_b, training=True)))
        self.d_opt.apply_gradients(zip(tape.gradient(d_loss, self.discriminators), self.discriminators))
        return {"g_loss": g_loss, "d_loss": d_loss, "adversarial": adversarial, "cycle": cycle, "identity": identity}


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 images to the networks' range [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    return np.clip((np.asarray(images) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def epoch_pairs(n_a: int, n_b: int, epoch: int, seed: int, steps: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into a, into b) of one epoch: every image of the smaller class once, in random
    order, each with a random image of the larger one (undersampling, Zunair and Ben Hamza)."""
    rng = np.random.default_rng([seed, epoch])
    steps = steps or min(n_a, n_b)
    if n_a <= n_b:
        return np.resize(rng.permutation(n_a), steps), rng.integers(0, n_b, steps)
    return rng.integers(0, n_a, steps), np.resize(rng.permutation(n_b), steps)


def _shown(image) -> np.ndarray:
    """An image in [-1, 1] for imshow: RGB as it is, other channel counts by their first channel."""
    image = (np.clip(np.asarray(image), -1, 1) + 1) / 2
    return image if image.shape[-1] == 3 else image[..., 0]


def save_sample_grid(model: CycleGAN, xa: np.ndarray, xb: np.ndarray, path: str, title: str) -> None:
    """Rows: a, G_ab(a), G_ba(G_ab(a)), b, G_ba(b), G_ab(G_ba(b)) (images in [-1, 1])."""
    plt = pyplot()

    fb, fa = model.G_ab(xa, training=False), model.G_ba(xb, training=False)
    rows = [xa, fb, model.G_ba(fb, training=False), xb, fa, model.G_ab(fa, training=False)]
    names = ["a", "a -> b", "a -> b -> a", "b", "b -> a", "b -> a -> b"]
    fig, axes = plt.subplots(len(rows), len(xa), figsize=(1.6 * len(xa), 1.6 * len(rows)), squeeze=False)
    for r, (images, label) in enumerate(zip(rows, names)):
        for c in range(len(xa)):
            axes[r, c].imshow(_shown(images[c]), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    save_figure(fig, path)


class _SaveCycleGAN(Callback):
    """After every epoch: the epoch counter, both generators as ``.keras`` files, the checkpoint,
    and the grid of translations of the first images (``samples.png``)."""

    def __init__(self, model: CycleGAN, epoch, manager, run_dir: str, a, b, grid: int):
        self.model, self.epoch, self.manager, self.run_dir = model, epoch, manager, run_dir
        self.a, self.b, self.grid = a[:grid], b[:grid], grid

    def on_epoch_end(self, epoch, logs):
        self.epoch.assign(epoch + 1)
        for key, G in (("ab", self.model.G_ab), ("ba", self.model.G_ba)):
            with atomic_path(os.path.join(self.run_dir, GENERATOR_FILES[key])) as tmp:
                G.save(tmp)
        self.manager.save()
        save_sample_grid(self.model, self.a, self.b, os.path.join(self.run_dir, "samples.png"), f"epoch {epoch + 1}")
        return None


def train_cyclegan(cfg: CycleGANConfig, a: np.ndarray, b: np.ndarray, run_dir: str, image_size, seed: int = 0,
                   verbose: bool = True) -> dict:
    """Train (or resume) on images of class a [Na, H, W, C] and class b [Nb, H, W, C] in [-1, 1].

    The run folder gets ``checkpoints/`` (G, D, optimizers, epoch; resumed from automatically),
    ``generator_ab.keras`` / ``generator_ba.keras`` after every epoch, ``samples.png`` (the grid of
    the last epoch), ``history.csv`` (mean losses and seconds per step) and ``summary.json``.
    A non-finite loss stops training with a ``TrainingError``; the last checkpoint stays intact.
    """
    tf = import_tf()
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    model = CycleGAN(cfg, image_size, channels=a.shape[-1])
    epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
    checkpoint = tf.train.Checkpoint(G_ab=model.G_ab, G_ba=model.G_ba, D_a=model.D_a, D_b=model.D_b,
                                     g_opt=model.g_opt, d_opt=model.d_opt, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    start = int(epoch.numpy())
    xa_all, xb_all = np.asarray(a, np.float32), np.asarray(b, np.float32)
    def train_epoch(e, on_step):
        ia, ib = epoch_pairs(len(a), len(b), e, seed, cfg.steps_per_epoch)
        steps = len(ia) // cfg.batch_size
        sums, started = {k: 0.0 for k in LOSS_NAMES}, time.time()
        for s in range(steps):
            batch = slice(s * cfg.batch_size, (s + 1) * cfg.batch_size)
            losses = {k: float(v) for k, v in model.step(tf.constant(xa_all[ia[batch]]), tf.constant(xb_all[ib[batch]])).items()}
            bad = {k: v for k, v in losses.items() if not np.isfinite(v)}
            if bad:
                raise TrainingError(f"non-finite CycleGAN loss at epoch {e + 1}, step {s + 1}: "
                                    + ", ".join(f"{k}={v}" for k, v in bad.items())
                                    + f"; the last checkpoint is intact ({manager.latest_checkpoint})", run_dir)
            for k in sums:
                sums[k] += losses[k]
            on_step(s + 1, losses)
        return {**{k: v / max(steps, 1) for k, v in sums.items()}, "steps": steps,
                "s_per_step": (time.time() - started) / max(steps, 1)}

    history = HistoryFile(run_dir, start)
    grid = max(1, min(cfg.samples_per_grid, len(a), len(b)))
    callbacks = [_SaveCycleGAN(model, epoch, manager, run_dir, a, b, grid), history,
                 ProgressBar(lambda e: len(epoch_pairs(len(a), len(b), e, seed, cfg.steps_per_epoch)[0]) // cfg.batch_size,
                             cfg.epochs, LOSS_NAMES, title="CycleGAN epoch", verbose=verbose)]
    run_epochs(callbacks, train_epoch, start, cfg.epochs)
    rows = history.rows
    summary = {"epochs": int(epoch.numpy()), "run_dir": run_dir,
               "s_per_step": float(np.mean([float(r["s_per_step"]) for r in rows])) if rows else None}
    with atomic_path(os.path.join(run_dir, "summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def translate(generator, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Images [N, H, W, C] in [-1, 1] through a generator, in [-1, 1]."""
    out = [np.asarray(generator(images[i:i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else images[:0]
