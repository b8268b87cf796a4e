"""Figures of the recsys section: the field-pair matrices (true importance beside each run's attention) and
their scatter. Each returns a PNG data URI
(the shared helpers are `attnbench.report.plots`'s)."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...report.plots import _RC, _style, short, to_data_uri


def pair_matrices(fields: Sequence[str], panels: Sequence[dict], ncols: int = 3) -> str:
    """Field-pair matrices side by side (recsys): each panel the upper triangle of a fields × fields grid.

    Each panel is a dict: title, values ([P] numbers in np.triu_indices(len(fields), 1) order, or None
    with `missing` saying why), label (its colour bar's label), note (a line under the title), and
    optionally strong ([P] bools: pairs outlined in red, e.g. the truly strong ones) and center (a
    value drawn white on a blue–red scale symmetric around it, e.g. 1 for "attention × P", where 1
    is uniform attention). Every panel has its own colour scale (importances and attention weights
    are not on one scale); cells show their values.
    """
    n_fields = len(fields)
    rows, cols = np.triu_indices(n_fields, k=1)
    names = [short(f, 12) for f in fields]
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    side = max(2.6, 0.42 * n_fields + 0.9)
    annotate = n_fields <= 12
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (side + 1.1), nrows * (side + 0.7)), squeeze=False)
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        for ax, panel in zip(axes.ravel(), panels):
            title = panel["title"] + (f"\n{panel['note']}" if panel.get("note") else "")
            ax.set_title(title, parse_math=False, fontsize=8.5)
            values = panel.get("values")
            if values is None or len(values) != len(rows) or not np.isfinite(np.asarray(values, dtype=float)).any():
                ax.text(0.5, 0.5, panel.get("missing", "no values"), ha="center", va="center", wrap=True,
                        transform=ax.transAxes, parse_math=False, color="0.4", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            grid = np.full((n_fields, n_fields), np.nan)
            grid[rows, cols] = np.asarray(values, dtype=float)
            finite_vals = grid[np.isfinite(grid)]
            center = panel.get("center")
            if center is not None:
                half = float(np.abs(finite_vals - center).max()) or 1.0
                lo, hi, cmap = center - half, center + half, "RdBu_r"
            else:
                lo, hi, cmap = min(0.0, float(finite_vals.min())), float(finite_vals.max()) or 1.0, "Blues"
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if annotate:
                for i, j in zip(rows, cols):
                    v = grid[i, j]
                    if np.isfinite(v):
                        dark = abs(v - center) > 0.6 * (hi - center) if center is not None else v > lo + 0.6 * (hi - lo)
                        ax.text(j, i, f"{v:.2f}" if abs(v) >= 0.01 else f"{v:.0e}".replace("e-0", "e-"), ha="center",
                                va="center", fontsize=6.5, color="white" if dark else "0.15", parse_math=False)
            strong = panel.get("strong")
            if strong is not None and len(strong) == len(rows):
                for i, j, s in zip(rows, cols, strong):
                    if s:
                        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=1.6))
            ax.set_xticks(range(n_fields))
            ax.set_xticklabels(names, rotation=90, parse_math=False, fontsize=7.5)
            ax.set_yticks(range(n_fields))
            ax.set_yticklabels(names, parse_math=False, fontsize=7.5)
            ax.tick_params(length=2, pad=1)
            ax.grid(False)
            bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
            bar.set_label(panel.get("label", ""), fontsize=7.5)
            bar.ax.tick_params(labelsize=7)
        if any(p.get("strong") is not None for p in panels):
            fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, fill=False, edgecolor="#d62728", linewidth=1.6,
                                              label="truly strong pair")], loc="lower right", frameon=False, fontsize=8)
        fig.tight_layout()
        return to_data_uri(fig)


def importance_scatter(points: pd.DataFrame, x_label: str = "true importance of the field pair",
                       ncols: int = 3) -> str:
    """One panel per `panel` of `points` (columns panel, truth, value, strong, y_label): each field
    pair's learned score against its true importance (log x), strong pairs in red."""
    panels = list(dict.fromkeys(points["panel"]))
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        for ax, name in zip(axes.ravel(), panels):
            d = points[points["panel"] == name]
            weak, strong = d[~d["strong"].astype(bool)], d[d["strong"].astype(bool)]
            ax.scatter(weak["truth"], weak["value"], s=18, color="#1f77b4", label="other pairs")
            ax.scatter(strong["truth"], strong["value"], s=30, color="#d62728", marker="D", label="strong pairs")
            if (d["truth"] > 0).all():
                ax.set_xscale("log")
            ax.set_title(name, parse_math=False, fontsize=8.5)
            ax.set_xlabel(x_label, fontsize=8)
            ax.set_ylabel(str(d["y_label"].iloc[0]) if "y_label" in d and len(d) else "", fontsize=8)
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="upper right", frameon=False, fontsize=8)
        fig.tight_layout()
        return to_data_uri(fig)
