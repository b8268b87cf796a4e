"""Synthetic captioning scenes: one to three objects (shape, colour, size) on a dark canvas, a few
reference captions each from a small grammar, and every object's pixel mask (the ground truth the
attention localisation score is measured against).

Grammar (NP = "a [size] colour shape", the size left out in some references):
  one object     "a small red circle" | "there is a small red circle" | "a red circle"
  two objects    "NP1 left of NP2" | "NP2 right of NP1" (or above / below when they are further apart
                 vertically than horizontally)
  three objects  "NP1 , NP2 and NP3" listed from left to right | "from left to right NP1 , NP2 and NP3"
                 | "NP1 left of NP2 and NP3" (first and second by x)

Real data (the reader below): a folder of images and a captions JSON file mapping each image's file name to
a list of captions, as Flickr8k / COCO exports are commonly reshaped:

    {"1000268201.jpg": ["A child in a pink dress ...", "A girl going into ..."], ...}

Every problem is a DataError naming the file and the entry (image name) and what was expected.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError, not_utf8

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 235), "yellow": (230, 210, 40)}
SIZES = {"small": 6, "large": 11}          # half-width in pixels at 64x64 (scaled with the image size)
RELATIONS = ("left of", "right of", "above", "below")
REFERENCES = 4                              # reference captions per scene


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: int
    cy: int
    half: int
    mask: np.ndarray = field(repr=False)     # bool [H, W]

    def np(self, with_size: bool = True) -> str:
        return f"a {self.size} {self.colour} {self.shape}" if with_size else f"a {self.colour} {self.shape}"


@dataclass
class Scene:
    image: np.ndarray                          # uint8 [H, W, 3]
    objects: list[SceneObject]
    captions: list[str]


def _mask(shape: str, cx: int, cy: int, half: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= half ** 2
    if shape == "square":
        return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    # triangle pointing up: apex at (cx, cy - half), base at y = cy + half
    rel = (yy - (cy - half)) / max(2 * half, 1)          # 0 at apex, 1 at base
    return (yy >= cy - half) & (yy <= cy + half) & (np.abs(xx - cx) <= rel * half)


def _place(rng: np.random.Generator, n: int, halves: list[int], size: int, tries: int = 200) -> list[tuple[int, int]] | None:
    """Centres for n objects with the given half-widths, apart by a gap of >= 3 px, inside the canvas."""
    centres: list[tuple[int, int]] = []
    for half in halves:
        for _ in range(tries):
            cx, cy = (int(v) for v in rng.integers(half + 1, size - half - 1, size=2))
            if all(max(abs(cx - x), abs(cy - y)) > half + h + 3 for (x, y), h in zip(centres, halves)):
                centres.append((cx, cy))
                break
        else:
            return None
    return centres


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where a is relative to b: horizontal when they are further apart in x than in y."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def captions_for(objects: list[SceneObject]) -> list[str]:
    """REFERENCES reference captions of a scene (fixed order: with sizes first, then without)."""
    if len(objects) == 1:
        o = objects[0]
        caps = [o.np(), f"there is {o.np()}", o.np(False), f"there is {o.np(False)}"]
    elif len(objects) == 2:
        a, b = sorted(objects, key=lambda o: (o.cx, o.cy))
        rel = relation(a, b)
        caps = [f"{a.np()} {rel} {b.np()}", f"{b.np()} {INVERSE[rel]} {a.np()}",
                f"{a.np(False)} {rel} {b.np(False)}", f"{b.np(False)} {INVERSE[rel]} {a.np(False)}"]
    else:
        a, b, c = sorted(objects, key=lambda o: (o.cx, o.cy))
        caps = [f"{a.np()} , {b.np()} and {c.np()}", f"from left to right {a.np()} , {b.np()} and {c.np()}",
                f"{a.np(False)} , {b.np(False)} and {c.np(False)}",
                f"{a.np(False)} {relation(a, b)} {b.np(False)} and {c.np(False)}"]
    return caps[:REFERENCES]


def generate_scene(rng: np.random.Generator, size: int = 64, max_objects: int = 3, noise: float = 8.0) -> Scene:
    """One scene: 1..max_objects objects (no two with the same colour and shape), drawn on a noisy dark canvas."""
    scale = size / 64.0
    while True:
        n = int(rng.integers(1, max_objects + 1))
        kinds: list[tuple[str, str]] = []
        while len(kinds) < n:
            k = (SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))])
            if k not in kinds:
                kinds.append(k)
        sizes = [list(SIZES)[rng.integers(len(SIZES))] for _ in range(n)]
        halves = [max(2, int(round(SIZES[s] * scale))) for s in sizes]
        centres = _place(rng, n, halves, size)
        if centres is not None:
            break
    image = rng.normal(20.0, noise, size=(size, size, 3))
    objects = []
    for (shape, colour), s, half, (cx, cy) in zip(kinds, sizes, halves, centres):
        mask = _mask(shape, cx, cy, half, size)
        image[mask] = np.array(COLOURS[colour], dtype=float) + rng.normal(0.0, noise, size=(int(mask.sum()), 3))
        objects.append(SceneObject(shape, colour, s, cx, cy, half, mask))
    image = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(image, objects, captions_for(objects))


def generate(n: int, seed: int, size: int = 64, max_objects: int = 3) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [generate_scene(rng, size, max_objects) for _ in range(n)]


def shape_words() -> tuple[str, ...]:
    return SHAPES


def referent(tokens: list[str], position: int, objects: list[dict]) -> int | None:
    """The scene object a generated shape word (tokens[position]) names: the object of that shape whose
    colour is the colour word right before it; else the only object of that shape; else None."""
    shape = tokens[position]
    same = [i for i, o in enumerate(objects) if o["shape"] == shape]
    if position > 0 and tokens[position - 1] in COLOURS:
        exact = [i for i in same if objects[i]["colour"] == tokens[position - 1]]
        if len(exact) == 1:
            return exact[0]
    return same[0] if len(same) == 1 else None


# ---- real data ------------------------------------------------------------------------------

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
