"""Using a trained intent run: `attnbench predict` gives each utterance its intent, probability and token
weights, exactly as evaluation classified the test set; the errors a user meets (not trained, wrong task)."""
from __future__ import annotations

import io
import json

import pytest

from attnbench import cli, paths
from attnbench.config import REPO_ROOT
from attnbench.validation import load_params

from .test_intent_cli import _intent_params
from .conftest import write_params

RUNS = ("self-attention", "mean-pool", "tfidf")


@pytest.fixture(scope="module")
def project(tmp_path_factory, request):
    """Intent's synthetic data at a tiny scale, three runs trained and evaluated (seed 0)."""
    root = tmp_path_factory.mktemp("predict")
    params = _intent_params()
    t = params["tasks"]["intent"]
    every = load_params(REPO_ROOT / "params.yaml")["tasks"]["intent"]["runs"]
    t["runs"] = {name: every[name] for name in RUNS}
    params["seeds"] = [0, 1]          # seed 1 stays untrained
    write_params(root / "params.yaml", params)
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    request.addfinalizer(mp.undo)
    assert cli.main(["-q", "prepare", "--task", "intent"]) == 0
    for run in RUNS:
        for step in ("train", "evaluate"):
            assert cli.main(["-q", step, "--task", "intent", "--run", run, "--seed", "0"]) == 0
    return root


def _predict(capsys, *argv) -> list[str]:
    assert cli.main(["-q", "predict", "--task", "intent", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def _test_samples(run: str) -> list[dict]:
    path = paths.run_dir("intent", "synthetic", run, 0) / "samples.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("run", RUNS)
def test_predict_classifies_the_test_set_as_evaluate_did(project, run, capsys, monkeypatch):
    samples = _test_samples(run)
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(s["text"] + "\n" for s in samples)))
    items = [json.loads(line) for line in _predict(capsys, "--run", run, "--seed", "0", "--json")]
    assert [i["intent"] for i in items] == [s["pred"] for s in samples]
    labels = set(json.loads((paths.prepared_dir("intent", "synthetic") / "labels.json").read_text()))
    for item in items[:20]:
        assert item["intent"] in labels and len(item["alternatives"]) == 2
        if run == "tfidf":       # a linear SVM: scores, no probability
            assert item["probability"] is None and item["weights"] is None
            assert all(a["value"] <= item["score"] for a in item["alternatives"])
        else:
            assert 0 < item["probability"] <= 1
            assert all(a["value"] <= item["probability"] for a in item["alternatives"])
            assert item["probability"] + sum(a["value"] for a in item["alternatives"]) <= 1 + 1e-3


def test_attention_weights_cover_each_token_and_sum_to_one(project, capsys):
    sample = _test_samples("self-attention")[0]
    item = json.loads(_predict(capsys, "--run", "self-attention", "--seed", "0", "--json", sample["text"])[0])
    assert item["tokens"] == sample["text"].split()[:16]
    assert len(item["weights"]) == len(item["tokens"]) and abs(sum(item["weights"]) - 1) < 1e-2
    assert int(max(range(len(item["weights"])), key=item["weights"].__getitem__)) == sample["top"]
    mean_pool = json.loads(_predict(capsys, "--run", "mean-pool", "--seed", "0", "--json", sample["text"])[0])
    assert mean_pool["weights"] is None          # averaging has no token weights


def test_text_output_one_line_per_utterance_with_weights_and_unknown_words_starred(project, capsys):
    lines = _predict(capsys, "--run", "self-attention", "--seed", "0", "--top", "1", "please zyxwv my card",
                     "what is the balance")
    assert len(lines) == 2
    intent, value, others, words = lines[0].split("\t")
    assert value.startswith("p=") and others == ""        # --top 1: no alternatives
    assert "zyxwv*:" in words and words.count(":") == 4
    (project / "in.txt").write_text("please zyxwv my card\nwhat is the balance\n")
    assert _predict(capsys, "--run", "self-attention", "--seed", "0", "--top", "1", "--input", "in.txt") == lines


def test_predict_refuses_an_untrained_run_and_another_task(project, capsys):
    code = cli.main(["-q", "predict", "--task", "intent", "--run", "self-attention", "--seed", "1", "hello"])
    err = capsys.readouterr().err
    assert code != 0 and "not trained" in err
    assert "attnbench train --task intent --dataset synthetic --run self-attention --seed 1" in err
    code = cli.main(["-q", "predict", "--task", "translation", "--run", "rnn-general", "--seed", "0", "hello"])
    assert code == 2 and "expected: intent" in capsys.readouterr().err
    code = cli.main(["-q", "predict", "--task", "intent", "--run", "mean-pool", "--seed", "0", "--top", "0", "hi"])
    assert code == 2 and "--top" in capsys.readouterr().err
