"""Datasets as a dimension of the grid (task x dataset x run x seed): a dataset's view of its task's section,
the refusal of an undefined dataset, the grid's order, the run config, and a real dataset's summary."""
from __future__ import annotations

import copy
import json

import pytest

from attnbench import cli, paths
from attnbench.config import (
    SYNTHETIC,
    ParamsError,
    RunSpec,
    dataset_names,
    dataset_options,
    dataset_section,
    for_dataset,
    resolve_run,
    run_list,
)
from attnbench.validation import validate

from .conftest import write_params

MINI = {  # a real dataset of translation, as params.yaml would define it under dataset_options
    "title": "a tiny parallel corpus",
    "data": {"source": "files", "files": {"train": {"tsv": "train.tsv"}, "valid": {"tsv": "valid.tsv"},
                                           "test": {"tsv": "test.tsv"}}},
    "scales": {"smoke": {"epochs": 1, "max_len": 10}},
    "train": {"lr": 0.01},
    "eval": {"heatmap_sentences": 2},
    "models": {"rnn": {"hidden": 8}},
}


@pytest.fixture
def grid(params) -> dict:
    """The shipped params with translation's dataset `mini` defined (not selected)."""
    params["tasks"]["translation"]["dataset_options"]["mini"] = copy.deepcopy(MINI)
    return params


def test_dataset_section_merges_sizes_training_evaluation_and_models_and_replaces_data(grid):
    before = copy.deepcopy(grid)
    task = grid["tasks"]["translation"]
    mini = dataset_section(grid, "translation", "mini")
    assert mini["data"] == MINI["data"]                       # replaced whole: nothing of the synthetic spec stays
    assert "seed" not in mini["data"] and "lowercase" not in mini["data"]
    assert mini["scales"]["smoke"] == {**task["scales"]["smoke"], "epochs": 1, "max_len": 10}
    assert mini["scales"]["default"] == task["scales"]["default"] and mini["scales"]["full"] == task["scales"]["full"]
    assert mini["train"] == {**task["train"], "lr": 0.01}
    assert mini["eval"] == {**task["eval"], "heatmap_sentences": 2}
    assert mini["models"]["rnn"] == {**task["models"]["rnn"], "hidden": 8}
    assert mini["models"]["transformer"] == task["models"]["transformer"]
    assert mini["runs"] == task["runs"]                       # the same runs, compared across datasets
    assert "datasets" not in mini and "dataset_options" not in mini and "title" not in mini
    assert grid == before                                     # params are not changed by the merge
    # the synthetic data: the task's own section, without the grid's dataset keys
    synthetic = dataset_section(grid, "translation", SYNTHETIC)
    assert synthetic == {k: v for k, v in task.items() if k not in ("datasets", "dataset_options")}
    # the view the steps of one (task, dataset) read
    view = for_dataset(grid, "translation", "mini")
    assert view["dataset"] == "mini" and view["tasks"]["translation"] == mini
    assert {t: s for t, s in view["tasks"].items() if t != "translation"} == \
        {t: s for t, s in grid["tasks"].items() if t != "translation"}
    assert grid == before


def test_selecting_an_undefined_dataset_is_a_params_error_naming_the_key_and_the_defined_ones(grid, tmp_path, capsys):
    grid["tasks"]["translation"]["datasets"] = [SYNTHETIC, "nope"]
    with pytest.raises(ParamsError) as err:
        validate(grid)
    message = str(err.value)
    assert "tasks.translation.datasets" in message and "'nope'" in message
    assert "synthetic" in message and "mini" in message and "dataset_options" in message
    # the same through the CLI: exit 2, one line, nothing written
    path = write_params(tmp_path / "params.yaml", grid)
    assert cli.main(["--params", str(path), "validate"]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "tasks.translation.datasets" in out and "'nope'" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    # asking for it by name (a step's --dataset) is refused the same way
    for ask in (lambda: dataset_options(grid, "translation", "nope"), lambda: dataset_section(grid, "translation", "nope"),
                lambda: resolve_run(grid, "translation", "rnn-dot", 0, "nope")):
        with pytest.raises(ParamsError, match=r"tasks\.translation\.dataset_options.*'nope'.*synthetic, .*mini"):
            ask()


def test_run_list_is_task_by_dataset_by_run_by_seed(grid):
    t = grid["tasks"]["translation"]
    t["runs"] = {name: t["runs"][name] for name in ("rnn-dot", "transformer")}
    t["datasets"] = [SYNTHETIC, "mini"]
    d = grid["tasks"]["documents"]
    d["runs"] = {name: d["runs"][name] for name in list(d["runs"])[:1]}
    grid["tasks"] = {"translation": t, "documents": d}
    grid["seeds"] = [0, 1]
    expected = [RunSpec(task, dataset, run, seed)
                for task in ("translation", "documents")
                for dataset in ([SYNTHETIC, "mini"] if task == "translation" else [SYNTHETIC])
                for run in grid["tasks"][task]["runs"]
                for seed in (0, 1)]
    assert run_list(grid) == expected and len(expected) == 2 * 2 * 2 + 1 * 1 * 2
    assert run_list(grid)[:5] == [RunSpec("translation", SYNTHETIC, "rnn-dot", 0),
                                  RunSpec("translation", SYNTHETIC, "rnn-dot", 1),
                                  RunSpec("translation", SYNTHETIC, "transformer", 0),
                                  RunSpec("translation", SYNTHETIC, "transformer", 1),
                                  RunSpec("translation", "mini", "rnn-dot", 0)]
    assert RunSpec("translation", "mini", "rnn-dot", 1).key == "translation/mini/rnn-dot/seed1"
    assert dataset_names(grid, "translation") == [SYNTHETIC, "mini"]
    assert dataset_names(grid, "documents") == [SYNTHETIC]
    # a task without the keys runs on its synthetic data only
    del d["datasets"], d["dataset_options"]
    assert [s.dataset for s in run_list(grid) if s.task == "documents"] == [SYNTHETIC, SYNTHETIC]


def test_resolve_run_on_synthetic_is_the_run_config_of_before_plus_the_dataset(params):
    scale = params["scale"]
    for task, section in params["tasks"].items():
        for run, spec in section["runs"].items():
            before = {  # what resolve_run returned before datasets were a dimension
                "task": task, "run": run, "seed": 3, "scale": scale, "data": section["data"],
                "size": section["scales"][scale], "train": section["train"], "model": spec["model"],
                "model_options": section["models"][spec["model"]], "attention": spec["attention"],
                "attention_options": spec.get("options", {}), "eval": section["eval"],
            }
            assert resolve_run(params, task, run, 3) == {**before, "dataset": SYNTHETIC}, (task, run)
            assert resolve_run(params, task, run, 3, SYNTHETIC) == resolve_run(params, task, run, 3)


def test_resolve_run_on_a_real_dataset_takes_its_overrides(grid):
    grid["scale"] = "smoke"
    cfg = resolve_run(grid, "translation", "rnn-additive", 0, "mini")
    synthetic = resolve_run(grid, "translation", "rnn-additive", 0)
    assert cfg["dataset"] == "mini" and cfg["data"] == MINI["data"]
    assert cfg["train"]["lr"] == 0.01 and cfg["model_options"]["hidden"] == 8 and cfg["eval"]["heatmap_sentences"] == 2
    assert cfg["size"] == {**synthetic["size"], "epochs": 1, "max_len": 10}
    grid["scale"] = "default"  # a scale the dataset does not override: the task's sizes
    assert resolve_run(grid, "translation", "rnn-additive", 0, "mini")["size"] == grid["tasks"]["translation"]["scales"]["default"]
    assert {k: cfg[k] for k in ("task", "run", "seed", "model", "attention", "attention_options")} == \
        {k: synthetic[k] for k in ("task", "run", "seed", "model", "attention", "attention_options")}


def test_a_real_datasets_summary_has_its_own_rows_and_paths(grid, tmp_path, monkeypatch):
    """The aggregate step of (translation, mini) reads data/results/translation/mini/, not synthetic's."""
    from attnbench.report.aggregate import aggregate, collect

    monkeypatch.chdir(tmp_path)
    grid["seeds"] = [0]
    t = grid["tasks"]["translation"]
    t["runs"] = {name: t["runs"][name] for name in ("rnn-none", "rnn-dot")}
    t["datasets"] = [SYNTHETIC, "mini"]
    folder = paths.run_dir("translation", "mini", "rnn-dot", 0)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"task": "translation", "dataset": "mini", "run": "rnn-dot",
                                                     "seed": 0, "bleu": 12.5, "chrf": 30.0}))
    table = aggregate(for_dataset(grid, "translation", "mini"), "translation")
    assert table.attrs["dataset"] == "mini" and list(table["dataset"]) == ["mini", "mini"]
    assert list(zip(table["run"], table["status"])) == [("rnn-none", "missing"), ("rnn-dot", "ok")]
    assert "data/results/translation/mini/rnn-none/seed0" in table.set_index("run").loc["rnn-none", "reason"]
    assert table.set_index("run").loc["rnn-dot", "bleu"] == 12.5
    assert paths.summary_csv("translation", "mini").is_file() and paths.summary_json("translation", "mini").is_file()
    assert json.loads(paths.summary_json("translation", "mini").read_text())["rnn-dot"]["seed0"]["bleu"] == 12.5
    synthetic = collect(for_dataset(grid, "translation", SYNTHETIC), "translation")
    assert set(synthetic["status"]) == {"missing"} and set(synthetic["dataset"]) == {SYNTHETIC}
