"""The CLI as a user drives it: a new mechanism through every step, real-data files, bad corpora."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from attnbench import attention, cli
from attnbench.attention import Attention, register
from attnbench.attention.base import masked_softmax

from .conftest import write_params


class FirstTokenAttention(Attention):
    """Toy mechanism for the extension test: all weight on the first real key, plus a learned gate."""

    produces_alignment = True
    description = "toy: attend to the first token"

    def __init__(self, query_dim, key_dim, value_dim, gate: float = 1.0):
        super().__init__(query_dim, key_dim, value_dim)
        self.gate = torch.nn.Parameter(torch.tensor(gate))

    def score(self, q3, keys):
        scores = torch.full(q3.shape[:2] + keys.shape[1:2], -1e4, device=keys.device)
        scores[..., 0] = 0.0
        return scores * self.gate


@pytest.fixture
def toy_mechanism():
    register("toy_first")(FirstTokenAttention)
    yield "toy_first"
    attention.REGISTRY.pop("toy_first")


def _steps(path, run):
    for argv in (["prepare", "--task", "translation"],
                 ["train", "--task", "translation", "--run", run, "--seed", "0"],
                 ["evaluate", "--task", "translation", "--run", run, "--seed", "0"]):
        assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv
    for step in ("train", "evaluate"):  # each job records its start-up for the report's throughput table
        timing = json.loads(Path("logs/timing/translation/synthetic", run, f"seed0.{step}.json").read_text())
        assert timing["step"] == step and timing["started_at"] <= timing["ready_at"] <= timing["finished_at"]
        assert 0 < timing["startup_s"] <= timing["wall_s"]


def test_a_new_mechanism_is_one_class_and_one_registry_line(toy_mechanism, tiny_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_params["tasks"]["translation"]["runs"] = {"rnn-toy": {"model": "rnn", "attention": toy_mechanism,
                                                              "options": {"gate": 2.0}}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    _steps(path, "rnn-toy")
    metrics = json.loads((tmp_path / "data/results/translation/synthetic/rnn-toy/seed0/metrics.json").read_text())
    assert metrics["attention"] == "toy_first" and metrics["aer"] is not None and metrics["dataset"] == "synthetic"
    weights = dict(__import__("numpy").load(tmp_path / "data/results/translation/synthetic/rnn-toy/seed0/attention.npz"))
    assert all(w[:, 0].min() > 0.99 for k, w in weights.items() if k.startswith("attn_"))


def test_real_data_files_tsv_and_gzip_with_alignments(tiny_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = ["a b c", "d e", "f g h i", "b a"] * 10
    tgt = ["A B C", "E D", "F G H I", "A B"] * 10
    (tmp_path / "train.src").write_text("\n".join(src) + "\n")
    with gzip.open(tmp_path / "train.tgt.gz", "wt") as fh:
        fh.write("\n".join(tgt) + "\n")
    (tmp_path / "valid.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(src, tgt)))
    (tmp_path / "test.src").write_text("\n".join(src) + "\n")
    (tmp_path / "test.tgt").write_text("\n".join(tgt) + "\n")
    (tmp_path / "test.align").write_text("\n".join(["0-0 1-1 2-2", "0-1 1-0", "0-0 1-1 2-2 3-3", "0-1 1-0"] * 10) + "\n")
    tiny_params["tasks"]["translation"]["data"] = {"source": "files", "files": {
        "train": {"source": "train.src", "target": "train.tgt.gz"},
        "valid": {"tsv": "valid.tsv"},
        "test": {"source": "test.src", "target": "test.tgt", "alignments": "test.align"}}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    _steps(path, "rnn-general")
    manifest = json.loads((tmp_path / "data/prepared/translation/synthetic/manifest.json").read_text())
    assert manifest["source"] == "files" and manifest["pairs"] == {"train": 40, "valid": 40, "test": 40}
    assert manifest["gold_alignments"] == {"train": False, "valid": False, "test": True}
    metrics = json.loads((tmp_path / "data/results/translation/synthetic/rnn-general/seed0/metrics.json").read_text())
    assert metrics["aer"] is not None and 0.0 <= metrics["aer"] <= 1.0


BAD_CORPORA = {
    "mismatched line counts": ({"train.src": b"a b\nc d\ne f\n", "train.tgt": b"A B\nC D\n"},
                               ["train.src", "train.tgt", "3", "2"]),
    "empty file": ({"train.src": b"\n\n", "train.tgt": b"A\n"}, ["train.src", "empty"]),
    "undecodable bytes": ({"train.src": b"a b\nc \xff d\n", "train.tgt": b"A B\nC D\n"}, ["train.src", "line 2"]),
    "tsv line without a tab": ({"train.tsv": b"a b\tA B\nc d C D\n"}, ["train.tsv", "line 2"]),
    "empty target side": ({"train.src": b"a b\nc d\n", "train.tgt": b"A B\n \n"}, ["train.tgt", "line 2"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CORPORA))
def test_bad_corpus_files_are_named_and_nothing_is_prepared(case, tiny_params, tmp_path, monkeypatch, capsys):
    files, expected = BAD_CORPORA[case]
    monkeypatch.chdir(tmp_path)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    good = tmp_path / "ok.tsv"
    good.write_text("x y\tX Y\n")
    train = {"tsv": "train.tsv"} if "train.tsv" in files else {"source": "train.src", "target": "train.tgt"}
    tiny_params["tasks"]["translation"]["data"] = {"source": "files", "files": {
        "train": train, "valid": {"tsv": "ok.tsv"}, "test": {"tsv": "ok.tsv"}}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    assert cli.main(["--params", str(path), "prepare", "--task", "translation"]) == 1
    err = capsys.readouterr().err
    assert "attnbench: error:" in err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} missing from: {err}"
    assert not (tmp_path / "data").exists()


def test_help_lists_every_step(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("validate", "prepare", "train", "evaluate", "aggregate", "notebook", "report"):
        assert command in out


def test_masked_softmax_is_what_toy_mechanisms_build_on():
    w = masked_softmax(torch.zeros(1, 3), torch.tensor([[True, True, False]]))
    assert torch.allclose(w, torch.tensor([[0.5, 0.5, 0.0]]))
