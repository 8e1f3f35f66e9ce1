"""Patient-level diagnosis: the decision rule and its metrics.

Decision: the class of highest probability, optionally after post-hoc logit adjustment
(``postprocess.disease_prior_correction``, tau; Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021): class c wins when log p_c - tau * log pi_c is largest, pi being the
class shares the disease head saw in training. A head trained on a 3:1 set learns to answer
the majority class whenever the evidence is weak; dividing by the training prior (tau = 1)
asks instead which class the evidence favours most, the rule that suits balanced accuracy.

Metrics: confusion matrix, accuracy, per-class sensitivity and specificity, macro-F1
(Sadi et al.), balanced accuracy, one-vs-rest ROC AUC (Zunair and Ben Hamza).
"""

from __future__ import annotations

import numpy as np

from ..data.pipeline import class_draw_shares


def confusion_matrix(truth, predicted, num_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(truth, predicted):
        m[int(t), int(p)] += 1
    return m


def roc_auc(positive_scores, negative_scores) -> float:
    """Area under the ROC curve as the probability that a positive outscores a negative (ties count 1/2).

    NaN when either group is empty.
    """
    pos, neg = np.asarray(positive_scores, float), np.asarray(negative_scores, float)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def roc_curve(positive_scores, negative_scores) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every threshold, from (0, 0) to (1, 1)."""
    pos, neg = np.asarray(positive_scores, float), np.asarray(negative_scores, float)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    fpr = [0.0] + [float(np.mean(neg >= t)) if neg.size else 0.0 for t in thresholds]
    tpr = [0.0] + [float(np.mean(pos >= t)) if pos.size else 0.0 for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def diagnosis_metrics(truth, probabilities, class_names) -> dict:
    """All diagnosis metrics from true classes [N] and predicted probabilities [N, M]."""
    truth = np.asarray(truth, dtype=int)
    probs = np.asarray(probabilities, dtype=float).reshape(len(truth), len(class_names))
    predicted = probs.argmax(1) if len(truth) else np.zeros(0, int)
    m = confusion_matrix(truth, predicted, len(class_names))
    out = {"patients": int(len(truth)), "confusion_matrix": m.tolist(),
           "accuracy": float(np.trace(m) / m.sum()) if m.sum() else float("nan")}
    sens, f1s = [], []
    for k, name in enumerate(class_names):
        tp = m[k, k]
        fn = m[k].sum() - tp
        fp = m[:, k].sum() - tp
        tn = m.sum() - tp - fn - fp
        s = tp / (tp + fn) if tp + fn else float("nan")
        out[f"sensitivity_{name}"] = float(s)
        out[f"specificity_{name}"] = float(tn / (tn + fp)) if tn + fp else float("nan")
        prec = tp / (tp + fp) if tp + fp else 0.0
        f1 = 2 * prec * s / (prec + s) if tp + fn and prec + s > 0 else 0.0
        out[f"f1_{name}"] = float(f1)
        out[f"auc_{name}"] = roc_auc(probs[truth == k, k], probs[truth != k, k])
        if tp + fn:
            sens.append(s)
            f1s.append(f1)
    out["balanced_accuracy"] = float(np.mean(sens)) if sens else float("nan")
    out["macro_f1"] = float(np.mean(f1s)) if f1s else float("nan")
    return out


def training_class_prior(manifest, sampling: str) -> np.ndarray:
    """Class shares [M] of the training draws: the training split's patient counts per disease
    class under ``pipeline.class_sampling`` (patients of unknown class left out)."""
    counts = manifest.disease_patient_counts("train")
    if not counts.sum():
        return np.full(len(counts), 1.0 / len(counts))
    shares = class_draw_shares(dict(enumerate(counts.tolist())), sampling)
    return np.array([shares[k] for k in range(len(counts))])


def prior_adjusted(probabilities, prior, tau: float) -> np.ndarray:
    """Probabilities [..., M] re-weighted by prior ** -tau and renormalised (softmax of the
    adjusted logits log p - tau log prior). A class absent from training keeps weight 0."""
    p = np.asarray(probabilities, float)
    if tau == 0:
        return p
    prior = np.asarray(prior, float)
    weights = np.where(prior > 0, np.power(np.where(prior > 0, prior, 1.0), -float(tau)), 0.0)
    adjusted = p * weights
    return adjusted / adjusted.sum(-1, keepdims=True)
