"""Recommendation: factorization machines with and without attention over pairwise interactions.

Data: the embedded synthetic interactions (data.py: categorical fields, a factorization machine in
which only a few field pairs interact strongly, each pair's true importance recorded), or real
files named in params.yaml (the AFM authors' libFM-format Frappe / MovieLens-tag files, or a CSV
of categorical columns and a target). The target is a rating (regression: RMSE) or a click (binary:
log-loss and ROC-AUC; RMSE of the click probability too), chosen by `data.target`.

Runs: linear / logistic regression (scikit-learn, no interactions), FM, AFM (attention over the
pair vectors, from the attention registry), NFM. For models with attention, the Spearman
correlation between the mean attention per field pair and the true importances measures whether
the attention finds the pairs that matter.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import attention
from ... import io as aio
from ...errors import ParamsError
from ...device_data import make_resident
from ...models.afm import MODELS, build_model
from .. import register
from ..base import Task
from ..common import check_mechanism, write_items
from .data import SPLITS, encode, generate, pair_index, pair_names, read_files

log = logging.getLogger("attnbench.recsys")

EVAL_BATCH = 8192
DIGITS = 6


class Data:
    """Prepared arrays as tensors, plus what the prepare step recorded about the fields."""

    def __init__(self, prepared: Path) -> None:
        prepared = Path(prepared)
        self.manifest = aio.read_json(prepared / "manifest.json")
        self.meta = aio.read_json(prepared / "meta.json")
        with np.load(prepared / "data.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        self.x = {s: torch.from_numpy(arrays[f"x_{s}"].astype(np.int64)) for s in SPLITS}
        self.y = {s: torch.from_numpy(arrays[f"y_{s}"].astype(np.float32)) for s in SPLITS}
        self.oracle = {s: arrays[f"oracle_{s}"] for s in SPLITS if f"oracle_{s}" in arrays}
        self.importance = arrays.get("importance")          # [P] or absent (real data)
        self.strong = arrays.get("strong")
        self.fields: list[str] = self.meta["fields"]
        self.target: str = self.meta["target"]
        self.n_features = int(np.sum(self.meta["sizes"]))
        self.vocab: dict[str, list[str]] = self.meta["vocab"]
        self.offsets = np.asarray(self.meta["offsets"], dtype=np.int64)

    @property
    def n_fields(self) -> int:
        return len(self.fields)

    def describe(self, row: np.ndarray) -> str:
        """An example's features as `field=value` text."""
        return " ".join(f"{f}={self.vocab[f][int(i - o)]}" for f, i, o in zip(self.fields, row, self.offsets))


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), DIGITS)


# scikit-learn and SciPy are imported where they are used: every CLI call imports every task module,
# and these two would add seconds to the start of the other tasks' jobs.
def _metric(name: str):
    import sklearn.metrics

    return getattr(sklearn.metrics, name)


def rmse(y, pred) -> float:
    return float(_metric("root_mean_squared_error")(y, pred))


def mae(y, pred) -> float:
    return float(_metric("mean_absolute_error")(y, pred))


def logloss(y, prob) -> float:
    return float(_metric("log_loss")(y, prob, labels=[0, 1]))


def auc(y, prob) -> float | None:
    return float(_metric("roc_auc_score")(y, prob)) if len(np.unique(y)) == 2 else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None
    return _rounded(spearmanr(a[ok], b[ok]).statistic)


def _recall_at_k(scores: np.ndarray, strong: np.ndarray) -> float | None:
    """Share of the truly strong pairs among the top-|strong| pairs by `scores`."""
    k = int(strong.sum())
    if k == 0 or not np.all(np.isfinite(scores)):
        return None
    top = np.argsort(-scores, kind="stable")[:k]
    return _rounded(strong[top].mean())


class Recsys(Task):
    name = "recsys"
    valid_metric = "valid_score"  # -RMSE for ratings, -log-loss for clicks (higher is better)
    headline = "rmse"
    higher_is_better = False   # the headline (test RMSE) is an error
    metric_columns = ("rmse", "logloss", "auc", "pair_spearman", "strong_pair_recall", "interaction_spearman", "mae")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        for run, spec in section["runs"].items():
            check_mechanism(f"{origin}: tasks.recsys.runs.{run}", spec["model"], spec["attention"],
                            MODELS[spec["model"]].attention_needs)
            if spec["model"] == "linear" and spec.get("options"):
                raise ParamsError(f"{origin}: tasks.recsys.runs.{run}.options: the linear model takes no attention "
                                  "options; set its regularisation under tasks.recsys.models.linear")
        data = section["data"]
        if data["source"] == "synthetic":
            n = len(data["synthetic"]["fields"])
            strong = data["synthetic"]["strong_pairs"]
            if strong > n * (n - 1) // 2:
                raise ParamsError(f"{origin}: tasks.recsys.data.synthetic.strong_pairs: value {strong} is not allowed; "
                                  f"expected at most {n * (n - 1) // 2}, the number of pairs of {n} fields")
        else:
            files = data["files"]
            for split in SPLITS:
                if not Path(files[split]).is_file():
                    raise ParamsError(f"{origin}: tasks.recsys.data.files.{split}: file {files[split]!r} does not exist; "
                                      f"expected a path to a {files['format']} file (gzip allowed)")
            if files["format"] == "csv" and "target_column" not in files:
                raise ParamsError(f"{origin}: tasks.recsys.data.files: missing key 'target_column' "
                                  "(required for format csv: the name of the target column)")

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["recsys"]
        size, data = section["scales"][params["scale"]], section["data"]
        target = data["target"]
        if data["source"] == "synthetic":
            syn = data["synthetic"]
            raw = generate({s: size[f"{s}_size"] for s in SPLITS}, syn["fields"], factors=syn["factors"],
                           strong_pairs=syn["strong_pairs"], noise=syn["noise"], target=target, seed=data.get("seed", 2017),
                           user_item_strong=syn.get("user_item_strong", False))
        else:
            raw = read_files(data["files"], target)
        enc = encode(raw)
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            arrays[f"x_{split}"] = enc.x[split].astype(np.int32)
            arrays[f"y_{split}"] = enc.y[split]
            if raw.splits[split].oracle is not None:
                arrays[f"oracle_{split}"] = raw.splits[split].oracle.astype(np.float64)
        if raw.importance is not None:
            arrays["importance"] = raw.importance.astype(np.float64)
            arrays["contribution_std"] = raw.contribution_std.astype(np.float64)
            arrays["strong"] = raw.strong
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with aio.atomic_path(out_dir / "data.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        aio.write_json(out_dir / "meta.json", {"fields": raw.fields, "target": target, "offsets": enc.offsets.tolist(),
                                               "sizes": enc.sizes.tolist(), "vocab": enc.vocab})
        manifest = {
            "task": "recsys", "source": data["source"], "scale": params["scale"], "target": target,
            "examples": {s: int(len(enc.y[s])) for s in SPLITS}, "fields": raw.fields,
            "field_sizes": dict(zip(raw.fields, (enc.sizes - 1).tolist())), "features": int(enc.sizes.sum()),
            "pairs": len(pair_names(raw.fields)), "unseen_share": enc.unseen,
            "ground_truth": raw.importance is not None, **{f"generator_{k}": v for k, v in raw.info.items()},
        }
        if raw.importance is not None:
            manifest["strong_pairs"] = [n for n, s in zip(pair_names(raw.fields), raw.strong) if s]
            manifest["oracle"] = self._oracle_metrics(raw.splits["test"].target, raw.splits["test"].oracle, target)
        if target == "rating":
            manifest["target_mean"] = {s: _rounded(float(enc.y[s].mean())) for s in SPLITS}
            manifest["target_std"] = {s: _rounded(float(enc.y[s].std())) for s in SPLITS}
        else:
            manifest["click_rate"] = {s: _rounded(float(enc.y[s].mean())) for s in SPLITS}
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    @staticmethod
    def _oracle_metrics(y: np.ndarray, oracle: np.ndarray, target: str) -> dict:
        if target == "rating":
            return {"rmse": _rounded(rmse(y, oracle)), "mae": _rounded(mae(y, oracle))}
        return {"rmse": _rounded(rmse(y, oracle)), "logloss": _rounded(logloss(y, oracle)), "auc": _rounded(auc(y, oracle))}

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared))

    # ---- model and training -----------------------------------------------------------
    def _bias_init(self, data: Data) -> float:
        mean = float(data.y["train"].double().mean())
        if data.target == "rating":
            return mean
        mean = min(max(mean, 1e-4), 1 - 1e-4)
        return float(np.log(mean / (1 - mean)))

    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        kind = cfg["model"]
        if kind not in MODELS:
            raise ValueError(f"unknown recsys model {kind!r}")
        options = {} if kind == "linear" else cfg["model_options"]
        model = build_model(kind, data.n_features, data.n_fields, options, attention=cfg["attention"],
                            attention_options=cfg["attention_options"], bias_init=self._bias_init(data))
        model.target = data.target  # rating -> squared error, click -> logistic loss (not a weight)
        return model

    def fit(self, data: Data, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device) -> dict:
        if cfg["model"] != "linear":
            return super().fit(data, cfg, run_dir, state_dir, device)
        return self._fit_linear(data, cfg, run_dir, device)

    def _one_hot(self, data: Data, split: str):
        import scipy.sparse as sp

        x = data.x[split].numpy()
        n, f = x.shape
        return sp.csr_matrix((np.ones(n * f), x.ravel(), np.arange(0, n * f + 1, f)), shape=(n, data.n_features))

    def _fit_linear(self, data: Data, cfg: dict, run_dir: Path, device: torch.device) -> dict:
        """Ridge (ratings) or L2 logistic regression (clicks) on the one-hot features, the
        regularisation strength picked on the validation split from `models.linear.alphas`."""
        from sklearn.linear_model import LogisticRegression, Ridge

        from ...training import save_trained, seed_everything

        seed_everything(cfg["seed"])
        t0 = time.perf_counter()
        x_train, y_train = self._one_hot(data, "train"), data.y["train"].numpy().astype(np.float64)
        best = None
        for alpha in cfg["model_options"]["alphas"]:
            if data.target == "rating":
                est = Ridge(alpha=alpha, solver="sparse_cg", tol=1e-6, max_iter=2000).fit(x_train, y_train)
                coef, intercept = est.coef_, float(est.intercept_)
            else:
                est = LogisticRegression(C=1.0 / alpha, solver="lbfgs", max_iter=2000, tol=1e-6).fit(x_train, y_train)
                coef, intercept = est.coef_[0], float(est.intercept_[0])
            model = self.build_model(cfg, data)
            with torch.no_grad():
                model.bias.fill_(intercept)
                model.weights.weight.copy_(torch.from_numpy(coef.astype(np.float32)).unsqueeze(1))
            # the closed-form fit lives on the host: validate it there (its weights are saved from the CPU anyway)
            score = self.validate(model.eval(), data, cfg, torch.device("cpu"))
            log.info("linear alpha=%g: %s %.5f", alpha, self.valid_metric, score)
            if best is None or score > best[0]:
                best = (score, alpha, model)
        score, alpha, model = best
        seconds = time.perf_counter() - t0
        train_loss = self._loss_value(model, data, "train")
        rows = [{"epoch": 1, "train_loss": round(train_loss, 6), "valid_metric": round(score, 6), "best_valid": round(score, 6),
                 "seconds": round(seconds, 3), "examples_per_s": round(len(y_train) / max(seconds, 1e-9), 1), "lr": ""}]
        log.info("linear: alpha %g picked on validation (%s %.5f)", alpha, self.valid_metric, score)
        return save_trained(model, cfg, run_dir, rows, device=device, best_epoch=1, best_valid=score, train_seconds=seconds)

    def keep_on_device(self, data: Data, device: torch.device) -> int:
        return make_resident(device, (data.x, data.y))

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        size = cfg["train"]["batch_size"]
        n = len(data.y["train"])
        # the order goes where the data is once per epoch: indexing device data with a host index copies it every batch
        perm = torch.randperm(n, generator=generator).to(data.y["train"].device)
        for start in range(0, n, size):
            index = perm[start:start + size]
            yield data.x["train"][index], data.y["train"][index]

    def _criterion(self, target: str):
        return nn.functional.mse_loss if target == "rating" else nn.functional.binary_cross_entropy_with_logits

    def loss(self, model: nn.Module, batch, device: torch.device):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        pred = model(x).float()
        loss = self._criterion(model.target)(pred, y) + model.penalty()
        return loss, int(y.numel())

    # ---- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def _predict(self, model: nn.Module, data: Data, split: str, device) -> np.ndarray:
        out = [model(x.to(device)).float().cpu() for x in data.x[split].split(EVAL_BATCH)]
        return torch.cat(out).double().numpy()

    def _loss_value(self, model, data: Data, split: str) -> float:
        pred = self._predict(model, data, split, torch.device("cpu"))
        y = data.y[split].double().numpy()
        if data.target == "rating":
            return float(np.mean((pred - y) ** 2))
        return logloss(y, _sigmoid(pred))

    @torch.no_grad()
    def validate(self, model, data: Data, cfg: dict, device) -> float:
        pred = self._predict(model, data, "valid", device)
        y = data.y["valid"].double().cpu().numpy()
        if data.target == "rating":
            return -rmse(y, pred)
        return -logloss(y, _sigmoid(pred))

    @torch.no_grad()
    def _pair_stats(self, model, data: Data, device) -> dict[str, np.ndarray | None]:
        """Mean and std of the attention per field pair, and the std of each pair's contribution, on the test split."""
        n_pairs = len(pair_index(data.n_fields)[0])
        att_sum = att_sq = con_sum = con_sq = None
        first = None
        n = 0
        for x in data.x["test"].split(EVAL_BATCH):
            x = x.to(device)
            a = model.pair_attention(x)
            c = model.pair_contributions(x)
            if a is not None:
                a = a.double().cpu()
                if first is None:
                    first = a[:64].float().numpy()
                att_sum = a.sum(0) if att_sum is None else att_sum + a.sum(0)
                att_sq = (a * a).sum(0) if att_sq is None else att_sq + (a * a).sum(0)
            if c is not None:
                c = c.double().cpu()
                con_sum = c.sum(0) if con_sum is None else con_sum + c.sum(0)
                con_sq = (c * c).sum(0) if con_sq is None else con_sq + (c * c).sum(0)
            n += x.shape[0]
        nan = np.full(n_pairs, np.nan)

        def moments(total, squares):
            if total is None:
                return nan, nan
            mean = (total / n).numpy()
            var = np.maximum((squares / n).numpy() - mean ** 2, 0.0)
            return mean, np.sqrt(var)

        att_mean, att_std = moments(att_sum, att_sq)
        _, con_std = moments(con_sum, con_sq)
        return {"attention_mean": att_mean, "attention_std": att_std, "contribution_std": con_std,
                "attention_examples": first}

    @torch.no_grad()
    def evaluate(self, model, data: Data, cfg: dict, device, out_dir: Path) -> dict:
        pred = self._predict(model, data, "test", device)
        y = data.y["test"].double().cpu().numpy()
        metrics: dict[str, Any] = {"target": data.target, "test_examples": int(len(y))}
        if data.target == "rating":
            metrics.update(rmse=_rounded(rmse(y, pred)), mae=_rounded(mae(y, pred)), logloss=None, auc=None)
        else:
            prob = _sigmoid(pred)
            metrics.update(rmse=_rounded(rmse(y, prob)), mae=_rounded(mae(y, prob)), logloss=_rounded(logloss(y, prob)),
                           auc=_rounded(auc(y, prob)))
        stats = self._pair_stats(model, data, device)
        has_attention = attention.get_class(cfg["attention"]).attends   # only a model with attention takes one
        truth = data.importance
        metrics["has_attention"] = bool(has_attention)
        metrics["pair_spearman"] = _spearman(stats["attention_mean"], truth) if has_attention and truth is not None else None
        metrics["strong_pair_recall"] = (_recall_at_k(stats["attention_mean"], data.strong)
                                         if has_attention and truth is not None else None)
        metrics["interaction_spearman"] = (_spearman(stats["contribution_std"], truth)
                                           if truth is not None and np.all(np.isfinite(stats["contribution_std"])) else None)
        metrics["interaction_strong_recall"] = (_recall_at_k(stats["contribution_std"], data.strong)
                                                if truth is not None else None)
        if has_attention:
            a = np.clip(stats["attention_mean"], 1e-12, 1.0)
            metrics["attention_entropy"] = _rounded(float(-(a * np.log(a)).sum() / np.log(len(a))))
        else:
            metrics["attention_entropy"] = None
        oracle = data.manifest.get("oracle") or {}
        metrics["oracle_rmse"] = oracle.get("rmse")
        self._export(out_dir, data, stats, pred, cfg["eval"]["samples"])
        # per test example: the target and the prediction the RMSE scored (the click probability for clicks)
        write_items(out_dir, target=y.astype(np.float32),
                    prediction=(pred if data.target == "rating" else _sigmoid(pred)).astype(np.float32))
        return metrics

    def _export(self, out_dir: Path, data: Data, stats: dict, pred: np.ndarray, samples: int) -> None:
        """attention.npz: per field pair (np.triu_indices order) the true importance, the mean and std of
        the attention, the spread of the pair's term, the first test examples' attention; samples.jsonl."""
        rows, cols = pair_index(data.n_fields)
        n_pairs = len(rows)
        truth = data.importance if data.importance is not None else np.full(n_pairs, np.nan)
        arrays = {
            "fields": np.array(data.fields), "pair_rows": rows.astype(np.int64), "pair_cols": cols.astype(np.int64),
            "importance": truth.astype(np.float64),
            "strong": (data.strong if data.strong is not None else np.zeros(n_pairs, dtype=bool)).astype(bool),
            "attention_mean": stats["attention_mean"].astype(np.float64),
            "attention_std": stats["attention_std"].astype(np.float64),
            "contribution_std": stats["contribution_std"].astype(np.float64),
            "attention_examples": (stats["attention_examples"] if stats["attention_examples"] is not None
                                   else np.zeros((0, n_pairs), dtype=np.float32)),
        }
        with aio.atomic_path(out_dir / "attention.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        names = pair_names(data.fields)
        x = data.x["test"].cpu().numpy()
        shown = data.y["test"].cpu().numpy()
        lines = []
        for i in range(min(samples, len(shown))):
            item = {"features": data.describe(x[i]), "target": round(float(shown[i]), 4),
                    "prediction": round(float(pred[i] if data.target == "rating" else _sigmoid(pred[i])), 4)}
            if stats["attention_examples"] is not None and i < len(stats["attention_examples"]):
                top = int(np.argmax(stats["attention_examples"][i]))
                item["top_pair"] = names[top]
                item["top_weight"] = round(float(stats["attention_examples"][i][top]), 4)
            lines.append(json.dumps(item, ensure_ascii=False))
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


register(Recsys())
