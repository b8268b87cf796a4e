"""Pieces the task modules share: decoding a (possibly gzipped) UTF-8 data file into lines, a token
<-> id vocabulary, moving a batch to a device, length-ordered evaluation batches and the check that a
run's mechanism has the capabilities its model needs. Task-specific
logic (which tokens a vocabulary holds, how a batch is padded, what "length" means, which error a
reader raises) stays in the task's module."""
from __future__ import annotations

import codecs
import gzip
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .. import attention, paths
from ..errors import ParamsError, not_utf8

GZIP_MAGIC = b"\x1f\x8b"


def read_utf8_lines(path: Path, error: type[Exception]) -> list[str]:
    """Decoded lines of a (possibly gzipped, detected by content) UTF-8 file, without line terminators
    or a leading BOM; the final newline yields no extra line. Corrupt gzip data or an undecodable
    line raise `error` naming the file (and line); an unreadable file raises the OSError itself."""
    data = Path(path).read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise error(f"{path}: corrupt gzip data ({exc})") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    chunks = data.split(b"\n")
    if chunks[-1] == b"":
        chunks.pop()
    lines = []
    for lineno, chunk in enumerate(chunks, 1):
        try:
            lines.append(chunk.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise error(f"{path}, {not_utf8(exc, lineno)}") from None
    return lines


class TokenVocab:
    """A token <-> id table: `itos` (id -> token), `stoi` (token -> id); a token it does not hold
    encodes as `unk` (a subclass sets its models' unknown-token id and its own `build`)."""

    unk = 1

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, self.unk) for t in tokens]

    def __len__(self) -> int:
        return len(self.itos)


def long_tensors(sequences: Sequence[Sequence[int]]) -> list["torch.Tensor"]:
    """One 1-D int64 tensor per sequence, views of a single tensor: one torch call instead of one per
    sentence (tens of thousands of them at a job's start-up)."""
    import torch

    flat = torch.tensor([i for s in sequences for i in s], dtype=torch.long)
    return list(flat.split([len(s) for s in sequences]))


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """Every tensor of a batch dict on `device` (non-blocking copies)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def ordered_batches(order: Sequence[int], batch_size: int,
                    batch: Callable[[Sequence[int]], Any]) -> Iterator[tuple[Sequence[int], Any]]:
    """(indices, batch(indices)) for consecutive `batch_size` slices of `order` (examples sorted by
    length, so that evaluation pads little)."""
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield index, batch(index)


ITEMS_FILE = "items.npz"   # a run's per-test-item outputs: what the findings' paired tests read


def write_items(out_dir: Path, **arrays: Any) -> None:
    """`items.npz` in a run's folder: one array per per-item output, aligned over the test items in the
    order the metrics saw them (labels and predictions of a classifier, per-origin errors of a forecaster),
    so that two runs can be compared item by item (McNemar, Diebold-Mariano, paired bootstrap)."""
    import numpy as np

    from .. import io as aio

    with aio.atomic_path(Path(out_dir) / ITEMS_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def round_floats(value: Any, digits: int) -> Any:
    """`value` (nested dicts/lists of numbers) with floats rounded to `digits`; NaN/inf become None
    (metrics.json stays valid JSON and identical across runs up to float noise)."""
    import math

    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v, digits) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    value = float(value)
    return None if not math.isfinite(value) else round(value, digits)


def step_command(params_path: str, step: str, task: str, dataset: str, run: str | None = None,
                 seed: int | None = None) -> str:
    """The `attnbench` command line of one pipeline step, as the user should type it."""
    prefix = "attnbench" if params_path == "params.yaml" else f"attnbench --params {params_path}"
    line = f"{prefix} {step} --task {task} --dataset {dataset}"
    return line if run is None else f"{line} --run {run} --seed {seed}"


def trained_run(task: str, cfg: dict, params_path: str = "params.yaml") -> tuple[Path, Path]:
    """(run folder, prepared folder) of a trained run, or FileNotFoundError naming the commands that are
    missing (prepare, train) for using it: `translate`, `score`, `predict`."""
    dataset, run, seed = cfg["dataset"], cfg["run"], cfg["seed"]
    run_dir, prepared = paths.run_dir(task, dataset, run, seed), paths.prepared_dir(task, dataset)
    prepare = step_command(params_path, "prepare", task, dataset)
    if not (run_dir / "model.pt").is_file():
        steps = step_command(params_path, "train", task, dataset, run, seed)
        if not (prepared / "vocab.json").is_file():
            steps = f"{prepare} && {steps}"
        raise FileNotFoundError(f"{run_dir / 'model.pt'}: run {run} seed {seed} of dataset {dataset} is not trained "
                                f"here; train it first: {steps}")
    if not (prepared / "vocab.json").is_file():
        raise FileNotFoundError(f"{prepared}: dataset {dataset} is not prepared here; prepare it first: {prepare}")
    return run_dir, prepared


def check_mechanism(where: str, model: str, mechanism: str, needs: attention.Needs) -> None:
    """Refuse a run (`where`: its key, e.g. "params.yaml: tasks.load.runs.gru") whose mechanism lacks a
    capability its model declares in `needs`: ParamsError naming the mechanism, what it lacks in words and
    the registered mechanisms that have it."""
    why = attention.refusal(mechanism, needs)
    if why:
        raise ParamsError(f"{where}.attention: value {mechanism!r} is not allowed for model {model!r}: {why}")


def check_mechanism_options(where: str, mechanism: str, options: dict) -> None:
    """The run's options reach its mechanism: build it once on toy sizes (the global RNG left as it was), so an
    unknown option or a bad value stops before anything runs, naming the run's options."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            attention.build(mechanism, 8, 8, 8, **options)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}.options: {exc}") from None


def mechanism_option(mechanism: str, options: dict, name: str):
    """The value of option `name` a run's mechanism will be built with (the run's, else its default); None when
    the mechanism takes no such option."""
    import inspect

    param = inspect.signature(attention.get_class(mechanism).__init__).parameters.get(name)
    return None if param is None else options.get(name, param.default)
