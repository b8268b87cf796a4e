"""Fast checks of the SLURM profile and of the DVC caching promise (the real runs: test_slurm.py,
test_dvc_remote.py)."""
from __future__ import annotations

import yaml

from .conftest import BIN, ROOT, run, smoke_copy

PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_slurm_profile_uses_the_plugin_settings_a_cluster_without_accounting_needs():
    prof = _profile()
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue" and prof["slurm-no-account"] is True
    assert isinstance(prof["jobs"], int) and prof["jobs"] > 0
    assert isinstance(prof["retries"], int) and prof["retries"] >= 1
    # a global gpu cap would serialise GPU jobs across the cluster; SLURM schedules GPUs
    assert "resources" not in prof and "gpu" not in prof["default-resources"]
    for rule, res in prof["set-resources"].items():
        assert "slurm_extra" not in res, rule  # the plugin refuses --gres/--gpus/--partition there
    assert prof["set-resources"]["train"]["gpu"] == 1
    assert prof["set-resources"]["train"]["slurm_partition"] != prof["default-resources"]["slurm_partition"]
    for rule in ("prepare", "train", "evaluate", "aggregate", "notebook", "report"):
        want = {**prof["default-resources"], **prof["set-resources"].get(rule, {})}
        assert {"slurm_partition", "runtime", "mem_mb"} <= set(want), rule
        assert isinstance(want["runtime"], int) and isinstance(want["mem_mb"], int), rule


def test_slurm_profile_dry_run_gives_training_jobs_a_gpu_and_the_gpu_partition(tmp_path):
    workdir = smoke_copy(tmp_path)
    out = run([str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm", "--dry-run",
               "data/results/translation/synthetic/rnn-additive/seed0/metrics.json"], workdir).stdout
    blocks = {b.split(":", 1)[0].split()[-1]: b for b in out.split("\nrule ")[1:]}
    assert "slurm_partition=gpu" in blocks["train"] and "gpu=1" in blocks["train"], blocks["train"]
    assert "runtime=240" in blocks["train"] and "mem_mb=8000" in blocks["train"]
    assert "slurm_partition=cpu" in blocks["evaluate"] and "gpu=1" not in blocks["evaluate"]


def test_every_dvc_output_is_cached_so_a_remote_carries_it():
    """`cache: false` outputs live in neither git (.gitignore) nor the remote: a clone could not pull them."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    uncached = []
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind, []):
                if isinstance(entry, dict):
                    for path, opts in entry.items():
                        if isinstance(opts, dict) and opts.get("cache") is False:
                            uncached.append(f"{name}: {path}")
    assert not uncached, f"declare these cached (drop `cache: false`): {uncached}"
