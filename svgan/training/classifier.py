"""Training the 2D image classifier of seed 002 (VGG-GAP with focal loss) and scoring it.

``train_classifier`` fits on the training split (with whatever augmentation and synthetic
images the configuration adds), watches the validation split only: Adadelta at 1e-3, the
rate divided by 10 when the validation loss stalls, training stopped when it stops
improving and the best weights kept (seed 002). The test split is never looked at before
``evaluate_classifier``. Interrupted runs continue from their last epoch
(``keras.callbacks.BackupAndRestore``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._tf import import_tf
from ..config import ImagesConfig
from ..data.images2d import ImageSet
from ..data.io import atomic_path, write_csv

CLASSIFIER_NAME = "classifier.keras"


def build_loss(cfg: ImagesConfig, train_counts):
    """The classifier's loss by name from the one registry: focal (seed 002: alpha 0.25 on the
    positive class for two classes, gamma 2), lmf (seed 003) or plain cross-entropy."""
    from ..losses.registry import build_classification_loss

    c = cfg.classifier
    return build_classification_loss(c.loss, np.ones(len(train_counts), np.float32), c.loss_args, class_counts=train_counts)


def _dataset(images: ImageSet, batch_size: int, shuffle: bool, seed: int):
    tf = import_tf()
    ds = tf.data.Dataset.from_tensor_slices((images.images, images.labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(images.labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(2)


def train_classifier(cfg: ImagesConfig, train: ImageSet, validation: ImageSet, run_dir: str, verbose: bool = True):
    """Fit VGG-GAP; returns the model with the best validation loss (also ``RUN/classifier.keras``)."""
    import_tf()
    import keras

    from ..models.vgg_gap import build_vgg_gap

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
    model.fit(_dataset(train, c.batch_size, True, cfg.seed), epochs=c.epochs, callbacks=callbacks, verbose=2 if verbose else 0,
              validation_data=_dataset(validation, c.batch_size, False, cfg.seed) if len(validation.labels) else None)
    with atomic_path(os.path.join(run_dir, CLASSIFIER_NAME)) as tmp:
        model.save(tmp)
    return model


def predict_probabilities(model, images: ImageSet, batch_size: int = 32) -> np.ndarray:
    tf = import_tf()
    logits = model.predict(_dataset(images, batch_size, False, 0), verbose=0)
    return tf.nn.softmax(logits).numpy()


def evaluate_classifier(model, test: ImageSet, out_dir: str, gradcam_images: int = 4) -> dict:
    """Diagnosis metrics on the test split (rows of the confusion matrix are the truth; the last
    class is the positive one), the ROC curve, per-image probabilities and a Grad-CAM figure."""
    from ..evaluation.diagnosis import diagnosis_metrics, roc_curve
    from ..evaluation.gradcam import save_gradcam_figure

    os.makedirs(out_dir, exist_ok=True)
    probs = predict_probabilities(model, test)
    classes = test.classes
    m = diagnosis_metrics(test.labels, probs, classes)
    positive = len(classes) - 1
    matrix = np.asarray(m["confusion_matrix"])
    m["positive_class"] = classes[positive]
    m["sensitivity"] = m[f"sensitivity_{classes[positive]}"]  # TP / (TP + FN)
    m["specificity"] = m[f"specificity_{classes[positive]}"]  # TN / (TN + FP)
    m["false_negatives"] = int(matrix[positive].sum() - matrix[positive, positive])
    m["auc"] = m[f"auc_{classes[positive]}"]
    fpr, tpr = roc_curve(probs[test.labels == positive, positive], probs[test.labels != positive, positive])
    m["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    write_csv(os.path.join(out_dir, "predictions.csv"),
              [{"image": p, "true": classes[t], "predicted": classes[int(np.argmax(q))],
                **{f"p_{c}": float(v) for c, v in zip(classes, q)}} for p, t, q in zip(test.paths, test.labels, probs)])
    write_csv(os.path.join(out_dir, "confusion_matrix.csv"),
              [{"true \\ predicted": classes[i], **{c: int(v) for c, v in zip(classes, row)}} for i, row in enumerate(matrix)])
    # Grad-CAM of the positive class on positive test images first (the ones a reader checks).
    order = np.argsort(test.labels != positive, kind="stable")[:gradcam_images]
    if len(order):
        save_gradcam_figure(model, test.images[order], [classes[t] for t in test.labels[order]], positive,
                            os.path.join(out_dir, "gradcam.png"))
    with atomic_path(os.path.join(out_dir, "summary.json")) as tmp, open(tmp, "w") as f:
        json.dump(m, f, indent=1)
    return m
