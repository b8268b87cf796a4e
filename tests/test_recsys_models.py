"""recsys models: FM's O(kn) pairwise identity against the direct double sum, AFM's attention
contract, AFM without attention = FM, the attention penalty, and the task's params checks."""
from __future__ import annotations

import copy

import pytest
import torch

from attnbench.attention import REGISTRY, build
from attnbench.config import ParamsError, REPO_ROOT
from attnbench.validation import load_params, validate
from attnbench.models.afm import AFM, FM, NFM, LinearModel, build_model, pairwise_sum, pairwise_sum_direct


def _x(batch: int, sizes: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0] + sizes[:-1]).cumsum(0)
    return torch.stack([torch.randint(0, s, (batch,), generator=g) for s in sizes], dim=1) + offsets


@pytest.mark.parametrize("fields,k", [(2, 1), (3, 4), (8, 16), (13, 7)])
def test_pairwise_identity_matches_the_double_sum(fields, k):
    g = torch.Generator().manual_seed(fields * 100 + k)
    v = torch.randn(5, fields, k, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pairwise_sum(v), pairwise_sum_direct(v), rtol=1e-12, atol=1e-12)
    explicit = torch.stack([sum((v[b, i] * v[b, j]).sum() for i in range(fields) for j in range(i + 1, fields))
                            for b in range(5)])
    torch.testing.assert_close(pairwise_sum(v).sum(-1), explicit, rtol=1e-12, atol=1e-12)


def test_fm_score_is_bias_plus_weights_plus_every_pair_dot_product():
    sizes = [5, 7, 3, 4]
    torch.manual_seed(0)
    fm = FM(sum(sizes), len(sizes), k=6, init_std=0.5, bias_init=1.5).eval()
    torch.nn.init.normal_(fm.weights.weight)
    x = _x(9, sizes)
    v, w = fm.embed.weight, fm.weights.weight[:, 0]
    expected = torch.stack([1.5 + w[row].sum() + sum(v[row[i]] @ v[row[j]] for i in range(4) for j in range(i + 1, 4))
                            for row in x])
    torch.testing.assert_close(fm(x), expected, rtol=1e-5, atol=1e-5)
    # the per-pair terms add up to the interaction part
    torch.testing.assert_close(fm.pair_contributions(x).sum(-1), fm(x) - fm.linear(x), rtol=1e-5, atol=1e-5)
    assert fm.pair_contributions(x).shape == (9, 6) and fm.pair_attention(x) is None


def test_afm_without_attention_and_p_one_is_exactly_fm():
    sizes = [4, 6, 5]
    torch.manual_seed(1)
    fm = FM(sum(sizes), 3, k=8, init_std=0.3).eval()
    afm = AFM(sum(sizes), 3, k=8, attention="none", init_std=0.3).eval()
    afm.load_state_dict({**fm.state_dict(), "p": torch.ones(8), "query": torch.zeros(8)}, strict=True)
    x = _x(16, sizes, seed=2)
    torch.testing.assert_close(afm(x), fm(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(afm.pair_attention(x), torch.full((16, 3), 1 / 3))


def test_afm_attention_is_a_distribution_over_pairs_and_the_terms_add_up():
    sizes = [4, 6, 5, 3, 2]
    torch.manual_seed(2)
    afm = AFM(sum(sizes), 5, k=8, attention="afm", attention_options={"attn_dim": 4}, init_std=0.5).eval()
    torch.nn.init.normal_(afm.p)
    x = _x(32, sizes, seed=3)
    a = afm.pair_attention(x)
    assert a.shape == (32, 10) and (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(32))
    assert a.std(0).max() > 0  # example-dependent, not a fixed weight per pair
    torch.testing.assert_close(afm.pair_contributions(x).sum(-1), afm(x) - afm.linear(x), rtol=1e-5, atol=1e-5)
    # the attention network is the paper's h^T ReLU(W e + b) on e = v_i ⊙ v_j
    net = afm.attention
    e = afm.pairs(x)
    torch.testing.assert_close(a, torch.softmax(net.h(torch.relu(net.w(e))).squeeze(-1), dim=-1))


def test_afm_penalty_is_lambda_times_squared_attention_weights():
    afm = AFM(10, 2, k=4, attention="afm", attention_l2=0.5)
    assert torch.isclose(afm.penalty(), 0.5 * afm.attention.w.weight.pow(2).sum())
    assert AFM(10, 2, k=4, attention="afm").penalty() == 0.0
    other = AFM(10, 2, k=4, attention="additive", attention_options={"attn_dim": 3}, attention_l2=1.0)
    expected = sum(p.pow(2).sum() for p in other.attention.parameters() if p.dim() >= 2)
    assert torch.isclose(other.penalty(), expected)
    assert FM(10, 2, k=4).penalty() == 0.0


@pytest.mark.parametrize("mechanism", ["additive", "dot", "scaled_dot", "general"])
def test_afm_takes_other_registered_mechanisms_with_a_learned_query(mechanism):
    afm = AFM(20, 4, k=8, attention=mechanism)
    x = _x(6, [5, 5, 5, 5])
    out = afm(x)
    out.sum().backward()
    assert out.shape == (6,) and torch.isfinite(out).all()
    assert afm.query.grad is not None  # query-based mechanisms read the learned query


def test_afm_mechanism_is_registered_and_query_free():
    assert "afm" in REGISTRY and "Xiao" in REGISTRY["afm"].description
    attn = build("afm", 3, 8, 8, attn_dim=5)
    keys = torch.randn(2, 7, 8)
    _, w1 = attn(torch.randn(2, 3), keys, keys)
    _, w2 = attn(torch.randn(2, 3), keys, keys)
    torch.testing.assert_close(w1, w2)
    with pytest.raises(ValueError):
        build("afm", 3, 8, 8, attn_dim=0)


def test_nfm_and_linear_shapes_and_builder():
    x = _x(4, [3, 3, 3])
    nfm = NFM(9, 3, k=4, hidden=[8, 6], dropout=0.1).eval()
    assert nfm(x).shape == (4,) and nfm.pair_contributions(x) is None
    lin = build_model("linear", 9, 3, {}, bias_init=2.0)
    assert isinstance(lin, LinearModel) and torch.allclose(lin(x), torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="unknown recsys model"):
        build_model("ffm", 9, 3, {})


# ----------------------------------------------------------------------------- params checks
@pytest.fixture
def params() -> dict:
    return load_params(REPO_ROOT / "params.yaml")


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s["runs"].__setitem__("fm", {"model": "fm", "attention": "afm"}),
     "tasks.recsys.runs.fm.attention: value 'afm' is not allowed for model 'fm'"),
    (lambda s: s["runs"].__setitem__("afm", {"model": "afm", "attention": "external"}),
     "tasks.recsys.runs.afm.attention: value 'external' is not allowed for model 'afm': it lacks weights over the "
     "keys, an alignment (its weights are over slots)"),
    (lambda s: s["data"]["synthetic"].__setitem__("strong_pairs", 99),
     "tasks.recsys.data.synthetic.strong_pairs: value 99 is not allowed; expected at most 28"),
    (lambda s: s["data"].__setitem__("target", "stars"),
     "tasks.recsys.data.target: value 'stars' is not allowed; expected one of: rating, click"),
    (lambda s: s["data"].update(source="files", files={"format": "libsvm", "train": "no.libfm", "valid": "no.libfm",
                                                         "test": "no.libfm"}),
     "tasks.recsys.data.files.train: file 'no.libfm' does not exist"),
    (lambda s: s["models"]["afm"].__setitem__("dropout", 1.0),
     "tasks.recsys.models.afm.dropout: value 1.0 is not allowed"),
])
def test_bad_params_name_the_key(params, change, fragment):
    bad = copy.deepcopy(params)
    change(bad["tasks"]["recsys"])
    with pytest.raises(ParamsError) as err:
        validate(bad)
    assert fragment in str(err.value)
