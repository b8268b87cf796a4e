"""A real dataset beside the synthetic one: fetched from the mirror, run with one override per tool, its
results beside the synthetic ones (which stay untouched), both in the report, the same output set from
Snakemake and from DVC. Skipped where the mirror of the public datasets (../shared/datasets) is absent."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, ROOT, copy_pipeline, pipeline_outputs, run

MIRROR = Path(os.environ.get("ATTNBENCH_MIRROR") or ROOT.parent / "shared" / "datasets")
RUNS = ("seasonal-naive", "ridge", "dlinear", "gru-attention")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (MIRROR / "etth2" / "ETTh2.csv").is_file(),
                                 reason=f"no mirror of the public datasets at {MIRROR} (set ATTNBENCH_MIRROR)")]


def _load_copy(work: Path) -> dict:
    copy_pipeline(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["scale"] = "smoke"
    load = params["tasks"]["load"]
    load["runs"] = {name: load["runs"][name] for name in RUNS}
    params["tasks"] = {"load": load}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"ATTNBENCH_MIRROR": str(MIRROR)}
    run([str(BIN / "attnbench"), "dvc-yaml", "--write"], work, env=env)
    return env


def test_a_real_dataset_runs_beside_the_synthetic_one_under_snakemake_and_dvc(tmp_path):
    work = tmp_path / "snake"
    env = _load_copy(work)
    snakemake = [str(BIN / "snakemake"), "--cores", "2", "--resources", "gpu=1"]
    run(snakemake, work, timeout=900, env=env)
    synthetic = {p: p.read_bytes() for p in (work / "data/results/load/synthetic").rglob("metrics.json")}
    stamps = {p: p.stat().st_mtime_ns for p in synthetic}
    assert len(synthetic) == len(RUNS)

    run(snakemake + ["--config", "tasks={load: {datasets: [synthetic, etth2]}}"], work, timeout=900, env=env)
    assert {p: p.read_bytes() for p in synthetic} == synthetic            # untouched, not even rewritten
    assert {p: p.stat().st_mtime_ns for p in synthetic} == stamps
    source = json.loads((work / "data/raw/etth2/SOURCE.json").read_text())
    assert [f["origin"] for f in source["files"]] == ["mirror"]
    for name in RUNS:
        metrics = json.loads((work / f"data/results/load/etth2/{name}/seed0/metrics.json").read_text())
        assert metrics["dataset"] == "etth2" and metrics["mape"] > 0
    html = (work / "reports/index.html").read_text()
    assert 'id="load"' in html and 'id="load--etth2"' in html                # both sections
    assert "CC BY-ND 4.0" in html and "Informer" in html                    # the dataset's licence and citation
    assert "load · etth2" in html                                          # its column in the matrix

    # DVC: the README's one override, as an experiment in a git repository
    dvc_work = tmp_path / "dvc"
    _load_copy(dvc_work)
    for cmd in (["git", "init", "-q"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                                 "--allow-empty", "-m", "empty"]):
        run(cmd, dvc_work)
    run([str(BIN / "dvc"), "init", "-q"], dvc_work)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], dvc_work)
    run(["git", "add", "-A"], dvc_work)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "pipeline"], dvc_work)
    run([str(BIN / "dvc"), "exp", "run", "-S", "tasks.load.datasets=[synthetic,etth2]"], dvc_work, timeout=900, env=env)
    assert pipeline_outputs(dvc_work) == pipeline_outputs(work)
    assert 'id="load--etth2"' in (dvc_work / "reports/index.html").read_text()
