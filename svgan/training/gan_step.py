"""One training step of seed 000: update D on real vs generated, then G on Eq. 5.

Real pairs are (image sequence, one-hot ground truth); generated pairs are
(image sequence, the generator's class probabilities). The generator's loss is
the non-saturating adversarial term plus the segmentation term (by default the
selective-weighted cross-entropy of Eq. 3) plus the classification term (by
default the selective-weighted L1 on the slice-aggregated disease probabilities,
Eq. 4), each with its weight from ``LossConfig``; the segmentation and
classification terms come from the loss registry by their config names.
"""

from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..config import Config
from ..losses import discriminator_loss, generator_adversarial_loss, total_generator_loss
from ..losses.registry import build_classification_loss, build_segmentation_loss

LOSS_NAMES = ("d_loss", "g_loss", "adversarial", "segmentation", "classification")


def learning_rate(rate: float, schedule: str, total_steps: int | None):
    """A constant rate, or a cosine decay to 0 over ``total_steps`` optimizer updates.

    The schedule reads the optimizer's own update counter, which checkpoints save, so a
    resumed run continues on the same curve.
    """
    import keras

    if schedule == "constant":
        return rate
    if not total_steps:
        raise ValueError("a cosine learning-rate schedule needs the run's total number of steps")
    return keras.optimizers.schedules.CosineDecay(rate, decay_steps=int(total_steps), alpha=0.0)


class GANStep:
    """Holds G, D, their RMSprop optimizers and the class weights; ``step(batch)`` trains once."""

    def __init__(self, cfg: Config, generator, discriminator, seg_weights, disease_weights, runtime,
                 total_steps: int | None = None, classification_loss=None):
        """``total_steps``: the run's planned generator updates, over which ``train.lr_schedule`` decays.
        ``classification_loss``: the disease term (the trainer's, which epoch schedules such as
        deferred re-weighting adjust); by default built from the config with ``disease_weights``."""
        tf = import_tf()
        import keras

        self.cfg, self.G, self.D, self.runtime = cfg, generator, discriminator, runtime
        self.num_classes = int(generator.get_layer("seg_logits").filters)
        t = cfg.train
        with runtime.strategy.scope():
            self.g_opt = keras.optimizers.RMSprop(learning_rate(t.learning_rate, t.lr_schedule, total_steps),
                                                  global_clipnorm=t.clipnorm)
            self.d_opt = keras.optimizers.RMSprop(
                learning_rate(t.discriminator_learning_rate or t.learning_rate, t.lr_schedule, total_steps * t.d_steps
                              if total_steps else None), global_clipnorm=t.clipnorm)
            if runtime.mixed_precision:
                self.g_opt = keras.optimizers.LossScaleOptimizer(self.g_opt)
                self.d_opt = keras.optimizers.LossScaleOptimizer(self.d_opt)
            # Built now so that a checkpoint restores their slots before the first step.
            self.g_opt.build(self.G.trainable_variables)
            self.d_opt.build(self.D.trainable_variables)
        lc = cfg.loss
        self.segmentation_loss = build_segmentation_loss(lc.segmentation_loss, np.asarray(seg_weights, np.float32),
                                                         lc.segmentation_loss_args)
        self.classification_loss = classification_loss if classification_loss is not None else build_classification_loss(
            lc.classification_loss, np.asarray(disease_weights, np.float32), lc.classification_loss_args)
        self.loss_weights = (lc.adversarial_weight, lc.segmentation_weight, lc.classification_weight)
        self._compiled = tf.function(self._replica_step, jit_compile=runtime.jit_compile, reduce_retracing=True)

    # ---------------------------------------------------------------- losses

    def discriminator_losses(self, batch, training: bool = True):
        tf = import_tf()
        out = self.G(batch["image"], training=training)
        fake = tf.stop_gradient(tf.nn.softmax(out["segmentation"]))
        real = tf.one_hot(batch["label"], self.num_classes, dtype=fake.dtype)
        real_logits = self.D([batch["image"], real], training=training)
        fake_logits = self.D([batch["image"], fake], training=training)
        return discriminator_loss(real_logits, fake_logits)

    def generator_losses(self, batch, training: bool = True) -> dict:
        tf = import_tf()
        out = self.G(batch["image"], training=training)
        fake = tf.nn.softmax(out["segmentation"])
        adversarial = generator_adversarial_loss(self.D([batch["image"], fake], training=training))
        # Loss.call (the values), not __call__: Keras divides a reduced loss by the number of
        # replicas under a tf.distribute strategy, which _scaled below already does.
        segmentation = tf.reduce_mean(self.segmentation_loss.call(batch["label"], out["segmentation"]))
        disease = batch["disease"]
        if self.cfg.loss.classify_labelled_windows_only:
            labelled = tf.reduce_any(batch["label"] > 0, axis=[1, 2, 3])
            disease = tf.where(labelled, disease, -1)  # -1: ignored by Eq. 4
        classification = tf.reduce_mean(self.classification_loss.call(disease, out["disease"]))
        total = total_generator_loss(adversarial, segmentation, classification, self.loss_weights)
        return {"g_loss": total, "adversarial": adversarial, "segmentation": segmentation, "classification": classification}

    # ---------------------------------------------------------------- updates

    def _scaled(self, loss, optimizer):
        # Inside the tape: local means divided by the replica count (the optimizer sums
        # gradients over replicas), and loss scaling for float16.
        scaled = loss / self.runtime.replicas
        return optimizer.scale_loss(scaled) if self.runtime.mixed_precision else scaled

    def _replica_step(self, batch):
        tf = import_tf()
        d_loss = tf.constant(0.0)
        for _ in range(self.cfg.train.d_steps):
            with tf.GradientTape() as tape:
                d_loss = self.discriminator_losses(batch)
                scaled = self._scaled(d_loss, self.d_opt)
            grads = tape.gradient(scaled, self.D.trainable_variables)
            self.d_opt.apply_gradients(zip(grads, self.D.trainable_variables))
        with tf.GradientTape() as tape:
            losses = self.generator_losses(batch)
            scaled = self._scaled(losses["g_loss"], self.g_opt)
        grads = tape.gradient(scaled, self.G.trainable_variables)
        self.g_opt.apply_gradients(zip(grads, self.G.trainable_variables))
        losses["d_loss"] = d_loss
        return {k: v / self.runtime.replicas for k, v in losses.items()}

    def step(self, batch) -> dict:
        """One distributed step on a (distributed) batch; returns the global mean of each loss."""
        tf = import_tf()
        strategy = self.runtime.strategy
        per_replica = strategy.run(self._compiled, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}
