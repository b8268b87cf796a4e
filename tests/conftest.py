"""Shared test helpers: a scratch copy of the pipeline and a fast params file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE_FILES = ("Snakefile", "dvc.yaml", "params.yaml", "workflow", "src", "benchmarks/results")


OUTPUT_DIRS = ("data/raw", "data/prepared", "data/results", "data/summary", "reports")


def pipeline_outputs(workdir: Path, dirs: tuple[str, ...] = OUTPUT_DIRS) -> set[str]:
    """The files a pipeline run wrote under `dirs` (the tools' own hidden files and the READMEs left out):
    what Snakemake and DVC must agree on."""
    return {p.relative_to(workdir).as_posix() for d in dirs for p in (workdir / d).rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.name != "README.md"}


def load_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def copy_pipeline(dest: Path) -> Path:
    """The files a user's checkout has, without outputs, in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def run(cmd: list[str], cwd: Path, timeout: int = 600, check: bool = True, env: dict | None = None):
    """Run a command with the test interpreter's bin/ first on PATH (attnbench, snakemake, dvc)."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def params() -> dict:
    return load_params()


def shrink(p: dict) -> dict:
    """Smoke scale with translation shrunk further: a whole train+evaluate in a few seconds."""
    p["scale"] = "smoke"
    t = p["tasks"]["translation"]
    t["scales"]["smoke"] = {"train_size": 200, "valid_size": 20, "test_size": 30, "max_len": 12, "epochs": 2}
    t["models"]["rnn"] = {"emb_dim": 16, "hidden": 16, "dropout": 0.1}
    t["models"]["transformer"] = {"d_model": 16, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn_dim": 32, "dropout": 0.1}
    return p


def tiny_translation_copy(dest: Path, runs: tuple[str, ...]) -> Path:
    """A copy of the pipeline whose params.yaml holds translation only, the given runs, shrunk sizes."""
    copy_pipeline(dest)
    p = shrink(yaml.safe_load((dest / "params.yaml").read_text()))
    t = p["tasks"]["translation"]
    t["runs"] = {name: t["runs"][name] for name in runs}
    p["tasks"] = {"translation": t}
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    prune_dvc_stages(dest)
    return dest


@pytest.fixture
def tiny_params() -> dict:
    """Smoke scale, shrunk further: a whole train+evaluate in a few seconds."""
    return shrink(load_params())


def prune_dvc_stages(workdir: Path) -> None:
    """dvc.yaml has a prepare/train/evaluate/aggregate/notebook block per task, generated from params.yaml
    (attnbench dvc-yaml): regenerate the copy's from its own params.yaml and files, so the blocks of tasks
    it no longer has go (their `${tasks.<task>.runs}` would not resolve) and those it keeps are unchanged."""
    from attnbench import dvcgen

    params = yaml.safe_load((workdir / "params.yaml").read_text())
    (workdir / "dvc.yaml").write_text(dvcgen.render(params, root=workdir))


def smoke_copy(workdir: Path, edit=None) -> Path:
    """A copy of the pipeline at smoke scale, optionally with params edited by `edit(params)`
    (an edit may drop tasks: their dvc.yaml stages go too)."""
    copy_pipeline(workdir)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["scale"] = "smoke"
    if edit:
        edit(params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    prune_dvc_stages(workdir)
    return workdir


@pytest.fixture(scope="session")
def snakemake_run(tmp_path_factory):
    """The whole smoke pipeline through Snakemake, once per test session."""
    workdir = smoke_copy(tmp_path_factory.mktemp("snakemake"))
    t0 = time.perf_counter()
    proc = run([str(BIN / "snakemake"), "--cores", "2", "--resources", "gpu=1"], workdir, timeout=1500)  # ~7 min idle on 2 cores
    print(f"smoke pipeline through Snakemake: {time.perf_counter() - t0:.1f}s")
    return workdir, proc
