"""Figures of the translation section: BLEU by source length and the attention heat maps. Each returns a PNG data URI
(the shared helpers are `attnbench.report.plots`'s)."""
from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...report.plots import _RC, _lines, _palette, _style, short, to_data_uri


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
