"""The prediction path: one object takes a raw patient to its label maps and diagnosis, and writes them.

``svgan predict`` and ``svgan evaluate`` build a ``RunPredictor`` once (``from_run``), with the
``PredictionSettings`` read once from the run's configuration and the command line, and for each
patient ``RunPredictor.predict`` runs:

1. read the patient (``data.datasets.load_patient``);
2. preprocess it as training did (``data.preprocess.preprocess_patient``: the run's ``prepare``
   settings and its Nyul landmarks);
3. class and disease probabilities on the prepared grid, of the patient and of each test-time view
   averaged (``test_time.predict_patient_views``, which runs ``inference.predict_patient`` window by
   window, each slice decoded once from its most central window by default);
4. the class probabilities back onto the input's grid (``data.preprocess.restore_probabilities``), then
   the argmax;
5. post-processing: the largest connected component of each structure (``postprocess``);
6. the diagnosis: the head's probabilities after the prior correction (``diagnosis.prior_adjusted``),
   or, with ``postprocess.diagnosis: clinical_features`` (ACDC), the clinical-feature forest on the
   label maps (``clinical.truth_fitted_classifier``).

``RunPredictor.write`` then writes ``<ID>_pred.nii.gz`` (ACDC: one per phase) with the input's header
(``native.write_prediction``) and ``<ID>_pred.json`` with the diagnosis. A patient that cannot be read
is reported, not fatal; every file appears whole or not at all.

Validation during training (``prepared_report.evaluate_prepared``) runs steps 3 and 5 on prepared
patients, without test-time views: it compares epochs, and nine views would cost every epoch end
nine passes per patient.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..data.datasets import get_dataset, load_patient
from ..data.io import atomic_path
from ..data.preprocess import preprocess_patient, restore_probabilities
from ..errors import DataError
from ..runs import load_generator, load_run
from .clinical import truth_fitted_classifier
from .diagnosis import prior_adjusted, training_class_prior
from .inference import make_predict_fn
from .native import prediction_paths, write_prediction
from .postprocess import keep_largest_component
from .test_time import predict_patient_views


@dataclass(frozen=True)
class PredictionSettings:
    """What prediction needs from a run's configuration and the command line, read once."""

    sequence_length: int
    batch_size: int
    model_size: tuple | None  # pipeline.image_size: the size the model reads (None: the prepared size)
    windows: str = "central"  # inference.WINDOW_MODES
    views: tuple = ()  # postprocess.test_time_views: (degrees, scale) pairs
    largest_component: bool = False
    diagnosis: str = "head"  # postprocess.diagnosis
    prior_correction: float = 0.0  # postprocess.disease_prior_correction

    @classmethod
    def from_config(cls, cfg, windows: str = "central", views=None) -> "PredictionSettings":
        """``views``: None for the configuration's test-time views."""
        pipe, post = cfg.pipeline, cfg.postprocess
        return cls(pipe.sequence_length, pipe.batch_size, tuple(pipe.image_size) if pipe.image_size else None, windows,
                   tuple(tuple(v) for v in (post.test_time_views if views is None else views)), post.largest_component,
                   post.diagnosis, post.disease_prior_correction)

    def label_key(self) -> dict:
        """The settings besides the generator that decide the label maps: kept predictions of a run stay
        valid while these do."""
        return {"windows": self.windows, "largest_component": self.largest_component,
                "test_time_views": [list(v) for v in self.views]}


class RunPredictor:
    """A generator with its run's configuration and manifest, ready to predict raw patients (see the
    module docstring)."""

    def __init__(self, predict_fn, cfg, manifest, settings: PredictionSettings):
        """``predict_fn``: ``inference.make_predict_fn`` of the generator."""
        self.predict_fn, self.cfg, self.manifest, self.settings = predict_fn, cfg, manifest, settings
        self.dataset = get_dataset(manifest.dataset)
        standard = manifest.data.get("nyul_standard")
        self.nyul_standard = None if not cfg.prepare.nyul or standard is None else np.asarray(standard)
        self.prior = training_class_prior(manifest, cfg.pipeline.class_sampling)
        self._forest = None

    @classmethod
    def from_run(cls, run_dir: str, overrides: list[str] | None = None, windows: str = "central") -> "RunPredictor":
        """A run folder's generator, with its configuration changed by ``overrides`` (``--set``)."""
        cfg, manifest = load_run(run_dir, overrides=overrides)
        return cls(make_predict_fn(load_generator(run_dir)), cfg, manifest, PredictionSettings.from_config(cfg, windows))

    @property
    def forest(self):
        """The clinical-feature forest of ``postprocess.diagnosis: clinical_features``, fitted on first use."""
        if self._forest is None:
            self._forest = truth_fitted_classifier(self.manifest)
        return self._forest

    # ---------------------------------------------------------------- the steps

    def probabilities(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step 3: (class probabilities [P, Z, H, W, K], disease probabilities [M]) of a prepared
        ``image`` [P, Z, H, W, C], its test-time views averaged in."""
        s = self.settings
        return predict_patient_views(self.predict_fn, image, s.sequence_length, s.batch_size, s.model_size, s.windows, s.views)

    def postprocess(self, classes: np.ndarray) -> np.ndarray:
        """Step 5 on classes [P, ...]: each phase's volume keeps the largest component of each structure."""
        return keep_largest_component(classes) if self.settings.largest_component else classes

    def head_probabilities(self, disease: np.ndarray) -> np.ndarray:
        """The head's disease probabilities after the prior correction (``postprocess.disease_prior_correction``)."""
        return prior_adjusted(disease, self.prior, self.settings.prior_correction)

    def diagnose(self, volume, info: dict, labels: np.ndarray, head: np.ndarray) -> dict:
        """Step 6: the configured diagnosis and the head's probabilities (the forest's too where chosen)."""
        classes = self.dataset.disease_classes
        diagnosis = {"diagnosis_source": self.settings.diagnosis,
                     "head_probabilities": {c: float(v) for c, v in zip(classes, head)}}
        chosen = head
        if self.settings.diagnosis == "clinical_features" and self.forest is not None:
            features = self.dataset.clinical_features(volume, info, label=labels)
            chosen = self.forest.predict_proba([features], len(classes))[0]
            diagnosis["clinical_feature_probabilities"] = {c: float(v) for c, v in zip(classes, chosen)}
        diagnosis.update({"disease": classes[int(np.argmax(chosen))],
                          "probabilities": {c: float(v) for c, v in zip(classes, chosen)}})
        return diagnosis

    def predict(self, record):
        """(volume, training classes [P, X, Y, Z] on the input grid, diagnosis dict) of one raw patient."""
        volume = load_patient(record, self.cfg.data.resolved_modalities(), require_labels=False)
        prepared = preprocess_patient(volume, self.cfg.prepare, nyul_standard=self.nyul_standard)
        probs, disease = self.probabilities(prepared.image)
        native = np.stack([restore_probabilities(probs[p], prepared.crop).argmax(-1).astype(np.uint8)
                           for p in range(probs.shape[0])])
        labels = self.postprocess(native)
        return volume, labels, self.diagnose(volume, record.info, labels, self.head_probabilities(disease))

    def write(self, record, out_dir: str) -> list[str]:
        """Predict one raw patient into ``out_dir``; returns the files written."""
        return self.save(*self.predict(record), record, out_dir)

    def save(self, volume, labels: np.ndarray, diagnosis: dict, record, out_dir: str) -> list[str]:
        """``predict``'s answer for ``record`` written into ``out_dir``; returns the files written."""
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
