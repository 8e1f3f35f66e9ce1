"""Progressive resizing (Cui et al.): train on small images first, then on larger ones.

``train.progressive_sizes`` lists the in-plane sizes trained before the model's own size and
``train.progressive_epochs`` the epochs of each; the remaining epochs run at the full size
(Cui et al.: 128 -> 256 -> 512). The model is fully convolutional, so every weight carries over
between stages; the input pipeline resizes on the fly (``pipeline.image_size``).

Keras' ConvLSTM2D fixes the spatial size when it is built, so a stage cannot simply feed
the same model other sizes: the trainer rebuilds G and D at the stage's size and copies the
weights and the optimizers' state into them (``Trainer.resize``). The stage follows from the
epoch number alone, so a resumed run picks up mid-schedule with nothing more to save.
"""

from __future__ import annotations

from .loop import Callback


def stage_size(epoch: int, sizes, stage_epochs, full_size) -> tuple[int, int]:
    """The in-plane size that epoch ``epoch`` (0-based) trains at."""
    end = 0
    for size, epochs in zip(sizes, stage_epochs):
        end += int(epochs)
        if epoch < end:
            return tuple(int(v) for v in size)
    return tuple(int(v) for v in full_size)


class ProgressiveResizing(Callback):
    """Epoch schedule: ``on_epoch_begin(epoch)`` sets the trainer's size for that epoch."""

    def __init__(self, trainer, sizes, stage_epochs, full_size):
        self.trainer = trainer
        self.sizes, self.stage_epochs, self.full_size = list(sizes), list(stage_epochs), tuple(full_size)

    def on_epoch_begin(self, epoch: int) -> dict:
        size = stage_size(epoch, self.sizes, self.stage_epochs, self.full_size)
        self.trainer.resize(size)
        return {"image_height": size[0], "image_width": size[1]}
