"""The classical TF-IDF + linear classifier baseline (baselines/tfidf.py): fit and predict on tiny
hand-made data, C picked on validation, the saved tensors reproducing scikit-learn's pipeline, and its
pass through the CLI's train + evaluate for the intent and documents tasks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnbench import cli, paths
from attnbench.config import REPO_ROOT, ParamsError
from attnbench.validation import load_params, validate
from attnbench.baselines import tfidf

from .conftest import write_params

# two obviously separable classes (disjoint words), and a third told apart by character n-grams only
TRAIN = [("what is my balance please", 0), ("show my balance", 0), ("balance of my account", 0),
         ("check the balance now", 0), ("book a flight to paris", 1), ("i need a flight tomorrow", 1),
         ("flight for two people", 1), ("book the cheapest flight", 1)]
VALID = [("my account balance", 0), ("a flight to rome", 1), ("balance please", 0), ("flight tomorrow", 1)]
TEST = [("balance", 0), ("flight", 1), ("what is the balance of my account", 0), ("book a flight for me", 1)]


def _split(rows):
    return [t for t, _ in rows], [y for _, y in rows]


def test_separates_obvious_classes_and_picks_c_on_validation():
    model, info = tfidf.fit_select(*_split(TRAIN), *_split(VALID), {"C": [0.01, 1.0, 100.0]})
    texts, y = _split(TEST)
    assert model.predict(texts).tolist() == y
    assert set(info["valid_accuracy_by_C"]) == {"0.01", "1", "100"}
    best = max(info["valid_accuracy_by_C"].values())
    # the kept C is the first with the best validation accuracy
    assert info["C"] == next(float(c) for c, a in info["valid_accuracy_by_C"].items() if a == best)
    assert info["valid_accuracy"] == best == 1.0


def test_c_is_chosen_by_the_validation_split_not_the_first_value(monkeypatch):
    """Validation accuracy decides: with labels only a strong fit can match, a tiny C loses."""
    seen = []
    real = tfidf._classifier

    def spy(o, C, seed):
        seen.append(C)
        return real(o, C, seed)

    monkeypatch.setattr(tfidf, "_classifier", spy)
    # validation texts share only character n-grams with their class's training texts; a heavily
    # regularised classifier predicts one class for everything
    train = [("aaaa bbbb", 0), ("aaab bbba", 0), ("aabb abab", 0), ("zzzz yyyy", 1), ("zzzy yyyz", 1), ("zzyy yzyz", 1),
             ("aaaa", 0), ("zzzz", 1), ("abab", 0), ("yzyz", 1), ("bbbb", 0), ("yyyy", 1), ("cccc", 2), ("cccd", 2),
             ("ccdd", 2), ("dcdc", 2)]
    valid = [("aaba", 0), ("zyzz", 1), ("cdcc", 2), ("baab", 0), ("yzzy", 1), ("dccd", 2)]
    model, info = tfidf.fit_select(*_split(train), *_split(valid), {"C": [1e-4, 10.0]})
    assert seen == [1e-4, 10.0]
    assert info["valid_accuracy_by_C"]["0.0001"] < info["valid_accuracy_by_C"]["10"]
    assert info["C"] == 10.0
    assert model.predict([t for t, _ in valid]).tolist() == [y for _, y in valid]


@pytest.mark.parametrize("classifier", ["linear_svc", "logistic"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_saved_tensors_reproduce_the_sklearn_pipeline(classifier, n_classes):
    rows = [(t, y) for t, y in TRAIN + [("cancel my card", 2), ("card cancel now", 2), ("cancel the card", 2)]]
    rows = [(t, y) for t, y in rows if y < n_classes]
    opts = {"classifier": classifier, "C": [1.0]}
    model, info = tfidf.fit_select(*_split(rows), *_split(VALID), opts)
    texts = [t for t, _ in TEST] + ["cancel card balance flight", "unseen words only"]
    pipe = tfidf.make_pipeline(opts, 1.0).fit(*_split(rows))
    expected = pipe.decision_function(texts)
    got = model.decision_function(texts)
    if n_classes == 2:   # scikit-learn: one score for the second class
        assert np.allclose(got[:, 1], expected) and np.allclose(got[:, 0], -expected)
    else:
        assert np.allclose(got, expected)
    assert model.predict(texts).tolist() == pipe.predict(texts).tolist()
    # through a weights_only round trip of its state dict
    again = tfidf.TfidfClassifier(model.state_dict(), opts)
    assert np.allclose(again.decision_function(texts), got)
    rows_kept = 2 if n_classes == 2 else n_classes   # two classes are kept as two opposite rows
    assert sum(p.numel() for p in model.parameters()) == rows_kept * (model.n_features + 1)


def test_features_are_word_and_char_ngrams():
    model, _ = tfidf.fit_select(*_split(TRAIN), *_split(VALID), {"C": [1.0]})
    words = tfidf._unpack_terms(model.word_terms, model.word_offsets)
    chars = tfidf._unpack_terms(model.char_terms, model.char_offsets)
    assert "balance" in words and "my balance" in words and "a flight to" not in words   # 1-2 grams
    assert " ba" in chars and "lanc" in chars and "balanc" not in chars                    # char_wb 2-5
    assert model.n_features == len(words) + len(chars)


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        tfidf.fit_select(["a b", "c d"], [0, 0], ["a"], [0], {})


# ---- through the CLI --------------------------------------------------------------------------

def _main(path, *argv) -> int:
    return cli.main(["-q", "--params", str(path), *argv])


def _only(task: str, runs: tuple[str, ...]) -> dict:
    p = load_params(REPO_ROOT / "params.yaml")
    p["scale"], p["threads"] = "smoke", 1
    t = p["tasks"][task]
    t["runs"] = {k: t["runs"][k] for k in runs}
    p["tasks"] = {task: t}
    return p


def test_params_have_the_baseline_run_in_both_grids():
    p = load_params(REPO_ROOT / "params.yaml")
    assert p["tasks"]["intent"]["runs"]["tfidf"] == {"model": "tfidf", "attention": "none"}
    assert p["tasks"]["intent"]["models"]["tfidf"]["encoder"] == "tfidf"
    assert p["tasks"]["documents"]["runs"]["tfidf"] == {"model": "tfidf", "attention": "none"}


@pytest.mark.parametrize("task, edit, needles", [
    ("intent", lambda t: t["runs"]["tfidf"].update(attention="additive"), ["runs.tfidf.attention", "'additive'", "none"]),
    ("intent", lambda t: t["runs"]["tfidf"].update(options={"attn_dim": 4}), ["runs.tfidf.options"]),
    ("intent", lambda t: t["models"]["tfidf"].update(C=[]), ["tasks.intent.models.tfidf", "C"]),
    ("intent", lambda t: t["models"]["tfidf"].update(char_ngrams=[5, 2]), ["models.tfidf.char_ngrams", "[5, 2]"]),
    ("intent", lambda t: t["models"]["tfidf"].update(classifier="forest"), ["models.tfidf", "'forest'"]),
    ("documents", lambda t: t["runs"]["tfidf"].update(attention="additive"), ["runs.tfidf.attention", "'additive'"]),
    ("documents", lambda t: t["models"].pop("tfidf"), ["tasks.documents.models", "'tfidf'"]),
    ("documents", lambda t: t["models"]["tfidf"].update(dim=3), ["models.tfidf", "dim"]),
])
def test_params_errors_name_the_key(task, edit, needles):
    p = _only(task, ("tfidf",))
    edit(p["tasks"][task])
    with pytest.raises(ParamsError) as err:
        validate(p)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_intent_train_and_evaluate_write_the_pipeline_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _only("intent", ("tfidf",))
    p["tasks"]["intent"]["scales"]["smoke"].update(train_size=240, valid_size=48, test_size=96, unlabelled_size=0)
    path = write_params(tmp_path / "params.yaml", p)
    assert _main(path, "prepare", "--task", "intent") == 0
    assert _main(path, "train", "--task", "intent", "--run", "tfidf", "--seed", "0") == 0
    out = paths.run_dir("intent", "synthetic", "tfidf", 0)
    assert {"model.pt", "train_log.csv", "train_info.json"} <= {f.name for f in out.iterdir()}
    info = json.loads((out / "train_info.json").read_text())
    assert info["epochs_trained"] == 1 and info["C"] in p["tasks"]["intent"]["models"]["tfidf"]["C"]
    assert info["valid_accuracy_by_C"][f"{info['C']:g}"] == round(info["best_valid"], 6)
    assert torch.load(out / "model.pt", weights_only=True)["model"]["coef"].shape[0] == 24
    assert _main(path, "evaluate", "--task", "intent", "--run", "tfidf", "--seed", "0") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.5 and 0 < metrics["macro_f1"] <= 1      # 24 intents: chance is 0.04
    assert metrics["keyword_ratio"] is None and metrics["keyword_top1"] is None and metrics["token_weights"] is None
    assert metrics["parameters"] == info["parameters"] > 0 and metrics["model"] == "tfidf"
    assert metrics["classical_baseline"].startswith("TF-IDF word 1–2 + char 2–5 grams, LinearSVC")
    with np.load(out / "attention.npz") as z:
        assert "labels" in z and "tokens_0" in z and "weights_0" not in z
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 96 and samples[0]["top"] is None
    assert np.mean([s["correct"] for s in samples]) == pytest.approx(metrics["accuracy"], abs=1e-4)
    # a checkpoint of another configuration is refused, not silently evaluated
    p["tasks"]["intent"]["models"]["tfidf"]["C"] = [0.5]
    other = write_params(tmp_path / "other.yaml", p)
    assert _main(other, "evaluate", "--task", "intent", "--run", "tfidf", "--seed", "0") == 1


def test_documents_baseline_reads_the_whole_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _only("documents", ("tfidf",))
    # sentences cut to 3 words for the neural runs: the baseline still reads every word
    p["tasks"]["documents"]["scales"]["smoke"].update(train_size=120, valid_size=30, test_size=40, max_words=3)
    path = write_params(tmp_path / "params.yaml", p)
    assert _main(path, "prepare", "--task", "documents") == 0
    prepared = paths.prepared_dir("documents", "synthetic")
    texts = json.loads((prepared / "texts.json").read_text())
    docs = [json.loads(line) for line in (prepared / "test.jsonl").read_text().splitlines()]
    assert len(texts["test"]) == len(docs) == 40
    assert sum(len(t.split()) for t in texts["test"]) > sum(len(s) for d in docs for s in d["sentences"])
    assert _main(path, "train", "--task", "documents", "--run", "tfidf", "--seed", "0") == 0
    assert _main(path, "evaluate", "--task", "documents", "--run", "tfidf", "--seed", "0") == 0
    out = paths.run_dir("documents", "synthetic", "tfidf", 0)
    assert {"model.pt", "train_log.csv", "train_info.json", "metrics.json", "attention.npz", "samples.jsonl"} <= \
        {f.name for f in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert metrics["sentence_hit_rate"] is None and metrics["word_hit_rate"] is None
    assert metrics["sentence_weights"] is None and "classical_baseline" in metrics
    with np.load(out / "attention.npz") as z:
        assert "tokens_0" in z and "pred_0" in z and "sentence_0" not in z and "top_sentence" not in z
