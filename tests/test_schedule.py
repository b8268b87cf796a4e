"""Longest run first: the run-cost table, the priorities from it, and Snakemake's start order."""
from __future__ import annotations

import re

import pytest
import yaml

from attnbench import priorities as schedule
from attnbench.config import run_list
from attnbench.errors import DataError

from .conftest import BIN, ROOT, load_params, run, tiny_translation_copy


def _table(path, body: str):
    path.write_text("# a comment\ntask\trun\tseconds\n" + body)
    return path


def test_costs_are_read_and_runs_missing_from_the_table_get_the_median(tmp_path):
    costs = schedule.read_costs(_table(tmp_path / "c.tsv", "a\tlong\t300\na\tshort\t10\nb\tmid\t50\n"))
    assert costs == {("a", "long"): 300.0, ("a", "short"): 10.0, ("b", "mid"): 50.0}

    class Run:
        def __init__(self, task, run):
            self.task, self.run = task, run

    prio = schedule.priorities(costs, [Run("a", "long"), Run("a", "short"), Run("b", "new")])
    assert prio == {("a", "long"): 300, ("a", "short"): 10, ("b", "new"): 50}
    assert schedule.read_costs(tmp_path / "absent.tsv") == {}


@pytest.mark.parametrize("body, message", [
    ("a\tlong\tfast\n", r"line 3 \(a/long\): seconds 'fast' is not a number"),
    ("a\tlong\t-4\n", r"line 3 \(a/long\): seconds must be >= 0"),
])
def test_a_bad_cost_row_is_named(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        schedule.read_costs(_table(tmp_path / "c.tsv", body))


def test_a_table_with_other_columns_is_refused(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("task\trun\tminutes\na\tb\t3\n")
    with pytest.raises(DataError, match="c.tsv: expected the tab-separated columns task, run, seconds"):
        schedule.read_costs(path)


def test_measured_costs_add_train_and_evaluate_and_average_the_seeds(tmp_path):
    def bench(task, run, seed, step, seconds):
        path = tmp_path / task / "synthetic" / run / f"seed{seed}.{step}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t10\n")

    bench("t", "r", 0, "train", 100), bench("t", "r", 0, "evaluate", 10)
    bench("t", "r", 1, "train", 80), bench("t", "r", 1, "evaluate", 10)
    bench("t", "half", 0, "train", 50)   # never evaluated: left out
    assert schedule.measured_costs(tmp_path) == {("t", "r"): 100.0}
    schedule.write_costs(schedule.measured_costs(tmp_path), tmp_path / "out.tsv", note="test")
    assert schedule.read_costs(tmp_path / "out.tsv") == {("t", "r"): 100.0}


def test_the_shipped_table_covers_every_run_of_the_grid():
    costs = schedule.read_costs(ROOT / schedule.COSTS_TSV)
    missing = {(r.task, r.run) for r in run_list(load_params())} - set(costs)
    assert not missing, f"runs without an expected cost in workflow/run_costs.tsv: {sorted(missing)}"


def test_snakemake_starts_the_most_expensive_run_first(tmp_path):
    runs = ("rnn-none", "rnn-dot", "rnn-additive")
    work = tiny_translation_copy(tmp_path / "w", runs=runs)
    wanted = ("rnn-dot", "rnn-none", "rnn-additive")   # not the params order, not alphabetical
    _table(work / schedule.COSTS_TSV, "".join(f"translation\t{r}\t{300 - 100 * i}\n" for i, r in enumerate(wanted)))
    proc = run([str(BIN / "snakemake"), "data/summary/translation/synthetic.csv", "--cores", "1", "--resources", "gpu=1"], work)
    log = proc.stdout + proc.stderr
    started = re.findall(r"rule train:\s*\n(?:.*\n)*?\s+wildcards: task=translation, dataset=synthetic, run=([\w-]+), seed=0", log)
    assert tuple(started) == wanted, log[-3000:]
    assert yaml.safe_load((work / "params.yaml").read_text())["scale"] == "smoke"
