"""Ships' deep-first task partitioning (run option deep_first_epochs): during the warm-up only the
deep net learns, afterwards both; the real loop neither stops inside the warm-up nor keeps a model
whose shallow net never trained; the option is refused where it means nothing."""
from __future__ import annotations

import jsonschema
import pytest
import torch

from attnbench.config import ParamsError, resolve_run
from attnbench.validation import load_params, validate
from attnbench.models.segmenter import TaskPartition
from attnbench.tasks.ships import Ships
from attnbench.training import fit, load_checkpoint

from .conftest import ROOT

CPU = torch.device("cpu")


def _params(k: int, epochs: int = 4, patience: int = 1) -> dict:
    params = load_params(ROOT / "params.yaml")
    params["scale"] = "smoke"
    s = params["tasks"]["ships"]
    s["scales"]["smoke"] = {"size": 16, "train_size": 24, "valid_size": 8, "test_size": 8, "epochs": epochs}
    s["models"]["partition"] = {"deep": {"widths": [4, 4, 8], "convs": 1, "skips": False},
                                "shallow": {"width": 4, "layers": 2}}
    s["train"]["patience"] = patience
    s["runs"]["task-partition"]["options"] = {**s["runs"]["task-partition"].get("options", {}), "deep_first_epochs": k}
    return params


def _snapshot(model: torch.nn.Module, part: str) -> dict:
    return {k: v.detach().clone() for k, v in getattr(model, part).state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


class Spy(Ships):
    """The real ships task, remembering both nets' weights at the start of every epoch."""

    def __init__(self) -> None:
        self.at: dict[int, dict] = {}

    def start_epoch(self, model, cfg, epoch):
        self.at[epoch] = {"deep": _snapshot(model, "deep"), "shallow": _snapshot(model, "shallow")}
        super().start_epoch(model, cfg, epoch)


def _tail(tmp_path, part, path="state/last.pt"):
    """One net's weights in a checkpoint (the last epoch's, or the kept model's)."""
    weights = load_checkpoint(tmp_path / path)["model"]
    return {k[len(part) + 1:]: v for k, v in weights.items() if k.startswith(part + ".")}


@pytest.fixture
def prepared(tmp_path):
    params = _params(2)
    Ships().prepare(params, tmp_path / "prepared")
    return tmp_path / "prepared"


def test_deep_first_trains_only_the_deep_net_in_the_warm_up_then_both(tmp_path, prepared):
    params = _params(2, epochs=4, patience=1)
    cfg = resolve_run(params, "ships", "task-partition", 0)
    task = Spy()
    assert task.warmup_epochs(cfg) == 2
    data = task.load(prepared, cfg)
    info = fit(task, data, cfg, tmp_path / "run", tmp_path / "state", CPU, progress=False)
    at = task.at
    for e in (1, 2):   # warm-up epochs: the deep net moves, the shallow net (weights and BatchNorm stats) does not
        assert not _same(at[e]["deep"], at[e + 1]["deep"]) and _same(at[e]["shallow"], at[e + 1]["shallow"])
    final_shallow, final_deep = _tail(tmp_path, "shallow"), _tail(tmp_path, "deep")   # after epoch 3: both moved
    assert not _same(at[3]["shallow"], final_shallow) and not _same(at[3]["deep"], final_deep)
    # patience 1: the loop would have stopped after epoch 2 had the warm-up counted; the kept model is
    # one whose shallow net trained
    assert info["epochs_trained"] >= 3 and info["best_epoch"] >= 3
    assert not _same(at[1]["shallow"], _tail(tmp_path, "shallow", "run/model.pt"))


def test_without_the_option_both_nets_train_from_the_first_epoch(tmp_path, prepared):
    params = _params(0, epochs=1)
    params["tasks"]["ships"]["runs"]["task-partition"]["options"].pop("deep_first_epochs")
    cfg = resolve_run(params, "ships", "task-partition", 0)
    task = Spy()
    assert task.warmup_epochs(cfg) == 0
    fit(task, task.load(prepared, cfg), cfg, tmp_path / "run", tmp_path / "state", CPU, progress=False)
    assert not _same(task.at[1]["shallow"], _tail(tmp_path, "shallow"))
    assert not _same(task.at[1]["deep"], _tail(tmp_path, "deep"))


def test_warm_up_loss_is_the_deep_nets_four_class_loss_alone():
    torch.manual_seed(0)
    task = Ships()
    cfg = resolve_run(_params(3), "ships", "task-partition", 0)
    model = task._build(cfg)
    assert isinstance(model, TaskPartition)
    model._class_weights, model._pos_weight = torch.ones(4), torch.tensor(3.0)
    batch = {"x": torch.randn(2, 3, 16, 16), "y": torch.randint(0, 4, (2, 16, 16))}
    task.start_epoch(model, cfg, 3)
    warm, _ = task.loss(model, batch, CPU)
    deep_only = torch.nn.functional.cross_entropy(model.deep(batch["x"])[0], batch["y"], weight=torch.ones(4))
    torch.testing.assert_close(warm, deep_only)
    task.start_epoch(model, cfg, 4)
    both, _ = task.loss(model, batch, CPU)
    both.backward()
    assert any(p.grad is not None and p.grad.any() for p in model.shallow.parameters())


def test_deep_first_is_refused_outside_partition_runs_and_must_be_a_count():
    params = _params(2)
    validate(params)
    params["tasks"]["ships"]["runs"]["shallow"]["options"] = {"deep_first_epochs": 2}
    with pytest.raises(ParamsError, match=r"tasks\.ships\.runs\.shallow\.options\.deep_first_epochs: not allowed "
                                          r"for model 'shallow'"):
        validate(params)
    params = _params(-1)
    with pytest.raises((ParamsError, jsonschema.ValidationError), match=r"deep_first_epochs"):
        validate(params)
