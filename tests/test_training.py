"""The shared training loop: determinism, resume, early stopping, non-finite loss, checkpoint safety.

A toy regression task exercises the loop on its own (fast, in process); test_pipeline.py kills a
real translation job with SIGKILL.
"""
from __future__ import annotations

import csv
import sys
import zipfile

import pytest
import torch
from torch import nn

from attnbench.config import config_hash
from attnbench.tasks.base import Task
from attnbench.training import TrainingError, fit, load_checkpoint, load_trained


class Interrupt(Exception):
    pass


class ToyTask(Task):
    """y = x·w + noise; validation metric = -MSE. Optional hooks to break things."""

    name = "toy"
    valid_metric = "neg_mse"

    def __init__(self, interrupt_at=None, nan_at=None, plateau=False):
        self.interrupt_at, self.nan_at, self.plateau, self.epoch = interrupt_at, nan_at, plateau, 0
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(256, 1, generator=g)

    def build_model(self, cfg, data):
        return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))

    def batches(self, data, cfg, generator):
        self.epoch += 1
        if self.interrupt_at == self.epoch:
            raise Interrupt  # as if killed before this epoch finished
        perm = torch.randperm(256, generator=generator)
        for i in range(0, 256, 32):
            yield perm[i:i + 32]

    def loss(self, model, idx, device):
        loss = nn.functional.mse_loss(model(self.x[idx]), self.y[idx])
        if self.nan_at == self.epoch:
            loss = loss * float("nan")
        return loss, len(idx)

    def validate(self, model, data, cfg, device):
        if self.plateau:
            return 1.0
        with torch.no_grad():
            return -nn.functional.mse_loss(model(self.x), self.y).item()


def cfg(epochs=6, patience=10, seed=0, lr=0.01):
    return {"task": "toy", "run": "toy-run", "seed": seed, "size": {"epochs": epochs},
            "train": {"lr": lr, "weight_decay": 0.0, "clip_norm": 1.0, "patience": patience}}


CPU = torch.device("cpu")


def weights(path):
    return load_checkpoint(path)["model"]


def test_same_seed_gives_identical_weights_and_log(tmp_path):
    fit(ToyTask(), None, cfg(), tmp_path / "a", tmp_path / "a/state", CPU)
    fit(ToyTask(), None, cfg(), tmp_path / "b", tmp_path / "b/state", CPU)
    wa, wb = weights(tmp_path / "a/model.pt"), weights(tmp_path / "b/model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = lambda p: [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_s")}
                      for r in csv.DictReader(open(p / "train_log.csv"))]
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    fit(ToyTask(), None, cfg(seed=1), tmp_path / "c", tmp_path / "c/state", CPU)
    wc = weights(tmp_path / "c/model.pt")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_interrupted_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, caplog):
    fit(ToyTask(), None, cfg(), tmp_path / "ref", tmp_path / "ref/state", CPU)
    with pytest.raises(Interrupt):
        fit(ToyTask(interrupt_at=4), None, cfg(), tmp_path / "run", tmp_path / "run/state", CPU)
    assert load_checkpoint(tmp_path / "run/state/last.pt")["epoch"] == 3
    assert not (tmp_path / "run/model.pt").exists()
    caplog.set_level("INFO")
    task = ToyTask()
    fit(task, None, cfg(), tmp_path / "run", tmp_path / "run/state", CPU)
    assert "resuming" in caplog.text and task.epoch == 3, "only epochs 4..6 are trained again"
    ref, resumed = weights(tmp_path / "ref/model.pt"), weights(tmp_path / "run/model.pt")
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(tmp_path / "run/train_log.csv"))]
    assert epochs == [1, 2, 3, 4, 5, 6]


def test_early_stopping_on_a_flat_validation_metric(tmp_path):
    info = fit(ToyTask(plateau=True), None, cfg(epochs=20, patience=3), tmp_path, tmp_path / "state", CPU)
    assert info["epochs_trained"] == 4 and info["best_epoch"] == 1


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match=r"loss became nan or infinite at epoch 3, step 1.*epoch 2.*last.pt"):
        fit(ToyTask(nan_at=3), None, cfg(), tmp_path, tmp_path / "state", CPU)
    state = load_checkpoint(tmp_path / "state/last.pt")
    assert state["epoch"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "model.pt").exists()


def test_the_loop_reads_device_values_once_per_epoch_not_once_per_step(tmp_path, monkeypatch):
    """Every .item() / bool() of a device tensor makes the host wait for the GPU; the loop must not do it per
    step. Counted on CPU by wrapping the Tensor methods that read a value, when called from attnbench's code
    (torch's Adam reads its step counters, which it keeps on the CPU for this reason). 8 steps per epoch."""
    reads = {"n": 0}
    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            if "attnbench" in sys._getframe(1).f_code.co_filename:
                reads["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)

    class QuietToy(ToyTask):
        def validate(self, model, data, cfg, device):   # the toy's own metric read is not the loop's
            return 0.0

    fit(QuietToy(), None, cfg(epochs=3), tmp_path, tmp_path / "state", CPU, progress=False)
    monkeypatch.undo()
    assert reads["n"] <= 3 * 3, f"{reads['n']} reads of device values in 3 epochs of 8 steps"


def test_a_step_that_fails_after_a_non_finite_loss_reports_the_loss(tmp_path):
    """Checked once per epoch, a non-finite loss can make a later step fail first (sampling from NaN
    probabilities): the error still names the loss and the step where it went bad."""
    class Crashes(ToyTask):
        def loss(self, model, idx, device):
            loss, n = super().loss(model, idx, device)
            if self.epoch == 2 and not torch.isfinite(model[0].weight).all():
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
            return loss, n

    with pytest.raises(TrainingError, match=r"loss became nan or infinite at epoch 2, step 1") as err:
        fit(Crashes(nan_at=2), None, cfg(), tmp_path, tmp_path / "state", CPU)
    assert "probability tensor" in str(err.value.__cause__)


def test_truncated_checkpoint_is_named_and_training_restarts_from_scratch(tmp_path, caplog):
    fit(ToyTask(), None, cfg(epochs=2), tmp_path, tmp_path / "state", CPU)
    last = tmp_path / "state/last.pt"
    last.write_bytes(last.read_bytes()[:200])
    with pytest.raises(TrainingError, match="last.pt: unreadable checkpoint"):
        load_checkpoint(last)
    task = ToyTask()
    fit(task, None, cfg(epochs=2), tmp_path, tmp_path / "state", CPU)
    assert "unreadable checkpoint" in caplog.text and task.epoch == 2, "trained from epoch 1 again"
    assert (tmp_path / "state/last.corrupt").exists()


def test_checkpoint_of_another_configuration_is_not_resumed(tmp_path, caplog):
    with pytest.raises(Interrupt):
        fit(ToyTask(interrupt_at=3), None, cfg(lr=0.01), tmp_path, tmp_path / "state", CPU)
    caplog.set_level("INFO")
    task = ToyTask()
    fit(task, None, cfg(lr=0.02), tmp_path, tmp_path / "state", CPU)
    assert task.epoch == 6 and "belongs to another configuration" in caplog.text
    assert "'lr': 0.01" in caplog.text and "'lr': 0.02" in caplog.text


def test_checkpoint_with_an_older_optimizer_state_restarts_from_scratch(tmp_path, caplog):
    """A last.pt written before attnbench.optim.Adam holds torch.optim.Adam's state: not resumable, not a crash."""
    with pytest.raises(Interrupt):
        fit(ToyTask(interrupt_at=3), None, cfg(), tmp_path, tmp_path / "state", CPU)
    last = tmp_path / "state/last.pt"
    state = load_checkpoint(last)
    state["optimizer"] = torch.optim.Adam(ToyTask().build_model(None, None).parameters(), lr=0.01).state_dict()
    torch.save(state, last)
    task = ToyTask()
    fit(task, None, cfg(), tmp_path, tmp_path / "state", CPU)
    assert task.epoch == 6, "trained from epoch 1 again"
    assert "older attnbench" in caplog.text and (tmp_path / "state/last.stale").exists()


def test_weights_of_another_configuration_are_refused_naming_both(tmp_path):
    fit(ToyTask(), None, cfg(lr=0.01), tmp_path, tmp_path / "state", CPU)
    with pytest.raises(TrainingError, match=r"another configuration[\s\S]*'lr': 0.01[\s\S]*'lr': 0.02"):
        load_trained(ToyTask(), None, cfg(lr=0.02), tmp_path, CPU)
    model = load_trained(ToyTask(), None, cfg(lr=0.01), tmp_path, CPU)
    assert not model.training


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"config_hash": config_hash(cfg()), "model": {}, "evil": Payload()}, path)
    with pytest.raises(TrainingError, match="unreadable checkpoint.*Unpickl|unreadable checkpoint.*weights_only"):
        load_checkpoint(path)
    assert zipfile.is_zipfile(path)  # a real torch file, refused for what it carries


class WarmupTask(ToyTask):
    """A task with `warmup` warm-up epochs whose validation score is a tempting 100 during them."""

    def __init__(self, warmup, **kw):
        super().__init__(**kw)
        self.warmup, self.started = warmup, []

    def warmup_epochs(self, cfg):
        return self.warmup

    def start_epoch(self, model, cfg, epoch):
        self.started.append(epoch)

    def validate(self, model, data, cfg, device):
        epoch = self.started[-1]                   # the loop's epoch number, also after a resume
        return 100.0 if epoch <= self.warmup else 1.0 / epoch   # only worse after the warm-up


def test_warm_up_epochs_neither_pick_the_best_checkpoint_nor_use_up_the_patience(tmp_path):
    task = WarmupTask(3)
    info = fit(task, None, cfg(epochs=10, patience=2), tmp_path, tmp_path / "state", CPU)
    # epochs 1-3 warm-up, 4 the first that counts (best), 5 and 6 worse: stop after 6
    assert task.started == [1, 2, 3, 4, 5, 6]
    assert info["epochs_trained"] == 6 and info["best_epoch"] == 4 and info["best_valid"] == pytest.approx(0.25)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [r["best_valid"] for r in rows[:3]] == ["", "", ""] and float(rows[3]["best_valid"]) == 0.25
    # a warm-up as long as the run is cut to epochs - 1: the last epoch is the model
    info = fit(WarmupTask(10), None, cfg(epochs=3, patience=1), tmp_path / "b", tmp_path / "b/state", CPU)
    assert info["epochs_trained"] == 3 and info["best_epoch"] == 3


def test_a_run_resumed_inside_the_warm_up_gets_its_phase_from_the_epoch(tmp_path):
    fit(WarmupTask(3), None, cfg(epochs=6), tmp_path / "ref", tmp_path / "ref/state", CPU)
    with pytest.raises(Interrupt):
        fit(WarmupTask(3, interrupt_at=3), None, cfg(epochs=6), tmp_path / "run", tmp_path / "run/state", CPU)
    task = WarmupTask(3)
    info = fit(task, None, cfg(epochs=6), tmp_path / "run", tmp_path / "run/state", CPU)
    assert task.started == [3, 4, 5, 6] and info["best_epoch"] == 4 and info["best_valid"] == pytest.approx(0.25)
    ref, resumed = weights(tmp_path / "ref/model.pt"), weights(tmp_path / "run/model.pt")
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
