"""Set-up stays true: exact pins, conda and pip agree, CI runs the README's test command."""
from __future__ import annotations

import re

import yaml

from .conftest import ROOT


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert m, f"not an exact pin: {line!r}"
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_every_requirement_is_an_exact_pin_and_torch_is_2_13_0():
    pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert pins["torch"] == "2.13.0"
    for name in ("snakemake", "dvc", "papermill", "sacrebleu", "scikit-learn", "seaborn", "jinja2", "tqdm", "nbconvert"):
        assert name in pins, name


def test_environment_yml_agrees_with_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins, pip_pins = _pins(pip_section), _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert conda_pins, "environment.yml pins nothing"
    for name, version in conda_pins.items():
        assert pip_pins.get(name) == version, f"{name}: environment.yml {version} vs requirements.txt {pip_pins.get(name)}"
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci/run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]
    assert "make test" in readme and "make report" in readme
