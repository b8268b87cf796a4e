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


def fit(task: Task, data: Any, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device, *,
        progress: bool | None = None) -> dict:
    """Train one run into `run_dir` (model.pt, train_log.csv, train_info.json), resuming from
    `state_dir/last.pt` when it holds an epoch of this same configuration; return train info."""
    run_dir = Path(run_dir)
    state_path = Path(state_dir) / "last.pt"
    cfg_hash = config_hash(cfg)
    seed = cfg["seed"]
    train_cfg, epochs = cfg["train"], cfg["size"]["epochs"]
    schedule = train_cfg.get("schedule")          # None: the optimizer keeps train.lr, as before schedules existed
    if schedule is not None:
        scheduled_lr(0, 1, train_cfg["lr"], schedule)   # a bad kind or warm-up stops here, before any work
    metric_name = task.valid_metric_name(cfg)
    max_minutes = train_cfg.get("max_minutes")    # None: no time budget
    budget_s = None if max_minutes is None else 60.0 * float(max_minutes)
    seed_everything(seed)

    model = task.build_model(cfg, data).to(device)
    # after build_model: a model built from the data (e.g. recsys' bias from the mean target) sees it on the host
    resident = task.keep_on_device(data, device)
    if resident:
        log.info("%s: %.1f MB of data resident on %s", cfg["task"], resident / 2 ** 20, device)
    # train.fused_adam: torch's fused Adam kernel (optim.Adam), the same update up to float rounding; off by default
    optimizer = Adam(model.parameters(), lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"],
                     fused=True if train_cfg.get("fused_adam") else None)
    use_amp = device.type == "cuda"

    rows: list[dict] = []
    start_epoch, best, best_state, best_epoch, bad_epochs, elapsed = 1, -math.inf, None, 0, 0, 0.0
    steps_done, steps_per_epoch, stopped_by = 0, None, None   # optimizer steps so far; batches an epoch; why it ended
    state = _resume(state_path, cfg_hash, cfg)
    if state is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            log.warning("%s: %s; starting this run from scratch", state_path, exc)
            state_path.rename(state_path.with_suffix(".stale"))
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        torch.set_rng_state(state["rng"])
        rows, best, best_state = state["rows"], state["best"], state["best_model"]
        bad_epochs, elapsed, start_epoch = state["bad_epochs"], state["elapsed"], state["epoch"] + 1
        # checkpoints written before best_epoch was stored: the first epoch with the best metric
        best_epoch = state.get("best_epoch") or next((r["epoch"] for r in rows if r["valid_metric"] == round(best, 6)), 0)
        # checkpoints written before schedules and budgets: no schedule (its config has none), no stop recorded
        steps_done, steps_per_epoch, stopped_by = state.get("steps", 0), state.get("steps_per_epoch"), state.get("stopped_by")
        log.info("resuming %s from epoch %d (best %s so far %.4f, %.1f min used)", cfg_hash, state["epoch"],
                 metric_name, best, elapsed / 60)
    needs_total = schedule_needs_total(schedule)
    if needs_total and steps_per_epoch is None:
        steps_per_epoch = task.steps_per_epoch(data, cfg)   # None: counted from the first epoch's batches

    # warm-up epochs (a task's own schedule, e.g. ships' deep-first task partitioning): logged, but
    # never the best checkpoint and not counted against the patience; at least the last epoch counts
    asked = int(task.warmup_epochs(cfg))
    warmup = max(0, min(asked, epochs - 1))
    if warmup < asked:
        log.warning("%s: %d warm-up epoch(s) asked for, %d epoch(s) in all: warm-up shortened to %d",
                    cfg["run"], asked, epochs, warmup)
    show = sys.stderr.isatty() if progress is None else progress
    done = state is not None and (state["epoch"] >= epochs or state["bad_epochs"] >= train_cfg["patience"]
                                  or stopped_by is not None or (budget_s is not None and elapsed >= budget_s))
    for epoch in range(start_epoch, epochs + 1):
        if done:
            break
        task.start_epoch(model, cfg, epoch)
        model.train()
        t0, step, cut = time.perf_counter(), 0, False
        # The loss sum, the example and token counts and the first step whose loss was not finite stay on the device
        # and are read once per epoch: reading them every step would make the host wait for the GPU every step.
        total = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        tokens = torch.zeros((), dtype=torch.float64, device=device)
        counts_tokens = False
        first_bad = torch.zeros((), dtype=torch.long, device=device)   # 0: none yet
        batches = task.batches(data, cfg, _epoch_generator(seed, epoch))
        if needs_total and steps_per_epoch is None:
            batches = list(batches)   # the first epoch's batches, drawn before it starts: their count sizes the schedule
            steps_per_epoch = len(batches)
        total_steps = None if steps_per_epoch is None else epochs * steps_per_epoch
        batches = prefetch(batches, device)   # CPU: the batches as is
        bar = tqdm(batches, desc=f"{cfg['run']} epoch {epoch}/{epochs}",
                   unit="batch", disable=not show, leave=False, file=sys.stderr)
        try:
            for batch in bar:
                if budget_s is not None and step and elapsed + (time.perf_counter() - t0) >= budget_s:
                    cut = True   # the budget is spent: this epoch ends here, validated and logged as usual
                    break
                if schedule is not None:
                    optimizer.lr = scheduled_lr(steps_done, total_steps, train_cfg["lr"], schedule)
                step += 1
                steps_done += 1
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
        model.eval()
        metric = float(task.validate(model, data, cfg, device))
        seconds = time.perf_counter() - t0
        elapsed += seconds
        if epoch <= warmup:
            pass
        elif metric > best:
            best, best_epoch, bad_epochs = metric, epoch, 0
            best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        rows.append({
            "epoch": epoch, "train_loss": round(total / max(count, 1), 6), "valid_metric": round(metric, 6),
            "best_valid": round(best, 6) if math.isfinite(best) else None, "seconds": round(seconds, 3),
            "examples_per_s": round(count / max(seconds, 1e-9), 1),
            "lr": train_cfg["lr"] if schedule is None else optimizer.lr,   # the rate of the epoch's last step
            "steps": step, "tokens_per_s": round(tokens / max(seconds, 1e-9), 1) if counts_tokens else None,
        })
        if cut:
            stopped_by = "time budget"
        elif epoch >= epochs:
            stopped_by = "epochs"
        elif bad_epochs >= train_cfg["patience"]:
            stopped_by = "patience"
        elif budget_s is not None and elapsed >= budget_s:
            stopped_by = "time budget"
        log.info("%s seed %d epoch %d/%d%s: train loss %.4f, valid %s %.4f (best %.4f), %.1fs%s",
                 cfg["run"], seed, epoch, epochs, " (warm-up)" if epoch <= warmup else "", rows[-1]["train_loss"],
                 metric_name, metric, best, seconds, f" (cut by the time budget after {step} steps)" if cut else "")
        aio.torch_save({
            "config_hash": cfg_hash, "config": cfg, "epoch": epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "rows": rows, "best": best,
            "best_model": best_state, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "elapsed": elapsed,
            "steps": steps_done, "steps_per_epoch": steps_per_epoch, "stopped_by": stopped_by,
        }, state_path)
        if stopped_by == "patience":
            log.info("early stop after epoch %d: no %s improvement for %d epochs", epoch, metric_name, bad_epochs)
        elif stopped_by == "time budget":
            log.info("stopped after epoch %d: the time budget of %s min is spent (%.2f min used)", epoch, max_minutes,
                     elapsed / 60)
        if stopped_by is not None:
            break

    if stopped_by is None:   # a finished run resumed from a checkpoint written before stop reasons were kept
        stopped_by = "patience" if bad_epochs >= train_cfg["patience"] else "epochs"
    if best_state is None:   # no epoch could be the best (the budget ended the run inside the task's warm-up)
        log.warning("%s: no epoch after the warm-up was trained; keeping the last epoch's weights", cfg["run"])
        best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        best_epoch, best = rows[-1]["epoch"], rows[-1]["valid_metric"]
    model.load_state_dict(best_state)
    extra = {"valid_metric": metric_name, "stopped_by": stopped_by, "max_minutes": max_minutes,
             "train_minutes": round(elapsed / 60, 3)}
    timed = [(r["tokens_per_s"], r["seconds"]) for r in rows if r.get("tokens_per_s") is not None]
    if timed:   # all epochs' tokens over all their seconds: a budget-cut last epoch weighs what it lasted
        extra["tokens_per_s"] = round(sum(rate * sec for rate, sec in timed) / max(sum(sec for _, sec in timed), 1e-9), 1)
    if device.type == "cuda":   # the training process's peak, every epoch and validation included
        extra["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return save_trained(model, cfg, run_dir, rows, device=device, best_epoch=best_epoch, best_valid=best,
                        train_seconds=elapsed, extra=extra)


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
