"""Report figures: seaborn/matplotlib (Agg) drawn into inline PNG data URIs.

Every public function returns a `data:image/png;base64,...` string for an <img src>, so the report
stays one self-contained file. Text drawn here (tokens from data included) never goes through
HTML; it is drawn with mathtext off, so a token such as `$x$` is shown as typed.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


def bleu_by_length(data: pd.DataFrame, buckets: Sequence[str], counts: dict[str, int] | None = None,
                   baseline: str | None = "rnn-none", metric_label: str = "BLEU (sacreBLEU, test set)") -> str:
    """Line per run of `data` (columns run, seed, bucket, value) over the length buckets in order."""
    data = data.dropna(subset=["value"])
    used = [b for b in buckets if b in set(data["bucket"])]
    data = data.assign(pos=data["bucket"].map({b: i for i, b in enumerate(used)}))
    runs = list(dict.fromkeys(data["run"]))
    palette = _palette(runs)
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        _lines(ax, data, "pos", "value", baseline, palette)
        ax.set_xticks(range(len(used)))
        ax.set_xticklabels([f"{b}\n(n={counts[b]})" if counts and b in counts else b for b in used], parse_math=False)
        ax.set_xlabel("source sentence length (tokens), test sentences per bucket in brackets")
        ax.set_ylabel(metric_label)
        ax.set_ylim(bottom=0)
        if len(used) == 1:
            ax.set_xlim(-0.5, 0.5)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, title="run", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_title("BLEU by source length", parse_math=False)
        return to_data_uri(fig)


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


def attention_panels(src: Sequence[str], tgt: Sequence[str], panels: Sequence[dict], ncols: int = 3) -> str:
    """One sentence, one heatmap per run: source tokens on x, target tokens on y, gold links circled.

    Each panel is a dict: title, attn [len(tgt), len(src)] (or None when the run has no export, with
    `missing` saying why), gold (same shape, 0/1, or None), note (a line under the title).
    The layout is computed in inches (no tight_layout / bbox 'tight'), so the figure is drawn once.
    """
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    xt = [short(t) for t in src]
    yt = [short(t) for t in tgt]
    cell, char = 0.21, 0.06                      # inches per heatmap cell, per tick-label character (7.5 pt)
    pw, ph = max(1.6, cell * len(src)), max(1.2, cell * len(tgt))
    left = char * max((len(t) for t in yt), default=1) + 0.42   # target tokens: first column only
    bottom = char * max((len(t) for t in xt), default=1) + 0.4
    top, gap, bar = 0.45, 0.15, 0.95
    fw = left + ncols * (pw + gap) + bar
    fh = nrows * (top + ph + bottom) + 0.35
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(fw, fh))
        image = None
        for i, panel in enumerate(panels):
            r, c = divmod(i, ncols)
            x0 = left + c * (pw + gap)
            y0 = fh - (r + 1) * (top + ph + bottom) + bottom
            ax = fig.add_axes((x0 / fw, y0 / fh, pw / fw, ph / fh))
            title = panel["title"] + (f"\n{panel['note']}" if panel.get("note") else "")
            ax.set_title(title, parse_math=False, fontsize=8.5)
            attn = panel.get("attn")
            if attn is None or np.shape(attn) != (len(tgt), len(src)):
                ax.text(0.5, 0.5, panel.get("missing", "no attention export"), ha="center", va="center", wrap=True,
                        transform=ax.transAxes, parse_math=False, color="0.4", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            image = ax.imshow(np.asarray(attn, dtype=float), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto",
                              interpolation="nearest")
            gold = panel.get("gold")
            if gold is not None and np.shape(gold) == np.shape(attn):
                ys, xs = np.nonzero(np.asarray(gold) > 0.5)
                ax.scatter(xs, ys, s=22, facecolors="none", edgecolors="#d62728", linewidths=1.0, label="gold link")
            ax.set_xticks(range(len(src)))
            ax.set_xticklabels(xt, rotation=90, parse_math=False, fontsize=7.5)
            if c == 0:  # rows line up across a figure row: the target tokens once, on the left
                ax.set_yticks(range(len(tgt)))
                ax.set_yticklabels(yt, parse_math=False, fontsize=7.5)
                ax.set_ylabel("target token", fontsize=8, labelpad=2)
            else:
                ax.set_yticks([])
            ax.tick_params(length=2, pad=1)
            ax.set_xlabel("source token", fontsize=8, labelpad=2)
        if image is not None:
            cax = fig.add_axes(((fw - bar + 0.25) / fw, 0.25, 0.15 / fw, 0.5))
            colorbar = fig.colorbar(image, cax=cax)
            colorbar.set_label("attention weight (teacher-forced)")
            fig.legend(handles=[plt.Line2D([], [], marker="o", linestyle="none", markerfacecolor="none",
                                           markeredgecolor="#d62728", label="gold alignment link")],
                       loc="lower right", frameon=False, fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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


def attention_head_maps(tokens: Sequence[str], maps: np.ndarray, layer_names: Sequence[str] | None = None) -> str:
    """Per-head self-attention maps of one utterance: one row of heatmaps per layer, one column per
    head; `maps` is [L, H, T, T] (queries down, keys across), `tokens` the T tokens ([CLS] first)."""
    maps = np.asarray(maps, dtype=float)
    n_layers, n_heads, t, _ = maps.shape
    labels = [short(tok, 12) for tok in tokens]
    cell = 0.17
    side = max(1.4, cell * t)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(n_layers, n_heads, figsize=(n_heads * (side + 0.25) + 1.6, n_layers * (side + 0.45) + 1.2),
                                 squeeze=False)
        image = None
        for layer in range(n_layers):
            for head in range(n_heads):
                ax = axes[layer, head]
                image = ax.imshow(maps[layer, head], cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal",
                                  interpolation="nearest")
                name = layer_names[layer] if layer_names else f"layer {layer + 1}"
                ax.set_title(f"{name}, head {head + 1}", parse_math=False, fontsize=8)
                ax.set_xticks(range(t))
                ax.set_xticklabels(labels, rotation=90, parse_math=False, fontsize=6.5)
                if head == 0:
                    ax.set_yticks(range(t))
                    ax.set_yticklabels(labels, parse_math=False, fontsize=6.5)
                else:
                    ax.set_yticks([])
                ax.tick_params(length=1.5, pad=1)
        if image is not None:
            colorbar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, pad=0.02)
            colorbar.set_label("attention weight (query row → key column)")
        return to_data_uri(fig, dpi=80)


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
