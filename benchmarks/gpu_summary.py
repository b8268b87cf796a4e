"""Summarise a benchmarks/gpu.sh folder: one row per training run, read from the runs' own files.

usage: python benchmarks/gpu_summary.py OUT_DIR DEVICE SCALE

Reads OUT_DIR/logs/runs.jsonl (what gpu.sh ran, with its status), each run's train_info.json,
train_log.csv and metrics.json under data/results/, and OUT_DIR/gpu_samples.csv (nvidia-smi
samples labelled with the run); writes OUT_DIR/runs.csv and OUT_DIR/summary.json (the env, the
rows, the attention benchmark's file name if there is one). Run from the checkout's root.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from attnbench import paths

# the headline figures of an evaluated run, by task (what the report's leaderboards lead with)
HEADLINE = {"translation": ("bleu", "bleu_beam", "chrf")}


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _samples(out_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """run label -> [(GPU utilisation %, memory used MiB)], from nvidia-smi's CSV lines."""
    path = out_dir / "gpu_samples.csv"
    found: dict[str, list[tuple[float, float]]] = {}
    if not path.is_file():
        return found
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if len(row) != 4 or row[0] == "run":
                continue
            try:
                found.setdefault(row[0], []).append((float(row[2]), float(row[3])))
            except ValueError:   # a line cut when the sampler was stopped
                continue
    return found


def row_for(spec: dict, samples: dict) -> dict:
    run_dir = paths.run_dir(spec["task"], spec["dataset"], spec["run"], 0)
    info = json.loads((run_dir / "train_info.json").read_text()) if (run_dir / "train_info.json").is_file() else {}
    log = _read_log(run_dir / "train_log.csv")
    full = [r for r in log if r.get("seconds")]
    ex_s = [float(r["examples_per_s"]) for r in full if r.get("examples_per_s")]
    label = f'{spec["task"]}/{spec["dataset"]}/{spec["run"]}'
    util = [u for u, _ in samples.get(label, [])]
    row = {
        "task": spec["task"], "dataset": spec["dataset"], "run": spec["run"], "scale": spec["scale"],
        "status": spec["status"], "budget_minutes": spec["budget_minutes"],
        "epochs_trained": info.get("epochs_trained"), "stopped_by": info.get("stopped_by"),
        "seconds_first_epoch": float(full[0]["seconds"]) if full else None,
        "examples_per_s": round(max(ex_s), 1) if ex_s else None,   # the best epoch's rate (the first one pays warm-up)
        "tokens_per_s": info.get("tokens_per_s"),
        "train_seconds": info.get("train_seconds"), "process_wall_s": spec["process_wall_s"],
        "parameters": info.get("parameters"), "peak_gpu_memory_mib": info.get("peak_gpu_memory_mib"),
        "gpu_util_mean_pct": round(sum(util) / len(util), 1) if util else None,
        "gpu_util_max_pct": max(util) if util else None, "gpu_samples": len(util),
    }
    metrics_path = run_dir / "metrics.json"
    if spec.get("evaluated") and metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        for key in HEADLINE.get(spec["task"], ()):
            row[key] = metrics.get(key)
    return row


def main(out_dir: Path, device: str, scale: str) -> None:
    runs = [json.loads(line) for line in (out_dir / "logs" / "runs.jsonl").read_text().splitlines() if line.strip()]
    samples = _samples(out_dir)
    rows = [row_for(spec, samples) for spec in runs]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (out_dir / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    env_path = out_dir / "env.json"
    summary = {"device": device, "scale": scale, "env": json.loads(env_path.read_text()) if env_path.is_file() else {},
               "runs": rows, "attention_csv": "attention.csv" if (out_dir / "attention.csv").is_file() else None}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(rows)} run(s) -> {out_dir / 'runs.csv'}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
