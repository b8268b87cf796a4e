"""Attention kernel benchmark: forward+backward time and peak memory of every registered mechanism.

    attnbench bench-attention --out data/bench/attention.csv

Every mechanism of :mod:`attnbench.attention` is run as self-attention (``query = keys = values =
x``, ``x`` a ``[batch, length, width]`` input that requires grad) in training mode; one *step* is a
forward pass plus the backward pass of a fixed random output gradient. Beside them, in the same
process, run torch's own kernels: ``torch_sdpa`` (``F.scaled_dot_product_attention`` on the same
single-head ``[B, T, D]`` input as our ``scaled_dot``) and ``torch_mha`` (``nn.MultiheadAttention``,
``need_weights=True`` like our ``multihead``'s default), plus the pair ``multihead_noweights`` /
``torch_mha_noweights`` (both with ``need_weights=False``).

Time (``time_s``): on CPU the process CPU time of a step with one thread (the wall time, inflated
by whatever else runs on a shared machine, is ``wall_s``); on CUDA the wall time between
synchronisations. Each round times every entry once (``inner`` steps, enough for ``min_time`` seconds, divided
by ``inner``; an entry whose step takes over a second is timed in the first ``SLOW_ROUNDS`` = 2 rounds only); rounds alternate the order of the entries (forward, then reversed), the pairs being
compared sit next to each other, and the figure is the median over ``repeats`` rounds. Our/torch
time ratios are the median of the per-round ratios (each round's two figures were taken seconds
apart, so a change in machine load affects both).

Memory (``peak_bytes``): the peak of the bytes allocated by the CPU allocator during one step,
above what was allocated before it, from ``torch.profiler``'s allocation records
(``profile_memory=True``); on CUDA, ``torch.cuda.max_memory_allocated`` above the level before the
step. It includes the outputs, the activations saved for backward, transient buffers and the
gradients of the input and parameters. ``saved_bytes`` is the part kept for backward: the sizes of
the distinct storages that autograd saved (``saved_tensors_hooks``), excluding the parameters and
the input, plus the outputs. Both come from each entry's first step, its warm-up, which is never
timed (on CUDA a plain step precedes it, so cuBLAS's one-time workspace is not counted), with the
objects that exist by then frozen out of garbage collection so the collection before it is cheap.

Scaling: the exponent is the slope of log(time) against log(length) fitted on the lengths >=
``fit_from`` (a least-squares line; ~2 for quadratic mechanisms, ~1 for linear ones).
"""
from __future__ import annotations

import gc
import json
import logging
import math
import os
import platform
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import io as aio
from .attention import REGISTRY, available, build
from .attention.base import _accepted_options

log = logging.getLogger("attnbench.bench")

CSV = Path("data/bench/attention.csv")
SUMMARY = Path("data/bench/attention.json")

# ours -> torch reference it is timed against (adjacent in every round)
PAIRS = {"scaled_dot": "torch_sdpa", "multihead": "torch_mha", "multihead_noweights": "torch_mha_noweights"}
REFERENCES = ("torch_sdpa", "torch_mha", "torch_mha_noweights")
PAIRWISE = ("additive", "concat")  # the [B, Tq, Tk, A] mechanisms of the memory target
EXPECTED_EXPONENT = {"quadratic": 2.0, "linear": 1.0}  # time ~ length**exponent; other families are shown, not checked
SLOW_ROUNDS = 2     # rounds that time an entry whose step takes over a second (a compared pair: every round)
WARM_ENOUGH = 0.25  # seconds: a warm-up step at least this long (and 4x min_time) sets `inner` alone (it is 1)
TIME_METHOD = ("time_s: CPU time of the process per forward+backward step, 1 thread (on CUDA: wall time between "
               "synchronisations); wall_s: wall-clock time per step; medians over rounds")
MEMORY_METHOD = ("peak_bytes: peak of the bytes allocated during one forward+backward step above the level "
                 "before it (torch.profiler allocation records on CPU; torch.cuda.max_memory_allocated on CUDA); "
                 "saved_bytes: distinct storages saved for backward (saved_tensors_hooks), excluding parameters "
                 "and the input, plus the outputs")

DEFAULTS = {
    "batch": 4, "width": 64, "heads": 4, "cpu_max_length": 2048,
    "linear": None,   # the mechanisms expected to scale linearly; None: those whose class declares scaling = "linear"
    "options": {},
    "targets": {"mha_time_ratio": 1.10, "pairwise_memory_ratio": 4.0, "memory_length": 1024,
                "exponent_tolerance": 0.3},
    "scales": {"smoke": {"lengths": [16, 32], "repeats": 3, "min_time": 0.002, "fit_from": 16}},
}


def settings(params: dict) -> dict:
    """The benchmark's settings of ``params`` (its ``bench`` section) resolved for its scale."""
    bench = {**DEFAULTS, **params.get("bench", {})}
    bench["targets"] = {**DEFAULTS["targets"], **bench.get("targets", {})}
    scale = params.get("scale", "smoke")
    scales = bench["scales"]
    if scale not in scales:
        raise KeyError(f"params.yaml: bench.scales has no {scale!r} entry (has: {', '.join(scales)})")
    out = {k: v for k, v in bench.items() if k != "scales"}
    out.update(scales[scale])
    out["scale"] = scale
    return out


# ----------------------------------------------------------------------------- entries
@dataclass
class Entry:
    name: str
    kind: str        # "ours" | "reference"
    family: str      # expected scaling: "quadratic" | "linear" | "image" (none expected)
    module: nn.Module | None
    call: Callable[[torch.Tensor], torch.Tensor]  # x -> the output whose gradient is back-propagated


def _mechanism_entry(name: str, cfg: dict, length: int, linear: set[str]) -> Entry:
    d = int(cfg["width"])
    options = dict(cfg.get("options", {}).get(name, {}))
    accepted, _ = _accepted_options(REGISTRY[name])
    if "max_len" in accepted:  # location attention: its score table must cover the key length
        options.setdefault("max_len", length)
    if "num_heads" in accepted:
        options.setdefault("num_heads", int(cfg["heads"]))
    attn = build(name, d, d, d, **options).train()

    def call(x):
        return attn(x, x, x)[0]

    return Entry(name, "ours", family(name, linear), attn, call)


def family(name: str, linear: set[str]) -> str:
    """The scaling expected of a mechanism: "linear" for the names in `linear`; else its class's `scaling`
    ("image": no exponent expected, see GlimpseAttention), "quadratic" when that says linear but `linear`
    (params.yaml's bench.linear) leaves it out."""
    own = REGISTRY[name].scaling
    return "linear" if name in linear else ("quadratic" if own == "linear" else own)


def entries(cfg: dict, length: int, device: torch.device) -> list[Entry]:
    """Every registered mechanism plus the torch references, the compared pairs adjacent."""
    d, heads = int(cfg["width"]), int(cfg["heads"])
    linear = set(cfg["linear"] if cfg.get("linear") is not None else
                 (name for name in available() if REGISTRY[name].scaling == "linear"))
    ours = {name: _mechanism_entry(name, cfg, length, linear) for name in available()}
    mh = ours["multihead"].module
    mha = nn.MultiheadAttention(d, heads, batch_first=True).train()
    mha_nw = nn.MultiheadAttention(d, heads, batch_first=True).train()
    refs = {
        "torch_sdpa": Entry("torch_sdpa", "reference", "quadratic", None,
                            lambda x: F.scaled_dot_product_attention(x, x, x)),
        "torch_mha": Entry("torch_mha", "reference", "quadratic", mha,
                           lambda x: mha(x, x, x, need_weights=True)[0]),
        "multihead_noweights": Entry("multihead_noweights", "ours", "quadratic", mh,
                                     lambda x: mh(x, x, x, need_weights=False)[0]),
        "torch_mha_noweights": Entry("torch_mha_noweights", "reference", "quadratic", mha_nw,
                                     lambda x: mha_nw(x, x, x, need_weights=False)[0]),
    }
    order: list[Entry] = []
    for ours_name, ref_name in PAIRS.items():
        order += [ours.pop(ours_name) if ours_name in ours else refs.pop(ours_name), refs.pop(ref_name)]
    order += list(ours.values())
    for e in order:
        if e.module is not None:
            e.module.to(device)
    return order


# ----------------------------------------------------------------------------- measuring
def _step(entry: Entry, x: torch.Tensor, grad: torch.Tensor) -> None:
    x.grad = None
    if entry.module is not None:
        for p in entry.module.parameters():
            p.grad = None
    out = entry.call(x)
    # a mechanism whose context is not [B, T, width] (RAM's glimpse: the retina) gets a gradient of ones
    out.backward(grad if out.shape == grad.shape else torch.ones_like(out))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(entry: Entry, x: torch.Tensor, grad: torch.Tensor, inner: int,
              device: torch.device) -> tuple[float, float]:
    """(time, wall time) of one step, averaged over ``inner`` steps. On CPU the time is the
    process's CPU time (one thread), which other jobs on a shared machine inflate far less than the
    wall time; on CUDA both are the wall time between synchronisations."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(inner):
        _step(entry, x, grad)
    _sync(device)
    wall = (time.perf_counter() - w0) / inner
    cpu = (time.process_time() - c0) / inner
    return (wall if device.type == "cuda" else cpu), wall


def _peak(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated while `step()` runs, above the level before it (see the module doc)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    level = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        if e.device_type() != torch.autograd.DeviceType.CPU:
            continue
        level += e.nbytes()
        peak = max(peak, level)
    return int(peak)


def peak_bytes(entry: Entry, x: torch.Tensor, grad: torch.Tensor, device: torch.device) -> int:
    """Peak bytes allocated during one step above the level before it (see the module doc)."""
    return _peak(lambda: _step(entry, x, grad), device)


def _saving(entry: Entry, x: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[int, int]]:
    """A saved_tensors_hooks pack function and the {storage: bytes} it fills with every distinct storage
    autograd saves for backward, the parameters' and the input's left out."""
    skip = {x.untyped_storage().data_ptr()}
    if entry.module is not None:
        skip |= {p.untyped_storage().data_ptr() for p in entry.module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    return pack, seen


def saved_bytes(entry: Entry, x: torch.Tensor) -> int:
    """Bytes of the distinct storages saved for backward (not parameters, not the input) plus outputs."""
    pack, seen = _saving(entry, x)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x.grad = None
        out = entry.call(x)
    seen[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
    del out
    return int(sum(seen.values()))


def memory(entry: Entry, x: torch.Tensor, grad: torch.Tensor, device: torch.device) -> tuple[int, int]:
    """(peak_bytes, saved_bytes) of an entry from one forward+backward step: `peak_bytes`' peak, with
    `saved_bytes`' hooks recording what the forward saves (the hooks allocate no tensor memory). Leaves
    x.grad None, as `saved_bytes` after `peak_bytes` did, so the next entry starts from the same state."""
    pack, seen = _saving(entry, x)

    def step():
        x.grad = None
        if entry.module is not None:
            for p in entry.module.parameters():
                p.grad = None
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = entry.call(x)
        seen[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
        out.backward(grad if out.shape == grad.shape else torch.ones_like(out))

    peak = _peak(step, device)
    x.grad = None
    return peak, int(sum(seen.values()))


def _warm_up(entry: Entry, x: torch.Tensor, grad: torch.Tensor, device: torch.device,
             memory_of: dict[str, tuple[int, int] | str]) -> float:
    """An entry's first step, never timed, doubling as its memory pass: stores ``memory(...)``'s
    (peak_bytes, saved_bytes) in ``memory_of[entry.name]``, or the reason when the profiler fails (its
    own event buffer can outgrow the address-space cap; the step then runs again without it, and an
    error there fails the entry). Returns the step's wall time. On CUDA a plain step comes first: the
    first matrix product allocates cuBLAS's workspace, which later steps reuse."""
    if device.type == "cuda":
        time_once(entry, x, grad, 1, device)
    t0 = time.perf_counter()
    try:
        memory_of[entry.name] = memory(entry, x, grad, device)
    except (RuntimeError, MemoryError) as exc:
        memory_of[entry.name] = f"memory failed: {type(exc).__name__}: {(str(exc) or '-').splitlines()[0][:200]}"
        return time_once(entry, x, grad, 1, device)[1]
    return time.perf_counter() - t0


@contextmanager
def frozen_gc():
    """Within the block, the objects that exist at its start (torch, pandas, the entries: millions) are
    left out of garbage collection, so the gc.collect() before each memory step takes milliseconds instead
    of a few tenths of a second. Garbage is collected first, so none of it is kept by the freeze."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def tune_malloc() -> str:
    """Keep freed large buffers in glibc's heap instead of unmapping them.

    glibc maps every allocation above its mmap threshold (at most 32 MiB) afresh and returns it on
    free (and trims the heap's top), so each step of a long input pays page faults for its [B, T, T] buffers (kernel time that
    the CPU-time figure counts), which bends the time-vs-length curve upward at the lengths where
    the buffers cross the threshold. Serving every allocation from the heap and never trimming it
    (close to what jemalloc or tcmalloc do by design) makes steps reuse their memory. Returns what was done, for the output."""
    if platform.system() != "Linux":
        return "allocator untouched (not Linux)"
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # mallopt's parameter numbers (malloc.h)
        done = libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):
        return "allocator untouched (no glibc mallopt)"
    return ("glibc mallopt: M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB (freed buffers reused, not re-faulted)"
            if done else "glibc mallopt refused; allocator untouched")


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run(cfg: dict, device: torch.device, lengths: list[int] | None = None,
        only: list[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """Time and measure every entry at every length; one row per (length, entry)."""
    lengths = list(lengths or cfg["lengths"])
    if device.type == "cpu":
        skipped = [t for t in lengths if t > int(cfg["cpu_max_length"])]
        if skipped:
            log.warning("lengths %s exceed bench.cpu_max_length=%s on CPU: skipped", skipped, cfg["cpu_max_length"])
        lengths = [t for t in lengths if t <= int(cfg["cpu_max_length"])]
    b, d = int(cfg["batch"]), int(cfg["width"])
    repeats, min_time = int(cfg["repeats"]), float(cfg["min_time"])
    max_step = float(cfg.get("max_step_seconds", 30.0))
    rows = []
    too_slow: set[str] = set()
    n_entries = sum(only is None or e.name in only for e in entries(cfg, 8, torch.device("cpu")))
    # progress in entry passes: each entry's warm-up, then each of its rounds (an entry skipped, failed or not
    # timed in a round counts when it is passed over)
    bar = tqdm(total=len(lengths) * n_entries * (1 + repeats), desc="bench-attention", unit="pass",
               disable=not progress)
    for length in lengths:
        torch.manual_seed(length)
        es = [e for e in entries(cfg, length, device) if only is None or e.name in only]
        x = torch.randn(b, length, d, device=device, requires_grad=True)
        grad = torch.randn(b, length, d, device=device)
        load = _loadavg()
        status: dict[str, str] = {}
        inner: dict[str, int] = {}
        slow: dict[str, bool] = {}  # steps over a second: timed in the first SLOW_ROUNDS rounds only
        memory_of: dict[str, tuple[int, int] | str] = {}  # (peak, saved) or why the memory pass failed
        with frozen_gc():  # the memory pass runs a gc.collect() per entry, each cheap inside the freeze
            for e in es:
                bar.update(1)
                if e.name in too_slow:
                    status[e.name] = "skipped: slower than bench.max_step_seconds at a shorter length"
                    continue
                try:
                    t1 = _warm_up(e, x, grad, device, memory_of)
                    # a second step only where it can change `inner`: a first step this long already gives 1
                    if t1 <= max(WARM_ENOUGH, 4 * min_time):
                        t1 = time_once(e, x, grad, 1, device)[1]
                    # a short step is still ~1.5x slower right after the profiled one: `inner` from the next two
                    if t1 < min_time:
                        t1 = time_once(e, x, grad, 2, device)[1]
                    if t1 > max_step:
                        too_slow.add(e.name)
                    inner[e.name] = max(1, min(1000, math.ceil(min_time / max(t1, 1e-7))))
                    slow[e.name] = t1 > 1.0
                    status[e.name] = "ok"
                except (RuntimeError, ValueError, MemoryError) as exc:  # out of memory, a shape the mechanism refuses
                    status[e.name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        timed = [e for e in es if status.get(e.name) == "ok"]
        times: dict[str, list[float]] = {e.name: [] for e in timed}
        walls: dict[str, list[float]] = {e.name: [] for e in timed}
        for r in range(repeats):
            bar.set_postfix(length=length, round=f"{r + 1}/{repeats}", load=load)
            bar.update(len(es) - len(timed))                   # the entries no round times
            for e in (timed if r % 2 == 0 else timed[::-1]):
                bar.update(1)
                if e.name not in times or (slow[e.name] and r >= SLOW_ROUNDS and not any(e.name in pair for pair in PAIRS.items())):
                    continue
                try:
                    t, w = time_once(e, x, grad, inner[e.name], device)
                except (RuntimeError, MemoryError) as exc:   # out of memory in a later round: the entry fails, not the run
                    status[e.name] = f"failed: {type(exc).__name__}: {(str(exc) or '-').splitlines()[0][:200]}"
                    del times[e.name], walls[e.name]
                    continue
                times[e.name].append(t)
                walls[e.name].append(w)
        for e in es:
            row = {"device": device.type, "batch": b, "width": d, "heads": int(cfg["heads"]), "length": length,
                   "mechanism": e.name, "kind": e.kind, "family": e.family, "status": status.get(e.name, "ok"),
                   "time_s": math.nan, "time_q25_s": math.nan, "time_q75_s": math.nan, "wall_s": math.nan,
                   "repeats": 0, "inner": 0,
                   "peak_bytes": math.nan, "saved_bytes": math.nan, "loadavg_1m": load,
                   "threads": torch.get_num_threads()}
            if e.name in times:
                ts = times[e.name]
                q = np.quantile(ts, [0.25, 0.75])
                row.update(time_s=statistics.median(ts), time_q25_s=float(q[0]), time_q75_s=float(q[1]),
                           wall_s=statistics.median(walls[e.name]), repeats=len(ts), inner=inner[e.name])
                if isinstance(memory_of[e.name], str):
                    row["status"] = memory_of[e.name]
                else:
                    row["peak_bytes"], row["saved_bytes"] = memory_of[e.name]
                ref = PAIRS.get(e.name)
                if ref in times and len(times[ref]) == len(ts):
                    ratios = [a / c for a, c in zip(ts, times[ref])]
                    row["paired_ratio"] = statistics.median(ratios)
                    row["paired_with"] = ref
            rows.append(row)
        del x, grad, es
        gc.collect()
    bar.close()
    df = pd.DataFrame(rows)
    for col in ("paired_ratio", "paired_with"):
        if col not in df:
            df[col] = math.nan
    return df


# ----------------------------------------------------------------------------- analysis
def exponent(lengths, times) -> float:
    """Least-squares slope of log(time) on log(length); NaN with fewer than two finite points."""
    pts = [(math.log(l), math.log(t)) for l, t in zip(lengths, times)
           if t is not None and np.isfinite(t) and t > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return math.nan
    xs, ys = zip(*pts)
    return float(np.polyfit(xs, ys, 1)[0])


def summarise(df: pd.DataFrame, cfg: dict) -> dict:
    """Targets, ratios and exponents computed from a benchmark table (the CSV's rows)."""
    tg = {**DEFAULTS["targets"], **cfg.get("targets", {})}
    ok = df[df["status"] == "ok"]
    lengths = sorted(int(t) for t in df["length"].unique())
    fit_from = int(cfg.get("fit_from", lengths[0] if lengths else 0))
    time = ok.pivot_table(index="length", columns="mechanism", values="time_s")
    peak = ok.pivot_table(index="length", columns="mechanism", values="peak_bytes")
    out: dict = {"lengths": lengths, "fit_from": fit_from, "targets": tg, "checks": []}

    # our multi-head against nn.MultiheadAttention, per length (paired per-round ratio)
    mha = []
    for ours in ("multihead", "multihead_noweights"):
        rows = ok[ok["mechanism"] == ours].sort_values("length")
        for _, r in rows.iterrows():
            ratio = r.get("paired_ratio")
            mha.append({"mechanism": ours, "reference": r.get("paired_with"), "length": int(r["length"]),
                        "ratio": None if pd.isna(ratio) else float(ratio),
                        "pass": None if pd.isna(ratio) else bool(ratio <= tg["mha_time_ratio"])})
    out["mha_ratios"] = mha
    verdicts = [m["pass"] for m in mha if m["pass"] is not None]
    out["checks"].append({"target": f"our multihead within {tg['mha_time_ratio']:.2f}x of nn.MultiheadAttention's "
                                    "time at every length (need_weights True and False)",
                          "value": (f"max ratio {max(m['ratio'] for m in mha if m['ratio'] is not None):.3f}"
                                    if verdicts else "not measured"),
                          "pass": (all(verdicts) if verdicts else None)})

    # pairwise memory against scaled_dot at memory_length
    mem_len = int(tg["memory_length"])
    mem = []
    for name in PAIRWISE:
        if mem_len in peak.index and name in peak and "scaled_dot" in peak and peak.at[mem_len, "scaled_dot"] > 0:
            ratio = float(peak.at[mem_len, name] / peak.at[mem_len, "scaled_dot"])
            mem.append({"mechanism": name, "length": mem_len, "ratio": ratio,
                        "pass": bool(ratio <= tg["pairwise_memory_ratio"])})
    out["memory_ratios"] = mem
    out["checks"].append({"target": f"additive/concat peak memory <= {tg['pairwise_memory_ratio']:g}x scaled_dot's "
                                    f"at length {mem_len}",
                          "value": ", ".join(f"{m['mechanism']} {m['ratio']:.2f}x" for m in mem) or
                                   f"length {mem_len} not measured",
                          "pass": (all(m["pass"] for m in mem) if mem else None)})

    # scaling exponents on the upper lengths
    tol = float(tg["exponent_tolerance"])
    fams = ok.drop_duplicates("mechanism").set_index("mechanism")["family"].to_dict()
    kinds = ok.drop_duplicates("mechanism").set_index("mechanism")["kind"].to_dict()
    fit = time[time.index >= fit_from]
    exps = []
    for name in time.columns:
        e = exponent(fit.index, fit[name]) if len(fit) >= 2 else math.nan
        want = EXPECTED_EXPONENT.get(fams.get(name))   # None: a family with no expected exponent
        exps.append({"mechanism": name, "kind": kinds.get(name), "family": fams.get(name), "expected": want,
                     "exponent": None if math.isnan(e) else e,
                     "pass": None if math.isnan(e) or want is None else bool(abs(e - want) <= tol)})
    out["exponents"] = exps
    for fam, want in (("quadratic", 2.0), ("linear", 1.0)):
        group = [x for x in exps if x["family"] == fam and x["exponent"] is not None]
        out["checks"].append({
            "target": f"time exponent within ±{tol:g} of {want:g} for the {fam} mechanisms (lengths >= {fit_from})",
            "value": (", ".join(f"{x['mechanism']} {x['exponent']:.2f}" for x in group if not x["pass"])
                      or (f"all {len(group)} within; range {min(x['exponent'] for x in group):.2f}–"
                          f"{max(x['exponent'] for x in group):.2f}" if group else "not measured")),
            "pass": (all(x["pass"] for x in group) if group else None)})

    # relative time and memory per length (LRA style)
    rel = []
    if "scaled_dot" in time:
        for name in time.columns:
            for length in time.index:
                rel.append({"mechanism": name, "length": int(length),
                            "time_rel": float(time.at[length, name] / time.at[length, "scaled_dot"]),
                            "memory_rel": (float(peak.at[length, name] / peak.at[length, "scaled_dot"])
                                           if name in peak and peak.at[length, "scaled_dot"] > 0 else None)})
    out["relative"] = rel
    return out


# ----------------------------------------------------------------------------- entry point
@contextmanager
def capped_cpu_memory(fraction: float = 0.75):
    """Within the block, limit this process's address space to `fraction` of the machine's memory, so an
    entry that would need more fails with an allocation error, recorded as that entry's status, instead
    of the kernel's OOM killer ending the whole benchmark. Yields the limit in bytes (None if not set);
    the previous limit is restored on exit (children started meanwhile, e.g. a browser, inherit it)."""
    import resource

    import psutil

    before = resource.getrlimit(resource.RLIMIT_AS)
    soft, hard = before
    limit = int(psutil.virtual_memory().total * fraction)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield soft
        return
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        yield None
        return
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, before)


def main(params: dict, out: Path = CSV, device: str = "cpu", lengths: list[int] | None = None,
         only: list[str] | None = None, threads: int = 1) -> dict:
    """Run the benchmark, write ``out`` (CSV) and its summary beside it (``.json``); return the summary."""
    cfg = settings(params)
    torch.set_num_threads(int(threads))
    allocator = tune_malloc()
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_before = _loadavg()
    t0 = time.perf_counter()
    # on CPU only: the CUDA driver maps far more address space than it uses
    with (capped_cpu_memory() if dev.type == "cpu" else nullcontext()) as cap:
        if cap:
            log.info("address space capped at %.1f GiB: an entry needing more fails instead of the run", cap / 2**30)
        df = run(cfg, dev, lengths=lengths, only=only)
    wall = time.perf_counter() - t0
    out = Path(out)
    with aio.atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    summary = summarise(df, cfg)
    summary.update({
        "scale": cfg["scale"], "device": dev.type, "batch": int(cfg["batch"]), "width": int(cfg["width"]),
        "heads": int(cfg["heads"]), "repeats": int(cfg["repeats"]), "threads": int(threads),
        "allocator": allocator, "memory_method": MEMORY_METHOD, "time_method": TIME_METHOD if dev.type == "cpu" else "wall time", "started": started, "wall_s": round(wall, 1),
        "loadavg_1m_before": load_before, "loadavg_1m_after": _loadavg(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
    })
    aio.write_json(out.with_suffix(".json"), summary)
    log.info("wrote %s (%d rows) in %.0fs", out, len(df), wall)
    for c in summary["checks"]:
        log.info("%s: %s — %s", {True: "PASS", False: "FAIL", None: "n/a"}[c["pass"]], c["target"], c["value"])
    return summary
