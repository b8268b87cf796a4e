"""Aggregation, the HTML report and the analysis notebook, on a tiny hand-made results tree.

The tree (made-up numbers, written in tmp_path) has runs with results, a run that failed (a log
but no metrics), a run never started, and tokens crafted to break HTML if anything is not escaped.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnbench import paths
from attnbench.config import REPO_ROOT, for_dataset, run_list
from attnbench.validation import load_params
from attnbench.report import environment, render_report
from attnbench.report import sections as report_sections
from attnbench.report.aggregate import aggregate

XSS = "<script>alert(1)</script>"
ATTR = '"><img onerror=x>'
MATH = "$x^"  # would be mathtext (and a parse error) if matplotlib parsed it
SRC = ["the", XSS, "dog", ATTR, MATH, "</s>"]
TGT = ["ka", ATTR, "pefa", XSS, "</s>"]
OK_RUNS = {"rnn-none": 4.0, "rnn-additive": 21.5, "rnn-dot": 30.25, "transformer": 12.0}


@pytest.fixture
def params() -> dict:
    p = load_params(REPO_ROOT / "params.yaml", {"scale": "smoke", "seeds": [0, 1]})
    runs = p["tasks"]["translation"]["runs"]
    keep = [*OK_RUNS, "rnn-general", "rnn-concat"]
    p["tasks"]["translation"]["runs"] = {name: runs[name] for name in keep}
    return p


@pytest.fixture
def view(params) -> dict:
    """params as the translation task's synthetic dataset sees them (what aggregate and the notebook take)."""
    return for_dataset(params, "translation", "synthetic")


def _metrics(run: str, seed: int, bleu: float, attention: str) -> dict:
    aligned = attention != "none"
    return {
        "task": "translation", "dataset": "synthetic", "run": run, "seed": seed, "model": "transformer" if run == "transformer" else "rnn",
        "attention": attention, "parameters": 1234 + len(run), "bleu": bleu + seed, "chrf": 2 * bleu,
        "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "chrf_signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
        "bleu_by_length": {"1-10": bleu + 5, "11-20": bleu - 1 + (3 if aligned else 0), "21-30": None, "31-40": None,
                           "41+": None},
        "sentences_by_length": {"1-10": 3, "11-20": 2, "21-30": 0, "31-40": 0, "41+": 0},
        "aer": 0.4 if aligned else None, "alignment": aligned, "exact_match": 0.2, "test_sentences": 5,
    }


def _write_run(run: str, seed: int, bleu: float, attention: str) -> None:
    folder = paths.run_dir("translation", "synthetic", run, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(_metrics(run, seed, bleu, attention), indent=2))
    (folder / "train_info.json").write_text(json.dumps(
        {"device": "cpu", "threads": 1, "epochs_trained": 3, "best_epoch": 3, "best_valid": bleu,
         "train_seconds": 1.5 + seed, "parameters": 1234 + len(run)}))
    (folder / "train_log.csv").write_text(
        "epoch,train_loss,valid_metric,best_valid,seconds,examples_per_s,lr\n"
        + "".join(f"{e},{4 - e * 0.5},{bleu * e / 3},{bleu * e / 3},0.5,100.0,0.002\n" for e in (1, 2, 3)))
    rng = np.random.default_rng(len(run) + seed)
    arrays = {}
    for n in range(2):
        attn = rng.random((len(TGT), len(SRC))).astype(np.float32)
        if attention == "none":
            attn[:] = 1.0 / len(SRC)
        gold = np.zeros_like(attn)
        gold[np.arange(len(TGT)), np.minimum(np.arange(len(TGT)), len(SRC) - 1)] = 1.0
        arrays.update({f"src_{n}": np.array(SRC), f"tgt_{n}": np.array(TGT),
                       f"attn_{n}": attn / attn.sum(1, keepdims=True), f"gold_{n}": gold})
    np.savez_compressed(folder / "attention.npz", **arrays)
    samples = [{"src": f"the {XSS} dog {i}", "ref": f"ka {ATTR} pefa {i}",
                "hyp": f"ka {XSS} {run}" if i % 2 else f"ka {ATTR} pefa {i}", "bucket": "1-10"} for i in range(5)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


@pytest.fixture
def tree(tmp_path, monkeypatch, params) -> Path:
    """rnn-none/additive/dot/transformer: both seeds ok (rnn-dot seed 1 missing);
    rnn-general: failed (train log, no metrics); rnn-concat: never run."""
    monkeypatch.chdir(tmp_path)
    runs = params["tasks"]["translation"]["runs"]
    for run, bleu in OK_RUNS.items():
        for seed in (0, 1):
            if (run, seed) != ("rnn-dot", 1):
                _write_run(run, seed, bleu, runs[run]["attention"])
    log = paths.job_log("translation", "synthetic", "rnn-general", 0, "train")
    log.parent.mkdir(parents=True)
    log.write_text("INFO training\nattnbench: error: loss is not finite at epoch 2\n")
    bench = paths.benchmark_tsv("translation", "synthetic", "rnn-additive", 0, "train")
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                     "7.25\t0:00:07\t512.5\t900\t400\t410\t0\t1.2\t98\t7.1\n")
    return tmp_path


def test_aggregate_rows_status_and_columns(tree, view):
    table = aggregate(view, "translation")
    assert len(table) == 6 * 2 and list(table.columns[:8]) == ["task", "dataset", "run", "seed", "model", "attention",
                                                                  "status", "reason"]
    assert set(table["dataset"]) == {"synthetic"} and table.attrs["dataset"] == "synthetic"
    status = {(r, s): st for r, s, st in zip(table["run"], table["seed"], table["status"])}
    assert status[("rnn-additive", 0)] == "ok" and status[("rnn-dot", 1)] == "missing"
    assert status[("rnn-general", 0)] == "failed" and status[("rnn-concat", 0)] == "missing"
    reason = table.set_index(["run", "seed"]).loc[("rnn-general", 0), "reason"]
    assert "logs/translation/synthetic/rnn-general/seed0.train.log" in reason and "loss is not finite" in reason
    assert "no metrics.json" in table.set_index(["run", "seed"]).loc[("rnn-concat", 1), "reason"]
    row = table.set_index(["run", "seed"]).loc[("rnn-additive", 0)]
    assert row["bleu_len_1-10"] == pytest.approx(26.5) and row["train_seconds"] == pytest.approx(1.5)
    assert row["train_wall_s"] == pytest.approx(7.25) and row["train_max_rss_mb"] == pytest.approx(512.5)
    assert row["epochs_trained"] == 3 and row["parameters"] == 1234 + len("rnn-additive")
    assert paths.summary_csv("translation", "synthetic") == Path("data/summary/translation/synthetic.csv")
    assert paths.summary_csv("translation", "synthetic").is_file()
    assert not list(paths.summary_csv("translation", "synthetic").parent.glob(".*.tmp"))


def test_summary_json_is_deterministic_and_has_no_timings(tree, params, view):
    aggregate(view, "translation")
    first = paths.summary_json("translation", "synthetic").read_bytes()
    aggregate(view, "translation")
    assert paths.summary_json("translation", "synthetic").read_bytes() == first
    data = json.loads(first)
    assert set(data) == set(params["tasks"]["translation"]["runs"])
    assert data["rnn-additive"]["seed0"]["bleu"] == 21.5 and data["rnn-additive"]["seed1"]["bleu"] == 22.5
    assert data["rnn-additive"]["seed0"]["bleu_by_length"]["1-10"] == 26.5
    assert data["rnn-general"]["seed0"] == {"status": "failed"}
    assert data["rnn-concat"]["seed0"] == {"status": "missing"}
    text = first.decode()
    for timing in ("seconds", "wall", "rss", "epoch"):
        assert timing not in text


def _report(params) -> str:
    out = paths.report_html()
    render_report(params, out)
    return out.read_text(encoding="utf-8")


def test_report_renders_every_run_escaped_and_self_contained(tree, params, view):
    aggregate(view, "translation")
    params["scale"] = "default"   # smoke scale marks no run best (test_smoke_report_...)
    html = _report(params)
    for run in params["tasks"]["translation"]["runs"]:
        assert run in html
    assert "missing" in html and "failed" in html and "loss is not finite" in html
    # tokens from data are escaped wherever they appear (heatmap captions, samples), never raw
    assert XSS not in html and "<img onerror" not in html and 'onerror=x>' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img onerror=x&gt;" in html
    # self-contained: every image inline, no resource or link to another host, no external script
    images = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"<script[^>]+src", html, re.I) and not re.search(r"<link[^>]+stylesheet", html, re.I)
    # leaderboard: best bold, mean ± std over seeds, benchmark memory, links relative to reports/
    assert re.search(r'<tr class="status-partial best">\s*<td data-sort="rnn-dot">', html)
    assert "22.00 ± 0.71" in html  # rnn-additive BLEU over seeds 0, 1
    assert "peak memory (MB)" in html and ">512<" in html.replace(" ", "")
    assert 'href="../data/results/translation/synthetic/rnn-additive/seed0/metrics.json"' in html
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0" in html
    assert html.count("nrefs:1|case:mixed|eff:no|tok:13a") == 1  # the signature is printed once
    for claim in ("C1", "C2", "C3"):
        assert f"<td>{claim}</td>" in html
    # two seeds: the matrix, the central claims table and the section's claims name the test they compare runs with
    assert html.count("t-test over seeds, α = 0.05") == 3 and html.count("a gap within noise is a tie") == 2
    assert "table.sortable" in html  # the inline sort script
    assert not list(paths.REPORTS.glob(".*.tmp"))


def test_report_without_results_shows_missing_notice(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    html = _report(params)
    assert "No results yet" in html and "Missing." in html
    assert "rnn-none" in html


def test_notebook_executes_on_tiny_tree_and_exports_offline_html(tree, view):
    from attnbench.report.notebook import run_notebook

    aggregate(view, "translation")
    out = run_notebook(view, "translation")
    assert out == paths.notebook("translation", "synthetic") == Path("reports/notebooks/translation/synthetic.ipynb")
    assert out.is_file()
    html = paths.notebook("translation", "synthetic", "html").read_text(encoding="utf-8")
    nb = json.loads(out.read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = json.dumps(nb)
    assert "paired bootstrap" in text and "normalised entropy" in text
    assert html.count("data:image/png;base64,") >= 4
    assert not re.search(r"<script[^>]+src\s*=", html, re.I)
    assert XSS not in html


def test_failing_notebook_cell_is_named_and_leaves_no_output(tree, view):
    from attnbench.report.notebook import NotebookError, run_notebook

    aggregate(view, "translation")
    # a summary without the status column breaks the notebook's first analysis cell
    paths.summary_csv("translation", "synthetic").write_text("task,dataset,run,seed\ntranslation,synthetic,rnn-none,0\n")
    with pytest.raises(NotebookError, match=r"cell In \[\d+\].*KeyError"):
        run_notebook(view, "translation")
    assert not paths.notebook("translation", "synthetic").exists()
    assert not paths.notebook("translation", "synthetic", "html").exists()
    assert not list(paths.notebook("translation", "synthetic").parent.glob("*"))


@pytest.fixture
def toy_task():
    """A registered task with neither a section module nor a template (the generic section reads what it
    declares: headline, direction, metric columns)."""
    from attnbench import tasks

    class Toy(tasks.Task):
        name, valid_metric, headline, higher_is_better, metric_columns = "toy", "acc", "acc", True, ("acc",)

    tasks.register(Toy())
    yield "toy"
    tasks._TASKS.pop("toy")


def test_task_without_section_module_gets_the_generic_section(toy_task, tmp_path, monkeypatch, params):
    from attnbench.report import sections

    monkeypatch.chdir(tmp_path)
    assert sections.module_for(toy_task) is None
    params["tasks"]["toy"] = {"runs": {"toy-a": {"model": "m", "attention": "none"}}}
    html = _report(params)
    assert 'id="toy"' in html and "toy-a" in html
    section = html[html.index('<section id="toy"'):]
    section = section[:section.index("</section>")]
    assert "No results yet" in section and "Missing." in section, section


def _timing(run: str, seed: int, step: str, started: float, startup: float, wall: float) -> None:
    path = paths.timing_json("translation", "synthetic", run, seed, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step, "started_at": started, "ready_at": started + startup,
                                "startup_s": startup, "finished_at": started + wall, "wall_s": wall}))


def test_throughput_reads_job_timings_and_ranks_the_slowest_runs(tree, params):
    from attnbench.report import throughput

    assert throughput.context(params)["has_results"] is False  # no timing file yet: said, not invented
    t0 = 1_800_000_000.0
    _timing("rnn-additive", 0, "train", t0, 2.0, 10.0)
    _timing("rnn-additive", 0, "evaluate", t0 + 10, 1.0, 3.0)
    _timing("rnn-dot", 0, "train", t0 + 5, 4.0, 20.0)   # ends last, at t0 + 25
    path = paths.timing_json("translation", "synthetic", "rnn-dot", 0, "evaluate")
    path.write_text("{not json")                        # unreadable: skipped, not fatal
    q = throughput.context(params)
    assert q["jobs"] == 3 and q["expected_jobs"] == 2 * len(run_list(params))
    assert q["median"] == "2.00" and q["max"] == "4.00" and q["met"] is True and q["over"] == 1
    assert q["span_min"] == f"{25 / 60:.1f}" and q["job_min"] == f"{33 / 60:.1f}"
    assert q["share"] == f"{100 * 7 / 33:.0f}"
    row = q["rows"][0]
    assert row["task"] == "translation" and row["train"]["n"] == 2 and row["train"]["median"] == "3.00"
    assert row["evaluate"]["n"] == 1 and row["evaluate"]["max"] == "1.00"
    # the slowest runs come from the Snakemake benchmark files (only rnn-additive seed 0 has one)
    assert [(r["run"], r["train"]) for r in q["slowest"]] == [("rnn-additive", "7.2")]
    html = _report(params)
    assert "Pipeline throughput" in html and "25 / 60" not in html and f"{25 / 60:.1f} min" in html


def test_summary_names_the_machine(tree, params):
    from attnbench.report import machine

    m = machine()
    assert m["cpus"] >= 1 and m["cpu"] and m["system"]
    assert m["cpu"] in _report(params)


def test_sections_drawn_in_parallel_match_the_serial_report(tree, params, view):
    def body(html: str) -> str:  # the generation time is the only line allowed to differ
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "TIME", html)

    aggregate(view, "translation")
    serial = body(_report(params))
    render_report(params, paths.report_html(), workers=2)
    parallel = body(paths.report_html().read_text(encoding="utf-8"))
    assert parallel == serial and "rnn-additive" in parallel


# ---------------------------------------------------------------- the report says exactly what is true
VERDICTS = {"supported", "partly supported", "not supported", "inconclusive", "not measurable"}


def _claim_badges(html: str) -> list[str]:
    """The verdict of every row of every claims table: the central one and each section's."""
    tables = re.findall(r'<table class="[^"]*\bclaims\b[^"]*">(.*?)</table>', html, re.S)
    assert len(tables) >= 2
    return [v for table in tables for v in re.findall(r'<span class="badge \w+">([^<]*)</span>', table)]


def test_every_claim_verdict_is_one_of_the_reports_words(tree, params, view):
    aggregate(view, "translation")
    params["scale"] = "default"
    badges = _claim_badges(_report(params))
    assert len(badges) == 2 * 3 and set(badges) <= VERDICTS, badges   # C1-C3, centrally and in the section
    assert set(report_sections.VERDICTS) == VERDICTS
    with pytest.raises(ValueError, match="'reproduced' is not one of the report's"):
        report_sections.claim("C1", ("claim", "source", "figure"), "reproduced", "evidence")


def test_smoke_report_has_a_banner_no_best_run_and_only_smoke_verdicts(tree, params, view):
    aggregate(view, "translation")
    html = _report(params)   # the fixture's params are at smoke scale
    assert 'id="smoke-banner"' in html and "Smoke scale: these numbers mean nothing." in html
    assert not re.search(r'<tr class="[^"]*\bbest\b', html) and "The best run is in bold" not in html
    matrix = html[html.index('<table class="sortable matrix">'):]
    assert "<strong>" not in matrix[:matrix.index("</table>")]
    badges = _claim_badges(html)
    # one verdict at smoke scale; C2 needs runs this grid lacks, which its evidence says first
    assert len(badges) == 6 and set(badges) == {report_sections.SMOKE_VERDICT}, badges
    assert "<td>C2</td>" in html and "not measurable: " in html
    assert "smoke scale?" not in html and "?)" not in html
    params["scale"] = "default"
    assert "smoke-banner" not in _report(params)


def test_captioning_localisation_list_names_each_run_and_the_true_cause():
    from attnbench.tasks.captioning import report as captioning

    runs = [{"run": run, "kind": kind, "seeds": [0], "mean": {"localisation": None, "localisation_chance": None}}
            for run, kind in (("show-tell", "none"), ("soft-attend", "soft"), ("hard-attend", "hard"))]
    synthetic = captioning._checks(runs, masks=True)
    assert [c["run"] for c in synthetic] == ["soft-attend", "hard-attend"]
    assert [c["text"] for c in synthetic] == [
        f"{run}: its test captions name no shape (circle, square, triangle) whose object can be identified, so "
        "there is nothing to score" for run in ("soft-attend", "hard-attend")]
    real = captioning._checks(runs, masks=False)
    assert real[0]["text"] == ("soft-attend: not measurable on this dataset: its images have no object masks "
                               "(only the synthetic scenes have)")


def test_intent_comparison_reads_as_sentences():
    from attnbench.tasks.intent import report as intent

    def entry(run, attention, acc, classical=False):
        return {"run": run, "attention": attention, "mean": {"accuracy": acc}, "classical": classical,
                "pooling": None if classical else ("mean" if attention == "none" else "attention"),
                "encoder": "tfidf" if classical else "embedding"}

    runs = [entry("mean-pool", "none", 0.70), entry("self-attention", "self_dot", 0.109),
            entry("tfidf", "none", 0.859, classical=True)]
    comparison = intent._comparison(runs, intent._baseline(runs))
    html = environment().get_template("_intent_comparison.html.j2").render(c=comparison)
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert text == ("Best attention run self-attention: accuracy 0.109 vs 0.700 for mean pooling (mean-pool), a "
                    "difference of -0.591; the best other run without attention is tfidf (the classical baseline) at 0.859. "
                    "Against the strongest run without attention, the classical baseline "
                    "included (tfidf, the classical baseline, accuracy 0.859): a difference of -0.750, attention not "
                    "ahead.")
    assert not re.search(r"\d—", text)


def test_wide_tables_scroll_in_their_box_with_wrapped_headers_and_the_run_column_in_view(tree, params, view):
    aggregate(view, "translation")
    html = _report(params)
    css = html[html.index("<style>"):html.index("</style>")]
    assert ":is(table.leaderboard, table.matrix) th { white-space: normal;" in css
    assert ":is(table.leaderboard, table.matrix) :is(td, th):first-child { position: sticky; left: 0;" in css
    # every leaderboard sits in a box that scrolls sideways, so a wider table is never cut off
    assert all(html[:m.start()].rstrip().endswith('<div class="scroll">')
               for m in re.finditer(r'<table class="sortable leaderboard">', html))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (make browser)")
def test_smoke_banner_and_wide_leaderboard_in_chromium_at_1400_px(tree, params, view, tmp_path):
    """The report as a person sees it, in headless Chromium 1,400 px wide: the smoke banner at the top, no
    leaderboard header cut off, and a leaderboard wider than its box scrolls inside it with the run column in
    view. Screenshots go to test-artifacts/ for a person to look at."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    aggregate(view, "translation")
    _report(params)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    out = REPO_ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    try:
        driver.get(paths.report_html().resolve().as_uri())
        banner = driver.execute_script("var b = document.getElementById('smoke-banner').getBoundingClientRect();"
                                       "return [b.top, b.height, window.innerHeight];")
        assert 0 <= banner[0] and banner[0] + banner[1] <= banner[2], banner   # on the first screen
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        clipped = driver.execute_script(
            "return Array.from(document.querySelectorAll('table.leaderboard th, table.matrix th'))"
            ".filter(th => th.scrollWidth > th.clientWidth + 1).map(th => th.textContent)")
        assert clipped == [], clipped
        driver.save_screenshot(str(out / "report-1400-top.png"))
        board = "document.querySelector('#translation table.leaderboard')"
        driver.execute_script(f"{board}.scrollIntoView()")
        driver.save_screenshot(str(out / "report-1400-leaderboard.png"))
        # a box narrower than the table: it scrolls sideways, and the run column stays at its left edge
        state = driver.execute_script(f"""
            var table = {board}, box = table.parentElement;
            box.style.width = '500px';
            var cell = table.tBodies[0].rows[0].cells[0];
            box.scrollLeft = box.scrollWidth;
            return [box.scrollWidth > box.clientWidth, box.scrollLeft > 0,
                    Math.round(cell.getBoundingClientRect().left - box.getBoundingClientRect().left),
                    getComputedStyle(box).overflowX];""")
        assert state == [True, True, 0, "auto"], state
        driver.save_screenshot(str(out / "report-1400-leaderboard-scrolled.png"))
    finally:
        driver.quit()
