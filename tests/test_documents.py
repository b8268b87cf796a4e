"""Documents task: the generator's ground truth, the JSONL reader's errors, the HAN models' weights,
params checks, and prepare/train/evaluate/aggregate/report through the CLI on tiny data."""
from __future__ import annotations

import gzip
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch

from attnbench import cli
from attnbench.config import ParamsError
from attnbench.validation import validate
from attnbench.errors import DataError
from attnbench.models.han import HAN, FlatAttention
from attnbench.tasks.documents.data import (CLASSES, LABEL_WORDS, DocumentError, generate_documents, generate_splits,
                                              label_word_counts, read_documents_jsonl, split_sentences, tokenize)

from .conftest import load_params, write_params

LOOKUP = {w: c for c, words in LABEL_WORDS.items() for w in words}


@pytest.fixture(scope="module")
def docs():
    return generate_documents(600, seed=7, min_sentences=4, max_sentences=10)


# --------------------------------------------------------------------------- generator


def test_gold_sentence_carries_the_label_and_the_distractors_do_not_decide_it(docs):
    for d in docs:
        gold = d.sentences[d.gold_sentence]
        assert d.gold_words and all(LOOKUP[gold[i]] == d.label for i in d.gold_words)
        # every label word of the verdict is recorded as gold, and nothing else is
        assert {i for i, t in enumerate(gold) if t in LOOKUP} == set(d.gold_words)
        assert 4 <= len(d.sentences) <= 10
    # distractors carry label words of every class, the true one no more often than the others
    per_class = Counter()
    for d in docs:
        for s, sentence in enumerate(d.sentences):
            if s != d.gold_sentence:
                per_class.update("true" if LOOKUP[t] == d.label else "other" for t in sentence if t in LOOKUP)
    share_true = per_class["true"] / (per_class["true"] + per_class["other"])
    assert 0.12 < share_true < 0.28, share_true    # 1 in 5 classes
    # so counting label words is far from enough
    majority = np.mean([max(label_word_counts(d), key=lambda c: (label_word_counts(d)[c], c == d.label)) == d.label
                        for d in docs])
    assert majority < 0.7


def test_gold_position_is_uniform_and_verdicts_look_like_distractors(docs):
    relative = [d.gold_sentence / (len(d.sentences) - 1) for d in docs]
    assert min(relative) == 0.0 and max(relative) == 1.0 and 0.4 < np.mean(relative) < 0.6
    verdict_words = Counter(t for d in docs for t in d.sentences[d.gold_sentence] if t not in LOOKUP)
    other_words = Counter(t for d in docs for s, x in enumerate(d.sentences) if s != d.gold_sentence for t in x)
    shared = sum(n for w, n in verdict_words.items() if w in other_words) / sum(verdict_words.values())
    assert shared > 0.9, shared           # the verdicts' own words also occur in distractors
    verdict_len = np.mean([len(d.sentences[d.gold_sentence]) for d in docs])
    other_len = np.mean([len(x) for d in docs for s, x in enumerate(d.sentences) if s != d.gold_sentence])
    assert abs(verdict_len - other_len) < 2.5  # no length cue
    assert Counter(d.label for d in docs).keys() == set(CLASSES)


def test_generator_is_seeded_and_splits_are_disjoint():
    a = generate_splits({"train": 80, "valid": 20, "test": 30}, seed=3, min_sentences=3, max_sentences=6)
    b = generate_splits({"train": 80, "valid": 20, "test": 30}, seed=3, min_sentences=3, max_sentences=6)
    assert a == b
    c = generate_splits({"train": 120, "valid": 20, "test": 30}, seed=3, min_sentences=3, max_sentences=6)
    assert c["test"] == a["test"]         # a split does not change when another one's size does
    texts = {s: {d.sentences for d in v} for s, v in a.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["valid"]


# --------------------------------------------------------------------------- reader


def test_sentence_rule_and_tokens():
    text = "Great soup!! The staff, though... was rude.\nWould I return? Maybe e.g.3 times"
    assert split_sentences(text) == ["Great soup!!", "The staff, though...", "was rude.", "Would I return?",
                                     "Maybe e.g.3 times"]
    assert tokenize("Don't go, it's 5$.", lowercase=True) == ("don't", "go", ",", "it's", "5", "$", ".")


def _write(path, lines: list[str] | bytes):
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return path


GOOD = json.dumps({"text": "Nice place. Food was ok.", "label": "pos"})
BAD_FILES = {
    "invalid JSON": ([GOOD, '{"text": "a b", "label": '], ["line 2", "invalid JSON"]),
    "missing label": ([GOOD, GOOD, json.dumps({"text": "x y"})], ["line 3", "missing key 'label'"]),
    "missing text": ([json.dumps({"label": "pos"})], ["line 1", "missing key 'text'"]),
    "empty text": ([GOOD, json.dumps({"text": " ... ", "label": "neg"})], ["line 2", "empty text"]),
    "label type": ([json.dumps({"text": "a b", "label": [1]})], ["line 1", "'label' must be a string or an integer"]),
    "not an object": ([GOOD, "[1, 2]"], ["line 2", "expected a JSON object"]),
    "gold out of range": ([json.dumps({"text": "One. Two.", "label": "a", "gold_sentence": 2})],
                          ["line 1", "'gold_sentence'", "0..1"]),
    "undecodable": (b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n', ["line 2", "invalid UTF-8"]),
    "empty file": (b"\n\n", ["empty file"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_reader_errors_name_the_file_and_line(case, tmp_path):
    content, needles = BAD_FILES[case]
    path = _write(tmp_path / "docs.jsonl", content)
    with pytest.raises(DocumentError) as err:
        read_documents_jsonl(path)
    message = str(err.value)
    assert isinstance(err.value, DataError) and str(path) in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_reader_reads_gzip_integer_labels_and_gold(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "A b. C d!\nE", "label": 3, "gold_sentence": 1}) + "\n\n")
    (doc,) = read_documents_jsonl(path, lowercase=True)
    assert doc.sentences == (("a", "b", "."), ("c", "d", "!"), ("e",)) and doc.label == "3" and doc.gold_sentence == 1


# --------------------------------------------------------------------------- models


def _batch():
    torch.manual_seed(0)
    words = torch.randint(2, 30, (3, 4, 6))
    word_len = torch.tensor([[6, 3, 0, 0], [2, 6, 5, 1], [4, 0, 0, 0]])
    words[torch.arange(6) >= word_len.unsqueeze(-1)] = 0
    return words, word_len


@pytest.mark.parametrize("pooling", ["attention", "mean", "max"])
def test_han_weights_are_distributions_over_real_words_and_sentences(pooling):
    words, word_len = _batch()
    model = HAN(30, 5, 8, 6, 5, 0.0, pooling=pooling, attention="additive" if pooling == "attention" else "none",
                attention_options={"attn_dim": 4} if pooling == "attention" else {}).eval()
    logits, ww, sw = model(words, word_len)
    assert logits.shape == (3, 5)
    real = word_len > 0
    assert torch.allclose(ww.sum(-1)[real], torch.ones(int(real.sum())), atol=1e-5)
    assert (ww[words == 0] == 0).all() and (sw[~real] == 0).all()
    assert torch.allclose(sw.sum(-1), torch.ones(3), atol=1e-5)
    if pooling == "mean":
        assert torch.allclose(sw[1], torch.full((4,), 0.25))


def test_flat_weights_sum_over_the_document_and_per_sentence():
    words, word_len = _batch()
    model = FlatAttention(30, 5, 8, 6, 0.0, attention="additive", attention_options={"attn_dim": 4}).eval()
    _, ww, sw = model(words, word_len)
    assert torch.allclose(ww.sum((1, 2)), torch.ones(3), atol=1e-5)
    assert torch.allclose(sw, ww.sum(-1)) and (ww[words == 0] == 0).all()


@pytest.mark.parametrize("kind", ["han", "flat"])
def test_padding_does_not_change_a_document(kind):
    """A document scores the same alone and batched with longer ones (packing, masks)."""
    words, word_len = _batch()
    model = (HAN(30, 5, 8, 6, 5, 0.0, attention="additive", attention_options={"attn_dim": 4}) if kind == "han"
             else FlatAttention(30, 5, 8, 6, 0.0, attention="additive", attention_options={"attn_dim": 4})).eval()
    batched, ww, _ = model(words, word_len)
    alone, ww0, _ = model(words[2:, :1, :4], word_len[2:, :1])
    assert torch.allclose(batched[2], alone[0], atol=1e-5) and torch.allclose(ww[2, 0, :4], ww0[0, 0], atol=1e-5)


def test_context_vectors_are_learned():
    words, word_len = _batch()
    model = HAN(30, 5, 8, 6, 5, 0.0, attention="additive", attention_options={"attn_dim": 4})
    logits, _, _ = model(words, word_len)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for pool in (model.word_pool, model.sent_pool):
        assert isinstance(pool.context, torch.nn.Parameter) and pool.context.grad.abs().sum() > 0


# --------------------------------------------------------------------------- params and CLI


@pytest.fixture
def tiny():
    p = load_params()
    p["scale"] = "smoke"
    t = p["tasks"]["documents"]
    t["scales"]["smoke"] = {"train_size": 80, "valid_size": 20, "test_size": 24, "min_sentences": 3, "max_sentences": 5,
                            "max_words": 20, "epochs": 2}
    t["models"] = {"han": {"emb_dim": 12, "word_hidden": 8, "sent_hidden": 8, "dropout": 0.1},
                   "flat": {"emb_dim": 12, "hidden": 8, "dropout": 0.1}}
    t["runs"] = {"han": {"model": "han", "attention": "additive", "options": {"attn_dim": 8}},
                 "han-max": {"model": "han", "attention": "none", "options": {"pooling": "max"}},
                 "flat": {"model": "flat", "attention": "additive", "options": {"attn_dim": 8}}}
    p["tasks"] = {"documents": t}
    return p


@pytest.mark.parametrize("edit, needles", [
    (lambda t: t["runs"]["han"]["options"].update(pooling="max"), ["tasks.documents.runs.han.options.pooling", "'max'"]),
    (lambda t: t["runs"]["han-max"]["options"].update(attn_dim=8), ["tasks.documents.runs.han-max.options.attn_dim"]),
    (lambda t: t["runs"]["han-max"]["options"].update(pooling="sum"), ["pooling", "'sum'", "mean, max"]),
    (lambda t: t["scales"]["smoke"].update(min_sentences=9), ["tasks.documents.scales.smoke.min_sentences", "9"]),
    (lambda t: t["runs"]["han"]["options"].update(atn_dim=8), ["tasks.documents.runs.han.options", "'atn_dim'"]),
    (lambda t: t["runs"]["flat"].update(attention="external", options={}), ["runs.flat.attention", "'external'"]),
    (lambda t: t["data"].update(source="files", files={"train": "nope.jsonl"}), ["data.files.train", "nope.jsonl"]),
])
def test_params_errors_name_the_key(tiny, edit, needles):
    edit(tiny["tasks"]["documents"])
    with pytest.raises(ParamsError) as err:
        validate(tiny)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def _run(path, *argv):
    assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv


def test_cli_end_to_end_deterministic_and_report(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", tiny)
    _run(path, "prepare", "--task", "documents")
    manifest = json.loads((tmp_path / "data/prepared/documents/synthetic/manifest.json").read_text())
    assert manifest["documents"] == {"train": 80, "valid": 20, "test": 24} and manifest["gold_sentences"]["test"] == 24
    results = tmp_path / "data/results/documents/synthetic"
    for run in tiny["tasks"]["documents"]["runs"]:
        _run(path, "train", "--task", "documents", "--run", run, "--seed", "0")
        _run(path, "evaluate", "--task", "documents", "--run", run, "--seed", "0")
    metrics = json.loads((results / "han/seed0/metrics.json").read_text())
    assert {"accuracy", "macro_f1", "sentence_hit_rate", "word_hit_rate"} <= set(metrics)
    assert 0 <= metrics["sentence_hit_rate"] <= 1 and metrics["sentence_weights"] == "attention"
    assert json.loads((results / "han-max/seed0/metrics.json").read_text())["sentence_weights"] == "max-pool share"
    with np.load(results / "han/seed0/attention.npz") as z:
        assert z["tokens_0"].shape == z["word_0"].shape and z["sentence_0"].shape == z["tokens_0"].shape[:1]
        assert abs(float(z["sentence_0"].sum()) - 1) < 1e-4 and len(z["gold_sentence"]) == 24
    assert len((results / "han/seed0/samples.jsonl").read_text().splitlines()) == 24
    with np.load(results / "han/seed0/items.npz") as z:   # per test document: what the paired tests compare
        assert z["labels"].shape == z["predictions"].shape == (24,)
        assert (z["labels"] == z["predictions"]).mean() == pytest.approx(metrics["accuracy"], abs=1e-4)

    # same params and seed: byte-identical metrics
    first = (results / "han/seed0/metrics.json").read_bytes()
    for name in ("model.pt", "metrics.json"):
        (results / "han/seed0" / name).unlink()
    import shutil
    shutil.rmtree(tmp_path / "data/state/documents/synthetic/han")
    _run(path, "train", "--task", "documents", "--run", "han", "--seed", "0")
    _run(path, "evaluate", "--task", "documents", "--run", "han", "--seed", "0")
    assert (results / "han/seed0/metrics.json").read_bytes() == first

    _run(path, "aggregate", "--task", "documents")
    _run(path, "report")
    html = (tmp_path / "reports/index.html").read_text()
    section = html[html.index('<section id="documents">'):]
    assert "Leaderboard" in section and "C6" in section and "docweights" in section and "★" in section


def test_real_jsonl_files_carved_splits_unknown_label_and_escaping(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(0)
    words = ["good", "bad", "<script>alert(1)</script>", "meh", "fine", "x"]
    lines = [json.dumps({"text": ". ".join(" ".join(rng.choice(words) for _ in range(5)) for _ in range(3)),
                         "label": lab, "gold_sentence": 0}) for lab in ["pos", "neg", "mixed"] * 20]
    _write(tmp_path / "train.jsonl", lines)
    t = tiny["tasks"]["documents"]
    t["data"] = {"source": "files", "files": {"train": "train.jsonl"}, "split": {"valid": 0.2, "test": 0.2}}
    t["runs"] = {"han": t["runs"]["han"]}
    path = write_params(tmp_path / "params.yaml", tiny)
    _run(path, "prepare", "--task", "documents")
    manifest = json.loads((tmp_path / "data/prepared/documents/synthetic/manifest.json").read_text())
    assert manifest["documents"] == {"train": 36, "valid": 12, "test": 12}
    assert all(set(c.values()) == {4} for s, c in manifest["label_counts"].items() if s != "train")  # stratified
    _run(path, "train", "--task", "documents", "--run", "han", "--seed", "0")
    _run(path, "evaluate", "--task", "documents", "--run", "han", "--seed", "0")
    _run(path, "aggregate", "--task", "documents")
    _run(path, "report")
    html = (tmp_path / "reports/index.html").read_text()
    section = html[html.index('<section id="documents">'):]
    # the tokenizer splits markup into single characters; each is escaped where it is shown
    assert "<script>alert" not in html and ">&lt;</span>" in section and ">&gt;</span>" in section

    # a test file with a label the training file lacks: one error line naming the file and line
    _write(tmp_path / "test.jsonl", [lines[0], json.dumps({"text": "a b", "label": "unseen"})])
    t["data"]["files"]["test"] = "test.jsonl"
    path = write_params(tmp_path / "params.yaml", tiny)
    capsys.readouterr()
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "documents"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "test.jsonl, line 2: label 'unseen' does not occur" in err, err
