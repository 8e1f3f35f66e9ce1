"""Scoring a 2D image classifier on its test split (Zunair and Ben Hamza's evaluation, one convention).

The confusion matrix has the truth in rows and the prediction in columns; the last class is
the positive one (Zunair and Ben Hamza: melanoma); sensitivity = TP / (TP + FN), specificity =
TN / (TN + FP) (the authors' notebook reports the negative predictive value and the precision
under those names); the decision is the class of highest probability (0.5 for two classes).
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._tf import import_tf
from ..data.images2d import ImageSet, image_dataset
from ..data.io import atomic_path, write_csv
from .diagnosis import diagnosis_metrics, roc_curve
from .gradcam import save_gradcam_figure


def predict_probabilities(model, images: ImageSet, batch_size: int = 32) -> np.ndarray:
    tf = import_tf()
    logits = model.predict(image_dataset(images, batch_size, False, 0), verbose=0)
    return tf.nn.softmax(logits).numpy()


def evaluate_classifier(model, test: ImageSet, out_dir: str, gradcam_images: int = 4) -> dict:
    """Diagnosis metrics on the test split (rows of the confusion matrix are the truth; the last
    class is the positive one), the ROC curve, per-image probabilities and a Grad-CAM figure."""
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
