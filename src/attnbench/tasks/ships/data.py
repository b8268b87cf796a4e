"""Synthetic optical remote-sensing tiles with inshore and offshore ships, and their gold masks.

A tile (RGB, values in [0, 1]) holds textured land behind an irregular coastline, piers reaching
into the sea, a sea with waves, glint and sensor noise, and ships: elongated hulls with a pointed
bow and a blunt stern at any heading. Most ships are moored against the coast or a pier (inshore:
hull colours close to the land's, the hard case); the others float in open water (offshore:
bright hulls). Land also carries "decoys": elongated, pointed roofs and quay structures in ship
colours, labelled land, that a net seeing only a few pixels cannot tell from a bow.

Per pixel the generator knows the class (CLASSES) and whether the pixel belongs to an inshore or
an offshore ship (SHIP_KIND), so the benchmark can score bow/stern on inshore ships alone.

Real data (the reader below): a folder of images and a folder of single-channel PNG class masks, as annotation
tools export them.

    images/harbour_001.png   (or .jpg, .jpeg, .tif, .tiff, .bmp; RGB, RGBA or grey)
    masks/harbour_001.png    (same stem; mode L, P or I; one class id per pixel)

Class ids: 0 sea, 1 land, 2 hull, 3 bow/stern (the bow and stern ends of a ship; see
CLASSES above). Every image needs a mask of the same width and height and the other way round.
Images larger than the tile size are cut into non-overlapping tiles (the remainder at the right
and bottom edges is dropped); an image smaller than one tile is an error. Real masks carry no
inshore/offshore labels, so the inshore-only bow/stern IoU is not computed for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from ...errors import DataError

CLASSES = ("sea", "land", "hull", "bow_stern")   # mask ids 0, 1, 2, 3
SEA, LAND, HULL, BOW_STERN = range(4)
SHIP_KIND = ("none", "offshore", "inshore")      # ship-kind map ids 0, 1, 2

BOW_SHARE = 0.22     # front share of a ship's length labelled bow (the pointed part and a little behind it)
STERN_SHARE = 0.14   # rear share labelled stern


@dataclass
class Tiles:
    images: np.ndarray      # uint8 [N, S, S, 3]
    masks: np.ndarray       # uint8 [N, S, S], CLASSES ids
    kinds: np.ndarray       # uint8 [N, S, S], SHIP_KIND ids (0 off ships)
    ships: dict             # counts: inshore, offshore


def _smooth_noise(rng: np.random.Generator, size: int, cell: int, channels: int = 1) -> np.ndarray:
    """Value noise: a coarse random grid bilinearly upsampled to size x size, in [-1, 1]."""
    n = max(2, size // cell + 2)
    coarse = rng.uniform(-1.0, 1.0, (channels, n, n))
    out = ndimage.zoom(coarse, (1, (size + cell) / n, (size + cell) / n), order=1)
    return out[:, :size, :size]


def _ship_footprint(yy, xx, cy, cx, heading, length, width):
    """(inside, bow_stern) boolean maps of one ship: u along the heading (bow at +L/2), v across."""
    c, s = np.cos(heading), np.sin(heading)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    half_l, half_w = length / 2.0, width / 2.0
    taper = 0.28 * length                                 # the pointed bow
    start = half_l - taper
    reach = np.where(u > start, half_w * np.clip((half_l - u) / taper, 0.0, 1.0) ** 0.8, half_w)
    inside = (u >= -half_l) & (u <= half_l) & (np.abs(v) <= reach + 0.25)
    # blunt stern: only the outermost corners rounded
    corner = (u < -half_l + 1.0) & (np.abs(v) > half_w - 0.6)
    inside &= ~corner
    ends = (u > half_l - BOW_SHARE * length) | (u < -half_l + STERN_SHARE * length)
    return inside, inside & ends


class _Scene:
    def __init__(self, rng: np.random.Generator, size: int, cfg: dict):
        self.rng, self.size, self.cfg = rng, size, cfg
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float64)
        self.mask = np.zeros((size, size), np.uint8)
        self.kind = np.zeros((size, size), np.uint8)
        self.image = np.zeros((size, size, 3))
        self.counts = {"inshore": 0, "offshore": 0}

    # ---- land and sea --------------------------------------------------------------
    def coast(self) -> None:
        rng, s = self.rng, self.size
        self.has_land = rng.random() >= self.cfg.get("open_sea_share", 0.1)
        angle = rng.uniform(0, 2 * np.pi)
        self.normal = np.array([np.cos(angle), np.sin(angle)])          # points from sea to land (x, y)
        self.along = np.array([-self.normal[1], self.normal[0]])
        centre = s / 2 + self.normal * rng.uniform(-0.05, 0.22) * s
        px, py = self.xx - centre[0], self.yy - centre[1]
        self.d = px * self.normal[0] + py * self.normal[1]                # distance towards land
        self.t = px * self.along[0] + py * self.along[1]
        self.centre = centre
        k = (rng.uniform(0.03, 0.08), rng.uniform(0.12, 0.25))
        a = (rng.uniform(1, 4), rng.uniform(0.3, 1.2))
        ph = rng.uniform(0, 6.3, 2)
        self.wiggle_at = lambda t: a[0] * np.sin(k[0] * t + ph[0]) + a[1] * np.sin(k[1] * t + ph[1])
        land = (self.d > self.wiggle_at(self.t)) if self.has_land else np.zeros((s, s), bool)
        self.piers = []
        if self.has_land:
            for _ in range(rng.integers(0, 3)):
                t0 = rng.uniform(-0.35, 0.35) * s
                length, width = rng.uniform(0.15, 0.32) * s, rng.uniform(2.5, 4.5)
                pier = (np.abs(self.t - t0) <= width / 2) & (self.d > -length) & (self.d <= 2)
                land |= pier
                self.piers.append((t0, length, width))
        self.land = land
        self.mask[land] = LAND

        # textures
        base_land = np.array([0.50, 0.47, 0.40]) + rng.uniform(-0.08, 0.08, 3)
        self.land_colour = base_land
        tex = 0.07 * _smooth_noise(rng, s, 6, 1)[0] + 0.04 * _smooth_noise(rng, s, 2, 1)[0]
        land_img = base_land[None, None, :] + tex[..., None] + 0.02 * _smooth_noise(rng, s, 8, 3).transpose(1, 2, 0)
        # buildings: axis-aligned blocks of other greys
        for _ in range(rng.integers(2, 7)):
            y0, x0 = rng.integers(0, s, 2)
            h, w = rng.integers(3, 10, 2)
            land_img[y0:y0 + h, x0:x0 + w] += rng.uniform(-0.15, 0.15)
        base_sea = np.array([0.08, 0.20, 0.33]) + rng.uniform(-0.04, 0.04, 3)
        wave_dir = rng.uniform(0, 2 * np.pi)
        wave = np.sin((self.xx * np.cos(wave_dir) + self.yy * np.sin(wave_dir)) * rng.uniform(0.9, 1.6)
                      + rng.uniform(0, 6.3))
        sea_img = base_sea[None, None, :] + (0.025 * wave + 0.02 * _smooth_noise(rng, s, 4, 1)[0])[..., None]
        glint = rng.random((s, s)) < self.cfg.get("glint", 0.004)
        sea_img[glint] += rng.uniform(0.25, 0.5)
        self.image = np.where(land[..., None], land_img, sea_img)

    def decoys(self) -> None:
        """Ship-like shapes on land (pointed roofs, quay cranes' footprints), labelled land."""
        if not self.has_land:
            return
        rng, s = self.rng, self.size
        for _ in range(rng.integers(0, self.cfg.get("decoys", 2) + 1)):
            for _try in range(10):
                cy, cx = rng.uniform(0, s, 2)
                iy, ix = int(cy), int(cx)
                if self.land[iy, ix] and self.d[iy, ix] > 6:
                    break
            else:
                continue
            length, width = rng.uniform(0.14, 0.28) * s, rng.uniform(3.5, 6.0)
            inside, _ = _ship_footprint(self.yy, self.xx, cy, cx, rng.uniform(0, 2 * np.pi), length, width)
            inside &= self.land & (self.mask == LAND)
            colour = self.land_colour + rng.uniform(0.05, 0.14) * rng.choice([-1, 1])
            self.image[inside] = colour + rng.normal(0, 0.015, (inside.sum(), 3))

    # ---- ships -----------------------------------------------------------------------
    def _free(self, inside: np.ndarray, allow_land: bool) -> bool:
        grown = ndimage.binary_dilation(inside, iterations=2)
        if (self.kind[grown] > 0).any():
            return False
        if inside.sum() < 8:
            return False
        if not allow_land and self.land[grown].any():
            return False
        return True

    def _paint(self, inside, ends, inshore: bool, heading, cy, cx, length) -> None:
        rng = self.rng
        if inshore:
            colour = self.land_colour + rng.uniform(0.04, 0.12) * rng.choice([-1, 1], 3) * rng.uniform(0.5, 1.0, 3)
        else:
            colour = np.full(3, rng.uniform(0.7, 0.9)) + rng.uniform(-0.05, 0.05, 3)
        img = colour[None, :] + rng.normal(0, 0.015, (inside.sum(), 3))
        self.image[inside] = img
        # superstructure: a block amidships/aft in another shade
        sup, _ = _ship_footprint(self.yy, self.xx, cy - 0.12 * length * np.sin(heading),
                                 cx - 0.12 * length * np.cos(heading), heading, 0.3 * length, 2.0)
        sup &= inside & ~ends
        self.image[sup] = colour + rng.uniform(-0.12, 0.12)
        self.mask[inside] = HULL
        self.mask[ends] = BOW_STERN
        self.kind[inside] = 2 if inshore else 1
        self.counts["inshore" if inshore else "offshore"] += 1

    def ship(self, inshore: bool) -> bool:
        rng, s = self.rng, self.size
        length = rng.uniform(0.2, 0.36) * s
        width = max(3.5, length * rng.uniform(0.18, 0.26))
        for _ in range(25):
            if inshore and self.has_land:
                if self.piers and rng.random() < 0.5:
                    t0, plen, pwid = self.piers[rng.integers(len(self.piers))]
                    heading = np.arctan2(-self.normal[1], -self.normal[0]) + rng.choice([0, np.pi])
                    side = rng.choice([-1, 1])
                    along_off = t0 + side * (pwid / 2 + width / 2 + rng.uniform(0.0, 0.8))
                    depth = -rng.uniform(length / 2, max(length / 2 + 0.1, plen - length / 2 + 2))
                else:
                    heading = np.arctan2(self.along[1], self.along[0]) + rng.choice([0, np.pi])
                    along_off = rng.uniform(-0.4, 0.4) * s
                    depth = None
                if depth is None:   # alongside the coast, just seaward of the coastline
                    depth = self.wiggle_at(along_off) - width / 2 - rng.uniform(0.3, 1.2)
                centre = self.centre + along_off * self.along + depth * self.normal
                cx, cy = centre
            else:
                heading = rng.uniform(0, 2 * np.pi)
                cy, cx = rng.uniform(0.1 * s, 0.9 * s, 2)
            if not (0 <= cx < s and 0 <= cy < s):
                continue
            inside, ends = _ship_footprint(self.yy, self.xx, cy, cx, heading, length, width)
            if not ends.any() or not self._free(inside, allow_land=inshore):
                continue
            if inshore:
                # moored: touching land (coast or pier) within two pixels, not buried in it
                near = ndimage.binary_dilation(inside, iterations=2)
                if not self.land[near].any() or self.land[inside].mean() > 0.35:
                    continue
            self._paint(inside, ends, inshore, heading, cy, cx, length)
            return True
        return False

    def finish(self) -> np.ndarray:
        img = self.image + self.rng.normal(0, self.cfg.get("noise", 0.02), self.image.shape)
        img = ndimage.uniform_filter(img, size=(2, 2, 1)) * 0.35 + img * 0.65   # slight optical blur
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_tile(rng: np.random.Generator, size: int, cfg: dict):
    """One tile: (image uint8 [S, S, 3], mask uint8 [S, S], kind uint8 [S, S], counts)."""
    scene = _Scene(rng, size, cfg)
    scene.coast()
    scene.decoys()
    n_in = int(rng.integers(cfg.get("inshore_min", 1), cfg.get("inshore_max", 3) + 1)) if scene.has_land else 0
    n_off = int(rng.integers(0, cfg.get("offshore_max", 1) + 1))
    if not scene.has_land:
        n_off = max(n_off, 1)
    for _ in range(n_in):
        scene.ship(inshore=True)
    for _ in range(n_off):
        scene.ship(inshore=False)
    return scene.finish(), scene.mask, scene.kind, scene.counts


def generate(n: int, size: int, seed: int, cfg: dict | None = None, progress: bool = False) -> Tiles:
    """`n` tiles of `size` x `size` pixels drawn from one seeded stream."""
    cfg = dict(cfg or {})
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    kinds = np.zeros((n, size, size), np.uint8)
    counts = {"inshore": 0, "offshore": 0}
    items = range(n)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"tiles {size}x{size}", unit="tile", leave=False, disable=None)
    for i in items:
        images[i], masks[i], kinds[i], c = make_tile(rng, size, cfg)
        for k in counts:
            counts[k] += c[k]
    return Tiles(images, masks, kinds, counts)


# ---- real data ------------------------------------------------------------------------------

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
