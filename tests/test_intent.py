"""Intent task: the synthetic corpus's ground truth, the real-data readers' errors, the pooling
mechanisms of the notes, and the classifier's properties."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from attnbench.attention import build
from attnbench.attention.base import masked_softmax
from attnbench.metrics import attention_mass_ratio, attention_top1_hit
from attnbench.models.bert import CLS, MASK, PAD, SPECIALS, mask_tokens
from attnbench.models.classifier import IntentClassifier
from attnbench.tasks.intent.data import (INTENTS, LABELS, VERB, add_typo, generate, generate_splits, label_of,
                                           read_jsonl, write_jsonl)
from attnbench.tasks.intent.data import IntentDataError, read_clinc_json, read_csv, tokenize


# ---------------------------------------------------------------- synthetic corpus
def test_corpus_has_twenty_plus_intents_with_shared_vocabulary():
    assert len(LABELS) >= 20
    words = [w for _, kind, actions, objects in INTENTS.values() for w in (*actions, *objects)]
    shared = {w for w in words if words.count(w) > 1}
    assert {"book", "cancel", "flight", "card", "order"} <= shared
    # an action or object alone never decides a verb intent: some other intent shares each of them
    for intent, (_, kind, actions, objects) in INTENTS.items():
        if kind == VERB:
            assert any(label_of(a, o) == intent for a in actions for o in objects)


def test_generator_records_gold_keywords_that_decide_the_label():
    utts = generate(600, seed=3, max_len=24, typo_rate=0.0, confuser_rate=0.3)
    assert {u.label for u in utts} == set(LABELS)  # balanced round-robin covers every intent
    assert all(3 <= len(u.tokens) <= 24 for u in utts)
    for u in utts:
        kw = [u.tokens[i] for i in u.keywords]
        _, kind, actions, objects = INTENTS[u.label]
        assert 1 <= len(kw) <= 2 and set(u.keywords).isdisjoint(u.distractors)
        if kind == "single":
            assert kw[0] in actions and label_of(kw[0]) == u.label
        else:
            action = next(w for w in kw if w in actions)
            obj = next(w for w in kw if w in objects)
            assert label_of(action, obj) == u.label
    confused = [u for u in utts if u.distractors]
    assert 0.2 < len(confused) / len(utts) < 0.4
    # a confuser names another intent's keywords (a bag of words sees two intents)
    for u in confused:
        words = {u.tokens[i] for i in u.distractors}
        assert any(w in INTENTS[o][2] or w in INTENTS[o][3] for o in LABELS if o != u.label for w in words)


def test_generator_is_seeded_and_splits_differ():
    a = generate(50, seed=7, typo_rate=0.1, confuser_rate=0.3)
    assert a == generate(50, seed=7, typo_rate=0.1, confuser_rate=0.3)
    assert a != generate(50, seed=8, typo_rate=0.1, confuser_rate=0.3)
    splits = generate_splits({"train": 40, "valid": 10, "test": 10}, seed=1)
    assert [len(s) for s in splits.values()] == [40, 10, 10]
    assert splits["train"][:10] != splits["test"]


def test_typos_keep_keyword_positions_and_change_one_letter():
    rng = random.Random(0)
    for word in ("flight", "balance", "reminder"):
        for _ in range(20):
            typo = add_typo(word, rng)
            assert typo != word and abs(len(typo) - len(word)) <= 1
    assert add_typo("the", rng) == "the"  # short words are left alone
    utts = generate(300, seed=5, typo_rate=0.3)
    typos = [u for u in utts if u.typo_in_keyword]
    assert typos
    for u in typos:
        kw = [u.tokens[i] for i in u.keywords]
        _, _, actions, objects = INTENTS[u.label]
        assert any(w not in (*actions, *objects) for w in kw)


def test_jsonl_roundtrip(tmp_path):
    utts = generate(20, seed=2, confuser_rate=0.5)
    write_jsonl(utts, tmp_path / "x.jsonl")
    back = read_jsonl(tmp_path / "x.jsonl")
    assert [(u.tokens, u.label, u.keywords, u.distractors) for u in back] == \
        [(u.tokens, u.label, u.keywords, u.distractors) for u in utts]


# ---------------------------------------------------------------- readers
def _clinc(tmp_path, data, raw: bytes | None = None):
    path = tmp_path / "data_full.json"
    path.write_bytes(raw if raw is not None else json.dumps(data).encode())
    return path


GOOD = {"train": [["What's my balance?", "balance"], ["book a flight", "book_flight"], ["book me a flight", "book_flight"]],
        "val": [["balance please", "balance"]], "test": [["a flight to rome", "book_flight"]],
        "oos_train": [["tell me a joke", "oos"]]}


def test_clinc_json_reads_splits_and_tokenises(tmp_path):
    splits = read_clinc_json(_clinc(tmp_path, GOOD))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert splits["train"][0].tokens == ("what's", "my", "balance", "?") and splits["train"][0].keywords is None
    assert tokenize("Hi, there!") == ("hi", ",", "there", "!")


BAD_JSON = {
    "unknown label in val": ({**GOOD, "val": [["x", "balance"], ["y", "weather"]]}, None, ["val[1]", "'weather'", "train"]),
    "unknown label in test": ({**GOOD, "test": [["z", "nope"]]}, None, ["test[0]", "'nope'"]),
    "empty text": ({**GOOD, "train": [*GOOD["train"], ["  ", "balance"]]}, None, ["train[3]", "empty text"]),
    "missing split": ({"train": GOOD["train"], "test": GOOD["test"]}, None, ["missing key 'val'"]),
    "not a pair": ({**GOOD, "train": [["only text"], *GOOD["train"]]}, None, ["train[0]", "[text, label]"]),
    "invalid JSON": (None, b'{"train": [["a", "b"],\n  ["c" "d"]]}', ["line 2", "invalid JSON"]),
    "invalid UTF-8": (None, b'{"train": [["caf\xe9", "b"]]}', ["line 1", "UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_clinc_json_bad_inputs_name_file_and_entry(case, tmp_path):
    data, raw, expected = BAD_JSON[case]
    path = _clinc(tmp_path, data, raw)
    with pytest.raises(IntentDataError) as err:
        read_clinc_json(path)
    msg = str(err.value)
    assert str(path) in msg
    for fragment in expected:
        assert fragment in msg, f"{fragment!r} missing from: {msg}"


def _csv(tmp_path, text: str | bytes):
    path = tmp_path / "intents.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_csv_stratified_split_is_seeded_and_keeps_every_label(tmp_path):
    rows = "".join(f"utterance number {i} about {lab},{lab}\n" for lab in ("a", "b", "c") for i in range(20))
    path = _csv(tmp_path, "label,text\n".replace("label,text", "text,label") + rows)
    one, two = read_csv(path, seed=3), read_csv(path, seed=3)
    assert [[u.text for u in one[s]] for s in one] == [[u.text for u in two[s]] for s in two]
    assert sum(len(v) for v in one.values()) == 60 and len(one["test"]) == 12 and len(one["val"]) == 6
    for split in one.values():
        assert {u.label for u in split} == {"a", "b", "c"}
        assert all(sum(u.label == lab for u in split) == len(split) // 3 for lab in "abc")
    assert [u.text for u in read_csv(path, seed=4)["test"]] != [u.text for u in one["test"]]


def test_csv_with_split_column(tmp_path):
    path = _csv(tmp_path, '"text","label","split"\n"hello, world",greet,train\nbye,leave,train\nhi,greet,valid\nciao,leave,test\n')
    splits = read_csv(path)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert splits["train"][0].tokens == ("hello", ",", "world")


BAD_CSV = {
    "missing label column": ("text,intent\nhello,greet\n", ["line 1", "missing column 'label'"]),
    "missing text column": ("utterance,label\nhello,greet\n", ["line 1", "missing column 'text'"]),
    "empty text": ("text,label\nhello,greet\nhi,greet\n ,greet\n", ["line 4", "empty text"]),
    "empty label": ("text,label\nhello,\n", ["line 2", "empty label"]),
    "unknown label in test": ("text,label,split\na,x,train\nb,y,train\nc,x,val\nd,z,test\n", ["line 5", "'z'", "train"]),
    "bad split value": ("text,label,split\na,x,train\nb,x,holdout\n", ["line 3", "'holdout'"]),
    "too few rows to stratify": ("text,label\n" + "a,x\nb,x\nc,x\nd,x\ne,y\n", ["line 6", "'y'", "at least 3"]),
    "short row": ("text,label,split\nhello\n", ["line 2", "field"]),
    "empty file": ("", ["empty file"]),
    "invalid UTF-8": (b"text,label\nhello,greet\ncaf\xe9,greet\n", ["line 3", "UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_csv_bad_inputs_name_file_and_line(case, tmp_path):
    text, expected = BAD_CSV[case]
    path = _csv(tmp_path, text)
    with pytest.raises(IntentDataError) as err:
        read_csv(path)
    msg = str(err.value)
    assert str(path) in msg
    for fragment in expected:
        assert fragment in msg, f"{fragment!r} missing from: {msg}"


# ---------------------------------------------------------------- mechanisms of the notes
def test_self_dot_is_the_notes_formula():
    torch.manual_seed(0)
    attn = build("self_dot", 8, 8, 8)
    x = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ctx, w = attn(x, x, x, mask)
    k = torch.tanh(attn.w(x))  # K = act(W X + b); Q = V = X
    ref = masked_softmax(x @ k.transpose(1, 2), mask.unsqueeze(1))
    torch.testing.assert_close(w, ref)
    torch.testing.assert_close(ctx, ref @ x)
    plain = build("self_dot", 8, 8, 8, act="none")
    assert plain.w.bias is None  # a key-independent q.b term would cancel in the softmax
    with pytest.raises(ValueError, match="act"):
        build("self_dot", 8, 8, 8, act="gelu")


def test_token_location_scores_each_token_alone():
    torch.manual_seed(0)
    attn = build("token_location", 8, 8, 8, scale=3.0)
    q, k = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    _, w1 = attn(q, k, k)
    _, w2 = attn(torch.randn_like(q), k, k)
    torch.testing.assert_close(w1, w2)  # the query plays no part
    ref = torch.softmax(3.0 * torch.tanh(attn.w(k).squeeze(-1)), dim=-1)
    torch.testing.assert_close(w1, ref.unsqueeze(1).expand_as(w1))
    # a token's score does not depend on its neighbours
    k2 = k.clone()
    k2[:, 3] = torch.randn(2, 8)
    s1, s2 = attn.score(q, k), attn.score(q, k2)
    torch.testing.assert_close(s1[..., [0, 1, 2, 4, 5]], s2[..., [0, 1, 2, 4, 5]])


# ---------------------------------------------------------------- metrics
def test_keyword_ratio_and_top1():
    w = [np.array([0.25, 0.25, 0.25, 0.25]), np.array([0.7, 0.1, 0.1, 0.1])]
    assert attention_mass_ratio([w[0]], [[1]]) == pytest.approx(1.0)   # uniform = 1
    assert attention_mass_ratio([w[1]], [[0]]) == pytest.approx(2.8)
    assert attention_mass_ratio(w, [[0, 1], []]) == pytest.approx(1.0)  # items without gold are skipped
    assert attention_top1_hit(w, [[3], [0]]) == pytest.approx(0.5)


# ---------------------------------------------------------------- models
MODELS = {
    "mean": dict(encoder="embedding", pooling="mean"),
    "max": dict(encoder="embedding", pooling="max"),
    "lstm": dict(encoder="lstm", pooling="last", hidden=12),
    "self_dot": dict(encoder="embedding", pooling="attention", attention="self_dot"),
    "additive": dict(encoder="embedding", pooling="attention", query="learned", attention="additive"),
    "additive_residual": dict(encoder="embedding", pooling="attention", query="learned", attention="additive",
                              residual=True),
    "token_location": dict(encoder="embedding", pooling="attention", attention="token_location"),
    "external": dict(encoder="embedding", pooling="attention", attention="external",
                     attention_options={"memory_size": 5}),
    "external_residual": dict(encoder="embedding", pooling="attention", attention="external", residual=True,
                              attention_options={"memory_size": 5}),
    "transformer": dict(encoder="transformer", pooling="cls", heads=2, layers=2, ffn_dim=16),
    "transformer_pool": dict(encoder="transformer", pooling="attention", heads=2, layers=1, ffn_dim=16,
                             pool_attention="additive", pool_options={"attn_dim": 8}),
    "bert": dict(encoder="transformer", pooling="cls", heads=2, layers=1, ffn_dim=16, mlm={"mask_prob": 0.15}),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_classifier_shapes_weights_and_padding_invariance(name):
    torch.manual_seed(0)
    model = IntentClassifier(30, 5, dim=8, dropout=0.0, max_len=12, **MODELS[name]).eval()
    tokens = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    logits, extra = model(tokens, need_weights=True)
    assert logits.shape == (2, 5)
    w = extra["weights"]
    if name in ("mean", "lstm"):
        assert w is None
    else:
        assert w.shape == (2, 5) and torch.all(w[1, 3:] == 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(2))
    if name.startswith(("transformer", "bert")):
        assert extra["heads"].shape == (2, model.encoder.layers.__len__(), 2, 6, 6)
    # more padding changes nothing
    longer, extra2 = model(torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], 1), need_weights=True)
    torch.testing.assert_close(longer, logits, atol=1e-5, rtol=1e-5)
    if w is not None:
        torch.testing.assert_close(extra2["weights"][:, :5], w, atol=1e-5, rtol=1e-5)


def test_max_pool_saliency_counts_the_argmax_tokens():
    torch.manual_seed(0)
    model = IntentClassifier(30, 3, encoder="embedding", pooling="max", dim=6, dropout=0.0).eval()
    tokens = torch.tensor([[4, 5, 6]])
    _, extra = model(tokens, need_weights=True)
    where = model.embed(tokens)[0].argmax(0)
    expected = torch.bincount(where, minlength=3).float() / 6
    torch.testing.assert_close(extra["weights"][0], expected)


def test_mask_tokens_is_seeded_and_never_touches_padding():
    tokens = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 0, 0, 0, 0, 0]])
    a = mask_tokens(tokens, 20, 0.5, torch.Generator().manual_seed(1))
    b = mask_tokens(tokens, 20, 0.5, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    inputs, targets = a
    assert torch.all(inputs[tokens == PAD] == PAD) and torch.all(targets[tokens == PAD] == -100)
    assert (targets[1] != -100).sum() == 1  # every non-empty row predicts at least one token
    chosen = targets != -100
    torch.testing.assert_close(targets[chosen], tokens[chosen])
    many = mask_tokens(torch.randint(4, 20, (200, 10)), 20, 0.15, torch.Generator().manual_seed(2))
    rate = (many[1] != -100).float().mean().item()
    assert 0.12 < rate < 0.2
    assert SPECIALS[CLS] == "<cls>" and SPECIALS[MASK] == "<mask>"
