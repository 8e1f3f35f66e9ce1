"""Label and disease conventions, converted in one place.

On disk each challenge release has its own label values; inside svgan every
dataset uses contiguous training classes 0..K-1. ``to_training`` runs once at
reading time and ``to_dataset`` once at writing time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class LabelConvention:
    name: str
    # on-disk value -> training class
    mapping: dict[int, int]
    # training class -> on-disk value written back in predictions
    inverse: dict[int, int]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_training(self, labels: np.ndarray, path: str | None = None) -> np.ndarray:
        """Map on-disk labels to training classes; unknown values are an error naming the file."""
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise DataError(f"label map has non-integer values (expected {sorted(self.mapping)})", path)
        values = np.unique(rounded.astype(np.int64))
        unknown = [int(v) for v in values if int(v) not in self.mapping]
        if unknown:
            raise DataError(
                f"labels {unknown} are outside the {self.name} convention {sorted(self.mapping)}", path
            )
        lut = np.zeros(max(self.mapping) + 1, dtype=np.uint8)
        for disk, cls in self.mapping.items():
            lut[disk] = cls
        return lut[rounded.astype(np.int64)]

    def to_dataset(self, classes: np.ndarray) -> np.ndarray:
        lut = np.array([self.inverse[c] for c in range(self.num_classes)], dtype=np.uint8)
        return lut[classes]


BRATS_CLASS_NAMES = ("background", "necrotic/non-enhancing core", "edema", "enhancing tumour")

LABEL_CONVENTIONS = {
    # BraTS 2017-2021: 1 necrotic/non-enhancing core, 2 edema, 4 enhancing.
    "brats": LabelConvention("brats", {0: 0, 1: 1, 2: 2, 4: 3}, {0: 0, 1: 1, 2: 2, 3: 4}, BRATS_CLASS_NAMES),
    # BraTS 2023+: 1 NCR, 2 ED, 3 ET.
    "brats2023": LabelConvention("brats2023", {0: 0, 1: 1, 2: 2, 3: 3}, {0: 0, 1: 1, 2: 2, 3: 3}, BRATS_CLASS_NAMES),
    # BraTS 2013-2015: 1 necrosis, 2 edema, 3 non-enhancing core, 4 enhancing. Both 1 and 3 belong
    # to the tumour core, which is what label 1 means from 2017 on; written back as 2017 labels.
    "brats2015": LabelConvention("brats2015", {0: 0, 1: 1, 2: 2, 3: 1, 4: 3}, {0: 0, 1: 1, 2: 2, 3: 4}, BRATS_CLASS_NAMES),
    # ACDC: 1 RV, 2 MYO, 3 LV.
    "acdc": LabelConvention("acdc", {0: 0, 1: 1, 2: 2, 3: 3}, {0: 0, 1: 1, 2: 2, 3: 3}, ("background", "RV", "MYO", "LV")),
}

# Patient-level disease classes, in training order.
DISEASE_CLASSES = {
    "brats": ("HGG", "LGG"),
    "acdc": ("NOR", "MINF", "DCM", "HCM", "ARV"),
}

# Names seen on disk for the same class: ACDC's Info.cfg writes the abnormal right ventricle
# group as "RV", the papers as "ARV".
_DISEASE_ALIASES = {"RV": "ARV"}


def disease_index(dataset: str, name: str | None, path: str | None = None) -> int | None:
    """Training index of a disease name, None for an unknown grade (e.g. BraTS 2021)."""
    if name is None:
        return None
    canonical = _DISEASE_ALIASES.get(name.strip().upper(), name.strip().upper())
    classes = DISEASE_CLASSES[dataset]
    if canonical not in classes:
        raise DataError(f"unknown disease class {name!r} (expected one of {list(classes)} or RV)", path)
    return classes.index(canonical)

# Evaluation regions as sets of training classes: BraTS whole tumour, tumour core and
# enhancing tumour; ACDC's three structures.
REGIONS = {
    "brats": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
    "acdc": {"LV": (3,), "RV": (1,), "MYO": (2,)},
}
