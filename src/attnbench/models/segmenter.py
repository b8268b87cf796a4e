"""Fully convolutional segmenters for the ships task.

* ShallowFCN: a few 3x3 convolutions at full resolution (small receptive field, sharp boundaries,
  no context), one bow/stern logit per pixel.
* DeepFCN: an encoder (three 2x downsamplings) and a decoder without skip connections by default
  (FCN-style: wide context, coarse boundaries), four class logits per pixel. Optional attention:
  ``se`` / ``cbam_spatial`` after every encoder stage, ``scaled_dot`` (a non-local block, Wang et
  al. 2018, embedded-Gaussian form) or ``external`` (Guo et al. 2021) over the bottleneck's pixels.
* TaskPartition: a DeepFCN and a ShallowFCN; the deep net's bow/stern probability, thresholded and
  dilated (the ``task_partition`` mechanism), is the region in which the shallow net's bow/stern
  loss is counted and outside which its prediction is switched off.

Every forward returns ``(outputs, extras)``; extras hold the attention maps the report shows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import attention
from ..attention import NO_ATTENTION, Needs

BOW_STERN = 3


def conv_block(cin: int, cout: int, convs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ShallowFCN(nn.Module):
    attention_needs = NO_ATTENTION
    outputs = "bowstern"         # forward: one bow/stern logit per pixel, no class map
    trains_in_stages = False

    def __init__(self, in_channels: int = 3, width: int = 16, layers: int = 3) -> None:
        super().__init__()
        blocks = [conv_block(in_channels if i == 0 else width, width) for i in range(layers)]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, dict]:
        return self.head(self.body(x))[:, 0], {}


class _TokenBlock(nn.Module):
    """Self-attention over a feature map's pixels with a registered mechanism, added residually."""

    def __init__(self, channels: int, mechanism: str, options: dict) -> None:
        super().__init__()
        self.mechanism = mechanism
        # weights over memory slots (external): the mechanism reads the queries only, its own memory for the rest
        self.own_memory = attention.get_class(mechanism).weights_over == "slots"
        if self.own_memory:
            self.proj_in = nn.Conv2d(channels, channels, 1)
            self.attn = attention.build(mechanism, channels, channels, channels, **options)
            dim = channels
        else:   # non-local: theta, phi, g 1x1 projections, then the registered dot-product score
            dim = int(options.get("attn_dim", max(8, channels // 2)))
            self.theta, self.phi, self.g = (nn.Conv2d(channels, dim, 1) for _ in range(3))
            self.attn = attention.build(mechanism, dim, dim, dim,
                                        **{k: v for k, v in options.items() if k != "attn_dim"})
        self.out = nn.Conv2d(dim, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.norm.weight)   # the block starts as the identity (Wang et al. 2018)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        tokens = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731   [B, HW, C]
        if self.own_memory:
            q = tokens(self.proj_in(x))
            ctx, weights = self.attn(q, q, q)
        else:
            ctx, weights = self.attn(tokens(self.theta(x)), tokens(self.phi(x)), tokens(self.g(x)))
        y = ctx.transpose(1, 2).reshape(b, -1, h, w)
        return F.relu(x + self.norm(self.out(y))), weights


class DeepFCN(nn.Module):
    # a mechanism over a feature map: a gate after every encoder stage, or self-attention over the bottleneck's
    # pixels (the non-local block); none: the plain net
    attention_needs = Needs(forms=("map",), optional=True)
    outputs = "classes"          # forward: four class logits per pixel
    trains_in_stages = False

    def __init__(self, in_channels: int = 3, classes: int = 4, widths: tuple[int, ...] = (16, 32, 64),
                 convs: int = 2, skips: bool = False, mechanism: str = "none", options: dict | None = None) -> None:
        super().__init__()
        options = dict(options or {})
        self.mechanism, self.skips = mechanism, bool(skips)
        widths = tuple(int(w) for w in widths)
        self.enc = nn.ModuleList()
        self.gates = nn.ModuleList()
        cin = in_channels
        cls = attention.get_class(mechanism)
        self.weights_over = cls.weights_over
        gates, tokens = cls.attends and "gate" in cls.forms, cls.attends and "map" in cls.forms
        for w in widths:
            self.enc.append(conv_block(cin, w, convs))
            if gates:
                self.gates.append(attention.build(mechanism, w, w, w, **options))
            cin = w
        bottom = widths[-1]
        self.bottleneck = conv_block(bottom, bottom, convs)
        self.token_block = _TokenBlock(bottom, mechanism, options) if tokens and not gates else None
        self.dec = nn.ModuleList()
        cin = bottom
        for w in reversed(widths):
            self.dec.append(conv_block(cin + (w if self.skips else 0), w))
            cin = w
        self.head = nn.Conv2d(cin, classes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, dict]:
        extras: dict[str, Tensor] = {}
        size = x.shape[-2:]
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if self.gates:
                x, g = self.gates[i].forward_map(x)
                if self.weights_over == "pixels" and i == 0:    # a spatial gate: the map the report draws
                    extras["spatial_map"] = g
                elif self.weights_over == "channels":
                    extras[f"channel_gates_{i}"] = g
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        if self.token_block is not None:
            x, w = self.token_block(x)
            if self.weights_over == "keys":     # attention each position receives, mean over queries
                h, wd = x.shape[-2:]
                extras["spatial_map"] = w.mean(dim=1).reshape(-1, h, wd)
        for block, skip in zip(self.dec, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1) if self.skips else x)
        logits = self.head(x)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits, extras


class TaskPartition(nn.Module):
    """Deep coarse net + shallow fine net; the gate is the deep net's dilated bow/stern region."""

    attention_needs = Needs(forms=("partition",))   # the gate: a coarse net's class region
    outputs = "partition"        # forward: {logits, fine, region}
    trains_in_stages = True      # an optional deep-first warm-up before the shallow net trains (`train_shallow`)

    def __init__(self, deep: DeepFCN, shallow: ShallowFCN, threshold: float, dilation: int,
                 mechanism: str = "task_partition") -> None:
        super().__init__()
        self.deep, self.shallow = deep, shallow
        self.train_shallow = True   # False during a deep-first warm-up (set per epoch by the ships task)
        self.gate = attention.build(mechanism, 1, 1, 1, threshold=threshold, dilation=dilation)

    def forward(self, x: Tensor) -> tuple[dict, dict]:
        logits, _ = self.deep(x)
        fine, _ = self.shallow(x)
        prob = torch.softmax(logits.float(), dim=1)[:, BOW_STERN].detach()
        region = self.gate.region(prob)
        return {"logits": logits, "fine": fine, "region": region}, {"coarse_prob": prob, "region": region}
