"""The RNN's options for parity with OpenNMT-py (issue 32): `cell` (gru | lstm), `memory` (projected | raw) and
`init` (bridge | final | zeros). Each builds, trains a step and decodes; the defaults are the original model."""
from __future__ import annotations

import itertools

import pytest
import torch

from attnbench.models.seq2seq import EOS, PAD, RNNSeq2Seq
from attnbench.optim import Adam
from attnbench.tasks import get

from .test_translation_beam import V, _batch, _lengths, _one_sentence_beam
from .test_transformer_recipe import _targets

torch.set_num_threads(1)
CPU = torch.device("cpu")
OPTIONS = list(itertools.product(["gru", "lstm"], ["projected", "raw"], ["bridge", "final", "zeros"]))


def _model(cell="gru", memory="projected", init="bridge", input_feed=False, seed=1, attention="general", **kw):
    torch.manual_seed(seed)
    # encoder_hidden 8 per direction: the raw memory and the final states are 16 wide, the decoder's size
    kw = {"encoder_hidden": 8, **kw}
    return RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.1, attention=attention, input_feed=input_feed,
                      cell=cell, memory=memory, init=init, **kw)


@pytest.mark.parametrize("cell, memory, init", OPTIONS)
@pytest.mark.parametrize("input_feed", [False, True], ids=["plain", "input_feed"])
def test_each_option_builds_trains_a_step_and_decodes(cell, memory, init, input_feed):
    model = _model(cell, memory, init, input_feed)
    src, src_len = _batch()
    tgt_in, tgt_out = _targets(src.size(0))
    batch = {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}
    optimizer = Adam(model.parameters(), lr=0.01)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, _ = get("translation").loss(model.train(), batch, CPU)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters()), "every parameter takes part"
    optimizer.step()
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items() if v.is_floating_point())
    model.eval()
    greedy, weights = model.greedy(src, src_len, max_len=10)
    one, one_weights = model.beam_search(src, src_len, 1, 10)
    assert torch.equal(greedy, one) and torch.allclose(weights, one_weights, atol=1e-6)
    assert model.beam_search(src, src_len, 3, 10, alpha=0.6)[0].size(0) == src.size(0)


def test_the_options_change_the_model_as_documented():
    gru, lstm = _model(), _model("lstm")
    assert isinstance(gru.encoder, torch.nn.GRU) and isinstance(gru.decoder, torch.nn.GRU)
    assert isinstance(lstm.encoder, torch.nn.LSTM) and isinstance(lstm.decoder, torch.nn.LSTM)
    assert hasattr(lstm, "init_proj_c") and not hasattr(gru, "init_proj_c")   # the cell state's own bridge
    raw = _model(memory="raw", encoder_hidden=None).eval()   # encoder 16 per direction: a 32-wide memory
    src, src_len = _batch()
    memory, _, _ = raw.encode(src, src_len)
    assert memory.size(-1) == 32 and raw.attention.key_dim == 32 and not hasattr(raw, "memory_proj")
    out, _ = raw.encoder(raw.src_emb(src))
    assert torch.allclose(memory[0], out[0], atol=1e-6)       # row 0 has no padding: the encoder's states as they are
    for init in ("final", "zeros"):
        model = _model(init=init, cell="lstm").eval()
        assert not hasattr(model, "init_proj")
        _, _, (h, c) = model.encode(src, src_len)
        if init == "zeros":
            assert not h.any() and not c.any()
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(model.src_emb(src), src_len, batch_first=True,
                                                             enforce_sorted=False)
            _, (h_n, c_n) = model.encoder(packed)
            assert torch.equal(h[0], torch.cat([h_n[0], h_n[1]], -1)) and torch.equal(c[0], torch.cat([c_n[0], c_n[1]], -1))


def test_bad_options_are_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="gru, lstm"):
        _model(cell="rnn")
    with pytest.raises(ValueError, match="hidden"):   # final states 2 x 16 wide, the decoder 16
        _model(init="final", encoder_hidden=None)
    with pytest.raises(ValueError, match="dot"):      # a dot score needs queries as wide as the raw memory
        _model(memory="raw", encoder_hidden=None, attention="dot")


def test_the_defaults_are_the_original_model():
    """Explicit defaults draw the same weights, in the same parameter order, and decode the same."""
    implicit = (torch.manual_seed(4), RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general",
                                                 input_feed=True, param_init=0.1))[1]
    explicit = _model(seed=4, encoder_hidden=None, input_feed=True, param_init=0.1)
    explicit.drop.p = 0.0
    names = [name for name, _ in implicit.named_parameters()]
    assert names == [name for name, _ in explicit.named_parameters()]
    assert names[:8] == ["src_emb.weight", "encoder.weight_ih_l0", "encoder.weight_hh_l0", "encoder.bias_ih_l0",
                         "encoder.bias_hh_l0", "encoder.weight_ih_l0_reverse", "encoder.weight_hh_l0_reverse",
                         "encoder.bias_ih_l0_reverse"]
    assert [n for n in names if "proj" in n] == ["memory_proj.weight", "memory_proj.bias", "init_proj.weight",
                                                 "init_proj.bias"]
    assert all(torch.equal(a, b) for a, b in zip(implicit.state_dict().values(), explicit.state_dict().values()))
    src, src_len = _batch()
    assert torch.equal(implicit.eval().greedy(src, src_len, 10)[0], explicit.eval().greedy(src, src_len, 10)[0])


@pytest.mark.parametrize("memory, init", [("raw", "final"), ("projected", "bridge")])
def test_lstm_beam_search_equals_one_sentence_at_a_time(memory, init):
    """The search re-orders the LSTM's (h, c) with the hypotheses: batched = a plain one-sentence beam search."""
    model = _model("lstm", memory, init, seed=6).double().eval()
    with torch.no_grad():
        model.out.weight.mul_(3.0)
        model.out.bias[EOS] += 0.6
    src, src_len = _batch(2)
    tokens, weights = model.beam_search(src, src_len, 3, 10, alpha=0.6)
    for i in range(src.size(0)):
        words, rows = _one_sentence_beam(model, src[i], int(src_len[i]), 3, 10, 0.6, "gnmt")
        n = _lengths(tokens)[i].item()
        assert tokens[i, :n].tolist() == words, f"sentence {i}"
        assert torch.allclose(weights[i, :n, :int(src_len[i])], rows[:, :int(src_len[i])])
    assert not (tokens == PAD).all()


def test_a_run_may_set_its_own_model_options(tiny_params):
    """runs.<name>.model_options puts a variant (e.g. the LSTM) beside the original in one grid; the other runs'
    configs, and so their hashes, stay what they were."""
    from attnbench.config import ParamsError, config_hash, resolve_run
    from attnbench.validation import validate

    before = {run: config_hash(resolve_run(tiny_params, "translation", run, 0))
              for run in tiny_params["tasks"]["translation"]["runs"]}
    runs = tiny_params["tasks"]["translation"]["runs"]
    runs["rnn-general-lstm"] = {"model": "rnn", "attention": "general", "model_options": {"cell": "lstm", "init": "zeros"}}
    validate(tiny_params, task="translation")
    cfg = resolve_run(tiny_params, "translation", "rnn-general-lstm", 0)
    assert cfg["model_options"] == {**tiny_params["tasks"]["translation"]["models"]["rnn"], "cell": "lstm", "init": "zeros"}
    assert before == {run: config_hash(resolve_run(tiny_params, "translation", run, 0)) for run in before}
    runs["rnn-general-lstm"]["model_options"]["cell"] = "rnn"
    with pytest.raises(ParamsError, match=r"runs\.rnn-general-lstm\.model_options\.cell: value 'rnn'.*gru, lstm"):
        validate(tiny_params, task="translation")
