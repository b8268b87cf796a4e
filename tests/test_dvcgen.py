"""dvc.yaml is generated (src/attnbench/dvcgen.py, `attnbench dvc-yaml`): the committed file is what the
generator writes, every training and evaluation stage depends on the modules training runs on, and a
module added to the package becomes a dependency without an edit."""
from __future__ import annotations

import difflib
from pathlib import Path, PurePosixPath

import yaml

from attnbench import cli, dvcgen
from attnbench.validation import load_params

from .conftest import ROOT, copy_pipeline

# modules every training run imports; an edit to either must re-run training under `dvc repro`
TRAINING_MODULES = ("src/attnbench/optim.py", "src/attnbench/device_data.py")


def _shipped() -> dict:
    return load_params(ROOT / "params.yaml")


def test_committed_dvc_yaml_is_what_the_generator_writes():
    want = dvcgen.render(_shipped())
    have = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    if have != want:
        diff = "".join(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "dvc.yaml (committed)",
                                            "dvc.yaml (generated)", n=1))
        raise AssertionError("dvc.yaml is stale: it differs from what params.yaml and src/attnbench describe. "
                             "Run `attnbench dvc-yaml --write` and commit the result.\n" + diff[:4000])


def test_the_cli_prints_and_writes_the_generated_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # --params defaults to ./params.yaml
    want = dvcgen.render(_shipped())
    assert cli.main(["-q", "dvc-yaml"]) == 0
    assert capsys.readouterr().out == want
    out = tmp_path / "dvc.yaml"
    assert cli.main(["-q", "dvc-yaml", "--write", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == want


def _covered(target: str, deps: list[str], root: Path) -> bool:
    """`target` is a dep itself or lies in a folder listed as one."""
    t = PurePosixPath(target)
    return any(t == PurePosixPath(d) or ((root / d).is_dir() and PurePosixPath(d) in t.parents) for d in deps)


def test_every_train_and_evaluate_stage_depends_on_optim_and_device_data():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    checked = [name for name in stages if name.startswith(("train-", "evaluate-"))]
    tasks = list(_shipped()["tasks"])
    assert sorted(checked) == sorted([f"train-{t}" for t in tasks] + [f"evaluate-{t}" for t in tasks])
    for name in checked:
        deps = stages[name].get("do", stages[name])["deps"]
        for module in TRAINING_MODULES:
            assert (ROOT / module).is_file(), module
            assert _covered(module, deps, ROOT), f"{name}: {module} is not among its deps {deps}"


def test_a_new_module_in_the_package_changes_the_rendered_deps(tmp_path):
    work = copy_pipeline(tmp_path / "repo")
    params = _shipped()
    before = dvcgen.render(params, root=work)
    assert before == dvcgen.render(params)  # the copy renders as the checkout does
    (work / "src/attnbench/newmodule.py").write_text('"""a module added after dvc.yaml was generated"""\n')
    after = dvcgen.render(params, root=work)
    assert after != before
    stages = yaml.safe_load(after)["stages"]
    for name, stage in stages.items():
        if name.startswith(("prepare-", "train-", "evaluate-", "aggregate-", "notebook-")) or name in (
                "bench-attention", "report"):
            assert "src/attnbench/newmodule.py" in stage["deps"], name
    assert "src/attnbench/newmodule.py" not in before


def test_a_tasks_report_files_rerun_the_report_steps_only():
    """A task's folder holds its report section, template and figures beside its data and model wiring:
    DVC's training stages depend on the latter only, as Snakemake's SRC/REPORT_SRC split does."""
    from attnbench import paths

    core, report = dvcgen.code_deps(ROOT)
    for task in ("ships", "translation"):
        assert f"src/attnbench/tasks/{task}/__init__.py" in core and f"src/attnbench/tasks/{task}/data.py" in core
        assert f"src/attnbench/tasks/{task}/report.py" in report and f"src/attnbench/tasks/{task}/report.html.j2" in report
        assert not [d for d in core if d.startswith(f"src/attnbench/tasks/{task}/report")]
    assert "src/attnbench/tasks/ships/plots.py" in report
    assert paths.is_report_code(Path("src/attnbench/tasks/ships/plots.py"))
    assert not paths.is_report_code(Path("src/attnbench/tasks/ships/data.py"))
    assert paths.is_report_code(Path("src/attnbench/report/plots.py"))
