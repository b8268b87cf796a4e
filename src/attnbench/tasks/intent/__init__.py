"""Intent: short-utterance intent classification with pooling and attention, and a small BERT.

Data: the embedded synthetic chatbot corpus (data.py: 24 intents, gold keyword positions), or
a CLINC150-shaped JSON file or a `text,label` CSV (data.py's readers). Runs: embeddings with mean / max
pooling, an LSTM's last state, attention pooling with any registry mechanism (the notes'
self-attention `self_dot`, `additive` with a learned query, `token_location`, `external`), a
Transformer encoder ([CLS] or attention pooling) from scratch, and the same encoder pre-trained
with masked-LM on the training text (+ unlabelled generator text) first (BERT); and the classical
baseline, TF-IDF word + character n-grams and a linear classifier fitted by scikit-learn (baselines/tfidf.py).
Metrics: accuracy, macro-F1 (scikit-learn), attention mass on the gold keyword tokens relative
to a uniform distribution, share of utterances whose most-attended token is a keyword, and the
masked-LM accuracy of the pre-trained encoder.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ... import io as aio
from ...attention import NO_ATTENTION
from ...attention import available as available_mechanisms
from ...config import config_hash
from ...errors import ParamsError
from ...metrics import attention_mass_ratio, attention_top1_hit
from ...models.bert import PAD, SPECIALS, UNK, mask_tokens
from ...models.classifier import POOLINGS, IntentClassifier
from ...optim import Adam
from .. import register
from ..base import Task
from ..common import TokenVocab, check_mechanism, long_tensors, write_items
from ...baselines import tfidf
from .data import (Utterance, generate_splits, generate_unlabelled, read_clinc_json, read_csv, read_csv_files, read_jsonl,
                   write_jsonl)

log = logging.getLogger("attnbench.intent")
SPLITS = ("train", "valid", "test")


class Vocab(TokenVocab):
    unk = UNK

    @classmethod
    def build(cls, sentences, min_count: int) -> "Vocab":
        counts = Counter(tok for s in sentences for tok in s)
        words = sorted((t for t, n in counts.items() if n >= min_count and t not in SPECIALS),
                       key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + words)


class Data:
    """Prepared utterances as token-id tensors (truncated to max_len), labels as class ids."""

    def __init__(self, prepared: Path, max_len: int) -> None:
        prepared = Path(prepared)
        self.vocab = Vocab(aio.read_json(prepared / "vocab.json"))
        self.labels: list[str] = aio.read_json(prepared / "labels.json")
        self.label_id = {l: i for i, l in enumerate(self.labels)}
        self.max_len = max_len
        self.utts = {s: read_jsonl(prepared / f"{s}.jsonl") for s in SPLITS}
        self.ids = {s: long_tensors([self.vocab.encode(u.tokens[:max_len]) or [UNK] for u in us])
                    for s, us in self.utts.items()}
        self.y = {s: torch.tensor([self.label_id[u.label] for u in us]) for s, us in self.utts.items()}
        self._prepared = prepared
        self._unlabelled: list[torch.Tensor] | None = None
        self.init_state: dict | None = None  # pre-trained weights build_model starts from (BERT's fine-tuning)

    @property
    def unlabelled(self) -> list[torch.Tensor]:
        if self._unlabelled is None:
            path = self._prepared / "unlabelled.txt"
            lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
            self._unlabelled = long_tensors([self.vocab.encode(line.split()[: self.max_len])
                                             for line in lines if line.strip()])
        return self._unlabelled

    def texts(self, split: str) -> list[str]:
        """The whole utterances of a split (not truncated to max_len), tokens joined by spaces."""
        return [u.text for u in self.utts[split]]

    def batch(self, split: str, index) -> tuple[torch.Tensor, torch.Tensor]:
        return (pad_sequence([self.ids[split][i] for i in index], batch_first=True, padding_value=PAD),
                self.y[split][index])

    def ordered(self, split: str, size: int = 256):
        order = sorted(range(len(self.ids[split])), key=lambda i: len(self.ids[split][i]))
        for start in range(0, len(order), size):
            index = order[start:start + size]
            yield index, self.batch(split, index)


def _pad(seqs: list[torch.Tensor]) -> torch.Tensor:
    return pad_sequence(seqs, batch_first=True, padding_value=PAD)


class Intent(Task):
    name = "intent"
    valid_metric = "valid_accuracy"
    headline = "accuracy"
    metric_columns = ("accuracy", "macro_f1", "keyword_ratio", "keyword_top1", "mlm_accuracy")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        models = section["models"]
        for name, opts in models.items():
            where = f"{origin}: tasks.intent.models.{name}"
            if opts["encoder"] == tfidf.MODEL:
                _check_tfidf(opts, where)
                continue
            enc, pool = opts["encoder"], opts["pooling"]
            if pool not in POOLINGS[enc]:
                raise ParamsError(f"{where}.pooling: value {pool!r} is not allowed for encoder {enc!r}; "
                                  f"expected one of: {', '.join(POOLINGS[enc])}")
            if "mlm" in opts and enc != "transformer":
                raise ParamsError(f"{where}.mlm: masked-LM pre-training is not allowed for encoder {enc!r}; "
                                  "expected encoder: transformer")
            if opts.get("residual") and pool != "attention":
                raise ParamsError(f"{where}.residual: value True is not allowed with pooling {pool!r}; "
                                  "expected pooling: attention")
            pa = opts.get("pool_attention")
            if pa is not None and pa not in available_mechanisms():
                raise ParamsError(f"{where}.pool_attention: value {pa!r} is not allowed; expected one of: "
                                  f"{', '.join(available_mechanisms())}")
        for run, spec in section["runs"].items():
            where = f"{origin}: tasks.intent.runs.{run}"
            if spec["model"] not in models:
                raise ParamsError(f"{where}.model: value {spec['model']!r} is not allowed; expected one of the "
                                  f"models of tasks.intent.models: {', '.join(models)}")
            opts, mech = models[spec["model"]], spec["attention"]
            if opts["encoder"] == tfidf.MODEL:   # the TF-IDF + linear classifier baseline has no attention
                check_mechanism(where, spec["model"], mech, NO_ATTENTION)
                if spec.get("options"):
                    raise ParamsError(f"{where}.options: the TF-IDF baseline takes no attention options; set its "
                                      f"n-grams, classifier and C under tasks.intent.models.{spec['model']}")
            else:   # the Transformer's layers (its pooling mechanism is the model's pool_attention), a pooling's, or none
                check_mechanism(where, spec["model"], mech,
                                IntentClassifier.attention_needs(opts["encoder"], opts["pooling"], opts.get("query", "self")))
        data = section["data"]
        where = f"{origin}: tasks.intent.data"
        source = data["source"]
        columns = f"{data.get('text_column', 'text')},{data.get('label_column', 'label')}"
        if source != "csv":
            for key in ("files", "text_column", "label_column"):
                if key in data:
                    raise ParamsError(f"{where}.{key}: not allowed for source {source!r}; expected source: csv")
        if source == "csv" and "files" in data:
            if "path" in data:
                raise ParamsError(f"{where}: keys 'path' and 'files' are both set; expected one of them (path: one CSV "
                                  "file, files: one CSV file per split)")
            for split, value in data["files"].items():
                if not Path(value).is_file():
                    raise ParamsError(f"{where}.files.{split}: file {value!r} does not exist; expected a CSV file with "
                                      f"columns {columns}")
        elif source != "synthetic":
            path = data.get("path")
            if not path:
                raise ParamsError(f"{where}.path: missing key 'path' for source {source!r}; expected the path of the "
                                  "data file" + (" (or files: one CSV file per split)" if source == "csv" else ""))
            if not Path(path).is_file():
                raise ParamsError(f"{where}.path: file {path!r} does not exist; expected a "
                                  + ("CLINC150-shaped JSON file" if source == "clinc_json" else f"CSV file with columns {columns}"))

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["intent"]
        size, data = section["scales"][params["scale"]], section["data"]
        source = data["source"]
        unlabelled: list[str] = []
        if source == "synthetic":
            seed = data.get("seed", 4321)
            kw = {"max_len": size["max_len"], "min_len": min(3, size["max_len"]), "typo_rate": data.get("typo_rate", 0.04),
                  "confuser_rate": data.get("confuser_rate", 0.0)}
            splits = generate_splits({"train": size["train_size"], "valid": size["valid_size"],
                                      "test": size["test_size"]}, seed=seed, **kw)
            unlabelled = generate_unlabelled(size.get("unlabelled_size", 0), seed=seed, **kw)
        elif source == "clinc_json":
            raw = read_clinc_json(data["path"])
            splits = {"train": raw["train"], "valid": raw["val"], "test": raw["test"]}
        else:
            kw = {"seed": data.get("split_seed", 0), "val_fraction": data.get("val_fraction", 0.1),
                  "test_fraction": data.get("test_fraction", 0.2), "text_column": data.get("text_column", "text"),
                  "label_column": data.get("label_column", "label")}
            raw = read_csv_files(data["files"], **kw) if "files" in data else read_csv(data["path"], **kw)
            splits = {"train": raw["train"], "valid": raw["val"], "test": raw["test"]}
        vocab = Vocab.build((u.tokens for u in splits["train"]), data.get("min_count", 2))
        labels = sorted({u.label for u in splits["train"]})
        out_dir.mkdir(parents=True, exist_ok=True)
        for split, utts in splits.items():
            write_jsonl(utts, out_dir / f"{split}.jsonl")
        aio.write_text(out_dir / "unlabelled.txt", "".join(t + "\n" for t in unlabelled))
        aio.write_json(out_dir / "vocab.json", vocab.itos)
        aio.write_json(out_dir / "labels.json", labels)
        lengths = [len(u.tokens) for us in splits.values() for u in us]
        manifest = {
            "task": "intent", "source": source, "scale": params["scale"],
            "utterances": {s: len(u) for s, u in splits.items()}, "unlabelled": len(unlabelled),
            "labels": len(labels), "vocab": len(vocab), "max_tokens": max(lengths),
            "mean_tokens": round(sum(lengths) / len(lengths), 2),
            "gold_keywords": {s: all(u.keywords is not None for u in us) for s, us in splits.items()},
            "truncated_to_max_len": sum(n > size["max_len"] for n in lengths),
        }
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared), cfg["size"]["max_len"])

    # ---- model and training -----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        model = IntentClassifier(len(data.vocab), len(data.labels), **cfg["model_options"],
                                 max_len=cfg["size"]["max_len"], attention=cfg["attention"],
                                 attention_options=cfg["attention_options"])
        if data.init_state is not None:
            missing, unexpected = model.load_state_dict(data.init_state, strict=False)
            if unexpected:
                raise RuntimeError(f"pre-trained weights do not fit {cfg['run']}: unexpected {unexpected}")
        return model

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        size = cfg["train"]["batch_size"]
        perm = torch.randperm(len(data.ids["train"]), generator=generator).tolist()
        for start in range(0, len(perm), size):
            yield data.batch("train", perm[start:start + size])

    def loss(self, model: nn.Module, batch, device: torch.device):
        tokens, y = batch
        logits, _ = model(tokens.to(device))
        return nn.functional.cross_entropy(logits.float(), y.to(device)), int(y.numel())

    def _predict(self, model, data: Data, split: str, device, need_weights: bool = False):
        preds = np.zeros(len(data.ids[split]), dtype=np.int64)
        weights: list[np.ndarray | None] = [None] * len(preds)
        for index, (tokens, _) in data.ordered(split):
            logits, extra = model(tokens.to(device), need_weights=need_weights)
            preds[index] = logits.argmax(-1).cpu().numpy()
            if need_weights and extra["weights"] is not None:
                w = extra["weights"].float().cpu().numpy()
                for row, i in enumerate(index):
                    weights[i] = w[row, : len(data.ids[split][i])]
        return preds, weights

    @torch.no_grad()
    def validate(self, model, data: Data, cfg: dict, device) -> float:
        preds, _ = self._predict(model, data, "valid", device)
        return float((preds == data.y["valid"].numpy()).mean())

    # ---- the TF-IDF baseline (closed form, no epochs) and BERT's pre-training inside fit ----
    @staticmethod
    def is_tfidf(cfg: dict) -> bool:
        return cfg["model_options"].get("encoder") == tfidf.MODEL

    def fit(self, data: Data, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device) -> dict:
        from ...training import fit as shared_fit

        if self.is_tfidf(cfg):
            return tfidf.fit_run(data.texts("train"), data.y["train"].numpy(), data.texts("valid"),
                                 data.y["valid"].numpy(), cfg, run_dir, device)
        if "mlm" not in cfg["model_options"]:
            return shared_fit(self, data, cfg, run_dir, state_dir, device)
        pre = self._pretrain(data, cfg, Path(state_dir), device)
        data.init_state = pre["model"]
        try:
            info = shared_fit(self, data, cfg, run_dir, state_dir, device)
        finally:
            data.init_state = None
        info = {**info, "finetune_seconds": info["train_seconds"], "pretrain_seconds": pre["seconds"],
                "train_seconds": round(info["train_seconds"] + pre["seconds"], 2),
                "pretrain_epochs": len(pre["log"]), "pretrain_log": pre["log"]}
        aio.write_json(Path(run_dir) / "train_info.json", info)
        return info

    def load_trained(self, data: Data, cfg: dict, run_dir: Path, device: torch.device) -> nn.Module:
        if self.is_tfidf(cfg):
            return tfidf.load_run(cfg, run_dir, device)
        return super().load_trained(data, cfg, run_dir, device)

    def _mlm_accuracy(self, model, data: Data, seqs: list[torch.Tensor], prob: float, device) -> float:
        """Masked-LM accuracy on `seqs` with one fixed masking (the same for every run and epoch)."""
        gen = torch.Generator().manual_seed(20190601)
        right = total = 0
        model.eval()
        with torch.no_grad():
            for start in range(0, len(seqs), 256):
                inputs, targets = mask_tokens(_pad(seqs[start:start + 256]), len(data.vocab), prob, gen)
                logits = model.mlm_logits(inputs.to(device))
                chosen = targets != -100
                right += int((logits.argmax(-1).cpu()[chosen] == targets[chosen]).sum())
                total += int(chosen.sum())
        return right / max(total, 1)

    @staticmethod
    def _pretrain_key(cfg: dict) -> str:
        """What pre-training depends on (not the fine-tuning's epochs, patience or evaluation)."""
        size = {k: v for k, v in cfg["size"].items() if k != "epochs"}
        train = {k: v for k, v in cfg["train"].items() if k != "patience"}
        return config_hash({"task": cfg["task"], "seed": cfg["seed"], "data": cfg["data"], "size": size, "train": train,
                            "model_options": cfg["model_options"], "attention_options": cfg["attention_options"]})

    def _pretrain(self, data: Data, cfg: dict, state_dir: Path, device: torch.device) -> dict:
        """Masked-LM pre-training of the run's encoder on train + unlabelled text; cached in
        state_dir/pretrained.pt for this configuration (a resumed run does not pre-train again)."""
        from ...training import load_checkpoint, seed_everything, TrainingError

        path = state_dir / "pretrained.pt"
        key = self._pretrain_key(cfg)
        if path.is_file():
            try:
                state = load_checkpoint(path)
                if state.get("config_hash") == key:
                    log.info("%s: using the masked-LM pre-training in %s", cfg["run"], path)
                    return state
            except TrainingError as exc:
                log.warning("%s; pre-training again", exc)
        opts = cfg["model_options"]["mlm"]
        prob, epochs = opts.get("mask_prob", 0.15), cfg["size"]["pretrain_epochs"]
        seed = cfg["seed"]
        seed_everything(seed + 7919)
        model = self.build_model(cfg, data).to(device)
        params = [p for n, p in model.named_parameters() if not n.startswith("out.")]
        optimizer = Adam(params, lr=opts.get("lr", cfg["train"]["lr"]))
        corpus = data.ids["train"] + data.unlabelled
        size, rows, t0 = cfg["train"]["batch_size"], [], time.perf_counter()
        for epoch in range(1, epochs + 1):
            model.train()
            gen = torch.Generator().manual_seed(seed * 100_003 + 50_000 + epoch)
            perm = torch.randperm(len(corpus), generator=gen).tolist()
            total = torch.zeros((), dtype=torch.float64, device=device)   # read once per epoch, not per step
            count = torch.zeros((), dtype=torch.float64, device=device)
            for start in range(0, len(perm), size):
                inputs, targets = mask_tokens(_pad([corpus[i] for i in perm[start:start + size]]),
                                              len(data.vocab), prob, gen)
                logits = model.mlm_logits(inputs.to(device))
                loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten(),
                                                   ignore_index=-100)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg["train"]["clip_norm"])
                optimizer.step()
                n = (targets != -100).sum()
                total, count = total + loss.detach().double() * n, count + n
            if not torch.isfinite(total):
                raise TrainingError(f"intent/{cfg['run']} seed {seed}: masked-LM loss became nan or infinite "
                                    f"in pre-training epoch {epoch}; lower models.{cfg['model']}.mlm.lr")
            total, count = total.item(), count.item()
            acc = self._mlm_accuracy(model, data, data.ids["valid"], prob, device)
            rows.append({"epoch": epoch, "mlm_loss": round(total / max(count, 1), 6), "valid_mlm_accuracy": round(acc, 6)})
            log.info("%s seed %d pre-training epoch %d/%d: masked-LM loss %.4f, valid masked-LM accuracy %.4f",
                     cfg["run"], seed, epoch, epochs, rows[-1]["mlm_loss"], acc)
        test_acc = self._mlm_accuracy(model, data, data.ids["test"], prob, device)
        valid_acc = rows[-1]["valid_mlm_accuracy"] if rows else self._mlm_accuracy(model, data, data.ids["valid"], prob, device)
        model.mlm_accuracy.copy_(torch.tensor([valid_acc, test_acc]))
        state = {"config_hash": key, "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                                               if not k.startswith("out.")},
                 "log": rows, "seconds": round(time.perf_counter() - t0, 2)}
        aio.torch_save(state, path)
        return state

    # ---- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, data: Data, cfg: dict, device, out_dir: Path) -> dict:
        from sklearn.metrics import accuracy_score, f1_score

        y = data.y["test"].numpy()
        if self.is_tfidf(cfg):   # no token weights: the keyword metrics are None
            preds, weights = model.predict(data.texts("test")), [None] * len(y)
        else:
            preds, weights = self._predict(model, data, "test", device, need_weights=True)
        utts = data.utts["test"]
        has_weights = all(w is not None for w in weights)
        gold = [None if u.keywords is None else [k for k in u.keywords if k < len(data.ids["test"][i])]
                for i, u in enumerate(utts)]
        ratio = top1 = None
        if has_weights and all(g is not None for g in gold):
            ratio = round(attention_mass_ratio(weights, gold), 4)
            top1 = round(attention_top1_hit(weights, gold), 4)
        mlm = None
        if getattr(model, "mlm_head", None) is not None and float(model.mlm_accuracy[1]) >= 0:
            mlm = round(float(model.mlm_accuracy[1]), 4)
        labels = list(range(len(data.labels)))
        right = preds == y
        subsets = {"clean": np.array([not u.distractors and not u.typo_in_keyword for u in utts]),
                   "confuser": np.array([bool(u.distractors) for u in utts]),
                   "keyword_typo": np.array([u.typo_in_keyword for u in utts])}
        self._export(model, data, cfg, device, out_dir, preds, weights, gold)
        write_items(out_dir, labels=y.astype(np.int32), predictions=np.asarray(preds).astype(np.int32))
        extra = {"classical_baseline": tfidf.describe(cfg["model_options"])} if self.is_tfidf(cfg) else {}
        return {
            "accuracy": round(float(accuracy_score(y, preds)), 4),
            "macro_f1": round(float(f1_score(y, preds, labels=labels, average="macro", zero_division=0)), 4),
            "keyword_ratio": ratio, "keyword_top1": top1, "mlm_accuracy": mlm,
            # accuracy on the utterances without confuser and typo, with another intent's keywords, with a
            # typo in a keyword (synthetic data; None where a subset is empty)
            "subset_accuracy": {k: round(float(right[m].mean()), 4) if m.any() else None for k, m in subsets.items()}
            if all(g is not None for g in gold) else None,
            "token_weights": {"attention": "attention", "saliency": "max-pool saliency",
                              "cls": "[CLS] attention"}.get(self._weight_kind(cfg), None),
            "test_utterances": int(len(y)), "classes": len(data.labels), **extra,
        }

    @staticmethod
    def _weight_kind(cfg: dict) -> str | None:
        pool = cfg["model_options"].get("pooling")
        return {"attention": "attention", "max": "saliency", "cls": "cls"}.get(pool)

    @staticmethod
    def highlight_indices(utts: list[Utterance], k: int) -> list[int]:
        """The same k test utterances for every run: 8–18 tokens, distinct intents, alternately
        without and with a confuser clause (when the data have confusers), then any others."""
        mid = [i for i, u in enumerate(utts) if 8 <= len(u.tokens) <= 18]
        pools = [[i for i in mid if not utts[i].distractors], [i for i in mid if utts[i].distractors]]
        picks: list[int] = []
        seen: set[str] = set()
        turn = 0
        while len(picks) < k and any(pools):
            pool = pools[turn % 2] or pools[(turn + 1) % 2]
            i = pool.pop(0)
            if utts[i].label not in seen:
                picks.append(i)
                seen.add(utts[i].label)
                turn += 1
            elif not any(utts[j].label not in seen for p in pools for j in p):
                seen.clear()  # every intent shown once: allow repeats
        rest = [i for i in range(len(utts)) if i not in set(picks)]
        return (picks + rest)[:k]

    def _export(self, model, data: Data, cfg: dict, device, out_dir: Path, preds, weights, gold) -> None:
        utts = data.utts["test"]
        arrays: dict[str, np.ndarray] = {"labels": np.array(data.labels)}
        picks = self.highlight_indices(utts, cfg["eval"]["highlight_utterances"])
        for n, i in enumerate(picks):
            ids = data.ids["test"][i]
            tokens = list(utts[i].tokens[: len(ids)])
            mark = np.zeros(len(tokens), dtype=np.int8)
            mark[gold[i] or []] = 1
            arrays[f"tokens_{n}"] = np.array(tokens)
            arrays[f"known_{n}"] = (ids != UNK).numpy().astype(np.int8)
            arrays[f"gold_{n}"] = mark
            arrays[f"distractor_{n}"] = np.isin(np.arange(len(tokens)), utts[i].distractors).astype(np.int8)
            arrays[f"label_{n}"] = np.array(utts[i].label)
            arrays[f"pred_{n}"] = np.array(data.labels[preds[i]])
            if weights[i] is not None:
                arrays[f"weights_{n}"] = weights[i].astype(np.float32)
            if cfg["model_options"].get("encoder") == "transformer":
                _, extra = model(ids.unsqueeze(0).to(device), need_weights=True)
                arrays[f"heads_{n}"] = extra["heads"][0].float().cpu().numpy().astype(np.float16)
        with aio.atomic_path(out_dir / "attention.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        lines = []
        for i, u in enumerate(utts):
            w = weights[i]
            item = {"text": u.text, "label": u.label, "pred": data.labels[preds[i]], "correct": bool(preds[i] == data.y["test"][i]),
                    "tokens": len(u.tokens), "keywords": gold[i], "distractors": list(u.distractors),
                    "typo_in_keyword": u.typo_in_keyword,
                    "top": None if w is None else int(np.argmax(w))}
            if w is not None and gold[i]:
                item["keyword_mass"] = round(float(w[gold[i]].sum()), 4)
            lines.append(json.dumps(item, ensure_ascii=False))
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")


def _check_tfidf(opts: dict, where: str) -> None:
    """What the schema cannot say about the TF-IDF baseline's options."""
    for key in ("word_ngrams", "char_ngrams"):
        lo, hi = opts.get(key, tfidf.DEFAULTS[key])
        if lo > hi:
            raise ParamsError(f"{where}.{key}: value {[lo, hi]!r} is not allowed; expected [min, max] with min <= max")


register(Intent())
