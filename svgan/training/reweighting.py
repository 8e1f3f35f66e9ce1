"""Deferred re-weighting (LDAM-DRW, Cao et al. 2019) as a training callback."""

from __future__ import annotations

import numpy as np

from ..losses.classification import DRW_BETA, effective_number_weights
from .loop import Callback


class DeferredReweighting(Callback):
    """Epoch schedule (LDAM-DRW): weights 1 before ``start_epoch``, effective-number weights from it on.

    ``start_epoch`` counts from 1, as the trainer prints epochs; ``on_epoch_begin(epoch)`` takes
    the trainer's 0-based epoch index, sets the loss's class weights and returns a history
    column. Being a function of the epoch alone, it needs nothing in a checkpoint, and a resumed
    run gets the same weights. Cao et al. switch at epoch 160 of 200 on CIFAR.
    """

    def __init__(self, loss, start_epoch: int, beta: float = DRW_BETA):
        if start_epoch < 1:
            raise ValueError(f"deferred re-weighting start epoch must be >= 1, got {start_epoch}")
        self.loss, self.start_epoch, self.beta = loss, int(start_epoch), float(beta)
        self.weights = effective_number_weights(loss.class_counts, beta)

    def weights_for(self, epoch_number: int) -> np.ndarray:
        """The class weights of epoch ``epoch_number`` (1-based)."""
        return self.weights if epoch_number >= self.start_epoch else np.ones_like(self.weights)

    def on_epoch_begin(self, epoch: int) -> dict:
        reweighted = epoch + 1 >= self.start_epoch
        self.loss.set_class_weights(self.weights_for(epoch + 1))
        return {"drw_reweighted": float(reweighted)}
