"""Pieces the task modules share: a token <-> id vocabulary, moving a batch to a device and
length-ordered evaluation batches. Task-specific logic (which tokens a vocabulary holds, how a
batch is padded, what "length" means) stays in the task's module."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence


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
