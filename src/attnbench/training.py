"""The one training loop every task shares.

Device choice, torch threads, seeds, AMP on CUDA (with batches copied one step ahead and small data
sets kept on the device: device_data.py), a checkpoint after every epoch with resume after a kill,
early stopping on the validation metric (after the warm-up epochs a task may ask for), a progress
bar, a per-epoch CSV log, and a clean stop when the loss stops being finite. Same config + seed on
CPU => byte-identical weights and metrics, whether or not the run was interrupted and resumed.
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

LOG_COLUMNS = ("epoch", "train_loss", "valid_metric", "best_valid", "seconds", "examples_per_s", "lr")


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


def _log_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
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
    seed_everything(seed)

    model = task.build_model(cfg, data).to(device)
    # after build_model: a model built from the data (e.g. recsys' bias from the mean target) sees it on the host
    resident = task.keep_on_device(data, device)
    if resident:
        log.info("%s: %.1f MB of data resident on %s", cfg["task"], resident / 2 ** 20, device)
    optimizer = Adam(model.parameters(), lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"])
    use_amp = device.type == "cuda"

    rows: list[dict] = []
    start_epoch, best, best_state, best_epoch, bad_epochs, elapsed = 1, -math.inf, None, 0, 0, 0.0
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
        log.info("resuming %s from epoch %d (best %s so far %.4f)", cfg_hash, state["epoch"], task.valid_metric, best)

    # warm-up epochs (a task's own schedule, e.g. ships' deep-first task partitioning): logged, but
    # never the best checkpoint and not counted against the patience; at least the last epoch counts
    asked = int(task.warmup_epochs(cfg))
    warmup = max(0, min(asked, epochs - 1))
    if warmup < asked:
        log.warning("%s: %d warm-up epoch(s) asked for, %d epoch(s) in all: warm-up shortened to %d",
                    cfg["run"], asked, epochs, warmup)
    show = sys.stderr.isatty() if progress is None else progress
    done = state is not None and (state["epoch"] >= epochs or state["bad_epochs"] >= train_cfg["patience"])
    for epoch in range(start_epoch, epochs + 1):
        if done:
            break
        task.start_epoch(model, cfg, epoch)
        model.train()
        t0, step = time.perf_counter(), 0
        # The loss sum, the example count and the first step whose loss was not finite stay on the device and
        # are read once per epoch: reading them every step would make the host wait for the GPU every step.
        total = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        first_bad = torch.zeros((), dtype=torch.long, device=device)   # 0: none yet
        batches = prefetch(task.batches(data, cfg, _epoch_generator(seed, epoch)), device)   # CPU: the batches as is
        bar = tqdm(batches, desc=f"{cfg['run']} epoch {epoch}/{epochs}",
                   unit="batch", disable=not show, leave=False, file=sys.stderr)
        try:
            for batch in bar:
                step += 1
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss, n = task.loss(model, batch, device)
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
        _raise_if_not_finite(first_bad, cfg, epoch, state_path)
        total, count = total.item(), count.item()
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
            "examples_per_s": round(count / max(seconds, 1e-9), 1), "lr": train_cfg["lr"],
        })
        log.info("%s seed %d epoch %d/%d%s: train loss %.4f, valid %s %.4f (best %.4f), %.1fs",
                 cfg["run"], seed, epoch, epochs, " (warm-up)" if epoch <= warmup else "", rows[-1]["train_loss"],
                 task.valid_metric, metric, best, seconds)
        aio.torch_save({
            "config_hash": cfg_hash, "config": cfg, "epoch": epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "rows": rows, "best": best,
            "best_model": best_state, "best_epoch": best_epoch, "bad_epochs": bad_epochs, "elapsed": elapsed,
        }, state_path)
        if bad_epochs >= train_cfg["patience"]:
            log.info("early stop after epoch %d: no %s improvement for %d epochs", epoch, task.valid_metric, bad_epochs)
            break

    model.load_state_dict(best_state)
    return save_trained(model, cfg, run_dir, rows, device=device, best_epoch=best_epoch, best_valid=best,
                        train_seconds=elapsed)


def save_trained(model: torch.nn.Module, cfg: dict, run_dir: Path, rows: list[dict], *, device: torch.device,
                 best_epoch: int, best_valid: float, train_seconds: float) -> dict:
    """Write a finished run: model.pt (its weights, tagged with the config), train_log.csv, train_info.json.

    Tasks whose baselines are fitted in closed form (no epochs) call this from their own `fit`, with
    their parameters as tensors of an nn.Module, so every run is evaluated and loaded the same way.
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
        "parameters": sum(p.numel() for p in model.parameters()), "config_hash": cfg_hash,
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
