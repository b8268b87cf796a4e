"""Claim verdicts against seed noise, on run entries built from hand-made per-seed metrics: a gap within
the seeds' noise (Welch's t-test over seeds) is not 'supported', a gap well beyond it is, and with one seed
per run the verdict is what the means alone gave before the test existed."""
from __future__ import annotations

import pandas as pd
import pytest

from attnbench.report.sections import cell
from attnbench.tasks.captioning import report as captioning
from attnbench.tasks.documents import report as documents
from attnbench.tasks.intent import report as intent
from attnbench.tasks.load import report as load

NOISY = ([4.0, 5.5, 4.3], [4.8, 4.2, 5.1])      # means 4.60 vs 4.70: 0.1 apart, seeds spread ~0.5
SEPARATE = ([4.0, 4.05, 3.95], [5.0, 5.05, 4.95])  # means 4.00 vs 5.00, seeds spread 0.05
ONE = ([4.6], [4.7])


def entry(run: str, values: dict[str, list[float]], **extra) -> dict:
    """A run entry as `collect_runs` makes it: ok (one row per seed), seeds, a cell and a mean per metric."""
    n = max(len(v) for v in values.values())
    ok = pd.DataFrame({"seed": list(range(n)), **values})
    cells = {m: cell(v, 3) for m, v in values.items()}
    return {"run": run, "model": "?", "attention": "none", "ok": ok, "seeds": list(range(n)),
            "mean": {m: c["mean"] for m, c in cells.items()}, **cells, **extra}


def _higher(pair, scale):
    """A pair of per-seed value lists turned into a higher-is-better metric (the first side ahead)."""
    return [scale * (10 - v) for v in pair[0]], [scale * (10 - v) for v in pair[1]]


# ---------------------------------------------------------------- captioning C4 (BLEU-4, higher is better)
def _captioning(pair) -> dict:
    attended, none = _higher(pair, 3.0)                 # ~16 vs ~15.9 BLEU-4: above MIN_BLEU
    runs = []
    for run, kind, values in (("show-tell", "none", none), ("soft", "soft", attended),
                              ("hard", "hard", [v + 0.01 for v in attended])):
        r = entry(run, {"bleu4": values, "attention_entropy": [0.5] * len(values)}, kind=kind,
                  still_improving=False, attention="none" if kind == "none" else "soft")
        runs.append(r)
    [claim] = captioning._claims(runs)
    return claim


@pytest.mark.parametrize("pair, verdict", [(NOISY, "inconclusive"), (SEPARATE, "supported"), (ONE, "supported")])
def test_captioning_c4_wins_only_beyond_noise(pair, verdict):
    claim = _captioning(pair)
    assert claim["id"] == "C4" and claim["verdict"] == verdict, claim
    if pair is NOISY:
        assert "within noise" in claim["evidence"] and "Welch p = " in claim["evidence"]
    elif pair is ONE:
        assert claim["evidence"].count("one seed: no noise estimate") == 1 and "Welch" not in claim["evidence"]
    else:   # both beat Show and Tell beyond noise; only hard vs soft (0.01 apart) is within it
        versus_none, hard_vs_soft = claim["evidence"].split("; hard vs soft")
        assert "within noise" not in versus_none and versus_none.count("3 vs 3 seeds") == 2
        assert "within noise" in hard_vs_soft


# ---------------------------------------------------------------- intent C12 (accuracy, higher is better)
# C12 already asks for a gap above the seeds' spread (sum of the two std): 0.15 > 0.1 + 0.001 passes that, but
# one noisy run of three seeds against a steady one is not beyond noise (Welch p ~ 0.12)
SPREAD_ONLY = ([0.60, 0.50, 0.70], [0.449, 0.450, 0.451])


def _intent(pair) -> dict:
    bert, scratch = pair
    opts = {"encoder": "transformer", "pooling": "cls"}
    runs = [entry("bert", {"accuracy": bert, "macro_f1": bert, "mlm_accuracy": [0.4] * len(bert),
                           "keyword_ratio": [None] * len(bert)},
                  mlm=True, options={**opts, "mlm": {"steps": 1}}, encoder="transformer", pooling="cls"),
            entry("transformer", {"accuracy": scratch, "macro_f1": scratch, "mlm_accuracy": [None] * len(scratch),
                                  "keyword_ratio": [None] * len(scratch)},
                  mlm=False, options=opts, encoder="transformer", pooling="cls")]
    return next(c for c in intent._claims(runs) if c["id"] == "C12")


@pytest.mark.parametrize("pair, verdict", [
    (SPREAD_ONLY, "partly supported"),
    (([0.60, 0.61, 0.59], [0.45, 0.46, 0.44]), "supported"),
    (([0.60], [0.45]), "supported"),            # one seed: as the means alone say
])
def test_intent_c12_is_supported_only_beyond_noise(pair, verdict):
    claim = _intent(pair)
    assert claim["verdict"] == verdict, claim
    assert ("within noise" in claim["evidence"]) is (pair is SPREAD_ONLY)


def test_intent_c12_loss_within_noise_is_no_refutation():
    assert _intent((SPREAD_ONLY[1], SPREAD_ONLY[0]))["verdict"] == "inconclusive"
    assert _intent(([0.45], [0.60]))["verdict"] == "not supported"          # one seed: as the means say
    assert _intent(([0.45, 0.46, 0.44], [0.60, 0.61, 0.59]))["verdict"] == "not supported"


# ---------------------------------------------------------------- load C9 (MAPE, lower is better)
def _load(pair) -> dict:
    h = load.Headline("mape")
    feat_v, plain_v = pair
    steps = {1: 1.0, 2: 1.0}
    common = {"irrelevant_attention": None, "uniform_share": None}
    feat = entry("feature-attn", {"mape": feat_v, **{k: [v] * len(feat_v) for k, v in common.items()}},
                 mape_steps={s: v - 0.1 for s, v in steps.items()})
    feat["model"] = "feature_attn"
    plain = entry("gru", {"mape": plain_v, **{k: [v] * len(plain_v) for k, v in common.items()}}, mape_steps=steps)
    plain["model"] = "gru"
    naive = entry("naive", {"mape": [9.0] * len(plain_v)}, mape_steps={})
    naive["model"] = "seasonal_naive"
    return next(c for c in load._claims([naive, feat, plain], naive, plain, h) if c["id"] == "C9")


@pytest.mark.parametrize("pair, verdict", [(NOISY, "partly supported"), (SEPARATE, "supported"), (ONE, "supported")])
def test_load_c9_overall_gain_counts_only_beyond_noise(pair, verdict):
    claim = _load(pair)   # lower at every horizon step: the overall gain alone decides supported vs partly
    assert claim["verdict"] == verdict, claim
    assert ("Welch" in claim["evidence"]) is (pair is not ONE)


def test_load_c9_loss_within_noise_is_no_refutation():
    noisy = _load((NOISY[1], NOISY[0]))
    assert noisy["verdict"] == "partly supported" and "within noise" in noisy["evidence"]   # the steps still win
    assert _load((ONE[1], ONE[0]))["verdict"] == "partly supported"


# ---------------------------------------------------------------- documents C6 (accuracy vs pooling)
def _documents(pair) -> dict:
    han, pooled = _higher(pair, 0.1)
    runs = [entry("han", {"accuracy": han, "macro_f1": han}, model="han", kind="HAN", classical=False,
                  still_improving=False),
            entry("han-mean", {"accuracy": pooled, "macro_f1": pooled}, model="han", kind="HAN-mean",
                  classical=False, still_improving=False),
            entry("han-max", {"accuracy": [v - 0.2 for v in pooled], "macro_f1": pooled}, model="han",
                  kind="HAN-max", classical=False, still_improving=False)]
    [claim] = documents._claims(runs, n_classes=5)
    return claim


@pytest.mark.parametrize("pair, verdict", [(NOISY, "partly supported"), (SEPARATE, "supported"), (ONE, "supported")])
def test_documents_c6_within_noise_of_han_mean_is_no_win(pair, verdict):
    claim = _documents(pair)   # HAN-max is far behind in every case: that win stands
    assert claim["verdict"] == verdict, claim
    assert ("within noise" in claim["evidence"]) is (pair is NOISY)
