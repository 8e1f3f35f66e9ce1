"""Training the 2D image classifier of Zunair and Ben Hamza (VGG-GAP with focal loss) and scoring it.

``train_classifier`` fits on the training split (with whatever augmentation and synthetic
images the configuration adds), watches the validation split only: Adadelta at 1e-3, the
rate divided by 10 when the validation loss stalls, training stopped when it stops
improving and the best weights kept (Zunair and Ben Hamza). The test split is never looked at here;
``svgan.evaluation.classification`` scores it afterwards. Interrupted runs continue from
their last epoch (``keras.callbacks.BackupAndRestore``).
"""

from __future__ import annotations

import os

import numpy as np

from .._tf import import_tf
from ..config import ImagesConfig
from ..data.images2d import ImageSet, image_dataset
from ..data.io import atomic_path
from ..losses.registry import build_classification_loss
from ..models.vgg_gap import build_vgg_gap

CLASSIFIER_NAME = "classifier.keras"


def build_loss(cfg: ImagesConfig, train_counts):
    """The classifier's loss by name from the one registry: focal (Zunair and Ben Hamza: alpha 0.25 on the
    positive class for two classes, gamma 2), lmf (Sadi et al.) or plain cross-entropy."""
    c = cfg.classifier
    return build_classification_loss(c.loss, np.ones(len(train_counts), np.float32), c.loss_args, class_counts=train_counts)


def train_classifier(cfg: ImagesConfig, train: ImageSet, validation: ImageSet, run_dir: str, verbose: bool = True):
    """Fit VGG-GAP; returns the model with the best validation loss (also ``RUN/classifier.keras``)."""
    import_tf()
    import keras

    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    c = cfg.classifier
    counts = train.counts()
    model = build_vgg_gap(cfg.data.image_size, len(train.classes), c.width, c.weights, cosine=c.loss == "lmf")
    model.compile(optimizer=keras.optimizers.Adadelta(c.learning_rate), loss=build_loss(cfg, counts))
    monitor = "val_loss" if len(validation.labels) else "loss"
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=c.reduce_lr_factor, patience=c.reduce_lr_patience),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=c.early_stopping_patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
    ]
    batches = image_dataset(train, c.batch_size, True, cfg.seed)
    if c.steps_per_epoch:
        batches = batches.repeat()
    model.fit(batches, epochs=c.epochs, steps_per_epoch=c.steps_per_epoch, callbacks=callbacks,
              verbose=2 if verbose else 0, shuffle=False,  # the dataset shuffles, seeded
              validation_data=image_dataset(validation, c.batch_size, False, cfg.seed) if len(validation.labels) else None)
    with atomic_path(os.path.join(run_dir, CLASSIFIER_NAME)) as tmp:
        model.save(tmp)
    return model
