"""The field's Transformer recipe as options (issue 32): incremental decoding with cached keys and values, tied
decoder input/output embeddings, label smoothing and the inverse-square-root warm-up schedule.

Each option is off by default; these tests check what it does when on, and that the cache changes no output."""
from __future__ import annotations

import math

import pytest
import torch

from attnbench import training
from attnbench.config import ParamsError
from attnbench.validation import validate
from attnbench.models import beam as beam_mod
from attnbench.models.seq2seq import BOS, EOS, PAD, RNNSeq2Seq
from attnbench.models.transformer import TransformerSeq2Seq
from attnbench.tasks import get
from attnbench.training import fit, scheduled_lr, schedule_needs_total

from .conftest import load_params
from .test_training import CPU, ToyTask, cfg

torch.set_num_threads(1)
V = 30


def _transformer(seed=3, eos_bias=0.0, dtype=torch.float32, layers=2, **options):
    torch.manual_seed(seed)
    model = TransformerSeq2Seq(V, V, d_model=16, heads=2, enc_layers=layers, dec_layers=layers, ffn_dim=32,
                               dropout=0.1, **options)
    model = model.to(dtype).eval()
    with torch.no_grad():
        model.out.weight.mul_(2.0)
        model.out.bias[EOS] = eos_bias
    return model


def _batch(seed=0, n=12, width=9):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (n, width), generator=g)
    src_len = torch.randint(3, width + 1, (n,), generator=g)
    src_len[0] = width
    for i, length in enumerate(src_len.tolist()):
        src[i, length:] = PAD
    return src, src_len


def _targets(n, width=8, seed=8):
    g = torch.Generator().manual_seed(seed)
    tgt_len = torch.randint(2, width + 1, (n,), generator=g)
    tgt_out = torch.randint(4, V, (n, width), generator=g)
    tgt_out[torch.arange(width) >= tgt_len.unsqueeze(1)] = PAD
    tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], BOS), tgt_out[:, :-1]], dim=1)
    return tgt_in, tgt_out


# ---- incremental decoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_cached_steps_give_the_logits_of_the_full_recomputation(dtype, atol):
    """Feeding a target one word at a time through the cache gives, at every position, the logits that the
    teacher-forced pass over the whole prefix gives (padding inside the prefix masked alike)."""
    model = _transformer(dtype=dtype)
    src, src_len = _batch()
    tgt_in, _ = _targets(src.size(0))
    with torch.no_grad():
        full, _ = model(src, src_len, tgt_in)
        memory, mask = model.encode(src)
        state, memory_kv = model._empty_cache(memory), model._memory_kv(memory)
        for t in range(tgt_in.size(1)):
            logits, state = model._step(tgt_in[:, t], t, state, memory_kv, mask)
            assert torch.allclose(logits, full[:, t], atol=atol, rtol=0), f"position {t}"
    assert state[1].shape == (src.size(0), 2, tgt_in.size(1), 8)   # layer 0's keys: [N, heads, T, d_h]


def _sweep(build, decode):
    """Outputs with and without the cache over EOS biases that make the batch's lengths vary."""
    src, src_len = _batch(2)
    varied = 0
    for eos_bias in (0.0, 0.8, 1.6, 2.4):
        model = build(eos_bias)
        plain, cached = decode(model, src, src_len, False), decode(model, src, src_len, True)
        yield plain, cached
        ended = (plain[0] == EOS).any(1)
        varied += bool(ended.any()) and len(set((plain[0] != PAD).sum(1).tolist())) > 1
    assert varied, "no bias made some outputs end early with varied lengths"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_greedy_with_the_cache_equals_greedy_without(dtype):
    for plain, cached in _sweep(lambda b: _transformer(eos_bias=b, dtype=dtype),
                                lambda m, s, n, c: m.greedy(s, n, max_len=12, cache=c)):
        assert torch.equal(plain[0], cached[0])
        assert torch.allclose(plain[1], cached[1], atol=1e-6)


@pytest.mark.parametrize("K, alpha, norm", [(1, 0.0, "gnmt"), (3, 0.6, "gnmt"), (4, 1.0, "power")])
def test_beam_search_with_the_cache_equals_beam_search_without(K, alpha, norm, monkeypatch):
    """Same words, attention and scores (the search's total and length-normalised log-probabilities)."""
    found = []
    search = beam_mod.beam_search

    def recording(*args, **kwargs):
        found.append(search(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(beam_mod, "beam_search", recording)
    for plain, cached in _sweep(lambda b: _transformer(eos_bias=b, dtype=torch.float64),
                                lambda m, s, n, c: m.beam_search(s, n, K, 12, alpha=alpha, norm=norm, cache=c)):
        assert torch.equal(plain[0], cached[0])
        assert torch.allclose(plain[1], cached[1], atol=1e-9)
        a, b = found[-2:]
        for key in ("score", "normalised"):
            assert torch.allclose(a[key], b[key], atol=1e-9), key
        assert torch.equal(a["steps"], b["steps"]) and torch.equal(a["ended"], b["ended"])


def test_the_kv_cache_option_makes_decoding_read_only_the_new_word(monkeypatch):
    """kv_cache: true runs the decoder over the whole prefix only once, for the attention of the chosen words."""
    src, src_len = _batch()
    plain, cached = _transformer(eos_bias=1.0), _transformer(eos_bias=1.0, kv_cache=True)
    calls = []
    decode = TransformerSeq2Seq.decode
    monkeypatch.setattr(TransformerSeq2Seq, "decode", lambda self, *a, **k: calls.append(1) or decode(self, *a, **k))
    a = plain.greedy(src, src_len, max_len=12)
    n_plain = len(calls)
    b = cached.greedy(src, src_len, max_len=12)
    assert len(calls) - n_plain == 1 and n_plain == a[0].size(1) + 1
    assert torch.equal(a[0], b[0])


def test_positions_grow_for_inputs_longer_than_the_table():
    model = TransformerSeq2Seq(V, V, d_model=16, heads=2, enc_layers=1, dec_layers=1, ffn_dim=32, dropout=0.0,
                               max_len=8).eval()
    src = torch.randint(4, V, (2, 20))
    tokens, weights = model.greedy(src, torch.tensor([20, 20]), max_len=30, cache=True)
    assert model.positions.size(0) >= max(20, tokens.size(1)) > 8 and weights.shape[-1] == 20
    assert torch.equal(model.positions[:8], TransformerSeq2Seq(V, V, d_model=16, heads=2, enc_layers=1, dec_layers=1,
                                                               ffn_dim=32, dropout=0.0, max_len=8).positions)


# ---- tied embeddings -------------------------------------------------------------------------------------------

def test_tied_embeddings_are_one_parameter():
    plain = _transformer()
    tied = _transformer(tie_embeddings=True)
    assert tied.out.weight is tied.tgt_emb.weight and plain.out.weight is not plain.tgt_emb.weight
    assert sum(p.numel() for p in plain.parameters()) - sum(p.numel() for p in tied.parameters()) == V * 16
    src, src_len = _batch()
    tgt_in, tgt_out = _targets(src.size(0))
    tied.train()
    logits, _ = tied(src, src_len, tgt_in)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD).backward()
    assert tied.tgt_emb.weight.grad is not None and tied.tgt_emb.weight.grad[PAD].abs().sum() > 0   # the output side's
    again = _transformer(seed=9, tie_embeddings=True)
    again.load_state_dict(tied.state_dict())
    assert again.out.weight is again.tgt_emb.weight and torch.equal(again.out.weight, tied.tgt_emb.weight)


# ---- label smoothing -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rnn", "transformer"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_label_smoothing_is_torch_cross_entropy_with_label_smoothing(kind, smoothing):
    task = get("translation")
    torch.manual_seed(3)
    if kind == "rnn":
        model = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general").eval()
    else:
        model = _transformer()
    model.label_smoothing = smoothing
    src, src_len = _batch(7)
    tgt_in, tgt_out = _targets(src.size(0))
    loss, _ = task.loss(model, {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}, CPU)
    logits, _ = model(src, src_len, tgt_in)
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                                                 label_smoothing=smoothing)
    assert torch.allclose(loss, expected, atol=1e-6)
    if smoothing:   # by hand: (1 - e) x NLL + e x the mean over the vocabulary of -log p, over the real words
        logp = logits.log_softmax(-1)[tgt_out != PAD]
        nll = -logp.gather(1, tgt_out[tgt_out != PAD].unsqueeze(1)).squeeze(1)
        assert torch.allclose(loss, ((1 - smoothing) * nll - smoothing * logp.mean(-1)).mean(), atol=1e-6)


def test_build_model_reads_train_label_smoothing(tiny_params):
    from attnbench.config import resolve_run

    class Data:   # what build_model reads for an RNN: the vocabularies' sizes and every split's sources
        src_vocab = tgt_vocab = [0] * V
        pairs = {}

    tiny_params["tasks"]["translation"]["train"]["label_smoothing"] = 0.1
    run = resolve_run(tiny_params, "translation", "rnn-general", 0)
    assert get("translation").build_model(run, Data()).label_smoothing == 0.1
    del tiny_params["tasks"]["translation"]["train"]["label_smoothing"]
    run = resolve_run(tiny_params, "translation", "rnn-general", 0)
    assert get("translation").build_model(run, Data()).label_smoothing == 0.0


# ---- inverse square root schedule ------------------------------------------------------------------------------

def test_inverse_sqrt_warms_up_then_decays_with_the_inverse_square_root():
    sched = {"kind": "inverse_sqrt", "warmup_steps": 4}
    got = [scheduled_lr(k, None, 1e-3, sched) for k in range(64)]   # no total steps needed
    assert got[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])      # linear warm-up up to lr at step W
    assert got[15] == pytest.approx(5e-4) and got[63] == pytest.approx(2.5e-4)   # lr sqrt(W / s): s = 16, 64
    assert not schedule_needs_total(sched)
    assert scheduled_lr(63, None, 1e-3, {**sched, "min_lr_ratio": 0.5}) == pytest.approx(5e-4)   # the floor


def test_inverse_sqrt_is_vaswanis_schedule():
    """lrate = d^-0.5 min(s^-0.5, s W^-1.5) (Vaswani et al. 2017, eq. 3; s counts from 1), with train.lr its peak."""
    d, W = 512, 4000
    peak = d ** -0.5 * W ** -0.5
    for s in (1, 100, 3999, 4000, 4001, 10_000, 100_000):
        vaswani = d ** -0.5 * min(s ** -0.5, s * W ** -1.5)
        assert scheduled_lr(s - 1, None, peak, {"kind": "inverse_sqrt", "warmup_steps": W}) == pytest.approx(vaswani)


def test_the_loop_sets_the_inverse_sqrt_rate_before_every_step(tmp_path, monkeypatch):
    seen = []
    step = training.Adam.step
    monkeypatch.setattr(training.Adam, "step", lambda self: seen.append(self.lr) or step(self))
    c = cfg(epochs=2)
    c["train"]["schedule"] = {"kind": "inverse_sqrt", "warmup_steps": 4}
    fit(ToyTask(), None, c, tmp_path / "a", tmp_path / "a/state", CPU)
    assert seen == pytest.approx([0.01 * min((k + 1) / 4, math.sqrt(4 / (k + 1))) for k in range(16)])


# ---- the schema accepts the new keys -------------------------------------------------------------------------

def test_params_accept_the_recipe_and_refuse_bad_values():
    params = load_params()
    t = params["tasks"]["translation"]
    t["train"].update(label_smoothing=0.1, schedule={"kind": "inverse_sqrt", "warmup_steps": 4000})
    t["models"]["transformer"].update(tie_embeddings=True, kv_cache=True)
    t["models"]["rnn"].update(cell="lstm", memory="raw", init="final")
    validate(params, task="translation")
    for key, value, expected in (("train.label_smoothing", 1.0, "< 1"), ("models.rnn.cell", "rnn", "gru, lstm"),
                                 ("models.transformer.kv_cache", "yes", "boolean")):
        bad = load_params()
        section, name = bad["tasks"]["translation"], key.split(".")
        for part in name[:-1]:
            section = section[part]
        section[name[-1]] = value
        with pytest.raises(ParamsError, match=expected):
            validate(bad, task="translation")


# ---- through the pipeline's steps ------------------------------------------------------------------------------

def test_the_recipe_and_the_rnn_options_train_and_evaluate_through_the_cli(tiny_params, tmp_path, monkeypatch):
    import json

    from attnbench import cli

    from .conftest import write_params

    monkeypatch.chdir(tmp_path)
    t = tiny_params["tasks"]["translation"]
    t["train"].update(label_smoothing=0.1, schedule={"kind": "inverse_sqrt", "warmup_steps": 4})
    t["models"]["transformer"].update(tie_embeddings=True, kv_cache=True)
    t["runs"] = {"transformer": t["runs"]["transformer"],
                 "rnn-lstm": {"model": "rnn", "attention": "general",
                              "model_options": {"cell": "lstm", "memory": "raw", "init": "final", "encoder_hidden": 8}}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "translation"]) == 0
    for run in t["runs"]:
        for step in ("train", "evaluate"):
            assert cli.main(["-q", "--params", str(path), step, "--task", "translation", "--run", run, "--seed", "0"]) == 0
        out = tmp_path / "data/results/translation/synthetic" / run / "seed0"
        assert json.loads((out / "metrics.json").read_text())["bleu"] >= 0
        lrs = [float(line.split(",")[6]) for line in (out / "train_log.csv").read_text().splitlines()[1:]]
        assert lrs[-1] < t["train"]["lr"]   # decayed after the 4 warm-up steps
    weights = torch.load(tmp_path / "data/results/translation/synthetic/transformer/seed0/model.pt", weights_only=True)
    assert torch.equal(weights["model"]["out.weight"], weights["model"]["tgt_emb.weight"])
