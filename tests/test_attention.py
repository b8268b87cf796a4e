"""Property tests for attnbench.attention (every registered mechanism is covered)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnbench.attention import (
    REGISTRY,
    Attention,
    available,
    build,
    masked_softmax,
    register,
)

B, TQ, TK, DQ, DK, DV = 4, 5, 7, 8, 8, 6
ALL = available()
ALIGNING = [n for n in ALL if REGISTRY[n].produces_alignment or n == "none"]  # weights over keys
NOT_KEY_WEIGHTS = {"external"}  # weights are over memory slots, not key positions


def make(name: str, dq: int = DQ, dk: int = DK, dv: int = DV, **options) -> Attention:
    torch.manual_seed(0)
    return build(name, dq, dk, dv, **options)


def inputs(seed: int = 1, b: int = B, tq: int = TQ, tk: int = TK, dq: int = DQ, dk: int = DK, dv: int = DV):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, tq, dq, generator=g)
    k = torch.randn(b, tk, dk, generator=g)
    v = torch.randn(b, tk, dv, generator=g)
    lengths = torch.randint(1, tk + 1, (b,), generator=g)
    lengths[0] = tk  # one full row, one single-position row
    lengths[-1] = 1
    mask = torch.arange(tk).unsqueeze(0) < lengths.unsqueeze(1)
    return q, k, v, mask


def key_weight_names() -> list[str]:
    return [n for n in ALL if n not in NOT_KEY_WEIGHTS]


# ---------------------------------------------------------------- registry / API
def test_registry_contents_and_metadata():
    expected = {
        "none", "dot", "scaled_dot", "general", "additive", "concat", "cosine", "location",
        "key_value", "local_m", "local_p", "hard", "multihead", "external",
    }
    assert expected <= set(ALL)
    assert ALL == sorted(ALL)
    for name in ALL:
        cls = REGISTRY[name]
        assert issubclass(cls, Attention)
        assert isinstance(cls.produces_alignment, bool)
        assert isinstance(cls.description, str) and cls.description and "\n" not in cls.description
    assert not REGISTRY["none"].produces_alignment
    assert not REGISTRY["external"].produces_alignment
    assert "Gumbel-softmax straight-through" in REGISTRY["hard"].description


def test_build_unknown_name_lists_available():
    with pytest.raises(KeyError) as err:
        build("no_such_attention", DQ, DK, DV)
    msg = str(err.value)
    assert "no_such_attention" in msg
    for name in ALL:
        assert name in msg


def test_build_unknown_option():
    with pytest.raises(TypeError) as err:
        build("additive", DQ, DK, DV, attn_dim=16, bogus=3)
    msg = str(err.value)
    assert "additive" in msg and "bogus" in msg and "attn_dim" in msg and "chunk_size" in msg


def test_register_toy_mechanism_and_duplicate():
    @register("toy_first")
    class ToyFirst(Attention):
        """Attends only to the first key position."""

        description = "toy: all weight on position 0"

        def __init__(self, query_dim: int, key_dim: int, value_dim: int, bonus: float = 100.0):
            super().__init__(query_dim, key_dim, value_dim)
            self.bonus = bonus

        def score(self, query, keys):
            s = query.new_zeros(query.shape[0], query.shape[1], keys.shape[1])
            s[..., 0] = self.bonus
            return s

    try:
        assert "toy_first" in available()
        attn = build("toy_first", DQ, DK, DV, bonus=1e4)
        assert isinstance(attn, ToyFirst) and attn.bonus == 1e4
        q, k, v, mask = inputs()
        ctx, w = attn(q, k, v, mask)
        torch.testing.assert_close(ctx, v[:, :1].expand(B, TQ, DV))
        with pytest.raises(ValueError):
            register("toy_first")(ToyFirst)
    finally:
        REGISTRY.pop("toy_first", None)
    assert "toy_first" not in available()


def test_register_rejects_existing_name():
    with pytest.raises(ValueError):
        register("dot")(type("Dup", (Attention,), {}))
    assert REGISTRY["dot"].__name__ != "Dup"


def test_dim_requirements():
    for name in ("dot", "scaled_dot", "cosine"):
        with pytest.raises(ValueError) as err:
            build(name, 8, 6, DV)
        assert "8" in str(err.value) and "6" in str(err.value)
    attn = make("location", max_len=6)
    q, k, v, _ = inputs(tk=7)
    with pytest.raises(ValueError) as err:
        attn(q, k, v)
    assert "7" in str(err.value) and "6" in str(err.value)
    attn(q, k[:, :6], v[:, :6])  # Tk == max_len is fine


# ---------------------------------------------------------------- generic properties
def _weights_ok(w: torch.Tensor, mask: torch.Tensor) -> None:
    m = mask.unsqueeze(1).expand_as(w) if w.dim() == 3 else mask
    assert torch.all(w[~m] == 0), "masked positions must get exactly zero weight"
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ALL)
def test_shapes_and_normalisation(name: str, train: bool):
    attn = make(name).train(train)
    q, k, v, mask = inputs()
    for query in (q, q[:, 2]):
        ctx, w = attn(query, k, v, mask)
        lead = query.shape[:-1]
        assert ctx.shape == (*lead, attn.output_dim)
        assert torch.isfinite(ctx).all()
        if name in NOT_KEY_WEIGHTS:
            assert w.shape == (*lead, attn.memory_size)
            torch.testing.assert_close(w.sum(-1), torch.ones(lead), atol=1e-5, rtol=0)
        else:
            assert w.shape == (*lead, TK)
            _weights_ok(w, mask)
        ctx, w = attn(query, k, v)  # mask=None: all positions real
        if name not in NOT_KEY_WEIGHTS:
            _weights_ok(w, torch.ones(B, TK, dtype=torch.bool))


@pytest.mark.parametrize("name", ALL)
def test_different_key_and_query_dims(name: str):
    try:
        attn = make(name, 8, 12, 10)
    except ValueError:
        assert name in {"dot", "scaled_dot", "cosine"}
        return
    q, k, v, mask = inputs(dq=8, dk=12, dv=10)
    ctx, w = attn(q, k, v, mask)
    assert ctx.shape == (B, TQ, attn.output_dim)
    if name not in NOT_KEY_WEIGHTS:
        _weights_ok(w, mask)


# Parameters that add the same constant to every score of a softmax: its output cannot depend on them
# (their gradient is zero up to rounding, which made this test pass or fail by the luck of the last bit).
# task_partition's coarse bias still matters: it moves the threshold of the coarse region.
SHIFT_ONLY = {("task_partition", "coarse.bias")}


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name: str):
    attn = make(name).train()
    q, k, v, mask = inputs()
    v.requires_grad_(True)
    ctx, _ = attn(q, k, v, mask)
    (ctx * torch.randn_like(ctx)).sum().backward()
    params = dict(attn.named_parameters())
    if name == "none":
        assert not params
    for pname, p in params.items():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        if (name, pname) in SHIFT_ONLY:
            continue
        assert torch.any(p.grad != 0), f"{name}.{pname} gradient is all zero"
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ALL)
def test_fully_masked_row_gives_no_nan(name: str):
    attn = make(name).train()
    q, k, v, mask = inputs()
    mask[1] = False
    for x in (q, k, v):
        x.requires_grad_(True)
    ctx, w = attn(q, k, v, mask)
    assert torch.isfinite(ctx).all() and torch.isfinite(w).all()
    if name not in NOT_KEY_WEIGHTS:
        assert torch.all(w[1] == 0)
    ctx.sum().backward()
    for x in (q, k, v):
        assert x.grad is None or torch.isfinite(x.grad).all()
    for p in attn.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", [n for n in ALL if n != "external"])
def test_step_by_step_matches_full_sequence(name: str):
    """A decoder calling one step at a time with positions=t sees what a full call sees."""
    attn = make(name).eval()
    q, k, v, mask = inputs()
    ctx, w = attn(q, k, v, mask)
    for t in range(TQ):
        ctx_t, w_t = attn(q[:, t], k, v, mask, positions=t)
        torch.testing.assert_close(ctx_t, ctx[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w_t, w[:, t], atol=1e-5, rtol=1e-5)


def test_masked_softmax_helper():
    scores = torch.tensor([[1.0, 2.0, 3.0], [5.0, -1.0, 0.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    w = masked_softmax(scores, mask)
    assert w[0, 1] == 0 and torch.all(w[1] == 0)
    torch.testing.assert_close(w[0, [0, 2]], torch.softmax(torch.tensor([1.0, 3.0]), 0))
    torch.testing.assert_close(masked_softmax(scores, None), torch.softmax(scores, -1))


# ---------------------------------------------------------------- score functions
def _reference(q, k, v, mask, scale):
    scores = q @ k.transpose(1, 2) * scale
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
    w = torch.softmax(scores, -1)
    return w @ v, w


@pytest.mark.parametrize("name,scale", [("dot", 1.0), ("scaled_dot", 1 / math.sqrt(DK))])
def test_dot_products_match_direct_formula(name: str, scale: float):
    attn = make(name)
    q, k, v, mask = inputs()
    ctx, w = attn(q, k, v, mask)
    ref_ctx, ref_w = _reference(q, k, v, mask, scale)
    torch.testing.assert_close(ctx, ref_ctx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


def test_general_is_bilinear():
    attn = make("general", 8, 12, DV)
    q, k, v, mask = inputs(dk=12)
    W = attn.w.weight  # [Dk, Dq]
    scores = torch.einsum("bti,ji,bsj->bts", q, W, k)
    _, w = attn(q, k, v, mask)
    torch.testing.assert_close(w, masked_softmax(scores, mask.unsqueeze(1)), atol=1e-6, rtol=1e-5)


def test_concat_matches_explicit_concatenation():
    attn = make("concat", 8, 12, DV, attn_dim=16)
    q, k, v, mask = inputs(dk=12)
    cat = torch.cat(
        [q.unsqueeze(2).expand(B, TQ, TK, 8), k.unsqueeze(1).expand(B, TQ, TK, 12)], dim=-1
    )
    scores = attn.v(torch.tanh(attn.w(cat))).squeeze(-1)
    _, w = attn(q, k, v, mask)
    torch.testing.assert_close(w, masked_softmax(scores, mask.unsqueeze(1)), atol=1e-6, rtol=1e-5)


def test_additive_matches_formula():
    attn = make("additive", 8, 12, DV, attn_dim=16)
    q, k, v, mask = inputs(dk=12)
    scores = attn.v(torch.tanh(attn.w_q(q).unsqueeze(2) + attn.w_k(k).unsqueeze(1))).squeeze(-1)
    _, w = attn(q, k, v, mask)
    torch.testing.assert_close(w, masked_softmax(scores, mask.unsqueeze(1)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["additive", "concat"])
def test_chunked_equals_unchunked(name: str):
    full = make(name, attn_dim=16)
    chunked = make(name, attn_dim=16, chunk_size=2)
    chunked.load_state_dict(full.state_dict())
    q, k, v, mask = inputs()
    for a, b in zip(full(q, k, v, mask), chunked(q, k, v, mask)):
        torch.testing.assert_close(a, b)


def test_cosine_scale_and_formula():
    attn = make("cosine")
    assert math.isclose(attn.log_scale.exp().item(), 10.0, rel_tol=1e-6)
    q, k, v, mask = inputs()
    cos = torch.nn.functional.cosine_similarity(q.unsqueeze(2), k.unsqueeze(1), dim=-1)
    _, w = attn(q, k, v, mask)
    torch.testing.assert_close(w, masked_softmax(10.0 * cos, mask.unsqueeze(1)), atol=1e-5, rtol=1e-5)


def test_location_depends_on_query_only():
    attn = make("location", max_len=10)
    q, k, v, mask = inputs()
    _, w1 = attn(q, k, v, mask)
    _, w2 = attn(q, torch.randn_like(k), v, mask)
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(w1, masked_softmax(attn.w_a(q)[..., :TK], mask.unsqueeze(1)))


def test_key_value_projections():
    attn = make("key_value", attn_dim=16, value_proj_dim=11)
    assert attn.output_dim == 11
    q, k, v, mask = inputs()
    ctx, w = attn(q, k, v, mask)
    scores = attn.w_q(q) @ attn.w_k(k).transpose(1, 2) / 4.0
    ref_w = masked_softmax(scores, mask.unsqueeze(1))
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ctx, ref_w @ attn.w_v(v), atol=1e-5, rtol=1e-5)


def test_none_is_masked_mean_and_query_independent():
    attn = make("none")
    q, k, v, mask = inputs()
    ctx, _ = attn(q, k, v, mask)
    ctx2, _ = attn(torch.randn_like(q), k, v, mask)
    torch.testing.assert_close(ctx, ctx2)
    m = mask.unsqueeze(-1).float()
    mean = (v * m).sum(1) / m.sum(1)
    torch.testing.assert_close(ctx, mean.unsqueeze(1).expand_as(ctx), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- local attention
def test_local_m_window():
    D = 1
    attn = make("local_m", window=D)
    q, k, v, mask = inputs()
    _, w = attn(q, k, v, mask)
    last = mask.sum(1) - 1
    centres = torch.minimum(torch.arange(TQ).unsqueeze(0), last.unsqueeze(1))  # [B, Tq]
    outside = (torch.arange(TK).view(1, 1, TK) - centres.unsqueeze(-1)).abs() > D
    assert outside.any()
    assert torch.all(w[outside] == 0)
    _weights_ok(w, mask)
    # explicit positions: a step at t=3 centres on min(3, last)
    _, w3 = attn(q[:, 0], k, v, mask, positions=torch.full((B,), 3))
    far = (torch.arange(TK).unsqueeze(0) - torch.minimum(torch.tensor(3), last).unsqueeze(1)).abs() > D
    assert torch.all(w3[far] == 0)


def test_local_p_window_and_centres():
    D = 2
    attn = make("local_p", window=D)
    q, k, v, mask = inputs(tk=12)
    _, w = attn(q, k, v, mask)
    p = attn.last_centres
    assert p.shape == (B, TQ) and not p.requires_grad
    s_b = (mask.sum(1) - 1).unsqueeze(1).float()
    assert torch.all(p >= 0) and torch.all(p <= s_b + 1e-6)
    outside = (torch.arange(12).view(1, 1, 12).float() - p.unsqueeze(-1)).abs() > D
    assert outside.any()
    assert torch.all(w[outside] == 0)
    _weights_ok(w, mask)
    # in-window weights follow softmax(score - (s - p)^2 / (2 sigma^2))
    dist = torch.arange(12).view(1, 1, 12).float() - p.unsqueeze(-1)
    scores = attn.w(q) @ k.transpose(1, 2) - dist**2 / (2 * (D / 2) ** 2)
    ref = masked_softmax(scores, ~outside & mask.unsqueeze(1))
    torch.testing.assert_close(w, ref, atol=1e-6, rtol=1e-5)
    attn(q[:, 0], k, v, mask)
    assert attn.last_centres.shape == (B,)


@pytest.mark.parametrize("score", ["general", "dot"])
def test_local_p_gradient_reaches_predictor(score: str):
    attn = make("local_p", score=score)
    q, k, v, mask = inputs(tk=12)
    ctx, _ = attn(q, k, v, mask)
    (ctx * torch.randn_like(ctx)).sum().backward()
    for p in (attn.w_p.weight, attn.v_p.weight):
        assert p.grad is not None and torch.any(p.grad != 0)


# ---------------------------------------------------------------- hard attention
def _is_one_hot(w: torch.Tensor) -> bool:
    return bool(torch.all((w == 0) | (w == 1)) and torch.all(w.sum(-1) == 1))


def test_hard_eval_is_argmax_of_general_score():
    attn = make("hard").eval()
    q, k, v, mask = inputs()
    ctx, w = attn(q, k, v, mask)
    assert _is_one_hot(w)
    scores = (attn.w(q) @ k.transpose(1, 2)).masked_fill(~mask.unsqueeze(1), float("-inf"))
    torch.testing.assert_close(w.argmax(-1), scores.argmax(-1))
    torch.testing.assert_close(ctx, torch.gather(v, 1, w.argmax(-1, keepdim=True).expand(B, TQ, DV)))


def test_hard_training_samples_one_hot_never_masked():
    attn = make("hard", tau=0.5).train()
    q, k, v, mask = inputs()
    # Make masked positions by far the most attractive ones.
    with torch.no_grad():
        attn.w.weight.copy_(torch.eye(DQ))
    k = torch.where(mask.unsqueeze(-1), k, 100 * q.mean(1, keepdim=True))
    counts = torch.zeros(B, TQ, TK)
    for seed in range(20):
        torch.manual_seed(seed)
        _, w = attn(q, k, v, mask)
        assert _is_one_hot(w)
        assert torch.all(w[~mask.unsqueeze(1).expand_as(w)] == 0)
        counts += w.detach()
    assert (counts > 0).sum() > B * TQ  # genuinely stochastic


def test_hard_training_gradient_is_straight_through():
    attn = make("hard").train()
    q, k, v, mask = inputs()
    v.requires_grad_(True)
    ctx, w = attn(q, k, v, mask)
    assert w.requires_grad and _is_one_hot(w.detach())
    ctx.sum().backward()
    assert torch.any(attn.w.weight.grad != 0)


# ---------------------------------------------------------------- multi-head
@pytest.mark.parametrize("kdim,vdim", [(16, 16), (10, 12)])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_matches_torch(kdim: int, vdim: int, use_mask: bool, bias: bool):
    E, H = 16, 4
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, bias=bias, batch_first=True).eval()
    attn = build("multihead", E, kdim, vdim, num_heads=H, bias=bias).eval()
    attn.load_from_torch_mha(ref)
    q, k, v, mask = inputs(dq=E, dk=kdim, dv=vdim)
    kpm = ~mask if use_mask else None
    ref_out, ref_w = ref(q, k, v, key_padding_mask=kpm, need_weights=True)
    ctx, w = attn(q, k, v, mask if use_mask else None)
    torch.testing.assert_close(ctx, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    assert attn.last_head_weights.shape == (B, H, TQ, TK)
    ctx2, w2 = attn(q, k, v, mask if use_mask else None, need_weights=False)
    assert w2 is None
    torch.testing.assert_close(ctx2, ctx)


def test_multihead_causal_matches_torch_and_steps():
    E, H, T = 16, 4, 6
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, H, batch_first=True).eval()
    attn = build("multihead", E, E, E, num_heads=H).eval().load_from_torch_mha(ref)
    x, _, _, mask = inputs(tq=T, tk=T, dq=E, dk=E, dv=E)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for m in (None, mask):
        kpm = None if m is None else ~m
        ref_out, ref_w = ref(x, x, x, key_padding_mask=kpm, attn_mask=future)
        ctx, w = attn(x, x, x, m, causal=True)
        torch.testing.assert_close(ctx, ref_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
        for t in range(T):  # incremental decoding with positions=t
            ctx_t, w_t = attn(x[:, t], x, x, m, positions=t, causal=True)
            torch.testing.assert_close(ctx_t, ctx[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(w_t, w[:, t], atol=1e-5, rtol=1e-5)


def test_multihead_rejects_bad_heads():
    with pytest.raises(ValueError):
        build("multihead", 10, 10, 10, num_heads=4)


# ---------------------------------------------------------------- external attention
def test_external_attention_normalisation():
    attn = make("external", memory_size=5)
    x, _, _, mask = inputs(tq=TK)
    ctx, w = attn(x, x, x, mask)  # self-attention use: mask refers to the tokens
    assert ctx.shape == (B, TK, DQ) and w.shape == (B, TK, 5)
    real = mask
    torch.testing.assert_close(w[real].sum(-1), torch.ones(int(real.sum())), atol=1e-5, rtol=0)
    assert torch.all(w[~real] == 0)
    # before l1-normalisation the softmax ran over the token axis of the real tokens
    ref = masked_softmax(attn.m_k(x), mask.unsqueeze(-1), dim=1)
    ref = ref / ref.sum(-1, keepdim=True).clamp_min(1e-9)
    torch.testing.assert_close(w, ref)
    torch.testing.assert_close(ctx, attn.m_v(ref))
    # keys and values are ignored
    ctx2, _ = attn(x, torch.randn_like(x), torch.randn_like(x), mask)
    torch.testing.assert_close(ctx, ctx2)
