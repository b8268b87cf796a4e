"""Real captioning data: a folder of images and a captions JSON file mapping each image's file name to
a list of captions, as Flickr8k / COCO exports are commonly reshaped:

    {"1000268201.jpg": ["A child in a pink dress ...", "A girl going into ..."], ...}

Every problem is a DataError naming the file and the entry (image name) and what was expected.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ...errors import DataError, not_utf8

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(caption: str) -> list[str]:
    """Lower-cased words and numbers (punctuation dropped), the usual captioning preprocessing."""
    return TOKEN.findall(caption.lower())


def read_captions_json(path: str | Path) -> dict[str, list[str]]:
    """{image name: [caption, ...]} from `path`, checked entry by entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: captions file not found; expected a JSON file mapping image names to lists of captions") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {not_utf8(exc)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; expected an "
                        "object mapping image names to lists of captions") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping image names to lists of captions, got {type(data).__name__}")
    if not data:
        raise DataError(f"{path}: no entries; expected at least one image name with its captions")
    out: dict[str, list[str]] = {}
    for name, caps in data.items():
        if not name.strip():
            raise DataError(f"{path}: entry {name!r}: empty image name; expected a file name in the images folder")
        if isinstance(caps, str):
            caps = [caps]
        if not isinstance(caps, list):
            raise DataError(f"{path}: entry {name!r}: expected a list of captions, got {type(caps).__name__}")
        if not caps:
            raise DataError(f"{path}: entry {name!r}: empty list of captions; expected at least one non-empty caption")
        for k, cap in enumerate(caps):
            if not isinstance(cap, str):
                raise DataError(f"{path}: entry {name!r}, caption {k + 1}: expected a string, got {type(cap).__name__}")
            if not tokenize(cap):
                raise DataError(f"{path}: entry {name!r}, caption {k + 1}: empty caption ({cap!r}); expected at least one word")
        out[name] = caps
    return out


def load_image(path: Path, size: int, entry: str, captions_file: Path) -> np.ndarray:
    """RGB uint8 [size, size, 3] (resized with bilinear filtering)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"{captions_file}: entry {entry!r}: image {path} does not exist; expected an image file of that "
                        "name in the images folder")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{captions_file}: entry {entry!r}: image {path} cannot be read ({exc}); expected a PNG/JPEG image") from None


def read_folder(images: str | Path, captions: str | Path, size: int) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """(names, images [N, size, size, 3] uint8, captions per image), in the captions file's order."""
    images, captions = Path(images), Path(captions)
    if not images.is_dir():
        raise DataError(f"{images}: images folder not found; expected a folder holding the images named in {captions}")
    table = read_captions_json(captions)
    names = list(table)
    arrays = np.stack([load_image(images / name, size, name, captions) for name in names])
    return names, arrays, [table[n] for n in names]
