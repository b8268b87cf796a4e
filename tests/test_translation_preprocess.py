"""Translation on real corpora given as raw text: preprocessing declared in the data spec (Moses tokenisation,
lowercasing), vocabulary thresholds with <unk> counts, max_len that never drops a validation/test pair, and
detokenised sacreBLEU against the raw references."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from attnbench import cli
from attnbench.config import ParamsError, resolve_run
from attnbench.validation import validate
from attnbench.metrics import corpus_bleu, corpus_chrf
from attnbench.tasks import get
from attnbench.tasks.translation import SPECIALS, Data, Vocab, preprocess

from .conftest import write_params

TASK = get("translation")


# --------------------------------------------------------------------------- vocabulary thresholds

SENTENCES = [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("a", "b", "c")]
# counts: a 4, b 3, c 2, d 1, e 1


def test_defaults_keep_every_type_most_frequent_first_ties_alphabetical():
    types, info = preprocess.kept_types(SENTENCES)
    assert types == ["a", "b", "c", "d", "e"]
    assert info == {"types": 5, "kept": 5, "below_min_freq": 0, "over_max_size": 0}
    assert Vocab.build(SENTENCES).itos == list(SPECIALS) + types


def test_min_freq_and_max_size_thresholds():
    assert preprocess.kept_types(SENTENCES, min_freq=2)[0] == ["a", "b", "c"]
    assert preprocess.kept_types(SENTENCES, min_freq=3)[0] == ["a", "b"]
    assert preprocess.kept_types(SENTENCES, max_size=4)[0] == ["a", "b", "c", "d"]   # d before e: tie, alphabetical
    types, info = preprocess.kept_types(SENTENCES, min_freq=2, max_size=2)
    assert types == ["a", "b"]
    assert info == {"types": 5, "kept": 2, "below_min_freq": 2, "over_max_size": 1}
    vocab = Vocab.build(SENTENCES, min_freq=2)
    assert vocab.encode(["a", "d", "zzz"]) == [vocab.stoi["a"], vocab.unk, vocab.unk]
    with pytest.raises(ValueError, match="min_freq"):
        preprocess.kept_types(SENTENCES, min_freq=0)


def test_unk_counts_types_and_tokens():
    counts = preprocess.unk_counts([("a", "x", "x"), ("y", "a")], {"a"})
    assert counts == {"tokens": 5, "unk_tokens": 3, "unk_types": 2, "unk_rate": 0.6}


def test_vocab_limits_side_values_override_shared_ones():
    data = {"vocab": {"min_freq": 2, "target": {"min_freq": 3, "max_size": 10}}}
    assert preprocess.vocab_limits(data, "source") == {"min_freq": 2, "max_size": None}
    assert preprocess.vocab_limits(data, "target") == {"min_freq": 3, "max_size": 10}
    assert preprocess.vocab_limits({}, "source") == {"min_freq": 1, "max_size": None}


# --------------------------------------------------------------------------- prepare on files

def _write(path: Path, lines: list[str], gz: bool = False) -> str:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def _files(tmp_path: Path, corpus: dict[str, tuple[list[str], list[str]]], gz: bool = False) -> dict:
    files = {}
    for split, (src, tgt) in corpus.items():
        suffix = ".gz" if gz else ""
        files[split] = {"source": _write(tmp_path / f"{split}.en{suffix}", src, gz),
                        "target": _write(tmp_path / f"{split}.fr{suffix}", tgt, gz)}
    return files


def _params(tiny_params: dict, data: dict, max_len: int = 12) -> dict:
    t = tiny_params["tasks"]["translation"]
    t["data"] = data
    t["scales"]["smoke"]["max_len"] = max_len
    return tiny_params


def test_manifest_counts_unk_types_and_tokens_per_split_and_side(tiny_params, tmp_path):
    train = (["a b c", "a b", "a d"], ["x y", "x y z", "x w"])
    valid = (["a q q", "b"], ["x"] * 2)
    test = (["r s", "a"], ["x v", "y"])
    data = {"source": "files", "files": _files(tmp_path, {"train": train, "valid": valid, "test": test}),
            "vocab": {"min_freq": 2, "target": {"min_freq": 1, "max_size": 2}}}
    params = validate(_params(tiny_params, data))
    manifest = TASK.prepare(params, tmp_path / "prepared")
    # source: a 3, b 2, c 1, d 1 -> min_freq 2 keeps a b; target: x 3, y 2, w 1, z 1 -> max_size 2 keeps x y
    vocab = json.loads((tmp_path / "prepared/vocab.json").read_text())
    assert vocab["source"] == [*SPECIALS, "a", "b"] and vocab["target"] == [*SPECIALS, "x", "y"]
    assert manifest["vocab"]["source"] == {"min_freq": 2, "max_size": None, "train_types": 4, "kept_types": 2,
                                           "cut_below_min_freq": 2, "cut_over_max_size": 0, "size_with_specials": 6}
    assert manifest["vocab"]["target"]["cut_over_max_size"] == 2 and manifest["vocab"]["target"]["min_freq"] == 1
    unk = manifest["unk"]
    assert unk["train"]["source"] == {"tokens": 7, "unk_tokens": 2, "unk_types": 2, "unk_rate": round(2 / 7, 6)}
    assert unk["train"]["target"] == {"tokens": 7, "unk_tokens": 2, "unk_types": 2, "unk_rate": round(2 / 7, 6)}
    assert unk["valid"]["source"] == {"tokens": 4, "unk_tokens": 2, "unk_types": 1, "unk_rate": 0.5}   # q q
    assert unk["test"]["source"] == {"tokens": 3, "unk_tokens": 2, "unk_types": 2, "unk_rate": round(2 / 3, 6)}
    assert unk["test"]["target"] == {"tokens": 3, "unk_tokens": 1, "unk_types": 1, "unk_rate": round(1 / 3, 6)}
    assert manifest["source_vocab"] == 6 and manifest["target_vocab"] == 6


def test_max_len_leaves_out_long_training_pairs_only(tiny_params, tmp_path):
    long_src = " ".join(["a"] * 9)   # 9 tokens > max_len 5
    train = (["a b", long_src, "b a", long_src], ["x y", "x", "y x", "y"])
    valid = ([long_src, "a"], ["x x", "x"])
    test = (["a b", long_src + " b b"], ["x y", "y y"])
    data = {"source": "files", "files": _files(tmp_path, {"train": train, "valid": valid, "test": test})}
    params = validate(_params(tiny_params, data, max_len=5))
    manifest = TASK.prepare(params, tmp_path / "prepared")
    assert manifest["pairs"] == {"train": 2, "valid": 2, "test": 2}   # the old reader dropped 1 valid, 1 test
    assert manifest["train_left_out_longer_than_max_len"] == 2
    assert manifest["kept_longer_than_max_len"] == {"valid": 1, "test": 1}
    assert manifest["max_source_len"] == 11
    data = Data(tmp_path / "prepared")
    assert [len(p.src) for p in data.pairs["test"]] == [2, 11]


# --------------------------------------------------------------------------- Moses tokenisation and detokenised BLEU

RAW_SRC = ["A man's dog, running.", "Two \"young\" girls & a boy!", "Hello there."]
RAW_TGT = ["L'homme court, vite.", "Deux « jeunes » filles & un garçon !", "Bonjour là."]


def _moses_data(tmp_path: Path, lowercase: bool) -> dict:
    corpus = {split: (RAW_SRC, RAW_TGT) for split in ("train", "valid", "test")}
    return {"source": "files", "files": _files(tmp_path, corpus, gz=True), "tokenize": "moses",
            "lang": {"source": "en", "target": "fr"}, "lowercase": lowercase}


def test_moses_tokenisation_keeps_raw_references_and_detokenises_them_back(tiny_params, tmp_path):
    pytest.importorskip("sacremoses")
    params = validate(_params(tiny_params, _moses_data(tmp_path, lowercase=False)))
    manifest = TASK.prepare(params, tmp_path / "prepared")
    assert manifest["preprocessing"] == {"tokenize": "moses", "lowercase": False, "lang": {"source": "en", "target": "fr"}}
    data = Data(tmp_path / "prepared")
    test = data.pairs["test"]
    assert test[0].src == ("A", "man", "'s", "dog", ",", "running", ".")   # escape=False: no &apos;
    assert test[1].tgt == ("Deux", "«", "jeunes", "»", "filles", "&", "un", "garçon", "!")
    assert [p.ref for p in test] == RAW_TGT
    detok = preprocess.detokenizer("moses", "fr")
    assert [detok(p.tgt) for p in test] == RAW_TGT


def test_detokenised_bleu_against_raw_references_case_insensitive_when_lowercased(tiny_params, tmp_path):
    pytest.importorskip("sacremoses")
    params = validate(_params(tiny_params, _moses_data(tmp_path, lowercase=True)))
    TASK.prepare(params, tmp_path / "prepared")
    data = Data(tmp_path / "prepared")
    test = data.pairs["test"]
    assert test[0].tgt[0] == "l'" and test[0].ref == "L'homme court, vite."   # tokens lowercased, reference raw
    perfect = [list(p.tgt) for p in test]                                       # the model's (lowercased) tokens
    hyps, refs, opts = TASK.scoring_texts(data, test, perfect)
    assert refs == RAW_TGT and opts == {"lowercase": True}
    assert hyps[0] == "l'homme court, vite."
    bleu, signature = corpus_bleu(hyps, refs, **opts)
    assert bleu == pytest.approx(100.0) and "case:lc" in signature and "tok:13a" in signature
    assert corpus_chrf(hyps, refs, **opts)[0] == pytest.approx(100.0)
    assert corpus_bleu(hyps, refs)[0] < 90.0   # the same output scored case-sensitively: the capitals count
    wrong = [list(p.tgt) for p in test]
    wrong[0][1] = "marche"
    assert corpus_bleu(TASK.scoring_texts(data, test, wrong)[0], refs, **opts)[0] < 100.0


def test_synthetic_scoring_stays_on_tokens(tiny_params, tmp_path):
    params = validate(tiny_params)
    manifest = TASK.prepare(params, tmp_path / "prepared")
    assert manifest["preprocessing"]["tokenize"] == "none" and manifest["train_left_out_longer_than_max_len"] == 0
    data = Data(tmp_path / "prepared")
    test = data.pairs["test"]
    assert all(p.ref is None for p in test)
    assert "ref" not in (tmp_path / "prepared/test.jsonl").read_text().splitlines()[0]
    hyps, refs, opts = TASK.scoring_texts(data, test, [list(p.tgt) for p in test])
    assert opts == {} and refs == [" ".join(p.tgt) for p in test] and hyps == refs


# --------------------------------------------------------------------------- data-spec checks

@pytest.mark.parametrize("data, message", [
    ({"source": "synthetic", "tokenize": "moses", "lang": {"source": "en", "target": "fr"}}, "already tokenised"),
    ({"source": "synthetic", "tokenize": "moses"}, "lang"),
    ({"source": "synthetic", "vocab": {"min_freq": 0}}, "min_freq"),
    ({"source": "synthetic", "vocab": {"source": {"max_len": 3}}}, "max_len"),
])
def test_bad_data_specs_are_refused(tiny_params, data, message):
    tiny_params["tasks"]["translation"]["data"] = data
    with pytest.raises(ParamsError, match=message):
        validate(tiny_params)


def test_alignments_with_retokenised_text_are_refused(tiny_params, tmp_path):
    data = _moses_data(tmp_path, lowercase=False)
    data["files"]["test"]["alignments"] = _write(tmp_path / "test.align", ["0-0"] * 3)
    tiny_params["tasks"]["translation"]["data"] = data
    with pytest.raises(ParamsError, match="alignments"):
        validate(tiny_params)


# --------------------------------------------------------------------------- models on sentences longer than max_len

def _long_test_data(tiny_params, tmp_path, n_long: int = 40) -> tuple[dict, Data]:
    train = (["a b c", "b c a", "c a b"] * 4, ["x y z", "y z x", "z x y"] * 4)
    long = " ".join(["a", "b", "c"] * (n_long // 3))
    evals = (["a b", long], ["x y", " ".join(["x", "y", "z"] * (n_long // 3))])
    data = {"source": "files", "files": _files(tmp_path, {"train": train, "valid": evals, "test": evals})}
    params = validate(_params(tiny_params, data, max_len=5))
    TASK.prepare(params, tmp_path / "prepared")
    return params, Data(tmp_path / "prepared")


def test_location_attention_too_short_for_a_test_sentence_fails_before_training(tiny_params, tmp_path):
    params, data = _long_test_data(tiny_params, tmp_path)
    params["tasks"]["translation"]["runs"] = {"rnn-location": {"model": "rnn", "attention": "location",
                                                               "options": {"max_len": 16}}}
    cfg = resolve_run(params, "translation", "rnn-location", 0)
    with pytest.raises(ParamsError, match=r"runs\.rnn-location\.options\.max_len: value 16.*expected >= 40"):
        TASK.build_model(cfg, data)
    params["tasks"]["translation"]["runs"]["rnn-location"]["options"]["max_len"] = 40
    TASK.build_model(resolve_run(params, "translation", "rnn-location", 0), data)


def test_transformer_positions_cover_test_sentences_longer_than_max_len(tiny_params, tmp_path, monkeypatch):
    params, data = _long_test_data(tiny_params, tmp_path, n_long=60)
    params["tasks"]["translation"]["runs"] = {"transformer": {"model": "transformer", "attention": "multihead"}}
    cfg = resolve_run(params, "translation", "transformer", 0)
    model = TASK.build_model(cfg, data).eval()
    assert model.positions.size(0) >= int(cfg["eval"]["max_output_ratio"] * 61) + 2 > 2 * 5 + 8
    hyps = TASK._translate(model, data, "test", cfg, torch.device("cpu"))
    assert len(hyps) == 2
    monkeypatch.chdir(tmp_path)
    metrics = TASK.evaluate(model, data, cfg, torch.device("cpu"), tmp_path / "run")
    assert metrics["test_sentences"] == 2


def test_files_prepared_by_the_cli_with_moses(tiny_params, tmp_path, monkeypatch):
    """The whole path a user takes: params overrides -> prepare -> train -> evaluate -> metrics.json keys."""
    pytest.importorskip("sacremoses")
    monkeypatch.chdir(tmp_path)
    data = _moses_data(tmp_path, lowercase=True)
    data["vocab"] = {"min_freq": 1}
    tiny_params["tasks"]["translation"]["data"] = data
    tiny_params["tasks"]["translation"]["runs"] = {"rnn-general": {"model": "rnn", "attention": "general"}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    for argv in (["prepare", "--task", "translation"],
                 ["train", "--task", "translation", "--run", "rnn-general", "--seed", "0"],
                 ["evaluate", "--task", "translation", "--run", "rnn-general", "--seed", "0"]):
        assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv
    metrics = json.loads((tmp_path / "data/results/translation/synthetic/rnn-general/seed0/metrics.json").read_text())
    assert "case:lc" in metrics["bleu_signature"] and "tok:none" in metrics["bleu_tok_signature"]
    assert metrics["scored_on"].startswith("detokenised") and isinstance(metrics["hyp_unk_tokens"], int)
    sample = json.loads((tmp_path / "data/results/translation/synthetic/rnn-general/seed0/samples.jsonl")
                        .read_text().splitlines()[0])
    assert sample["ref_raw"] in RAW_TGT and "hyp_detok" in sample
