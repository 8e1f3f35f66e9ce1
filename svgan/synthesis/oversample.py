"""``svgan synthesize``: train a CycleGAN between two classes of a 2D image set and write
synthetic images of the target class, with provenance, for the training pipeline to mix in.

Only training-split images are used, both to train the CycleGAN and as sources to translate,
so nothing derived from a validation or test image reaches training. The output folder holds
PNGs at the dataset's image size and ``provenance.json`` (per image: file, class, source
image; for the folder: the generator file, seed and configuration). The folder appears only
when complete (``svgan.data.io.atomic_folder``).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ..config import ImagesConfig
from ..data.images2d import PROVENANCE_NAME, ImageSet, load_splits
from ..data.io import atomic_folder, require_new_folder
from ..errors import DataError
from .cyclegan import GENERATOR_FILES, to_model_range, to_uint8, train_cyclegan, translate


def cyclegan_run_dir(cfg: ImagesConfig, source: str, target: str) -> str:
    return os.path.join(cfg.run_dir, f"cyclegan-{source}-to-{target}")


def synthesize(cfg: ImagesConfig, source: str, target: str, count: int, out_dir: str, data_root: str | None = None,
               run_dir: str | None = None, verbose: bool = True, train: ImageSet | None = None) -> dict:
    """Train (or resume) the CycleGAN ``source`` <-> ``target`` and write ``count`` translations.
    ``train``: the training split when the caller has loaded it already."""
    import keras

    if count < 1:
        raise DataError(f"--count must be >= 1, got {count}")
    require_new_folder(out_dir)
    if train is None:
        train = load_splits(cfg, data_root)["train"]
    for name in (source, target):
        if name not in train.classes:
            raise DataError(f"unknown class {name!r} (classes: {', '.join(train.classes)})", data_root or cfg.data.root)
    if source == target:
        raise DataError("--from and --to name the same class")
    a_index = np.flatnonzero(train.labels == train.classes.index(source))
    b_index = np.flatnonzero(train.labels == train.classes.index(target))
    if not len(a_index) or not len(b_index):
        raise DataError(f"the training split needs images of both {source!r} and {target!r}", data_root or cfg.data.root)
    run_dir = run_dir or cyclegan_run_dir(cfg, source, target)
    train_cyclegan(cfg.cyclegan, to_model_range(train.images[a_index]), to_model_range(train.images[b_index]), run_dir,
                   cfg.data.image_size, cfg.seed, verbose)
    model_path = os.path.abspath(os.path.join(run_dir, GENERATOR_FILES["ab"]))
    generator = keras.models.load_model(model_path)
    rng = np.random.default_rng(cfg.seed)
    sources = a_index[np.resize(rng.permutation(len(a_index)), count)]  # every source once before any repeats
    images = to_uint8(translate(generator, to_model_range(train.images[sources])))

    from PIL import Image

    records = []
    with atomic_folder(out_dir) as folder:
        for i, (image, src) in enumerate(zip(images, sources)):
            name = f"synthetic_{target}_{i:05d}.png"
            Image.fromarray(image).save(os.path.join(folder, name), format="PNG")
            records.append({"file": name, "class": target, "source": os.path.abspath(train.paths[src]),
                            "source_class": source})
        provenance = {"images": records, "generator": model_path, "seed": cfg.seed, "from": source, "to": target,
                      "config": dataclasses.asdict(cfg)}
        with open(os.path.join(folder, PROVENANCE_NAME), "w") as f:
            json.dump(provenance, f, indent=1)
    return {"out_dir": out_dir, "images": len(records), "cyclegan_run": run_dir}
