"""The report's CPU-and-GPU view reads benchmarks/gpu.sh's summary files and lines the devices up per run."""
from __future__ import annotations

import json

from attnbench.report import hardware


def _summary(folder, device, runs, **env):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"device": device, "scale": "full", "env": env, "runs": runs}))


def _run(run, rate, **more):
    return {"task": "intent", "dataset": "synthetic", "run": run, "status": "ok", "examples_per_s": rate,
            "budget_minutes": 0.3, **more}


def test_devices_side_by_side_with_speedup_over_the_cpu(tmp_path):
    results = tmp_path / "results"
    _summary(results / "h200", "cuda", [_run("bert", 5000.0, peak_gpu_memory_mib=812.4, gpu_util_mean_pct=41.0),
                                        _run("lstm", 900.0)], gpu="NVIDIA H200")
    _summary(results / "cpu", "cpu", [_run("bert", 250.0), {**_run("lstm", None), "status": "train failed (124)"}],
             cpu_count=2)
    (results / "broken").mkdir()
    (results / "broken" / "summary.json").write_text("{not json")
    ctx = hardware.context(tmp_path, results)
    assert ctx["has_results"] and [d["device"] for d in ctx["devices"]] == ["cpu", "cuda"]   # CPU first
    assert ctx["devices"][1]["label"] == "NVIDIA H200" and "2 cores" in ctx["devices"][0]["label"]
    bert, lstm = ctx["rows"]
    assert (bert["run"], lstm["run"]) == ("bert", "lstm")
    cpu, gpu = bert["cells"]
    assert cpu["rate"] == "250" and gpu["rate"] == "5,000" and gpu["speedup"] == "20.0×" and cpu["speedup"] == ""
    assert gpu["memory"] == "812" and gpu["util"] == "41"
    assert not lstm["cells"][0]["ok"] and lstm["cells"][0]["status"] == "train failed (124)"
    assert lstm["cells"][1]["speedup"] == ""   # no CPU figure to divide by


def test_no_summary_files_says_how_to_make_them(tmp_path):
    ctx = hardware.context(tmp_path, tmp_path / "nothing")
    assert not ctx["has_results"] and ctx["command"] == "benchmarks/gpu.sh"


def test_the_report_template_draws_the_view(tmp_path):
    from attnbench.report import environment

    _summary(tmp_path / "r" / "cpu", "cpu", [_run("bert", 250.0, bleu=None)], cpu_count=2)
    _summary(tmp_path / "r" / "gpu", "cuda", [_run("bert", 5000.0)], gpu="NVIDIA H200")
    html = environment().get_template("_hardware.html.j2").render(h=hardware.context(tmp_path, tmp_path / "r"))
    assert "NVIDIA H200 examples/s" in html and "20.0×" in html and "5,000" in html
