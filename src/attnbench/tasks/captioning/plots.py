"""Captioning figures: a test image with one attention overlay per generated word (Xu et al.'s Figure 2
style), and BLEU-n per run. Every function returns a PNG data URI (see plots.to_data_uri)."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...report.plots import _RC, _style, short, to_data_uri


def word_attention(image: np.ndarray, words: Sequence[str], alpha: np.ndarray | None, masks: np.ndarray | None = None,
                   title: str = "", ncols: int = 8) -> str:
    """The image, then one panel per generated word (and the end token) with the attention of the step that
    emitted it upsampled over the image (the image dimmed where the step did not attend; ▲ marks the peak cell). Object outlines from
    `masks` [K, H, W] are drawn in white when given. Without `alpha` (no attention) only the image is shown."""
    image = np.asarray(image)
    H, W = image.shape[:2]
    steps = [] if alpha is None else list(words)[: len(alpha)] + (["<end>"] if len(alpha) > len(words) else [])
    n = 1 + len(steps)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.78 * nrows + (0.3 if title else 0)), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        axes[0, 0].imshow(image, interpolation="nearest")
        axes[0, 0].set_title("input", fontsize=8, parse_math=False)
        for k, word in enumerate(steps):
            ax = axes.ravel()[k + 1]
            a = np.asarray(alpha[k], dtype=float)
            g = a.shape[-1]
            up = np.kron(a.reshape(g, g), np.ones((H // g, W // g)))
            up = up / max(up.max(), 1e-12)
            # the image dimmed where the step did not attend (bright = attended), as in Xu et al.'s figures
            ax.imshow((image[: up.shape[0], : up.shape[1]] * (0.15 + 0.85 * up[..., None])).astype(np.uint8),
                      interpolation="nearest")
            if masks is not None:
                for m in np.asarray(masks):
                    ax.contour(m.astype(float), levels=[0.5], colors="white", linewidths=0.6)
            py, px = divmod(int(np.argmax(a)), g)
            ax.plot((px + 0.5) * W / g - 0.5, (py + 0.5) * H / g - 0.5, marker="^", color="#ff7f0e", markersize=5)
            ax.set_title(short(word, 12), fontsize=8, parse_math=False)
        fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()) if title else None)
        if title:
            fig.suptitle(title, fontsize=8.5, parse_math=False)
        return to_data_uri(fig, dpi=80)


def bleu_orders(data: pd.DataFrame, baseline: str | None = None) -> str:
    """BLEU-1..4 per run (columns run, order, value): grouped bars, the no-attention run first."""
    runs = list(dict.fromkeys(([baseline] if baseline in set(data["run"]) else []) + list(data["run"])))
    axes_style, rc = _style()
    with axes_style, rc:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        sns.barplot(data=data, x="order", y="value", hue="run", hue_order=runs, errorbar=None, ax=ax,
                    palette=dict(zip(runs, sns.color_palette("tab10", n_colors=max(len(runs), 1)))))
        ax.set_xlabel("n-gram order (BLEU-n: geometric mean of the 1..n-gram precisions)", parse_math=False)
        ax.set_ylabel("BLEU (sacreBLEU, test set, 0-100)", parse_math=False)
        ax.set_ylim(0, 100)
        ax.legend(title="run", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return to_data_uri(fig)
