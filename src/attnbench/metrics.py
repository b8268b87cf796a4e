"""Thin wrappers over the field's standard metric libraries, plus the attention-quality scores.

BLEU and chrF come from sacreBLEU (its signature is kept beside every score); the rest is the
alignment error rate of Och & Ney (2003), which no standard library ships in a usable form.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def reference_streams(references: Sequence) -> list[list[str | None]]:
    """sacreBLEU's reference streams, one per reference position: `references[i]` is item i's reference, or the
    list of its references (several per item, their number may vary: a missing one is None)."""
    if all(isinstance(r, str) for r in references):
        return [list(references)]
    width = max(len(r) for r in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], *, lowercase: bool = False,
                tokenize: str | None = None) -> tuple[float, str]:
    """sacreBLEU corpus BLEU and its signature: default 13a tokenisation (`tokenize="none"` for text the
    pipeline already tokenised, which also silences sacreBLEU's "forgot to detokenize?" warning),
    case-sensitive unless `lowercase` (the signature then says `case:lc`)."""
    from sacrebleu.metrics import BLEU   # here, not at the top: most tasks' jobs never score BLEU (start-up)

    bleu = BLEU(lowercase=lowercase, tokenize=tokenize, force=tokenize == "none")
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return round(score.score, 4), str(bleu.get_signature())


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str], *, lowercase: bool = False) -> tuple[float, str]:
    """sacreBLEU corpus chrF and its signature; case-insensitive with `lowercase`."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF(lowercase=lowercase)
    score = chrf.corpus_score(list(hypotheses), [list(references)])
    return round(score.score, 4), str(chrf.get_signature())


def alignment_error_rate(predicted: Iterable[set[tuple[int, int]]], sure: Iterable[set[tuple[int, int]]],
                         possible: Iterable[set[tuple[int, int]]] | None = None) -> float:
    """AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|), summed over the corpus; P defaults to S (S ⊆ P)."""
    predicted, sure = list(predicted), list(sure)
    possible = sure if possible is None else list(possible)
    a_s = a_p = n_a = n_s = 0
    for a, s, p in zip(predicted, sure, possible, strict=True):
        p = p | s
        a_s += len(a & s)
        a_p += len(a & p)
        n_a += len(a)
        n_s += len(s)
    if n_a + n_s == 0:
        return float("nan")
    return 1.0 - (a_s + a_p) / (n_a + n_s)


def argmax_alignment(weights: np.ndarray, n_src: int, n_tgt: int) -> set[tuple[int, int]]:
    """Link each target token to its most-attended source token: {(src, tgt)}."""
    w = np.asarray(weights)[:n_tgt, :n_src]
    return {(int(s), t) for t, s in enumerate(w.argmax(axis=1))}


def sentence_hit_rate(weights: Sequence[np.ndarray], gold: Sequence[int]) -> float:
    """Share of documents whose most-attended unit (argmax of its weights; first on ties) is the gold one."""
    hits = [int(np.argmax(np.asarray(w))) == int(g) for w, g in zip(weights, gold, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def attention_mass_ratio(weights: Sequence[np.ndarray], gold: Sequence[Sequence[int]]) -> float:
    """Mean over items of (attention mass on the gold positions) / (the mass a uniform distribution
    would put there, len(gold) / len(weights)): 1.0 = no better than uniform. Items without gold
    positions are skipped; nan when none is left."""
    ratios = []
    for w, g in zip(weights, gold, strict=True):
        w = np.asarray(w, dtype=float)
        g = sorted(set(int(i) for i in g))
        if not g or not len(w):
            continue
        ratios.append(w[g].sum() / w.sum() / (len(g) / len(w)))
    return float(np.mean(ratios)) if ratios else float("nan")


def attention_top1_hit(weights: Sequence[np.ndarray], gold: Sequence[Sequence[int]]) -> float:
    """Share of items whose most-attended position is a gold position (items without gold skipped)."""
    hits = [int(np.argmax(w)) in set(int(i) for i in g) for w, g in zip(weights, gold, strict=True) if len(g) and len(w)]
    return float(np.mean(hits)) if hits else float("nan")


def guarded_mape(y_true: np.ndarray, y_pred: np.ndarray, floor: float) -> tuple[float, int]:
    """scikit-learn's MAPE in percent over the targets with |y| >= `floor`, and how many were excluded.

    The guard: zero or near-zero targets (|y| < floor) are left out and counted, never divided by
    (scikit-learn alone would divide by machine epsilon and report a huge number). nan when no
    target is left."""
    from sklearn.metrics import mean_absolute_percentage_error

    y_true, y_pred = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_pred, dtype=float).ravel()
    keep = np.abs(y_true) >= floor
    excluded = int((~keep).sum())
    if not keep.any():
        return float("nan"), excluded
    return 100.0 * float(mean_absolute_percentage_error(y_true[keep], y_pred[keep])), excluded


def smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Symmetric MAPE in percent, 200/n * sum |y - ŷ| / (|y| + |ŷ|); a pair with y = ŷ = 0 counts 0.
    (scikit-learn has no sMAPE.)"""
    y_true, y_pred = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_pred, dtype=float).ravel()
    denom = np.abs(y_true) + np.abs(y_pred)
    ratio = np.divide(np.abs(y_true - y_pred), denom, out=np.zeros_like(denom), where=denom > 0)
    return 200.0 * float(ratio.mean()) if len(ratio) else float("nan")


def forecast_scores(y_true: np.ndarray, y_pred: np.ndarray, mape_floor: float, per_step: bool = True) -> dict:
    """MAPE (guarded, %), sMAPE (%), MAE and RMSE (scikit-learn) of [N, H] multi-step forecasts,
    overall and, with `per_step`, per horizon step as {"1": ..., "H": ...} under `<metric>_by_step`."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    y_true, y_pred = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)

    def scores(t, p):
        mape, excluded = guarded_mape(t, p, mape_floor)
        return {"mape": mape, "mape_excluded": excluded, "smape": smape(t, p),
                "mae": float(mean_absolute_error(t.ravel(), p.ravel())),
                "rmse": float(root_mean_squared_error(t.ravel(), p.ravel()))}

    out = scores(y_true, y_pred)
    if per_step:
        steps = [scores(y_true[:, h], y_pred[:, h]) for h in range(y_true.shape[1])]
        for key in ("mape", "smape", "mae", "rmse"):
            out[f"{key}_by_step"] = {str(h + 1): s[key] for h, s in enumerate(steps)}
    return out


def mask_roc_auc(anomalous: np.ndarray, weights: np.ndarray) -> float | None:
    """ROC-AUC (scikit-learn) of 1 - mask weight as a score for the gold anomalous positions;
    None when the gold labels hold one class only."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(anomalous, dtype=bool).ravel()
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, 1.0 - np.asarray(weights, dtype=float).ravel()))


def segmentation_scores(gold: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Per-class IoU and mIoU from scikit-learn's confusion matrix C (rows gold, columns predicted):
    IoU_c = C[c, c] / (row_c + column_c - C[c, c]). A class absent from both gold and prediction
    has no IoU (None) and is left out of the mean. Also returns the matrix and pixel accuracy."""
    from sklearn.metrics import confusion_matrix

    labels = list(range(len(classes)))
    cm = confusion_matrix(np.asarray(gold).ravel(), np.asarray(pred).ravel(), labels=labels)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = {c: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, c in enumerate(classes)}
    present = [v for v in iou.values() if v is not None]
    return {"iou": iou, "miou": float(np.mean(present)) if present else None,
            "pixel_accuracy": float(tp.sum() / cm.sum()) if cm.sum() else None, "confusion": cm.tolist()}


def binary_iou(gold: np.ndarray, pred: np.ndarray) -> float | None:
    """IoU (Jaccard index, scikit-learn) of the positive class; None when neither side has a positive."""
    from sklearn.metrics import jaccard_score

    gold, pred = np.asarray(gold, bool).ravel(), np.asarray(pred, bool).ravel()
    if not gold.any() and not pred.any():
        return None
    return float(jaccard_score(gold, pred, zero_division=0.0))
