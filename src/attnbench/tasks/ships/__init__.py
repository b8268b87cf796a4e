"""Ships: inshore ship segmentation with task partitioning and CNN attention.

Four classes per pixel (mask ids): 0 sea, 1 land, 2 hull, 3 bow/stern. The hard case is the
inshore ship, moored against the coast or a pier with a hull coloured like the land.

Runs (params.yaml tasks.ships.runs):
* shallow (model `shallow`): a few full-resolution 3x3 convolutions trained on bow/stern alone
  (binary cross-entropy);
* deep (model `deep`): an encoder-decoder FCN trained on the four classes (cross-entropy), alone or
  with channel (`se`), CBAM spatial (`cbam_spatial`), non-local (`scaled_dot` over the bottleneck's
  pixels) or external (`external`) attention;
* task partitioning (model `partition`, mechanism `task_partition`): ONE run trains both nets
  together. Each step the deep net gets its four-class loss; its bow/stern probability (detached,
  >= threshold, dilated) is the region in which the shallow net's bow/stern loss is counted; the
  final bow/stern map is the shallow net's, switched off outside that region. Training both in one
  run (rather than reusing the `deep` run's checkpoint) keeps every run self-contained: no edge
  between runs in the Snakemake/DVC DAG, no stale-checkpoint cases, resume and early stopping of the
  shared loop apply unchanged, and the deep run stays an independent baseline. The cost is training a
  second deep net (the grid's budget counts it).

  Deep first (run option `deep_first_epochs: K`, default 0 = both nets from the first step): the
  paper's order, in which the coarse map must be meaningful before it gates anything. For the first K
  epochs only the deep net's four-class loss is trained; the shallow net is not even run, so its
  weights, BatchNorm statistics and Adam state stay untouched; from epoch K+1 both losses, as above.
  Without it the early gate is noise (an untrained deep net's dilated region) and the shallow net's
  first updates are spent on random regions. The phase follows from the epoch number alone
  (`Task.start_epoch`), so a resumed run lands in the right phase. The warm-up epochs are the task's
  `warmup_epochs`: the shared loop logs their validation score (the gated map of a shallow net that has
  not trained yet) but neither takes their checkpoint as the best nor counts them against the patience,
  so early stopping cannot end a run inside the warm-up nor return a model with an untrained shallow
  net; the loop caps K at epochs - 1 (at smoke scale the warm-up shrinks rather than eating the run).
  After the warm-up the deep net keeps training at the same learning rate, neither frozen nor slowed:
  its loss does not depend on the shallow net (the gate is detached), so further training only
  sharpens the gate, and it keeps the deep half's budget equal to the `deep` run's. Measured (README,
  ships): at the default 10 epochs the warm-up only takes epochs from the shallow half and loses; at 20
  epochs it beats joint training on two seeds but ties the shallow net, so params.yaml keeps K=0.

Metrics: per-class IoU and mIoU from scikit-learn's confusion matrix; bow/stern IoU (plus precision
and recall); bow/stern IoU on inshore ships only (pixels within `eval.ship_margin` px of an inshore
ship; offshore likewise), from the generator's per-pixel ship kinds (not available for real data).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from ... import io as aio
from ...errors import ParamsError
from ...device_data import make_resident
from ...metrics import binary_iou, segmentation_scores
from ...models.segmenter import BOW_STERN, DeepFCN, ShallowFCN, TaskPartition
from .. import register
from ..base import Task
from ..common import check_mechanism, write_items
from .data import CLASSES, SHIP_KIND, Tiles, generate, read_folder

log = logging.getLogger("attnbench.ships")

SPLITS = ("train", "valid", "test")
MODELS = {"shallow": ShallowFCN, "deep": DeepFCN, "partition": TaskPartition}
EVAL_BATCH = 64
MEAN, STD = 0.45, 0.25


class Data:
    def __init__(self, prepared: Path, cfg: dict) -> None:
        prepared = Path(prepared)
        self.manifest = aio.read_json(prepared / "manifest.json")
        with np.load(prepared / "tiles.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        self.images = {s: torch.from_numpy(arrays[f"images_{s}"]) for s in SPLITS}   # uint8 [N, S, S, 3]
        self.masks = {s: torch.from_numpy(arrays[f"masks_{s}"].astype(np.int64)) for s in SPLITS}
        self.kinds = {s: arrays[f"kinds_{s}"] for s in SPLITS}
        self.has_kinds = bool(self.manifest.get("ship_kinds", False))
        self.show = show_tiles(arrays["masks_test"], arrays["kinds_test"], int(cfg["eval"]["show_tiles"]))
        names = self.manifest.get("test_names") or []
        self.show_names = [str(names[i]) if i < len(names) else f"test tile {i}" for i in self.show]
        freq = np.asarray(self.manifest["class_pixels"]["train"], dtype=np.float64)
        freq = np.maximum(freq / freq.sum(), 1e-4)
        power = float(cfg["train"]["class_balance"])
        w = freq ** -power
        self.class_weights = torch.tensor(w / w[np.argmax(freq)], dtype=torch.float32)   # commonest class: 1
        fg = freq[BOW_STERN]
        self.pos_weight = torch.tensor(((1 - fg) / fg) ** power, dtype=torch.float32)

    @staticmethod
    def tensor(images: torch.Tensor) -> torch.Tensor:
        return (images.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    value = float(value)
    return None if not np.isfinite(value) else round(value, digits)


def _near(kind_maps: np.ndarray, kind: int, margin: int) -> np.ndarray:
    """Pixels within `margin` px of a ship of `kind`, per tile."""
    hit = kind_maps == kind
    if margin <= 0:
        return hit
    struct = np.zeros((1, 3, 3), bool)
    struct[0] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(hit, structure=struct, iterations=margin)


class Ships(Task):
    name = "ships"
    valid_metric = "valid_bowstern_iou"
    headline = "bowstern_iou"
    higher_is_better = True
    metric_columns = ("bowstern_iou", "bowstern_iou_inshore", "bowstern_iou_offshore", "miou", "iou_sea",
                      "iou_land", "iou_hull", "iou_bow_stern", "bowstern_precision", "bowstern_recall")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        d = section["data"]
        if d["source"] == "files" and "files" not in d:
            raise ParamsError(f"{origin}: tasks.ships.data: missing key 'files' (required with source: files)")
        for scale, size in section["scales"].items():
            if size["size"] % 8:
                raise ParamsError(f"{origin}: tasks.ships.scales.{scale}.size: value {size['size']!r} is not allowed; "
                                  "expected a multiple of 8 (the deep net downsamples three times)")
        for run, spec in section["runs"].items():
            model, mech = spec["model"], spec["attention"]
            if model not in section["models"]:
                raise ParamsError(f"{origin}: tasks.ships.runs.{run}.model: value {model!r} is not allowed: it has no entry "
                                  f"under tasks.ships.models; expected one of: {', '.join(section['models'])}")
            # by capability: the deep net takes any mechanism over a feature map, the partition net a gate
            check_mechanism(f"{origin}: tasks.ships.runs.{run}", model, mech, MODELS[model].attention_needs)
            if not MODELS[model].trains_in_stages and "deep_first_epochs" in spec.get("options", {}):
                raise ParamsError(f"{origin}: tasks.ships.runs.{run}.options.deep_first_epochs: not allowed for model "
                                  f"{model!r}; expected only on a model that trains in stages (task partitioning: "
                                  f"{', '.join(m for m, cls in MODELS.items() if cls.trains_in_stages)})")

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["ships"]
        d, size = section["data"], section["scales"][params["scale"]]
        s = size["size"]
        names: dict[str, list[str]] = {}
        if d["source"] == "synthetic":
            seeds = np.random.SeedSequence(d["seed"]).spawn(3)
            split = {}
            for name, seq in zip(SPLITS, seeds):
                n = size[f"{name}_size"]
                split[name] = generate(n, s, int(seq.generate_state(1)[0]), d.get("synthetic", {}), progress=True)
                names[name] = [f"{name}-{i}" for i in range(n)]
        else:
            f = d["files"]
            tiles, tile_names = read_folder(f["images"], f["masks"], s)
            n = len(tile_names)
            order = np.random.default_rng(f.get("split_seed", 0)).permutation(n)
            n_valid = max(1, int(round(n * f.get("valid_fraction", 0.1))))
            n_test = max(1, int(round(n * f.get("test_fraction", 0.2))))
            if n - n_valid - n_test < 1:
                raise ParamsError(f"{f['images']}: {n} tile(s) of {s}x{s} px cannot fill train, valid and test splits; "
                                  "expected more or larger images (or a smaller scale size)")
            parts = {"valid": order[:n_valid], "test": order[n_valid:n_valid + n_test], "train": order[n_valid + n_test:]}
            split = {k: Tiles(tiles.images[v], tiles.masks[v], tiles.kinds[v], {"inshore": None, "offshore": None})
                     for k, v in parts.items()}
            names = {k: [tile_names[i] for i in v] for k, v in parts.items()}
        out_dir.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for k, t in split.items():
            arrays.update({f"images_{k}": t.images, f"masks_{k}": t.masks, f"kinds_{k}": t.kinds})
        with aio.atomic_path(out_dir / "tiles.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        manifest = {
            "task": "ships", "source": d["source"], "scale": params["scale"], "tile_size": s, "classes": list(CLASSES),
            "ship_kinds": d["source"] == "synthetic", "kind_ids": list(SHIP_KIND),
            "splits": {k: len(t.masks) for k, t in split.items()},
            "class_pixels": {k: np.bincount(t.masks.ravel(), minlength=len(CLASSES)).tolist() for k, t in split.items()},
            "ships": {k: t.ships for k, t in split.items()},
            "test_names": names["test"],
        }
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared), cfg)

    # ---- models and training ----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        model = self._build(cfg)
        # loss weights from the training split's class frequencies: buffers, so model.to(device) moves them,
        # but not persistent ones (not saved with the weights)
        model.register_buffer("_class_weights", data.class_weights, persistent=False)
        model.register_buffer("_pos_weight", data.pos_weight, persistent=False)
        return model

    @staticmethod
    def _build(cfg: dict) -> nn.Module:
        kind, opts, mech = cfg["model"], cfg["model_options"], cfg["attention"]
        if kind == "shallow":
            return ShallowFCN(width=opts["width"], layers=opts["layers"])
        if kind == "deep":
            return DeepFCN(classes=len(CLASSES), widths=opts["widths"], convs=opts["convs"], skips=opts["skips"],
                           mechanism=mech, options=cfg["attention_options"])
        if kind == "partition":
            deep, shallow = opts["deep"], opts["shallow"]
            a = {"threshold": 0.3, "dilation": 2, **cfg["attention_options"]}
            return TaskPartition(DeepFCN(classes=len(CLASSES), widths=deep["widths"], convs=deep["convs"],
                                         skips=deep["skips"]),
                                 ShallowFCN(width=shallow["width"], layers=shallow["layers"]),
                                 threshold=a["threshold"], dilation=a["dilation"], mechanism=mech)
        raise ValueError(f"unknown ships model {kind!r}")

    def warmup_epochs(self, cfg: dict) -> int:
        return int(cfg["attention_options"].get("deep_first_epochs", 0)) if MODELS[cfg["model"]].trains_in_stages else 0

    def start_epoch(self, model: nn.Module, cfg: dict, epoch: int) -> None:
        if model.trains_in_stages:
            model.train_shallow = epoch > self.warmup_epochs(cfg)

    def keep_on_device(self, data: Data, device: torch.device) -> int:
        return make_resident(device, (data.images, data.masks))

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        size = cfg["train"]["batch_size"]
        n = len(data.masks["train"])
        perm = torch.randperm(n, generator=generator)
        flips = torch.randint(0, 8, (n,), generator=generator)   # the 8 symmetries of the square (read on the host)
        perm = perm.to(data.masks["train"].device)   # once per epoch, not a host-to-device index per batch
        for start in range(0, n, size):
            idx = perm[start:start + size]
            x, y = data.tensor(data.images["train"][idx]), data.masks["train"][idx]
            if cfg["train"]["augment"]:
                f = flips[start:start + size]
                x, y = _dihedral(x, f), _dihedral(y.unsqueeze(1), f)[:, 0]
            yield {"x": x, "y": y}

    def loss(self, model: nn.Module, batch: dict, device: torch.device):
        x, y = batch["x"].to(device), batch["y"].to(device)
        target = (y == BOW_STERN).float()
        pos_weight, class_weights = model._pos_weight, model._class_weights
        if model.outputs == "bowstern":
            logit, _ = model(x)
            return F.binary_cross_entropy_with_logits(logit.float(), target, pos_weight=pos_weight), int(x.shape[0])
        if model.trains_in_stages and not model.train_shallow:   # deep-first warm-up
            logits, _ = model.deep(x)
            return F.cross_entropy(logits.float(), y, weight=class_weights), int(x.shape[0])
        if model.outputs == "partition":
            out, _ = model(x)
            coarse = F.cross_entropy(out["logits"].float(), y, weight=class_weights)
            region = out["region"].float()
            fine = F.binary_cross_entropy_with_logits(out["fine"].float(), target, pos_weight=pos_weight,
                                                      reduction="none")
            fine = (fine * region).sum() / region.sum().clamp_min(1.0)
            return coarse + fine, int(x.shape[0])
        logits, _ = model(x)
        return F.cross_entropy(logits.float(), y, weight=class_weights), int(x.shape[0])

    # ---- prediction and evaluation ----------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, data: Data, split: str, device: torch.device,
                index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per pixel: `classes` (4-class map, -1 where the run has none), `bowstern` (bool), `map`
        (the attention map shown, or absent), plus the task-partitioning parts."""
        images = data.images[split] if index is None else data.images[split][torch.as_tensor(index)]
        out: dict[str, list] = {}
        for start in range(0, len(images), EVAL_BATCH):
            x = data.tensor(images[start:start + EVAL_BATCH]).to(device)
            parts = self._predict_batch(model, x)
            for k, v in parts.items():
                out.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    @staticmethod
    def _predict_batch(model: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
        size = x.shape[-2:]
        if model.outputs == "bowstern":
            logit, _ = model(x)
            prob = torch.sigmoid(logit.float())
            return {"classes": np.full(prob.shape, -1, np.int8), "bowstern": (prob >= 0.5).cpu().numpy(),
                    "prob": prob.cpu().numpy().astype(np.float16)}
        if model.outputs == "partition":
            out, extras = model(x)
            probs = torch.softmax(out["logits"].float(), 1)
            fine = torch.sigmoid(out["fine"].float())
            region = out["region"]
            final = (fine >= 0.5) & region
            base = probs[:, :BOW_STERN].argmax(1)                  # where the final map says no bow/stern
            classes = torch.where(final, torch.full_like(base, BOW_STERN), base)
            return {"classes": classes.cpu().numpy().astype(np.int8), "bowstern": final.cpu().numpy(),
                    "coarse_bowstern": (probs.argmax(1) == BOW_STERN).cpu().numpy(),
                    "fine_bowstern": (fine >= 0.5).cpu().numpy(), "region": region.cpu().numpy(),
                    "map": extras["coarse_prob"].cpu().numpy().astype(np.float16),
                    "prob": (fine * region).cpu().numpy().astype(np.float16)}
        logits, extras = model(x)
        probs = torch.softmax(logits.float(), 1)
        classes = probs.argmax(1)
        out = {"classes": classes.cpu().numpy().astype(np.int8), "bowstern": (classes == BOW_STERN).cpu().numpy(),
               "prob": probs[:, BOW_STERN].cpu().numpy().astype(np.float16)}
        if "spatial_map" in extras:
            m = extras["spatial_map"].float().unsqueeze(1)
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)[:, 0]
            out["map"] = m.cpu().numpy().astype(np.float16)
        return out

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Data, cfg: dict, device: torch.device) -> float:
        pred = self.predict(model, data, "valid", device)
        iou = binary_iou(data.masks["valid"].cpu().numpy() == BOW_STERN, pred["bowstern"])
        return float(iou) if iou is not None else 0.0

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Data, cfg: dict, device: torch.device, out_dir: Path) -> dict:
        gold = data.masks["test"].cpu().numpy()
        pred = self.predict(model, data, "test", device)
        gold_bs = gold == BOW_STERN
        metrics: dict[str, Any] = {}
        if (pred["classes"] >= 0).all():
            seg = segmentation_scores(gold, pred["classes"], CLASSES)
            metrics["miou"], metrics["pixel_accuracy"], metrics["confusion"] = seg["miou"], seg["pixel_accuracy"], seg["confusion"]
            for c in CLASSES:
                metrics[f"iou_{c}"] = seg["iou"][c]
        else:   # the shallow net predicts bow/stern only
            metrics.update({"miou": None, "pixel_accuracy": None, "confusion": None})
            metrics.update({f"iou_{c}": None for c in CLASSES})
            metrics["iou_bow_stern"] = binary_iou(gold_bs, pred["bowstern"])
        metrics["bowstern_iou"] = binary_iou(gold_bs, pred["bowstern"])
        # per tile, the bow/stern pixels both masks mark and either marks: the IoU pools them, and the findings'
        # paired bootstrap resamples tiles from them (items.npz)
        intersection = (gold_bs & pred["bowstern"]).reshape(len(gold), -1).sum(1)
        union = (gold_bs | pred["bowstern"]).reshape(len(gold), -1).sum(1)
        tp = float(intersection.sum())
        metrics["bowstern_precision"] = tp / pred["bowstern"].sum() if pred["bowstern"].any() else None
        metrics["bowstern_recall"] = tp / gold_bs.sum() if gold_bs.any() else None
        margin = int(cfg["eval"]["ship_margin"])
        for kind, label in ((2, "inshore"), (1, "offshore")):
            if data.has_kinds:
                near = _near(data.kinds["test"], kind, margin)
                metrics[f"bowstern_iou_{label}"] = binary_iou(gold_bs[near], pred["bowstern"][near])
                metrics[f"{label}_pixels"] = int(near.sum())
            else:
                metrics[f"bowstern_iou_{label}"] = None
        if "coarse_bowstern" in pred:   # the two halves of task partitioning, for the report's analysis
            metrics["coarse_bowstern_iou"] = binary_iou(gold_bs, pred["coarse_bowstern"])
            metrics["fine_bowstern_iou_ungated"] = binary_iou(gold_bs, pred["fine_bowstern"])
            metrics["region_share"] = float(pred["region"].mean())
            metrics["region_recall"] = float(pred["region"][gold_bs].mean()) if gold_bs.any() else None
            if data.has_kinds:
                near = _near(data.kinds["test"], 2, margin)
                metrics["coarse_bowstern_iou_inshore"] = binary_iou(gold_bs[near], pred["coarse_bowstern"][near])
                metrics["fine_bowstern_iou_inshore_ungated"] = binary_iou(gold_bs[near], pred["fine_bowstern"][near])
        metrics["test_tiles"] = int(len(gold))
        write_items(out_dir, intersection=intersection, union=union)
        self._export(data, pred, out_dir)
        return _round(metrics, 4)

    def _export(self, data: Data, pred: dict, out_dir: Path) -> None:
        show = data.show
        shown = torch.as_tensor(show)
        arrays = {"tiles": show, "tile_names": np.array(data.show_names), "image": data.images["test"][shown].cpu().numpy(),
                  "gold": data.masks["test"][shown].cpu().numpy().astype(np.int8),
                  "kind": data.kinds["test"][show].astype(np.int8), "classes": pred["classes"][show],
                  "bowstern": pred["bowstern"][show], "prob": pred["prob"][show]}
        for key in ("map", "region"):
            if key in pred:
                arrays[key] = pred[key][show]
        with aio.atomic_path(out_dir / "attention.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        gold_bs = data.masks["test"].cpu().numpy() == BOW_STERN
        lines = []
        for i in range(min(len(gold_bs), 40)):
            g, p = gold_bs[i], pred["bowstern"][i]
            lines.append(json.dumps({"tile": i, "gold_bowstern_px": int(g.sum()), "pred_bowstern_px": int(p.sum()),
                                     "bowstern_iou": _round(binary_iou(g, p)),
                                     "inshore_ship_px": int((data.kinds["test"][i] == 2).sum())}))
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")


def show_tiles(masks: np.ndarray, kinds: np.ndarray, k: int) -> np.ndarray:
    """The fixed test tiles the report shows: most inshore bow/stern pixels first (any bow/stern for
    real data, which has no ship kinds); ties broken by tile order."""
    focus = (masks == BOW_STERN) & ((kinds == 2) if kinds.any() else True)
    score = focus.reshape(len(masks), -1).sum(1)
    return np.sort(np.argsort(-score, kind="stable")[:min(k, len(score))]).astype(np.int64)


def _dihedral(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply symmetry k (0..7: 4 rotations x optional flip) of the square to each sample of x [B, C, H, W]."""
    out = x.clone()
    for i in range(len(x)):
        t = x[i]
        if int(k[i]) >= 4:
            t = t.flip(-1)
        out[i] = torch.rot90(t, int(k[i]) % 4, dims=(-2, -1))
    return out


register(Ships())
