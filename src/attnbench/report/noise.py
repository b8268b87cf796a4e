"""Seed noise: whether two runs differ beyond the seed-to-seed spread (Welch's t-test over seeds).

One place for the test the report uses: the cross-task matrix marks ties with `within_noise`, and the
sections' claims decide each "X beats Y" with `compare` (or `compare_runs`, on two run entries), so a
difference within noise is a tie, never a win or a loss. With fewer than two seeds on a side there is
no noise estimate: the means decide, and the comparison says so.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from scipy import stats

from .numbers import finite

ALPHA = 0.05
WELCH = f"Welch's t-test over seeds, α = {ALPHA}"
NO_ESTIMATE = "one seed per run, so no noise estimate"


def noise_test(multi_seed: bool) -> str:
    """The test a table's comparisons used, in the report's words."""
    return WELCH if multi_seed else NO_ESTIMATE


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sided p-value of a vs b; None when either side has fewer than two values; 1.0 when
    every value on both sides is the same."""
    if len(a) < 2 or len(b) < 2:
        return None
    if all(v == a[0] for v in [*a, *b]):
        return 1.0
    with warnings.catch_warnings():   # constant seeds on a side: scipy warns, and its p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
    return 1.0 if math.isnan(p) else p


def within_noise(best: list[float], other: list[float]) -> bool | None:
    """True when the difference to the best is not significant at ALPHA; None when either side has
    fewer than two seeds (no noise estimate)."""
    p = welch_p(best, other)
    return None if p is None else p > ALPHA


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def compare(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True, digits: int = 3) -> dict[str, Any]:
    """a against b (each one value per seed): diff (mean a − mean b), n_a, n_b, p (Welch, None without a
    noise estimate), noise (whether there is one), p_text ('p = 0.03'), outcome ('ahead' / 'behind' for a, or 'tie': not
    significant at ALPHA, or identical values), and texts: diff_text ('+0.012'), test_text ('Welch p =
    0.03, 3 vs 3 seeds' or 'one seed: no noise estimate') and text (both, ': within noise' on a tie).
    With fewer than two seeds on a side the means decide (equal means: a tie)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("compare needs at least one value on each side")
    diff = sum(a) / len(a) - sum(b) / len(b)
    p = welch_p(a, b)
    better = diff > 0 if higher_is_better else diff < 0
    if diff == 0 or (p is not None and p > ALPHA):
        outcome = "tie"
    else:
        outcome = "ahead" if better else "behind"
    diff_text = f"{diff:+.{digits}f}"
    if p is not None:
        test_text = f"Welch {_p_text(p)}, {len(a)} vs {len(b)} seeds"
    elif len(a) == len(b) == 1:
        test_text = "one seed: no noise estimate"
    else:
        test_text = f"{len(a)} vs {len(b)} seeds: no noise estimate"
    text = f"{diff_text}, {test_text}" + (": within noise" if outcome == "tie" and p is not None else "")
    return {"diff": diff, "n_a": len(a), "n_b": len(b), "p": p, "noise": p is not None, "outcome": outcome,
            "p_text": None if p is None else _p_text(p), "diff_text": diff_text, "test_text": test_text, "text": text}


def values(run: dict, metric: str, scale: float = 1.0) -> list[float]:
    """A run entry's finite per-seed values of `metric` (its `ok` frame), else its mean alone (entries
    built without per-seed rows), times `scale`."""
    ok = run.get("ok")
    if ok is not None and metric in ok:
        return [float(v) * scale for v in ok[metric] if finite(v)]
    mean = (run.get("mean") or {}).get(metric)
    return [float(mean) * scale] if finite(mean) else []


def compare_runs(a: dict, b: dict, metric: str, higher_is_better: bool = True, digits: int = 3) -> dict[str, Any]:
    """`compare` of two run entries' per-seed `metric`."""
    return compare(values(a, metric), values(b, metric), higher_is_better, digits)


def holds(c: dict) -> bool | None:
    """Whether a comparison shows a ahead of b: True ahead (beyond noise when there is an estimate),
    None within noise (a tie with a noise estimate: neither a win nor a loss), False otherwise (behind, or
    equal single values: no win, as the means alone always read it)."""
    if c["outcome"] == "ahead":
        return True
    return None if c["outcome"] == "tie" and c["noise"] else False


def paren(c: dict, lead: str = ", ") -> str:
    """What a claim's evidence puts after a difference it already quotes: `lead` and the test's figures when
    there is a noise estimate (', Welch p = 0.03, 3 vs 3 seeds: within noise'), else nothing."""
    if not c["noise"]:
        return ""
    return f"{lead}{c['test_text']}" + (": within noise" if c["outcome"] == "tie" else "")


def one_seed_note(comparisons: Sequence[dict]) -> str:
    """'; one seed: no noise estimate' when a comparison had no noise estimate, else ''."""
    return "; one seed: no noise estimate" if any(not c["noise"] for c in comparisons) else ""


def verdict(parts: Sequence[bool | None], can_support: bool = True) -> str:
    """A claim made of parts (each True / None within noise / False): supported when every part holds
    (and `can_support`: the claim has all it needs), partly supported when some does, inconclusive when
    none does but some are within noise, not supported otherwise."""
    if parts and all(p is True for p in parts) and can_support:
        return "supported"
    if any(p is True for p in parts):
        return "partly supported"
    if any(p is None for p in parts):
        return "inconclusive"
    return "not supported"
