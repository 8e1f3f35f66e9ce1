"""One training step of Rezaei et al.: update D on real vs generated, then G on Eq. 5.

Real pairs are (image sequence, one-hot ground truth); generated pairs are
(image sequence, the generator's class probabilities). The generator's loss is
the non-saturating adversarial term plus the segmentation term (by default the
selective-weighted cross-entropy of Eq. 3) plus the classification term (by
default the selective-weighted L1 on the slice-aggregated disease probabilities,
Eq. 4), each with its weight from ``LossConfig``; the segmentation and
classification terms come from the loss registry by their config names.

Two kinds of step, one per training stage (``svgan.training.stages`` chooses):

- adversarial (Eq. 5): one generator forward pass per step. The discriminator is
  updated on the ground truth and on that forward pass's probabilities (gradient
  stopped), then judges the same probabilities once more, with its new weights and
  with the gradient flowing, for the generator's adversarial term. This is the
  arithmetic of "D step, then G step" without running G twice: G's weights do not
  change between the two (its normalisation is per example and it has no batch
  statistics), so the numbers are those of two forward passes.
- supervised: the segmentation and disease terms only; the discriminator neither
  runs nor updates.

The adversarial weight in force is ``stages.AdversarialWeight`` of the generator's
update counter, read inside the step like a learning-rate schedule: a checkpoint
restores the counter, so a resumed run continues on the same ramp.
"""

from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..config import Config
from ..losses import discriminator_loss, generator_adversarial_loss, total_generator_loss
from ..losses.registry import build_classification_loss, build_segmentation_loss
from .stages import ADVERSARIAL, SUPERVISED, AdversarialWeight

LOSS_NAMES = ("d_loss", "g_loss", "adversarial", "segmentation", "classification")


def learning_rate(rate: float, schedule: str, total_steps: int | None):
    """A constant rate, or a cosine decay to 0 over ``total_steps`` optimizer updates.

    The schedule reads the optimizer's own update counter, which checkpoints save, so a
    resumed run continues on the same curve. Its horizon is a variable (``decay_steps``, read at
    every step) so that a budget can re-plan the run's length between epochs; checkpoints do not
    hold it: whoever changes it sets it again on resume.
    """
    import keras

    if schedule == "constant":
        return rate
    if not total_steps:
        raise ValueError("a cosine learning-rate schedule needs the run's total number of steps")
    tf = import_tf()
    cosine = keras.optimizers.schedules.CosineDecay(rate, decay_steps=int(total_steps), alpha=0.0)
    cosine.decay_steps = tf.Variable(float(total_steps), trainable=False, name="lr_horizon")
    return cosine


def discriminator_updates(total_steps: int, adversarial_start: int, d_steps: int) -> int:
    """The discriminator's updates in a run of ``total_steps`` generator updates whose adversarial
    stage starts at update ``adversarial_start``: ``d_steps`` per adversarial step."""
    return (total_steps - adversarial_start) * d_steps


class GANStep:
    """Holds G, D, their RMSprop optimizers and the class weights; ``step(batch)`` trains once
    with the step of ``self.stage`` (adversarial unless a stage schedule says otherwise)."""

    def __init__(self, cfg: Config, generator, discriminator, seg_weights, disease_weights, runtime,
                 total_steps: int | None = None, classification_loss=None, adversarial_start: int = 0):
        """``total_steps``: the run's planned generator updates, over which ``train.lr_schedule`` decays
        the generator's rate. ``adversarial_start``: the generator update at which the adversarial
        stage begins; the discriminator's rate decays over the updates it gets from there on.
        ``classification_loss``: the disease term (the trainer's, which epoch schedules such as
        deferred re-weighting adjust); by default built from the config with ``disease_weights``."""
        tf = import_tf()
        import keras

        self.cfg, self.G, self.D, self.runtime = cfg, generator, discriminator, runtime
        self.num_classes = int(generator.get_layer("seg_logits").filters)
        t = cfg.train
        d_updates = discriminator_updates(total_steps, adversarial_start, t.d_steps) if total_steps else None
        # A discriminator that never updates (d_steps 0, or no adversarial epoch) needs no schedule.
        d_schedule = t.lr_schedule if d_updates != 0 else "constant"
        with runtime.strategy.scope():
            self.g_rate = learning_rate(t.learning_rate, t.lr_schedule, total_steps)
            self.d_rate = learning_rate(t.discriminator_learning_rate or t.learning_rate, d_schedule, d_updates)
            self.g_opt = keras.optimizers.RMSprop(self.g_rate, global_clipnorm=t.clipnorm)
            self.d_opt = keras.optimizers.RMSprop(self.d_rate, global_clipnorm=t.clipnorm)
            if runtime.loss_scaling:
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
        with runtime.strategy.scope():  # the stage's start is a variable too: a budget may move it (set_horizon)
            start = tf.Variable(float(adversarial_start), trainable=False, name="adversarial_start")
        self.adversarial_weight = AdversarialWeight(lc.adversarial_weight, start, t.adversarial_ramp_steps)
        self.stage = ADVERSARIAL
        compile_step = lambda fn: tf.function(fn, jit_compile=runtime.jit_compile, reduce_retracing=True)  # noqa: E731
        self._compiled = {ADVERSARIAL: compile_step(self._adversarial_step), SUPERVISED: compile_step(self._supervised_step)}

    def set_horizon(self, total_steps: int, adversarial_start: int) -> None:
        """Re-plan the run's length between epochs: the generator's rate decays to 0 at update
        ``total_steps``, the adversarial stage starts at update ``adversarial_start``, and the
        discriminator's rate decays over the updates from there on."""
        t = self.cfg.train
        self.adversarial_weight.start.assign(float(adversarial_start))
        d_updates = discriminator_updates(total_steps, adversarial_start, t.d_steps)
        for rate, horizon in ((self.g_rate, total_steps), (self.d_rate, d_updates)):
            if hasattr(rate, "decay_steps"):  # a constant rate has no horizon
                rate.decay_steps.assign(float(max(horizon, 1)))

    # ---------------------------------------------------------------- losses

    def discriminator_losses(self, batch, training: bool = True, probabilities=None):
        """Eq. 1 for D on (image, ground truth) against (image, ``probabilities``), by default G's."""
        tf = import_tf()
        if probabilities is None:
            probabilities = tf.nn.softmax(self.G(batch["image"], training=training)["segmentation"])
        fake = tf.stop_gradient(probabilities)
        real = tf.one_hot(batch["label"], self.num_classes, dtype=fake.dtype)
        real_logits = self.D([batch["image"], real], training=training)
        fake_logits = self.D([batch["image"], fake], training=training)
        return discriminator_loss(real_logits, fake_logits)

    def supervised_losses(self, batch, outputs) -> dict:
        """The segmentation and disease terms of G's ``outputs`` on ``batch``."""
        tf = import_tf()
        # Loss.call (the values), not __call__: Keras divides a reduced loss by the number of
        # replicas under a tf.distribute strategy, which _scaled below already does.
        segmentation = tf.reduce_mean(self.segmentation_loss.call(batch["label"], outputs["segmentation"]))
        disease = batch["disease"]
        if self.cfg.loss.classify_labelled_windows_only:
            labelled = tf.reduce_any(batch["label"] > 0, axis=[1, 2, 3])
            disease = tf.where(labelled, disease, -1)  # -1: ignored by Eq. 4
        classification = tf.reduce_mean(self.classification_loss.call(disease, outputs["disease"]))
        return {"segmentation": segmentation, "classification": classification}

    def generator_losses(self, batch, training: bool = True, outputs=None, adversarial_weight=None) -> dict:
        """Eq. 5 for G: every term and their weighted sum ``g_loss``. ``outputs``: G's forward pass
        on the batch (run here when not given); ``adversarial_weight``: the weight in force (by default
        the configured one)."""
        tf = import_tf()
        outputs = self.G(batch["image"], training=training) if outputs is None else outputs
        fake = tf.nn.softmax(outputs["segmentation"])
        losses = self.supervised_losses(batch, outputs)
        losses["adversarial"] = generator_adversarial_loss(self.D([batch["image"], fake], training=training))
        weight = self.cfg.loss.adversarial_weight if adversarial_weight is None else adversarial_weight
        losses["g_loss"] = total_generator_loss(losses["adversarial"], losses["segmentation"], losses["classification"],
                                                (weight, self.cfg.loss.segmentation_weight, self.cfg.loss.classification_weight))
        return losses

    # ---------------------------------------------------------------- updates

    def _scaled(self, loss, optimizer):
        # Inside the tape: local means divided by the replica count (the optimizer sums
        # gradients over replicas), and loss scaling for float16.
        scaled = loss / self.runtime.replicas
        return optimizer.scale_loss(scaled) if self.runtime.loss_scaling else scaled

    def _update_discriminator(self, batch, probabilities):
        tf = import_tf()
        d_loss = tf.constant(0.0)
        for _ in range(self.cfg.train.d_steps):
            with tf.GradientTape() as tape:
                d_loss = self.discriminator_losses(batch, probabilities=probabilities)
                scaled = self._scaled(d_loss, self.d_opt)
            grads = tape.gradient(scaled, self.D.trainable_variables)
            self.d_opt.apply_gradients(zip(grads, self.D.trainable_variables))
        return d_loss

    def _update_generator(self, tape, scaled_loss) -> None:
        grads = tape.gradient(scaled_loss, self.G.trainable_variables)
        self.g_opt.apply_gradients(zip(grads, self.G.trainable_variables))

    def _adversarial_step(self, batch):
        tf = import_tf()
        weight = self.adversarial_weight(self.g_opt.iterations)
        with tf.GradientTape() as tape:
            outputs = self.G(batch["image"], training=True)
            with tape.stop_recording():  # D's own update is no part of G's gradient
                d_loss = self._update_discriminator(batch, tf.nn.softmax(outputs["segmentation"]))
            losses = self.generator_losses(batch, outputs=outputs, adversarial_weight=weight)
            scaled = self._scaled(losses["g_loss"], self.g_opt)
        self._update_generator(tape, scaled)
        losses["d_loss"] = d_loss
        return {k: v / self.runtime.replicas for k, v in losses.items()}

    def _supervised_step(self, batch):
        tf = import_tf()
        lc = self.cfg.loss
        with tf.GradientTape() as tape:
            losses = self.supervised_losses(batch, self.G(batch["image"], training=True))
            losses["g_loss"] = lc.segmentation_weight * losses["segmentation"] + lc.classification_weight * losses["classification"]
            scaled = self._scaled(losses["g_loss"], self.g_opt)
        self._update_generator(tape, scaled)
        return {k: v / self.runtime.replicas for k, v in losses.items()}

    def step(self, batch) -> dict:
        """One distributed step of the current stage on a (distributed) batch; returns the global
        mean of each loss the stage computes (the supervised stage has no d_loss or adversarial)."""
        tf = import_tf()
        strategy = self.runtime.strategy
        per_replica = strategy.run(self._compiled[self.stage], args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}
