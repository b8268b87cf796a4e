"""Figures of the intent section: the self-attention maps of each head. Each returns a PNG data URI
(the shared helpers are `attnbench.report.plots`'s)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ...report.plots import _RC, short, to_data_uri


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
