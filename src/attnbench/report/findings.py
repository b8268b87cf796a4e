"""The committed findings: what the benchmark found, per (task, dataset), versioned in git.

`make findings` (Snakemake with `--config grid=findings`) trains the runs each claim compares plus each
task's strongest simple baselines at three seeds, then `attnbench findings collect` writes, per (task,
dataset):

    results/findings/<task>/<dataset>.json        metrics per run x seed, config hashes, training time,
                                                  the claims' verdicts (the report sections' own code),
                                                  the paired tests over test items, provenance
    results/findings/<task>/<dataset>.items.json.gz   the per-item outputs those paired tests read
                                                  (translations, labels and predictions, per-origin errors)

The report's Findings section and the README's "What the benchmark finds" table are rendered from these
files (`render_rows`, `markdown_table`). A finding whose runs' config hashes differ from what today's
params.yaml gives those runs is marked stale (`staleness`), never shown as current.
"""
from __future__ import annotations

import gzip
import json
import math
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import paths
from ..config import DEFAULT_PARAMS, SYNTHETIC, ParamsError, config_hash, for_dataset, resolve_run
from ..validation import load_params, params_from_args
from .host import machine

# numpy, pandas (aggregate) and scipy (paired) are imported where they are used: the CLI builds this
# module's parser at every start-up, and every pipeline job starts the CLI

ROOT = Path("results/findings")
ITEMS_SUFFIX = ".items.json.gz"
README_START, README_END = "<!-- findings-table:start -->", "<!-- findings-table:end -->"
CLAIM_ORDER = [f"C{i}" for i in range(1, 13)]


def finding_path(task: str, dataset: str, root: Path = ROOT) -> Path:
    return Path(root) / task / f"{dataset}.json"


def items_path(task: str, dataset: str, root: Path = ROOT) -> Path:
    return Path(root) / task / f"{dataset}{ITEMS_SUFFIX}"


# ---- the comparisons each task's claims rest on --------------------------------------------------------
# (claim, A, B, metric): A against B on the same test items. `metric` picks the paired test: bleu (paired
# bootstrap), accuracy (McNemar), ape / ape_rise (Diebold-Mariano on per-origin errors, or on their rise
# from clean to corrupted inputs: C10 is about the rise), rmse
# (paired bootstrap). A role "baseline" row sets the best attention run against the strongest simple
# baseline of the task (claim None: it is shown beside every claim of the task). Runs are chosen by their seed-mean headline (`means`), so the rows follow the results.

def _best(means: dict[str, float], names, lower: bool = False) -> str | None:
    have = [n for n in names if n in means and math.isfinite(means[n])]
    if not have:
        return None
    return min(have, key=means.get) if lower else max(have, key=means.get)


def _translation(means, runs):
    rnn_att = [r for r, spec in runs.items() if spec["model"] == "rnn" and spec["attention"] != "none"]
    rnns = [r for r, spec in runs.items() if spec["model"] == "rnn"]
    none = next((r for r, spec in runs.items() if spec["model"] == "rnn" and spec["attention"] == "none"), None)
    by_mech = {spec["attention"]: r for r, spec in runs.items() if spec["model"] == "rnn"}
    others = [by_mech[m] for m in ("general", "dot", "concat") if m in by_mech]
    trans = [r for r, spec in runs.items() if spec["model"] == "transformer"]
    return [("C1", _best(means, rnn_att), none, "bleu", "claim"),
            ("C2", by_mech.get("local_p"), _best(means, others), "bleu", "claim"),
            ("C3", _best(means, trans), _best(means, rnns), "bleu", "claim")]


def _intent(means, runs):
    attention = [r for r, spec in runs.items() if spec["attention"] != "none"]
    self_dot = next((r for r, spec in runs.items() if spec["attention"] == "self_dot"), None)
    pretrained = next((r for r, spec in runs.items() if spec["model"] == "bert"), None)
    scratch = next((r for r, spec in runs.items() if spec["model"] == "transformer"), None)
    # C8 is about where the weights fall (keyword mass), not accuracy: no item-level accuracy test decides it
    return [("C12", pretrained, scratch, "accuracy", "claim"),
            (None, _best(means, attention), "tfidf" if "tfidf" in runs else None, "accuracy", "baseline")]


def _documents(means, runs):
    pooled = [r for r, spec in runs.items() if spec["model"] == "han" and spec["attention"] == "none"]
    han = next((r for r, spec in runs.items() if spec["model"] == "han" and spec["attention"] != "none"), None)
    return [("C6", han, _best(means, pooled), "accuracy", "claim"),
            (None, han, "tfidf" if "tfidf" in runs else None, "accuracy", "baseline")]


def _glimpse(means, runs):
    return [("C5", "ram-cluttered", "cnn-cluttered", "accuracy", "claim"),
            (None, "ram-cluttered", "mlp-cluttered", "accuracy", "baseline")]


def _load(means, runs):
    attention = [r for r, spec in runs.items() if spec["attention"] != "none"]
    linear = [r for r in ("ridge", "dlinear") if r in runs]
    return [("C9", "feature-attention", "gru", "ape", "claim"),
            ("C10", "anomaly-mask", "gru", "ape_rise", "claim"),
            (None, _best(means, attention, lower=True), _best(means, linear, lower=True), "ape", "baseline")]


def _captioning(means, runs):
    """C4: the best soft and the best hard attention run, each against Show and Tell (no attention)."""
    from ..models.captioner import decoder_kind   # the captioning task's own none / soft / hard

    kinds = {r: decoder_kind(spec["attention"]) for r, spec in runs.items()}
    none = next((r for r, kind in kinds.items() if kind == "none"), None)
    return [("C4", _best(means, [r for r, k in kinds.items() if k == kind]), none, "bleu", "claim")
            for kind in ("soft", "hard")]


def _ships(means, runs):
    """C11: the task-partitioning run against each net alone, the shallow one and the deep one without attention."""
    partition = next((r for r, spec in runs.items() if spec["model"] == "partition"), None)
    alone = [next((r for r, spec in runs.items() if spec["model"] == model and spec["attention"] == "none"), None)
             for model in ("shallow", "deep")]
    return [("C11", partition, other, "iou", "claim") for other in alone]


def _recsys(means, runs):
    return [("C7", "afm", "fm", "rmse", "claim"), (None, "afm", "linear", "rmse", "baseline")]


COMPARISONS: dict[str, Callable] = {"translation": _translation, "intent": _intent, "documents": _documents,
                                    "glimpse": _glimpse, "load": _load, "recsys": _recsys, "captioning": _captioning,
                                    "ships": _ships}
RANKING = {"translation": ("bleu", False), "captioning": ("bleu4", False), "intent": ("accuracy", False), "documents": ("accuracy", False),
           "glimpse": ("error", True), "load": ("mape", True), "recsys": ("rmse", True),
           "ships": ("bowstern_iou", False)}


# ---- per-item outputs ----------------------------------------------------------------------------------

BLEU_TASKS = ("translation", "captioning")   # scored by corpus BLEU: the items are outputs and references

def _run_items(task: str, dataset: str, run: str, seed: int) -> dict[str, Any] | None:
    """One run x seed's per-item outputs, or None when it wrote none."""
    import numpy as np

    folder = paths.run_dir(task, dataset, run, seed)
    if task in BLEU_TASKS:   # the scored outputs and references, from samples.jsonl
        path = folder / "samples.jsonl"
        if not path.is_file():
            return None
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if task == "captioning":   # the beam-searched caption of each test image, against all its references
            return {"hyp": [r["caption"] for r in records], "ref": [r["references"] for r in records]}
        return {"hyp": [r.get("hyp_detok", r["hyp"]) for r in records],
                "ref": [r.get("ref_raw", r["ref"]) for r in records]}
    path = folder / "items.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for key in z.files:
            arr = z[key]
            if arr.dtype.kind == "f":
                out[key] = [None if not math.isfinite(v) else round(float(v), 5) for v in arr.tolist()]
            else:
                out[key] = arr.tolist()
        return out


def _bleu_options(signature: str | None) -> dict[str, Any]:
    """lowercase / tokenize of a sacreBLEU signature ('nrefs:1|case:lc|eff:no|tok:13a|...')."""
    fields = dict(part.split(":", 1) for part in (signature or "").split("|") if ":" in part)
    return {"lowercase": fields.get("case") == "lc", "tokenize": fields.get("tok", "13a")}


def paired_test(task: str, metric: str, items: dict, a: str, b: str, seeds: list[int], horizon: int = 1,
                bleu_signature: str | None = None) -> dict[str, Any] | None:
    """The field's paired test of run a against run b on the seeds both have per-item outputs for."""
    import numpy as np

    from . import paired

    keys = [f"seed{s}" for s in seeds if f"seed{s}" in items["runs"].get(a, {}) and f"seed{s}" in items["runs"].get(b, {})]
    if not keys:
        return None
    A = [items["runs"][a][k] for k in keys]
    B = [items["runs"][b][k] for k in keys]
    if metric == "bleu":
        return paired.bleu_bootstrap([x["hyp"] for x in A], [x["hyp"] for x in B], items["refs"],
                                     **_bleu_options(bleu_signature))
    if metric == "accuracy":
        ca = np.stack([np.equal(x["labels"], x["predictions"]) for x in A], axis=1)
        cb = np.stack([np.equal(x["labels"], x["predictions"]) for x in B], axis=1)
        return paired.mcnemar(ca, cb, scale=100.0, unit=" pts", digits=2)
    def per_seed(records, key):   # one per-item output of every seed: [items, seeds]
        return np.stack([np.array(x[key], dtype=float) for x in records], axis=1)

    if metric == "ape_rise":   # per origin, how much corrupting the input window raised the error
        return paired.diebold_mariano(per_seed(A, "ape_corrupted") - per_seed(A, "ape"),
                                      per_seed(B, "ape_corrupted") - per_seed(B, "ape"), horizon,
                                      unit=" % MAPE rise", digits=3)
    if metric in ("ape", "ape_corrupted"):
        return paired.diebold_mariano(per_seed(A, metric), per_seed(B, metric), horizon, unit=" % MAPE", digits=3)
    if metric == "iou":   # bow/stern IoU pooled over the pixels of the test tiles
        return paired.iou_bootstrap(per_seed(A, "intersection"), per_seed(A, "union"),
                                    per_seed(B, "intersection"), per_seed(B, "union"))
    if metric == "rmse":
        return paired.rmse_bootstrap(np.array(A[0]["target"], dtype=float), per_seed(A, "prediction"),
                                     per_seed(B, "prediction"))
    raise ValueError(f"no paired test for metric {metric!r}")


# ---- collect: results of a findings run -> the committed files -----------------------------------------

def provenance() -> dict[str, Any]:
    from importlib import metadata

    info = machine()
    from .host import git as _git   # the report's git helper: (output, checkout)

    commit, checkout = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", where=checkout)[0]) if commit else None
    versions = {}
    for name in ("torch", "numpy", "scikit-learn", "sacrebleu", "scipy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"commit": commit, "dirty": dirty, "cpu": info["cpu"], "cores": info["cpus"], "gpus": info["gpus"],
            "system": info["system"], "python": platform.python_version(), "versions": versions,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


def _protocol(view: dict, task: str) -> dict[str, Any]:
    """The budget every run of the finding trained under, from its config (the same for every run)."""
    section = view["tasks"][task]
    size = section["scales"][view["scale"]]
    train = section["train"]
    return {"scale": view["scale"], "epochs": size.get("epochs"), "patience": train.get("patience"),
            "max_minutes": train.get("max_minutes"), "schedule": train.get("schedule"), "threads": view["threads"]}


def _claims(view: dict, task: str) -> list[dict[str, Any]]:
    """The report section's own claims on these results (its figures go to a scratch folder)."""
    from . import sections

    module = sections.module_for(task)
    if module is None:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        ctx = module.context(view, task, out_dir=Path(scratch))
    keep = ("id", "claim", "source", "paper", "verdict", "evidence")
    return [{k: c.get(k) for k in keep} for c in ctx.get("claims") or []]


def collect(params: dict, task: str, dataset: str, root: Path = ROOT, command: str = "make findings") -> dict:
    """Write results/findings/<task>/<dataset>.json (+ its items file) from the runs of `params` (the
    findings grid, `select_grid` applied) and return the finding."""
    from . import aggregate as agg

    view = for_dataset(params, task, dataset)
    table = agg.collect(view, task)
    metrics = agg.summary_metrics(view, task, table)
    runs: dict[str, Any] = {}
    items: dict[str, Any] = {"refs": None, "runs": {}}
    signature = None
    for run, spec in view["tasks"][task]["runs"].items():
        entry = {"model": spec["model"], "attention": spec["attention"], "seeds": {}}
        for seed in view["seeds"]:
            key = f"seed{seed}"
            row = table[(table["run"] == run) & (table["seed"] == seed)]
            info_path = paths.run_dir(task, dataset, run, seed) / "train_info.json"
            info = json.loads(info_path.read_text()) if info_path.is_file() else {}
            record = {"status": str(row["status"].iloc[0]) if len(row) else "missing",
                      "metrics": metrics.get(run, {}).get(key, {}),
                      "config_hash": info.get("config_hash"),
                      "train_seconds": info.get("train_seconds"), "epochs_trained": info.get("epochs_trained"),
                      "best_epoch": info.get("best_epoch"), "stopped_by": info.get("stopped_by")}
            entry["seeds"][key] = {k: agg._clean(v) for k, v in record.items()}
            got = _run_items(task, dataset, run, seed)
            if got is not None:
                if task in BLEU_TASKS:
                    items["refs"] = items["refs"] or got.pop("ref")
                    got.pop("ref", None)
                    mpath = paths.run_dir(task, dataset, run, seed) / "metrics.json"
                    if signature is None and mpath.is_file():
                        signature = json.loads(mpath.read_text()).get("bleu_signature")
                items["runs"].setdefault(run, {})[key] = got
        runs[run] = entry
    finding = {"task": task, "dataset": dataset, "seeds": list(view["seeds"]), "protocol": _protocol(view, task),
               "bleu_signature": signature, "provenance": {**provenance(), "command": command},
               "runs": runs, "claims": _claims(view, task)}
    finding["horizon"] = _horizon(view, task)
    finding["paired"] = compare(finding, items, horizon=finding["horizon"])
    _write_finding(finding, root)
    from .. import io as aio

    with aio.atomic_path(items_path(task, dataset, root)) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(json.dumps(items, separators=(",", ":"), allow_nan=False).encode())
    return finding


def _write_finding(finding: dict, root: Path) -> None:
    """results/findings/<task>/<dataset>.json, atomically."""
    from .. import io as aio

    out = finding_path(finding["task"], finding["dataset"], root)
    out.parent.mkdir(parents=True, exist_ok=True)
    aio.write_text(out, json.dumps(finding, indent=1, sort_keys=False, allow_nan=False) + "\n")


def _horizon(view: dict, task: str) -> int:
    return int(view["tasks"][task]["data"].get("horizon", 1)) if task == "load" else 1


def seed_means(finding: dict, metric: str) -> dict[str, float]:
    out = {}
    for run, entry in finding["runs"].items():
        vals = [s["metrics"].get(metric) for s in entry["seeds"].values() if s["status"] == "ok"]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        if vals:
            out[run] = sum(vals) / len(vals)
    return out


def compare(finding: dict, items: dict, horizon: int = 1) -> list[dict[str, Any]]:
    """The paired tests of a finding's comparisons (see COMPARISONS), from its per-item outputs."""
    task = finding["task"]
    if task not in COMPARISONS:
        return []
    metric, lower = RANKING[task]
    means = seed_means(finding, metric)
    runs = {r: {"model": e["model"], "attention": e["attention"]} for r, e in finding["runs"].items()}
    out = []
    for claim, a, b, item_metric, role in COMPARISONS[task](means, runs):
        row = {"claim": claim, "role": role, "a": a, "b": b, "metric": item_metric}
        if a is None or b is None or a not in runs or b not in runs:
            row["result"], row["why"] = None, "a compared run is not in the findings grid"
        else:
            try:
                row["result"] = paired_test(task, item_metric, items, a, b, finding["seeds"], horizon,
                                            finding.get("bleu_signature"))
                row["why"] = None if row["result"] else "no per-item outputs for these runs"
            except ValueError as exc:
                row["result"], row["why"] = None, str(exc)
        out.append(row)
    return out


def read_items(task: str, dataset: str, root: Path = ROOT) -> dict:
    with gzip.open(items_path(task, dataset, root), "rt", encoding="utf-8") as fh:
        return json.load(fh)


# ---- reading the committed findings ---------------------------------------------------------------------

def load_all(root: Path = ROOT) -> list[dict]:
    """Every committed finding, in task order then synthetic first."""
    found = []
    for path in sorted(Path(root).glob("*/*.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable findings file ({exc})") from exc
    return sorted(found, key=lambda f: (f["task"], f["dataset"] != SYNTHETIC, f["dataset"]))


def file_params(fallback: dict | None = None) -> dict:
    """params.yaml of the working directory as the file says, without command-line overrides (`fallback`
    when there is none)."""
    if Path(DEFAULT_PARAMS).is_file():
        return load_params(DEFAULT_PARAMS)
    if fallback is None:
        raise ParamsError(f"{DEFAULT_PARAMS}: not found in {Path.cwd()}")
    return fallback


def staleness(finding: dict, params: dict) -> list[str]:
    """The runs x seeds of a finding whose trained configuration is not what params gives them today
    (changed hyperparameters, data, budget; a run or dataset no longer defined): empty when current."""
    stale = []
    for run, entry in finding["runs"].items():
        for key, seed in entry["seeds"].items():
            if seed["status"] != "ok":
                continue
            try:
                now = config_hash(resolve_run(params, finding["task"], run, int(key[4:]), finding["dataset"]))
            except (ParamsError, KeyError):
                now = None
            if now != seed.get("config_hash"):
                stale.append(f"{run}/{key}")
    return stale


SHORT_NAMES = {"paired bootstrap over test sentences (sacreBLEU statistics, 1,000 resamples)": "paired bootstrap",
               "paired bootstrap over test images (sacreBLEU statistics, every reference, 1,000 resamples)":
                   "paired bootstrap",
               "McNemar's exact test over test items": "McNemar",
               "Diebold-Mariano test over forecast origins (HLN-corrected)": "Diebold-Mariano",
               "paired bootstrap over test examples (1,000 resamples)": "paired bootstrap",
               "paired bootstrap over test tiles (IoU pooled over their pixels, 1,000 resamples)": "paired bootstrap"}


def _fmt_effect(row: dict, compact: bool = False) -> str:
    """'a − b: effect [low, high], p (test)'; compact: the test's short name, no item counts."""
    res = row.get("result")
    if not res:
        return f"{row['a']} vs {row['b']}: {row.get('why') or 'not tested'}" if row.get("a") and row.get("b") \
            else (row.get("why") or "—")
    if not compact:
        return f"{row['a']} − {row['b']}: {res['text']}"
    unit = res.get("unit", "")
    d = 2 if row["metric"] in ("bleu", "accuracy") else 3
    lo, hi = res["ci"]
    p = res["p"]
    from .noise import _p_text   # the report's one p-value wording

    p_text = _p_text(p)
    return (f"{row['a']} − {row['b']}: {res['effect']:+.{d}f}{unit} [{lo:+.{d}f}, {hi:+.{d}f}], {p_text} "
            f"({SHORT_NAMES.get(res['test'], res['test'])})")


# claims no item-level test decides, and why (shown where the paired test would be)
NO_PAIRED = {"C8": "a claim about where the weights fall (keyword mass), not accuracy: no paired test"}


def render_rows(findings: list[dict], params: dict) -> list[dict[str, Any]]:
    """One row per claim x dataset of the committed findings: verdict, evidence, the paired test(s) of the
    claim, its best attention run against the strongest simple baseline, seeds, stale runs, provenance."""
    rows = []
    for f in findings:
        stale = staleness(f, params)
        for claim in f["claims"]:
            tests = [p for p in f.get("paired", []) if p["claim"] in (claim["id"], None)]
            rows.append({
                "id": claim["id"], "claim": claim["claim"], "paper": claim.get("paper"), "task": f["task"],
                "dataset": f["dataset"], "verdict": claim["verdict"], "evidence": claim["evidence"],
                "paired": [_fmt_effect(p) for p in tests if p["role"] == "claim"],
                "baseline": [_fmt_effect(p) for p in tests if p["role"] == "baseline"],
                "paired_short": [_fmt_effect(p, True) for p in tests if p["role"] == "claim"],
                "baseline_short": [_fmt_effect(p, True) for p in tests if p["role"] == "baseline"],
                "no_paired": NO_PAIRED.get(claim["id"], "decided over seeds only"),
                "seeds": len(f["seeds"]), "stale": stale, "commit": (f["provenance"].get("commit") or "")[:10],
                "date": f["provenance"].get("date"), "machine": f"{f['provenance'].get('cores')} × {f['provenance'].get('cpu')}",
            })
    order = {c: i for i, c in enumerate(CLAIM_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r["id"], 99), r["dataset"] != SYNTHETIC, r["dataset"]))


def real_vs_synthetic(rows: list[dict]) -> list[str]:
    """'C1: supported on synthetic, inconclusive on multi30k-en-fr' for each claim whose verdict on a real
    dataset differs from its verdict on the synthetic data."""
    by_claim: dict[str, dict[str, str]] = {}
    for r in rows:
        by_claim.setdefault(r["id"], {})[r["dataset"]] = r["verdict"]
    out = []
    for claim, verdicts in by_claim.items():
        synthetic = verdicts.get(SYNTHETIC)
        differ = {d: v for d, v in verdicts.items() if d != SYNTHETIC and synthetic is not None and v != synthetic}
        if differ:
            out.append(f"{claim}: {synthetic} on synthetic, " + ", ".join(f"{v} on {d}" for d, v in differ.items()))
    return out


def _short(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(findings: list[dict], params: dict) -> str:
    """The README's findings table (generated; a test fails when the README's copy differs)."""
    rows = render_rows(findings, params)
    if not rows:
        return "_No findings are committed yet: `make findings` produces them._\n"
    lines = ["| claim | data | verdict | paired test: effect [95 % CI], p | best attention vs strongest baseline |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        verdict = r["verdict"] + (" (stale)" if r["stale"] else "")
        paired_text = "; ".join(r["paired_short"]) or "—"
        baseline = "; ".join(r["baseline_short"]) or "—"
        lines.append(f"| {r['id']} | {r['dataset']} | {verdict} | {_short(paired_text)} | {_short(baseline)} |")
    seeds = sorted({r["seeds"] for r in rows})
    commits = sorted({r["commit"] for r in rows if r["commit"]})
    dates = sorted({r["date"] for r in rows if r["date"]})
    machines = sorted({r["machine"] for r in rows})
    lines.append("")
    differ = real_vs_synthetic(rows)
    if differ:
        lines.append("Verdicts that differ between the synthetic and the real data: " + "; ".join(differ) + ".")
        lines.append("")
    lines.append(f"Seeds per run: {', '.join(map(str, seeds))}; the findings grid of params.yaml (`make findings` "
                 f"re-runs it), measured on "
                 f"{'; '.join(machines)}, {', '.join(dates)}, code at {', '.join(commits)}. Verdicts: the report "
                 "sections' rules, a gap within seed noise (Welch's t-test over seeds, α = 0.05) being a tie. "
                 "Effects are A − B; for MAPE and RMSE lower is better.")
    return "\n".join(lines) + "\n"


def readme_block(text: str, table: str) -> str:
    """`text` (the README) with the table between its findings markers replaced by `table`."""
    if README_START not in text or README_END not in text:
        raise ValueError(f"README.md has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{table}{README_END}{tail}"


# ---- command line: `attnbench findings collect|table|retest` -------------------------------------------

def _params(args, grid: str | None = None) -> dict:
    if grid:
        args.set = [*args.set, f"grid={grid}"]
    return params_from_args(args)


def cmd_collect(args) -> int:
    params = _params(args, "findings")
    if args.task not in params["tasks"] or args.dataset not in params["tasks"][args.task]["datasets"]:
        listed = {t: s["datasets"] for t, s in params["tasks"].items()}
        raise ParamsError(f"{args.params}: findings.tasks has no {args.task} on {args.dataset}; the findings grid "
                          f"lists: " + "; ".join(f"{t}: {', '.join(d)}" for t, d in listed.items()))
    finding = collect(params, args.task, args.dataset, Path(args.root), command=args.command_text)
    verdicts = ", ".join(f"{c['id']} {c['verdict']}" for c in finding["claims"]) or "no claims"
    print(f"wrote {finding_path(args.task, args.dataset, Path(args.root))}: {verdicts}")
    return 0


def cmd_table(args) -> int:
    params = _params(args) if args.params != "params.yaml" else file_params()
    table = markdown_table(load_all(Path(args.root)), params)
    if not args.readme:
        sys.stdout.write(table)
        return 0
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    updated = readme_block(text, table)
    if args.check:
        if updated != text:
            print(f"{readme}: the findings table is stale; run `attnbench findings table --readme {readme} --write`",
                  file=sys.stderr)
            return 1
        print(f"{readme}: the findings table is current")
        return 0
    from .. import io as aio

    aio.write_text(readme, updated)
    print(f"{readme}: findings table written ({len(table.splitlines())} lines)")
    return 0


def cmd_retest(args) -> int:
    """Recompute every committed paired test from the committed per-item outputs; exit 1 on a difference.
    With --write, a finding whose tests differ (the tests' code changed, not the runs) gets the new ones,
    with the code that computed them recorded under `paired_provenance`."""
    bad, stamp = 0, None
    for f in load_all(Path(args.root)):
        items = read_items(f["task"], f["dataset"], Path(args.root))
        horizon = int(f.get("horizon") or (24 if f["task"] == "load" else 1))
        again = compare(f, items, horizon=horizon)
        same = [a == b for a, b in zip(again, f.get("paired", []))]
        differ = same.count(False) + abs(len(again) - len(f.get("paired", [])))
        print(f"{f['task']}/{f['dataset']}: {sum(same)} of {len(f.get('paired', []))} paired tests reproduced")
        if differ and args.write:
            # taken once, before the first write: a finding rewritten here would make the checkout look modified
            stamp = stamp or {**provenance(), "command": "attnbench findings retest --write"}
            f["paired"], f["paired_provenance"] = again, stamp
            _write_finding(f, Path(args.root))
            print(f"  rewrote its {len(again)} paired tests")
        elif differ:
            bad += differ
    return 1 if bad else 0


def add_cli(subparsers) -> None:
    from ..helptext import HelpWithExamples, examples

    collect_example = ("attnbench findings collect --task intent --dataset banking77",
                       "-> results/findings/intent/banking77.json, after `make findings TASKS=intent`")
    p = subparsers.add_parser(
        "findings", help="the committed findings: collect a findings run, print the README table, re-run the tests",
        description="The benchmark's committed findings under results/findings/ (see `make findings`).",
        formatter_class=HelpWithExamples,
        epilog=examples(collect_example, ("attnbench findings table --readme README.md --check",
                                          "exit 1 if the README's findings table is stale")))
    sub = p.add_subparsers(dest="findings_command", required=True, metavar="SUBCOMMAND")
    q = sub.add_parser("collect", help="write results/findings/<task>/<dataset>.json from a findings run's results",
                       description="Read the findings grid's runs x seeds of one (task, dataset) from data/results/, "
                                   "decide the claims with the report's code, run the paired tests and write the "
                                   "finding with its per-item outputs and provenance.",
                       epilog=examples(collect_example), formatter_class=HelpWithExamples)
    q.add_argument("--task", required=True, help="task name (see params.yaml `findings.tasks`)")
    q.add_argument("--dataset", default=SYNTHETIC, help="dataset of the task (default: %(default)s)")
    q.add_argument("--root", default=str(ROOT), help="findings folder (default: %(default)s)")
    q.add_argument("--command-text", default="make findings", help="the command recorded as what produced it")
    q.set_defaults(func=cmd_collect)
    q = sub.add_parser("table", help="print the findings table (or write / check it in the README)",
                       description="The claims x datasets table of the committed findings, stale ones marked.",
                       epilog=examples(("attnbench findings table", "print it"),
                                       ("attnbench findings table --readme README.md --write",
                                        "write it between the README's findings markers")),
                       formatter_class=HelpWithExamples)
    q.add_argument("--root", default=str(ROOT), help="findings folder (default: %(default)s)")
    q.add_argument("--readme", help="a Markdown file with the findings markers to update or check")
    q.add_argument("--check", action="store_true", help="with --readme: exit 1 if its table differs")
    q.add_argument("--write", action="store_true", help="with --readme: write the table into it")
    q.set_defaults(func=cmd_table)
    q = sub.add_parser("retest", help="recompute every paired test from the committed per-item outputs",
                       description="Re-run the committed findings' paired tests from their items files and say "
                                   "whether each gives the committed result (exit 1 if not).",
                       epilog=examples(("attnbench findings retest", "every committed finding's paired tests"),
                                       ("attnbench findings retest --write",
                                        "replace the ones that differ after a change to the tests' code")),
                       formatter_class=HelpWithExamples)
    q.add_argument("--root", default=str(ROOT), help="findings folder (default: %(default)s)")
    q.add_argument("--write", action="store_true",
                   help="write the recomputed tests into the findings that differ (the runs' metrics are untouched)")
    q.set_defaults(func=cmd_retest)


def context(params: dict, root: Path = ROOT) -> dict[str, Any]:
    """What the report's Findings section draws: the committed findings' rows, stale ones named. Staleness
    is judged against params.yaml as the file says (a report run with `--config scale=smoke` does not make
    the default-scale findings stale; an edited hyperparameter in the file does)."""
    from .sections import VERDICT_CSS   # the report's one verdict vocabulary and its colours

    findings = load_all(root) if Path(root).is_dir() else []
    params = file_params(params)
    rows = render_rows(findings, params)
    for r in rows:
        r["css"] = VERDICT_CSS.get(r["verdict"], "na")
    stale = [{"task": f["task"], "dataset": f["dataset"], "runs": s} for f in findings if (s := staleness(f, params))]
    return {"rows": rows, "stale": stale, "differ": real_vs_synthetic(rows),
            "seeds": ", ".join(sorted({str(r["seeds"]) for r in rows})),
            "machines": "; ".join(sorted({r["machine"] for r in rows})),
            "dates": ", ".join(sorted({r["date"] for r in rows if r["date"]})),
            "commits": ", ".join(sorted({r["commit"] for r in rows if r["commit"]}))}
