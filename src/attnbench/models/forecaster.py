"""Multi-step load forecasters: window of the past in, one value per horizon step out.

Every model is called as ``model(x, z) -> (forecast, extras)``:

* ``x`` ``[B, T, 1 + F]``: the input window, the (scaled) load in channel 0, the F exogenous
  features after it;
* ``z`` ``[B, H, K]``: the K features known in advance (calendar, holiday flag, a temperature
  forecast, ...) at the H target steps. Observed-only features (other loads, measured weather)
  appear in ``x`` only, never in ``z``: their values after the forecast origin are not available
  when the forecast is made. The models are built with both counts, ``n_features`` (F, in ``x``)
  and ``n_known`` (K, in ``z``; default F, every feature known);
* ``forecast`` ``[B, H]`` (scaled load); ``extras`` holds what the report draws:
  ``feature_weights`` ``[B, H, F]`` (per-horizon feature attention), ``temporal_weights``
  ``[B, H, T]`` (attention over encoder states), ``mask`` ``[B, T]`` (anomaly-mask weight of each
  input step, 1 = trusted).

Baselines fitted in closed form (`SeasonalNaive`, `RidgeForecaster`, `DLinearForecaster`) keep their
parameters as buffers, so they are saved and loaded like the networks.

The neural models share one shape: a feature mapping of each input step, an encoder over time
(GRU or Transformer), and a head applied at each horizon step to [summary of the past; the future
features; a learned embedding of the step (; a temporal-attention context)]:

* `RecurrentForecaster` ``gru``: plain (attention ``none``) or with temporal attention over the
  encoder states (any registered mechanism, query = the step's embedding and the last state);
* ``feature_attn``: the future features enter through `FeatureAttention`, one attention over the
  features per horizon step (a learned mask over features for each output step);
* ``anomaly_mask``: `AnomalyMask` right after the feature mapping down-weights anomalous steps;
* `TransformerForecaster`: a pre-LN Transformer encoder over time.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..attention import NO_ATTENTION, Needs, build
from .transformer import EncoderLayer, sinusoidal_positions


# ---------------------------------------------------------------------------------------- baselines
class SeasonalNaive(nn.Module):
    """ŷ(t + h) = y(t + h - season): the same hour one season (a week) earlier, read from the window."""

    attention_needs = NO_ATTENTION

    def __init__(self, window: int, horizon: int, season: int) -> None:
        super().__init__()
        if not horizon <= season <= window:
            raise ValueError(f"seasonal naive needs horizon <= season <= window, got {horizon}, {season}, {window}")
        self.register_buffer("lags", torch.arange(horizon) + window - season)

    def forward(self, x: Tensor, z: Tensor) -> tuple[Tensor, dict]:
        return x[:, self.lags, 0], {}


class RidgeForecaster(nn.Module):
    """Linear multi-output map of [load window; observed-only features' windows; known features at the
    horizon steps] fitted by scikit-learn's Ridge (the task's fit).

    ``observed``: indices (0-based, among the F features of ``x``) of the observed-only features, whose
    T lags enter the design; the K known features enter at the H target steps (``z``).
    ``coef`` ``[H, T + T*len(observed) + H*K]`` and ``intercept`` ``[H]`` are float64 buffers."""

    attention_needs = NO_ATTENTION

    def __init__(self, window: int, horizon: int, n_features: int, observed: list[int] | tuple[int, ...] = (),
                 n_known: int | None = None) -> None:
        super().__init__()
        n_known = n_features if n_known is None else n_known
        p = window + window * len(observed) + horizon * n_known
        self.register_buffer("observed", torch.as_tensor(list(observed), dtype=torch.long) + 1, persistent=False)
        self.register_buffer("coef", torch.zeros(horizon, p, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(horizon, dtype=torch.float64))
        self.register_buffer("alpha", torch.zeros((), dtype=torch.float64))

    def design(self, x: Tensor, z: Tensor) -> Tensor:
        past = x[:, :, self.observed].transpose(1, 2).flatten(1)                    # [B, T * n_observed]
        return torch.cat([x[:, :, 0], past, z.flatten(1)], dim=1)

    def forward(self, x: Tensor, z: Tensor) -> tuple[Tensor, dict]:
        flat = self.design(x, z).double()
        return (flat @ self.coef.T + self.intercept).to(x.dtype), {}


def moving_average_matrix(window: int, kernel: int) -> Tensor:
    """[T, T] float64 A with A @ y = the centred moving average of y over `kernel` steps, the series
    padded at both ends by repeating its first and last values (DLinear's series decomposition)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"dlinear: the moving-average kernel must be odd and positive, got {kernel}")
    half = (kernel - 1) // 2
    a = torch.zeros(window, window, dtype=torch.float64)
    for t in range(window):
        for j in range(t - half, t + half + 1):
            a[t, min(max(j, 0), window - 1)] += 1.0 / kernel
    return a


class DLinearForecaster(nn.Module):
    """DLinear (Zeng et al. 2023, "Are Transformers effective for time series forecasting?"): the load
    window is split into a trend (centred moving average, `moving_average_matrix`) and a remainder,
    each mapped to the H horizon steps by its own linear layer, the two forecasts added. Univariate
    (the load channel only, as in the paper's channel-independent model), so no covariate enters.

    Fitted in closed form by the task (ridge on [trend; remainder], alpha chosen on validation):
    ``coef`` ``[H, 2T]`` = [W_trend, W_remainder], ``intercept`` ``[H]``, float64 buffers."""

    attention_needs = NO_ATTENTION

    def __init__(self, window: int, horizon: int, kernel: int = 25) -> None:
        super().__init__()
        self.register_buffer("average", moving_average_matrix(window, kernel), persistent=False)
        self.register_buffer("coef", torch.zeros(horizon, 2 * window, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(horizon, dtype=torch.float64))
        self.register_buffer("alpha", torch.zeros((), dtype=torch.float64))

    def design(self, x: Tensor) -> Tensor:
        """[B, 2T]: the window's trend and remainder (float64)."""
        y = x[:, :, 0].double()
        trend = y @ self.average.T
        return torch.cat([trend, y - trend], dim=1)

    def forward(self, x: Tensor, z: Tensor) -> tuple[Tensor, dict]:
        return (self.design(x) @ self.coef.T + self.intercept).to(x.dtype), {}


# ---------------------------------------------------------------------------------------- attention parts
class FeatureAttention(nn.Module):
    """Per-horizon attention over the features: which features each output step uses.

    Each feature f gets its own small non-linear embedding ``e_f(z_f)`` (1 -> ``embed_hidden`` ->
    ``dim``); the keys add a learned identity vector per feature. For horizon step h the query is
    ``W [summary; step embedding]``; a registered mechanism (``attention``) scores the F keys and
    returns the weights ``a[h, f]`` (summing to 1 over features) and the context
    ``sum_f a[h, f] e_f(z[h, f])``.
    """

    # soft weights over the features, which have no order among them
    attention_needs = Needs(alignment=True, sampled=False, ordered=False)
    keys = "features"   # what its mechanism weighs

    def __init__(self, n_features: int, dim: int, query_dim: int, attention: str, options: dict | None = None,
                 embed_hidden: int = 16) -> None:
        super().__init__()
        f = n_features
        self.w1 = nn.Parameter(torch.randn(f, embed_hidden))
        self.b1 = nn.Parameter(torch.randn(f, embed_hidden) * 0.5)
        self.w2 = nn.Parameter(torch.randn(f, embed_hidden, dim) / math.sqrt(embed_hidden))
        self.b2 = nn.Parameter(torch.zeros(f, dim))
        self.identity = nn.Parameter(torch.randn(f, dim) * 0.5)
        self.query = nn.Linear(query_dim, dim)
        self.attn = build(attention, dim, dim, dim, **(options or {}))
        self.output_dim = self.attn.output_dim

    def forward(self, z: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        b, h, f = z.shape
        hidden = torch.relu(z.unsqueeze(-1) * self.w1 + self.b1)                   # [B, H, F, E]
        values = torch.einsum("bhfe,fed->bhfd", hidden, self.w2) + self.b2         # [B, H, F, D]
        keys = values + self.identity
        d = values.shape[-1]
        context, weights = self.attn(self.query(query).reshape(b * h, -1), keys.reshape(b * h, f, d),
                                     values.reshape(b * h, f, d))
        return context.view(b, h, -1), weights.view(b, h, f)


class AnomalyMask(nn.Module):
    """An attention layer right after the feature mapping that learns to down-weight anomalous inputs.

    ``c_t``: what the neighbours of step t say about it (a registered mechanism, ``neighbour`` by
    default: leave-one-out local self-attention over the mapped window). The weight of step t is
    ``m_t = sigmoid(MLP([h_t; c_t; h_t - h_(t-1); h_(t+1) - h_t]))`` and the step passes on as
    ``m_t h_t + (1 - m_t) c_t``: a trusted step as it is, a distrusted one replaced by its
    neighbours' estimate. ``m`` is returned as the mask (1 = trusted).
    """

    attention_needs = Needs(alignment=True, sampled=False)   # soft weights over the window's steps
    keys = "window"     # what its mechanism weighs

    def __init__(self, dim: int, attention: str = "neighbour", options: dict | None = None, hidden: int = 32) -> None:
        super().__init__()
        self.attn = build(attention, dim, dim, dim, **(options or {}))
        if self.attn.output_dim != dim:
            raise ValueError(f"anomaly mask: mechanism {attention!r} must return {dim}-dim contexts")
        self.gate = nn.Sequential(nn.Linear(4 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.constant_(self.gate[-1].bias, 2.0)   # start by trusting every step (m ~ 0.88)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        context, _ = self.attn(h, h, h)
        pad = torch.zeros_like(h[:, :1])
        back = torch.cat([pad, h[:, 1:] - h[:, :-1]], dim=1)
        ahead = torch.cat([h[:, 1:] - h[:, :-1], pad], dim=1)
        m = torch.sigmoid(self.gate(torch.cat([h, context, back, ahead], dim=-1)))  # [B, T, 1]
        return m * h + (1 - m) * context, m.squeeze(-1)


# ---------------------------------------------------------------------------------------- networks
class _Head(nn.Module):
    """Per-step MLP shared over the horizon: [inputs of step h] -> ŷ(h)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, parts: list[Tensor]) -> Tensor:
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1)


class RecurrentForecaster(nn.Module):
    """Feature mapping -> (anomaly mask) -> GRU encoder -> per-step head (with optional attention).

    ``temporal``: registered mechanism for attention over the encoder states (None: plain GRU);
    ``feature``: registered mechanism for per-horizon feature attention over the K known features
    (None: the known features at the step enter the head through a linear map); ``mask``: registered mechanism inside the
    anomaly mask (None: no mask).
    """

    # the temporal attention: soft weights over the encoder states, or none (the plain GRU)
    attention_needs = Needs(alignment=True, sampled=False, optional=True)
    keys = "window"     # what its temporal attention weighs: the encoder's state at each input step

    def __init__(self, n_features: int, window: int, horizon: int, *, dim: int = 32, hidden: int = 64,
                 head_hidden: int = 64, step_dim: int = 8, dropout: float = 0.0, temporal: str | None = None,
                 feature: str | None = None, mask: str | None = None, attention_options: dict | None = None,
                 n_known: int | None = None) -> None:
        super().__init__()
        n_known = n_features if n_known is None else n_known
        options = dict(attention_options or {})
        self.horizon = horizon
        self.embed = nn.Linear(1 + n_features, dim)                 # the feature mapping
        self.mask = AnomalyMask(dim, mask, options) if mask else None
        self.encoder = nn.GRU(dim, hidden, batch_first=True)
        self.step = nn.Embedding(horizon, step_dim)
        if feature:
            self.features = FeatureAttention(n_known, dim, hidden + step_dim, feature, options)
            future_dim = self.features.output_dim
        else:
            self.features, self.future = None, nn.Linear(n_known, dim)
            future_dim = dim
        if temporal:
            self.query = nn.Linear(hidden + step_dim, hidden)
            self.temporal = build(temporal, hidden, hidden, hidden, **options)
            context_dim = self.temporal.output_dim
        else:
            self.temporal, context_dim = None, 0
        self.head = _Head(hidden + future_dim + step_dim + context_dim, head_hidden, dropout)

    def forward(self, x: Tensor, z: Tensor) -> tuple[Tensor, dict]:
        extras: dict[str, Tensor] = {}
        h = self.embed(x)
        if self.mask is not None:
            h, extras["mask"] = self.mask(h)
        states, last = self.encoder(h)
        summary = last[-1].unsqueeze(1).expand(-1, self.horizon, -1)             # [B, H, hidden]
        step = self.step.weight.unsqueeze(0).expand(x.shape[0], -1, -1)          # [B, H, step_dim]
        query = torch.cat([summary, step], dim=-1)
        if self.features is not None:
            future, extras["feature_weights"] = self.features(z, query)
        else:
            future = self.future(z)
        parts = [summary, future, step]
        if self.temporal is not None:
            context, extras["temporal_weights"] = self.temporal(self.query(query), states, states)
            parts.append(context)
        return self.head(parts), extras


class TransformerForecaster(nn.Module):
    """Feature mapping of each patch of ``patch`` consecutive steps (one token per step with
    ``patch=1``; PatchTST-style patches cut the cost of attention over long windows) + sinusoidal
    positions -> pre-LN Transformer encoder (registry multi-head self-attention) -> the last token's
    output as the summary -> the same per-step head as the recurrent models."""

    attention_needs = Needs(forms=None, heads=True)

    def __init__(self, n_features: int, window: int, horizon: int, *, d_model: int = 32, heads: int = 4,
                 layers: int = 2, ffn_dim: int = 64, head_hidden: int = 64, step_dim: int = 8, patch: int = 1,
                 dropout: float = 0.0, n_known: int | None = None, attention: str = "multihead") -> None:
        super().__init__()
        n_known = n_features if n_known is None else n_known
        if window % patch:
            raise ValueError(f"transformer: window {window} is not a multiple of patch {patch}")
        self.horizon, self.patch = horizon, patch
        self.embed = nn.Linear(patch * (1 + n_features), d_model)
        self.register_buffer("positions", sinusoidal_positions(window // patch, d_model), persistent=False)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ffn_dim, dropout, attention) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.step = nn.Embedding(horizon, step_dim)
        self.future = nn.Linear(n_known, d_model)
        self.head = _Head(2 * d_model + step_dim, head_hidden, dropout)

    def forward(self, x: Tensor, z: Tensor) -> tuple[Tensor, dict]:
        b, t, c = x.shape
        h = self.embed(x.reshape(b, t // self.patch, self.patch * c)) + self.positions
        for layer in self.layers:
            h = layer(h, None)
        summary = self.norm(h[:, -1]).unsqueeze(1).expand(-1, self.horizon, -1)
        step = self.step.weight.unsqueeze(0).expand(b, -1, -1)
        return self.head([summary, self.future(z), step]), {}
