"""Paired tests over test items: does run A beat run B on the same test items, as each field tests it.

- translation: paired bootstrap resampling of corpus BLEU (Koehn 2004) on sacreBLEU's own sufficient
  statistics (`bleu_bootstrap`);
- classification: McNemar's exact test on the discordant items (scipy's binomial test), beside a
  bootstrap interval of the accuracy gap (`mcnemar`);
- forecasting: the Diebold-Mariano test with Harvey, Leybourne and Newbold's small-sample correction
  on the per-origin loss differential, its variance from the autocovariances up to lag h - 1 (the
  forecasts of neighbouring origins overlap) (`diebold_mariano`);
- regression: paired bootstrap of the RMSE gap (`rmse_bootstrap`).

Several seeds: item i of A's seed k is paired with item i of B's seed k. The bootstrap draws test
items, each drawn item bringing all its seeds (the effect is the mean over seeds of A's score minus
B's); McNemar counts the discordant pairs of every seed; Diebold-Mariano tests the seed-averaged loss
differential. Every test returns the same dict (`result`): effect (A - B in the metric's units), its
95 % interval, p, the outcome for A (ahead / behind / tie at ALPHA) and one line of text.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..metrics import reference_streams
from .noise import _p_text   # the report's one p-value wording

ALPHA = 0.05
RESAMPLES = 1000
SEED = 12345   # sacreBLEU's default bootstrap seed: the same draws every time

BOOTSTRAP_BLEU = "paired bootstrap over test sentences (sacreBLEU statistics, 1,000 resamples)"
BOOTSTRAP_BLEU_IMAGES = "paired bootstrap over test images (sacreBLEU statistics, every reference, 1,000 resamples)"
MCNEMAR = "McNemar's exact test over test items"
DIEBOLD_MARIANO = "Diebold-Mariano test over forecast origins (HLN-corrected)"
BOOTSTRAP_RMSE = "paired bootstrap over test examples (1,000 resamples)"
BOOTSTRAP_IOU = "paired bootstrap over test tiles (IoU pooled over their pixels, 1,000 resamples)"


def result(test: str, effect: float, low: float, high: float, p: float, higher_is_better: bool,
           n_items: int, n_seeds: int, unit: str = "", digits: int = 2) -> dict[str, Any]:
    """One paired comparison: effect = A - B (higher_is_better says which sign favours A), its 95 %
    interval [low, high], the two-sided p-value, and the outcome for A."""
    better = effect > 0 if higher_is_better else effect < 0
    outcome = "tie" if (p > ALPHA or effect == 0) else ("ahead" if better else "behind")
    text = (f"{effect:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}], {_p_text(p)} "
            f"({test}; {n_items:,} items × {n_seeds} seed{'s' if n_seeds != 1 else ''})")
    return {"test": test, "effect": round(float(effect), 6), "ci": [round(float(low), 6), round(float(high), 6)],
            "p": round(float(p), 6), "higher_is_better": higher_is_better, "outcome": outcome, "unit": unit,
            "n_items": int(n_items), "n_seeds": int(n_seeds), "text": text}


def _counts(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_items] how often each item is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(resamples, n_items))
    counts = np.zeros((resamples, n_items), dtype=np.float64)
    np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
    return counts


def bootstrap(stats_a: np.ndarray, stats_b: np.ndarray, score: Callable[[np.ndarray], float], test: str,
              higher_is_better: bool = True, resamples: int = RESAMPLES, seed: int = SEED, unit: str = "",
              digits: int = 2) -> dict[str, Any]:
    """Paired bootstrap of a corpus-level score. stats_*: [items, seeds, d] per-item sufficient statistics
    of A and B (the same items, seed k paired with seed k); score: summed statistics [d] -> the metric.
    The effect is mean over seeds of score(A) - score(B); p is two-sided, from the resampled differences
    centred on their mean (the null of no difference), as Koehn (2004) and sacreBLEU count it."""
    a, b = np.asarray(stats_a, dtype=np.float64), np.asarray(stats_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"paired statistics must have the same [items, seeds, d] shape, got {a.shape} and {b.shape}")
    n, k, d = a.shape

    def effect_of(sum_a: np.ndarray, sum_b: np.ndarray) -> float:   # [seeds, d] each
        return float(np.mean([score(sum_a[s]) - score(sum_b[s]) for s in range(k)]))

    observed = effect_of(a.sum(0), b.sum(0))
    counts = _counts(n, resamples, seed)
    sums_a = (counts @ a.reshape(n, k * d)).reshape(resamples, k, d)
    sums_b = (counts @ b.reshape(n, k * d)).reshape(resamples, k, d)
    diffs = np.array([effect_of(sums_a[r], sums_b[r]) for r in range(resamples)])
    low, high = np.percentile(diffs, [2.5, 97.5])
    centred = np.abs(diffs - diffs.mean())
    p = (1 + int(np.sum(centred >= abs(observed) - 1e-12))) / (resamples + 1) if observed != 0 else 1.0
    return result(test, observed, low, high, min(p, 1.0), higher_is_better, n, k, unit, digits)


def bleu_statistics(hypotheses: Sequence[str], references: Sequence, lowercase: bool = False,
                    tokenize: str | None = None) -> np.ndarray:
    """sacreBLEU's per-item sufficient statistics of BLEU ([items, d]: n-gram matches and totals, lengths),
    configured as the pipeline scored the corpus; one reference per item, or several (`reference_streams`)."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(lowercase=lowercase, tokenize=tokenize, force=tokenize == "none")
    return np.asarray(bleu._extract_corpus_statistics(list(hypotheses), reference_streams(references)), dtype=np.float64)


def bleu_score_function(lowercase: bool = False, tokenize: str | None = None) -> Callable[[np.ndarray], float]:
    """Summed BLEU statistics -> corpus BLEU, as sacreBLEU computes it."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(lowercase=lowercase, tokenize=tokenize, force=tokenize == "none")
    return lambda summed: float(bleu._compute_score_from_stats([float(v) for v in summed]).score)


def bleu_bootstrap(hyps_a: Sequence[Sequence[str]], hyps_b: Sequence[Sequence[str]], references: Sequence,
                   lowercase: bool = False, tokenize: str | None = None, resamples: int = RESAMPLES) -> dict[str, Any]:
    """A vs B in corpus BLEU: hyps_*[k] is seed k's outputs for the test set (the same seeds, in order);
    `references`: one per item (translation's sentences) or a list per item (captioning's images)."""
    if len(hyps_a) != len(hyps_b) or not hyps_a:
        raise ValueError("bleu_bootstrap needs the same number (>= 1) of seeds on both sides")
    a = np.stack([bleu_statistics(h, references, lowercase, tokenize) for h in hyps_a], axis=1)
    b = np.stack([bleu_statistics(h, references, lowercase, tokenize) for h in hyps_b], axis=1)
    test = BOOTSTRAP_BLEU if all(isinstance(r, str) for r in references) else BOOTSTRAP_BLEU_IMAGES
    return bootstrap(a, b, bleu_score_function(lowercase, tokenize), test, True, resamples, unit=" BLEU")


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = RESAMPLES, scale: float = 1.0,
            unit: str = "", digits: int = 4) -> dict[str, Any]:
    """A vs B in accuracy. correct_*: [items, seeds] booleans. p: McNemar's exact test (the binomial test
    of the discordant pairs, pooled over seeds); the interval: paired bootstrap over items of the
    seed-mean accuracy gap. `scale` multiplies the effect (100: percentage points)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired correctness must have the same [items, seeds] shape, got {a.shape} and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    n, k = a.shape
    counts = _counts(n, resamples, SEED)
    gap = (a.astype(float) - b.astype(float)).mean(axis=1)   # per item, over seeds
    diffs = counts @ gap / n * scale
    effect = float(gap.mean()) * scale
    low, high = np.percentile(diffs, [2.5, 97.5])
    out = result(MCNEMAR, effect, low, high, p, True, n, k, unit, digits)
    out.update(discordant=[only_a, only_b])
    return out


def rmse_bootstrap(target: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                   resamples: int = RESAMPLES) -> dict[str, Any]:
    """A vs B in RMSE (lower is better). target: [items]; pred_*: [items, seeds]."""
    y = np.asarray(target, dtype=np.float64)[:, None]
    se_a = (np.asarray(pred_a, dtype=np.float64) - y) ** 2
    se_b = (np.asarray(pred_b, dtype=np.float64) - y) ** 2
    ones = np.ones_like(se_a)
    return bootstrap(np.stack([se_a, ones], -1), np.stack([se_b, ones], -1),
                     lambda s: math.sqrt(s[0] / s[1]), BOOTSTRAP_RMSE, False, resamples, digits=4)


def iou_bootstrap(inter_a: np.ndarray, union_a: np.ndarray, inter_b: np.ndarray, union_b: np.ndarray,
                  resamples: int = RESAMPLES) -> dict[str, Any]:
    """A vs B in IoU pooled over the pixels of the test tiles (higher is better), as a segmentation task
    scores it: inter_* / union_*: [tiles, seeds] pixel counts of the intersection and union per tile."""
    def pooled(s: np.ndarray) -> float:
        return float(s[0] / s[1]) if s[1] > 0 else 0.0

    return bootstrap(np.stack([inter_a, union_a], -1), np.stack([inter_b, union_b], -1), pooled, BOOTSTRAP_IOU,
                     True, resamples, digits=3)


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int, unit: str = "",
                    digits: int = 3) -> dict[str, Any]:
    """A vs B on per-origin losses (lower is better). loss_*: [origins, seeds] (consecutive origins;
    NaN where an origin has no loss: left out). The loss differential d_t = mean over seeds of
    loss_a - loss_b; its long-run variance sums the autocovariances up to lag horizon - 1; the
    statistic gets Harvey, Leybourne and Newbold's (1997) correction and a Student t with T - 1
    degrees of freedom. The effect is mean(d) with its t interval."""
    a, b = np.asarray(loss_a, dtype=np.float64), np.asarray(loss_b, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.shape != b.shape:
        raise ValueError(f"paired losses must have the same [origins, seeds] shape, got {a.shape} and {b.shape}")
    d = np.nanmean(a - b, axis=1)
    d = d[np.isfinite(d)]
    t_len, h = len(d), max(1, int(horizon))
    if t_len < 3:
        raise ValueError(f"Diebold-Mariano needs at least 3 origins with losses on both sides, got {t_len}")
    mean = float(d.mean())
    centred = d - mean
    gamma = [float(np.dot(centred[lag:], centred[:t_len - lag]) / t_len) for lag in range(min(h, t_len))]
    variance = (gamma[0] + 2.0 * sum(gamma[1:])) / t_len
    if variance <= 0:   # a negative long-run estimate (possible with many lags): fall back to lag 0
        variance = gamma[0] / t_len
    if variance == 0:
        p, low, high = (1.0 if mean == 0 else 0.0), mean, mean
    else:
        se = math.sqrt(variance)
        correction = math.sqrt(max((t_len + 1 - 2 * h + h * (h - 1) / t_len) / t_len, 1e-12))
        statistic = mean / se * correction
        p = float(2.0 * stats.t.sf(abs(statistic), df=t_len - 1))
        half = float(stats.t.ppf(0.975, df=t_len - 1)) * se
        low, high = mean - half, mean + half
    return result(DIEBOLD_MARIANO, mean, low, high, p, False, t_len, a.shape[1], unit, digits)
