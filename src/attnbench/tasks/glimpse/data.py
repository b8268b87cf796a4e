"""Digits on a canvas: the translated, cluttered digits of the RAM paper built from real handwriting.

Source images are scikit-learn's bundled `load_digits` (1,797 real 8x8 handwritten digits, 17 grey
levels) or a user's .npz of images and labels. Each image is upsampled (nearest neighbour) and put
on a blank square canvas:

- `cluttered`: at a random position, over `clutter` fragments (random `fragment` x `fragment`
  crops) cut from *other* digit images of the same split, pasted at random places (pixel-wise max);
- `centred`: in the middle of the canvas, nothing else.

The split is made over the source images, before any canvas exists, and every canvas of a split
(its digit and its clutter) is built from that split's images only, so no test canvas shows a
digit image (or a piece of one) that training saw. Byte-identical source images are kept in one
split. Every canvas records its ground truth: the label, the source image, the digit's box and the
images its clutter came from. (The training loop redraws the cluttered training canvases each
epoch with `compose`, from the training images only.)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError

VARIANTS = ("cluttered", "centred")
SPLITS = ("train", "valid", "test")


@dataclass
class Source:
    images: np.ndarray      # [N, h, w] float32 in [0, 1]
    labels: np.ndarray      # [N] int64
    origin: str             # where they came from (for messages and the manifest)


def sklearn_digits() -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    return Source(images, bunch.target.astype(np.int64), "sklearn.datasets.load_digits")


def read_npz(path: str | Path, images_key: str = "images", labels_key: str = "labels") -> Source:
    """A user's digits: an .npz with `images` [N, H, W] (any non-negative numbers; scaled by the
    file's maximum) and integer `labels` [N] (0 .. classes - 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected an .npz with arrays {images_key!r} [N, H, W] and {labels_key!r} [N]")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - zip/pickle/format errors all mean "not a usable npz"
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}); expected arrays "
                        f"{images_key!r} [N, H, W] and {labels_key!r} [N]") from None
    for key in (images_key, labels_key):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r}; found {', '.join(sorted(arrays)) or 'none'}; expected "
                            f"{images_key!r} [N, H, W] and {labels_key!r} [N]")
    images, labels = arrays[images_key], arrays[labels_key]
    if images.ndim != 3 or images.shape[0] == 0:
        raise DataError(f"{path}: array {images_key!r} has shape {images.shape}; expected [N, H, W] with N >= 1 "
                        "(one grey-level image per entry)")
    if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
        raise DataError(f"{path}: array {images_key!r} has dtype {images.dtype}; expected real numbers")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{path}: array {labels_key!r} has shape {labels.shape}; expected ({images.shape[0]},), one "
                        f"label per image of {images_key!r}")
    images = images.astype(np.float64)
    bad = ~np.isfinite(images).all(axis=(1, 2)) | (images < 0).any(axis=(1, 2))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: {images_key}[{i}] holds a negative or non-finite pixel; expected grey levels >= 0")
    if not np.issubdtype(labels.dtype, np.integer):
        as_int = labels.astype(np.int64) if np.issubdtype(labels.dtype, np.number) else None
        if as_int is None or not np.array_equal(as_int, labels):
            i = 0 if as_int is None else int(np.flatnonzero(as_int != labels)[0])
            raise DataError(f"{path}: {labels_key}[{i}] is {labels[i].item()!r}; expected an integer class label")
        labels = as_int
    labels = labels.astype(np.int64)
    if (labels < 0).any():
        i = int(np.flatnonzero(labels < 0)[0])
        raise DataError(f"{path}: {labels_key}[{i}] is {labels[i]}; expected a class label >= 0")
    peak = images.max()
    if peak <= 0:
        raise DataError(f"{path}: every image of {images_key!r} is blank; expected grey levels > 0 somewhere")
    return Source((images / peak).astype(np.float32), labels, str(path))


def upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of [N, h, w] by an integer factor."""
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def image_groups(images: np.ndarray) -> np.ndarray:
    """Group id per image: byte-identical images share one (so they land in one split)."""
    keys = [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]
    _, groups = np.unique(keys, return_inverse=True)
    return groups.astype(np.int64)


def split_images(labels: np.ndarray, groups: np.ndarray, valid_fraction: float, test_fraction: float,
                 seed: int) -> np.ndarray:
    """'train' | 'valid' | 'test' per source image, stratified by label, whole groups at a time."""
    rng = np.random.default_rng([seed, 11])
    split = np.empty(len(labels), dtype="<U5")
    for label in np.unique(labels):
        members = np.unique(groups[labels == label])
        members = members[rng.permutation(len(members))]
        n_test = int(round(len(members) * test_fraction))
        n_valid = int(round(len(members) * valid_fraction))
        for name, chosen in (("test", members[:n_test]), ("valid", members[n_test:n_test + n_valid]),
                             ("train", members[n_test + n_valid:])):
            split[np.isin(groups, chosen) & (labels == label)] = name
    return split


@dataclass
class Canvases:
    images: np.ndarray      # [M, C, C] uint8 (0..255)
    labels: np.ndarray      # [M]
    source: np.ndarray      # [M] index of the digit's source image
    box: np.ndarray         # [M, 4] the digit's top, left, bottom, right (exclusive) in pixels
    clutter: np.ndarray     # [M, K] source images of the clutter fragments (-1: none)


def compose(digits: np.ndarray, labels: np.ndarray, members: np.ndarray, placements: int, variant: str,
            canvas: int, clutter: int, fragment: int, rng: np.random.Generator) -> Canvases:
    """Canvases of the source images `members` (indices into `digits`), `placements` per image for
    the cluttered variant and one for the centred one; clutter is cut from `members` only."""
    n_img, size = len(members), digits.shape[1]
    if digits.shape[2] != size:
        raise DataError(f"digit images are {digits.shape[1]}x{digits.shape[2]} after upsampling; expected square images")
    if size > canvas:
        raise DataError(f"digit images are {size}x{size} after upsampling; expected at most the canvas size {canvas}")
    per = placements if variant == "cluttered" else 1
    k = clutter if variant == "cluttered" else 0
    m = n_img * per
    out = np.zeros((m, canvas, canvas), dtype=np.float32)
    source = np.repeat(members, per)
    box = np.zeros((m, 4), dtype=np.int16)
    junk = np.full((m, k), -1, dtype=np.int32)
    frag = min(fragment, size)
    for i in range(m):
        if k and n_img > 1:
            for j in range(k):
                other = source[i]
                while other == source[i]:
                    other = members[rng.integers(n_img)]
                fy, fx = rng.integers(0, size - frag + 1, size=2)
                piece = digits[other, fy:fy + frag, fx:fx + frag]
                cy, cx = rng.integers(0, canvas - frag + 1, size=2)
                np.maximum(out[i, cy:cy + frag, cx:cx + frag], piece, out=out[i, cy:cy + frag, cx:cx + frag])
                junk[i, j] = other
        if variant == "cluttered":
            y, x = rng.integers(0, canvas - size + 1, size=2)
        else:
            y = x = (canvas - size) // 2
        np.maximum(out[i, y:y + size, x:x + size], digits[source[i]], out=out[i, y:y + size, x:x + size])
        box[i] = (y, x, y + size, x + size)
    return Canvases(np.round(out * 255).astype(np.uint8), labels[source].astype(np.int64), source.astype(np.int32),
                    box, junk)
