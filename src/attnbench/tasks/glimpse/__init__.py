"""Glimpse: recurrent models of visual attention on translated, cluttered digits (Mnih et al., 2014).

Data (data.py): real handwritten digits (scikit-learn's `load_digits`, or a user's .npz) upsampled
and placed on a blank canvas, in two variants prepared side by side from one split of the source
images: `cluttered` (random position, fragments of other digits around) and `centred` (middle of the
canvas, nothing else). A run picks its variant with its `variant` option, so each model is trained
and tested on each variant (the RAM paper's per-data-set models); one prepare stage serves both.

Runs: RAM (hard glimpses: multi-resolution retina, recurrent core, Gaussian location policy trained
by REINFORCE with a learned baseline, fixed number of glimpses), soft spatial attention over a CNN
feature map, a full-view CNN and a full-view MLP.

Metrics (scikit-learn): test accuracy, error (1 - accuracy, also as `error_<variant>`), macro-F1;
where the attention goes: for RAM the share of its chosen glimpses (after the first, fixed at the
centre) whose centre lies on the digit's box, for soft attention the weight on the feature-map
cells centred on the box, both beside `on_digit_chance`, the box's share of the canvas. RAM's
glimpse locations of every test image are exported in attention.npz.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ... import io as aio
from ... import attention
from ...errors import ParamsError
from ...device_data import make_resident
from ...errors import DataError
from ...models.ram import RAM, FullViewCNN, FullViewMLP, SoftSpatial
from .. import register
from ..common import check_mechanism, round_floats, write_items
from ..base import Task
from .data import SPLITS, VARIANTS, compose, image_groups, read_npz, sklearn_digits, split_images, upsample

EVAL_BATCH = 512
MODELS = {"ram": RAM, "soft": SoftSpatial, "cnn": FullViewCNN, "mlp": FullViewMLP}
RUN_KEYS = ("variant",)        # run options that are not the mechanism's


class Data:
    """One variant's canvases as float tensors in [0, 1], with their ground truth."""

    def __init__(self, prepared: Path, cfg: dict) -> None:
        prepared = Path(prepared)
        self.manifest = aio.read_json(prepared / "manifest.json")
        self.variant = cfg["attention_options"]["variant"]
        self.classes = int(self.manifest["classes"])
        self.side = int(self.manifest["canvas"])
        self.x, self.y, self.box, self.source, self.raw = {}, {}, {}, {}, {}
        # pixels scaled to unit standard deviation over the training canvases (blank stays 0, as the
        # glimpse sensor's padding outside the canvas)
        scale = 1.0 / (255.0 * float(self.manifest["pixel_std"][self.variant]))
        with np.load(prepared / "canvases.npz", allow_pickle=False) as z:
            for s in SPLITS:
                key = f"{self.variant}_{s}"
                self.raw[s] = z[f"{key}_images"]
                self.x[s] = torch.from_numpy(self.raw[s]).float().mul_(scale).unsqueeze(1)
                self.y[s] = torch.from_numpy(z[f"{key}_labels"].astype(np.int64))
                self.box[s] = z[f"{key}_box"].astype(np.int64)
                self.source[s] = z[f"{key}_source"].astype(np.int64)
            self.digits = z["digits"]                                   # [N, s, s] uint8, upsampled sources
            self.image_labels = z["image_labels"].astype(np.int64)
            self.train_images = np.flatnonzero(z["split"] == "train")
        self.scale = scale
        self.placements = int(cfg["size"]["train_placements"])
        d = cfg["data"]
        self.compose_args = (d["canvas"], d["clutter"], d["fragment"])
        # the centred variant has one canvas per image: repeat it so an epoch is as long as a cluttered one
        self.train_order = np.repeat(np.arange(len(self.y["train"])), self.placements if self.variant == "centred" else 1)

    def fresh_training_canvases(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A new draw of the cluttered training canvases (new positions and clutter, same images)."""
        c = compose(self.digits.astype(np.float32) / 255.0, self.image_labels, self.train_images, self.placements, "cluttered",
                    *self.compose_args, rng)
        return torch.from_numpy(c.images).float().mul_(self.scale).unsqueeze(1), torch.from_numpy(c.labels)


class GlimpseTask(Task):
    name = "glimpse"
    valid_metric = "valid_accuracy"
    headline = "error_cluttered"
    higher_is_better = False
    metric_columns = ("error_cluttered", "error_centred", "error", "accuracy", "macro_f1", "on_digit",
                      "on_digit_chance")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        where = f"{origin}: tasks.glimpse"
        d = section["data"]
        if d["valid_fraction"] + d["test_fraction"] >= 0.8:
            raise ParamsError(f"{where}.data.test_fraction: value {d['test_fraction']!r} is not allowed; expected "
                              "valid_fraction + test_fraction < 0.8 (the rest is the training split)")
        if d["source"] == "npz" and "npz" not in d:
            raise ParamsError(f"{where}.data: missing key 'npz' (required with source: npz)")
        if d["fragment"] > d["canvas"]:
            raise ParamsError(f"{where}.data.fragment: value {d['fragment']!r} is not allowed; expected at most "
                              f"the canvas size ({d['canvas']})")
        if d["source"] == "sklearn_digits" and 8 * d["upsample"] > d["canvas"]:
            raise ParamsError(f"{where}.data.upsample: value {d['upsample']!r} is not allowed; the 8x8 digits become "
                              f"{8 * d['upsample']} pixels, larger than the canvas ({d['canvas']}); expected "
                              f"upsample <= {d['canvas'] // 8}")
        for run, spec in section["runs"].items():
            model, mech, options = spec["model"], spec["attention"], spec.get("options", {})
            at = f"{where}.runs.{run}"
            if model not in section["models"]:
                raise ParamsError(f"{at}.model: value {model!r} is not allowed: it has no entry under "
                                  f"tasks.glimpse.models; expected one of: {', '.join(section['models'])}")
            if options.get("variant") not in VARIANTS:
                raise ParamsError(f"{at}.options.variant: value {options.get('variant')!r} is not allowed; expected "
                                  f"one of: {', '.join(VARIANTS)} (the canvases the run trains and is tested on)")
            needs = MODELS[model].attention_needs
            check_mechanism(at, model, mech, needs)
            if not needs.attends and set(options) - set(RUN_KEYS):   # a full-view model takes no mechanism options
                extra = sorted(set(options) - set(RUN_KEYS))[0]
                raise ParamsError(f"{at}.options.{extra}: unknown option for model {model!r}; allowed: variant")
            if "glimpse" in attention.get_class(mech).forms:   # the glimpse's retina must fit the canvas
                patch, scales = options.get("patch", 8), options.get("scales", 3)
                if patch * 2 ** (scales - 1) > 2 * d["canvas"]:
                    raise ParamsError(f"{at}.options.scales: value {scales!r} is not allowed; the largest glimpse "
                                      f"({patch * 2 ** (scales - 1)} pixels) would exceed twice the canvas "
                                      f"({d['canvas']}); expected fewer scales or a smaller patch")

    def _source(self, d: dict):
        if d["source"] == "sklearn_digits":
            return sklearn_digits()
        spec = d["npz"]
        return read_npz(spec["path"], spec.get("images_key", "images"), spec.get("labels_key", "labels"))

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["glimpse"]
        d, size = section["data"], section["scales"][params["scale"]]
        src = self._source(d)
        n_all = len(src.labels)
        rng = np.random.default_rng([d["seed"], 1])
        keep = np.sort(rng.permutation(n_all)[:size["digits"]]) if 0 < size["digits"] < n_all else np.arange(n_all)
        images, labels = src.images[keep], src.labels[keep]
        digits = upsample(images, d["upsample"])
        if digits.shape[1] > d["canvas"] or digits.shape[2] > d["canvas"]:
            raise DataError(f"{src.origin}: images are {images.shape[1]}x{images.shape[2]}, "
                            f"{digits.shape[1]}x{digits.shape[2]} after upsampling by {d['upsample']}; expected at most "
                            f"the canvas size {d['canvas']} (raise data.canvas or lower data.upsample)")
        if digits.shape[1] != digits.shape[2]:
            raise DataError(f"{src.origin}: images are {images.shape[1]}x{images.shape[2]}; expected square images")
        groups = image_groups(images)
        split = split_images(labels, groups, d["valid_fraction"], d["test_fraction"], d["seed"])
        members = {s: np.flatnonzero(split == s) for s in SPLITS}
        for s in SPLITS:
            if len(members[s]) < 2:
                raise DataError(f"{src.origin}: the {s} split holds {len(members[s])} image(s) of the {len(keep)} used; "
                                "expected at least 2 (more images, or other valid/test fractions)")
        arrays: dict[str, np.ndarray] = {"split": split, "original_index": keep.astype(np.int64),
                                         "digits": np.round(digits * 255).astype(np.uint8), "image_labels": labels}
        counts: dict[str, dict[str, int]] = {}
        placements = {"train": size["train_placements"], "valid": d["eval_placements"], "test": d["eval_placements"]}
        for vi, variant in enumerate(VARIANTS):
            counts[variant] = {}
            for si, s in enumerate(SPLITS):
                c = compose(digits, labels, members[s], placements[s], variant, d["canvas"], d["clutter"],
                            d["fragment"], np.random.default_rng([d["seed"], 2, vi, si]))
                key = f"{variant}_{s}"
                arrays.update({f"{key}_images": c.images, f"{key}_labels": c.labels, f"{key}_source": c.source,
                               f"{key}_box": c.box, f"{key}_clutter": c.clutter})
                counts[variant][s] = int(len(c.labels))
        out_dir.mkdir(parents=True, exist_ok=True)
        with aio.atomic_path(out_dir / "canvases.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        # the leak check the split promises: no source image (as digit or clutter) in two splits
        used = {s: set() for s in SPLITS}
        for variant in VARIANTS:
            for s in SPLITS:
                used[s] |= set(arrays[f"{variant}_{s}_source"].tolist())
                used[s] |= set(arrays[f"{variant}_{s}_clutter"].ravel().tolist()) - {-1}
        pixel_std = {v: float(arrays[f"{v}_train_images"].astype(np.float64).std() / 255.0) or 1.0 for v in VARIANTS}
        shared = {f"{a}-{b}": len(used[a] & used[b]) for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))}
        manifest = {
            "task": "glimpse", "source": d["source"], "origin": src.origin, "scale": params["scale"],
            "images_available": int(n_all), "images_used": int(len(keep)), "classes": int(labels.max()) + 1,
            "image_size": [int(images.shape[1]), int(images.shape[2])], "upsample": d["upsample"],
            "digit_size": int(digits.shape[1]), "canvas": d["canvas"], "clutter": d["clutter"], "fragment": d["fragment"],
            "images_per_split": {s: int(len(members[s])) for s in SPLITS},
            "identical_image_groups": int(len(groups) - len(np.unique(groups))),
            "placements": placements, "canvases": counts, "variants": list(VARIANTS),
            "shared_source_images": shared, "pixel_std": {v: round(x, 6) for v, x in pixel_std.items()},
            "on_digit_chance": round(float(digits.shape[1] ** 2) / d["canvas"] ** 2, 6),
        }
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared), cfg)

    # ---- models and training ----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        kind, opts = cfg["model"], dict(cfg["model_options"])
        mech_opts = {k: v for k, v in cfg["attention_options"].items() if k not in RUN_KEYS}
        if kind == "ram":
            model = RAM(1, data.classes, mechanism=cfg["attention"], attention_options=mech_opts,
                        **{k: v for k, v in opts.items() if k != "reinforce_weight"})
            model._reinforce_weight = float(opts.get("reinforce_weight", 1.0))
            return model
        if kind == "soft":
            return SoftSpatial(1, data.classes, data.side, mechanism=cfg["attention"], attention_options=mech_opts, **opts)
        if kind == "cnn":
            return FullViewCNN(1, data.classes, data.side, **opts)
        if kind == "mlp":
            return FullViewMLP(1, data.classes, data.side, **opts)
        raise ValueError(f"unknown glimpse model {kind!r}")

    def keep_on_device(self, data: Data, device: torch.device) -> int:
        # the cluttered variant trains on fresh canvases drawn on the host each epoch: only its fixed
        # validation and test canvases move
        splits = SPLITS if data.variant == "centred" else ("valid", "test")
        return make_resident(device, (data.x, data.y), splits)

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        size = cfg["train"]["batch_size"]
        x, y = data.x["train"], data.y["train"]
        if data.variant == "cluttered":   # fresh positions and clutter every epoch, drawn from `generator` only
            x, y = data.fresh_training_canvases(
                np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))))
            order = np.arange(len(y))
        else:
            order = data.train_order
        order = order[torch.randperm(len(order), generator=generator).numpy()]
        order = torch.from_numpy(order).to(x.device)   # once per epoch, not a host-to-device index per batch
        for start in range(0, len(order), size):
            index = order[start:start + size]
            yield x[index], y[index]

    def loss(self, model: nn.Module, batch, device: torch.device):
        x, y = (t.to(device, non_blocking=True) for t in batch)
        logits, extras = model(x)
        loss = F.cross_entropy(logits.float(), y)
        if "log_probs" in extras:
            # REINFORCE (Williams, 1992) with the learned baseline: reward 1 for the right class
            reward = (logits.argmax(-1) == y).float()
            baselines = extras["baselines"].float()
            # location t + 1 was drawn from state t: its advantage is the reward less the baseline of state t
            log_probs = extras["log_probs"].float()[:, 1:]
            advantage = (reward.unsqueeze(1) - baselines[:, :-1]).detach()
            reinforce = -(log_probs * advantage).sum(1).mean()
            loss = loss + F.mse_loss(baselines, reward.unsqueeze(1).expand_as(baselines)) \
                + getattr(model, "_reinforce_weight", 1.0) * reinforce
        return loss, int(x.shape[0])

    # ---- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, data: Data, split: str, device: torch.device) -> tuple[np.ndarray, dict]:
        preds, extras = [], {}
        x = data.x[split]
        for start in range(0, len(x), EVAL_BATCH):
            logits, ex = model(x[start:start + EVAL_BATCH].to(device))
            preds.append(logits.float().argmax(-1).cpu().numpy())
            for k in ("locations", "weights"):
                if k in ex:
                    extras.setdefault(k, []).append(ex[k].float().cpu().numpy())
        return np.concatenate(preds), {k: np.concatenate(v) for k, v in extras.items()}

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Data, cfg: dict, device: torch.device) -> float:
        from sklearn.metrics import accuracy_score

        pred, _ = self.predict(model, data, "valid", device)
        return float(accuracy_score(data.y["valid"].cpu().numpy(), pred))

    @staticmethod
    def glimpse_pixels(locations: np.ndarray, side: int) -> np.ndarray:
        """[..., 2] locations in [-1, 1] -> (row, col) pixel coordinates of the glimpse centres."""
        return (locations + 1.0) / 2.0 * side

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Data, cfg: dict, device: torch.device, out_dir: Path) -> dict:
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

        y = data.y["test"].cpu().numpy()
        pred, extras = self.predict(model, data, "test", device)
        box = data.box["test"]
        acc = float(accuracy_score(y, pred))
        labels = list(range(data.classes))
        metrics: dict[str, Any] = {
            "variant": data.variant, "accuracy": acc, "error": 1.0 - acc,
            "error_cluttered": None, "error_centred": None,
            "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
            "test_canvases": int(len(y)), "test_images": int(len(np.unique(data.source["test"]))),
            "on_digit": None, "on_digit_chance": float(data.manifest["on_digit_chance"]),
        }
        metrics[f"error_{data.variant}"] = 1.0 - acc
        cm = confusion_matrix(y, pred, labels=labels)
        write_items(out_dir, labels=y.astype(np.int32), predictions=np.asarray(pred).astype(np.int32))
        metrics["error_by_class"] = {str(c): (1.0 - cm[c, c] / cm[c].sum()) if cm[c].sum() else None for c in labels}
        arrays: dict[str, np.ndarray] = {"labels": y.astype(np.int8), "predictions": pred.astype(np.int8),
                                         "box": box.astype(np.int16), "source": data.source["test"].astype(np.int32),
                                         "canvas": np.int16(data.side), "variant": np.array(data.variant)}
        if "locations" in extras:                                   # RAM: where each glimpse was taken
            loc = extras["locations"]                                # [N, T, 2]
            px = self.glimpse_pixels(loc, data.side)
            inside = ((px[..., 0] >= box[:, None, 0]) & (px[..., 0] < box[:, None, 2])
                      & (px[..., 1] >= box[:, None, 1]) & (px[..., 1] < box[:, None, 3]))
            metrics["on_digit"] = float(inside[:, 1:].mean()) if loc.shape[1] > 1 else None
            metrics["on_digit_by_glimpse"] = {str(t + 1): float(inside[:, t].mean()) for t in range(loc.shape[1])}
            dist = np.linalg.norm(px - (box[:, None, :2] + box[:, None, 2:]) / 2.0, axis=-1)
            metrics["distance_to_digit_px"] = float(dist[:, -1].mean())
            arrays.update({"locations": loc.astype(np.float32), "locations_px": px.astype(np.float32),
                           "patch": np.int16(cfg["attention_options"].get("patch", 8)),
                           "scales": np.int16(cfg["attention_options"].get("scales", 3))})
        if "weights" in extras:                                     # soft attention over the feature-map cells
            w = extras["weights"]                                    # [N, S, g*g]
            g = int(round(np.sqrt(w.shape[-1])))
            cell = data.side / g
            centres = (np.arange(g) + 0.5) * cell
            rows = (centres[None, :] >= box[:, 0:1]) & (centres[None, :] < box[:, 2:3])      # [N, g]
            cols = (centres[None, :] >= box[:, 1:2]) & (centres[None, :] < box[:, 3:4])
            on = (rows[:, :, None] & cols[:, None, :]).reshape(len(y), 1, g * g)
            metrics["on_digit"] = float((w * on).sum(-1).mean())
            metrics["on_digit_by_glimpse"] = {str(t + 1): float((w[:, t] * on[:, 0]).sum(-1).mean())
                                              for t in range(w.shape[1])}
            arrays.update({"weights": w.astype(np.float16), "grid": np.int16(g)})
        show = min(int(cfg["eval"]["show"]), len(y))
        arrays["shown_images"] = data.raw["test"][:show]
        with aio.atomic_path(out_dir / "attention.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        lines = []
        for i in range(len(y)):
            item = {"index": i, "source_image": int(data.source["test"][i]), "label": int(y[i]),
                    "prediction": int(pred[i]), "correct": bool(y[i] == pred[i]), "box": box[i].tolist()}
            if "locations_px" in arrays:
                item["glimpses_px"] = np.round(arrays["locations_px"][i], 2).tolist()
            lines.append(json.dumps(item))
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")
        return round_floats(metrics, 5)


register(GlimpseTask())
