"""Recommendation models over categorical fields: linear, FM, AFM and NFM.

Every model reads one example as the global indices of its active features, one per field:
``x`` is a LongTensor ``[B, F]`` (field f's values occupy their own index range), each feature is
one-hot, and every model returns one raw score per example ``[B]`` (a rating, or a click logit).

    linear  w0 + Σ_i w_i                                              (Rendle's FM without pairs)
    FM      w0 + Σ_i w_i + Σ_{i<j} <v_i, v_j>                          (Rendle, 2010)
    AFM     w0 + Σ_i w_i + pᵀ P Σ_{i<j} a_ij (v_i ⊙ v_j)               (Xiao et al., 2017)
    NFM     w0 + Σ_i w_i + hᵀ MLP(Σ_{i<j} v_i ⊙ v_j)                   (He & Chua, 2017)

FM's pairwise sum is computed with Rendle's O(kn) identity
``Σ_{i<j} v_i ⊙ v_j = ½ [(Σ_i v_i)² − Σ_i v_i²]`` (element-wise), which `pairwise_sum` implements and
the tests check against the direct double sum. AFM's attention comes from the attention registry
(`afm` is the paper's ReLU network; any registered mechanism whose weights are over the keys also
fits, querying with a learned vector). AFM scales its pooled vector by the number of pairs P, a
reparametrisation of p that makes AFM with uniform attention (`none`) and p = 1 exactly FM.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import NO_ATTENTION, Needs, build


def pairwise_sum(v: Tensor) -> Tensor:
    """``Σ_{i<j} v_i ⊙ v_j`` over the field axis of ``v`` ``[B, F, k]`` -> ``[B, k]`` in O(F k)."""
    total = v.sum(dim=1)
    return 0.5 * (total * total - (v * v).sum(dim=1))


def pairwise_sum_direct(v: Tensor) -> Tensor:
    """The same sum as the O(F² k) double loop over pairs (the definition; for tests)."""
    out = torch.zeros(v.shape[0], v.shape[2], dtype=v.dtype, device=v.device)
    for i in range(v.shape[1]):
        for j in range(i + 1, v.shape[1]):
            out = out + v[:, i] * v[:, j]
    return out


class _Base(nn.Module):
    """Global bias and one weight per feature: the linear part every model shares."""

    attention_needs = NO_ATTENTION   # a model without attention: its run's mechanism is none

    def __init__(self, n_features: int, n_fields: int, bias_init: float = 0.0) -> None:
        super().__init__()
        self.n_features, self.n_fields = int(n_features), int(n_fields)
        self.bias = nn.Parameter(torch.tensor(float(bias_init)))
        self.weights = nn.Embedding(self.n_features, 1)
        nn.init.zeros_(self.weights.weight)
        rows, cols = torch.triu_indices(self.n_fields, self.n_fields, offset=1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)

    @property
    def n_pairs(self) -> int:
        return int(self.pair_rows.numel())

    def linear(self, x: Tensor) -> Tensor:
        return self.bias + self.weights(x).squeeze(-1).sum(dim=1)

    def penalty(self) -> Tensor | float:
        """Extra loss term (AFM's L2 on the attention net); 0 for the others."""
        return 0.0

    def pair_contributions(self, x: Tensor) -> Tensor | None:
        """Each field pair's additive share of the score ``[B, P]`` (None when not additive)."""
        return None

    def pair_attention(self, x: Tensor) -> Tensor | None:
        """Attention weight of each field pair ``[B, P]`` (None without attention)."""
        return None


class LinearModel(_Base):
    """``w0 + Σ w_i``: no interactions. Fitted in closed form (scikit-learn) by the task, not by SGD."""

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


def _embedding(n: int, k: int, init_std: float) -> nn.Embedding:
    emb = nn.Embedding(n, k)
    nn.init.normal_(emb.weight, 0.0, init_std)
    return emb


class FM(_Base):
    """Factorization machine: every pair of fields interacts through <v_i, v_j>, all with weight 1.

    ``dropout`` applies to the pairwise-interaction vector Σ v_i ⊙ v_j (as the AFM authors' FM).
    """

    def __init__(self, n_features: int, n_fields: int, *, k: int, dropout: float = 0.0, init_std: float = 0.01,
                 bias_init: float = 0.0) -> None:
        super().__init__(n_features, n_fields, bias_init)
        self.embed = _embedding(self.n_features, k, init_std)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.drop(pairwise_sum(self.embed(x))).sum(dim=-1)

    def pair_contributions(self, x: Tensor) -> Tensor:
        v = self.embed(x)
        return (v[:, self.pair_rows] * v[:, self.pair_cols]).sum(dim=-1)


class AFM(_Base):
    """Attentional FM: the pair vectors v_i ⊙ v_j are pooled with attention weights a_ij.

    ``attention`` names a registered mechanism (`afm`: the paper's ``hᵀ ReLU(W e + b)``; `none`:
    uniform weights, i.e. FM with a learned projection p). ``dropout`` applies to the pooled vector
    (the authors' "pair-wise interaction layer" dropout), ``attention_l2`` is λ of the paper's L2
    penalty on the attention net's W (for other mechanisms: on all their weight matrices).
    """

    # weights over the pair vectors (the afm net, or a mechanism over a sequence of keys queried with a learned
    # vector); the pairs have no order; none gives uniform weights (FM with a learned p)
    attention_needs = Needs(forms=("pairs", "sequence"), alignment=True, ordered=False, optional=True)

    def __init__(self, n_features: int, n_fields: int, *, k: int, attention: str, attention_options: dict | None = None,
                 dropout: float = 0.0, attention_l2: float = 0.0, init_std: float = 0.01, bias_init: float = 0.0) -> None:
        super().__init__(n_features, n_fields, bias_init)
        self.embed = _embedding(self.n_features, k, init_std)
        self.attention = build(attention, k, k, k, **(attention_options or {}))
        if self.attention.output_dim != k:
            raise ValueError(f"AFM needs an attention mechanism whose output has the pair vectors' size {k}; "
                             f"{attention!r} gives {self.attention.output_dim}")
        self.attention_l2 = float(attention_l2)
        self.p = nn.Parameter(torch.ones(k))                 # the prediction vector p of the paper
        self.query = nn.Parameter(torch.zeros(k))            # read only by query-based mechanisms
        self.drop = nn.Dropout(dropout)

    def pairs(self, x: Tensor) -> Tensor:
        """The pair-wise interaction layer: v_i ⊙ v_j for every field pair ``[B, P, k]``."""
        v = self.embed(x)
        return v[:, self.pair_rows] * v[:, self.pair_cols]

    def _attend(self, e: Tensor) -> tuple[Tensor, Tensor]:
        context, weights = self.attention(self.query.expand(e.shape[0], -1), e, e)
        return context * self.n_pairs, weights

    def forward(self, x: Tensor) -> Tensor:
        pooled, _ = self._attend(self.pairs(x))
        return self.linear(x) + self.drop(pooled) @ self.p

    def penalty(self) -> Tensor | float:
        if not self.attention_l2:
            return 0.0
        if hasattr(self.attention, "l2_penalty"):
            return self.attention_l2 * self.attention.l2_penalty()
        mats = [p.pow(2).sum() for p in self.attention.parameters() if p.dim() >= 2]
        return self.attention_l2 * torch.stack(mats).sum() if mats else 0.0

    def pair_attention(self, x: Tensor) -> Tensor:
        return self._attend(self.pairs(x))[1]

    def pair_contributions(self, x: Tensor) -> Tensor:
        e = self.pairs(x)
        _, weights = self._attend(e)
        return self.n_pairs * weights * (e @ self.p)


class NFM(_Base):
    """Neural FM: the bi-interaction vector Σ v_i ⊙ v_j through an MLP (no attention).

    ``hidden`` hidden ReLU layers' widths; ``dropout`` on the bi-interaction vector and after each layer.
    """

    def __init__(self, n_features: int, n_fields: int, *, k: int, hidden: list[int] | tuple[int, ...] = (64,),
                 dropout: float = 0.0, init_std: float = 0.01, bias_init: float = 0.0) -> None:
        super().__init__(n_features, n_fields, bias_init)
        self.embed = _embedding(self.n_features, k, init_std)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = k
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(h)
        layers.append(nn.Linear(width, 1, bias=False))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.mlp(pairwise_sum(self.embed(x))).squeeze(-1)


MODELS = {"linear": LinearModel, "fm": FM, "afm": AFM, "nfm": NFM}


def build_model(kind: str, n_features: int, n_fields: int, options: dict, *, attention: str = "none",
                attention_options: dict | None = None, bias_init: float = 0.0) -> _Base:
    """The model `kind` of MODELS with its params.yaml options."""
    if kind not in MODELS:
        raise ValueError(f"unknown recsys model {kind!r}; expected one of: {', '.join(MODELS)}")
    opts = dict(options)
    if kind == "linear":
        return LinearModel(n_features, n_fields, bias_init)
    if kind == "afm":
        return AFM(n_features, n_fields, attention=attention, attention_options=attention_options, bias_init=bias_init,
                   **opts)
    return MODELS[kind](n_features, n_fields, bias_init=bias_init, **opts)
