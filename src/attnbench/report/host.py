"""The machine a report or a finding was made on: CPU model and count, NVIDIA GPUs and OS.

Standard library only (nvidia-smi is asked, torch is not imported), so the report's provenance and the
committed findings' read it without a package import between them.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict:
    """CPU model, logical CPU count, NVIDIA GPUs (by nvidia-smi, without importing torch) and OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus: list[str] = []
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            gpus = [g.strip() for g in done.stdout.splitlines() if g.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "gpus": gpus, "system": f"{platform.system()} {platform.release()}"}


def git(*args: str, where: Path | None = None) -> tuple[str | None, Path | None]:
    """(output, checkout) of a git command in the working directory, else in the package's checkout."""
    from ..config import REPO_ROOT

    for folder in ([where] if where else [Path.cwd(), REPO_ROOT]):
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None, None
        if done.returncode == 0:
            return done.stdout.strip(), folder
    return None, None
