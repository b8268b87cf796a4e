"""DVC for a team, for real, in a temporary git repository (translation only, two runs, tiny sizes):
results produced by Snakemake recorded in dvc.lock with `dvc commit` (nothing re-run); `dvc push` to a
local directory remote, then a fresh clone's `dvc pull` restores prepared data, checkpoints and metrics
byte-identical and its `dvc repro` has nothing to do; `dvc exp run -S` on one run's hyperparameter
re-runs that run only and `dvc exp show` lists the headline metrics; `dvc metrics diff` / `dvc plots
diff` between two commits show the changed run."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, ROOT, run, tiny_translation_copy

pytestmark = pytest.mark.slow
RUNS = ("rnn-additive", "transformer")
CHANGED, UNCHANGED = RUNS
HPARAM = f"tasks.translation.runs.{CHANGED}.options.attn_dim"


def dvc(workdir: Path, *args: str, timeout: int = 600):
    return run([str(BIN / "dvc"), *args], workdir, timeout=timeout)


def git(workdir: Path, *args: str):
    return run(["git", "-c", "user.email=ci@attnbench", "-c", "user.name=ci", *args], workdir)


def _tiny_grid(dest: Path) -> Path:
    tiny_translation_copy(dest, RUNS)
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _tracked_outputs(workdir: Path) -> dict[str, bytes]:
    """Every file DVC caches for this grid: prepared data, checkpoints, metrics, plots, summaries, reports."""
    files = {}
    for d in ("data/prepared", "data/results", "data/summary", "reports"):
        for p in sorted((workdir / d).rglob("*")):
            if p.is_file() and p.name != ".gitignore":
                files[str(p.relative_to(workdir))] = p.read_bytes()
    return files


def _ran(output: str) -> list[str]:
    return sorted(set(re.findall(r"Running stage '([^']+)'", output)))


@pytest.fixture(scope="module")
def team_repo(tmp_path_factory):
    """A git + DVC repository whose results Snakemake produced and `dvc commit` recorded, pushed to a remote."""
    base = tmp_path_factory.mktemp("dvc-team")
    repo = _tiny_grid(base / "repo")
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    dvc(repo, "remote", "add", "-d", "shared", str(base / "remote"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pipeline")
    t0 = time.perf_counter()
    run([str(BIN / "snakemake"), "--cores", "2", "--resources", "gpu=1"], repo, timeout=900)
    print(f"tiny grid through Snakemake: {time.perf_counter() - t0:.1f}s")
    before = _tracked_outputs(repo)
    committed = dvc(repo, "commit", "--force")
    status = dvc(repo, "status", "--json")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results produced by Snakemake, recorded with dvc commit")
    pushed = dvc(repo, "push")
    return {"repo": repo, "base": base, "before": before, "commit": committed, "status": status, "push": pushed}


def test_dvc_commit_records_snakemake_results_without_rerunning(team_repo):
    repo = team_repo["repo"]
    assert json.loads(team_repo["status"].stdout) == {}, team_repo["status"].stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for name in (f"train-translation@synthetic-{CHANGED}-0", f"evaluate-translation@synthetic-{UNCHANGED}-0",
                 "prepare-translation@synthetic", "aggregate-translation@synthetic", "notebook-translation@synthetic",
                 "report"):
        assert lock[name]["outs"], name
    repro = dvc(repo, "repro")
    assert _ran(repro.stdout) == [], repro.stdout
    # same bytes, train_info.json's wall times included: nothing was trained or evaluated again
    after = _tracked_outputs(repo)
    assert set(after) == set(team_repo["before"])
    assert [p for p in after if after[p] != team_repo["before"][p]] == [], "dvc commit / repro rewrote an output"


def test_fresh_clone_pulls_every_output_byte_identical_and_has_nothing_to_reproduce(team_repo):
    repo, base = team_repo["repo"], team_repo["base"]
    assert (base / "remote").is_dir() and any((base / "remote").rglob("*"))
    clone = base / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], base)
    assert not (clone / "data/results").exists() or not any((clone / "data/results").rglob("model.pt"))
    dvc(clone, "pull")
    original, pulled = _tracked_outputs(repo), _tracked_outputs(clone)
    assert set(pulled) == set(original), set(pulled) ^ set(original)
    for rel in original:
        assert pulled[rel] == original[rel], rel
    kinds = {Path(rel).name for rel in pulled}
    assert {"model.pt", "metrics.json", "train_log.csv", "manifest.json", "index.html"} <= kinds, kinds
    repro = dvc(clone, "repro")
    assert _ran(repro.stdout) == [], repro.stdout
    assert json.loads(dvc(clone, "status", "--json").stdout) == {}


@pytest.fixture(scope="module")
def experiment(team_repo):
    """`dvc exp run -S` on one run's attention size, then the result committed as a second revision."""
    repo = team_repo["repo"]
    t0 = time.perf_counter()
    exp = dvc(repo, "exp", "run", "-n", "attn8", "-S", f"{HPARAM}=8")
    print(f"dvc exp run: {time.perf_counter() - t0:.1f}s")
    show = dvc(repo, "exp", "show", "--json")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "rnn-additive with attn_dim 8")
    return {"repo": repo, "exp": exp, "show": show}


def test_exp_run_reruns_only_the_changed_run_and_exp_show_lists_metrics(experiment):
    assert _ran(experiment["exp"].stdout) == sorted([
        f"train-translation@synthetic-{CHANGED}-0", f"evaluate-translation@synthetic-{CHANGED}-0",
        "aggregate-translation@synthetic", "notebook-translation@synthetic", "report"]), experiment["exp"].stdout
    rows = json.loads(experiment["show"].stdout)
    exps = [e for row in rows for e in (row.get("experiments") or [])]
    named = [e for e in exps if any(r.get("name") == "attn8" for r in e.get("revs", []))]
    assert named, experiment["show"].stdout[:3000]
    data = named[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["tasks"]["translation"]["runs"][CHANGED]["options"]["attn_dim"] == 8
    metrics = data["metrics"]
    for run_name in RUNS:
        m = metrics[f"data/results/translation/synthetic/{run_name}/seed0/metrics.json"]["data"]
        assert {"bleu", "chrf"} <= set(m), m
    baseline = next(row for row in rows if row.get("rev") != "workspace")["data"]["metrics"]
    key = f"data/results/translation/synthetic/{UNCHANGED}/seed0/metrics.json"
    assert metrics[key]["data"]["bleu"] == baseline[key]["data"]["bleu"]


def test_metrics_and_plots_diff_between_commits_show_the_changed_run(experiment, tmp_path):
    repo = experiment["repo"]
    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    changed_files = {path for path in diff if path.startswith("data/results/")}
    assert changed_files == {f"data/results/translation/synthetic/{CHANGED}/seed0/metrics.json"}, diff
    assert "bleu" in diff[f"data/results/translation/synthetic/{CHANGED}/seed0/metrics.json"]
    plots = json.loads(dvc(repo, "plots", "diff", "HEAD~1", "HEAD", "--json", "-o", str(tmp_path / "plots")).stdout)
    by_run = {}  # run -> rev -> the valid_metric curve
    for path, entries in plots["data"].items():
        if not path.endswith("train_log.csv"):
            continue
        run_name = path.split("/")[4]  # data/results/translation/synthetic/<run>/seed0/train_log.csv
        for entry in entries:
            assert entry["revisions"] == ["HEAD~1", "HEAD"], entry["revisions"]
            for datum in entry["content"]["data"]["values"]:
                by_run.setdefault(run_name, {}).setdefault(datum["rev"], []).append(datum["valid_metric"])
    assert set(by_run) == set(RUNS), list(plots["data"])
    revs = lambda r: list(by_run[r].values())
    assert len(by_run[CHANGED]) == 2 and revs(CHANGED)[0] != revs(CHANGED)[1], by_run[CHANGED]
    assert len(by_run[UNCHANGED]) == 2 and revs(UNCHANGED)[0] == revs(UNCHANGED)[1], by_run[UNCHANGED]
