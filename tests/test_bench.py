"""The attention kernel benchmark (attnbench.kernel_bench), the memory-capped pairwise scores, the banded
local attention, and the report's Performance section."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

import attnbench.attention.local as local_mod
import attnbench.attention.scores as scores_mod
from attnbench import cli
from attnbench import kernel_bench as bench
from attnbench.attention import available, build
from attnbench.validation import load_params
from attnbench.report import environment, performance


# ----------------------------------------------------------------------------- the benchmark itself
def test_smoke_benchmark_writes_every_mechanism_and_the_torch_references(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    out = tmp_path / "bench" / "attention.csv"
    rc = cli.main(["--scale", "smoke", "--threads", "1", "-q", "bench-attention", "--out", str(out), "--lengths", "8,16"])
    assert rc == 0
    df = pd.read_csv(out)
    names = set(df["mechanism"])
    assert set(available()) <= names
    assert {"torch_sdpa", "torch_mha", "torch_mha_noweights", "multihead_noweights"} <= names
    assert sorted(df["length"].unique()) == [8, 16]
    assert len(df) == len(names) * 2  # one row per (length, entry)
    params = load_params("params.yaml", {"scale": "smoke"})
    assert set(df["batch"]) == {params["bench"]["batch"]} and set(df["width"]) == {params["bench"]["width"]}
    ok = df[df["status"] == "ok"]
    assert len(ok) == len(df), df.loc[df["status"] != "ok", ["mechanism", "status"]]
    assert (ok["time_s"] > 0).all() and (ok["time_q25_s"] <= ok["time_q75_s"]).all()
    assert (ok["peak_bytes"] > 0).all() and (ok["saved_bytes"] > 0).all()
    paired = ok[ok["mechanism"].isin(bench.PAIRS)]
    assert paired["paired_ratio"].notna().all()
    assert set(paired["paired_with"]) == set(bench.PAIRS.values())
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["batch"] == params["bench"]["batch"] and "memory_method" in summary
    assert {m["length"] for m in summary["mha_ratios"]} == {8, 16}


def test_peak_memory_grows_with_the_quadratic_scores():
    """scaled_dot's [B, T, T] scores dominate its peak: 4x the length is ~16x the memory, and the
    figure is at least the size of the scores and the weights."""
    cfg = bench.settings(load_params("params.yaml", {"scale": "smoke"}))
    cfg.update(batch=2, width=8)
    peaks = {}
    for t in (64, 256):
        entry = next(e for e in bench.entries(cfg, t, torch.device("cpu")) if e.name == "scaled_dot")
        x = torch.randn(2, t, 8, requires_grad=True)
        peaks[t] = bench.peak_bytes(entry, x, torch.randn(2, t, 8), torch.device("cpu"))
        assert peaks[t] >= 2 * 2 * t * t * 4
    assert 8 < peaks[256] / peaks[64] < 20


def test_memory_takes_peak_and_saved_bytes_from_one_step():
    """`memory` measures both figures in the one step the benchmark profiles (the saved tensors' hooks ride
    along), and leaves the input without a gradient, as measuring them one after the other did."""
    cfg = bench.settings(load_params("params.yaml", {"scale": "smoke"}))
    cfg.update(batch=2, width=8)
    t = 128
    entry = next(e for e in bench.entries(cfg, t, torch.device("cpu")) if e.name == "scaled_dot")
    x = torch.randn(2, t, 8, requires_grad=True)
    peak, saved = bench.memory(entry, x, torch.randn(2, t, 8), torch.device("cpu"))
    assert x.grad is None
    assert saved == bench.saved_bytes(entry, x) and saved >= 2 * t * t * 4   # the [B, T, T] weights are saved
    assert peak >= 2 * 2 * t * t * 4 and peak == pytest.approx(
        bench.peak_bytes(entry, x, torch.randn(2, t, 8), torch.device("cpu")), rel=0.1)


def test_frozen_gc_collects_first_and_thaws_after():
    import gc
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a           # a reference cycle: only the collector frees it
    alive = weakref.ref(a)
    del a, b
    with bench.frozen_gc():
        assert alive() is None and gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def _fake_warm_up(seconds: float):
    """A stand-in for `_warm_up` whose first step takes `seconds` and measures (1, 1) bytes."""
    def warm_up(entry, x, grad, device, memory_of):
        memory_of[entry.name] = (1, 1)
        return seconds
    return warm_up


@pytest.mark.parametrize("first, inner_per_call", [(0.5, [1, 1, 1]), (0.1, [1] + [1, 1, 1]), (0.001, [1, 2] + [2, 2, 2])])
def test_a_long_warm_up_step_is_not_repeated(first, inner_per_call, monkeypatch):
    """`inner` is 1 for a first step over max(0.25 s, 4 x min_time): no second warm-up step to learn it. A
    shorter one takes a step to learn `inner`, and a step under min_time two more (after the profiled
    warm-up the next step is still slow), timed together."""
    calls = []

    def fake(entry, x, grad, inner, device):
        calls.append(inner)
        return first, first

    monkeypatch.setattr(bench, "time_once", fake)
    monkeypatch.setattr(bench, "_warm_up", _fake_warm_up(first))
    cfg = bench.settings(load_params("params.yaml", {"scale": "smoke"}))   # 3 repeats, min_time 0.002
    df = bench.run(cfg, torch.device("cpu"), lengths=[8], only=["scaled_dot"], progress=False)
    assert calls == inner_per_call and int(df["inner"].iloc[0]) == inner_per_call[-1]


def test_an_entry_out_of_memory_in_a_timed_round_fails_alone(monkeypatch):
    """An allocation failure after the warm-up (a later round at a long length) marks that entry failed; the
    other entries are timed and the run goes on, as the address-space cap intends."""
    calls = {"additive": 0}

    def fake(entry, x, grad, inner, device):
        if entry.name == "additive":
            calls["additive"] += 1
            if calls["additive"] > 1:   # the step after the warm-up (learning `inner`) passes, the first round does not
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 402718720 bytes")
        return 0.01, 0.01

    monkeypatch.setattr(bench, "time_once", fake)
    monkeypatch.setattr(bench, "_warm_up", _fake_warm_up(0.01))
    cfg = bench.settings(load_params("params.yaml", {"scale": "smoke"}))
    df = bench.run(cfg, torch.device("cpu"), lengths=[8], only=["scaled_dot", "additive"], progress=False)
    rows = df.set_index("mechanism")
    assert rows.loc["additive", "status"].startswith("failed: RuntimeError: DefaultCPUAllocator")
    assert rows.loc["scaled_dot", "status"] == "ok" and rows.loc["scaled_dot", "repeats"] == 3


def test_the_warm_up_step_is_the_memory_pass_and_a_profiler_failure_keeps_the_times(monkeypatch):
    """Each entry's first step is profiled for memory and never timed; when the profiler fails (its event
    buffer outgrowing the cap), the step runs again without it and the entry is timed, its memory marked failed."""
    profiled, timed = [], []

    def fake_memory(entry, x, grad, device):
        profiled.append(entry.name)
        if entry.name == "additive":
            raise MemoryError("std::bad_alloc")
        return 123, 45

    def fake_time(entry, x, grad, inner, device):
        timed.append(entry.name)
        return 0.01, 0.01

    monkeypatch.setattr(bench, "memory", fake_memory)
    monkeypatch.setattr(bench, "time_once", fake_time)
    cfg = bench.settings(load_params("params.yaml", {"scale": "smoke"}))   # 3 repeats
    df = bench.run(cfg, torch.device("cpu"), lengths=[8], only=["scaled_dot", "additive"], progress=False)
    rows = df.set_index("mechanism")
    assert profiled == ["scaled_dot", "additive"]                 # once each, first
    assert timed.count("scaled_dot") == 1 + 3                      # the step learning `inner`, then 3 rounds
    assert timed.count("additive") == 1 + 1 + 3                    # plus the warm-up again without the profiler
    assert (rows.loc["scaled_dot", "peak_bytes"], rows.loc["scaled_dot", "saved_bytes"]) == (123, 45)
    assert rows.loc["additive", "status"] == "memory failed: MemoryError: std::bad_alloc"
    assert rows.loc["additive", "repeats"] == 3 and math.isnan(rows.loc["additive", "peak_bytes"])


def test_the_first_steps_memory_is_a_later_steps_for_the_checked_mechanisms():
    """The memory check reads the warm-up step: for the mechanisms it compares (no state kept between steps),
    the first step's peak and saved bytes equal a later step's within 1 % (one-time allocations aside)."""
    cfg = bench.settings(load_params("params.yaml", {"scale": "smoke"}))
    torch.manual_seed(0)
    es = {e.name: e for e in bench.entries(cfg, 64, torch.device("cpu"))}
    x, grad = torch.randn(2, 64, 64, requires_grad=True), torch.randn(2, 64, 64)
    for name in ("scaled_dot", "additive", "concat"):
        first = bench.memory(es[name], x, grad, torch.device("cpu"))
        later = bench.memory(es[name], x, grad, torch.device("cpu"))
        assert first[0] == pytest.approx(later[0], rel=0.01) and first[1] == later[1], name


# ----------------------------------------------------------------------------- analysis of a table
def _table(time_fn, lengths=(256, 512, 1024), **extra):
    rows = []
    for t in lengths:
        for name, kind, fam, f, mem in [
            ("scaled_dot", "ours", "quadratic", lambda t: 1e-8 * t * t, lambda t: 8.0 * t * t),
            ("additive", "ours", "quadratic", lambda t: 5e-8 * t * t, lambda t: 24.0 * t * t),
            ("concat", "ours", "quadratic", lambda t: 5e-8 * t * t, lambda t: 40.0 * t * t),
            ("local_m", "ours", "linear", lambda t: 1e-5 * t, lambda t: 1000.0 * t),
            ("multihead", "ours", "quadratic", time_fn, lambda t: 8.0 * t * t),
            ("torch_mha", "reference", "quadratic", lambda t: 4e-8 * t * t, lambda t: 8.0 * t * t),
        ]:
            rows.append({"device": "cpu", "batch": 2, "width": 8, "heads": 2, "threads": 1, "length": t,
                         "mechanism": name, "kind": kind, "family": fam, "status": "ok", "time_s": f(t),
                         "time_q25_s": f(t), "time_q75_s": f(t), "repeats": 3, "inner": 1, "peak_bytes": mem(t),
                         "saved_bytes": mem(t) / 2, "loadavg_1m": 1.5,
                         "paired_ratio": (time_fn(t) / (4e-8 * t * t)) if name == "multihead" else math.nan,
                         "paired_with": "torch_mha" if name == "multihead" else None, **extra})
    return pd.DataFrame(rows)


CFG = {"fit_from": 256, "targets": {"mha_time_ratio": 1.10, "pairwise_memory_ratio": 4.0, "memory_length": 1024,
                                    "exponent_tolerance": 0.3}}


def test_summary_computes_exponents_ratios_and_verdicts():
    s = bench.summarise(_table(lambda t: 4.2e-8 * t * t), CFG)
    exps = {e["mechanism"]: e for e in s["exponents"]}
    assert exps["scaled_dot"]["exponent"] == pytest.approx(2.0) and exps["scaled_dot"]["pass"]
    assert exps["local_m"]["exponent"] == pytest.approx(1.0) and exps["local_m"]["expected"] == 1.0
    mem = {m["mechanism"]: m for m in s["memory_ratios"]}
    assert mem["additive"]["ratio"] == pytest.approx(3.0) and mem["additive"]["pass"]
    assert mem["concat"]["ratio"] == pytest.approx(5.0) and not mem["concat"]["pass"]
    assert all(m["ratio"] == pytest.approx(1.05) and m["pass"] for m in s["mha_ratios"])
    checks = {c["target"].split(" ")[0]: c["pass"] for c in s["checks"]}
    assert checks["our"] is True and checks["additive/concat"] is False


def test_a_family_with_no_expected_exponent_is_shown_not_checked():
    """glimpse's cost follows the image a sequence folds into ("image"): its exponent is fitted and reported
    with no expectation and no verdict, and neither exponent target counts it."""
    table = _table(lambda t: 4.2e-8 * t * t)
    extra = table[table["mechanism"] == "scaled_dot"].assign(mechanism="glimpse", family="image",
                                                             time_s=lambda d: 1e-6 * d["length"] ** 1.67)
    s = bench.summarise(pd.concat([table, extra]), CFG)
    glimpse = {e["mechanism"]: e for e in s["exponents"]}["glimpse"]
    assert glimpse["exponent"] == pytest.approx(1.67) and glimpse["expected"] is None and glimpse["pass"] is None
    exponent_checks = [c for c in s["checks"] if c["target"].startswith("time exponent")]
    assert [c["pass"] for c in exponent_checks] == [True, True]
    assert "all 5 within" in exponent_checks[0]["value"]          # the quadratic ones, glimpse left out
    assert bench.family("glimpse", set()) == "image" and bench.family("glimpse", {"glimpse"}) == "linear"
    assert bench.family("local_m", set()) == "quadratic" and bench.family("local_m", {"local_m"}) == "linear"


def test_summary_flags_a_slow_multihead_and_a_wrong_exponent():
    s = bench.summarise(_table(lambda t: 1e-9 * t ** 2.6), CFG)  # > 1.10x at the long lengths, exponent 2.6
    assert any(m["pass"] is False for m in s["mha_ratios"])
    assert {e["mechanism"]: e["pass"] for e in s["exponents"]}["multihead"] is False
    assert s["checks"][0]["pass"] is False


def test_summary_without_the_fit_range_is_not_measured():
    s = bench.summarise(_table(lambda t: 4e-8 * t * t, lengths=(16, 32)), {**CFG, "fit_from": 32})
    assert all(e["exponent"] is None and e["pass"] is None for e in s["exponents"])
    assert s["memory_ratios"] == [] and s["checks"][1]["pass"] is None


# ----------------------------------------------------------------------------- memory-capped pairwise scores
def _run(attn, q, k, v, mask, g):
    for t in (q, k, v):
        t.grad = None
    attn.zero_grad()
    ctx, w = attn(q, k, v, mask)
    ctx.backward(g)
    return [ctx.detach(), w.detach(), q.grad, k.grad, v.grad] + [p.grad for p in attn.parameters()]


@pytest.mark.parametrize("name", ["additive", "concat"])
@pytest.mark.parametrize("how", ["chunk_size", "auto"])
def test_chunked_pairwise_scores_equal_unchunked(name, how, monkeypatch):
    torch.manual_seed(0)
    full = build(name, 8, 12, 6, attn_dim=16)
    if how == "chunk_size":
        chunked = build(name, 8, 12, 6, attn_dim=16, chunk_size=3)
    else:  # the automatic chunking of long inputs, made to trigger on a small one
        monkeypatch.setattr(scores_mod, "AUTO_CHUNK_ELEMENTS", 2 * 9 * 16 * 4)
        chunked = build(name, 8, 12, 6, attn_dim=16)
    chunked.load_state_dict(full.state_dict())
    q, k, v = (torch.randn(2, 7, 8, requires_grad=True), torch.randn(2, 9, 12, requires_grad=True),
               torch.randn(2, 9, 6, requires_grad=True))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 4:] = False
    g = torch.randn(2, 7, 6)
    with monkeypatch.context() as m:
        m.setattr(scores_mod, "AUTO_CHUNK_ELEMENTS", 1 << 40)
        ref = _run(full, q, k, v, mask, g)
    got = _run(chunked, q, k, v, mask, g)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])  # forward: the same operations
    for a, b in zip(got[2:], ref[2:]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["additive", "concat"])
def test_chunked_pairwise_scores_keep_no_pairwise_tensor_for_backward(name):
    b, t, a = 2, 32, 16
    attn = build(name, 8, 8, 8, attn_dim=a, chunk_size=4)
    x = torch.randn(b, t, 8, requires_grad=True)
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda s: sizes.append(s.numel()) or s, lambda s: s):
        ctx, _ = attn(x, x, x)
    assert max(sizes) < b * t * t * a / 4  # the [B, T, T, A] tanh is not kept
    ctx.sum().backward()
    unchunked = build(name, 8, 8, 8, attn_dim=a)
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda s: sizes.append(s.numel()) or s, lambda s: s):
        unchunked(x, x, x)
    assert max(sizes) >= b * t * t * a  # ... which plain autograd would keep


# ----------------------------------------------------------------------------- banded local attention
@pytest.mark.parametrize("name,options", [("local_m", {"window": 3}), ("local_p", {"window": 3}),
                                          ("local_p", {"window": 2, "score": "dot"})])
def test_banded_local_attention_equals_the_dense_band(name, options, monkeypatch):
    torch.manual_seed(0)
    attn = build(name, 8, 8, 6, **options)
    q, k, v = (torch.randn(3, 11, 8, requires_grad=True), torch.randn(3, 13, 8, requires_grad=True),
               torch.randn(3, 13, 6, requires_grad=True))
    mask = torch.ones(3, 13, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2] = False
    g = torch.randn(3, 11, 6)
    monkeypatch.setattr(local_mod, "_use_band", lambda tk, window: False)
    dense = _run(attn, q, k, v, mask, g)
    monkeypatch.setattr(local_mod, "_use_band", lambda tk, window: True)
    band = _run(attn, q, k, v, mask, g)
    assert torch.all(band[1][2] == 0)  # the empty row
    for a, b in zip(band, dense):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_long_inputs_use_the_band():
    assert local_mod._use_band(2048, 4) and not local_mod._use_band(40, 4)


# ----------------------------------------------------------------------------- report section
def _render(ctx) -> str:
    return environment().get_template("performance.html.j2").render(p=ctx)


def test_performance_section_says_not_run_without_the_csv(tmp_path):
    params = load_params("params.yaml", {"scale": "smoke"})
    ctx = performance.context(params, tmp_path, csv=tmp_path / "nothing.csv")
    assert ctx["has_results"] is False
    html = _render(ctx)
    assert "Not run yet" in html and "bench-attention" in html and "<table" not in html


def test_performance_section_renders_tables_and_plots_from_a_csv(tmp_path):
    csv = tmp_path / "attention.csv"
    df = _table(lambda t: 4.2e-8 * t * t)
    df.loc[len(df)] = {**df.iloc[0].to_dict(), "mechanism": "<hard>", "status": "failed: RuntimeError: boom",
                       "time_s": math.nan}
    df.to_csv(csv, index=False)
    params = load_params("params.yaml", {"scale": "default"})
    ctx = performance.context(params, tmp_path, csv=csv)
    assert ctx["has_results"]
    html = _render(ctx)
    assert "Not run yet" not in html
    assert html.count("data:image/png;base64,") == 2
    assert "Time relative to scaled_dot" in html and "Peak memory relative to scaled_dot" in html
    assert "3.00×" in html and "5.00×" in html          # additive / concat memory at 1024
    assert "1.050×" in html                            # our multihead / nn.MultiheadAttention
    assert "&lt;hard&gt;" in html and "<hard>" not in html  # data is escaped
    assert "missed" in html and "met" in html
    assert "batch 2" in html and "width 8" in html and "1.50" in html  # setting and load stated


def test_full_report_has_the_performance_section_before_and_after_the_benchmark(tmp_path, monkeypatch):
    from attnbench.config import REPO_ROOT
    from attnbench.report import render_report

    params = load_params(REPO_ROOT / "params.yaml", {"scale": "smoke"})
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports" / "index.html"
    render_report(params, out)
    html = out.read_text()
    assert 'id="performance"' in html and 'href="#performance"' in html and "Not run yet" in html
    bench.CSV.parent.mkdir(parents=True)
    _table(lambda t: 4.2e-8 * t * t).to_csv(bench.CSV, index=False)
    render_report(params, out)
    html = out.read_text()
    assert "Not run yet" not in html and "Time relative to scaled_dot" in html
    assert 'href="../data/bench/attention.csv"' in html


def test_cpu_memory_cap_turns_an_oversized_entry_into_an_error_not_a_kill():
    # in a child process: an allocation beyond the cap is refused and the process goes on; after the
    # block the previous limit is back (processes started later, e.g. a browser, must not inherit it)
    code = ("import resource, psutil, torch\n"
            "from attnbench import kernel_bench as bench\n"
            "before = resource.getrlimit(resource.RLIMIT_AS)\n"
            "with bench.capped_cpu_memory(0.5) as cap:\n"
            "    assert cap and resource.getrlimit(resource.RLIMIT_AS)[0] == cap\n"
            "    try:\n"
            "        torch.empty(int(psutil.virtual_memory().total * 0.8) // 4)\n"
            "    except (RuntimeError, MemoryError) as exc:\n"
            "        print('refused:', type(exc).__name__)\n"
            "    torch.empty(1000).sum()\n"
            "assert resource.getrlimit(resource.RLIMIT_AS) == before\n"
            "print('still alive')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "still alive" in done.stdout


def test_the_benchmark_leaves_the_address_space_limit_as_it_found_it(tmp_path):
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    assert cli.main(["--scale", "smoke", "--threads", "1", "-q", "bench-attention", "--out", str(tmp_path / "b.csv"),
                     "--lengths", "8", "--only", "scaled_dot"]) == 0
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_hard_reinforce_makes_no_per_query_copies_of_keys_and_values():
    # all queries at once: its memory grows like additive's scores, not with Tq copies of [Tk, D]
    torch.manual_seed(0)
    x = torch.randn(2, 64, 16)
    hard = build("hard_reinforce", 16, 16, 16, attn_dim=8).eval()
    context, weights = hard(x, x, x)
    assert context.shape == (2, 64, 16) and weights.shape == (2, 64, 64)
    picked = weights.argmax(-1)  # eval: the most probable location's value, per query
    assert torch.equal(context, x[torch.arange(2)[:, None], picked])
    additive = build("additive", 16, 16, 16, attn_dim=8).train()
    xg = x.clone().requires_grad_(True)
    saved = {name: bench.saved_bytes(bench.Entry(name, "ours", "quadratic", m, lambda v, m=m: m(v, v, v)[0]), xg)
             for name, m in (("hard", hard.train()), ("additive", additive))}
    assert saved["hard"] < 1.5 * saved["additive"], saved  # per-query copies would add 2*B*Tq*Tk*D floats
