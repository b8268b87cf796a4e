"""Translation decoding: batched beam search (models.beam) and Luong input feeding of the RNN decoder.

The beam search is checked against greedy decoding (beam 1), a hand-built decoder on which a beam of 2 finds a
more probable translation than greedy, a plain one-sentence-at-a-time beam search written here, and the
translation task's metrics; input feeding by the decoder's input width, its agreement between teacher forcing
and stepping, and training on a tiny copy task."""
from __future__ import annotations

import json
import math

import pytest
import torch

from attnbench import cli
from attnbench.models import beam as beam_mod
from attnbench.models.seq2seq import BOS, EOS, PAD, RNNSeq2Seq
from attnbench.models.transformer import TransformerSeq2Seq

from .conftest import write_params

torch.set_num_threads(1)
V = 30


def _batch(seed: int = 0, n: int = 12, width: int = 9):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (n, width), generator=g)
    src_len = torch.randint(3, width + 1, (n,), generator=g)
    src_len[0] = width
    for i, length in enumerate(src_len.tolist()):
        src[i, length:] = PAD
    return src, src_len


def _rnn(attention="general", input_feed=False, seed=1, scale=3.0, eos_bias=0.0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention=attention, input_feed=input_feed)
    model = model.to(dtype).eval()
    with torch.no_grad():
        model.out.weight.mul_(scale)
        model.out.bias[EOS] += eos_bias
    return model


def _lengths(tokens):
    """Words of each row up to its first EOS, included (all of them without one): an untrained model may emit PAD."""
    ended = (tokens == EOS).any(1)
    return torch.where(ended, (tokens == EOS).int().argmax(1) + 1, tokens.size(1))


# ---- beam 1 is greedy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", ["general", "additive", "local_p", "none"])
@pytest.mark.parametrize("input_feed", [False, True], ids=["plain", "input_feed"])
def test_rnn_beam_one_equals_greedy(attention, input_feed):
    src, src_len = _batch()
    for eos_bias in (0.0, 0.6, 1.2):
        model = _rnn(attention, input_feed, eos_bias=eos_bias)
        greedy, g_weights = model.greedy(src, src_len, max_len=14)
        tokens, weights = model.beam_search(src, src_len, 1, max_len=14, alpha=0.6)
        assert torch.equal(tokens, greedy), f"EOS bias {eos_bias}"
        for i, n in enumerate(_lengths(greedy).tolist()):   # greedy goes on attending past EOS; the beam stops
            assert torch.equal(weights[i, :n], g_weights[i, :n])
            assert not weights[i, n:].any()


def test_transformer_beam_one_equals_greedy():
    torch.manual_seed(3)
    model = TransformerSeq2Seq(V, V, d_model=16, heads=2, enc_layers=1, dec_layers=1, ffn_dim=32, dropout=0.0).eval()
    src, src_len = _batch(1)
    for eos_bias in (0.0, 1.0, 2.0):
        with torch.no_grad():
            model.out.weight.mul_(1.5)
            model.out.bias.zero_()
            model.out.bias[EOS] = eos_bias
        greedy, g_weights = model.greedy(src, src_len, max_len=12)
        tokens, weights = model.beam_search(src, src_len, 1, max_len=12)
        assert torch.equal(tokens, greedy)
        assert torch.allclose(weights, g_weights)


# ---- a hand-built decoder where beam 2 beats greedy ---------------------------------------------------------------

A, B = 4, 5
# p(next word | previous word) of a first-order decoder: greedy takes "a" (0.5), then EOS (0.4): p = 0.20;
# "b" (0.4) then EOS (0.9) has p = 0.36
TABLE = {BOS: {A: 0.5, B: 0.4, EOS: 0.1}, A: {EOS: 0.4, A: 0.3, B: 0.3}, B: {EOS: 0.9, A: 0.05, B: 0.05}}


def _table_logits(previous: torch.Tensor, table=TABLE) -> torch.Tensor:
    logits = torch.full((previous.numel(), 6), -30.0)
    for i, w in enumerate(previous.flatten().tolist()):
        for word, p in table.get(w, {EOS: 1.0}).items():
            logits[i, word] = math.log(p)
    return logits


class TableDecoder(RNNSeq2Seq):
    """The real RNNSeq2Seq (encoder, greedy, beam_search) with its decoder step replaced by TABLE."""
    table = TABLE

    def decode_step(self, token, h, feed, memory, mask, t):
        logits = _table_logits(token, self.table).unsqueeze(1)
        return logits, h, feed, torch.ones(token.size(0), 1, memory.size(1)) / memory.size(1)


def _table_model(table=TABLE):
    torch.manual_seed(0)
    model = TableDecoder(6, 6, emb_dim=4, hidden=4, dropout=0.0, attention="dot").eval()
    model.table = table
    return model


def test_beam_two_finds_a_more_probable_translation_than_greedy():
    model = _table_model()
    src, src_len = torch.tensor([[4, 5, EOS]]), torch.tensor([3])
    greedy, _ = model.greedy(src, src_len, max_len=5)
    one, _ = model.beam_search(src, src_len, 1, max_len=5)
    two, _ = model.beam_search(src, src_len, 2, max_len=5)
    assert greedy.tolist() == one.tolist() == [[A, EOS]]
    assert two.tolist() == [[B, EOS]]

    def logp(words):
        return sum(math.log(TABLE[prev][w]) for prev, w in zip([BOS] + words[:-1], words))

    assert logp([B, EOS]) > logp([A, EOS])
    # the search's own score is that log-probability (alpha 0: no normalisation)
    best = beam_mod.beam_search(lambda tok, state, t: (_table_logits(tok), state, None), (torch.zeros(2, 1),),
                                1, 2, 5, bos=BOS, eos=EOS)
    assert best["tokens"].tolist() == [[B, EOS]] and bool(best["ended"][0])
    assert best["score"].item() == pytest.approx(math.log(0.36), abs=1e-5)


def test_length_normalisation_changes_the_choice_between_finished_hypotheses():
    # "</s>" alone: p = 0.5 (1 word); "a </s>": p = 0.45 (2 words). The raw log-probability prefers the empty
    # translation; dividing by the length (power 1) or GNMT's lp with alpha 1 prefers the longer one
    table = {BOS: {EOS: 0.5, A: 0.45, B: 0.05}, A: {EOS: 1.0}}
    model = _table_model(table)
    src, src_len = torch.tensor([[4, 5, EOS]]), torch.tensor([3])
    raw, _ = model.beam_search(src, src_len, 2, max_len=4, alpha=0.0)
    avg, _ = model.beam_search(src, src_len, 2, max_len=4, alpha=1.0, norm="power")
    gnmt, _ = model.beam_search(src, src_len, 2, max_len=4, alpha=1.0, norm="gnmt")
    assert raw.tolist() == [[EOS]]
    assert avg.tolist() == gnmt.tolist() == [[A, EOS]]
    assert beam_mod.length_penalty(2, 1.0, "gnmt") == pytest.approx(7 / 6)
    assert beam_mod.length_penalty(3, 0.5, "power") == pytest.approx(3 ** 0.5)
    with pytest.raises(ValueError, match="gnmt, power"):
        model.beam_search(src, src_len, 2, max_len=4, norm="average")


# ---- batched = one sentence at a time --------------------------------------------------------------------------

def _one_sentence_beam(model: RNNSeq2Seq, src, length, K: int, max_len: int, alpha: float, norm: str):
    """A plain beam search of one sentence: lists and Python loops over every word of the vocabulary. Each step
    keeps the (K - finished) best extensions of the running hypotheses; those ending in EOS finish (the beam
    shrinks); at max_len the running ones finish as they are. Best by log p / lp(words), earliest on ties."""
    memory, mask, h = model.encode(src[None, :length], torch.tensor([length]))
    feed = h.new_zeros(1, model.hidden) if model.input_feed else None
    running = [(0.0, [], h, feed, [])]           # (log p, words, state, feed, attention rows)
    finished = []                                 # (normalised, log p, words, attention rows)
    for t in range(max_len):
        candidates = []
        for score, words, h, feed, rows in running:
            token = torch.tensor([[words[-1] if words else BOS]])
            logits, h2, feed2, w = model.decode_step(token, h, feed, memory, mask, t)
            logp = logits[0, 0].log_softmax(-1).tolist()
            for word, lp in enumerate(logp):
                candidates.append((score + lp, words + [word], h2, feed2, rows + [w[0, 0]]))
        candidates.sort(key=lambda c: -c[0])      # stable: ties keep hypothesis then word order
        running = []
        for c in candidates[:K - len(finished)]:
            if c[1][-1] == EOS:
                finished.append((c[0] / beam_mod.length_penalty(t + 1, alpha, norm), c[0], c[1], c[4]))
            else:
                running.append(c)
        if not running:
            break
    else:
        finished += [(c[0] / beam_mod.length_penalty(max_len, alpha, norm), c[0], c[1], c[4])
                     for c in sorted(running, key=lambda c: -c[0])]
    best = max(finished, key=lambda f: f[0])      # max returns the first of equals
    return best[2], torch.stack(best[3])


# (weights seed, EOS bias) chosen so that the chosen lengths vary and the beam's choice differs from greedy's
@pytest.mark.parametrize("attention, input_feed, K, alpha, norm, seed, eos_bias", [
    ("general", False, 3, 0.0, "gnmt", 5, 0.6), ("general", True, 4, 0.6, "gnmt", 6, 0.3),
    ("additive", False, 5, 1.0, "power", 6, 0.6), ("local_p", True, 2, 0.6, "gnmt", 5, 0.6),
    ("none", False, 3, 0.6, "gnmt", 6, 0.3)])
def test_batched_beam_search_equals_one_sentence_at_a_time(attention, input_feed, K, alpha, norm, seed, eos_bias):
    # double precision: the batched and the one-row computations round differently, and no near-tie may flip
    src, src_len = _batch(2)
    max_len = 10
    model = _rnn(attention, input_feed, seed=seed, scale=3.0, eos_bias=eos_bias, dtype=torch.float64)
    tokens, weights = model.beam_search(src, src_len, K, max_len, alpha=alpha, norm=norm)
    greedy, _ = model.greedy(src, src_len, max_len)
    ended_early = differs = 0
    for i in range(src.size(0)):
        words, rows = _one_sentence_beam(model, src[i], int(src_len[i]), K, max_len, alpha, norm)
        n = _lengths(tokens)[i].item()
        assert tokens[i, :n].tolist() == words, f"sentence {i}"
        assert torch.allclose(weights[i, :n, :int(src_len[i])], rows[:, :int(src_len[i])])
        assert not weights[i, :n, int(src_len[i]):].any()
        ended_early += words[-1] == EOS and len(words) < max_len
        differs += greedy[i, :_lengths(greedy)[i]].tolist() != words
    assert ended_early >= 1, "no chosen hypothesis ended before max_len: the case does not exercise the shrinking beam"
    assert differs >= 1, "the beam chose greedy's translation everywhere: the case does not tell the two apart"
    assert len(set(_lengths(tokens).tolist())) > 1, "every chosen hypothesis has the same length"


def test_beam_search_without_stopping_early_returns_the_same():
    src, src_len = _batch(3)
    model = _rnn("general", True, eos_bias=0.6)
    early = model.beam_search(src, src_len, 4, 12, alpha=0.6, stop_early=True)
    late = model.beam_search(src, src_len, 4, 12, alpha=0.6, stop_early=False)
    assert torch.equal(early[0], late[0]) and torch.equal(early[1], late[1])


def test_transformer_beam_search_is_batched_like_one_sentence_at_a_time():
    torch.manual_seed(3)
    model = TransformerSeq2Seq(V, V, d_model=16, heads=2, enc_layers=1, dec_layers=1, ffn_dim=32, dropout=0.0)
    model = model.double().eval()
    with torch.no_grad():
        model.out.weight.mul_(2.0)
        model.out.bias[EOS] = 1.0
    src, src_len = _batch(4, n=6)
    tokens, _ = model.beam_search(src, src_len, 3, 10, alpha=0.6)
    for i in range(src.size(0)):
        n = int(src_len[i])
        one, _ = model.beam_search(src[i:i + 1, :n], src_len[i:i + 1], 3, 10, alpha=0.6)
        assert tokens[i, :one.size(1)].tolist() == one[0].tolist() and not tokens[i, one.size(1):].any()


# ---- input feeding -----------------------------------------------------------------------------------------------

def test_input_feeding_widens_the_decoder_input_by_the_attentional_state():
    plain = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general")
    fed = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general", input_feed=True)
    assert plain.decoder.input_size == 12 and fed.decoder.input_size == 12 + 16
    assert plain.decoder.weight_ih_l0.shape == (3 * 16, 12) and fed.decoder.weight_ih_l0.shape == (3 * 16, 28)


def test_input_feeding_teacher_forcing_matches_stepwise_decoding():
    """forward() over greedy's own output gives greedy's logits: the fed state is the same in both paths, and
    it matters (zeroing the feed weights changes the output)."""
    model = _rnn("general", True, eos_bias=0.6)
    src, src_len = _batch(5)
    tokens, weights = model.greedy(src, src_len, max_len=10)
    tgt_in = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
    logits, tf_weights = model(src, src_len, tgt_in)
    for i, n in enumerate(_lengths(tokens).tolist()):
        assert torch.equal(logits[i, :n].argmax(-1), tokens[i, :n])
        assert torch.allclose(tf_weights[i, :n], weights[i, :n], atol=1e-6)
    with torch.no_grad():
        model.decoder.weight_ih_l0[:, 12:] = 0.0      # the h~ columns of the GRU's input weights
    assert not torch.allclose(model(src, src_len, tgt_in)[0], logits)


@pytest.mark.parametrize("input_feed", [False, True], ids=["plain", "input_feed"])
def test_input_feeding_decoder_trains_on_a_copy_task(input_feed):
    torch.manual_seed(0)
    model = RNNSeq2Seq(12, 12, emb_dim=16, hidden=32, dropout=0.0, attention="general", input_feed=input_feed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(60):
        words = torch.randint(4, 12, (32, 5), generator=g)
        src = torch.cat([words, torch.full((32, 1), EOS)], 1)
        tgt_in = torch.cat([torch.full((32, 1), BOS), words], 1)
        logits, _ = model(src, torch.full((32,), 6), tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), src.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("attention", ["general", "local_p", "location", "none"])
@pytest.mark.parametrize("input_feed", [False, True], ids=["plain", "input_feed"])
def test_task_loss_on_real_words_equals_cross_entropy_over_all_positions(attention, input_feed):
    """Translation.loss maps only the real target words' states to logits, in one call: the loss and every
    gradient are those of cross-entropy over forward()'s logits with ignore_index=PAD (dropout on: same draws)."""
    from attnbench.tasks import get
    task = get("translation")
    torch.manual_seed(3)
    options = {"max_len": 12} if attention == "location" else {}
    model = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.3, attention=attention, attention_options=options,
                       input_feed=input_feed)
    src, src_len = _batch(7)
    g = torch.Generator().manual_seed(8)
    tgt_len = torch.randint(2, 8, (src.size(0),), generator=g)
    tgt_out = torch.randint(4, V, (src.size(0), 8), generator=g)
    tgt_out[torch.arange(8) >= tgt_len.unsqueeze(1)] = PAD
    tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], BOS), tgt_out[:, :-1]], dim=1)
    batch = {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}
    results = []
    for gathered in (True, False):
        model.zero_grad()
        torch.manual_seed(5)
        if gathered:
            loss = task.loss(model, batch, torch.device("cpu"))[0]
        else:
            logits, _ = model(src, src_len, tgt_in)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (a, grads_a), (b, grads_b) = results
    assert torch.allclose(a, b, atol=1e-6) and len(grads_a) == len(grads_b)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(grads_a, grads_b))


# ---- the task's metrics ------------------------------------------------------------------------------------------

def _steps(path, run, *steps):
    for argv in steps:
        assert cli.main(["-q", "--params", str(path), argv[0], "--task", "translation", *argv[1:]]) == 0, argv


def test_beam_metrics_sit_beside_the_unchanged_greedy_ones(tiny_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = tiny_params["tasks"]["translation"]
    t["runs"] = {"rnn-general": t["runs"]["rnn-general"]}
    t["models"]["rnn"]["input_feed"] = True
    path = write_params(tmp_path / "params.yaml", tiny_params)
    run = ["--run", "rnn-general", "--seed", "0"]
    _steps(path, "rnn-general", ["prepare"], ["train", *run], ["evaluate", *run])
    out = tmp_path / "data/results/translation/synthetic/rnn-general/seed0"
    greedy = json.loads((out / "metrics.json").read_text())
    assert not any("beam" in k for k in greedy) and "length_norm" not in greedy
    assert not any("hyp_beam" in json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines())

    t["eval"].update(beam_size=3, length_penalty=1.0, length_norm="power")   # evaluation only: no retraining
    write_params(path, tiny_params)
    _steps(path, "rnn-general", ["evaluate", *run])
    both = json.loads((out / "metrics.json").read_text())
    assert {k: v for k, v in both.items() if k in greedy} == greedy
    assert both["beam_size"] == 3 and both["length_norm"] == "power" and both["length_penalty"] == 1.0
    for key in ("bleu_beam", "chrf_beam", "exact_match_beam"):
        assert isinstance(both[key], float) and both[key] >= 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all("hyp_beam" in s for s in samples)

    t["eval"]["beam_size"] = 0
    write_params(path, tiny_params)
    assert cli.main(["-q", "--params", str(path), "validate"]) != 0


def test_report_leaderboard_shows_beam_columns_only_when_runs_have_beam_scores():
    import pandas as pd

    from attnbench.tasks.translation import report as section

    plain = pd.DataFrame({"status": ["ok"], "bleu": [10.0]})
    beamed = pd.DataFrame({"status": ["ok", "ok"], "bleu": [10.0, 11.0], "bleu_beam": [12.0, None],
                           "beam_size": [5, None]})
    assert section._beam_sizes(plain) == [] and section._beam_sizes(beamed) == [5]
    labels = [c["label"] for c in section._leaderboard([], None, [])["columns"]]
    assert "BLEU (beam)" not in labels
    labels = [c["label"] for c in section._leaderboard([], None, [5])["columns"]]
    assert labels.index("BLEU (beam)") == labels.index("chrF") + 1 and "chrF (beam)" in labels


def test_report_leaderboard_shows_training_throughput():
    """The translation leaderboard has a source tokens/s column read from the runs' training figures (mean over
    seeds), empty for a run that has none."""
    import pandas as pd

    from attnbench.tasks.translation import report as section

    table = pd.DataFrame({"run": ["a", "a", "b"], "seed": [0, 1, 0], "status": ["ok"] * 3, "bleu": [10.0, 12.0, 9.0],
                          "tokens_per_s": [1000.0, 3000.0, None]})
    params = {"dataset": "synthetic", "tasks": {"translation": {"runs": {
        "a": {"model": "rnn", "attention": "general"}, "b": {"model": "rnn", "attention": "none"}}}}}
    runs = section._per_run(params, "translation", table)
    board = section._leaderboard(runs, runs[0])
    labels = [c["label"] for c in board["columns"]]
    column = labels.index("source tokens/s")
    texts = [row["cells"][column]["text"] for row in board["rows"]]   # rows in params order: a, b
    assert "2000" in texts[0].replace(",", "") and not any(ch.isdigit() for ch in texts[1]), texts


# ---- training speed options ----------------------------------------------------------------------------------

def test_batch_sort_target_groups_pairs_of_similar_target_length():
    """train.batch_sort: target cuts each pool into batches by target length; absent (source) keeps today's
    batches; every pair once an epoch either way, and the same seed draws the same batches."""
    from types import SimpleNamespace

    from attnbench.tasks import get
    from attnbench.tasks.translation.data import Pair
    task = get("translation")
    g = torch.Generator().manual_seed(0)
    pairs = [Pair(src=["a"] * int(s), tgt=["b"] * int(t)) for s, t in torch.randint(1, 30, (500, 2), generator=g)]
    data = SimpleNamespace(pairs={"train": pairs}, batch=lambda split, index: list(index))

    def epoch(**train):
        return list(task.batches(data, {"train": {"batch_size": 10, **train}}, torch.Generator().manual_seed(3)))

    spread = lambda batches, side: sum(max(len(getattr(pairs[i], side)) for i in b) -
                                       min(len(getattr(pairs[i], side)) for i in b) for b in batches)
    by_source, by_target = epoch(), epoch(batch_sort="target")
    assert epoch(batch_sort="source") == by_source and epoch(batch_sort="target") == by_target
    assert sorted(i for b in by_target for i in b) == list(range(500)) == sorted(i for b in by_source for i in b)
    assert spread(by_target, "tgt") < spread(by_source, "tgt") and spread(by_source, "src") < spread(by_target, "src")


def test_encoder_hidden_sizes_the_encoder_only():
    model = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, encoder_hidden=8, dropout=0.0, attention="general", input_feed=True)
    assert model.encoder.hidden_size == 8 and model.memory_proj.in_features == 16 and model.decoder.hidden_size == 16
    assert RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general").encoder.hidden_size == 16
    src, src_len = _batch(2)
    tokens, _ = model.eval().greedy(src, src_len, max_len=6)
    logits, _ = model(src, src_len, torch.full((src.size(0), 3), BOS))
    assert logits.shape == (src.size(0), 3, V) and tokens.size(0) == src.size(0)


def test_param_init_draws_every_parameter_uniformly_and_keeps_padding_zero():
    torch.manual_seed(0)
    model = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general", input_feed=True, param_init=0.1)
    assert all(p.abs().max() <= 0.1 for p in model.parameters())
    assert model.src_emb.weight[0].abs().sum() == 0 and model.tgt_emb.weight[0].abs().sum() == 0
    default = RNNSeq2Seq(V, V, emb_dim=12, hidden=16, dropout=0.0, attention="general", input_feed=True)
    assert default.src_emb.weight.abs().max() > 0.1   # torch's N(0, 1) embeddings: the option changes something
