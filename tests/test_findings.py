"""The committed findings: the paired tests on constructed inputs, a findings run collected end to end
(recsys at a tiny scale, two seeds), staleness when a run's parameters change, the README's table kept
current, and the findings declared as DVC metrics."""
from __future__ import annotations

import copy
import gzip
import json
import shutil
import subprocess

import numpy as np
import pytest

from attnbench import cli, paths
from attnbench.config import REPO_ROOT
from attnbench.validation import load_params
from attnbench.report import findings, paired

from .conftest import BIN, write_params
from .test_recsys_cli import _tiny

RNG = np.random.default_rng(0)


# ---- each paired test gives known answers on constructed inputs ------------------------------------------

def test_identical_systems_show_no_difference_in_every_test():
    correct = RNG.random((400, 3)) < 0.7
    m = paired.mcnemar(correct, correct)
    assert m["effect"] == 0 and m["p"] == 1.0 and m["outcome"] == "tie" and m["ci"] == [0.0, 0.0]
    loss = RNG.random((300, 3))
    d = paired.diebold_mariano(loss, loss, horizon=24)
    assert d["effect"] == 0 and d["p"] == 1.0 and d["outcome"] == "tie"
    refs = ["a cat sits on the red mat", "two dogs run in a green park", "the man reads a book"] * 20
    hyps = [r.replace("red", "blue") for r in refs]
    b = paired.bleu_bootstrap([hyps, hyps], [hyps, hyps], refs)
    assert b["effect"] == 0 and b["p"] == 1.0 and b["outcome"] == "tie"
    y = RNG.normal(size=200)
    pred = y[:, None] + RNG.normal(0, 0.3, (200, 2))
    r = paired.rmse_bootstrap(y, pred, pred)
    assert r["effect"] == 0 and r["p"] == 1.0 and r["outcome"] == "tie"


def test_a_system_better_on_every_item_is_significantly_ahead():
    right = np.ones((300, 3), dtype=bool)
    wrong_some = RNG.random((300, 3)) < 0.6
    m = paired.mcnemar(right, wrong_some, scale=100.0)
    assert m["outcome"] == "ahead" and m["p"] < 0.001 and m["ci"][0] > 0
    assert m["discordant"] == [int((~wrong_some).sum()), 0]
    assert m["effect"] == pytest.approx(100 * (1 - wrong_some.mean()))
    # the other way round it is behind by the same amount
    assert paired.mcnemar(wrong_some, right)["outcome"] == "behind"

    loss_b = RNG.random((500, 3)) + 1.0
    d = paired.diebold_mariano(loss_b - 0.2 - 0.05 * RNG.random((500, 3)), loss_b, horizon=24)
    assert d["outcome"] == "ahead" and d["p"] < 0.001 and d["ci"][1] < 0 and d["effect"] == pytest.approx(-0.225, abs=0.01)

    refs = ["a cat sits on the red mat", "two dogs run in a green park", "the man reads a book"] * 30
    bad = [r.replace("the", "one").replace("a ", "some ") for r in refs]
    b = paired.bleu_bootstrap([refs, refs], [bad, bad], refs)
    assert b["outcome"] == "ahead" and b["p"] < 0.01 and b["ci"][0] > 0 and b["effect"] > 20

    y = RNG.normal(size=300)
    good = y[:, None] + RNG.normal(0, 0.1, (300, 2))
    poor = y[:, None] + RNG.normal(0, 0.6, (300, 2))
    r = paired.rmse_bootstrap(y, good, poor)
    assert r["outcome"] == "ahead" and r["effect"] < 0 and r["ci"][1] < 0


def test_small_noise_between_two_systems_is_a_tie_not_a_win():
    loss = RNG.random((400, 3))
    d = paired.diebold_mariano(loss + RNG.normal(0, 0.01, loss.shape), loss, horizon=24)
    assert d["outcome"] == "tie" and d["ci"][0] < 0 < d["ci"][1]
    a = RNG.random((600, 3)) < 0.8
    b = a.copy()
    flip = RNG.choice(600, size=6, replace=False)
    b[flip, 0] = ~b[flip, 0]
    assert paired.mcnemar(a, b)["outcome"] == "tie"


def test_the_readme_names_every_paired_test_by_its_short_name():
    assert set(findings.SHORT_NAMES) == {paired.BOOTSTRAP_BLEU, paired.BOOTSTRAP_BLEU_IMAGES, paired.MCNEMAR,
                                         paired.DIEBOLD_MARIANO, paired.BOOTSTRAP_RMSE, paired.BOOTSTRAP_IOU}


def test_iou_bootstrap_pools_the_tiles_pixels_as_the_task_scores_it():
    """C11: IoU pooled over the test tiles' pixels, the tiles resampled with all their seeds."""
    union = RNG.integers(50, 200, size=(120, 3)).astype(float)
    good = np.floor(union * 0.7)
    poor = np.floor(union * RNG.uniform(0.3, 0.6, size=union.shape))
    r = paired.iou_bootstrap(good, union, poor, union)
    pooled = lambda inter: np.mean(inter.sum(0) / union.sum(0))          # per seed, then the mean over seeds
    assert r["effect"] == pytest.approx(pooled(good) - pooled(poor), abs=1e-6)
    assert r["outcome"] == "ahead" and r["ci"][0] > 0 and r["test"] == paired.BOOTSTRAP_IOU
    same = paired.iou_bootstrap(good, union, good, union)
    assert same["effect"] == 0 and same["p"] == 1.0 and same["outcome"] == "tie"
    assert [c[:4] for c in findings.COMPARISONS["ships"]({}, {"shallow": {"model": "shallow", "attention": "none"},
                                                               "deep": {"model": "deep", "attention": "none"},
                                                               "deep-se": {"model": "deep", "attention": "se"},
                                                               "tp": {"model": "partition", "attention": "task_partition"}})] \
        == [("C11", "tp", "shallow", "iou"), ("C11", "tp", "deep", "iou")]


def test_bleu_bootstrap_over_images_with_several_references_each():
    """Captioning's C4: BLEU-4 against every reference of an image (their number may vary), as the task scores it."""
    from sacrebleu.metrics import BLEU

    from attnbench.metrics import reference_streams
    from attnbench.tasks.captioning import bleu_scores

    refs = [["a red square and a blue circle", "a small red square beside a blue circle", "two shapes"],
            ["a green triangle", "one green triangle on the left"],
            ["a yellow circle above a red square", "a circle and a square", "yellow and red", "shapes"]] * 25
    good = [r[0] if i % 2 else r[1] for i, r in enumerate(refs)]
    bad = [h.replace("red", "big").replace("green", "small") for h in good]
    same = paired.bleu_bootstrap([good, good], [good, good], refs)
    assert same["effect"] == 0 and same["p"] == 1.0 and same["test"] == paired.BOOTSTRAP_BLEU_IMAGES
    ahead = paired.bleu_bootstrap([good], [bad], refs)
    assert ahead["outcome"] == "ahead" and ahead["p"] < 0.001 and ahead["ci"][0] > 0
    # the effect is the gap in the task's own corpus BLEU-4 (sacreBLEU over every reference stream)
    gap = bleu_scores(good, refs)[0]["bleu4"] - bleu_scores(bad, refs)[0]["bleu4"]
    assert ahead["effect"] == pytest.approx(gap, abs=1e-3)
    assert paired.bleu_bootstrap([bad], [good], refs)["outcome"] == "behind"
    assert BLEU().corpus_score(good, reference_streams(refs)).score == pytest.approx(bleu_scores(good, refs)[0]["bleu4"], abs=1e-3)


def test_verdicts_that_differ_between_synthetic_and_real_data_are_named():
    rows = [{"id": "C1", "dataset": "synthetic", "verdict": "supported"},
            {"id": "C1", "dataset": "multi30k-en-fr", "verdict": "inconclusive"},
            {"id": "C2", "dataset": "synthetic", "verdict": "supported"},
            {"id": "C2", "dataset": "multi30k-en-fr", "verdict": "supported"},
            {"id": "C5", "dataset": "synthetic", "verdict": "not supported"}]
    assert findings.real_vs_synthetic(rows) == ["C1: supported on synthetic, inconclusive on multi30k-en-fr"]


def test_paired_inputs_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="same"):
        paired.mcnemar(np.ones((3, 2), bool), np.ones((4, 2), bool))
    with pytest.raises(ValueError, match="same"):
        paired.diebold_mariano(np.ones((5, 2)), np.ones((5, 3)), 2)


# ---- a findings run collected end to end ------------------------------------------------------------------

def _findings_params() -> dict:
    p = _tiny()
    p["findings"] = {"seeds": [0, 1], "tasks": {"recsys": {"datasets": ["synthetic"], "runs": ["linear", "fm", "afm"]}}}
    return p


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("findings")
    import os

    before = os.getcwd()
    os.chdir(folder)
    try:
        path = write_params(folder / "params.yaml", _findings_params())
        steps = [["prepare", "--task", "recsys"]]
        for run in ("linear", "fm", "afm"):
            for seed in ("0", "1"):
                steps += [["train", "--task", "recsys", "--run", run, "--seed", seed],
                          ["evaluate", "--task", "recsys", "--run", run, "--seed", seed]]
        for argv in steps:   # as `make findings` runs them: the findings grid (seed 1 is outside params' own)
            assert cli.main(["-q", "--params", str(path), "--set", "grid=findings", *argv]) == 0, argv
        assert cli.main(["-q", "--params", str(path), "findings", "collect", "--task", "recsys"]) == 0
    finally:
        os.chdir(before)
    return folder


def test_collect_writes_metrics_hashes_claims_paired_tests_and_items(collected):
    f = json.loads((collected / "results/findings/recsys/synthetic.json").read_text())
    assert f["seeds"] == [0, 1] and set(f["runs"]) == {"linear", "fm", "afm"}
    for run, entry in f["runs"].items():
        for key, seed in entry["seeds"].items():
            info = json.loads((collected / paths.run_dir("recsys", "synthetic", run, int(key[4:])) / "train_info.json").read_text())
            metrics = json.loads((collected / paths.run_dir("recsys", "synthetic", run, int(key[4:])) / "metrics.json").read_text())
            assert seed["status"] == "ok" and seed["config_hash"] == info["config_hash"]
            assert seed["metrics"]["rmse"] == metrics["rmse"]
    assert f["protocol"]["scale"] == "smoke" and f["provenance"]["cores"] >= 1 and f["provenance"]["versions"]["torch"]
    assert [c["id"] for c in f["claims"]] == ["C7"] and f["claims"][0]["verdict"]
    rows = {(p["claim"], p["a"], p["b"]): p for p in f["paired"]}
    c7 = rows[("C7", "afm", "fm")]["result"]
    assert c7["test"] == paired.BOOTSTRAP_RMSE and c7["n_seeds"] == 2 and c7["n_items"] == 150
    # the effect is the seed-mean RMSE gap the metrics give
    gap = np.mean([f["runs"]["afm"]["seeds"][k]["metrics"]["rmse"] - f["runs"]["fm"]["seeds"][k]["metrics"]["rmse"]
                   for k in ("seed0", "seed1")])
    assert c7["effect"] == pytest.approx(gap, abs=1e-3)
    assert rows[(None, "afm", "linear")]["role"] == "baseline"
    with gzip.open(collected / "results/findings/recsys/synthetic.items.json.gz", "rt") as fh:
        items = json.load(fh)
    assert len(items["runs"]["afm"]["seed1"]["prediction"]) == 150


def test_retest_reproduces_the_committed_paired_tests(collected, monkeypatch, capsys):
    monkeypatch.chdir(collected)
    assert cli.main(["-q", "findings", "retest"]) == 0
    assert "recsys/synthetic: 2 of 2 paired tests reproduced" in capsys.readouterr().out
    path = collected / "results/findings/recsys/synthetic.json"
    original = path.read_text()
    tampered = json.loads(original)
    tampered["paired"][0]["result"]["effect"] += 0.5      # a figure typed in by hand no longer matches its items
    path.write_text(json.dumps(tampered))
    try:
        assert cli.main(["-q", "findings", "retest"]) == 1
        assert "1 of 2 paired tests reproduced" in capsys.readouterr().out
        # --write puts the recomputed tests back (as after a change to the tests' code), and says which code did
        assert cli.main(["-q", "findings", "retest", "--write"]) == 0
        assert "rewrote its 2 paired tests" in capsys.readouterr().out
        rewritten = json.loads(path.read_text())
        assert rewritten["paired"] == json.loads(original)["paired"] and rewritten["runs"] == tampered["runs"]
        assert rewritten["paired_provenance"]["command"] == "attnbench findings retest --write"
        assert rewritten["paired_provenance"]["date"] == findings.provenance()["date"]
        assert cli.main(["-q", "findings", "retest"]) == 0
    finally:
        path.write_text(original)


def test_c10s_paired_test_compares_the_rise_from_clean_to_corrupted_inputs():
    """C10 is about robustness: the Diebold-Mariano test takes each origin's rise (corrupted minus clean error),
    so a run that is worse on clean inputs but rises less is ahead, whatever its corrupted level."""
    clean_a, clean_b = RNG.random(300) + 2.0, RNG.random(300)
    rise_a, rise_b = 0.1 + RNG.normal(0, 0.05, 300), 1.0 + RNG.normal(0, 0.05, 300)
    items = {"runs": {"mask": {"seed0": {"ape": list(clean_a), "ape_corrupted": list(clean_a + rise_a)}},
                      "gru": {"seed0": {"ape": list(clean_b), "ape_corrupted": list(clean_b + rise_b)}}}}
    rise = findings.paired_test("load", "ape_rise", items, "mask", "gru", [0], horizon=24)
    assert rise["effect"] == pytest.approx(float(np.mean(rise_a - rise_b)), abs=1e-6)
    assert rise["outcome"] == "ahead" and rise["unit"] == " % MAPE rise"
    level = findings.paired_test("load", "ape_corrupted", items, "mask", "gru", [0], horizon=24)
    assert level["outcome"] == "behind"        # compared by level, the same runs read the other way
    assert [c[3] for c in findings.COMPARISONS["load"]({}, {}) if c[0] == "C10"] == ["ape_rise"]


def test_a_finding_is_marked_stale_when_a_run_changes(collected, monkeypatch, capsys):
    monkeypatch.chdir(collected)
    params = load_params(collected / "params.yaml")
    current = findings.load_all()
    assert findings.staleness(current[0], params) == []
    assert "(stale)" not in findings.markdown_table(current, params)

    changed = copy.deepcopy(params)
    changed["tasks"]["recsys"]["models"]["afm"]["k"] = 8        # afm's hyperparameter: afm retrains
    assert findings.staleness(current[0], changed) == ["afm/seed0", "afm/seed1"]
    table = findings.markdown_table(current, changed)
    assert "| C7 | synthetic | " in table and "(stale)" in table

    gone = copy.deepcopy(params)
    del gone["tasks"]["recsys"]["runs"]["linear"]               # a run no longer defined is stale too
    assert findings.staleness(current[0], gone) == ["linear/seed0", "linear/seed1"]

    # the report's Findings section names the stale runs (judged against params.yaml as the file says)
    text = (collected / "params.yaml").read_text().replace("attention_l2: 0.001", "attention_l2: 0.01")
    (collected / "params.yaml").write_text(text)
    try:
        ctx = findings.context(params)
        assert ctx["stale"] == [{"task": "recsys", "dataset": "synthetic", "runs": ["afm/seed0", "afm/seed1"]}]
        assert ctx["rows"][0]["stale"]
    finally:
        write_params(collected / "params.yaml", _findings_params())


def test_the_report_shows_the_shipped_findings_with_provenance_and_stale_runs(collected, monkeypatch):
    monkeypatch.chdir(collected)
    from attnbench.report import environment

    params = load_params(collected / "params.yaml")
    html = environment().get_template("_findings.html.j2").render(f=findings.context(params))
    assert "Findings: what the benchmark found (shipped results)" in html and "<strong>C7</strong>" in html
    assert "afm − fm: " in html and "paired bootstrap" in html and "2 seeds" in html
    assert 'class="badge bad">stale' not in html.split("</p>", 1)[1]       # current: no row marked stale
    text = (collected / "params.yaml").read_text().replace("attention_l2: 0.001", "attention_l2: 0.01")
    (collected / "params.yaml").write_text(text)
    try:
        html = environment().get_template("_findings.html.j2").render(f=findings.context(params))
        assert "Stale: recsys · synthetic (afm/seed0, afm/seed1)" in html
    finally:
        write_params(collected / "params.yaml", _findings_params())


def test_the_readme_table_check_fails_when_stale(collected, monkeypatch, capsys):
    monkeypatch.chdir(collected)
    readme = collected / "README.md"
    readme.write_text(f"# x\n\n{findings.README_START}\nold\n{findings.README_END}\n\nmore\n")
    assert cli.main(["-q", "findings", "table", "--readme", str(readme), "--check"]) == 1
    assert cli.main(["-q", "findings", "table", "--readme", str(readme), "--write"]) == 0
    assert cli.main(["-q", "findings", "table", "--readme", str(readme), "--check"]) == 0
    text = readme.read_text()
    assert "| C7 | synthetic |" in text and text.endswith("\n\nmore\n")


def test_collect_refuses_a_dataset_outside_the_findings_grid(collected, monkeypatch, capsys):
    monkeypatch.chdir(collected)
    assert cli.main(["-q", "findings", "collect", "--task", "recsys", "--dataset", "other"]) == 2
    assert "findings grid lists: recsys: synthetic" in capsys.readouterr().err


# ---- the repository's own findings ---------------------------------------------------------------------------

def test_readme_findings_table_is_current():
    """README.md's "What the benchmark finds" table is what the committed findings give today."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert findings.README_START in readme and findings.README_END in readme
    import os

    before = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        table = findings.markdown_table(findings.load_all(), findings.file_params())
    finally:
        os.chdir(before)
    assert findings.readme_block(readme, table) == readme, \
        "README.md's findings table is stale: run `attnbench findings table --readme README.md --write`"


def test_committed_findings_are_current_and_small():
    """Every committed finding matches today's params.yaml (no stale run) and the folder stays small."""
    import os

    before = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        params = findings.file_params()
        for f in findings.load_all():
            assert findings.staleness(f, params) == [], f"{f['task']}/{f['dataset']} is stale"
    finally:
        os.chdir(before)
    files = [p for p in (REPO_ROOT / "results/findings").rglob("*") if p.is_file()]
    assert all(p.stat().st_size < 4 * 2**20 for p in files)
    assert sum(p.stat().st_size for p in files) < 20 * 2**20


def test_dvc_metrics_show_lists_the_findings(collected, tmp_path):
    """The findings files are DVC metrics (dvc.yaml's top-level `metrics`, generated from `findings`)."""
    work = tmp_path / "repo"
    (work / "results/findings/recsys").mkdir(parents=True)
    shutil.copy2(collected / "results/findings/recsys/synthetic.json", work / "results/findings/recsys/")
    from attnbench import dvcgen

    params = _findings_params()
    metrics = dvcgen.findings_metrics(params)
    assert metrics == ["results/findings/recsys/synthetic.json"]
    assert "results/findings/translation/multi30k-en-fr.json" in dvcgen.findings_metrics(
        load_params(REPO_ROOT / "params.yaml"))
    (work / "dvc.yaml").write_text(f"metrics:\n- {metrics[0]}\n")
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=work, check=True, capture_output=True, env=env)
    done = subprocess.run([str(BIN / "dvc"), "metrics", "show", "--json"], cwd=work, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)[""]["data"]["results/findings/recsys/synthetic.json"]["data"]
    assert shown["runs"]["afm"]["seeds"]["seed0"]["metrics"]["rmse"] > 0


def test_the_default_pipeline_reads_the_committed_findings_and_never_rewrites_them():
    """`make report` (the default grid) plans no findings job: the committed files are the report's inputs,
    not outputs to regenerate from its one-seed runs; `--config grid=findings` plans them."""
    def planned(*extra):
        done = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1", *extra], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return {line.split()[0] for line in done.stdout.splitlines() if line[:1].isalpha() and line.split()[-1].isdigit()}

    assert "findings" not in planned() and "report" in planned()
    assert "findings" in planned("--config", "grid=findings", "--", "findings_recsys")
