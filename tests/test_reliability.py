"""Faults a long benchmark meets (issue 11): interrupted writes, a full disk, a second pipeline
started on the same folder, Ctrl-C in the middle of a grid, a SIGKILL mid-write, a partial grid.

Where each row of issue 11's table is tested:
  SIGKILL during training ........ test_pipeline.py::test_training_killed_with_sigkill_resumes_...,
                                   test_training.py::test_interrupted_run_resumes_...
  SIGKILL during evaluate/report . here: test_sigkill_during_evaluation_..., test_sigkill_during_report_...
  Ctrl-C, --rerun-incomplete ..... here: test_ctrl_c_then_rerun_incomplete_...
  second snakemake / dvc repro ... here: test_a_second_snakemake_..., test_a_second_dvc_repro_...
  truncated checkpoint ........... test_training.py::test_truncated_checkpoint_...
  another config's checkpoint .... test_training.py::test_weights_of_another_configuration_..., ..._not_resumed
  pickled object in a checkpoint . test_training.py::test_checkpoint_with_a_pickled_object_is_refused
  NaN / inf loss ................. test_training.py::test_non_finite_loss_...
  disk full ...................... here: test_disk_full_while_evaluating_..., test_output_error_...
  bad params.yaml ................ test_config.py (every kind), here: unknown mechanism / cuda per task
  real-data readers .............. test_readers_faults.py (readers x faults), per-task reader tests
  HTML and quotes in the data .... test_report.py::test_report_renders_every_run_escaped_...,
                                   test_recsys_cli.py, test_documents.py, here: failed-run log lines
  partial grid ................... here: test_a_failed_run_is_marked_failed_..., test_partial_grid_...;
                                   test_report.py::test_aggregate_rows_status_and_columns
  soak ........................... benchmarks/soak.sh (too long for CI)
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from attnbench import cli
from attnbench import io as aio
from attnbench.errors import OutputError

from .conftest import BIN, run, smoke_copy, write_params


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    aio.write_json(target, {"bleu": 1.0})
    with pytest.raises(KeyboardInterrupt):
        with aio.atomic_path(target) as tmp:
            tmp.write_text('{"bleu": 2')  # half a file, then the process is interrupted
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"bleu": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_disk_full_while_evaluating_names_the_file_and_leaves_no_truncated_output(tiny_params, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.chdir(tmp_path)
    tiny_params["tasks"]["translation"]["runs"] = {"rnn-dot": {"model": "rnn", "attention": "dot"}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    base = ["-q", "--params", str(path)]
    assert cli.main([*base, "prepare", "--task", "translation"]) == 0
    assert cli.main([*base, "train", "--task", "translation", "--run", "rnn-dot", "--seed", "0"]) == 0

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    assert cli.main([*base, "evaluate", "--task", "translation", "--run", "rnn-dot", "--seed", "0"]) == 1
    err = capsys.readouterr().err
    run_dir = tmp_path / "data/results/translation/synthetic/rnn-dot/seed0"
    assert "attention.npz: could not write (No space left on device)" in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.pt", "train_info.json", "train_log.csv"]


def test_output_error_is_raised_for_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="could not write"):
        aio.write_text(blocker / "sub" / "x.txt", "x")


def _two_runs(p):
    """Translation only (the other tasks would multiply every pipeline run here), two runs."""
    t = p["tasks"]["translation"]
    t["runs"] = {"rnn-none": t["runs"]["rnn-none"], "rnn-dot": t["runs"]["rnn-dot"]}
    t["scales"]["smoke"].update(train_size=600, epochs=4)
    p["tasks"] = {"translation": t}


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # as from a terminal: Ctrl-C enabled even when the tests themselves run in a background job (bash starts
    # those with SIGINT ignored, and the child would inherit that and never see the Ctrl-C below)
    return subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_snakemake_on_the_same_folder_is_refused_and_the_first_finishes(tmp_path):
    workdir = smoke_copy(tmp_path, _two_runs)
    first = _start(workdir)
    _wait_for(workdir / "logs/translation/synthetic/prepare.log", first)
    second = run([str(BIN / "snakemake"), "--cores", "1"], workdir, check=False)
    # refused either by the lock or, when the first run is already training (a slow or loaded machine), by
    # Snakemake's check that the first run's outputs are still incomplete: both leave the first run alone
    said = second.stdout + second.stderr
    assert second.returncode != 0 and ("cannot be locked" in said or "seem to be incomplete" in said), said[-2000:]
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    assert (workdir / "reports/index.html").exists()


@pytest.mark.slow
def test_ctrl_c_then_rerun_incomplete_finishes_without_retraining_finished_runs(tmp_path):
    workdir = smoke_copy(tmp_path, _two_runs)
    first = _start(workdir)
    # the evaluate job of rnn-none starts only once Snakemake has recorded its train job as finished
    _wait_for(workdir / "logs/translation/synthetic/rnn-none/seed0.evaluate.log", first)
    model = workdir / "data/results/translation/synthetic/rnn-none/seed0/model.pt"
    stamp = model.stat().st_mtime_ns
    # Ctrl-C in the terminal reaches the whole process group. Snakemake's log handler swallows a
    # KeyboardInterrupt raised while it writes, so, like a user whose Ctrl-C did nothing, press it again
    # until Snakemake stops
    time.sleep(1.0)
    for _ in range(10):
        os.killpg(first.pid, signal.SIGINT)
        try:
            first.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    first.communicate(timeout=120)
    assert first.returncode != 0
    rerun = run([str(BIN / "snakemake"), "--cores", "2", "--rerun-incomplete"], workdir, timeout=600)
    assert (workdir / "reports/index.html").exists(), rerun.stdout
    assert model.stat().st_mtime_ns == stamp, "a finished run was trained again"
    for name in ("rnn-none", "rnn-dot"):
        assert (workdir / f"data/results/translation/synthetic/{name}/seed0/metrics.json").exists()


@pytest.mark.slow
def test_a_second_dvc_repro_is_refused_while_one_runs(tmp_path):
    workdir = smoke_copy(tmp_path, _two_runs)
    git = ["git", "-c", "user.email=ci@attnbench", "-c", "user.name=ci"]
    run([*git, "init", "-q"], workdir)
    run([str(BIN / "dvc"), "init", "-q"], workdir)
    run([*git, "add", "-A"], workdir)
    run([*git, "commit", "-qm", "x"], workdir)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    _wait_for(workdir / "data/prepared/translation/synthetic/manifest.json", first)
    second = run([str(BIN / "dvc"), "repro"], workdir, check=False)
    assert second.returncode != 0 and "lock" in (second.stdout + second.stderr).lower()
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    assert yaml.safe_load((workdir / "dvc.lock").read_text())["stages"]


# A real SIGKILL of the CLI process at the worst moment of an atomic write: the temporary file is
# complete and closed, the rename has not happened. The kill is delivered by the process to itself
# from inside os.replace, so the test does not race the writer.
_KILL_AT_RENAME = """
import os, signal, sys
from pathlib import Path
from attnbench import cli
from attnbench import io as aio

target, argv = sys.argv[1], sys.argv[2:]
real_replace = os.replace

def replace(src, dst, *a, **kw):
    if Path(dst).name == target:
        assert Path(src).stat().st_size > 0  # the temporary file was written in full
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **kw)

aio.os.replace = replace
sys.exit(cli.main(argv))
"""


def _killed_at_rename(workdir: Path, target: str, argv: list[str]) -> subprocess.CompletedProcess:
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, target, *argv], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return proc


def _one_translation_run(tiny_params, tmp_path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    tiny_params["tasks"]["translation"]["runs"] = {"rnn-dot": {"model": "rnn", "attention": "dot"}}
    path = write_params(tmp_path / "params.yaml", tiny_params)
    base = ["-q", "--params", str(path)]
    assert cli.main([*base, "prepare", "--task", "translation"]) == 0
    assert cli.main([*base, "train", "--task", "translation", "--run", "rnn-dot", "--seed", "0"]) == 0
    return base


@pytest.mark.slow
def test_sigkill_during_evaluation_leaves_no_metrics_and_the_rerun_completes(tiny_params, tmp_path, monkeypatch):
    base = _one_translation_run(tiny_params, tmp_path, monkeypatch)
    evaluate = [*base, "evaluate", "--task", "translation", "--run", "rnn-dot", "--seed", "0"]
    run_dir = tmp_path / "data/results/translation/synthetic/rnn-dot/seed0"
    _killed_at_rename(tmp_path, "metrics.json", evaluate)
    assert not (run_dir / "metrics.json").exists(), "a metrics file appeared although the job was killed"
    leftovers = list(run_dir.glob(".metrics.json.*.tmp"))
    assert len(leftovers) == 1 and json.loads(leftovers[0].read_text())["run"] == "rnn-dot"  # complete, but hidden
    # aggregation does not take the temporary file for a result: the run is not 'ok'
    from attnbench.config import for_dataset
    from attnbench.validation import load_params
    from attnbench.report.aggregate import aggregate

    params = for_dataset(load_params(tmp_path / "params.yaml"), "translation", "synthetic")
    assert aggregate(params, "translation").set_index("run").loc["rnn-dot", "status"] != "ok"
    assert cli.main(evaluate) == 0  # the same command again completes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"] == "rnn-dot" and metrics["bleu"] == json.loads(leftovers[0].read_text())["bleu"]
    assert aggregate(params, "translation").set_index("run").loc["rnn-dot", "status"] == "ok"


@pytest.mark.slow
def test_sigkill_during_report_rendering_keeps_the_previous_report_and_the_rerun_completes(tiny_params, tmp_path,
                                                                                           monkeypatch):
    base = _one_translation_run(tiny_params, tmp_path, monkeypatch)
    report = tmp_path / "reports/index.html"
    # no report yet: a killed render leaves none
    _killed_at_rename(tmp_path, "index.html", [*base, "report"])
    assert not report.exists()
    assert cli.main([*base, "report"]) == 0
    before = report.read_bytes()
    assert before.rstrip().endswith(b"</html>")
    # results change, the render is killed: the previous complete report is still there, unchanged
    assert cli.main([*base, "evaluate", "--task", "translation", "--run", "rnn-dot", "--seed", "0"]) == 0
    assert cli.main([*base, "aggregate", "--task", "translation"]) == 0
    _killed_at_rename(tmp_path, "index.html", [*base, "report"])
    assert report.read_bytes() == before
    assert cli.main([*base, "report"]) == 0
    after = report.read_text(encoding="utf-8")
    assert after.rstrip().endswith("</html>") and after != before.decode("utf-8")


TASKS = ("translation", "intent", "documents", "load", "recsys")


@pytest.mark.parametrize("task", TASKS)
def test_a_failed_run_is_marked_failed_with_its_log_path_in_every_task_section(task, tmp_path, monkeypatch):
    """Only the failed run's log exists (no results yet): aggregation and the report still render,
    and the task's section names the run as failed, with the log's path and its last line."""
    from attnbench import paths
    from attnbench.config import REPO_ROOT, for_dataset
    from attnbench.validation import load_params
    from attnbench.report import render_report
    from attnbench.report.aggregate import aggregate

    monkeypatch.chdir(tmp_path)
    params = load_params(REPO_ROOT / "params.yaml", {"scale": "smoke", "seeds": [0]})
    run_name = next(iter(params["tasks"][task]["runs"]))
    log = paths.job_log(task, "synthetic", run_name, 0, "train")
    log.parent.mkdir(parents=True)
    log.write_text("INFO training\nattnbench: error: <b>boom</b> & \"quotes\"\n")
    table = aggregate(for_dataset(params, task, "synthetic"), task).set_index("run")
    assert table.loc[run_name, "status"] == "failed"
    assert f"logs/{task}/synthetic/{run_name}/seed0.train.log" in table.loc[run_name, "reason"]
    out = paths.report_html()
    render_report(params, out)
    html = out.read_text(encoding="utf-8")
    section = html[html.index(f'<section id="{task}"'):]
    section = section[:section.index("</section>")]
    assert "failed" in section and f"logs/{task}/synthetic/{run_name}/seed0.train.log" in section, section[-3000:]
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; &#34;quotes&#34;" in section and "<b>boom" not in html


def _failing_grid(p):
    t = p["tasks"]["translation"]
    t["runs"] = {"rnn-none": t["runs"]["rnn-none"], "rnn-dot": t["runs"]["rnn-dot"]}
    t["scales"]["smoke"] = {"train_size": 200, "valid_size": 20, "test_size": 30, "max_len": 12, "epochs": 2}
    t["models"]["rnn"] = {"emb_dim": 16, "hidden": 16, "dropout": 0.1}
    p["tasks"] = {"translation": t}


@pytest.mark.slow
def test_partial_grid_through_snakemake_keep_going_then_aggregate_and_report(tmp_path):
    """One training job of the grid really fails (its state folder cannot be created): Snakemake
    --keep-going finishes the other run; `attnbench aggregate` and `attnbench report` render the
    partial grid with the failed run marked, naming the log Snakemake kept."""
    workdir = smoke_copy(tmp_path, _failing_grid)
    blocker = workdir / "data/state/translation/synthetic/rnn-none"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the run's state folder should be\n")
    targets = [f"data/results/translation/synthetic/{r}/seed0/metrics.json" for r in ("rnn-none", "rnn-dot")]
    snake = run([str(BIN / "snakemake"), "--cores", "1", "--keep-going", *targets], workdir, check=False)
    assert snake.returncode != 0
    assert (workdir / targets[1]).is_file() and not (workdir / targets[0]).exists(), snake.stderr[-3000:]
    log = "logs/translation/synthetic/rnn-none/seed0.train.log"
    assert "attnbench: error:" in (workdir / log).read_text() and "last.pt: could not write" in (workdir / log).read_text()
    run(["attnbench", "aggregate", "--task", "translation"], workdir)
    run(["attnbench", "report"], workdir)
    html = (workdir / "reports/index.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="translation"'):]
    section = section[:section.index("</section>")]
    assert "failed" in section and log in section and "last.pt: could not write" in section
    assert 'href="../data/results/translation/synthetic/rnn-dot/seed0/metrics.json"' in section


@pytest.mark.parametrize("task", TASKS)
def test_unknown_mechanism_in_any_task_is_refused_naming_key_value_and_choices(task, tmp_path, monkeypatch, capsys):
    from .conftest import load_params as shipped

    monkeypatch.chdir(tmp_path)
    params = shipped()
    run_name = next(iter(params["tasks"][task]["runs"]))
    params["tasks"][task]["runs"][run_name]["attention"] = "<nope>"
    path = write_params(tmp_path / "params.yaml", params)
    for argv in (["validate"], ["prepare", "--task", task], ["train", "--task", task, "--run", run_name, "--seed", "0"]):
        assert cli.main(["--params", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"tasks.{task}.runs.{run_name}.attention" in err and "'<nope>'" in err, err
        assert "allowed" in err or "one of" in err or "expected" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "nothing may be written"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA: the refusal cannot happen")
@pytest.mark.parametrize("task", TASKS)
def test_device_cuda_without_cuda_stops_every_step_before_writing(task, tmp_path, monkeypatch, capsys):
    from .conftest import load_params as shipped

    monkeypatch.chdir(tmp_path)
    params = shipped()
    params["device"] = "cuda"
    path = write_params(tmp_path / "params.yaml", params)
    run_name = next(iter(params["tasks"][task]["runs"]))
    for argv in (["prepare", "--task", task], ["train", "--task", task, "--run", run_name, "--seed", "0"]):
        assert cli.main(["--params", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert "device" in err and "'cuda'" in err and "no CUDA device" in err and "auto, cpu" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "nothing may be written"
