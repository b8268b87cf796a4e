"""Intent through the CLI at a tiny scale: prepare/train/evaluate, BERT's determinism, real-data CSV,
params errors, the report section and the notebook."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnbench import cli, paths
from attnbench.config import REPO_ROOT, for_dataset
from attnbench.validation import load_params

from .conftest import write_params

XSS = "<script>alert(1)</script>"


def _intent_params() -> dict:
    """params.yaml with only the intent task, smoke scale, shrunk to seconds."""
    p = load_params(REPO_ROOT / "params.yaml")
    p["scale"] = "smoke"
    t = p["tasks"]["intent"]
    p["tasks"] = {"intent": t}
    t["scales"]["smoke"] = {"train_size": 240, "valid_size": 48, "test_size": 96, "unlabelled_size": 240,
                            "max_len": 16, "epochs": 2, "pretrain_epochs": 2}
    for opts in t["models"].values():
        if opts["encoder"] == "tfidf":   # the classical baseline has no width
            continue
        opts["dim"] = 16
        if opts["encoder"] == "transformer":
            opts.update(heads=2, layers=1, ffn_dim=32)
    t["runs"] = {k: t["runs"][k] for k in ("mean-pool", "self-attention", "transformer", "bert")}
    return p


@pytest.fixture
def intent_params() -> dict:
    return _intent_params()


def _main(path, *argv) -> int:
    return cli.main(["-q", "--params", str(path), *argv])


def _train_eval(path, run, seed=0):
    assert _main(path, "train", "--task", "intent", "--run", run, "--seed", str(seed)) == 0
    assert _main(path, "evaluate", "--task", "intent", "--run", run, "--seed", str(seed)) == 0
    return paths.run_dir("intent", "synthetic", run, seed)


@pytest.fixture(scope="module")
def smoke_tree(tmp_path_factory):
    """prepare + three runs (no BERT) + aggregate, once for the tests below; yields (folder, params path)."""
    folder = tmp_path_factory.mktemp("intent-smoke")
    before = os.getcwd()
    os.chdir(folder)
    try:
        path = write_params(folder / "params.yaml", _intent_params())
        assert _main(path, "prepare", "--task", "intent") == 0
        for run in ("mean-pool", "self-attention", "transformer"):
            _train_eval(path, run)
        assert _main(path, "aggregate", "--task", "intent") == 0
    finally:
        os.chdir(before)
    return folder, path


def test_smoke_runs_exports_and_report(smoke_tree, monkeypatch):
    folder, path = smoke_tree
    monkeypatch.chdir(folder)
    manifest = json.loads((paths.prepared_dir("intent", "synthetic") / "manifest.json").read_text())
    assert manifest["labels"] == 24 and manifest["utterances"] == {"train": 240, "valid": 48, "test": 96}
    for run in ("mean-pool", "self-attention", "transformer"):
        run_dir = paths.run_dir("intent", "synthetic", run, 0)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
        assert metrics["mlm_accuracy"] is None and metrics["test_utterances"] == 96
        assert set(metrics["subset_accuracy"]) == {"clean", "confuser", "keyword_typo"}
        with np.load(run_dir / "attention.npz", allow_pickle=False) as z:
            keys = set(z.files)
            assert {"tokens_0", "gold_0", "label_0", "pred_0"} <= keys
            if run == "mean-pool":
                assert metrics["keyword_ratio"] is None and "weights_0" not in keys
            else:
                assert metrics["keyword_ratio"] > 0 and abs(float(z["weights_0"].sum()) - 1) < 1e-4
            if run == "transformer":
                assert z["heads_0"].shape[:2] == (1, 2) and z["heads_0"].shape[-1] == len(z["tokens_0"]) + 1
        assert len((run_dir / "samples.jsonl").read_text().splitlines()) == 96
        with np.load(run_dir / "items.npz") as z:   # per test utterance: what the paired tests compare
            assert z["labels"].shape == (96,)
            assert (z["labels"] == z["predictions"]).mean() == pytest.approx(metrics["accuracy"], abs=1e-4)
    assert _main(path, "report") == 0
    html = paths.report_html().read_text(encoding="utf-8")
    assert "Intent classification" in html and "self-attention" in html and "bert" in html  # bert: missing
    assert "<td>C8</td>" in html and "<td>C12</td>" in html and "not measurable" in html  # no BERT results yet
    assert "intent-gold" in html and "rgba(214, 39, 40," in html
    assert "Per-head self-attention maps" in html and html.count("data:image/png;base64,") >= 3


def test_bert_fine_tuned_twice_with_the_same_seed_gives_identical_metrics(intent_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", intent_params)
    assert _main(path, "prepare", "--task", "intent") == 0
    folder = _train_eval(path, "bert")
    first = (folder / "metrics.json").read_bytes()
    metrics = json.loads(first)
    assert metrics["mlm_accuracy"] is not None and 0 <= metrics["mlm_accuracy"] <= 1
    info = json.loads((folder / "train_info.json").read_text())
    assert len(info["pretrain_log"]) == 2 and info["pretrain_seconds"] > 0
    state = paths.state_dir("intent", "synthetic", "bert", 0)
    assert (state / "pretrained.pt").is_file()
    # fine-tune the same pre-trained checkpoint again: identical metrics
    (folder / "model.pt").unlink()
    (state / "last.pt").unlink()
    _train_eval(path, "bert")
    assert (folder / "metrics.json").read_bytes() == first
    # and from scratch (pre-training again): identical too
    shutil.rmtree(state)
    (folder / "model.pt").unlink()
    _train_eval(path, "bert")
    assert (folder / "metrics.json").read_bytes() == first


def test_csv_data_through_the_cli_and_bad_file(intent_params, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    labels = ("greet", "leave", "thank")
    rows = [f'"{w} number {i} {XSS}",{lab}' for lab, w in zip(labels, ("hello", "bye", "thanks")) for i in range(12)]
    (tmp_path / "intents.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    intent_params["tasks"]["intent"]["data"] = {"source": "csv", "path": "intents.csv", "split_seed": 1}
    intent_params["tasks"]["intent"]["runs"] = {"self-attention": intent_params["tasks"]["intent"]["runs"]["self-attention"]}
    path = write_params(tmp_path / "params.yaml", intent_params)
    assert _main(path, "prepare", "--task", "intent") == 0
    manifest = json.loads((paths.prepared_dir("intent", "synthetic") / "manifest.json").read_text())
    assert manifest["source"] == "csv" and sum(manifest["utterances"].values()) == 36 and manifest["labels"] == 3
    assert manifest["gold_keywords"]["test"] is False
    metrics = json.loads((_train_eval(path, "self-attention") / "metrics.json").read_text())
    assert metrics["keyword_ratio"] is None and metrics["subset_accuracy"] is None and metrics["accuracy"] is not None
    assert _main(path, "aggregate", "--task", "intent") == 0 and _main(path, "report") == 0
    html = paths.report_html().read_text(encoding="utf-8")
    assert XSS not in html and "<script>alert" not in html and "&lt;" in html

    shutil.rmtree(tmp_path / "data")
    (tmp_path / "intents.csv").write_text("text,label\nhello,greet\n,leave\n")
    assert cli.main(["--params", str(path), "prepare", "--task", "intent"]) == 1
    err = capsys.readouterr().err
    assert "attnbench: error:" in err and "intents.csv" in err and "line 3" in err and "empty text" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t["runs"]["mean-pool"].update(attention="additive"),
     "tasks.intent.runs.mean-pool.attention: value 'additive' is not allowed"),
    (lambda t: t["runs"]["self-attention"].update(attention="none"),
     "tasks.intent.runs.self-attention.attention: value 'none' is not allowed"),
    (lambda t: t["runs"]["bert"].update(attention="additive"),
     "expected: multihead"),
    (lambda t: t["runs"]["mean-pool"].update(model="nope"),
     "tasks.intent.runs.mean-pool.model: value 'nope' is not allowed"),
    (lambda t: t["models"]["mean"].update(pooling="cls"),
     "tasks.intent.models.mean.pooling: value 'cls' is not allowed for encoder 'embedding'"),
    (lambda t: t["models"]["mean"].update(residual=True),
     "tasks.intent.models.mean.residual: value True is not allowed"),
    (lambda t: t["data"].update(source="csv", path="missing.csv"),
     "tasks.intent.data.path: file 'missing.csv' does not exist"),
])
def test_params_errors_name_the_key(edit, expected, intent_params, tmp_path, capsys):
    edit(intent_params["tasks"]["intent"])
    path = write_params(tmp_path / "params.yaml", intent_params)
    assert cli.main(["--params", str(path), "validate"]) == 2
    assert expected in capsys.readouterr().err


def test_notebook_runs_on_smoke_results(smoke_tree, monkeypatch):
    from attnbench.report.notebook import run_notebook

    folder, path = smoke_tree
    monkeypatch.chdir(folder)
    out = run_notebook(for_dataset(load_params(path), "intent", "synthetic"), "intent")
    assert out == paths.notebook("intent", "synthetic") == Path("reports/notebooks/intent/synthetic.ipynb")
    nb = json.loads(out.read_text(encoding="utf-8"))
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert paths.notebook("intent", "synthetic", "html").read_text(encoding="utf-8").count("data:image/png;base64,") >= 3
