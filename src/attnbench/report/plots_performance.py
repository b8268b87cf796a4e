"""Figures of the report's Performance section (attention kernel benchmark)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .plots import _palette, _style, to_data_uri  # noqa: E402

_REFERENCE_STYLE = {"linestyle": "--", "linewidth": 2.0}


def scaling(data: pd.DataFrame, value: str, ylabel: str, scale: float = 1.0) -> str:
    """Log–log lines of ``value`` against length, one per mechanism (torch references dashed)."""
    names = sorted(data["mechanism"].unique())
    palette = _palette(names)
    style, rc = _style()
    with style, rc:
        fig, ax = plt.subplots(figsize=(8.5, 5.2))
        for name in names:
            rows = data[data["mechanism"] == name].sort_values("length")
            rows = rows[rows[value] > 0]
            if not len(rows):
                continue
            ref = rows["kind"].iloc[0] == "reference"
            ax.plot(rows["length"], rows[value] * scale, marker="o", markersize=3.5, color=palette[name],
                    label=f"{name} (torch)" if ref else name, **(_REFERENCE_STYLE if ref else {"linewidth": 1.4}))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("query/key length (tokens, log scale)")
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=1)
        sns.despine(fig)
        return to_data_uri(fig)
