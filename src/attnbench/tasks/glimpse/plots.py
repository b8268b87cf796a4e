"""Figures of the glimpse section: test canvases with RAM's glimpse paths (or soft attention maps)
and the prediction, and the share of glimpses on the digit per glimpse step."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.patches import Rectangle

from ...report.plots import _palette, _style, to_data_uri


def canvas_grid(images: np.ndarray, labels: Sequence[int], predictions: Sequence[int], boxes: np.ndarray, *,
                paths: np.ndarray | None = None, patch: int = 8, heat: np.ndarray | None = None,
                ncols: int = 8) -> str:
    """One panel per canvas (grey levels as stored, 0-255): the digit's true box (dashed green), the
    title 'label → prediction' (red when wrong), and either the glimpse path (`paths` [N, T, 2]
    (row, col) pixel centres: numbered dots joined by a line, the finest patch of the last glimpse
    as an orange square) or a soft-attention map (`heat` [N, g, g], weights summed over steps)."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    side = images.shape[-1]
    axes_style, rc = _style()
    with axes_style, rc:
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.55 * ncols, 1.7 * nrows + 0.2), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for i in range(n):
            ax = axes.ravel()[i]
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, extent=(0, side, side, 0), interpolation="nearest")
            if heat is not None:
                ax.imshow(heat[i], cmap="magma", alpha=0.45, extent=(0, side, side, 0), interpolation="bilinear",
                          vmin=0, vmax=max(float(heat[i].max()), 1e-9))
            y0, x0, y1, x1 = (float(v) for v in boxes[i])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#2ca02c", linestyle="--",
                                   linewidth=1.0))
            if paths is not None:
                rows, cols = paths[i, :, 0], paths[i, :, 1]
                ax.plot(cols, rows, color="#ff7f0e", linewidth=1.0, alpha=0.9)
                ax.scatter(cols, rows, c=np.arange(len(rows)), cmap="autumn", s=14, zorder=3, edgecolors="black",
                           linewidths=0.4)
                for t, (r, c) in enumerate(zip(rows, cols)):
                    ax.text(c + 0.8, r - 0.8, str(t + 1), color="white", fontsize=6, parse_math=False)
                ax.add_patch(Rectangle((cols[-1] - patch / 2, rows[-1] - patch / 2), patch, patch, fill=False,
                                       edgecolor="#ff7f0e", linewidth=1.0))
            ok = int(labels[i]) == int(predictions[i])
            ax.set_title(f"{int(labels[i])} → {int(predictions[i])}", color="black" if ok else "#d62728",
                         fontsize=9, parse_math=False)
            ax.set_xlim(0, side)
            ax.set_ylim(side, 0)
        fig.tight_layout()
        return to_data_uri(fig)


def on_digit_by_step(data: pd.DataFrame, chance: float | None) -> str:
    """Share of glimpses (RAM) or of attention weight (soft) on the digit's box at each step, one line
    per run (columns run, step, value), with the box's share of the canvas as the chance level."""
    runs = list(dict.fromkeys(data["run"]))
    palette = _palette(runs)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        sns.lineplot(data=data, x="step", y="value", hue="run", hue_order=runs, palette=palette, marker="o", ax=ax,
                     errorbar=None)
        if chance is not None:
            ax.axhline(chance, color="black", linestyle="--", linewidth=1.2, label=f"chance (box area share {chance:.2f})")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("glimpse / attention step")
        ax.set_ylabel("share on the digit's box (fraction)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        return to_data_uri(fig)
