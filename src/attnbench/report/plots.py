"""Report figures every section shares: seaborn/matplotlib (Agg) drawn into inline PNG data URIs.

A task's own figures are in its folder (`attnbench.tasks.<task>.plots`), built on the helpers here
(`to_data_uri`, `_style`, `_palette`, `short`); the training curves and metric bars are drawn here.

Every public function returns a `data:image/png;base64,...` string for an <img src>, so the report
stays one self-contained file. Text drawn here (tokens from data included) never goes through
HTML; it is drawn with mathtext off, so a token such as `$x$` is shown as typed.
"""
from __future__ import annotations

import base64
import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

BASELINE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 2.4, "marker": "s", "markersize": 6, "zorder": 5}
_RC = {"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
       "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8}


def to_data_uri(fig: plt.Figure, dpi: int = 100) -> str:
    """PNG of `fig` as a data URI; the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style():
    return sns.axes_style("whitegrid"), plt.rc_context(_RC)


def short(token: str, limit: int = 14) -> str:
    token = str(token)
    return token if len(token) <= limit else token[: limit - 1] + "…"


def _palette(names: Sequence[str]) -> dict[str, tuple]:
    if len(names) <= 10:
        colours = sns.color_palette("tab10", n_colors=max(len(names), 1))
    else:  # tab20's dark shades first, then the light ones: neighbours in the legend stay distinct
        tab20 = sns.color_palette("tab20", n_colors=20)
        colours = (tab20[0::2] + tab20[1::2]) * (len(names) // 20 + 1)
    return dict(zip(names, colours))


def _lines(ax, data: pd.DataFrame, x: str, y: str, baseline: str | None, palette: dict) -> None:
    """One line per run (mean over seeds, ± std band when several), the baseline in black dashes."""
    several = data.groupby(["run", x])[y].count().max() > 1 if len(data) else False
    others = data[data["run"] != baseline]
    if len(others):
        sns.lineplot(data=others, x=x, y=y, hue="run", hue_order=[r for r in palette if r != baseline],
                     palette=palette, marker="o", errorbar="sd" if several else None, ax=ax)
    base = data[data["run"] == baseline]
    if len(base):
        mean = base.groupby(x)[y].mean()
        ax.plot(mean.index, mean.values, label=f"{baseline} (no attention)", **BASELINE_STYLE)
        if several:
            std = base.groupby(x)[y].std().fillna(0)
            ax.fill_between(mean.index, mean - std, mean + std, color="black", alpha=0.08)


def training_curves(logs: pd.DataFrame, baseline: str | None = "rnn-none", valid_label: str = "validation BLEU",
                    loss_label: str | None = None) -> str:
    """Two panels over epochs: training loss and the validation metric, one line per run.

    `logs`: columns epoch, train_loss, valid_metric, run (`sections.training_logs` reads them).
    `loss_label`: the loss panel's y label and title (e.g. "training loss (squared error)"); by
    default the y label is cross-entropy in nats/token under the title "training loss"."""
    runs = list(dict.fromkeys(logs["run"]))
    palette = _palette(runs)
    axes_style, rc = _style()
    loss_title = "training loss" if loss_label is None else loss_label
    loss_label = "training loss (cross-entropy, nats/token)" if loss_label is None else loss_label
    with axes_style, rc:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, column, label in ((axes[0], "train_loss", loss_label), (axes[1], "valid_metric", valid_label)):
            _lines(ax, logs.dropna(subset=[column]), "epoch", column, baseline, palette)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label, parse_math=False)
            if ax.get_legend():
                ax.get_legend().remove()
        axes[0].set_title(loss_title, parse_math=False)
        axes[1].set_title(valid_label, parse_math=False)
        handles, labels = axes[1].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, title="run", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
        fig.tight_layout()
        return to_data_uri(fig)


def metric_bars(data: pd.DataFrame, xlabel: str, reference: float | None = None, reference_label: str = "",
                highlight: str | None = None) -> str:
    """Horizontal bars, one per run (columns run, value; several rows per run = seeds, drawn as
    mean ± sd), sorted by value; an optional vertical reference line (e.g. 1.0 = uniform)."""
    data = data.dropna(subset=["value"])
    order = list(data.groupby("run")["value"].mean().sort_values(ascending=False).index)
    palette = {r: ((0.84, 0.15, 0.16) if r == highlight else (0.27, 0.51, 0.71)) for r in order}
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(7.0, 0.32 * max(len(order), 1) + 1.2))
        several = data.groupby("run")["value"].count().max() > 1 if len(data) else False
        sns.barplot(data=data, y="run", x="value", hue="run", order=order, hue_order=order, palette=palette,
                    errorbar="sd" if several else None, legend=False, ax=ax)
        for i, run in enumerate(order):
            v = data.loc[data["run"] == run, "value"].mean()
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8, parse_math=False)
        if reference is not None:
            ax.axvline(reference, color="black", linestyle="--", linewidth=1.2, label=reference_label or None)
            if reference_label:
                ax.legend(loc="lower right", frameon=False)
        ax.set_xlabel(xlabel, parse_math=False)
        ax.set_ylabel("run")
        return to_data_uri(fig)


