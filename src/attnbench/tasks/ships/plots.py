"""Plots of the ships section: the fixed test tiles (image, gold mask, every run's prediction,
attention overlays) and the per-class IoU of each run. Each returns a PNG data URI."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ...report.plots import _palette, _style, to_data_uri

CLASS_COLOURS = ("#1f4e79", "#a08c6e", "#e8e8e8", "#d62728")   # sea, land, hull, bow/stern
NO_CLASS = "#000000"


def _mask_rgb(mask: np.ndarray) -> np.ndarray:
    """Class ids -> RGB; -1 (no four-class map: the shallow net) -> bow/stern on black."""
    colours = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in CLASS_COLOURS + (NO_CLASS,)])
    return colours[np.where(mask < 0, len(CLASS_COLOURS), mask)]


def tile_grid(images: np.ndarray, gold: np.ndarray, columns: Sequence[dict], tile_names: Sequence[str]) -> str:
    """Rows: the fixed test tiles. Columns: image, gold mask, then one per entry of `columns`
    ({'title', 'masks' [T, S, S] class ids (-1 = none) or None, 'bowstern' [T, S, S] bool}).
    A run without a four-class map (the shallow net) is drawn as bow/stern (red) on black."""
    rows, ncols = len(images), 2 + len(columns)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, axes = plt.subplots(rows, ncols, figsize=(1.55 * ncols, 1.6 * rows + 0.5), squeeze=False)
        for r in range(rows):
            panels = [("image", images[r]), ("gold mask", _mask_rgb(gold[r].astype(int)))]
            for c in columns:
                m = c["masks"][r].astype(int)
                if (m < 0).all():
                    m = np.where(c["bowstern"][r], 3, -1)
                panels.append((c["title"], _mask_rgb(m)))
            for k, (title, img) in enumerate(panels):
                ax = axes[r, k]
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if r == 0:
                    ax.set_title(title, fontsize=7, parse_math=False)
                if k == 0:
                    ax.set_ylabel(tile_names[r], fontsize=7, parse_math=False)
        handles = [Patch(color=c, label=n) for c, n in zip(CLASS_COLOURS, ("sea", "land", "hull", "bow/stern"))]
        fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, fontsize=8)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        return to_data_uri(fig)


def attention_overlays(images: np.ndarray, gold: np.ndarray, maps: Sequence[dict], tile_names: Sequence[str]) -> str:
    """Rows: the fixed tiles; columns: each map ({'title', 'map' [T, S, S], 'label'}) over the image
    (semi-transparent, own colour scale per run), gold bow/stern outlined in red."""
    rows, ncols = len(images), len(maps)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, axes = plt.subplots(rows, ncols, figsize=(2.0 * ncols + 0.4, 1.9 * rows + 0.9), squeeze=False,
                                 layout="constrained")
        for k, m in enumerate(maps):
            values = np.asarray(m["map"], dtype=np.float32)
            vmin = float(m.get("vmin", np.nanmin(values)))
            vmax = float(m.get("vmax", np.nanmax(values)))
            for r in range(rows):
                ax = axes[r, k]
                ax.imshow(images[r], interpolation="nearest")
                im = ax.imshow(values[r], cmap="magma", alpha=0.6, vmin=vmin, vmax=max(vmax, vmin + 1e-6),
                               interpolation="bilinear")
                ax.contour(gold[r] == 3, levels=[0.5], colors=["#00e5ff"], linewidths=0.6)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if r == 0:
                    ax.set_title(m["title"], fontsize=7, parse_math=False)
                if k == 0:
                    ax.set_ylabel(tile_names[r], fontsize=7, parse_math=False)
            bar = fig.colorbar(im, ax=axes[:, k].tolist(), location="bottom", shrink=0.9, aspect=12)
            bar.set_label(m["label"], fontsize=7)
            bar.ax.tick_params(labelsize=6)
        return to_data_uri(fig)


def iou_bars(data: pd.DataFrame) -> str:
    """Grouped bars: IoU (0-1) per class (and mIoU, inshore bow/stern) for each run. Columns: run, measure, iou."""
    runs = list(dict.fromkeys(data["run"]))
    palette = _palette(runs)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        sns.barplot(data=data, x="measure", y="iou", hue="run", hue_order=runs, palette=palette, ax=ax)
        ax.set_xlabel("class / measure")
        ax.set_ylabel("IoU on the test tiles (0–1)")
        ax.set_ylim(0, 1)
        ax.legend(title="run", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.tight_layout()
        return to_data_uri(fig)


__all__ = ["tile_grid", "attention_overlays", "iou_bars", "ListedColormap"]
