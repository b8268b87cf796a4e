"""The comparative HTML report: one self-contained page (inline CSS, inline PNG figures, no external requests).

`render_report` walks every (task, dataset) of the grid; a task with a section module
(`attnbench.tasks.<task>.report`) is drawn by its `tasks/<task>/report.html.j2` template from that
module's `context(...)` (called with `config.for_dataset`'s view of params, built once per dataset by
`config.views`), any other task by the generic section. A real dataset's section names its source, licence and citation. Every value from
data goes through Jinja's autoescape.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .. import io as aio
from ..config import SYNTHETIC, dataset_options, for_dataset, views
from .host import git as _git, machine

log = logging.getLogger("attnbench.report")
TEMPLATES = Path(__file__).parent / "templates"
TASKS = Path(__file__).parents[1] / "tasks"   # a task's own section template: <task>/report.html.j2
_PACKAGES = ("attnbench", "torch", "numpy", "pandas", "sacrebleu", "scikit-learn", "matplotlib", "seaborn", "jinja2")


def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined   # here: the CLI imports this package at start-up

    return Environment(loader=FileSystemLoader([str(TEMPLATES), str(TASKS)]), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def provenance(params: dict) -> dict:
    """What ran and with what: scale, seeds, commit, parameter hashes, time, software versions."""
    params_file = Path("params.yaml")
    versions = []
    for name in _PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    commit, checkout = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", where=checkout)[0]) if commit else False
    if commit and checkout is not None and checkout.resolve() != Path.cwd().resolve():
        commit += f" (of the attnbench checkout at {checkout}; the working directory is not a git checkout)"
    return {
        "scale": params["scale"], "device": params["device"], "seeds": list(params["seeds"]),
        "commit": commit, "dirty": dirty,
        "params_file_sha256": hashlib.sha256(params_file.read_bytes()).hexdigest() if params_file.is_file() else None,
        "params_sha256": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest(),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "versions": [("Python", platform.python_version())] + versions,
        "devices": [], "machine": machine(),
    }


def dataset_facts(params: dict, task: str, dataset: str) -> dict:
    """What a section says of its data: name, title, and for a registry dataset its source, licence and
    citation (from `attnbench.datasets`)."""
    options = dataset_options(params, task, dataset)
    facts = {"name": dataset, "synthetic": dataset == SYNTHETIC, "title": options.get("title"), "licence": None,
             "citation": None, "homepage": None, "fetch": options.get("fetch")}
    if facts["fetch"]:
        from .. import datasets

        entry = datasets.get(facts["fetch"])
        facts.update(title=facts["title"] or entry.title, licence=entry.licence, citation=entry.citation,
                     homepage=entry.homepage)
    if not facts["title"]:
        facts["title"] = "embedded synthetic data (generated, with ground truth)" if facts["synthetic"] else dataset
    return facts


def section(params: dict, task: str, out_dir: Path, dataset: str | None = None, view: dict | None = None) -> dict:
    """{'task', 'dataset', 'anchor', 'label', 'data', 'template', 'ctx', 'runs'} for one task of params
    on one of its datasets (default: synthetic); `view`: that dataset's `config.for_dataset` view when the
    caller has it already."""
    from . import sections

    dataset = dataset or SYNTHETIC
    view = view if view is not None else for_dataset(params, task, dataset)
    module = sections.module_for(task)
    template = f"{task}/report.html.j2"
    if module is not None and (TASKS / template).is_file():
        ctx = module.context(view, task, out_dir=out_dir)
    else:
        template, ctx = "_generic.html.j2", sections.generic_context(view, task, out_dir)
    if params["scale"] == "smoke":
        ctx = sections.at_smoke_scale(ctx)
    return {"task": task, "dataset": dataset, "anchor": sections.slot_anchor(task, dataset),
            "label": sections.slot_label(task, dataset), "data": dataset_facts(params, task, dataset),
            "template": template, "ctx": ctx, "runs": list(params["tasks"][task]["runs"])}


def _section_job(params: dict, slot: tuple[str, str], out_dir: Path, view: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    return section(params, slot[0], out_dir, slot[1], view), time.perf_counter() - t0


def _sections(params: dict, grid_views: dict[tuple[str, str], dict], out_dir: Path, workers: int) -> list[dict]:
    """Every (task, dataset)'s section, in params order (a task's datasets side by side); with
    workers > 1 drawn by that many forked processes (each section is independent; figures are most of
    the time), the slowest-looking tasks first."""
    slots = list(grid_views)
    done: dict[tuple[str, str], dict] = {}
    workers = max(1, min(workers, len(slots)))
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        for slot in slots:
            done[slot], seconds = _section_job(params, slot, out_dir, grid_views[slot])
            log.info("report section %s/%s in %.1fs", *slot, seconds)
        return [done[s] for s in slots]
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # more runs -> more figures: start those first so the pool's last jobs are short ones
    order = sorted(slots, key=lambda s: -len(params["tasks"][s[0]].get("runs", {})))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(_section_job, params, slot, out_dir, grid_views[slot]): slot for slot in order}
        for future in as_completed(futures):
            slot = futures[future]
            done[slot], seconds = future.result()  # a section's exception propagates with its traceback
            log.info("report section %s/%s in %.1fs", *slot, seconds)
    return [done[s] for s in slots]


def render_report(params: dict, out_path: Path, workers: int = 1) -> None:
    """Render the report of every task in params to `out_path` (atomically); `workers` processes draw
    the task sections side by side."""
    out_path = Path(out_path)
    t0 = time.perf_counter()
    grid_views = views(params)   # each (task, dataset)'s view, built once for every part of the page
    sections = _sections(params, grid_views, out_path.parent, workers)
    from . import findings, hardware, noise, overview, performance, throughput

    run = provenance(params)
    run["devices"] = sorted({d for s in sections for d in s["ctx"]["summary"].get("devices", [])})
    html = environment().get_template("index.html.j2").render(
        run=run, smoke=params["scale"] == "smoke", sections=sections, matrix=overview.matrix(params, grid_views),
        claims=overview.claims(sections),
        claims_test=noise.noise_test(len(params["seeds"]) > 1),
        performance=performance.context(params, out_path.parent), throughput=throughput.context(params, grid_views),
        hardware=hardware.context(out_path.parent), findings=findings.context(params))
    aio.write_text(out_path, html)
    log.info("wrote %s (%.0f kB) in %.1fs with %d worker(s)", out_path, len(html.encode()) / 1024,
             time.perf_counter() - t0, max(1, min(workers, len(params["tasks"]))))
