"""The one training loop every task shares.

Device choice, torch threads, seeds, AMP on CUDA (with batches copied one step ahead and small data
sets kept on the device: device_data.py), a checkpoint after every epoch with resume after a kill,
early stopping on the validation metric (after the warm-up epochs a task may ask for), a progress
bar, a per-epoch CSV log, and a clean stop when the loss stops being finite. Same config + seed on
CPU => byte-identical weights and metrics, whether or not the run was interrupted and resumed.

Optional `train:` keys (absent: the loop behaves exactly as before they existed):

* `schedule: {kind: constant | cosine | linear | inverse_sqrt, warmup_steps: N | warmup_fraction: f,
  min_lr_ratio: r}` sets the learning rate before every optimizer step (`scheduled_lr`): a linear warm-up
  from lr/N to lr over the first N steps, then constant, or a cosine / linear decay that reaches lr * r at
  the run's last step, or the Transformer's inverse square root decay lr * sqrt(N / step) (Vaswani et al.
  2017, with lr the peak rate, reached at step N). The run's steps are epochs x batches per epoch; the batches per epoch come from
  `Task.steps_per_epoch` when the task can count them, else from the first epoch, whose batches are then
  drawn before it starts (the same batches it trains on: no second pass). The schedule follows the step
  count kept in the checkpoint, so a resumed run gets the same rates. The log's `lr` column holds the
  rate of each epoch's last step.
* `max_minutes: M` is a wall-clock budget for training plus validation (`elapsed`, kept across resumes).
  The loop stops mid-epoch at the first step that would start after the budget, validates that partial
  epoch, logs it (its `steps` column tells it was partial) and keeps the best checkpoint as usual; an
  epoch whose validation ends past the budget is the last one. train_info.json says why training
  stopped (`stopped_by`: epochs | patience | time budget) and the minutes used. A budget makes a run's
  length depend on the machine: such runs are not byte-reproducible.

A task may count the source tokens of a batch (`Task.source_tokens`); the log then has `tokens_per_s`
per epoch and train_info.json their mean.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from . import io as aio
from .config import config_hash
from .device_data import prefetch
from .optim import Adam

if TYPE_CHECKING:  # a type only: training never imports the tasks package
    from .tasks.base import Task

log = logging.getLogger("attnbench.train")

# new columns go at the end: `steps` (optimizer steps of the epoch: fewer in an epoch cut by the time budget) and
# `tokens_per_s` (source tokens per second, like examples_per_s; empty for tasks that count no tokens)
LOG_COLUMNS = ("epoch", "train_loss", "valid_metric", "best_valid", "seconds", "examples_per_s", "lr",
               "steps", "tokens_per_s")
SCHEDULE_KINDS = ("constant", "cosine", "linear", "inverse_sqrt")
STOPPED_BY = ("epochs", "patience", "time budget")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, unusable checkpoint)."""


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainingError("device 'cuda' requested but no CUDA device is visible")
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def deterministic_kernels(device: torch.device) -> None:
    """Ask for deterministic CUDA kernels (warning where an op has none). Only on CUDA: the CPU kernels this
    project runs are deterministic already (tests/test_training.py checks byte-identical reruns on CPU), and
    `torch.use_deterministic_algorithms` imports torch._inductor and with it torch._dynamo, about 1.2 s of a
    CPU job's start-up."""
    if device.type == "cuda":
        torch.use_deterministic_algorithms(True, warn_only=True)


def load_checkpoint(path: Path) -> dict:
    """Load with weights_only=True: a checkpoint carrying pickled code is refused, not executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, forbidden pickle global
        raise TrainingError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def warmup_steps(schedule: dict | None, total_steps: int | None) -> int:
    """The warm-up's length in optimizer steps (`warmup_steps`, or `warmup_fraction` of the run's steps)."""
    schedule = schedule or {}
    if "warmup_steps" in schedule and "warmup_fraction" in schedule:
        raise TrainingError("train.schedule: give warmup_steps or warmup_fraction, not both")
    if "warmup_fraction" in schedule:
        if total_steps is None:
            raise TrainingError("train.schedule.warmup_fraction needs the run's number of steps")
        return int(round(float(schedule["warmup_fraction"]) * total_steps))
    return int(schedule.get("warmup_steps", 0))


def schedule_needs_total(schedule: dict | None) -> bool:
    """Whether the schedule's rates depend on the run's total number of steps."""
    schedule = schedule or {}
    return schedule.get("kind", "constant") not in ("constant", "inverse_sqrt") or "warmup_fraction" in schedule


def scheduled_lr(step: int, total_steps: int | None, lr: float, schedule: dict | None) -> float:
    """The learning rate of optimizer step `step` (0-based) of a run of `total_steps` steps.

    Warm-up: lr * (step + 1) / W for the first W steps. Then `constant`: lr; `cosine` / `linear`: from lr at
    the first step after the warm-up down to lr * min_lr_ratio at the last step (step total_steps - 1), and
    lr * min_lr_ratio after it (a task whose epochs are longer than its first); `inverse_sqrt`:
    lr * sqrt(W / (step + 1)), so lr at the end of the warm-up (Vaswani et al.'s d_model^-0.5 x
    min(s^-0.5, s W^-1.5) with lr = (d_model W)^-0.5; W = 0 counts as 1), never below lr * min_lr_ratio."""
    schedule = schedule or {}
    kind = schedule.get("kind", "constant")
    if kind not in SCHEDULE_KINDS:
        raise TrainingError(f"train.schedule.kind: value {kind!r} is not allowed; expected one of: {', '.join(SCHEDULE_KINDS)}")
    warm = warmup_steps(schedule, total_steps)
    if step < warm:
        return lr * (step + 1) / warm
    if kind == "constant":
        return lr
    if kind == "inverse_sqrt":
        return max(lr * math.sqrt(max(warm, 1) / (step + 1)), lr * float(schedule.get("min_lr_ratio", 0.0)))
    if total_steps is None:
        raise TrainingError(f"train.schedule.kind {kind!r} needs the run's number of steps")
    floor = lr * float(schedule.get("min_lr_ratio", 0.0))
    progress = min(1.0, (step - warm) / max(1, total_steps - warm - 1))
    if kind == "cosine":
        return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr - (lr - floor) * progress


def _log_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    # restval: rows of a checkpoint written before a column existed (resumed runs) leave it empty
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _resume(state_path: Path, cfg_hash: str, cfg: dict) -> dict | None:
    if not state_path.exists():
        return None
    try:
        state = load_checkpoint(state_path)
    except TrainingError as exc:
        log.error("%s; starting this run from scratch", exc)
        state_path.rename(state_path.with_suffix(".corrupt"))
        return None
    if state.get("config_hash") != cfg_hash:
        log.warning(
            "%s belongs to another configuration (%s, this run is %s); starting from scratch.\n"
            "  checkpoint config: %s\n  this run's config: %s",
            state_path, state.get("config_hash"), cfg_hash, state.get("config"), cfg,
        )
        state_path.rename(state_path.with_suffix(".stale"))
        return None
    return state


def _raise_if_not_finite(first_bad: torch.Tensor, cfg: dict, epoch: int, state_path: Path,
                         cause: BaseException | None = None) -> None:
    step = int(first_bad.item())
    if step:
        raise TrainingError(
            f"{cfg['task']}/{cfg['run']} seed {cfg['seed']}: loss became nan or infinite at epoch {epoch}, step {step}; "
            f"stopped. The last good checkpoint (epoch {epoch - 1}) is kept at {state_path}"
        ) from cause


@dataclass
class Progress:
    """What the loop carries from epoch to epoch, and what the checkpoint after each epoch keeps of it."""

    rows: list[dict] = field(default_factory=list)   # the per-epoch log so far
    epoch: int = 0                                    # the last epoch trained (0: none yet)
    best: float = -math.inf                           # the best validation metric after the warm-up
    best_state: dict | None = None                    # the weights that reached it (on the host)
    best_epoch: int = 0
    bad_epochs: int = 0                               # epochs since the best one (patience)
    elapsed: float = 0.0                              # seconds of training and validation, across resumes
    steps: int = 0                                    # optimizer steps so far (the schedule follows them)
    steps_per_epoch: int | None = None                # batches an epoch, when the schedule needs them
    stopped_by: str | None = None                     # why training ended (STOPPED_BY), None while it goes on


@dataclass
class EpochTotals:
    """One epoch's training pass: loss sum, examples and source tokens, optimizer steps, whether the
    time budget cut it, and when it started."""

    loss: float
    count: float
    tokens: float
    counts_tokens: bool
    steps: int
    cut: bool
    started: float


def _budget_seconds(train_cfg: dict) -> float | None:
    """train.max_minutes in seconds; None: no time budget."""
    max_minutes = train_cfg.get("max_minutes")
    return None if max_minutes is None else 60.0 * float(max_minutes)


def _resumed(state_path: Path, cfg_hash: str, cfg: dict, model: torch.nn.Module, optimizer: Adam,
             metric_name: str) -> Progress | None:
    """The progress of `state_path`'s checkpoint of this configuration, loaded into `model`, `optimizer`
    and torch's RNG; None (a fresh start) without one, or when its optimizer state does not fit."""
    state = _resume(state_path, cfg_hash, cfg)
    if state is None:
        return None
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as exc:
        log.warning("%s: %s; starting this run from scratch", state_path, exc)
        state_path.rename(state_path.with_suffix(".stale"))
        return None
    model.load_state_dict(state["model"])
    torch.set_rng_state(state["rng"])
    rows, best = state["rows"], state["best"]
    progress = Progress(
        rows=rows, epoch=state["epoch"], best=best, best_state=state["best_model"], bad_epochs=state["bad_epochs"],
        elapsed=state["elapsed"],
        # checkpoints written before best_epoch was stored: the first epoch with the best metric
        best_epoch=state.get("best_epoch") or next((r["epoch"] for r in rows if r["valid_metric"] == round(best, 6)), 0),
        # checkpoints written before schedules and budgets: no schedule (its config has none), no stop recorded
        steps=state.get("steps", 0), steps_per_epoch=state.get("steps_per_epoch"), stopped_by=state.get("stopped_by"))
    log.info("resuming %s from epoch %d (best %s so far %.4f, %.1f min used)", cfg_hash, progress.epoch,
             metric_name, best, progress.elapsed / 60)
    return progress


def _warmup_epochs(task: Task, cfg: dict, epochs: int) -> int:
    """The task's warm-up epochs (e.g. ships' deep-first task partitioning): logged, but never the best
    checkpoint and not counted against the patience; at least the last epoch counts."""
    asked = int(task.warmup_epochs(cfg))
    warmup = max(0, min(asked, epochs - 1))
    if warmup < asked:
        log.warning("%s: %d warm-up epoch(s) asked for, %d epoch(s) in all: warm-up shortened to %d",
                    cfg["run"], asked, epochs, warmup)
    return warmup


def _already_done(p: Progress, epochs: int, patience: int, budget_s: float | None) -> bool:
    """Whether a resumed run had finished: all its epochs, its patience or its budget spent, or a stop kept."""
    return (p.epoch >= epochs or p.bad_epochs >= patience or p.stopped_by is not None
            or (budget_s is not None and p.elapsed >= budget_s))


def _train_epoch(task: Task, model: torch.nn.Module, optimizer: Adam, data: Any, cfg: dict, epoch: int,
                 p: Progress, device: torch.device, *, needs_total: bool, budget_s: float | None, show: bool,
                 state_path: Path) -> EpochTotals:
    """One pass over the epoch's batches: AMP on CUDA, the scheduled rate before each step, gradient clipping;
    stops before a step that would start past the time budget. Updates p.steps (and p.steps_per_epoch
    from the first epoch's batches when the schedule needs it); raises TrainingError on a non-finite loss."""
    train_cfg, epochs, schedule = cfg["train"], cfg["size"]["epochs"], cfg["train"].get("schedule")
    use_amp = device.type == "cuda"
    t0, step, cut = time.perf_counter(), 0, False
    # The loss sum, the example and token counts and the first step whose loss was not finite stay on the device
    # and are read once per epoch: reading them every step would make the host wait for the GPU every step.
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    tokens = torch.zeros((), dtype=torch.float64, device=device)
    counts_tokens = False
    first_bad = torch.zeros((), dtype=torch.long, device=device)   # 0: none yet
    batches = task.batches(data, cfg, _epoch_generator(cfg["seed"], epoch))
    if needs_total and p.steps_per_epoch is None:
        batches = list(batches)   # the first epoch's batches, drawn before it starts: their count sizes the schedule
        p.steps_per_epoch = len(batches)
    total_steps = None if p.steps_per_epoch is None else epochs * p.steps_per_epoch
    batches = prefetch(batches, device)   # CPU: the batches as is
    bar = tqdm(batches, desc=f"{cfg['run']} epoch {epoch}/{epochs}",
               unit="batch", disable=not show, leave=False, file=sys.stderr)
    try:
        for batch in bar:
            if budget_s is not None and step and p.elapsed + (time.perf_counter() - t0) >= budget_s:
                cut = True   # the budget is spent: this epoch ends here, validated and logged as usual
                break
            if schedule is not None:
                optimizer.lr = scheduled_lr(p.steps, total_steps, train_cfg["lr"], schedule)
            step += 1
            p.steps += 1
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, n = task.loss(model, batch, device)
            units = task.source_tokens(batch)
            if units is not None:
                tokens += units
                counts_tokens = True
            loss_value = loss.detach().double()
            first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss_value), step, first_bad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg["clip_norm"])
            optimizer.step()
            total += loss_value * n
            count += n
            if show and step % 10 == 1:
                seen = count.item()
                bar.set_postfix(loss=f"{total.item() / max(seen, 1):.3f}", ex_s=f"{seen / (time.perf_counter() - t0):.0f}")
    except Exception as exc:  # a non-finite loss can make a later step fail (e.g. sampling from NaN probabilities)
        _raise_if_not_finite(first_bad, cfg, epoch, state_path, exc)
        raise
    finally:
        bar.close()
    _raise_if_not_finite(first_bad, cfg, epoch, state_path)
    total, count, tokens = torch.stack((total, count, tokens)).tolist()   # one read of the device
    return EpochTotals(total, count, tokens, counts_tokens, step, cut, t0)


def _record_epoch(p: Progress, model: torch.nn.Module, epoch: int, warmup: int, metric: float, seconds: float,
                  done: EpochTotals, lr: float) -> None:
    """The epoch's validation metric against the best (after the warm-up), and its row of the log."""
    p.epoch = epoch
    p.elapsed += seconds
    if epoch <= warmup:
        pass
    elif metric > p.best:
        p.best, p.best_epoch, p.bad_epochs = metric, epoch, 0
        p.best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    else:
        p.bad_epochs += 1
    p.rows.append({
        "epoch": epoch, "train_loss": round(done.loss / max(done.count, 1), 6), "valid_metric": round(metric, 6),
        "best_valid": round(p.best, 6) if math.isfinite(p.best) else None, "seconds": round(seconds, 3),
        "examples_per_s": round(done.count / max(seconds, 1e-9), 1), "lr": lr,   # the rate of the epoch's last step
        "steps": done.steps, "tokens_per_s": round(done.tokens / max(seconds, 1e-9), 1) if done.counts_tokens else None,
    })


def _stop_reason(p: Progress, cut: bool, epochs: int, patience: int, budget_s: float | None) -> str | None:
    """Why training ends after the epoch just recorded (STOPPED_BY), None when it goes on."""
    if cut:
        return "time budget"
    if p.epoch >= epochs:
        return "epochs"
    if p.bad_epochs >= patience:
        return "patience"
    if budget_s is not None and p.elapsed >= budget_s:
        return "time budget"
    return None


def _save_checkpoint(state_path: Path, cfg_hash: str, cfg: dict, model: torch.nn.Module, optimizer: Adam,
                     p: Progress) -> None:
    """last.pt: everything a killed run resumes from, written atomically after every epoch."""
    aio.torch_save({
        "config_hash": cfg_hash, "config": cfg, "epoch": p.epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "rows": p.rows, "best": p.best,
        "best_model": p.best_state, "best_epoch": p.best_epoch, "bad_epochs": p.bad_epochs, "elapsed": p.elapsed,
        "steps": p.steps, "steps_per_epoch": p.steps_per_epoch, "stopped_by": p.stopped_by,
    }, state_path)


def _finish(model: torch.nn.Module, cfg: dict, run_dir: Path, p: Progress, device: torch.device,
            metric_name: str) -> dict:
    """The best weights into the model, then model.pt, train_log.csv and train_info.json (save_trained)."""
    if p.stopped_by is None:   # a finished run resumed from a checkpoint written before stop reasons were kept
        p.stopped_by = "patience" if p.bad_epochs >= cfg["train"]["patience"] else "epochs"
    if p.best_state is None:   # no epoch could be the best (the budget ended the run inside the task's warm-up)
        log.warning("%s: no epoch after the warm-up was trained; keeping the last epoch's weights", cfg["run"])
        p.best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        p.best_epoch, p.best = p.rows[-1]["epoch"], p.rows[-1]["valid_metric"]
    model.load_state_dict(p.best_state)
    extra = {"valid_metric": metric_name, "stopped_by": p.stopped_by, "max_minutes": cfg["train"].get("max_minutes"),
             "train_minutes": round(p.elapsed / 60, 3)}
    timed = [(r["tokens_per_s"], r["seconds"]) for r in p.rows if r.get("tokens_per_s") is not None]
    if timed:   # all epochs' tokens over all their seconds: a budget-cut last epoch weighs what it lasted
        extra["tokens_per_s"] = round(sum(rate * sec for rate, sec in timed) / max(sum(sec for _, sec in timed), 1e-9), 1)
    if device.type == "cuda":   # the training process's peak, every epoch and validation included
        extra["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return save_trained(model, cfg, run_dir, p.rows, device=device, best_epoch=p.best_epoch, best_valid=p.best,
                        train_seconds=p.elapsed, extra=extra)


def fit(task: Task, data: Any, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device, *,
        progress: bool | None = None) -> dict:
    """Train one run into `run_dir` (model.pt, train_log.csv, train_info.json), resuming from
    `state_dir/last.pt` when it holds an epoch of this same configuration; return train info."""
    run_dir, state_path, cfg_hash = Path(run_dir), Path(state_dir) / "last.pt", config_hash(cfg)
    train_cfg, epochs, patience = cfg["train"], cfg["size"]["epochs"], cfg["train"]["patience"]
    schedule = train_cfg.get("schedule")          # None: the optimizer keeps train.lr, as before schedules existed
    if schedule is not None:
        scheduled_lr(0, 1, train_cfg["lr"], schedule)   # a bad kind or warm-up stops here, before any work
    metric_name, budget_s = task.valid_metric_name(cfg), _budget_seconds(train_cfg)
    seed_everything(cfg["seed"])

    model = task.build_model(cfg, data).to(device)
    # after build_model: a model built from the data (e.g. recsys' bias from the mean target) sees it on the host
    resident = task.keep_on_device(data, device)
    if resident:
        log.info("%s: %.1f MB of data resident on %s", cfg["task"], resident / 2 ** 20, device)
    # train.fused_adam: torch's fused Adam kernel (optim.Adam), the same update up to float rounding; off by default
    optimizer = Adam(model.parameters(), lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"],
                     fused=True if train_cfg.get("fused_adam") else None)

    resumed = _resumed(state_path, cfg_hash, cfg, model, optimizer, metric_name)
    p = resumed or Progress()
    needs_total = schedule_needs_total(schedule)
    if needs_total and p.steps_per_epoch is None:
        p.steps_per_epoch = task.steps_per_epoch(data, cfg)   # None: counted from the first epoch's batches
    warmup = _warmup_epochs(task, cfg, epochs)
    show = sys.stderr.isatty() if progress is None else progress
    done = resumed is not None and _already_done(p, epochs, patience, budget_s)
    for epoch in range(p.epoch + 1, epochs + 1):
        if done:
            break
        task.start_epoch(model, cfg, epoch)
        model.train()
        totals = _train_epoch(task, model, optimizer, data, cfg, epoch, p, device, needs_total=needs_total,
                              budget_s=budget_s, show=show, state_path=state_path)
        model.eval()
        metric = float(task.validate(model, data, cfg, device))
        seconds = time.perf_counter() - totals.started   # training and validation
        _record_epoch(p, model, epoch, warmup, metric, seconds, totals, train_cfg["lr"] if schedule is None else optimizer.lr)
        p.stopped_by = _stop_reason(p, totals.cut, epochs, patience, budget_s)
        log.info("%s seed %d epoch %d/%d%s: train loss %.4f, valid %s %.4f (best %.4f), %.1fs%s",
                 cfg["run"], cfg["seed"], epoch, epochs, " (warm-up)" if epoch <= warmup else "", p.rows[-1]["train_loss"],
                 metric_name, metric, p.best, seconds,
                 f" (cut by the time budget after {totals.steps} steps)" if totals.cut else "")
        _save_checkpoint(state_path, cfg_hash, cfg, model, optimizer, p)
        if p.stopped_by == "patience":
            log.info("early stop after epoch %d: no %s improvement for %d epochs", epoch, metric_name, p.bad_epochs)
        elif p.stopped_by == "time budget":
            log.info("stopped after epoch %d: the time budget of %s min is spent (%.2f min used)", epoch,
                     train_cfg.get("max_minutes"), p.elapsed / 60)
        if p.stopped_by is not None:
            break
    return _finish(model, cfg, run_dir, p, device, metric_name)


def save_trained(model: torch.nn.Module, cfg: dict, run_dir: Path, rows: list[dict], *, device: torch.device,
                 best_epoch: int, best_valid: float, train_seconds: float, extra: dict | None = None) -> dict:
    """Write a finished run: model.pt (its weights, tagged with the config), train_log.csv, train_info.json.

    Tasks whose baselines are fitted in closed form (no epochs) call this from their own `fit`, with
    their parameters as tensors of an nn.Module, so every run is evaluated and loaded the same way.
    `extra`: more train_info.json keys (the shared loop's stop reason, budget and throughput).
    """
    run_dir = Path(run_dir)
    cfg_hash = config_hash(cfg)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    aio.torch_save({"config_hash": cfg_hash, "config": cfg, "model": weights, "best_epoch": best_epoch},
                   run_dir / "model.pt")
    aio.write_text(run_dir / "train_log.csv", _log_csv(rows))
    info = {
        "task": cfg["task"], "run": cfg["run"], "seed": cfg["seed"], "device": device.type,
        "threads": torch.get_num_threads(), "epochs_trained": len(rows), "best_epoch": best_epoch,
        "best_valid": best_valid, "train_seconds": round(train_seconds, 2),
        "parameters": sum(p.numel() for p in model.parameters()), "config_hash": cfg_hash, **(extra or {}),
    }
    aio.write_json(run_dir / "train_info.json", info)
    return info


def load_trained(task: Task, data: Any, cfg: dict, run_dir: Path, device: torch.device) -> torch.nn.Module:
    """Rebuild the model of `cfg` and load its best weights; refuse weights of another configuration."""
    path = Path(run_dir) / "model.pt"
    ckpt = load_checkpoint(path)
    if ckpt.get("config_hash") != config_hash(cfg):
        raise TrainingError(
            f"{path} was trained with another configuration (hash {ckpt.get('config_hash')}, expected {config_hash(cfg)}).\n"
            f"  checkpoint config: {ckpt.get('config')}\n  requested config:  {cfg}"
        )
    model = task.build_model(cfg, data)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise TrainingError(f"{path}: weights do not fit the model of {cfg['run']}: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval()
