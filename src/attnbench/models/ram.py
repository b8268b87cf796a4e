"""Models of the glimpse task: RAM (hard glimpses, REINFORCE), soft spatial attention over a CNN
feature map, a full-view CNN and a full-view MLP. All take images [B, C, H, W] and return
(logits [B, classes], extras)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from .. import attention
from ..attention import NO_ATTENTION, Needs


class RAM(nn.Module):
    """Recurrent attention model (Mnih et al., 2014).

    Each step reads a glimpse (the registry's `glimpse` mechanism: a multi-resolution retina at a
    location), the glimpse network mixes what it saw with where (g = relu(W[relu(W_x x); relu(W_l l)])),
    a recurrent core updates its state, and the location network (the mechanism's Gaussian policy on
    the detached state) picks the next location. The first glimpse is taken at the centre. After the
    last glimpse the state classifies the image; a baseline network predicts the reward (1 when the
    class is right) from each step's detached state, for REINFORCE's variance reduction.
    """

    attention_needs = Needs(forms=("glimpse",))   # a location policy and a retina (`step`)

    def __init__(self, channels: int, classes: int, *, glimpses: int = 6, glimpse_hidden: int = 128,
                 location_hidden: int = 64, hidden: int = 128, core: str = "gru", mechanism: str = "glimpse",
                 attention_options: dict | None = None) -> None:
        super().__init__()
        if glimpses < 1:
            raise ValueError(f"RAM needs at least one glimpse, got {glimpses}")
        self.glimpses = int(glimpses)
        if self.attention_needs.missing(attention.get_class(mechanism)):
            raise ValueError(f"RAM needs a glimpse mechanism (with a location policy); {mechanism!r} has none")
        self.sensor = attention.build(mechanism, hidden, channels, channels, **(attention_options or {}))
        self.what = nn.Linear(self.sensor.retina_dim, glimpse_hidden)
        self.where = nn.Linear(2, location_hidden)
        self.glimpse_net = nn.Linear(glimpse_hidden + location_hidden, hidden)
        if core == "gru":
            self.core = nn.GRUCell(hidden, hidden)
        elif core == "rnn":
            self.core = nn.RNNCell(hidden, hidden, nonlinearity="relu")
        else:
            raise ValueError(f"RAM core must be 'gru' or 'rnn', got {core!r}")
        self.hidden = int(hidden)
        self.classifier = nn.Linear(hidden, classes)
        self.baseline = nn.Linear(hidden, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        b = images.shape[0]
        h = images.new_zeros(b, self.hidden)
        loc = images.new_zeros(b, 2)
        locations, log_probs, baselines = [loc], [images.new_zeros(b)], []
        for t in range(self.glimpses):
            seen = self.sensor.read(images, loc)
            g = F.relu(self.glimpse_net(torch.cat([F.relu(self.what(seen)), F.relu(self.where(loc))], -1)))
            h = self.core(g, h)
            baselines.append(self.baseline(h.detach()).squeeze(-1))
            if t + 1 < self.glimpses:
                step_loc, _, log_prob = self.sensor.locate(h.detach(), self.training)
                loc = step_loc.detach()
                locations.append(loc)
                log_probs.append(log_prob)
        logits = self.classifier(h)
        return logits, {"locations": torch.stack(locations, 1), "log_probs": torch.stack(log_probs, 1),
                        "baselines": torch.stack(baselines, 1)}


def conv_stack(in_channels: int, channels: list[int], pool_last: bool = True, batch_norm: bool = False) -> nn.Sequential:
    """3x3 conv (+ batch norm) + ReLU blocks, each followed by 2x2 max-pooling (the last one only if
    `pool_last`)."""
    layers: list[nn.Module] = []
    prev = in_channels
    for i, c in enumerate(channels):
        layers += [nn.Conv2d(prev, c, 3, padding=1)] + ([nn.BatchNorm2d(c)] if batch_norm else []) + [nn.ReLU()]
        if pool_last or i + 1 < len(channels):
            layers.append(nn.MaxPool2d(2))
        prev = c
    return nn.Sequential(*layers)


class FullViewCNN(nn.Module):
    """The convolutional baseline: conv blocks over the whole canvas, then a hidden layer."""

    attention_needs = NO_ATTENTION   # a full view: no attention

    def __init__(self, channels: int, classes: int, side: int, *, conv: list[int], hidden: int = 128,
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        self.features = conv_stack(channels, conv, batch_norm=batch_norm)
        cells = side // 2 ** len(conv)
        if cells < 1:
            raise ValueError(f"{len(conv)} pooling blocks shrink a {side}-pixel canvas to nothing")
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(conv[-1] * cells * cells, hidden),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        return self.head(self.features(images)), {}


class FullViewMLP(nn.Module):
    """The fully connected baseline on the flattened canvas."""

    attention_needs = NO_ATTENTION   # a full view: no attention

    def __init__(self, channels: int, classes: int, side: int, *, hidden: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = channels * side * side
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        return self.net(images), {}


class SoftSpatial(nn.Module):
    """Soft (differentiable) spatial attention over a CNN feature map.

    The conv blocks (the last without pooling) give a map of cells; a learned embedding of each
    cell's position is added to its features to make the keys, the features are the values. A GRU
    state, started from the mean cell, queries the map `steps` times (any registered mechanism that
    weighs the keys, e.g. additive), reading the weighted context each time; the last state and
    context classify. The weights [B, steps, cells] are the soft counterpart of RAM's glimpses.
    """

    # weights over the cells; the query (the GRU state) and the keys (the cells' features) differ in size
    attention_needs = Needs(alignment=True, equal_dims=False)

    def __init__(self, channels: int, classes: int, side: int, *, conv: list[int], hidden: int = 128, steps: int = 3,
                 dropout: float = 0.0, mechanism: str = "additive", attention_options: dict | None = None) -> None:
        super().__init__()
        self.features = conv_stack(channels, conv, pool_last=False)
        self.grid = side // 2 ** (len(conv) - 1)
        if self.grid < 1:
            raise ValueError(f"{len(conv)} conv blocks shrink a {side}-pixel canvas to nothing")
        dim = conv[-1]
        self.position = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        nn.init.normal_(self.position, std=0.1)
        self.start = nn.Linear(dim, hidden)
        self.attn = attention.build(mechanism, hidden, dim, dim, **(attention_options or {}))
        self.core = nn.GRUCell(self.attn.output_dim, hidden)
        self.steps = int(steps)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden + self.attn.output_dim, classes)

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        fmap = self.features(images)                                   # [B, D, g, g]
        values = fmap.flatten(2).transpose(1, 2)                      # [B, g*g, D]
        keys = values + self.position
        h = torch.tanh(self.start(values.mean(1)))
        weights = []
        ctx = values.mean(1)
        for _ in range(self.steps):
            ctx, w = self.attn(h, keys, values)
            h = self.core(ctx, h)
            weights.append(w)
        logits = self.classifier(self.drop(torch.cat([h, ctx], -1)))
        return logits, {"weights": torch.stack(weights, 1)}
