"""End to end: the smoke pipeline through Snakemake and through DVC, the two DAGs compared, a
parameter change re-running only its run, reproducibility, and a training job killed mid-run."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from attnbench import tasks
from attnbench.config import dataset_names

from .conftest import BIN, pipeline_outputs, run, smoke_copy as _smoke

pytestmark = pytest.mark.slow


def _expected_run_files(workdir: Path) -> set[str]:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    names = ("model.pt", "train_log.csv", "train_info.json", "metrics.json", "attention.npz", "samples.jsonl")
    return {f"data/results/{t}/{d}/{r}/seed{s}/{n}" for t, sec in params["tasks"].items()
            for d in dataset_names(params, t) for r in sec["runs"] for s in params["seeds"] for n in names}


def _set_attn_dim(p):
    p["tasks"]["translation"]["runs"]["rnn-additive"]["options"]["attn_dim"] = 16


def _snakemake_jobs(workdir: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of the jobs a dry run would execute."""
    out = run([str(BIN / "snakemake"), "--cores", "2", "--dry-run"], workdir).stdout
    jobs, rule = [], None
    for line in out.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line.strip()):
            rule = m.group(1)
            jobs.append((rule, ""))
        elif rule and line.strip().startswith("wildcards:"):
            jobs[-1] = (rule, line.strip().removeprefix("wildcards: "))
    return jobs


def test_seeds_given_on_the_snakemake_command_line_multiply_the_runs(tmp_path):
    """`make report SEEDS="0 1 2"` passes `--config seeds=[0,1,2]`, whose items Snakemake hands over as strings."""
    work = _smoke(tmp_path / "w")
    out = run([str(BIN / "snakemake"), "--cores", "2", "--dry-run", "--config", "seeds=[0,1,2]"], work).stdout
    trained = set(re.findall(r"data/results/intent/synthetic/mean-pool/seed(\d+)/model\.pt", out))
    assert trained == {"0", "1", "2"}, out[-2000:]


def test_snakemake_smoke_pipeline_produces_the_report_and_every_metrics_file(snakemake_run):
    workdir, _ = snakemake_run
    files = pipeline_outputs(workdir)
    missing = _expected_run_files(workdir) - files
    assert not missing, missing
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for task in params["tasks"]:  # every task's metrics carry its headline metric
        headline = tasks.get(task).headline
        for path in (workdir / "data/results" / task).rglob("metrics.json"):
            assert headline in json.loads(path.read_text()), path
    for path in (workdir / "data/results/translation").rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        assert {"bleu", "chrf", "aer", "bleu_by_length", "bleu_signature"} <= set(metrics)
        assert metrics["bleu_signature"].startswith("nrefs:1|")
    html = (workdir / "reports/index.html").read_text()
    for run_name in params["tasks"]["translation"]["runs"]:
        assert run_name in html
    assert (workdir / "reports/notebooks/translation/synthetic.html").stat().st_size > 0
    for name in ("train", "evaluate"):
        bench = workdir / f"logs/benchmarks/translation/synthetic/rnn-additive/seed0.{name}.tsv"
        assert bench.read_text().startswith("s\th:m:s\tmax_rss")
    assert (workdir / "logs/translation/synthetic/rnn-additive/seed0.train.log").read_text().count("epoch") >= 1


def test_snakemake_reruns_only_the_run_whose_parameter_changed(snakemake_run):
    workdir, _ = snakemake_run
    assert _snakemake_jobs(workdir) == [], "a finished pipeline has nothing to do"
    original = (workdir / "params.yaml").read_text()
    params = yaml.safe_load(original)
    _set_attn_dim(params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        jobs = _snakemake_jobs(workdir)
    finally:
        (workdir / "params.yaml").write_text(original)  # the session's other tests share this run
    trained = sorted(w for r, w in jobs if r in ("train", "evaluate"))
    assert trained == ["task=translation, dataset=synthetic, run=rnn-additive, seed=0"] * 2, jobs
    assert sorted(r for r, _ in jobs) == ["aggregate", "all", "evaluate", "notebook", "report", "train"]


def test_same_seed_twice_gives_identical_metrics(snakemake_run, tmp_path):
    workdir, _ = snakemake_run
    other = _smoke(tmp_path / "again")
    targets = [f"data/results/translation/synthetic/{r}/seed0/metrics.json" for r in ("rnn-additive", "transformer")]
    run([str(BIN / "snakemake"), "--cores", "2", *targets], other)
    for target in targets:
        assert (other / target).read_bytes() == (workdir / target).read_bytes(), target


def test_training_killed_with_sigkill_resumes_and_matches_an_uninterrupted_run(tmp_path):
    def longer(p):
        p["tasks"]["translation"]["scales"]["smoke"].update(train_size=600, epochs=6)

    ref = _smoke(tmp_path / "ref", longer)
    workdir = _smoke(tmp_path / "killed", longer)
    argv = ["attnbench", "train", "--task", "translation", "--run", "rnn-general", "--seed", "0"]
    for d in (ref, workdir):
        run(["attnbench", "prepare", "--task", "translation"], d)
    run(argv, ref)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = workdir / "data/state/translation/synthetic/rnn-general/seed0/last.pt"
    deadline = time.time() + 120
    import torch

    while time.time() < deadline and proc.poll() is None:
        if state.exists() and torch.load(state, weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(state, weights_only=True)["epoch"]
    assert 2 <= killed_at < 6 and not (workdir / "data/results/translation/synthetic/rnn-general/seed0/model.pt").exists()
    resumed = run(argv, workdir)
    assert f"from epoch {killed_at}" in resumed.stderr
    eval_argv = ["attnbench", "evaluate", "--task", "translation", "--run", "rnn-general", "--seed", "0"]
    run(eval_argv, ref)
    run(eval_argv, workdir)
    metrics = "data/results/translation/synthetic/rnn-general/seed0/metrics.json"
    assert (workdir / metrics).read_bytes() == (ref / metrics).read_bytes()


def _git(workdir: Path, *args: str):
    return run(["git", "-c", "user.email=ci@attnbench", "-c", "user.name=ci", *args], workdir)


def _two_runs_per_task(p):
    """Two runs of every task (translation's rnn-additive among them): DVC runs stages one at a time,
    so the whole grid took it ~20 min here; every task's stages are still exercised."""
    for name, section in p["tasks"].items():
        runs = list(section["runs"])
        keep = (["rnn-additive"] + [r for r in runs if r != "rnn-additive"])[:2] if name == "translation" else runs[:2]
        section["runs"] = {r: section["runs"][r] for r in keep}


def _run_folders(workdir: Path) -> set[str]:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    return {f"data/results/{t}/{d}/{r}/" for t, sec in params["tasks"].items() for d in dataset_names(params, t)
            for r in sec["runs"]}


@pytest.fixture(scope="module")
def dvc_run(tmp_path_factory):
    workdir = _smoke(tmp_path_factory.mktemp("dvc"), _two_runs_per_task)
    _git(workdir, "init", "-q")
    run([str(BIN / "dvc"), "init", "-q"], workdir)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], workdir)
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-qm", "smoke")
    t0 = time.perf_counter()
    proc = run([str(BIN / "dvc"), "repro"], workdir, timeout=1500)
    print(f"smoke pipeline through dvc repro: {time.perf_counter() - t0:.1f}s")
    return workdir, proc


def test_dvc_repro_produces_the_same_outputs_as_snakemake(dvc_run, snakemake_run):
    dvc_dir, _ = dvc_run
    snake_dir, _ = snakemake_run
    dvc_files, snake_files = pipeline_outputs(dvc_dir), pipeline_outputs(snake_dir)
    assert _expected_run_files(dvc_dir) <= dvc_files
    # Snakemake ran every run; compare on the runs DVC's grid kept (and everything outside run folders)
    kept = _run_folders(dvc_dir)
    snake_files = {f for f in snake_files if not f.startswith("data/results/")
                   or any(f.startswith(k) for k in kept)}
    assert dvc_files == snake_files, (dvc_files ^ snake_files)


def test_dvc_metrics_params_and_plots_are_declared(dvc_run):
    workdir, _ = dvc_run
    metrics = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], workdir).stdout)
    text = json.dumps(metrics)
    assert "translation/synthetic/rnn-additive/seed0/metrics.json" in text and '"bleu"' in text
    params = run([str(BIN / "dvc"), "params", "diff", "--all", "--json"], workdir).stdout
    assert "tasks.translation.runs.rnn-additive" in params
    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], workdir).stdout
    assert "train_log.csv" in plots


def test_dvc_reruns_only_the_run_whose_parameter_changed(dvc_run):
    workdir, _ = dvc_run
    status = run([str(BIN / "dvc"), "status", "--json"], workdir).stdout
    assert json.loads(status) == {}, status
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    _set_attn_dim(params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([str(BIN / "dvc"), "repro"], workdir).stdout
    ran = sorted(set(re.findall(r"Running stage '([^']+)'", out)))
    assert ran == ["aggregate-translation@synthetic", "evaluate-translation@synthetic-rnn-additive-0",
                   "notebook-translation@synthetic", "report", "train-translation@synthetic-rnn-additive-0"], out
