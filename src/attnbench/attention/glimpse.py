"""Hard spatial attention by glimpses (Mnih et al., 2014, "Recurrent Models of Visual Attention").

A glimpse sensor reads a retina-like view of an image around one location: ``scales`` square
patches centred there, of sides ``patch * 2**k``, each average-pooled down to ``patch x patch``
(fine in the centre, coarse around it). Pixels outside the image read as 0. A location policy
(a linear layer + tanh on the query, the recurrent core's state) gives the mean of a Gaussian with a
fixed standard deviation; training samples the location from it (the REINFORCE gradient reaches the
policy through the returned log-probability), evaluation takes the mean.

Locations are (row, column) in [-1, 1]: -1 is the image's top / left edge, +1 the bottom / right
edge, 0 the centre; a location l maps to the pixel coordinate (l + 1) / 2 * side.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from .base import Attention, register

__all__ = ["GlimpseAttention", "GlimpseStep", "extract_glimpse", "extract_glimpses", "glimpse_boxes", "location_to_pixels"]


def location_to_pixels(loc: Tensor, height: int, width: int) -> Tensor:
    """[..., 2] (row, col) in [-1, 1] -> continuous pixel coordinates of the glimpse centre."""
    scale = torch.tensor([height, width], dtype=loc.dtype, device=loc.device)
    return (loc + 1.0) / 2.0 * scale


def glimpse_boxes(loc: Tensor, height: int, width: int, patch: int, scales: int) -> Tensor:
    """Integer (top, left) of each scale's square: [B, scales, 2]; side of scale k is patch * 2**k."""
    centre = location_to_pixels(loc, height, width)                        # [B, 2]
    sides = torch.tensor([patch * 2 ** k for k in range(scales)], dtype=loc.dtype, device=loc.device)
    return torch.round(centre.unsqueeze(1) - sides.view(1, -1, 1) / 2.0).long()


def extract_glimpse(images: Tensor, loc: Tensor, patch: int, scales: int) -> Tensor:
    """The retina at `loc`: images [B, C, H, W], loc [B, 2] -> [B, scales, C, patch, patch].

    Scale k crops the (patch * 2**k)-pixel square centred at the location (zeros outside the image)
    and average-pools it by 2**k. No gradient flows to `loc` (hard attention)."""
    return extract_glimpses(images, loc.unsqueeze(1), patch, scales).squeeze(1)


def extract_glimpses(images: Tensor, locs: Tensor, patch: int, scales: int) -> Tensor:
    """The retinas at N locations per image at once: images [B, C, H, W], locs [B, N, 2] ->
    [B, N, scales, C, patch, patch], each equal to :func:`extract_glimpse` at that location. The
    image is padded once and each scale is one gather, so the cost grows with N times the retina's
    size, not N times the image's."""
    b, c, h, w = images.shape
    n = locs.shape[1]
    largest = patch * 2 ** (scales - 1)
    pad = largest
    padded = F.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)        # [B, H + 2p, W + 2p, C]
    tops = glimpse_boxes(locs.detach().reshape(b * n, 2), h, w, patch, scales).view(b, n, scales, 2) + pad
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    out = []
    for k in range(scales):
        side = patch * 2 ** k
        steps = torch.arange(side, device=images.device)
        rows = (tops[:, :, k, 0:1] + steps).clamp(0, h + 2 * pad - 1)       # [B, N, side]
        cols = (tops[:, :, k, 1:2] + steps).clamp(0, w + 2 * pad - 1)
        crop = padded[batch, rows.unsqueeze(3), cols.unsqueeze(2)]          # [B, N, side, side, C]
        crop = crop.reshape(b * n, side, side, c).permute(0, 3, 1, 2)
        if k:
            crop = F.avg_pool2d(crop, 2 ** k)
        out.append(crop.reshape(b, n, c, patch, patch))
    return torch.stack(out, dim=2)


class GlimpseStep(NamedTuple):
    glimpse: Tensor    # [B, scales * C * patch * patch]
    location: Tensor   # [B, 2] where the glimpse was taken (sampled in training, the mean otherwise)
    mean: Tensor       # [B, 2] the policy's mean
    log_prob: Tensor   # [B] log-density of `location` under the policy (0 when not sampled)


@register("glimpse")
class GlimpseAttention(Attention):
    """RAM's hard glimpse: a Gaussian location policy on the query and a multi-resolution retina.

    Through the common interface the keys are ignored and the values are the pixels of an image,
    ``[B, H*W, C]`` row-major (``H`` = the ``height`` option, else the side of a square image, else
    one row: a sequence is a 1-pixel-high image); masked pixels read as 0. The context is RAM's
    glimpse-network input, the flattened retina followed by the location it was read at (in
    training the location is ``mean + std * noise``, so gradients reach the policy through it);
    the weights are the retina's footprint: each scale's square shares 1/scales of the mass
    uniformly over its real pixels, renormalised to sum to 1. The RAM model calls :meth:`step` on
    the image itself and trains the policy by REINFORCE on the returned log-probability.
    Options: ``patch``, ``scales``, ``std`` (the policy's standard deviation, in location units),
    ``height``.
    """

    decoder_step = False
    forms = frozenset({"glimpse"})
    weights_over = "locations"
    sampled = True
    reinforce = True  # RAM trains the location policy by REINFORCE
    # as self-attention a length-T sequence is a square image when T is a square, else a 1 x T row, padded by
    # the retina's reach on every side: the cost follows that image's padded area, not T alone
    scaling = "image"

    description = "Hard glimpses (RAM): multi-resolution retina at a location drawn from a Gaussian policy on the query"
    produces_alignment = False

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, patch: int = 8, scales: int = 3,
                 std: float = 0.15, height: int | None = None) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if int(patch) < 1 or int(scales) < 1:
            raise ValueError(f"glimpse: patch and scales must be >= 1, got patch={patch}, scales={scales}")
        if not float(std) > 0:
            raise ValueError(f"glimpse: std must be > 0, got {std}")
        self.patch, self.scales, self.std = int(patch), int(scales), float(std)
        self.height = None if height is None else int(height)
        self.channels = int(value_dim)
        self.retina_dim = self.scales * self.channels * self.patch ** 2
        self.output_dim = self.retina_dim + 2
        self.policy = nn.Linear(query_dim, 2)

    def locate(self, query: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(location, mean, log_prob) for a query [B, Dq]; the sampled location keeps the
        reparameterised gradient (RAM detaches it and uses the log-probability instead)."""
        mean = torch.tanh(self.policy(query))
        if not sample:
            return mean, mean, torch.zeros(mean.shape[0], device=mean.device, dtype=mean.dtype)
        loc = mean + self.std * torch.randn_like(mean)
        fixed = loc.detach()
        log_prob = (-((fixed - mean) ** 2) / (2 * self.std ** 2) - math.log(self.std)
                    - 0.5 * math.log(2 * math.pi)).sum(-1)
        return loc.clamp(-1.0, 1.0), mean, log_prob

    def read(self, images: Tensor, loc: Tensor) -> Tensor:
        """The flattened retina [B, scales * C * patch * patch] at `loc` (no gradient to `loc`)."""
        return extract_glimpse(images, loc, self.patch, self.scales).flatten(1)

    def step(self, query: Tensor, images: Tensor, sample: bool | None = None) -> GlimpseStep:
        """One glimpse of images [B, C, H, W] where the policy sends it; the location is detached."""
        loc, mean, log_prob = self.locate(query, self.training if sample is None else sample)
        loc = loc.detach()
        return GlimpseStep(self.read(images, loc), loc, mean, log_prob)

    def footprint(self, loc: Tensor, height: int, width: int, real: Tensor | None = None) -> Tensor:
        """[B, H*W] weights of the pixels the glimpse at `loc` [B, 2] reads (sum 1 over the real
        pixels, all 0 when no pixel is real); `loc` [B, N, 2] gives [B, N, H*W], one row per location."""
        if loc.dim() == 2:
            return self.footprint(loc.unsqueeze(1), height, width, real).squeeze(1)
        b, n, _ = loc.shape
        tops = glimpse_boxes(loc.detach().reshape(b * n, 2), height, width, self.patch,
                             self.scales).view(b, n, self.scales, 2)
        rows = torch.arange(height, device=loc.device).view(1, 1, -1)
        cols = torch.arange(width, device=loc.device).view(1, 1, -1)
        ok = torch.ones(b, 1, height, width, dtype=torch.bool, device=loc.device) if real is None \
            else real.view(b, 1, height, width)
        total = torch.zeros(b, n, height, width, device=loc.device, dtype=loc.dtype)
        for k in range(self.scales):
            side = self.patch * 2 ** k
            r = (rows >= tops[:, :, k, 0:1]) & (rows < tops[:, :, k, 0:1] + side)       # [B, N, H]
            c = (cols >= tops[:, :, k, 1:2]) & (cols < tops[:, :, k, 1:2] + side)       # [B, N, W]
            inside = (r.unsqueeze(3) & c.unsqueeze(2) & ok).to(loc.dtype)
            total = total + inside / inside.sum((2, 3), keepdim=True).clamp_min(1.0)
        total = total / total.sum((2, 3), keepdim=True).clamp_min(1e-12)
        return total.flatten(2)

    def _shape(self, n: int) -> tuple[int, int]:
        if self.height is not None:
            if n % self.height:
                raise ValueError(f"glimpse attention: {n} pixels do not make an image of height {self.height}")
            return self.height, n // self.height
        side = math.isqrt(n)
        return (side, side) if side * side == n else (1, n)

    def attend(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor):
        b, tq, _ = query.shape
        h, w = self._shape(values.shape[1])
        if mask is not None:
            values = values * mask.unsqueeze(-1).to(values.dtype)
        images = values.transpose(1, 2).reshape(b, values.shape[2], h, w)
        # one location per query step (in order, so sampling draws as a step-by-step RAM would), then
        # every retina and footprint in one pass
        locs = torch.stack([self.locate(query[:, t], self.training)[0] for t in range(tq)], 1)   # [B, Tq, 2]
        retinas = extract_glimpses(images, locs.detach(), self.patch, self.scales).flatten(2)
        return torch.cat([retinas, locs], dim=-1), self.footprint(locs, h, w, mask)
