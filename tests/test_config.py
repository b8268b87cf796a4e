"""params.yaml validation: each bad value stops everything with one message naming key, value and
what is allowed; exit code 2; nothing written."""
from __future__ import annotations

import copy

import pytest
import torch

from attnbench import cli
from attnbench.config import ParamsError, config_hash, resolve_run, retype_like, run_list
from attnbench.validation import load_params

from .conftest import ROOT, write_params


def _bad(params, edit):
    p = copy.deepcopy(params)
    edit(p)
    return p


def _set(path, value):
    def edit(p):
        node = p
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(path):
    def edit(p):
        node = p
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


T = ("tasks", "translation")
CASES = {
    "unknown mechanism": (_set(T + ("runs", "rnn-additive", "attention"), "additve"),
                          ["tasks.translation.runs.rnn-additive.attention", "'additve'", "additive", "local_p"]),
    "unknown task": (lambda p: p["tasks"].__setitem__("transltion", p["tasks"]["translation"]),
                     ["tasks.transltion", "unknown task", "translation"]),
    "wrong type": (_set(T + ("train", "batch_size"), "64"),
                   ["tasks.translation.train.batch_size", "'64'", "type integer"]),
    "out of range": (_set(T + ("train", "lr"), -0.1),
                     ["tasks.translation.train.lr", "-0.1", "> 0"]),
    "missing key": (_delete(T + ("train", "lr")),
                    ["tasks.translation.train", "missing key 'lr'"]),
    "unknown key": (_set(T + ("train", "learning_rate"), 0.1),
                    ["tasks.translation.train", "unknown key 'learning_rate'", "allowed keys", "lr"]),
    "empty seed list": (_set(("seeds",), []),
                        ["seeds", "[]", "at least 1 item"]),
    "unknown scale": (_set(("scale",), "huge"),
                      ["scale", "'huge'", "smoke, default, full"]),
    "unknown device": (_set(("device",), "tpu"),
                       ["device", "'tpu'", "auto, cpu, cuda"]),
    "negative seed": (_set(("seeds",), [0, -1]),
                      ["seeds.1", "-1", ">= 0"]),
    "repeated seed": (_set(("seeds",), [1, 1]),
                      ["seeds", "without repeated items"]),
    "model/mechanism mismatch": (_set(T + ("runs", "transformer", "attention"), "additive"),
                                 ["tasks.translation.runs.transformer.attention", "'additive'", "multihead"]),
    "bad run name": (lambda p: p["tasks"]["translation"]["runs"].__setitem__("bad name!", {"model": "rnn", "attention": "dot"}),
                     ["tasks.translation.runs", "'bad name!'"]),
    "missing data file": (_set(T + ("data",), {"source": "files", "files": {
        "train": {"tsv": "nope/train.tsv"}, "valid": {"tsv": "nope/valid.tsv"}, "test": {"tsv": "nope/test.tsv"}}}),
                          ["tasks.translation.data.files.train.tsv", "nope/train.tsv", "does not exist"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_params_are_refused_before_anything_is_written(case, params, tmp_path, monkeypatch, capsys):
    edit, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", _bad(params, edit))
    for argv in (["validate"], ["prepare", "--task", "translation"],
                 ["train", "--task", "translation", "--run", "rnn-none", "--seed", "0"]):
        code = cli.main(["--params", str(path), *argv])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith("attnbench: error: ")
        for fragment in expected:
            assert fragment in err, f"{fragment!r} missing from: {err}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "nothing may be written"


def test_duplicated_run_is_refused_with_its_line(tmp_path, capsys):
    text = (ROOT / "params.yaml").read_text()
    line = "      rnn-dot:        {model: rnn, attention: dot}\n"
    assert line in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(line, line + line.replace("dot}", "general}")))
    assert cli.main(["--params", str(path), "validate"]) == 2
    err = capsys.readouterr().err
    assert "'rnn-dot' is duplicated" in err and str(path) in err
    first = text.splitlines().index(line.rstrip("\n")) + 1
    assert f"line {first + 1}" in err and f"first defined on line {first}" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_refused(params, tmp_path, capsys):
    params["device"] = "cuda"
    path = write_params(tmp_path / "params.yaml", params)
    assert cli.main(["--params", str(path), "validate"]) == 2
    err = capsys.readouterr().err
    assert "device" in err and "'cuda'" in err and "no CUDA device" in err and "auto, cpu" in err


def test_not_yaml_is_refused(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text("scale: [smoke\n")
    assert cli.main(["--params", str(path), "validate"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_overrides_reach_the_validator(tmp_path, capsys):
    assert cli.main(["--params", str(ROOT / "params.yaml"), "--set", "tasks.translation.train.patience=0", "validate"]) == 2
    assert "tasks.translation.train.patience" in capsys.readouterr().err


def test_shipped_params_are_valid_and_resolve(params):
    checked = load_params(ROOT / "params.yaml")
    runs = run_list(checked)
    assert len(runs) == sum(len(t["runs"]) for t in params["tasks"].values()) * len(params["seeds"])
    cfg = resolve_run(checked, "translation", "rnn-local_p", 0)
    assert cfg["attention"] == "local_p" and cfg["size"] == params["tasks"]["translation"]["scales"][params["scale"]]
    with pytest.raises(ParamsError, match="no run named 'rnn-nope'"):
        resolve_run(checked, "translation", "rnn-nope", 0)


def test_command_line_strings_take_the_types_of_params_yaml():
    like = {"seeds": [0], "scale": "default", "tasks": {"load": {"datasets": ["synthetic"], "train": {"lr": 0.001}}}}
    given = {"seeds": ["0", "1", "2"], "scale": "smoke",
             "tasks": {"load": {"datasets": ["synthetic", "etth2"], "train": {"lr": "0.01"}}, "new": {"x": "3"}}}
    assert retype_like(given, like) == {"seeds": [0, 1, 2], "scale": "smoke",
                                        "tasks": {"load": {"datasets": ["synthetic", "etth2"], "train": {"lr": 0.01}},
                                                  "new": {"x": "3"}}}
    assert retype_like({"seeds": ["0", "[unclosed"]}, like) == {"seeds": [0, "[unclosed"]}


def test_a_seed_trains_the_same_whichever_seeds_the_grid_lists():
    """Issue 23: one process per run and seed, so seed 0 of a three-seed grid is seed 0 of the one-seed grid:
    the same configuration and config hash, hence the same checkpoint identity (Snakemake and DVC keep it
    when seeds are added), for one run of every task; seeds of a grid differ in `seed` alone."""
    one = load_params(ROOT / "params.yaml")
    one["seeds"] = [0]
    three = copy.deepcopy(one)
    three["seeds"] = [0, 1, 2]
    for task, section in one["tasks"].items():
        run = next(iter(section["runs"]))
        solo, grid = resolve_run(one, task, run, 0), resolve_run(three, task, run, 0)
        assert solo == grid and config_hash(solo) == config_hash(grid), (task, run)
        other = resolve_run(three, task, run, 2)
        assert {k for k in other if other[k] != grid[k]} == {"seed"}, (task, run)
        assert config_hash(other) != config_hash(grid), (task, run)
