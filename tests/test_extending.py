"""Adding a task or a mechanism touches only its own files (README: "Extending").

Each test writes the new pieces into a temporary copy of the pipeline (never into the checkout) and
runs them the way a user would: the toy task through Snakemake and `dvc repro` to its report section,
the toy mechanism through translation's prepare/train/evaluate. The files each test writes are exactly
the ones the README lists.
"""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, ROOT, copy_pipeline, pipeline_outputs, run, shrink

# A task is one folder, src/attnbench/tasks/<task>/. Its minimal file set is the first file alone (plus its
# schema and its params.yaml section, outside the package); a task grown past it keeps these names:
TASK_FILES = {
    "__init__.py": "the Task: prepare, load, model wiring, loss, validation, evaluation (required)",
    "data.py": "its data: the embedded generator (with its ground truth) and the real-data readers",
    "report.py": "its report section: context(params, task, out_dir) -> dict",
    "report.html.j2": "the section's template (reads that dict as `t`)",
    "plots.py": "the section's own figures",
    "notebook.ipynb": "its papermill analysis notebook (else the generic one)",
}
MINIMAL_TASK_FILES = ("__init__.py",)
# modules a shipped task has beyond the shared names, each for a reason of its own
TASK_EXTRAS = {"translation": {"preprocess.py", "use.py"}, "intent": {"use.py"}, "load": {"headline.py"}}

TOY_TASK = '''
"""A toy task: is a point of the plane inside the unit circle? An attention pooling over its two
coordinates (treated as a sequence of two tokens) feeds a linear classifier."""
from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from ... import attention
from ... import io as aio
from .. import register
from ..base import Task


class Circle(nn.Module):
    def __init__(self, attention_name: str, options: dict, dim: int):
        super().__init__()
        self.embed = nn.Linear(1, dim)
        self.query = nn.Parameter(torch.randn(dim))
        self.attn = attention.build(attention_name, dim, dim, dim, **options)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2))

    def forward(self, x):
        keys = self.embed(x.unsqueeze(-1) ** 2)                    # [B, 2, dim]
        ctx, w = self.attn(self.query.expand(len(x), -1), keys, keys)
        return self.out(ctx), w


class ToyTask(Task):
    name = "toy"
    valid_metric = "accuracy"
    headline = "accuracy"
    metric_columns = ("accuracy", "parameters")

    def prepare(self, params, out_dir):
        section = params["tasks"]["toy"]
        size = section["scales"][params["scale"]]
        rng = np.random.default_rng(section["data"]["seed"])
        splits = {}
        for name in ("train", "valid", "test"):
            x = rng.uniform(-1.5, 1.5, size=(size[f"{name}_size"], 2)).astype(np.float32)
            splits[name] = x
        manifest = {"task": "toy", "dataset": params["dataset"], "sizes": {k: len(v) for k, v in splits.items()}}
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez(out_dir / "points.npz", **splits)
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared, cfg):
        with np.load(prepared / "points.npz") as z:
            return {k: torch.from_numpy(z[k]) for k in z.files}

    def build_model(self, cfg, data):
        return Circle(cfg["attention"], cfg["attention_options"], cfg["model_options"]["dim"])

    @staticmethod
    def _labels(x):
        return ((x ** 2).sum(1) < 1).long()

    def batches(self, data, cfg, generator):
        x = data["train"]
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), cfg["train"]["batch_size"]):
            yield x[order[i:i + cfg["train"]["batch_size"]]]

    def loss(self, model, batch, device):
        logits, _ = model(batch.to(device))
        return nn.functional.cross_entropy(logits, self._labels(batch).to(device)), len(batch)

    @torch.no_grad()
    def validate(self, model, data, cfg, device):
        logits, _ = model(data["valid"].to(device))
        return float((logits.argmax(1).cpu() == self._labels(data["valid"])).float().mean())

    @torch.no_grad()
    def evaluate(self, model, data, cfg, device, out_dir):
        x = data["test"]
        logits, w = model(x.to(device))
        pred = logits.argmax(1).cpu()
        np.savez(out_dir / "attention.npz", weights=w.cpu().numpy())
        (out_dir / "samples.jsonl").write_text("".join(json.dumps({"x": p.tolist(), "pred": int(y)}) + "\\n"
                                                       for p, y in zip(x[:5], pred[:5])))
        return {"accuracy": round(float((pred == self._labels(x)).float().mean()), 6)}


register(ToyTask())
'''

TOY_SCHEMA = '''
$schema: "https://json-schema.org/draft/2020-12/schema"
type: object
additionalProperties: false
required: [data, scales, train, eval, models, runs]
properties:
  data: {type: object, required: [seed], properties: {seed: {type: integer}}}
  scales: {type: object}
  train: {type: object}
  eval: {type: object}
  models: {type: object}
  runs: {type: object, minProperties: 1}
'''

TOY_SECTION = {
    "datasets": ["synthetic"],
    "dataset_options": {"synthetic": {}},
    "data": {"seed": 3},
    "scales": {s: {"train_size": 256, "valid_size": 64, "test_size": 64, "epochs": 2} for s in ("smoke", "default", "full")},
    "train": {"batch_size": 64, "lr": 0.01, "weight_decay": 0.0, "clip_norm": 1.0, "patience": 2},
    "eval": {},
    "models": {"circle": {"dim": 8}},
    "runs": {"circle-additive": {"model": "circle", "attention": "additive", "options": {"attn_dim": 8}},
             "circle-none": {"model": "circle", "attention": "none"}},
}


def _env(work: Path) -> dict:
    """The copy's package first on the path, for every process the tools start."""
    return {"PYTHONPATH": str(work / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _toy_copy(work: Path) -> list[str]:
    """A copy of the pipeline with the toy task added; returns the files written (relative to `work`)."""
    copy_pipeline(work)
    written = [f"src/attnbench/tasks/toy/{MINIMAL_TASK_FILES[0]}", "workflow/schemas/tasks/toy.schema.yaml", "params.yaml"]
    (work / written[0]).parent.mkdir(parents=True)
    (work / written[0]).write_text(textwrap.dedent(TOY_TASK))
    (work / written[1]).write_text(textwrap.dedent(TOY_SCHEMA))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["scale"] = "smoke"
    params["tasks"] = {"toy": TOY_SECTION}   # the toy task alone keeps the test short
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return written


@pytest.mark.slow
def test_a_new_task_is_its_module_schema_and_params_section(tmp_path):
    work = tmp_path / "snake"
    written = _toy_copy(work)
    differs = {p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file() and "__pycache__" not in p.parts
               and ROOT_FILES.get(p.relative_to(work).as_posix()) != p.read_bytes()}
    assert differs == set(written)   # the task's module, its schema and params.yaml: nothing else edited
    run([str(BIN / "attnbench"), "dvc-yaml", "--write"], work, env=_env(work))   # generated, never edited
    assert "train-toy" in (work / "dvc.yaml").read_text()
    run([str(BIN / "snakemake"), "--cores", "2", "--resources", "gpu=1"], work, timeout=900, env=_env(work))
    html = (work / "reports/index.html").read_text()
    assert 'id="toy"' in html and "circle-additive" in html and "circle-none" in html
    metrics = json.loads((work / "data/results/toy/synthetic/circle-additive/seed0/metrics.json").read_text())
    assert metrics["dataset"] == "synthetic" and 0.0 <= metrics["accuracy"] <= 1.0
    assert (work / "reports/notebooks/toy/synthetic.html").is_file()   # the generic notebook served it

    # the same DAG through DVC, in a second copy: the same output set
    dvc_work = tmp_path / "dvc"
    _toy_copy(dvc_work)
    (dvc_work / "dvc.yaml").write_text((work / "dvc.yaml").read_text())
    run(["git", "init", "-q"], dvc_work)
    run([str(BIN / "dvc"), "init", "-q"], dvc_work)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], dvc_work)
    run([str(BIN / "dvc"), "repro", "--quiet"], dvc_work, timeout=900, env=_env(dvc_work))
    assert 'id="toy"' in (dvc_work / "reports/index.html").read_text()
    assert pipeline_outputs(dvc_work) == pipeline_outputs(work)
    # a change to the optimizer (or the device data path) re-runs the training stages under DVC too
    for module in ("optim.py", "device_data.py"):
        path = dvc_work / "src/attnbench" / module
        original = path.read_text()
        path.write_text(original + "\n# touched\n")
        status = run([str(BIN / "dvc"), "status", "--json"], dvc_work, env=_env(dvc_work)).stdout
        assert "train-toy@synthetic-circle-additive-0" in json.loads(status), (module, status)
        path.write_text(original)


def test_every_task_is_one_folder_with_the_same_file_names():
    """What a task owns is in its folder, under the same names in every task; nothing of it is left in
    report/, workflow/notebooks/ or a sibling task."""
    package = ROOT / "src/attnbench"
    folders = sorted(p for p in (package / "tasks").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert len(folders) == 8
    for folder in folders:
        names = {p.name for p in folder.iterdir() if p.is_file()}
        assert set(TASK_FILES) <= names, (folder.name, sorted(set(TASK_FILES) - names))
        assert names - set(TASK_FILES) == TASK_EXTRAS.get(folder.name, set()), (folder.name, sorted(names))
        assert not (package / "report/sections" / f"{folder.name}.py").exists()
        assert not (package / "report/templates" / f"{folder.name}.html.j2").exists()
        assert not (package / "report" / f"plots_{folder.name}.py").exists()
        assert not (ROOT / "workflow/notebooks" / f"{folder.name}.ipynb").exists()
    # a task imports no sibling task (shared code lives in tasks/common.py, baselines/, models/)
    for folder in folders:
        for module in folder.glob("*.py"):
            text = module.read_text(encoding="utf-8")
            others = [f.name for f in folders if f != folder and (f"from ..{f.name}" in text or f"tasks.{f.name}" in text)]
            assert not others, (module, others)


def _checkout_files() -> dict[str, bytes]:
    from .conftest import PIPELINE_FILES, ROOT

    out = {}
    for name in PIPELINE_FILES:
        path = ROOT / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        out.update({p.relative_to(ROOT).as_posix(): p.read_bytes() for p in files})
    return out


ROOT_FILES = _checkout_files()

TOY_MECHANISM = '''
"""A toy mechanism: every query puts all of its weight on the first key."""
import torch

from .base import Attention, register


@register("toy_first")
class FirstKey(Attention):
    description = "all weight on the first key"

    def __init__(self, query_dim, key_dim, value_dim, sharpness: float = 50.0):
        super().__init__(query_dim, key_dim, value_dim)
        self.sharpness = sharpness

    def score(self, q, keys):
        scores = torch.zeros(q.shape[0], q.shape[1], keys.shape[1], device=q.device)
        scores[..., 0] = self.sharpness
        return scores
'''


def test_a_new_mechanism_is_one_file_and_a_run(tmp_path):
    work = tmp_path / "w"
    copy_pipeline(work)
    (work / "src/attnbench/attention/toy_first.py").write_text(textwrap.dedent(TOY_MECHANISM))
    params = shrink(yaml.safe_load((work / "params.yaml").read_text()))
    params["tasks"]["translation"]["runs"] = {"rnn-toy": {"model": "rnn", "attention": "toy_first",
                                                          "options": {"sharpness": 40.0}}}
    params["tasks"] = {"translation": params["tasks"]["translation"]}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cli = [str(BIN / "attnbench"), "-q"]
    for step in (["prepare", "--task", "translation"],
                 ["train", "--task", "translation", "--run", "rnn-toy", "--seed", "0"],
                 ["evaluate", "--task", "translation", "--run", "rnn-toy", "--seed", "0"]):
        run(cli + step, work, env=_env(work))
    run_dir = work / "data/results/translation/synthetic/rnn-toy/seed0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["attention"] == "toy_first"
    import numpy as np

    with np.load(run_dir / "attention.npz") as z:
        weights = [z[k] for k in z.files if k.startswith("attn_")]
    assert weights and all(w[:, 0].min() > 0.99 for w in weights)   # the toy's rule, so it really ran
    # its capabilities (the defaults) put it in translation's RNN grid; a mechanism that says it is not a
    # decoder step is refused there, naming the key
    (work / "src/attnbench/attention/toy_first.py").write_text(
        textwrap.dedent(TOY_MECHANISM).replace('    description =', '    decoder_step = False\n    description ='))
    proc = run(cli + ["validate"], work, env=_env(work), check=False)
    assert proc.returncode == 2 and "tasks.translation.runs.rnn-toy.attention" in proc.stderr
