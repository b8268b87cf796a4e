"""Attention mechanisms of convolutional nets: channel (squeeze-and-excitation), CBAM-style spatial
attention, and the task-partitioning region gate.

Each registers under the common sequence interface (a token sequence is a 1-D feature map, so the
generic tests and any sequence model can use them) and adds a 2-D form, ``forward_map``, over a
feature map ``[B, C, H, W]`` that the segmenter calls; both forms share the same parameters.
Non-local self-attention and external attention need no new class: the segmenter runs the
registered ``scaled_dot`` and ``external`` mechanisms over the map's pixels as tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Attention, masked_softmax, register

__all__ = ["ChannelSE", "SpatialCBAM", "TaskPartitionGate"]


def _uniform(mask: Tensor | None, b: int, tq: int, tk: int, like: Tensor) -> Tensor:
    real = torch.ones(b, tk, dtype=torch.bool, device=like.device) if mask is None else mask
    w = real.to(like.dtype)
    w = w / w.sum(-1, keepdim=True).clamp_min(1.0)
    return w.unsqueeze(1).expand(b, tq, tk)


@register("se")
class ChannelSE(Attention):
    """Squeeze-and-excitation (Hu et al., 2018): channel gates from the globally pooled features.

    ``g = sigmoid(W2 relu(W1 mean(x)))`` over channels, output ``x * g``. Sequence form: the squeeze
    is the mean of the values over the real keys (uniform weights, returned), the context is the
    gated mean. 2-D form: ``forward_map(x) -> (x * g, g [B, C])``. Option ``reduction``.
    """

    decoder_step = False
    forms = frozenset({"map", "gate"})
    weights_over = "channels"

    produces_alignment = False
    description = "Squeeze-and-excitation channel attention (Hu et al., 2018): x * sigmoid(W2 relu(W1 mean(x)))"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, reduction: int = 4) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        hidden = max(4, value_dim // int(reduction))
        self.fc1 = nn.Linear(value_dim, hidden)
        self.fc2 = nn.Linear(hidden, value_dim)

    def gates(self, pooled: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))

    def attend(self, query, keys, values, mask, positions):
        w = _uniform(mask, query.shape[0], query.shape[1], keys.shape[1], values)
        pooled = torch.bmm(w, values)
        return self.gates(pooled) * pooled, w

    def forward_map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        g = self.gates(x.mean(dim=(2, 3)))
        return x * g[:, :, None, None], g


@register("cbam_spatial")
class SpatialCBAM(Attention):
    """CBAM's spatial attention (Woo et al., 2018): a k x k convolution over the channel-wise mean and
    max of the features gives one gate per position.

    2-D form: ``forward_map(x) -> (x * m, m [B, H, W])`` with ``m = sigmoid(conv([mean_c x; max_c x]))``.
    Sequence form: the same descriptor of the keys, convolved along the sequence with the kernel's
    centre row, is softmax-normalised over the real keys (weights) and averages the values.
    Option ``kernel`` (odd).
    """

    decoder_step = False
    forms = frozenset({"map", "gate"})
    weights_over = "pixels"

    produces_alignment = False
    description = "CBAM spatial attention (Woo et al., 2018): sigmoid(conv_kxk([mean_c x; max_c x])) gates each position"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, kernel: int = 7) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if int(kernel) % 2 != 1:
            raise ValueError(f"cbam_spatial: kernel must be odd, got {kernel}")
        self.kernel = int(kernel)
        self.conv = nn.Conv2d(2, 1, self.kernel, padding=self.kernel // 2)

    @staticmethod
    def _descriptor(x: Tensor, dim: int) -> Tensor:
        return torch.cat([x.mean(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)], dim=dim)

    def attend(self, query, keys, values, mask, positions):
        desc = self._descriptor(keys, dim=2).transpose(1, 2)                  # [B, 2, Tk]
        row = self.conv.weight[:, :, self.kernel // 2, :]                     # [1, 2, k]
        score = F.conv1d(desc, row, self.conv.bias, padding=self.kernel // 2)  # [B, 1, Tk]
        score = score.expand(-1, query.shape[1], -1)
        w = masked_softmax(score, None if mask is None else mask.unsqueeze(1))
        return torch.bmm(w, values), w

    def forward_map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = torch.sigmoid(self.conv(self._descriptor(x, dim=1)))
        return x * m, m[:, 0]


@register("task_partition")
class TaskPartitionGate(Attention):
    """Task partitioning's attention (Lin et al., "Fully Convolutional Network with Task Partitioning
    for Inshore Ship Detection"): a coarse net's probability of the target class, thresholded and
    dilated, is a hard region inside which a fine net learns and predicts.

    2-D form: ``region(prob [B, H, W]) -> bool [B, H, W]`` = dilate(prob >= threshold, `dilation` px).
    Sequence form: a learned coarse scorer ``p = sigmoid(w.k + b)`` over the keys; the region is the
    keys with ``p >= threshold`` dilated by `dilation` positions (all real keys when empty); weights
    are the softmax of the score inside the region. Options ``threshold``, ``dilation``.
    """

    decoder_step = False
    forms = frozenset({"partition"})
    weights_over = "region"

    produces_alignment = False
    description = "Task partitioning (Lin et al.): a coarse net's dilated class region gates a fine net's loss and output"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, threshold: float = 0.3, dilation: int = 2) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"task_partition: threshold must lie in (0, 1), got {threshold}")
        self.threshold, self.dilation = float(threshold), int(dilation)
        self.coarse = nn.Linear(key_dim, 1)

    def region(self, prob: Tensor) -> Tensor:
        hit = (prob >= self.threshold).float().unsqueeze(1)
        if self.dilation > 0:
            k = 2 * self.dilation + 1
            hit = F.max_pool2d(hit, k, stride=1, padding=self.dilation)
        return hit[:, 0] > 0

    def attend(self, query, keys, values, mask, positions):
        score = self.coarse(keys)[..., 0]                                      # [B, Tk]
        hit = (torch.sigmoid(score) >= self.threshold).float().unsqueeze(1)
        if self.dilation > 0:
            hit = F.max_pool1d(hit, 2 * self.dilation + 1, stride=1, padding=self.dilation)
        region = hit[:, 0] > 0
        real = torch.ones_like(region) if mask is None else mask
        region = region & real
        region = torch.where(region.any(-1, keepdim=True), region, real)
        w = masked_softmax(score.unsqueeze(1).expand(-1, query.shape[1], -1), region.unsqueeze(1))
        return torch.bmm(w, values), w
