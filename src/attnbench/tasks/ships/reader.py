"""Real data: a folder of images and a folder of single-channel PNG class masks, as annotation
tools export them.

    images/harbour_001.png   (or .jpg, .jpeg, .tif, .tiff, .bmp; RGB, RGBA or grey)
    masks/harbour_001.png    (same stem; mode L, P or I; one class id per pixel)

Class ids: 0 sea, 1 land, 2 hull, 3 bow/stern (the bow and stern ends of a ship; see
generator.CLASSES). Every image needs a mask of the same width and height and the other way round.
Images larger than the tile size are cut into non-overlapping tiles (the remainder at the right
and bottom edges is dropped); an image smaller than one tile is an error. Real masks carry no
inshore/offshore labels, so the inshore-only bow/stern IoU is not computed for them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import DataError
from .data import CLASSES, Tiles

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_MODES = ("L", "P", "I", "I;16", "1")


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc}); expected a PNG, JPEG, TIFF or BMP file") from None


def _listing(folder: Path, what: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes:
            if p.stem in found:
                raise DataError(f"{p}: two {what} files share the name {p.stem!r} ({found[p.stem].name}); expected one per tile")
            found[p.stem] = p
    if not found:
        raise DataError(f"{folder}: no {what} files ({', '.join(suffixes)})")
    return found


def read_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], mask uint8 [H, W]) of one annotated image, checked."""
    img = _open(image_path)
    mask_img = _open(mask_path)
    if mask_img.mode not in MASK_MODES:
        raise DataError(f"{mask_path}: mask has mode {mask_img.mode!r} ({len(mask_img.getbands())} channels); "
                        f"expected a single-channel PNG (mode L, P or I) of class ids")
    if img.size != mask_img.size:
        raise DataError(f"{mask_path}: mask is {mask_img.size[0]}x{mask_img.size[1]} pixels but its image {image_path} is "
                        f"{img.size[0]}x{img.size[1]}; expected the same width and height")
    mask = np.asarray(mask_img).astype(np.int64)
    bad = (mask < 0) | (mask >= len(CLASSES))
    if bad.any():
        y, x = np.argwhere(bad)[0]
        ids = sorted(set(np.unique(mask[bad]).tolist()))
        raise DataError(f"{mask_path}: unknown class id(s) {ids[:10]} (first at row {y}, column {x}); expected "
                        + ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES)))
    image = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return image, mask.astype(np.uint8)


def read_folder(images_dir: str | Path, masks_dir: str | Path, size: int) -> tuple[Tiles, list[str]]:
    """All annotated images cut into size x size tiles, and each tile's source ("name@row,col")."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images = _listing(images_dir, "image", IMAGE_SUFFIXES)
    masks = _listing(masks_dir, "mask", (".png",))
    for stem, path in images.items():
        if stem not in masks:
            raise DataError(f"{path}: no mask {masks_dir / (stem + '.png')}; expected one mask PNG per image")
    for stem, path in masks.items():
        if stem not in images:
            raise DataError(f"{path}: no image named {stem}.* in {images_dir}; expected one image per mask")
    tiles_x, tiles_y, names = [], [], []
    for stem in sorted(images):
        image, mask = read_pair(images[stem], masks[stem])
        h, w = mask.shape
        if h < size or w < size:
            raise DataError(f"{images[stem]}: {w}x{h} pixels is smaller than one {size}x{size} tile; expected at least "
                            f"{size} pixels each way (or a smaller data.size)")
        for r in range(0, h - size + 1, size):
            for c in range(0, w - size + 1, size):
                tiles_x.append(image[r:r + size, c:c + size])
                tiles_y.append(mask[r:r + size, c:c + size])
                names.append(f"{stem}@{r},{c}")
    x = np.stack(tiles_x)
    y = np.stack(tiles_y)
    return Tiles(x, y, np.zeros_like(y), {"inshore": None, "offshore": None}), names
