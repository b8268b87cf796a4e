"""The pipeline on a real SLURM: a single-node cluster from Debian's packages (munge, slurmctld,
slurmd) is started for this module, the smoke pipeline (translation only, two runs, tiny sizes) runs
through workflow/profiles/slurm and must give the same metrics as a local run; a job that fails on
the cluster makes Snakemake exit non-zero within a bounded time, and `--rerun-incomplete` then
finishes the grid. The daemons are stopped by their process ids when the module ends, pass or fail.

Needs root (the daemons and /etc/slurm/slurm.conf, the only place the plugin's job steps read the
config from) and the packages; `make test` installs them when run as root (its `slurm` target)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, run, tiny_translation_copy

pytestmark = pytest.mark.slow

PROFILE = "workflow/profiles/slurm"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MARKER = "# written by attnbench tests/test_slurm.py"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "srun", "scancel")
RUNS = ("rnn-additive", "transformer")
# Status checks every few seconds instead of the profile's cluster-friendly 15 s: the jobs here
# take seconds. Everything else comes from the profile as a user runs it.
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
FAIL_BOUND_S = 480  # a failing job must end the run within this (three attempts with retries: 2, on a loaded CI box)


def _missing() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if not shutil.which(name)]


if os.name != "posix" or os.geteuid() != 0:
    pytestmark = [pytestmark, pytest.mark.skip(reason="starting slurmctld/slurmd and writing /etc/slurm needs root")]
elif _missing():
    pytestmark = [pytestmark, pytest.mark.skip(
        reason=f"SLURM packages not installed (missing {', '.join(_missing())}); "
               "`make test` installs munge, slurmctld, slurmd and slurm-client when run as root")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _profile() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / PROFILE / "config.yaml").read_text())


def _partitions() -> list[str]:
    prof = _profile()
    names = {prof["default-resources"]["slurm_partition"]}
    names |= {r["slurm_partition"] for r in prof.get("set-resources", {}).values() if "slurm_partition" in r}
    return sorted(names)


def _slurm_conf(state: Path, host: str) -> str:
    cpus = os.cpu_count() or 1
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    # The profile asks up to 8 GB for a training job; memory is not enforced here (no cgroups),
    # so the node declares at least that (config_overrides: the declared values are trusted).
    mem_mb = max(mem_mb, max(int(r.get("mem_mb", 0)) for r in _profile()["set-resources"].values()))
    parts = _partitions()
    lines = [
        MARKER,
        "ClusterName=attnbench-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={state}/munge/munge.sock",
        f"StateSaveLocation={state}/ctld",
        f"SlurmdSpoolDir={state}/slurmd",
        f"SlurmctldPidFile={state}/slurmctld.pid",
        f"SlurmdPidFile={state}/slurmd.pid",
        f"SlurmctldLogFile={state}/slurmctld.log",
        f"SlurmdLogFile={state}/slurmd.log",
        "MailProg=/bin/true",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",  # needed for --gpus
        "SelectTypeParameters=CR_Core",
        "GresTypes=gpu",
        "AccountingStorageType=accounting_storage/none",  # no slurmdbd: the profile's squeue status
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        # squeue lists finished jobs this long: >= 3 x the status-check interval (the plugin's rule), and
        # long enough here for the test to read every job's record with scontrol after the run
        "MinJobAge=3600",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN",
    ]
    for i, name in enumerate(parts):
        lines.append(f"PartitionName={name} Nodes=ALL MaxTime=INFINITE State=UP" + (" Default=YES" if i == 0 else ""))
    return "\n".join(lines) + "\n"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _wait(what: str, ready, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(f"SLURM test cluster: {what} not ready within {timeout:.0f}s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """munged, slurmctld and slurmd in the foreground as children of this process."""
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        pytest.skip("a slurmctld is already running on this machine; the test does not touch a real cluster")
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "ctld", "slurmd"):
        (state / sub).mkdir()
    (state / "munge").chmod(stat.S_IRWXU)
    host = socket.gethostname().split(".")[0]
    backups = {}
    for conf in (SLURM_CONF, GRES_CONF):
        if conf.exists() and MARKER not in conf.read_text(errors="replace"):
            backups[conf] = conf.read_bytes()
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(_slurm_conf(state, host))
    GRES_CONF.write_text(f"{MARKER}\n# a GPU the training jobs can ask for; the machine need not have one\n"
                         f"NodeName={host} Name=gpu File=/dev/null\n")
    procs: list[subprocess.Popen] = []

    def start(name, argv):
        log = open(state / f"{name}.out", "w")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start("munged", ["munged", "--foreground", "--force", f"--socket={state}/munge/munge.sock",
                         f"--pid-file={state}/munge/munged.pid", f"--log-file={state}/munge/munged.log",
                         f"--seed-file={state}/munge/munged.seed"])
        _wait("munged", lambda: (state / "munge/munge.sock").exists())
        start("slurmctld", ["slurmctld", "-D", "-i"])
        _wait("slurmctld", lambda: subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0)
        start("slurmd", ["slurmd", "-D", "-N", host])

        def idle():
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout
            return out.strip() != "" and all(s.strip() == "idle" for s in out.split())

        _wait("slurmd (node idle)", idle)
        yield {"state": state, "host": host, "pids": [p.pid for p in procs]}
    finally:
        # cancel what is left of our jobs, then stop the daemons by the pids this fixture started
        subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, timeout=30)
        if procs and len(procs) == 3:
            try:
                _wait("job cleanup", lambda: subprocess.run(["squeue", "-h", "-t", "RUNNING,COMPLETING,PENDING"],
                                                            capture_output=True, text=True).stdout.strip() == "", 30)
            except AssertionError:
                pass
        for proc in reversed(procs):
            _stop(proc)
        for conf in (SLURM_CONF, GRES_CONF):
            if conf in backups:
                conf.write_bytes(backups[conf])
            elif conf.exists() and MARKER in conf.read_text(errors="replace"):
                conf.unlink()


def _tiny_grid(dest: Path) -> Path:
    """Translation only, two runs, the conftest's tiny sizes: every SLURM job takes seconds."""
    return tiny_translation_copy(dest, RUNS)


METRICS = [f"data/results/translation/synthetic/{r}/seed0/metrics.json" for r in RUNS]


def _snakemake_slurm(workdir: Path, *args: str, timeout: int = 900, check: bool = True, env: dict | None = None):
    return run([str(BIN / "snakemake"), "--profile", PROFILE, *FAST, *args], workdir, timeout=timeout, check=check,
               env=env)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = _tiny_grid(tmp_path_factory.mktemp("on-slurm"))
    t0 = time.perf_counter()
    proc = _snakemake_slurm(workdir)
    elapsed = time.perf_counter() - t0
    print(f"tiny translation grid (2 runs) to reports/index.html through SLURM: {elapsed:.1f}s")
    jobs = {rule: [_job_fields(i) for i in ids] for rule, ids in _slurm_jobs(proc.stdout + proc.stderr).items()}
    return workdir, proc, jobs


def test_slurm_profile_runs_the_pipeline_and_matches_a_local_run(slurm_run, tmp_path):
    workdir, proc, _ = slurm_run
    out = proc.stdout + proc.stderr
    assert "has been submitted with SLURM jobid" in out, out[-3000:]
    assert (workdir / "reports/index.html").stat().st_size > 0
    assert (workdir / "reports/notebooks/translation/synthetic.html").stat().st_size > 0
    # every rule ran as a SLURM job (only the target-only rule `all` is local)
    submitted = {line.split("rule ", 1)[1].rstrip(":") for line in out.splitlines() if line.startswith("rule ")}
    assert submitted == {"prepare", "train", "evaluate", "aggregate", "notebook", "report", "bench_attention"}, submitted
    local = _tiny_grid(tmp_path / "local")
    t0 = time.perf_counter()
    run([str(BIN / "snakemake"), *METRICS, "--cores", "2", "--resources", "gpu=1"], local)
    print(f"the same metrics locally: {time.perf_counter() - t0:.1f}s")
    for target in METRICS:
        assert json.loads((workdir / target).read_text())["bleu_signature"].startswith("nrefs:1|")
        assert (workdir / target).read_bytes() == (local / target).read_bytes(), target


def _slurm_jobs(output: str) -> dict[str, list[str]]:
    """rule -> SLURM job ids, from Snakemake's 'Job N has been submitted with SLURM jobid M (log: .../rule_X/...)'."""
    jobs: dict[str, list[str]] = {}
    for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output):
        jobs.setdefault(m.group(2), []).append(m.group(1))
    return jobs


def _job_fields(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def test_each_rule_got_the_profiles_partition_gpu_runtime_and_memory(slurm_run):
    workdir, proc, jobs = slurm_run
    assert set(jobs) == {"prepare", "train", "evaluate", "aggregate", "notebook", "report", "bench_attention"}, jobs
    assert len(jobs["train"]) == len(RUNS) and len(jobs["evaluate"]) == len(RUNS)
    prof = _profile()
    for rule, records in jobs.items():
        want = {**prof["default-resources"], **prof["set-resources"].get(rule, {})}
        for f in records:  # read with scontrol right after the run (finished jobs stay for MinJobAge)
            assert f["JobState"] == "COMPLETED", (rule, f)
            assert f["Partition"] == want["slurm_partition"], (rule, f)
            assert f["TimeLimit"] == f"{want['runtime'] // 60:02d}:{want['runtime'] % 60:02d}:00", (rule, f)
            assert f["MinMemoryNode"] == f"{want['mem_mb']}M", (rule, f)
            gpu = "gres/gpu=1" in f.get("TRES", "") or "gpu:1" in f.get("TresPerJob", "")
            assert gpu == bool(want.get("gpu")), (rule, f)


def test_a_failing_job_stops_snakemake_in_bounded_time_and_rerun_incomplete_finishes(slurm_run, tmp_path):
    workdir, _, _ = slurm_run
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["tasks"]["translation"]["runs"]["rnn-additive"]["options"]["attn_dim"] = 8
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # A node-side crash: `attnbench` on the jobs' PATH (sbatch --export=ALL) exits 1 for this run's training.
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "attnbench"
    wrapper.write_text("#!/bin/sh\n"
                       'case " $* " in *" train "*" --run rnn-additive "*) '
                       'echo "injected failure on $(hostname) in SLURM job $SLURM_JOB_ID" >&2; exit 1;; esac\n'
                       f'exec {BIN / "attnbench"} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{wrapper_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    t0 = time.perf_counter()
    failed = _snakemake_slurm(workdir, *METRICS, timeout=FAIL_BOUND_S, check=False, env=env)
    elapsed = time.perf_counter() - t0
    out = failed.stdout + failed.stderr
    print(f"failing job -> snakemake exit {failed.returncode} after {elapsed:.1f}s")
    assert failed.returncode != 0, out[-3000:]
    assert "Error in rule train" in out, out[-3000:]
    assert "injected failure" in (workdir / "logs/translation/synthetic/rnn-additive/seed0.train.log").read_text()
    assert out.count("Trying to restart job") == _profile()["retries"], out[-3000:]  # the profile's retries
    assert not (workdir / "data/results/translation/synthetic/rnn-additive/seed0/model.pt").exists()
    # the crash is gone (wrapper off the PATH): the same grid finishes
    done = _snakemake_slurm(workdir, "--rerun-incomplete", *METRICS, timeout=600)
    assert "Error" not in done.stdout + done.stderr
    metrics = json.loads((workdir / METRICS[0]).read_text())
    assert metrics["bleu_signature"].startswith("nrefs:1|")
    dry = run([str(BIN / "snakemake"), "--profile", PROFILE, "--dry-run", *METRICS], workdir)
    assert "Nothing to be done" in dry.stdout + dry.stderr
