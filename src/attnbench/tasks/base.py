"""The small interface every task implements; the training loop, CLI and report only talk to this."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .. import training


class Task:
    """One benchmark task: data, models, loss and evaluation.

    Subclasses set `name`, `valid_metric` (higher is better, used for early stopping) and
    `headline` (the metric the cross-task report shows), and implement the methods below.
    """

    name: str = ""
    valid_metric: str = ""
    headline: str = ""
    higher_is_better: bool = True          # direction of the headline metric (False for MAPE, RMSE, ...)
    metric_columns: tuple[str, ...] = ()   # metrics.json keys shown in the leaderboard, headline first

    def check_params(self, section: dict, origin: str) -> None:
        """Checks a schema cannot express; raise config.ParamsError naming the key."""

    def prepare(self, params: dict, out_dir: Path) -> dict:
        """Generate or read the data into `out_dir`; return the manifest (also written there)."""
        raise NotImplementedError

    def load(self, prepared: Path, cfg: dict) -> Any:
        """Load prepared data for one run (tensors, vocabularies, gold annotations)."""
        raise NotImplementedError

    def build_model(self, cfg: dict, data: Any) -> nn.Module:
        raise NotImplementedError

    def fit(self, data: Any, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device) -> dict:
        """Train one run into run_dir; the shared loop unless a run is fitted another way."""
        return training.fit(self, data, cfg, run_dir, state_dir, device)

    def load_trained(self, data: Any, cfg: dict, run_dir: Path, device: torch.device) -> nn.Module:
        """The trained model of a run, in eval mode (weights_only loading, config checked)."""
        return training.load_trained(self, data, cfg, run_dir, device)

    def keep_on_device(self, data: Any, device: torch.device) -> int:
        """Move the data's fixed tensors onto `device` once, before training or evaluation, when they fit
        (`device_data.make_resident`: on CUDA only, a small share of the free memory); return the bytes
        moved. `batches`, `validate` and `evaluate` must then work with the tensors on either device.
        Default: nothing moved (tasks whose batches are padded from Python lists on the host)."""
        return 0

    def batches(self, data: Any, cfg: dict, generator: torch.Generator) -> Iterable[Any]:
        """Training batches for one epoch, in an order drawn from `generator` only."""
        raise NotImplementedError

    def steps_per_epoch(self, data: Any, cfg: dict) -> int | None:
        """The number of batches `batches` yields an epoch, when the task can tell without drawing them; a
        learning-rate schedule that decays over the run needs it (train.schedule). None (default): the
        shared loop draws the first epoch's batches before it starts and counts them."""
        return None

    def source_tokens(self, batch: Any) -> torch.Tensor | int | None:
        """How many source tokens (padding excluded) a training batch holds, for the log's tokens_per_s
        throughput; a tensor may stay on the device (the loop sums it there and reads it once an epoch).
        None (default): the task counts no tokens and the column stays empty."""
        return None

    def warmup_epochs(self, cfg: dict) -> int:
        """Epochs at the start of a run whose validation score is logged but neither picks the best
        checkpoint nor counts against the patience (a schedule that trains part of the model first).
        The shared loop caps it at epochs - 1."""
        return 0

    def start_epoch(self, model: nn.Module, cfg: dict, epoch: int) -> None:
        """Called by the shared loop before each training epoch (1-based), also after a resume: the
        place to switch a schedule's phase. Phase state must follow from `epoch` alone."""

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        """Mean loss of a batch and the number of examples (or tokens) it covers."""
        raise NotImplementedError

    def valid_metric_name(self, cfg: dict) -> str:
        """The name of what `validate` returns for this run (the logs and train_info.json give it); a task
        whose runs may pick their validation metric overrides it. Default: `valid_metric`."""
        return self.valid_metric

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Any, cfg: dict, device: torch.device) -> float:
        """The early-stopping metric on the validation split (higher is better)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Any, cfg: dict, device: torch.device, out_dir: Path) -> dict:
        """Test metrics (returned, written to metrics.json by the caller) plus exports in `out_dir`."""
        raise NotImplementedError
