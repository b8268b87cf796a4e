"""Documents: hierarchical attention networks (HAN) against averaging, max-pooling and flat attention.

Data: the embedded synthetic reviews (data.py), whose label is decided by one label-bearing
sentence among distractors that share its vocabulary (gold sentence and words recorded), or real
JSON lines with `text` and `label`. Runs: HAN (word- and sentence-level attention with learned
context vectors over bi-GRU states), HAN-mean / HAN-max (the same encoders, averaging or max-pooling
at both levels), flat attention over all words, and the classical baseline: TF-IDF word + character
n-grams of the whole document text and a linear classifier (scikit-learn, baselines/tfidf.py). Metrics: accuracy, macro-F1 (scikit-learn), the
sentence-attention hit rate (share of documents whose most-attended sentence is the gold one) and
the word hit rate (share whose most-attended word of the gold sentence is a gold word).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ... import attention
from ... import io as aio
from ...errors import ParamsError
from ...metrics import sentence_hit_rate
from ...models.han import HAN, FlatAttention
from .. import register
from ..base import Task
from ..common import check_mechanism, check_mechanism_options, ordered_batches, to_device, write_items
from ...baselines import tfidf
from .data import (CLASSES, Document, DocumentError, generate_splits, label_word_counts, read_documents_jsonl, read_prepared,
                     stratified_split, to_jsonl, truncate)

SPLITS = ("train", "valid", "test")
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
MODELS = {"han": HAN, "flat": FlatAttention}
TEXTS = "texts.json"   # prepared: {split: [whole document text]} for the TF-IDF baseline


def attends(mechanism: str) -> bool:
    """Whether a run's mechanism pools (False: `none`, whose run pools by its `pooling` option)."""
    return attention.get_class(mechanism).attends


def pooling_of(spec: dict) -> str:
    """How a run pools at each level: 'attention' (its mechanism) or the `pooling` option of an attention-free run."""
    if not attends(spec["attention"]):
        return spec.get("options", {}).get("pooling", "mean")
    return "attention"


def weights_kind(pooling: str) -> str:
    return {"attention": "attention", "mean": "uniform (averaging)", "max": "max-pool share"}[pooling]


class Data:
    """Prepared documents, their token ids and the label and word vocabularies."""

    def __init__(self, prepared: Path) -> None:
        vocab = aio.read_json(prepared / "vocab.json")
        self.itos: list[str] = vocab["words"]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.labels: list[str] = vocab["labels"]
        self.label_index = {lab: i for i, lab in enumerate(self.labels)}
        self.docs = {split: read_prepared(prepared / f"{split}.jsonl") for split in SPLITS}
        self.ids = {split: [[[self.stoi.get(w, UNK) for w in s] for s in d.sentences] for d in docs]
                    for split, docs in self.docs.items()}
        self.y = {split: [self.label_index[d.label] for d in docs] for split, docs in self.docs.items()}
        self._prepared = Path(prepared)

    def texts(self, split: str) -> list[str]:
        """The whole text of each document (before truncation to max_sentences / max_words: texts.json of the
        prepare step); a data folder prepared before texts.json existed gives the truncated documents."""
        path = self._prepared / TEXTS
        if path.is_file():
            return aio.read_json(path)[split]
        return [d.text() for d in self.docs[split]]

    def batch(self, split: str, index) -> dict[str, torch.Tensor]:
        docs = [self.ids[split][i] for i in index]
        S = max(len(d) for d in docs)
        L = max(len(s) for d in docs for s in d)
        words = torch.zeros(len(docs), S, L, dtype=torch.long)
        word_len = torch.zeros(len(docs), S, dtype=torch.long)
        for b, doc in enumerate(docs):
            for s, sent in enumerate(doc):
                words[b, s, : len(sent)] = torch.tensor(sent)
                word_len[b, s] = len(sent)
        return {"words": words, "word_len": word_len, "label": torch.tensor([self.y[split][i] for i in index])}

    def ordered_batches(self, split: str, batch_size: int):
        """Batches of documents of similar size, for evaluation: yields (indices, batch)."""
        docs = self.docs[split]
        order = sorted(range(len(docs)), key=lambda i: (len(docs[i].sentences), docs[i].n_words))
        return ordered_batches(order, batch_size, lambda index: self.batch(split, index))


class Documents(Task):
    name = "documents"
    valid_metric = "valid_accuracy"
    headline = "accuracy"
    metric_columns = ("accuracy", "macro_f1", "sentence_hit_rate", "word_hit_rate")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        where = f"{origin}: tasks.documents"
        for run, spec in section["runs"].items():
            options = spec.get("options", {})
            if spec["model"] == tfidf.MODEL:
                # the TF-IDF + linear classifier baseline has no attention
                check_mechanism(f"{where}.runs.{run}", spec["model"], spec["attention"], attention.NO_ATTENTION)
                if options:
                    raise ParamsError(f"{where}.runs.{run}.options: the TF-IDF baseline takes no options here; set its "
                                      "n-grams, classifier and C under tasks.documents.models.tfidf")
                if tfidf.MODEL not in section["models"]:
                    raise ParamsError(f"{where}.models: missing key 'tfidf' (run {run!r} uses model 'tfidf'); expected "
                                      "its options, e.g. tfidf: {C: [0.1, 1.0, 10.0]}")
                continue
            if "pooling" in options and attends(spec["attention"]):
                raise ParamsError(f"{where}.runs.{run}.options.pooling: value {options['pooling']!r} is not allowed with "
                                  f"attention {spec['attention']!r}; expected no pooling option (the mechanism pools), "
                                  "or attention 'none' with pooling mean or max")
            if not attends(spec["attention"]) and set(options) - {"pooling"}:
                extra = sorted(set(options) - {"pooling"})[0]
                raise ParamsError(f"{where}.runs.{run}.options.{extra}: unknown option for attention "
                                  f"{spec['attention']!r}; allowed: pooling (mean | max)")
            check_mechanism(f"{where}.runs.{run}", spec["model"], spec["attention"], MODELS[spec["model"]].attention_needs)
            if attends(spec["attention"]):
                check_mechanism_options(f"{where}.runs.{run}", spec["attention"], options)
        for name, size in section["scales"].items():
            if size["min_sentences"] > size["max_sentences"]:
                raise ParamsError(f"{where}.scales.{name}.min_sentences: value {size['min_sentences']} is not allowed; "
                                  f"expected a number <= max_sentences ({size['max_sentences']})")
        data = section["data"]
        if data["source"] == "files":
            for split, value in data["files"].items():
                if not Path(value).is_file():
                    raise ParamsError(f"{where}.data.files.{split}: file {value!r} does not exist; expected a path to "
                                      "a JSON-lines file with 'text' and 'label' (gzip allowed)")
            split = data.get("split", {})
            if sum(split.get(s, 0.1) for s in ("valid", "test") if s not in data["files"]) >= 0.9:
                raise ParamsError(f"{where}.data.split: value {split!r} is not allowed; expected fractions that leave "
                                  "at least 10% of the training file for training")

    def _read_files(self, data: dict) -> dict[str, list[Document]]:
        files, lowercase = data["files"], data.get("lowercase", False)
        split_cfg, seed = data.get("split", {}), data.get("seed", 1234)
        train = read_documents_jsonl(files["train"], lowercase=lowercase)
        total = len(train)
        out = {}
        for name in ("test", "valid"):  # carve test first, then valid: fractions of the whole training file
            if name in files:
                out[name] = read_documents_jsonl(files[name], lowercase=lowercase)
            else:
                n_out = max(1, round(float(split_cfg.get(name, 0.1)) * total))
                train, out[name] = stratified_split(train, n_out, seed, name)
        out["train"] = train
        known = {d.label for d in train}
        for name in ("valid", "test"):
            if name not in files:
                continue
            bad = next((i for i, d in enumerate(out[name]) if d.label not in known), None)
            if bad is not None:
                lineno = _line_numbers(files[name])[bad]
                raise DocumentError(f"{files[name]}, line {lineno}: label {out[name][bad].label!r} does not occur in the "
                                    f"training file {files['train']}; expected one of: {', '.join(sorted(known)[:20])}")
        return {s: out[s] for s in SPLITS}

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["documents"]
        size, data = section["scales"][params["scale"]], section["data"]
        if data["source"] == "synthetic":
            splits = generate_splits({s: size[f"{s}_size"] for s in SPLITS}, seed=data.get("seed", 1234),
                                     min_sentences=size["min_sentences"], max_sentences=size["max_sentences"])
        else:
            splits = self._read_files(data)
        texts = {s: [d.text() for d in docs] for s, docs in splits.items()}   # whole documents: the TF-IDF baseline
        splits = {s: [truncate(d, size["max_sentences"], size["max_words"]) for d in docs] for s, docs in splits.items()}
        counts = Counter(w for d in splits["train"] for s in d.sentences for w in s)
        words = list(SPECIALS) + sorted(counts, key=lambda w: (-counts[w], w))[: data.get("max_vocab", 50000)]
        labels = list(CLASSES) if data["source"] == "synthetic" else sorted({d.label for d in splits["train"]})
        out_dir.mkdir(parents=True, exist_ok=True)
        for split, docs in splits.items():
            aio.write_text(out_dir / f"{split}.jsonl", to_jsonl(docs))
        aio.write_json(out_dir / "vocab.json", {"words": words, "labels": labels})
        aio.write_json(out_dir / TEXTS, texts)
        test = splits["test"]
        manifest = {
            "task": "documents", "source": data["source"], "scale": params["scale"],
            "documents": {s: len(d) for s, d in splits.items()}, "vocab": len(words), "labels": labels,
            "label_counts": {s: dict(sorted(Counter(d.label for d in docs).items())) for s, docs in splits.items()},
            "gold_sentences": {s: sum(d.gold_sentence is not None for d in docs) for s, docs in splits.items()},
            "sentences_per_document": {s: round(float(np.mean([len(d.sentences) for d in docs])), 3)
                                       for s, docs in splits.items()},
            "max_sentences": max(len(d.sentences) for docs in splits.values() for d in docs),
            "max_words": max(len(s) for docs in splits.values() for d in docs for s in d.sentences),
            # chance level of the sentence hit rate (a uniformly random pick) on the test split
            "chance_hit_rate": _chance(test),
        }
        if data["source"] == "synthetic":
            # how far counting label words gets: the class with the most label words (ties: a share each)
            manifest["label_word_majority_accuracy"] = round(float(np.mean([_majority_hit(d) for d in test])), 4)
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared))

    # ---- model and training -----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        kind = cfg["model"]
        if kind not in MODELS:
            raise ValueError(f"unknown documents model {kind!r}; expected one of: {', '.join(MODELS)}")
        options = dict(cfg["attention_options"])
        pooling = "attention" if attends(cfg["attention"]) else options.pop("pooling", "mean")
        return MODELS[kind](len(data.itos), len(data.labels), **cfg["model_options"], pooling=pooling,
                            attention=cfg["attention"], attention_options=options)

    def fit(self, data: Data, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device) -> dict:
        if cfg["model"] == tfidf.MODEL:   # closed form, outside the shared loop
            return tfidf.fit_run(data.texts("train"), data.y["train"], data.texts("valid"), data.y["valid"], cfg,
                                 run_dir, device)
        return super().fit(data, cfg, run_dir, state_dir, device)

    def load_trained(self, data: Data, cfg: dict, run_dir: Path, device: torch.device) -> nn.Module:
        if cfg["model"] == tfidf.MODEL:
            return tfidf.load_run(cfg, run_dir, device)
        return super().load_trained(data, cfg, run_dir, device)

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        """Shuffled, sorted by size within pools of 20 batches (less padding), batch order shuffled."""
        size = cfg["train"]["batch_size"]
        docs = data.docs["train"]
        perm = torch.randperm(len(docs), generator=generator).tolist()
        batches = []
        for start in range(0, len(perm), size * 20):
            pool = sorted(perm[start:start + size * 20], key=lambda i: (len(docs[i].sentences), docs[i].n_words))
            batches += [pool[i:i + size] for i in range(0, len(pool), size)]
        for j in torch.randperm(len(batches), generator=generator).tolist():
            yield data.batch("train", batches[j])

    def loss(self, model: nn.Module, batch: dict, device: torch.device):
        b = to_device(batch, device)
        logits, _, _ = model(b["words"], b["word_len"])
        return nn.functional.cross_entropy(logits.float(), b["label"]), int(b["label"].size(0))

    # ---- evaluation -------------------------------------------------------------------
    def predict(self, model: nn.Module, data: Data, split: str, device) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(predicted class ids, word weights [S, L] per document, sentence weights [S] per document)."""
        n = len(data.docs[split])
        pred = np.zeros(n, dtype=np.int64)
        words: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        sents: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        for index, batch in data.ordered_batches(split, 256):
            b = to_device(batch, device)
            logits, ww, sw = model(b["words"], b["word_len"])
            p = logits.argmax(-1).cpu().numpy()
            ww, sw = ww.float().cpu().numpy(), sw.float().cpu().numpy()
            for row, i in enumerate(index):
                doc = data.docs[split][i]
                pred[i] = p[row]
                S, L = len(doc.sentences), max(len(s) for s in doc.sentences)
                words[i], sents[i] = ww[row, :S, :L], sw[row, :S]
        return pred, words, sents

    @torch.no_grad()
    def validate(self, model, data: Data, cfg: dict, device) -> float:
        pred, _, _ = self.predict(model, data, "valid", device)
        return float(np.mean(pred == np.array(data.y["valid"])))

    @torch.no_grad()
    def evaluate(self, model, data: Data, cfg: dict, device, out_dir: Path) -> dict:
        from sklearn.metrics import accuracy_score, f1_score

        docs = data.docs["test"]
        y = np.array(data.y["test"])
        baseline = cfg["model"] == tfidf.MODEL
        if baseline:   # no sentence or word weights: the hit rates are None
            pred, word_w, sent_w = model.predict(data.texts("test")), None, None
            pooling = "none"
        else:
            pred, word_w, sent_w = self.predict(model, data, "test", device)
            pooling = model.pooling
        has_weights = pooling not in ("mean", "none")    # averaging has no preferred position
        gold = [d.gold_sentence for d in docs]
        with_gold = [i for i, g in enumerate(gold) if g is not None]
        hit = word_hit = gold_mass = None
        if has_weights and with_gold:
            hit = round(sentence_hit_rate([sent_w[i] for i in with_gold], [gold[i] for i in with_gold]), 4)
            gold_mass = round(float(np.mean([sent_w[i][gold[i]] / max(sent_w[i].sum(), 1e-12) for i in with_gold])), 4)
            worded = [i for i in with_gold if docs[i].gold_words]
            if worded:
                word_hit = round(float(np.mean([int(np.argmax(word_w[i][gold[i], : len(docs[i].sentences[gold[i]])]))
                                                in docs[i].gold_words for i in worded])), 4)
        self._export(out_dir, data, pred, word_w, sent_w, cfg["eval"]["show_documents"])
        write_items(out_dir, labels=y.astype(np.int32), predictions=np.asarray(pred).astype(np.int32))
        return {
            "accuracy": round(float(accuracy_score(y, pred)), 4),
            "macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
            "sentence_hit_rate": hit, "word_hit_rate": word_hit, "gold_sentence_weight": gold_mass,
            "chance_hit_rate": _chance(docs), "sentence_weights": None if baseline else weights_kind(pooling),
            "test_documents": len(docs), "documents_with_gold": len(with_gold),
            "accuracy_by_class": {data.labels[c]: round(float(np.mean(pred[y == c] == c)), 4)
                                  for c in range(len(data.labels)) if (y == c).any()},
            **({"classical_baseline": tfidf.describe(cfg["model_options"])} if baseline else {}),
        }

    @staticmethod
    def show_indices(docs: list[Document], k: int) -> list[int]:
        """The same k test documents for every run: the first ones with a gold sentence and 4 to 8 sentences."""
        good = [i for i, d in enumerate(docs) if d.gold_sentence is not None and 4 <= len(d.sentences) <= 8]
        rest = [i for i in range(len(docs)) if i not in set(good)]
        return (good + rest)[:k]

    def _export(self, out_dir: Path, data: Data, pred, word_w, sent_w, k: int) -> None:
        """attention.npz and samples.jsonl; without weights (the TF-IDF baseline: word_w and sent_w None) the
        shown documents carry their tokens, label and prediction only."""
        docs = data.docs["test"]
        arrays: dict[str, np.ndarray] = {
            "gold_sentence": np.array([-1 if d.gold_sentence is None else d.gold_sentence for d in docs], dtype=np.int64)}
        if sent_w is not None:
            arrays["top_sentence"] = np.array([int(np.argmax(w)) for w in sent_w], dtype=np.int64)
            arrays["gold_sentence_weight"] = np.array([w[d.gold_sentence] if d.gold_sentence is not None else np.nan
                                                       for w, d in zip(sent_w, docs)], dtype=np.float32)
        arrays["n_sentences"] = np.array([len(d.sentences) for d in docs], dtype=np.int64)
        for n, i in enumerate(self.show_indices(docs, k)):
            d = docs[i]
            S, L = len(d.sentences), max(len(s) for s in d.sentences)
            tokens = np.full((S, L), "", dtype=object)
            gold_words = np.zeros((S, L), dtype=np.int8)
            for s, sent in enumerate(d.sentences):
                tokens[s, : len(sent)] = sent
            if d.gold_sentence is not None and d.gold_words:
                gold_words[d.gold_sentence, list(d.gold_words)] = 1
            arrays.update({f"doc_{n}": np.array(i), f"tokens_{n}": tokens.astype(str)})
            if sent_w is not None:
                arrays.update({f"word_{n}": word_w[i].astype(np.float32), f"sentence_{n}": sent_w[i].astype(np.float32)})
            arrays.update({f"gold_{n}": np.array(arrays["gold_sentence"][i]), f"gold_words_{n}": gold_words,
                           f"label_{n}": np.array(d.label), f"pred_{n}": np.array(data.labels[pred[i]])})
        with aio.atomic_path(out_dir / "attention.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        lines = [json.dumps({"doc": i, "label": d.label, "pred": data.labels[pred[i]], "correct": bool(d.label == data.labels[pred[i]]),
                             "sentences": len(d.sentences), "gold_sentence": d.gold_sentence,
                             "top_sentence": None if sent_w is None else int(arrays["top_sentence"][i]),
                             "gold_weight": None if d.gold_sentence is None or sent_w is None
                             else round(float(sent_w[i][d.gold_sentence]), 4),
                             "text": d.text()}, ensure_ascii=False)
                 for i, d in enumerate(docs)]
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")


def _chance(docs: list[Document]) -> float | None:
    with_gold = [d for d in docs if d.gold_sentence is not None]
    return round(float(np.mean([1.0 / len(d.sentences) for d in with_gold])), 4) if with_gold else None


def _majority_hit(doc: Document) -> float:
    counts = label_word_counts(doc)
    top = max(counts.values())
    winners = [c for c, v in counts.items() if v == top]
    return (doc.label in winners) / len(winners)


def _line_numbers(path: str) -> list[int]:
    """1-based line numbers of the documents of a JSON-lines file (blank lines hold none)."""
    from .data import _read_lines

    return [n for n, line in enumerate(_read_lines(Path(path)), 1) if line.strip()]


register(Documents())
