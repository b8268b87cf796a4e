"""The report with the classical TF-IDF baseline: marked in both leaderboards, and the 'attention helps'
comparisons (intent's best attention run vs the runs without attention, documents' claim C6) decided
against the best run without attention, the baseline included."""
from __future__ import annotations

import pytest

from attnbench import cli
from attnbench.config import REPO_ROOT, for_dataset
from attnbench.validation import load_params
from attnbench.tasks.documents import report as doc_section
from attnbench.tasks.intent import report as intent_section

from .conftest import write_params


def _intent_run(run, attention, acc, *, classical=False, pooling="attention", encoder="embedding"):
    return {"run": run, "attention": attention, "mean": {"accuracy": acc}, "classical": classical,
            "pooling": None if classical else pooling, "encoder": "tfidf" if classical else encoder}


@pytest.mark.parametrize("tfidf_acc, beats, against", [(0.85, False, "tfidf"), (0.75, True, "mean-pool")])
def test_intent_attention_is_ahead_only_when_it_beats_the_classical_baseline(tfidf_acc, beats, against):
    runs = [_intent_run("mean-pool", "none", 0.70, pooling="mean"), _intent_run("self-attention", "self_dot", 0.80),
            _intent_run("tfidf", "none", tfidf_acc, classical=True)]
    if against == "mean-pool":   # a neural run without attention stronger than the baseline
        runs[0]["mean"]["accuracy"] = 0.78
    comparison = intent_section._comparison(runs, intent_section._baseline(runs))
    assert comparison["baseline"] == "mean-pool" and comparison["best"] == "self-attention"
    assert comparison["beats"] is beats and comparison["against"] == against
    assert comparison["against_classical"] is (against == "tfidf")
    assert comparison["classical"] == "tfidf"


def _doc_run(run, model, kind, acc, classical=False):
    return {"run": run, "model": model, "kind": kind, "mean": {"accuracy": acc}, "classical": classical,
            "accuracy": {"text": f"{acc:.3f}"}, "macro_f1": {"n": 0, "text": ""}, "still_improving": False}


@pytest.mark.parametrize("tfidf_acc, verdict, needle", [
    (0.90, "partly supported", "the classical baseline is not behind HAN"),
    (0.50, "supported", "tfidf 0.500 (classical baseline) (+0.300)"),
    (None, "supported", "the classical baseline has no results"),
])
def test_documents_c6_is_decided_against_the_classical_baseline_too(tfidf_acc, verdict, needle):
    runs = [_doc_run("han", "han", "HAN", 0.8), _doc_run("han-mean", "han", "HAN-mean", 0.7),
            _doc_run("han-max", "han", "HAN-max", 0.6)]
    if tfidf_acc is not None:
        runs.append(_doc_run("tfidf", "tfidf", "classical baseline: TF-IDF", tfidf_acc, classical=True))
    [claim] = doc_section._claims(runs, n_classes=5)
    assert claim["verdict"] == verdict, claim
    assert needle in claim["evidence"], claim["evidence"]


def _main(path, *argv):
    assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv


def test_leaderboards_mark_the_classical_baseline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = load_params(REPO_ROOT / "params.yaml")
    p["scale"], p["threads"] = "smoke", 1
    intent, docs = p["tasks"]["intent"], p["tasks"]["documents"]
    intent["scales"]["smoke"].update(train_size=120, valid_size=24, test_size=48, unlabelled_size=0, epochs=1)
    intent["models"]["mean"]["dim"] = 8
    intent["runs"] = {k: intent["runs"][k] for k in ("mean-pool", "tfidf")}
    docs["scales"]["smoke"].update(train_size=40, valid_size=10, test_size=12, epochs=1)
    docs["models"]["han"] = {"emb_dim": 8, "word_hidden": 4, "sent_hidden": 4, "dropout": 0.1}
    docs["runs"] = {k: docs["runs"][k] for k in ("han", "tfidf")}
    p["tasks"] = {"intent": intent, "documents": docs}
    path = write_params(tmp_path / "params.yaml", p)
    for task, runs in (("intent", ("mean-pool", "tfidf")), ("documents", ("han", "tfidf"))):
        _main(path, "prepare", "--task", task)
        for run in runs:
            _main(path, "train", "--task", task, "--run", run, "--seed", "0")
            _main(path, "evaluate", "--task", task, "--run", run, "--seed", "0")
    params = load_params(path)

    def row_of(board, run):
        return next(" | ".join(c["text"] for c in row["cells"]) for row in board["rows"] if row["cells"][0]["text"] == run)

    t = intent_section.context(for_dataset(params, "intent", "synthetic"), "intent", tmp_path / "reports")
    assert "classical baseline: TF-IDF word 1–2 + char 2–5 grams, LinearSVC" in row_of(t["leaderboard"], "tfidf")
    assert "classical" not in row_of(t["leaderboard"], "mean-pool")
    d = doc_section.context(for_dataset(params, "documents", "synthetic"), "documents", tmp_path / "reports")
    assert "classical baseline: TF-IDF" in row_of(d["leaderboard"], "tfidf")
    blocks = [b for doc in d["documents"]["docs"] for b in doc["blocks"] if b["run"] == "tfidf"]
    assert blocks and all(b["note"] and not b["missing"] and b["pred"] for b in blocks)
    _main(path, "report")
    html = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert html.count("classical baseline: TF-IDF word 1–2 + char 2–5 grams, LinearSVC") >= 2
