"""Figures of the load-forecasting section: error by horizon step, a forecast week, the feature-attention
heat map and the anomaly mask. Each returns a PNG data URI
(the shared helpers are `attnbench.report.plots`'s)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...report.plots import BASELINE_STYLE, _RC, _palette, _style, short, to_data_uri


# ---------------------------------------------------------------------------------------- load forecasting
ANOMALY_COLOURS = {1: ("spike", "#d62728"), 2: ("drop-out", "#9467bd"), 3: ("stuck", "#ff7f0e")}


def horizon_lines(data: pd.DataFrame, reference: str | None = None, ylabel: str = "MAPE (%)",
                  panels: Sequence[str] = ("clean", "corrupted")) -> str:
    """Metric per horizon step, one line per run (mean over seeds, ± std band when several), one
    panel per input kind; `data` has columns run, seed, step, value, inputs. `reference` (e.g. the
    seasonal naive run) is drawn as a black dashed line."""
    runs = list(dict.fromkeys(data["run"]))
    palette = _palette(runs)
    used = [p for p in panels if p in set(data["inputs"])]
    axes_style, rc = _style()
    with axes_style, rc:
        fig, axes = plt.subplots(1, max(len(used), 1), figsize=(5.2 * max(len(used), 1) + 1.6, 3.8), sharey=True,
                                 squeeze=False)
        for ax, kind in zip(axes[0], used):
            part = data[data["inputs"] == kind]
            several = part.groupby(["run", "step"])["value"].count().max() > 1 if len(part) else False
            for run in runs:
                rows = part[part["run"] == run]
                if not len(rows):
                    continue
                mean = rows.groupby("step")["value"].mean()
                style = dict(BASELINE_STYLE, markersize=3, linewidth=1.8) if run == reference else \
                    {"color": palette[run], "marker": "o", "markersize": 2.5, "linewidth": 1.4}
                ax.plot(mean.index, mean.values, label=run, **style)
                if several:
                    std = rows.groupby("step")["value"].std().fillna(0)
                    ax.fill_between(mean.index, mean - std, mean + std, color=style["color"], alpha=0.1)
            ax.set_title(f"{kind} test inputs", parse_math=False)
            ax.set_xlabel("horizon step (hours ahead)")
        top = data.groupby(["run", "inputs", "step"])["value"].mean().max() if len(data) else 1.0
        axes[0][0].set_ylim(0, 1.05 * top if np.isfinite(top) and top > 0 else 1.0)
        axes[0][0].set_ylabel(ylabel)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, title="run", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
        fig.tight_layout()
        return to_data_uri(fig)


def forecast_week(time: Sequence[str], actual: Sequence[float], forecasts: dict[str, Sequence[float]],
                  reference: str | None = None, ylabel: str = "load") -> str:
    """A stretch of test forecasts against the actual series (day-ahead forecasts laid end to end)."""
    t = pd.to_datetime(pd.Series(list(time)))
    palette = _palette([k for k in forecasts if k != reference])
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(11, 3.6))
        ax.plot(t, np.asarray(actual, dtype=float), color="0.15", linewidth=2.0, label="actual")
        for label, values in forecasts.items():
            style = dict(BASELINE_STYLE, marker=None, linewidth=1.2) if label == reference else \
                {"color": palette[label], "linewidth": 1.3}
            ax.plot(t, np.asarray(values, dtype=float), label=label, **style)
        for day in pd.date_range(t.iloc[0].normalize(), t.iloc[-1], freq="D")[1:]:
            ax.axvline(day, color="0.85", linewidth=0.8, zorder=0)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("test period (each day forecast at midnight for the next 24 hours)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.autofmt_xdate()
        return to_data_uri(fig)


def feature_heatmap(weights: np.ndarray, features: Sequence[str], irrelevant: Sequence[bool] | None = None,
                    title: str = "feature attention") -> str:
    """Feature-attention weights, horizon step (rows) x feature (columns); irrelevant features'
    labels in red with a marker."""
    w = np.asarray(weights, dtype=float)
    labels = [short(f, 16) + (" ✗" if irrelevant is not None and irrelevant[i] else "") for i, f in enumerate(features)]
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(0.55 * len(features) + 2.4, 0.2 * w.shape[0] + 1.9))
        sns.heatmap(w, ax=ax, cmap="Blues", vmin=0.0, cbar_kws={"label": "attention weight (mean over test windows)"},
                    xticklabels=False, yticklabels=False)
        ax.set_xticks(np.arange(len(features)) + 0.5)
        ax.set_xticklabels(labels, rotation=60, ha="right", parse_math=False)
        steps = np.arange(w.shape[0])
        shown = steps[(steps % 3 == 0) | (steps == w.shape[0] - 1)]
        ax.set_yticks(shown + 0.5)
        ax.set_yticklabels([str(s + 1) for s in shown], rotation=0)
        if irrelevant is not None:
            for tick, bad in zip(ax.get_xticklabels(), irrelevant):
                if bad:
                    tick.set_color("#b3261e")
        ax.set_xlabel("feature (✗ = irrelevant: the generator's noise features)")
        ax.set_ylabel("horizon step (hours ahead)")
        ax.set_title(title, parse_math=False)
        return to_data_uri(fig)


def anomaly_mask(time: Sequence[str], corrupted: Sequence[float], clean: Sequence[float], kinds: Sequence[int],
                 mask: Sequence[float] | None, forecasts: dict[str, Sequence[float]] | None = None,
                 actual: Sequence[float] | None = None, ylabel: str = "load") -> str:
    """A corrupted input window (top; clean series dashed, true anomalies shaded by kind, and the next
    horizon's actual and forecasts when given) with the anomaly mask drawn under it (bottom)."""
    t = pd.to_datetime(pd.Series(list(time)))
    n = len(corrupted)
    kinds = np.asarray(kinds)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})

        def shade(ax):
            for code, (label, colour) in ANOMALY_COLOURS.items():
                starts = np.flatnonzero(np.diff(np.concatenate([[0], (kinds == code).astype(int)])) == 1)
                for s in starts:
                    e = s
                    while e + 1 < n and kinds[e + 1] == code:
                        e += 1
                    ax.axvspan(t.iloc[s] - pd.Timedelta(minutes=30), t.iloc[e] + pd.Timedelta(minutes=30),
                               color=colour, alpha=0.18, linewidth=0)

        shade(top)
        top.plot(t.iloc[:n], np.asarray(clean, dtype=float), color="0.45", linestyle="--", linewidth=1.0,
                 label="true series")
        top.plot(t.iloc[:n], np.asarray(corrupted, dtype=float), color="0.1", linewidth=1.2, label="corrupted input")
        if actual is not None and len(t) > n:
            top.plot(t.iloc[n:], np.asarray(actual, dtype=float), color="0.1", linewidth=2.0, label="actual (target)")
            palette = _palette(list(forecasts or {}))
            for label, values in (forecasts or {}).items():
                top.plot(t.iloc[n:], np.asarray(values, dtype=float), color=palette[label], linewidth=1.4,
                         label=f"{label} forecast")
            top.axvline(t.iloc[n] - pd.Timedelta(minutes=30), color="0.5", linewidth=0.8)
        top.set_ylabel(ylabel)
        handles = top.get_legend_handles_labels()[0] + [
            plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.3, label=f"true anomaly: {lab}")
            for code, (lab, c) in ANOMALY_COLOURS.items() if (kinds == code).any()]
        top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        shade(bottom)
        if mask is not None:
            bottom.plot(t.iloc[:n], np.asarray(mask, dtype=float), color="#0b57d0", linewidth=1.3, drawstyle="steps-mid")
            bottom.set_ylim(-0.03, 1.03)
        else:
            bottom.text(0.5, 0.5, "this run has no anomaly mask", ha="center", va="center", transform=bottom.transAxes,
                        color="0.4")
        bottom.set_ylabel("mask weight\n(1 = trusted)")
        bottom.set_xlabel("time")
        fig.autofmt_xdate()
        fig.tight_layout()
        return to_data_uri(fig)
