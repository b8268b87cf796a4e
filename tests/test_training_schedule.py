"""The shared loop's optional train keys: a learning-rate schedule (`train.schedule`), a wall-clock budget
(`train.max_minutes`), and the tokens_per_s throughput of tasks that count source tokens.

The toy regression task of test_training.py drives the loop (8 batches an epoch); the budget tests run on a
fake clock that the task's steps advance, so they do not depend on this machine's speed.
"""
from __future__ import annotations

import csv
import json
import math
import types

import pytest
import torch

from attnbench import training
from attnbench.training import fit, load_checkpoint, scheduled_lr

from .test_training import CPU, Interrupt, ToyTask, cfg, weights

STEPS = 8   # ToyTask: 256 examples, batches of 32


def with_train(c: dict, **train) -> dict:
    c["train"].update(train)
    return c


def log_rows(run_dir) -> list[dict]:
    with open(run_dir / "train_log.csv") as fh:
        return list(csv.DictReader(fh))


def info(run_dir) -> dict:
    return json.loads((run_dir / "train_info.json").read_text())


@pytest.fixture
def lrs(monkeypatch) -> list[float]:
    """The learning rate of every optimizer step the loop takes."""
    seen: list[float] = []
    step = training.Adam.step

    def recording(self):
        seen.append(self.lr)
        return step(self)

    monkeypatch.setattr(training.Adam, "step", recording)
    return seen


# ---- the schedule itself ----------------------------------------------------------------------------
def test_warm_up_then_cosine_decay_to_the_min_lr_ratio():
    sched = {"kind": "cosine", "warmup_steps": 4, "min_lr_ratio": 0.1}
    got = [scheduled_lr(k, 20, 0.01, sched) for k in range(20)]
    assert got[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])          # linear warm-up up to lr
    assert got[4] == pytest.approx(0.01) and got[-1] == pytest.approx(0.001)  # lr after it, lr x 0.1 at the last step
    assert all(a > b for a, b in zip(got[4:], got[5:])), "strictly decreasing after the warm-up"
    assert got[9] == pytest.approx(0.001 + 0.009 * 0.75)   # a third of the decay: floor + (lr - floor) (1 + cos(pi/3)) / 2
    assert got[11] > 0.0055 > got[12]                       # half-way (step 11.5): the mean of lr and the floor
    assert scheduled_lr(25, 20, 0.01, sched) == pytest.approx(0.001)         # past the end: the floor


def test_linear_decay_constant_and_warm_up_fraction():
    lin = [scheduled_lr(k, 11, 1.0, {"kind": "linear", "min_lr_ratio": 0.5}) for k in range(11)]
    assert lin == pytest.approx([1 - 0.05 * k for k in range(11)])
    assert [scheduled_lr(k, 10, 0.3, None) for k in range(10)] == [0.3] * 10
    assert [scheduled_lr(k, 10, 0.3, {"kind": "constant"}) for k in range(10)] == [0.3] * 10
    frac = [scheduled_lr(k, 40, 1.0, {"kind": "constant", "warmup_fraction": 0.1}) for k in range(6)]
    assert frac == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])            # 10% of 40 steps: 4 warm-up steps
    with pytest.raises(training.TrainingError, match="not both"):
        scheduled_lr(0, 10, 1.0, {"warmup_steps": 2, "warmup_fraction": 0.1})


# ---- the schedule in the loop ------------------------------------------------------------------------
def test_no_schedule_keeps_the_configured_lr_on_every_step(tmp_path, lrs):
    fit(ToyTask(), None, cfg(epochs=3), tmp_path / "a", tmp_path / "a/state", CPU)
    assert lrs == [0.01] * 3 * STEPS
    rows = log_rows(tmp_path / "a")
    assert [r["lr"] for r in rows] == ["0.01"] * 3 and [r["steps"] for r in rows] == [str(STEPS)] * 3
    assert [r["tokens_per_s"] for r in rows] == [""] * 3, "the toy counts no tokens"
    # an explicit constant schedule trains the same weights (another config hash, the same arithmetic)
    fit(ToyTask(), None, with_train(cfg(epochs=3), schedule={"kind": "constant"}), tmp_path / "b",
        tmp_path / "b/state", CPU)
    wa, wb = weights(tmp_path / "a/model.pt"), weights(tmp_path / "b/model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("task_counts", [False, True], ids=["counted-from-first-epoch", "steps_per_epoch-hook"])
def test_the_loop_sets_the_scheduled_lr_before_each_step_and_logs_it(tmp_path, lrs, task_counts):
    class Toy(ToyTask):
        def steps_per_epoch(self, data, cfg):
            return STEPS if task_counts else None

    sched = {"kind": "cosine", "warmup_steps": 5, "min_lr_ratio": 0.2}
    fit(Toy(), None, with_train(cfg(epochs=3), schedule=sched), tmp_path, tmp_path / "state", CPU)
    expected = [scheduled_lr(k, 3 * STEPS, 0.01, sched) for k in range(3 * STEPS)]
    assert lrs == expected
    assert lrs[0] == pytest.approx(0.002) and lrs[4] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.002)
    rows = log_rows(tmp_path)
    assert [float(r["lr"]) for r in rows] == [expected[STEPS - 1], expected[2 * STEPS - 1], expected[-1]]
    assert load_checkpoint(tmp_path / "state/last.pt")["steps"] == 3 * STEPS


def test_a_run_resumed_mid_schedule_gets_the_same_rates_and_weights(tmp_path, lrs):
    c = lambda: with_train(cfg(epochs=6), schedule={"kind": "linear", "warmup_fraction": 0.2, "min_lr_ratio": 0.05})
    fit(ToyTask(), None, c(), tmp_path / "ref", tmp_path / "ref/state", CPU)
    ref_lrs = list(lrs)
    lrs.clear()
    with pytest.raises(Interrupt):
        fit(ToyTask(interrupt_at=4), None, c(), tmp_path / "run", tmp_path / "run/state", CPU)
    assert lrs == ref_lrs[:3 * STEPS]
    lrs.clear()
    task = ToyTask()
    fit(task, None, c(), tmp_path / "run", tmp_path / "run/state", CPU)
    assert task.epoch == 3, "epochs 4..6 only"
    assert lrs == ref_lrs[3 * STEPS:], "the schedule goes on from the step count in the checkpoint"
    ref, resumed = weights(tmp_path / "ref/model.pt"), weights(tmp_path / "run/model.pt")
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    assert [r["lr"] for r in log_rows(tmp_path / "ref")] == [r["lr"] for r in log_rows(tmp_path / "run")]


# ---- the time budget ---------------------------------------------------------------------------------
class Clock:
    """A fake time.perf_counter for the loop: each training step takes 1 s, each validation `valid_s`."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=c.perf_counter))
    return c


class TimedToy(ToyTask):
    """Steps of 1 s on the fake clock; the validation score gets worse after epoch `best_at`."""

    def __init__(self, clock, valid_s=0.0, best_at=1, **kw):
        super().__init__(**kw)
        self.clock, self.valid_s, self.best_at = clock, valid_s, best_at

    def loss(self, model, idx, device):
        self.clock.now += 1.0
        return super().loss(model, idx, device)

    def validate(self, model, data, cfg, device):
        self.clock.now += self.valid_s
        return -abs(self.epoch - self.best_at)


def test_the_budget_cuts_an_epoch_validates_it_and_keeps_the_best_checkpoint(tmp_path, clock):
    # 12 s: epoch 1 takes 8 steps (8 s), epoch 2 is cut after 4 steps; epoch 1 stays the best
    c = with_train(cfg(epochs=10), max_minutes=0.2)
    result = fit(TimedToy(clock), None, c, tmp_path, tmp_path / "state", CPU)
    rows = log_rows(tmp_path)
    assert [int(r["steps"]) for r in rows] == [STEPS, 4], "the last, partial epoch is validated and logged"
    assert [float(r["valid_metric"]) for r in rows] == [0.0, -1.0]
    assert result["stopped_by"] == "time budget" and result["best_epoch"] == 1 and result["epochs_trained"] == 2
    saved = info(tmp_path)
    assert saved["stopped_by"] == "time budget" and saved["max_minutes"] == 0.2 and saved["train_minutes"] == 0.2
    state = load_checkpoint(tmp_path / "state/last.pt")
    kept = weights(tmp_path / "model.pt")
    assert all(torch.equal(kept[k], state["best_model"][k]) for k in kept), "model.pt: the best epoch's weights"
    assert not all(torch.equal(kept[k], state["model"][k]) for k in kept)
    # the job run again: nothing more to train, the same stop recorded
    task = TimedToy(clock)
    assert fit(task, None, c, tmp_path, tmp_path / "state", CPU)["stopped_by"] == "time budget" and task.epoch == 0


def test_an_epoch_whose_validation_ends_past_the_budget_is_the_last(tmp_path, clock):
    c = with_train(cfg(epochs=10), max_minutes=0.2)        # 12 s; epoch 1: 8 s of steps + 5 s of validation
    result = fit(TimedToy(clock, valid_s=5.0), None, c, tmp_path, tmp_path / "state", CPU)
    assert [int(r["steps"]) for r in log_rows(tmp_path)] == [STEPS]
    assert result["stopped_by"] == "time budget" and info(tmp_path)["train_minutes"] == pytest.approx(13 / 60, abs=1e-3)


def test_a_resumed_run_counts_the_time_already_spent(tmp_path, clock):
    c = with_train(cfg(epochs=10), max_minutes=0.2)
    with pytest.raises(Interrupt):
        fit(TimedToy(clock, interrupt_at=2), None, c, tmp_path, tmp_path / "state", CPU)
    clock.now = 1000.0                                       # another process, another clock: only `elapsed` counts
    fit(TimedToy(clock), None, c, tmp_path, tmp_path / "state", CPU)
    assert [int(r["steps"]) for r in log_rows(tmp_path)] == [STEPS, 4] and info(tmp_path)["stopped_by"] == "time budget"


def test_without_a_budget_the_stop_is_epochs_or_patience(tmp_path):
    assert fit(ToyTask(), None, cfg(epochs=2), tmp_path / "a", tmp_path / "a/state", CPU)["stopped_by"] == "epochs"
    assert info(tmp_path / "a")["max_minutes"] is None
    got = fit(ToyTask(plateau=True), None, cfg(epochs=20, patience=3), tmp_path / "b", tmp_path / "b/state", CPU)
    assert got["stopped_by"] == "patience" and got["epochs_trained"] == 4


# ---- throughput in tokens ----------------------------------------------------------------------------
def test_translation_logs_source_tokens_per_second(tmp_path, tiny_params):
    from attnbench.config import resolve_run
    from attnbench.tasks.translation import Translation

    task = Translation()
    task.prepare(tiny_params, tmp_path / "prepared")
    c = resolve_run(tiny_params, "translation", "rnn-dot", 0)
    data = task.load(tmp_path / "prepared", c)
    batch = data.batch("train", [0, 1, 2])
    n_tokens = sum(len(data.pairs["train"][i].src) + 1 for i in range(3))   # each sentence + </s>, no padding
    assert int(task.source_tokens(batch)) == n_tokens and batch["src"].numel() > n_tokens
    assert task.steps_per_epoch(data, c) == sum(1 for _ in task.batches(data, c, torch.Generator().manual_seed(0)))

    result = task.fit(data, c, tmp_path / "run", tmp_path / "state", CPU)
    rows = log_rows(tmp_path / "run")
    all_tokens = sum(len(p.src) + 1 for p in data.pairs["train"])
    for r in rows:
        tok_s, ex_s = float(r["tokens_per_s"]), float(r["examples_per_s"])
        # the same seconds as examples_per_s: their ratio is the mean source length (rounding aside)
        assert tok_s / ex_s == pytest.approx(all_tokens / len(data.pairs["train"]), rel=0.02)
    # the run's figure is every epoch's tokens over every epoch's seconds (a short cut epoch weighs what it lasted)
    seconds = [float(r["seconds"]) for r in rows]
    assert result["tokens_per_s"] == pytest.approx(
        sum(float(r["tokens_per_s"]) * s for r, s in zip(rows, seconds)) / sum(seconds), rel=1e-3)
    assert math.isfinite(info(tmp_path / "run")["tokens_per_s"])
