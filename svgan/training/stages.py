"""Training stages: the generator alone on its supervised terms, then the adversarial game.

Rezaei et al. train G and D together from the first step (``train.supervised_epochs: 0``).
Segmentation GANs commonly pretrain the generator on its supervised loss first: a
discriminator that meets an untrained generator wins at once and its gradient carries
no information about the anatomy, and a supervised step costs less than half of an
adversarial one (no discriminator). With ``train.supervised_epochs: N`` the first N
epochs run the supervised step (segmentation and disease terms only); from epoch N + 1
the adversarial step of Eq. 5 runs, its adversarial weight rising linearly from 0 to
``loss.adversarial_weight`` over ``train.adversarial_ramp_steps`` generator updates.

The stage follows from the epoch alone and the weight from the generator's update
counter (saved in checkpoints), so a resumed run continues exactly, across the
boundary too. The learning rate follows one schedule over the whole run; the
discriminator's schedule spans the updates it gets.
"""

from __future__ import annotations

from .loop import Callback

SUPERVISED, ADVERSARIAL = "supervised", "adversarial"


class AdversarialWeight:
    """The adversarial weight of Eq. 5 at generator update ``step`` (0-based).

    0 before ``start`` (the supervised stage), then rising linearly to ``weight`` over
    ``ramp_steps`` updates (update ``start`` already has weight / ramp_steps), then
    ``weight``. ``start`` 0 and ``ramp_steps`` 0 is the paper's constant weight.
    Works on Python numbers and on tensors (inside the compiled step).
    """

    def __init__(self, weight: float, start=0, ramp_steps: int = 0):
        """``start``: a number, or a variable that a re-planned run moves (``GANStep.set_horizon``)."""
        self.weight, self.start, self.ramp_steps = float(weight), start, int(ramp_steps)

    def __call__(self, step):
        from keras import ops

        done = ops.cast(step, "float32") - self.start + 1.0
        return self.weight * ops.clip(done / max(self.ramp_steps, 1), 0.0, 1.0)


def stage_of(epoch: int, supervised_epochs: int) -> str:
    """The stage that epoch ``epoch`` (0-based) trains in."""
    return SUPERVISED if epoch < supervised_epochs else ADVERSARIAL


class TrainingStages(Callback):
    """Epoch schedule: ``on_epoch_begin(epoch)`` sets the trainer's GAN step to that epoch's stage
    and returns the history columns ``stage`` and ``adversarial_weight`` (the weight in force at the
    epoch's last step)."""

    def __init__(self, trainer, supervised_epochs: int):
        self.trainer, self.supervised_epochs = trainer, int(supervised_epochs)

    def on_epoch_begin(self, epoch: int) -> dict:
        stage = stage_of(epoch, self.supervised_epochs)
        gan = self.trainer.gan  # the current one: progressive resizing may have rebuilt it
        gan.stage = stage
        last_step = self.trainer.steps_before(epoch + 1) - 1
        weight = float(gan.adversarial_weight(last_step)) if stage == ADVERSARIAL else 0.0
        return {"stage": stage, "adversarial_weight": weight}
