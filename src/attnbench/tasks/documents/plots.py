"""Figures of the documents section: how the sentence attention's weight is spread. Each returns a PNG data URI
(the shared helpers are `attnbench.report.plots`'s)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ...report.plots import _palette, _style, to_data_uri


def weight_distribution(data: pd.DataFrame, chance: float | None = None,
                        xlabel: str = "weight on the gold unit") -> str:
    """One horizontal box per run of `data` (columns run, value in [0, 1]), with the mean of a
    uniform distribution (`chance`) as a dashed line."""
    import warnings

    runs = list(dict.fromkeys(data["run"]))
    palette = _palette(runs)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(runs) + 1.3))
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated `vert`
            warnings.simplefilter("ignore", category=DeprecationWarning)
            sns.boxplot(data=data, x="value", y="run", hue="run", order=runs, hue_order=runs, palette=palette,
                        legend=False, fliersize=1.5, width=0.6, ax=ax)
        if chance is not None and math.isfinite(chance):
            ax.axvline(chance, color="black", linestyle="--", linewidth=1.2, label=f"uniform weights (mean {chance:.2f})")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_xlim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("run")
        ax.set_yticks(range(len(runs)))
        ax.set_yticklabels(runs, parse_math=False)
        return to_data_uri(fig)
