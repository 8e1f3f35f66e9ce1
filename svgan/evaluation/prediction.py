"""A run's predictions of raw patients, written to a folder: what ``svgan predict`` does and what
``svgan evaluate`` scores.

For each patient: ``<ID>_pred.nii.gz`` (ACDC: ``<ID>_frameYY_pred.nii.gz`` per phase) with the
input's header, affine and shape and labels in the dataset's convention (``native``), and
``<ID>_pred.json`` with the diagnosis: the configured answer (``postprocess.diagnosis``), the
model head's probabilities and, for a cardiac dataset with that choice, the clinical-feature
forest's. A patient that cannot be read is reported, not fatal; every file appears whole or not
at all.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..data.datasets import get_dataset, load_patient
from ..data.io import atomic_path
from ..errors import DataError
from ..runs import build_run_generator, load_generator, load_run
from .clinical import truth_fitted_classifier
from .diagnosis import prior_adjusted, training_class_prior
from .inference import make_predict_fn
from .native import predict_volume, prediction_paths, write_prediction


class RunPredictor:
    """A run's generator, configuration and manifest, ready to predict raw patients."""

    def __init__(self, run_dir: str, overrides: list[str] | None = None, windows: str = "central"):
        self.cfg, self.manifest = load_run(run_dir, overrides=overrides)
        generator = load_generator(run_dir)
        self.predict_fn = make_predict_fn(generator)
        self.window_predict_fn = None
        if self.cfg.postprocess.foreground_window:  # the saved generator is built for whole images
            twin = build_run_generator(self.cfg, self.manifest, tuple(self.cfg.pipeline.crop_size))
            twin.set_weights(generator.get_weights())
            self.window_predict_fn = make_predict_fn(twin)
        self.dataset = get_dataset(self.manifest.dataset)
        self.windows = windows
        self.prior = training_class_prior(self.manifest, self.cfg.pipeline.class_sampling)
        self.forest = truth_fitted_classifier(self.manifest) if self.cfg.postprocess.diagnosis == "clinical_features" else None

    def label_settings(self) -> dict:
        """The settings besides the generator that decide ``predict``'s label maps (read by
        ``predict_volume``): a folder of kept label maps is valid while these stay the same."""
        post = self.cfg.postprocess
        return {"windows": self.windows, "largest_component": post.largest_component,
                "test_time_views": post.test_time_views, "foreground_window": post.foreground_window}

    def predict(self, record):
        """(volume, training classes [P, X, Y, Z] on the input grid, diagnosis dict) of one raw patient."""
        cfg = self.cfg
        volume = load_patient(record, cfg.data.resolved_modalities(), require_labels=False)
        labels, head = predict_volume(self.predict_fn, volume, cfg, self.manifest.data.get("nyul_standard"), mode=self.windows,
                                      window_predict_fn=self.window_predict_fn)
        head = prior_adjusted(head, self.prior, cfg.postprocess.disease_prior_correction)
        classes = self.dataset.disease_classes
        diagnosis = {"diagnosis_source": cfg.postprocess.diagnosis,
                     "head_probabilities": {c: float(v) for c, v in zip(classes, head)}}
        chosen = head
        if self.forest is not None:
            features = self.dataset.clinical_features(volume, record.info, label=labels)
            chosen = self.forest.predict_proba([features], len(classes))[0]
            diagnosis["clinical_feature_probabilities"] = {c: float(v) for c, v in zip(classes, chosen)}
        diagnosis.update({"disease": classes[int(np.argmax(chosen))],
                          "probabilities": {c: float(v) for c, v in zip(classes, chosen)}})
        return volume, labels, diagnosis

    def write(self, record, out_dir: str) -> list[str]:
        """Predict one raw patient into ``out_dir``; returns the files written."""
        volume, labels, diagnosis = self.predict(record)
        outputs = prediction_paths(out_dir, volume, record.info)
        for p, out in enumerate(outputs):
            write_prediction(labels[p], record.format, volume.geometry[p], out)
        json_path = os.path.join(out_dir, f"{volume.patient_id}_pred.json")
        with atomic_path(json_path) as tmp, open(tmp, "w") as f:
            json.dump({"patient": volume.patient_id, **diagnosis, "files": [os.path.basename(o) for o in outputs],
                       "source": os.path.abspath(record.folder)}, f, indent=1)
        return outputs + [json_path]


def predict_records(predictor: RunPredictor, records, out_dir: str, progress=None) -> dict:
    """Every record into ``out_dir``; returns {patient: reason} for those that could not be predicted."""
    os.makedirs(out_dir, exist_ok=True)
    failed = {}
    for i, record in enumerate(records):
        try:
            predictor.write(record, out_dir)
        except DataError as e:
            failed[record.patient_id] = str(e)
        if progress:
            progress(i + 1)
    return failed
