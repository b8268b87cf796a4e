"""Data loading that keeps a GPU busy: batches copied one step ahead, small data sets kept on the device.

Why. The tasks build their batches on the host, and the loss used to copy each one with `.to(device)`
from ordinary (pageable) memory. Such a copy makes the host wait until the GPU has finished all the
work queued before it, so each step the GPU then idles while the host builds and sends the next batch.
Two remedies, both no-ops on the CPU (so CPU runs stay byte-identical):

* `prefetch` (every task): each batch is copied into page-locked ("pinned") memory, which the GPU reads
  by DMA without stopping the host, and its copy is started on a side CUDA stream one batch ahead: the
  copy of batch k+1 runs while batch k computes. The loop gets batches already on the device, so a
  task's own `.to(device)` is then a no-op.
* residency (tasks whose data are a few fixed tensors: recsys, glimpse, ships): `Task.keep_on_device`
  moves them to the device once, through `make_resident`, when they take only a small share of the
  free GPU memory (`fits_on_device`); their batches are then cut on the device and nothing crosses the
  bus per step.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

log = logging.getLogger("attnbench.device_data")

RESIDENT_CAP = 2 * 1024 ** 3   # bytes: a task's data is kept on the device only up to this size ...
RESIDENT_SHARE = 0.25          # ... and up to this share of the device's free memory (the rest: the model)


# ---- residency ------------------------------------------------------------------------------------
def resident_budget(free_bytes: int) -> int:
    """The most bytes of data kept resident on a device with `free_bytes` free."""
    return int(min(RESIDENT_CAP, RESIDENT_SHARE * free_bytes))


def fits_on_device(nbytes: int, device: torch.device | str) -> bool:
    """Whether `nbytes` of data should live on `device`: only on CUDA, within `resident_budget` of
    its free memory now. Always False elsewhere (on the CPU the data is where it would go)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= resident_budget(free)


def _resolve(device: torch.device | str) -> torch.device:
    """`cuda` -> `cuda:<current>`, so it compares equal to the device of a tensor placed there."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def make_resident(device: torch.device | str, tables: Sequence[dict], keys: Iterable[str] | None = None) -> int:
    """Move the tensors `table[key]` of each table (e.g. a task's `data.x` keyed by split) to `device`,
    in place, all of them or none: only when their bytes not there yet pass `fits_on_device`.
    `keys`: the entries to move (default: all of each table). Returns the bytes moved (0 on the CPU)."""
    device = _resolve(device)
    todo = [(table, key) for table in tables for key in (list(table) if keys is None else keys)
            if table[key].device != device]
    nbytes = sum(table[key].nbytes for table, key in todo)
    if not nbytes:
        return 0
    if not fits_on_device(nbytes, device):
        if device.type == "cuda":
            log.info("%.1f MB of data stay on the host: more than %.1f MB (the resident budget on %s)",
                     nbytes / 2 ** 20, resident_budget(torch.cuda.mem_get_info(device)[0]) / 2 ** 20, device)
        return 0
    for table, key in todo:
        table[key] = table[key].to(device)
    return nbytes


# ---- prefetching ----------------------------------------------------------------------------------
def map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`batch` with `fn` applied to each tensor in it (through nested tuples, lists, dicts); other values as they are."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {key: map_tensors(value, fn) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):   # a namedtuple
        return type(batch)(*(map_tensors(value, fn) for value in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(value, fn) for value in batch)
    return batch


def _prefetch(batches: Iterable[Any], start: Callable[[Any], Any], finish: Callable[[Any], Any]) -> Iterator[Any]:
    """Yield `finish(start(b))` for each batch b in order, with `start` already called on the NEXT batch
    when batch b is yielded (so its copy runs during b's step)."""
    it = iter(batches)
    try:
        ahead = start(next(it))
    except StopIteration:
        return
    for batch in it:
        current, ahead = ahead, start(batch)
        yield finish(current)
    yield finish(ahead)


class _CudaCopier:
    """Copies batches to a CUDA device on a side stream: `start` pins and queues the copies, `finish`
    makes the compute stream wait for that batch's copies only (an event per batch, so the compute of
    batch k never waits for the copy of batch k+1 queued after it)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def start(self, batch: Any) -> tuple[Any, list[torch.Tensor], torch.cuda.Event]:
        copies: list[torch.Tensor] = []

        def copy(t: torch.Tensor) -> torch.Tensor:
            if t.device == self.device:
                return t
            moved = (t if t.device.type != "cpu" else t.pin_memory()).to(self.device, non_blocking=True)
            copies.append(moved)
            return moved

        with torch.cuda.stream(self.stream):
            moved = map_tensors(batch, copy)
            done = torch.cuda.Event()
            done.record(self.stream)
        return moved, copies, done

    def finish(self, started: tuple[Any, list[torch.Tensor], torch.cuda.Event]) -> Any:
        moved, copies, done = started
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(done)
        for t in copies:
            # memory allocated on the side stream: not reused before the compute stream is done with it
            t.record_stream(compute)
        return moved


def prefetch(batches: Iterable[Any], device: torch.device | str) -> Iterable[Any]:
    """On CUDA: the batches, in the same order and structure, each already on `device`, its copy started
    while the previous batch computed (pinned host memory, non-blocking copies on a side stream; tensors
    already on the device are passed through). Elsewhere: `batches` itself, untouched."""
    device = torch.device(device)
    if device.type != "cuda":
        return batches
    copier = _CudaCopier(_resolve(device))
    return _prefetch(batches, copier.start, copier.finish)
