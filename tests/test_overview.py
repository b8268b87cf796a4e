"""The report's cross-task matrix and claims table, on hand-made metrics: verdicts and ties are
computed, never typed."""
from __future__ import annotations

import json

import pytest

from attnbench import paths
from attnbench.config import REPO_ROOT, for_dataset
from attnbench.validation import load_params
from attnbench.report import overview
from attnbench.tasks.translation import report as section


def _params(seeds, scale="default"):
    p = load_params(REPO_ROOT / "params.yaml", {"scale": scale, "seeds": seeds})
    runs = p["tasks"]["translation"]["runs"]
    p["tasks"] = {"translation": {**p["tasks"]["translation"],
                                  "runs": {k: runs[k] for k in ("rnn-none", "rnn-additive", "rnn-dot", "transformer")}}}
    return p


def _write(run, seed, bleu, short, long, attention):
    folder = paths.run_dir("translation", "synthetic", run, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({
        "task": "translation", "dataset": "synthetic", "run": run, "seed": seed, "model": "transformer" if run == "transformer" else "rnn",
        "attention": attention, "bleu": bleu, "chrf": bleu, "aer": None, "exact_match": 0.0,
        "bleu_by_length": {"1-10": short, "11-20": (short + long) / 2, "21-30": long},
        "sentences_by_length": {"1-10": 10, "11-20": 10, "21-30": 10}}))
    (folder / "train_info.json").write_text(json.dumps({"train_seconds": 10.0, "parameters": 100}))


MECH = {"rnn-none": "none", "rnn-additive": "additive", "rnn-dot": "dot", "transformer": "multihead"}


def _tree(seeds, table):
    for run, per_seed in table.items():
        for seed, (bleu, short, long) in zip(seeds, per_seed):
            _write(run, seed, bleu, short, long, MECH[run])


def _c1(params):
    ctx = section.context(for_dataset(params, "translation", "synthetic"), "translation", out_dir=paths.REPORTS)
    c1 = next(c for c in overview.claims([{"task": "translation", "ctx": ctx}]) if c["id"] == "C1")
    assert c1["task"] == "translation" and c1["dataset"] == "synthetic"
    return c1


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_c1_supported_when_attention_wins_more_on_long_sentences():
    _tree([0], {"rnn-none": [(10, 30, 2)], "rnn-additive": [(60, 70, 50)], "rnn-dot": [(55, 65, 45)],
                "transformer": [(50, 60, 40)]})
    c1 = _c1(_params([0]))
    assert c1["verdict"] == "supported" and c1["css"] == "good"


def test_c1_not_supported_when_no_attention_run_beats_the_fixed_context():
    _tree([0], {"rnn-none": [(40, 50, 30)], "rnn-additive": [(30, 60, 10)], "rnn-dot": [(35, 55, 20)],
                "transformer": [(20, 30, 10)]})
    assert _c1(_params([0]))["verdict"] == "not supported"


def test_c1_inconclusive_when_nothing_has_learnt():
    _tree([0], {"rnn-none": [(0.1, 0.2, 0.0)], "rnn-additive": [(0.3, 0.4, 0.1)], "rnn-dot": [(0.2, 0.2, 0.1)],
                "transformer": [(0.0, 0.0, 0.0)]})
    assert _c1(_params([0]))["verdict"] == "inconclusive"


def test_matrix_marks_the_best_and_a_tie_within_noise_over_seeds():
    seeds = [0, 1, 2]
    _tree(seeds, {"rnn-none": [(10, 1, 1), (11, 1, 1), (9, 1, 1)],
                  "rnn-additive": [(50, 1, 1), (53, 1, 1), (47, 1, 1)],   # best, noisy
                  "rnn-dot": [(49, 1, 1), (52, 1, 1), (48, 1, 1)],        # within noise of the best
                  "transformer": [(30, 1, 1), (30.5, 1, 1), (29.5, 1, 1)]})  # clearly below
    m = overview.matrix(_params(seeds))
    cells = {row["mechanism"]: row["cells"][0] for row in m["rows"]}
    assert cells["additive"]["best"] and not cells["additive"]["tie"]
    assert cells["dot"]["tie"] and not cells["dot"]["best"]
    assert not cells["multihead"]["tie"] and not cells["none"]["tie"]
    assert cells["additive"]["text"] == "50.00 ± 3.00" and cells["additive"]["seeds"] == 3
    assert "Welch" in m["noise_test"]
    assert [r["mechanism"] for r in m["rows"]][0] == "none"
    column = m["columns"][0]
    assert (column["task"], column["dataset"], column["key"], column["anchor"]) == ("translation", "synthetic",
                                                                                   "translation", "translation")


def test_matrix_marks_no_best_and_no_tie_at_smoke_scale():
    seeds = [0, 1, 2]
    _tree(seeds, {"rnn-none": [(10, 1, 1), (11, 1, 1), (9, 1, 1)],
                  "rnn-additive": [(50, 1, 1), (53, 1, 1), (47, 1, 1)],
                  "rnn-dot": [(49, 1, 1), (52, 1, 1), (48, 1, 1)],
                  "transformer": [(30, 1, 1), (30.5, 1, 1), (29.5, 1, 1)]})
    cells = [c for row in overview.matrix(_params(seeds, scale="smoke"))["rows"] for c in row["cells"] if c]
    assert len(cells) == 4 and not any(c["best"] or c["tie"] for c in cells)


def test_matrix_with_one_seed_says_it_cannot_mark_ties():
    _tree([0], {"rnn-none": [(10, 1, 1)], "rnn-additive": [(50, 1, 1)], "rnn-dot": [(49.9, 1, 1)],
                "transformer": [(30, 1, 1)]})
    m = overview.matrix(_params([0]))
    assert "no noise estimate" in m["noise_test"]
    assert not any(c and c["tie"] for row in m["rows"] for c in row["cells"])


@pytest.mark.parametrize("bleu, verdict", [
    # attention ahead on average (+3.7 and +2.3 BLEU) but within the seeds' noise: the gain is a tie, so only the
    # growth with length holds
    ({"rnn-none": [20, 35, 5], "rnn-additive": [25, 10, 36], "rnn-dot": [22, 38, 7]}, "partly supported"),
    ({"rnn-none": [10, 10.5, 9.5], "rnn-additive": [30, 30.5, 29.5], "rnn-dot": [28, 28.5, 27.5]}, "supported"),
])
def test_c1_attention_wins_only_beyond_seed_noise(bleu, verdict):
    seeds = [0, 1, 2]
    _tree(seeds, {"transformer": [(5, 5, 5)] * 3,
                  **{run: [(b, 30, 2) if run == "rnn-none" else (b, 40, 40) for b in values] for run, values in bleu.items()}})
    c1 = _c1(_params(seeds))
    assert c1["verdict"] == verdict, c1
    assert "beyond seed noise" in c1["evidence"] and "Welch's t-test" in c1["evidence"]
    assert ("within noise" in c1["evidence"]) is (verdict == "partly supported")
