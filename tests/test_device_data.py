"""Data loading for the GPU (device_data.py): batches copied one step ahead, small data sets resident.

On the CPU both are no-ops (checked here; tests/test_training.py checks byte-identical CPU runs).
The prefetcher's order and structure logic runs on the CPU with the copy function injected; the
CUDA copies themselves, and training with resident data, only where a GPU is visible.
"""
from __future__ import annotations

import csv
import logging
import math
from collections import namedtuple
from types import SimpleNamespace

import pytest
import torch

from attnbench import device_data
from attnbench.device_data import (RESIDENT_CAP, _prefetch, fits_on_device, make_resident, map_tensors, prefetch,
                                   resident_budget)
from attnbench.tasks.glimpse import GlimpseTask
from attnbench.tasks.recsys import Recsys
from attnbench.tasks.ships import Ships

from .test_training import ToyTask, cfg as toy_cfg

GiB = 1024 ** 3
CPU = torch.device("cpu")
Pair = namedtuple("Pair", "x y")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _batches():
    """One batch of each shape a task yields: tuple, dict, nested with non-tensor entries, namedtuple, list."""
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(4, 3, generator=g), torch.arange(4)),
        {"x": torch.randn(2, 5, generator=g), "y": torch.tensor([1, 0])},
        {"src": (torch.arange(6).view(2, 3), [torch.ones(2), "a note", 7]), "lengths": [3, 2], "meta": None},
        Pair(torch.randn(3, generator=g), torch.zeros(3, dtype=torch.long)),
        [torch.full((2,), 5.0), 1.5],
    ]


def _same(a, b) -> bool:
    """Equal values and the same structure (container types, keys, non-tensor entries)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ---- the prefetcher ---------------------------------------------------------------------------
def test_map_tensors_keeps_the_structure_and_passes_non_tensors_through():
    for batch in _batches():
        out = map_tensors(batch, lambda t: t * 2)
        assert _same(out, map_tensors(batch, lambda t: t + t))
        assert not _same(out, batch)   # every tensor went through fn
        assert _same(map_tensors(batch, lambda t: t), batch)
    nested = _batches()[2]
    out = map_tensors(nested, torch.clone)
    assert out["src"][1][1] == "a note" and out["src"][1][2] == 7 and out["lengths"] == [3, 2] and out["meta"] is None
    assert isinstance(map_tensors(_batches()[3], torch.clone), Pair)


def test_prefetch_yields_every_batch_in_order_with_the_copy_started_one_batch_ahead():
    events = []
    source = _batches()

    def make():
        for i, batch in enumerate(source):
            events.append(("made", i))
            yield batch

    def start(batch):
        i = next(k for k, b in enumerate(source) if b is batch)
        events.append(("start", i))
        return i, map_tensors(batch, torch.clone)

    def finish(started):
        i, moved = started
        events.append(("finish", i))
        return moved

    got = []
    for k, batch in enumerate(_prefetch(make(), start, finish)):
        events.append(("yield", k))
        got.append(batch)
        if k + 1 < len(source):   # batch k+1 was already built and its copy started when batch k arrived
            assert ("start", k + 1) in events
        assert ("start", k + 2) not in events   # but no further than one ahead
    assert len(got) == len(source) and all(_same(a, b) for a, b in zip(got, source))
    assert all(a is not b for a, b in zip(got, source))   # the copies, not the host batches
    n = len(source)
    expected = [("made", 0), ("start", 0)]
    for k in range(n):
        if k + 1 < n:
            expected += [("made", k + 1), ("start", k + 1)]
        expected += [("finish", k), ("yield", k)]
    assert events == expected


@pytest.mark.parametrize("n", [0, 1])
def test_prefetch_of_an_empty_or_single_batch_epoch(n):
    source = _batches()[:n]
    calls = []
    out = list(_prefetch(iter(source), lambda b: calls.append("start") or b, lambda b: calls.append("finish") or b))
    assert out == source and calls == ["start", "finish"] * n


def test_on_the_cpu_prefetch_returns_the_batches_themselves():
    source = _batches()
    assert prefetch(source, CPU) is source
    assert prefetch(source, "cpu") is source
    gen = iter(source)
    assert prefetch(gen, CPU) is gen
    assert all(a is b for a, b in zip(prefetch(source, CPU), source))


# ---- residency ------------------------------------------------------------------------------
def test_resident_budget_is_a_share_of_free_memory_capped():
    assert RESIDENT_CAP == 2 * GiB
    assert resident_budget(4 * GiB) == GiB                # a quarter of the free memory ...
    assert resident_budget(8 * GiB) == 2 * GiB
    assert resident_budget(80 * GiB) == RESIDENT_CAP      # ... never more than the cap
    assert resident_budget(0) == 0


def test_fits_on_device_is_false_on_the_cpu_and_follows_the_budget_on_cuda(monkeypatch):
    for nbytes in (0, 1, GiB):
        assert not fits_on_device(nbytes, CPU) and not fits_on_device(nbytes, "cpu")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * GiB, 80 * GiB))
    assert fits_on_device(GiB, torch.device("cuda")) and not fits_on_device(GiB + 1, "cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * GiB, 80 * GiB))
    assert fits_on_device(2 * GiB, "cuda") and not fits_on_device(2 * GiB + 1, "cuda")


def _recsys_data():
    return SimpleNamespace(x={s: torch.zeros(10 * (i + 1), 4, dtype=torch.long) for i, s in enumerate(("train", "valid", "test"))},
                           y={s: torch.zeros(10 * (i + 1)) for i, s in enumerate(("train", "valid", "test"))})


def _glimpse_data(variant):
    return SimpleNamespace(variant=variant, x={s: torch.zeros(6, 1, 8, 8) for s in ("train", "valid", "test")},
                           y={s: torch.zeros(6, dtype=torch.long) for s in ("train", "valid", "test")})


def _ships_data():
    return SimpleNamespace(images={s: torch.zeros(3, 8, 8, 3, dtype=torch.uint8) for s in ("train", "valid", "test")},
                           masks={s: torch.zeros(3, 8, 8, dtype=torch.long) for s in ("train", "valid", "test")})


def _tensors(data):
    return {(name, k): t for name, table in vars(data).items() if isinstance(table, dict) for k, t in table.items()}


@pytest.mark.parametrize("task, data", [(Recsys(), _recsys_data()), (GlimpseTask(), _glimpse_data("centred")),
                                        (GlimpseTask(), _glimpse_data("cluttered")), (Ships(), _ships_data())])
def test_on_the_cpu_the_hook_moves_nothing(task, data):
    before = _tensors(data)
    assert task.keep_on_device(data, CPU) == 0
    assert all(before[k] is t for k, t in _tensors(data).items())


@pytest.mark.parametrize("task, data", [(Recsys(), _recsys_data()), (GlimpseTask(), _glimpse_data("centred")),
                                        (Ships(), _ships_data())])
def test_where_the_data_fits_the_hook_moves_all_its_fixed_tensors(task, data, monkeypatch):
    # the meta device stands in for a GPU: moving there changes a tensor's device and nothing else
    monkeypatch.setattr(device_data, "fits_on_device", lambda nbytes, device: True)
    before = _tensors(data)
    assert task.keep_on_device(data, torch.device("meta")) == sum(t.nbytes for t in before.values())
    assert all(t.is_meta for t in _tensors(data).values())
    assert task.keep_on_device(data, torch.device("meta")) == 0   # already there


def test_glimpse_cluttered_keeps_its_training_canvases_on_the_host(monkeypatch):
    monkeypatch.setattr(device_data, "fits_on_device", lambda nbytes, device: True)
    data = _glimpse_data("cluttered")
    before = _tensors(data)
    moved = GlimpseTask().keep_on_device(data, torch.device("meta"))
    assert moved == sum(t.nbytes for (_, split), t in before.items() if split != "train")
    assert {k for k, t in _tensors(data).items() if t.is_meta} == {(n, s) for n in ("x", "y") for s in ("valid", "test")}


def test_data_that_does_not_fit_stays_where_it_is(monkeypatch):
    asked = []
    monkeypatch.setattr(device_data, "fits_on_device", lambda nbytes, device: asked.append(nbytes) or False)
    data = _recsys_data()
    before = _tensors(data)
    assert make_resident(torch.device("meta"), (data.x, data.y)) == 0
    assert asked == [sum(t.nbytes for t in before.values())]   # all or nothing: one decision for the whole data
    assert all(before[k] is t for k, t in _tensors(data).items())


# ---- the training loop ---------------------------------------------------------------------
class ResidentToy(ToyTask):
    """The toy task with a hook that reports 3 MB moved, and a record of the calls."""

    def __init__(self):
        super().__init__()
        self.hook_calls = []

    def keep_on_device(self, data, device):
        self.hook_calls.append(device)
        return 3 * 2 ** 20


def test_fit_calls_the_hook_once_logs_the_resident_bytes_and_prefetches_every_epoch(tmp_path, monkeypatch, caplog):
    from attnbench import training

    seen = []
    monkeypatch.setattr(training, "prefetch", lambda batches, device: seen.append(device) or prefetch(batches, device))
    task = ResidentToy()
    with caplog.at_level(logging.INFO, logger="attnbench.train"):
        training.fit(task, None, toy_cfg(epochs=3), tmp_path, tmp_path / "state", CPU, progress=False)
    assert task.hook_calls == [CPU] and seen == [CPU] * 3
    assert any("3.0 MB of data resident on cpu" in r.getMessage() for r in caplog.records)


def test_fit_logs_nothing_when_nothing_became_resident(tmp_path, caplog):
    from attnbench import training

    with caplog.at_level(logging.INFO, logger="attnbench.train"):
        training.fit(ToyTask(), None, toy_cfg(epochs=2), tmp_path, tmp_path / "state", CPU, progress=False)
    assert not any("resident" in r.getMessage() for r in caplog.records)


# ---- on a GPU ---------------------------------------------------------------------------------
@needs_cuda
def test_cuda_prefetch_moves_every_tensor_keeps_values_and_passes_device_tensors_through():
    cuda = torch.device("cuda")
    already = torch.arange(3, device=cuda)
    source = _batches() + [{"on_device": already, "host": torch.ones(2)}]
    got = list(prefetch(iter(source), cuda))
    assert len(got) == len(source)
    devices = []
    for host, dev in zip(source, got):
        assert _same(map_tensors(dev, lambda t: t.cpu()), map_tensors(host, lambda t: t.cpu()))
        map_tensors(dev, lambda t: devices.append(t.device.type))
    assert devices and set(devices) == {"cuda"}
    assert got[-1]["on_device"] is already


def _recsys_run(tmp_path):
    from attnbench.config import resolve_run

    from .test_recsys_cli import _tiny

    params = _tiny(runs=("afm",))
    task = Recsys()
    task.prepare(params, tmp_path / "prepared")
    return task, resolve_run(params, "recsys", "afm", 0), ("x", "y")


def _glimpse_run(tmp_path):
    from attnbench.config import resolve_run

    from .test_glimpse import _tiny

    params = _tiny(runs=("cnn-centred",))
    task = GlimpseTask()
    task.prepare(params, tmp_path / "prepared")
    return task, resolve_run(params, "glimpse", "cnn-centred", 0), ("x", "y")


def _ships_run(tmp_path):
    from attnbench.config import resolve_run

    from .test_ships_deep_first import _params

    params = _params(0, epochs=2)
    task = Ships()
    task.prepare(params, tmp_path / "prepared")
    return task, resolve_run(params, "ships", "task-partition", 0), ("images", "masks")


@needs_cuda
@pytest.mark.parametrize("make", [_recsys_run, _glimpse_run, _ships_run])
def test_cuda_training_and_evaluation_with_the_data_resident(make, tmp_path):
    cuda = torch.device("cuda")
    task, cfg, tables = make(tmp_path)
    data = task.load(tmp_path / "prepared", cfg)
    info = task.fit(data, cfg, tmp_path / "run", tmp_path / "state", cuda)
    for name in tables:
        assert all(t.is_cuda for t in getattr(data, name).values()), name
    with open(tmp_path / "run" / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == info["epochs_trained"] >= 1 and info["device"] == "cuda"
    assert all(math.isfinite(float(r["train_loss"])) and math.isfinite(float(r["valid_metric"])) for r in rows)
    model = task.load_trained(data, cfg, tmp_path / "run", cuda)
    metrics = task.evaluate(model, data, cfg, cuda, tmp_path / "run")   # the numpy paths read the CUDA tensors
    assert metrics and (tmp_path / "run" / "attention.npz").is_file()
