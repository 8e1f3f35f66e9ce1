"""2D image datasets as folders per class (``root/<class>/*.png|jpg``, ISIC-style; Zunair and Ben Hamza).

Every image, real or synthetic, goes through ``load_image``: RGB, padded to a square with
black borders (Zunair and Ben Hamza pad ISIC images "to make them square in order to retain the original
aspect ratio"), resized to ``data.image_size``, kept as uint8; the models see it divided by 255.
The split is stratified by class and seeded (``svgan.data.split``), per image. What training
adds (classic offline augmentation, synthetic minority images) enters the training split only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .._tf import import_tf
from ..config import ImagesConfig
from ..errors import DataError
from .split import stratified_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PROVENANCE_NAME = "provenance.json"  # written by `svgan synthesize` beside its images


@dataclass
class ImageSet:
    """uint8 images [N, H, W, 3], class indices [N], and where each came from."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    classes: list[str]

    def subset(self, index) -> "ImageSet":
        index = np.asarray(index, dtype=int)
        return ImageSet(self.images[index], self.labels[index], [self.paths[i] for i in index], self.classes)

    def counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.classes)).tolist()


def class_names(root: str, classes: list[str] | None = None) -> list[str]:
    """The label order: ``classes`` as given (each must be a folder), else the sorted folder names."""
    if not os.path.isdir(root):
        raise DataError("image folder not found", root)
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if classes:
        missing = [c for c in classes if c not in folders]
        if missing:
            raise DataError(f"no folder for class {missing[0]!r} (found: {', '.join(folders) or 'none'})", root)
        return list(classes)
    if len(folders) < 2:
        raise DataError(f"need one folder per class, at least 2 (found: {', '.join(folders) or 'none'})", root)
    return folders


def discover_images(root: str, classes: list[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """(image paths, class indices, class names) of ``root/<class>/*.png|jpg``."""
    names = class_names(root, classes)
    paths, labels = [], []
    for k, name in enumerate(names):
        folder = os.path.join(root, name)
        found = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise DataError(f"class {name!r} has no .png or .jpg image", folder)
        paths += [os.path.join(folder, f) for f in found]
        labels += [k] * len(found)
    return paths, labels, names


def load_image(path: str, size) -> np.ndarray:
    """RGB uint8 [H, W, 3]: padded to a square, then resized to ``size`` (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = max(img.size)
            square = Image.new("RGB", (side, side))
            square.paste(img, ((side - img.size[0]) // 2, (side - img.size[1]) // 2))
            resized = square.resize((int(size[1]), int(size[0])), Image.BILINEAR)
            return np.asarray(resized, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"unreadable image ({type(e).__name__}: {e})", path) from None


def load_images(paths: list[str], labels, classes: list[str], size) -> ImageSet:
    images = np.stack([load_image(p, size) for p in paths]) if paths else np.zeros((0, *size, 3), np.uint8)
    return ImageSet(images, np.asarray(labels, dtype=np.int64), list(paths), list(classes))


def split_indices(labels, fractions, seed: int) -> dict[str, np.ndarray]:
    """Stratified, seeded train / validation / test indices."""
    assignment = stratified_split({str(i): int(y) for i, y in enumerate(labels)}, fractions, seed)
    return {s: np.array(sorted(int(i) for i, v in assignment.items() if v == s), dtype=int)
            for s in ("train", "validation", "test")}


def load_splits(cfg: ImagesConfig, root: str | None = None) -> dict[str, ImageSet]:
    """The real images of ``root`` (default ``data.root``) split into train / validation / test."""
    root = root or cfg.data.root
    if not root:
        raise DataError("no image folder: give --data or data.root")
    paths, labels, names = discover_images(root, cfg.data.classes)
    everything = load_images(paths, labels, names, cfg.data.image_size)
    return {s: everything.subset(i) for s, i in split_indices(labels, cfg.data.split_fractions, cfg.data.split_seed).items()}


# ---------------------------------------------------------------- what training adds

def augment_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One classic random transform (Zunair and Ben Hamza Section 2.3): flips, rotation, shift, zoom, brightness."""
    from scipy import ndimage

    x = image.astype(np.float32)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.5:
        x = x[::-1]
    h, w = x.shape[:2]
    angle = np.deg2rad(rng.uniform(-30, 30))
    zoom = rng.uniform(0.9, 1.1)
    c, s = np.cos(angle) / zoom, np.sin(angle) / zoom
    matrix = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    centre = np.array([(h - 1) / 2, (w - 1) / 2, 0])
    shift = np.array([rng.uniform(-0.1, 0.1) * h, rng.uniform(-0.1, 0.1) * w, 0])
    offset = centre - matrix @ (centre + shift)
    x = ndimage.affine_transform(x, matrix, offset=offset, order=1, mode="reflect")
    x = x * rng.uniform(0.8, 1.2)
    return np.clip(x, 0, 255).astype(np.uint8)


def augmented(train: ImageSet, factor: int, seed: int) -> ImageSet:
    """The training set at ``factor`` times its size: the originals plus (factor - 1) random
    copies of each (offline, as Zunair and Ben Hamza's Augment-5x / -10x baselines)."""
    if factor <= 1:
        return train
    rng = np.random.default_rng(seed)
    extra = [augment_image(img, rng) for _ in range(factor - 1) for img in train.images]
    labels = np.concatenate([train.labels, np.tile(train.labels, factor - 1)])
    paths = train.paths + [f"{p}#augmented{k}" for k in range(1, factor) for p in train.paths]
    return ImageSet(np.concatenate([train.images, np.stack(extra)]), labels, paths, train.classes)


def read_synthetic(folder: str, classes: list[str], size) -> ImageSet:
    """The images that ``svgan synthesize`` wrote into ``folder``, by its provenance file."""
    path = os.path.join(folder, PROVENANCE_NAME)
    try:
        with open(path) as f:
            records = json.load(f)["images"]
    except FileNotFoundError:
        raise DataError(f"no {PROVENANCE_NAME}: not a folder written by svgan synthesize", folder) from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"unreadable provenance ({e})", path) from None
    unknown = sorted({r["class"] for r in records} - set(classes))
    if unknown:
        raise DataError(f"synthetic class {unknown[0]!r} is not one of the dataset's classes {classes}", path)
    paths = [os.path.join(folder, r["file"]) for r in records]
    return load_images(paths, [classes.index(r["class"]) for r in records], classes, size)


def with_synthetic(train: ImageSet, synthetic: ImageSet, ratio: float | None) -> ImageSet:
    """``train`` plus synthetic images of each class until that class has ``ratio`` times the
    largest class's real count (None: all of them); never more than were synthesised."""
    counts = np.bincount(train.labels, minlength=len(train.classes))
    keep = []
    for k in range(len(train.classes)):
        mine = np.flatnonzero(synthetic.labels == k)
        wanted = len(mine) if ratio is None else max(0, int(round(ratio * counts.max())) - counts[k])
        keep += mine[:wanted].tolist()
    add = synthetic.subset(keep)
    return ImageSet(np.concatenate([train.images, add.images]), np.concatenate([train.labels, add.labels]),
                    train.paths + add.paths, train.classes)


def training_set(cfg: ImagesConfig, train: ImageSet) -> ImageSet:
    """The training split with the configuration's augmentation and synthetic images added."""
    out = augmented(train, cfg.data.augment_factor, cfg.seed)
    for folder in cfg.data.synthetic_dirs:
        out = with_synthetic(out, read_synthetic(folder, train.classes, cfg.data.image_size), cfg.data.oversample_to_ratio)
    return out


def image_dataset(images: ImageSet, batch_size: int, shuffle: bool, seed: int):
    """Batches of (RGB float32 in [0, 1], class index) for Keras."""
    tf = import_tf()
    ds = tf.data.Dataset.from_tensor_slices((images.images, images.labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(images.labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(2)
