"""The report's seed-noise comparison (Welch's t-test over seeds), on hand-made values."""
from __future__ import annotations

import pandas as pd
import pytest

from attnbench.report import noise


def test_a_significant_gap_is_ahead_and_says_its_p_value():
    c = noise.compare([0.80, 0.81, 0.82], [0.70, 0.71, 0.70])
    assert c["outcome"] == "ahead" and c["noise"] and c["p"] < noise.ALPHA
    assert (c["n_a"], c["n_b"]) == (3, 3) and c["diff"] == pytest.approx(0.1067, abs=1e-4)
    assert c["text"].startswith("+0.107, Welch p ") and c["text"].endswith(", 3 vs 3 seeds")
    assert noise.holds(c) is True
    back = noise.compare([0.70, 0.71, 0.70], [0.80, 0.81, 0.82])
    assert back["outcome"] == "behind" and noise.holds(back) is False


def test_lower_is_better_flips_the_outcome_not_the_difference():
    c = noise.compare([5.0, 5.1, 4.9], [7.0, 7.1, 6.9], higher_is_better=False, digits=2)
    assert c["outcome"] == "ahead" and c["diff_text"] == "-2.00"


def test_overlapping_noisy_seeds_are_a_tie_within_noise():
    c = noise.compare([0.80, 0.60, 0.75], [0.70, 0.78, 0.62])
    assert c["diff"] > 0 and c["p"] > noise.ALPHA
    assert c["outcome"] == "tie" and noise.holds(c) is None
    assert c["text"].endswith("3 vs 3 seeds: within noise") and noise.paren(c).endswith(": within noise")


def test_one_seed_is_decided_by_the_means_without_a_noise_estimate():
    c = noise.compare([0.7001], [0.7])
    assert c["outcome"] == "ahead" and c["p"] is None and not c["noise"]
    assert c["test_text"] == "one seed: no noise estimate" and noise.paren(c) == ""
    assert noise.one_seed_note([c]) == "; one seed: no noise estimate"
    mixed = noise.compare([0.6], [0.7, 0.8, 0.9])
    assert mixed["outcome"] == "behind" and mixed["test_text"] == "1 vs 3 seeds: no noise estimate"


@pytest.mark.parametrize("a, b", [([0.5], [0.5]), ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])
def test_identical_values_are_a_tie(a, b):
    c = noise.compare(a, b)
    assert c["outcome"] == "tie" and c["diff"] == 0
    # one seed each: equal means are no win, as the means alone always read them; with seeds: within noise
    assert noise.holds(c) is (None if len(a) > 1 else False)


def test_constant_but_different_seeds_are_significant():
    assert noise.compare([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], higher_is_better=False)["outcome"] == "ahead"


def test_within_noise_is_the_matrix_rule():
    assert noise.within_noise([50, 53, 47], [49, 52, 48]) is True
    assert noise.within_noise([50, 53, 47], [30, 30.5, 29.5]) is False
    assert noise.within_noise([50], [49, 52, 48]) is None


def test_values_come_from_the_seeds_or_else_the_mean():
    run = {"ok": pd.DataFrame({"bleu": [1.0, float("nan"), 3.0]}), "mean": {"bleu": 2.0, "chrf": 4.0}}
    assert noise.values(run, "bleu") == [1.0, 3.0]
    assert noise.values(run, "chrf") == [4.0]
    assert noise.values({"mean": {"bleu": None}}, "bleu") == []


def test_verdict_of_parts():
    assert noise.verdict([True, True]) == "supported"
    assert noise.verdict([True, True], can_support=False) == "partly supported"
    assert noise.verdict([True, None]) == "partly supported"
    assert noise.verdict([None, False]) == "inconclusive"
    assert noise.verdict([False, False]) == "not supported"


def test_the_tables_name_their_test():
    assert noise.noise_test(True) == "Welch's t-test over seeds, α = 0.05"
    assert "no noise estimate" in noise.noise_test(False)
