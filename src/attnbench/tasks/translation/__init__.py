"""Translation: bi-GRU encoder–decoders with every attention mechanism, and a Transformer.

Data: the embedded synthetic language pair (data.py) with gold word alignments, or real
line-aligned files / TSV named in params.yaml, raw text tokenised by the pipeline if the data spec
says so (preprocess.py). Metrics: sacreBLEU BLEU (signature kept), chrF, BLEU per source-length
bucket, alignment error rate (AER) of the attention against gold links. When the pipeline tokenised
the corpus, BLEU and chrF are scored on detokenised output against the raw references (case-
insensitively when lowercased) and BLEU on the pipeline's tokens is kept as `bleu_tok`.

Decoding: greedy (validation, and the headline test figures). With `eval.beam_size` > 1 the test set
is also beam-searched (models.beam; length normalisation `eval.length_norm` with exponent
`eval.length_penalty`) and scored the same way under `bleu_beam`, `chrf_beam`, `exact_match_beam`
(and `bleu_tok_beam`), beside the unchanged greedy figures.

`max_len` (per scale) leaves training pairs with longer sources out (the manifest counts them);
validation and test pairs are kept and scored whole, however long.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ... import io as aio
from ...errors import ParamsError
from ...metrics import alignment_error_rate, argmax_alignment, corpus_bleu, corpus_chrf
from . import preprocess
from ...models.seq2seq import BOS, EOS, PAD, UNK, RNNSeq2Seq
from ...models.transformer import TransformerSeq2Seq
from .. import register
from ..base import Task
from ..common import TokenVocab, check_mechanism, long_tensors, ordered_batches, to_device
from .data import Pair, bucket_labels, generate_splits, length_bucket, read_pairs_jsonl, read_parallel, write_pairs_jsonl

log = logging.getLogger("attnbench.translation")

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
SPLITS = ("train", "valid", "test")


class Vocab(TokenVocab):
    unk = UNK

    @classmethod
    def build(cls, sentences, min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Specials, then the training token types seen at least `min_freq` times, most frequent first
        (ties alphabetical), at most `max_size` of them; every other token encodes as <unk>."""
        return cls(list(SPECIALS) + preprocess.kept_types(sentences, min_freq, max_size)[0])

    def decode(self, ids) -> list[str]:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i != PAD:
                out.append(self.itos[i])
        return out


MODELS = {"rnn": RNNSeq2Seq, "transformer": TransformerSeq2Seq}

class Data:
    """Prepared pairs as tensors: src = tokens + </s>; tgt_in = <s> + tokens; tgt_out = tokens + </s>."""

    def __init__(self, prepared: Path) -> None:
        vocab = aio.read_json(prepared / "vocab.json")
        self.src_vocab, self.tgt_vocab = Vocab(vocab["source"]), Vocab(vocab["target"])
        self.pairs = {split: read_pairs_jsonl(prepared / f"{split}.jsonl") for split in SPLITS}
        manifest = prepared / "manifest.json"
        # how the corpus was prepared (older prepared folders have no record: whitespace tokens, as given)
        self.preprocessing = preprocess.settings(
            aio.read_json(manifest).get("preprocessing", {}) if manifest.is_file() else {})
        self.tensors = {split: self._encode(pairs) for split, pairs in self.pairs.items()}

    def with_test(self, pairs: list[Pair]) -> "Data":
        """A copy whose test split is `pairs` (a trained run scored on other files: `attnbench score`)."""
        other = copy.copy(self)
        other.pairs = {**self.pairs, "test": pairs}
        other.tensors = {**self.tensors, "test": self._encode(pairs)}
        return other

    def _encode(self, pairs: list[Pair]) -> dict[str, list[torch.Tensor]]:
        tgt = [self.tgt_vocab.encode(p.tgt) for p in pairs]
        return {
            "src": long_tensors([self.src_vocab.encode(p.src) + [EOS] for p in pairs]),
            "tgt_in": long_tensors([[BOS] + t for t in tgt]),
            "tgt_out": long_tensors([t + [EOS] for t in tgt]),
        }

    def batch(self, split: str, index) -> dict[str, torch.Tensor]:
        t = self.tensors[split]
        src = [t["src"][i] for i in index]
        return {
            "src": pad_sequence(src, batch_first=True, padding_value=PAD),
            "src_len": torch.tensor([len(s) for s in src]),
            "tgt_in": pad_sequence([t["tgt_in"][i] for i in index], batch_first=True, padding_value=PAD),
            "tgt_out": pad_sequence([t["tgt_out"][i] for i in index], batch_first=True, padding_value=PAD),
        }

    def ordered_batches(self, split: str, batch_size: int):
        """Length-sorted batches for evaluation; yields (indices, batch)."""
        order = sorted(range(len(self.pairs[split])), key=lambda i: len(self.pairs[split][i].src))
        return ordered_batches(order, batch_size, lambda index: self.batch(split, index))


class Translation(Task):
    name = "translation"
    valid_metric = "valid_bleu"
    headline = "bleu"
    metric_columns = ("bleu", "chrf", "aer", "exact_match")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        for run, spec in section["runs"].items():
            check_mechanism(f"{origin}: tasks.translation.runs.{run}", spec["model"], spec["attention"],
                            MODELS[spec["model"]].attention_needs)
        if section["data"]["source"] == "files":
            for split, spec in section["data"]["files"].items():
                for key, value in spec.items():
                    if not Path(value).is_file():
                        raise ParamsError(f"{origin}: tasks.translation.data.files.{split}.{key}: file {value!r} "
                                          "does not exist; expected a path to a text file (gzip allowed)")
                if "alignments" in spec and section["data"].get("tokenize", "none") != "none":
                    raise ParamsError(f"{origin}: tasks.translation.data.files.{split}.alignments: gold links index "
                                      "whitespace tokens, but data.tokenize re-tokenises the text; expected "
                                      "tokenize: none with alignments (give pre-tokenised files)")
        elif section["data"].get("tokenize", "none") != "none":
            raise ParamsError(f"{origin}: tasks.translation.data.tokenize: value {section['data']['tokenize']!r} "
                              "is not allowed with source: synthetic (that corpus is already tokenised); "
                              "expected: none")

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["translation"]
        size, data = section["scales"][params["scale"]], section["data"]
        prep = preprocess.settings(data)
        max_len = size["max_len"]
        if data["source"] == "synthetic":
            splits = generate_splits({s: size[f"{s}_size"] for s in SPLITS}, seed=data.get("seed", 1234),
                                     max_len=max_len)
        else:
            tokenizers = tuple(preprocess.tokenizer(prep["tokenize"], prep["lang"][side], prep["lowercase"])
                               for side in preprocess.SIDES)
            splits = {}
            for split in SPLITS:
                spec = data["files"][split]
                splits[split] = read_parallel(spec.get("source", spec.get("tsv")), spec.get("target"),
                                              alignments=spec.get("alignments"), tokenizers=tokenizers,
                                              keep_raw=prep["tokenize"] != "none")
        # max_len bounds training only: validation and test are scored whole, so nothing is dropped there
        long_train = sum(len(p.src) > max_len for p in splits["train"])
        if long_train:
            splits["train"] = [p for p in splits["train"] if len(p.src) <= max_len]
        if not splits["train"]:
            raise ParamsError(f"tasks.translation.data.files.train: no pair is left after leaving out sources "
                              f"longer than max_len={max_len}")
        vocab, vocab_info = {}, {}
        for side, attr in zip(preprocess.SIDES, ("src", "tgt")):
            limits = preprocess.vocab_limits(data, side)
            kept, info = preprocess.kept_types((getattr(p, attr) for p in splits["train"]), **limits)
            vocab[side] = list(SPECIALS) + kept
            vocab_info[side] = {**limits, "train_types": info["types"], "kept_types": info["kept"],
                                "cut_below_min_freq": info["below_min_freq"], "cut_over_max_size": info["over_max_size"],
                                "size_with_specials": len(vocab[side])}
        unk = {split: {side: preprocess.unk_counts((getattr(p, attr) for p in pairs), set(vocab[side]))
                       for side, attr in zip(preprocess.SIDES, ("src", "tgt"))}
               for split, pairs in splits.items()}
        out_dir.mkdir(parents=True, exist_ok=True)
        for split, pairs in splits.items():
            write_pairs_jsonl(pairs, out_dir / f"{split}.jsonl")
        aio.write_json(out_dir / "vocab.json", vocab)
        manifest = {
            "task": "translation", "source": data["source"], "scale": params["scale"],
            "pairs": {s: len(p) for s, p in splits.items()},
            "source_vocab": len(vocab["source"]), "target_vocab": len(vocab["target"]),
            "gold_alignments": {s: all(p.align is not None for p in ps) for s, ps in splits.items()},
            "max_source_len": max(len(p.src) for ps in splits.values() for p in ps),
            "preprocessing": prep,
            "vocab": vocab_info,
            "unk": unk,
            "max_len": max_len,
            "train_left_out_longer_than_max_len": long_train,
            "kept_longer_than_max_len": {s: sum(len(p.src) > max_len for p in splits[s]) for s in ("valid", "test")},
        }
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared))

    # ---- model and training -----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        kind, opts = cfg["model"], cfg["model_options"]
        vocab = (len(data.src_vocab), len(data.tgt_vocab))
        if kind == "rnn":
            model = RNNSeq2Seq(*vocab, **opts, attention=cfg["attention"], attention_options=cfg["attention_options"])
            self._check_source_lengths(model.attention, cfg, data)
        elif kind == "transformer":
            # positions are a fixed sinusoid table (not learnt, not saved), so sizing it to the data changes no
            # number: it only has to cover the longest sentence of any split, which max_len no longer bounds
            max_len = max(2 * cfg["size"]["max_len"] + 8, self.positions_needed(data, cfg["eval"]["max_output_ratio"]))
            model = TransformerSeq2Seq(*vocab, **opts, max_len=max_len, attention=cfg["attention"],
                                       attention_options=cfg["attention_options"])
        else:
            raise ValueError(f"unknown translation model {kind!r}")
        # train.label_smoothing (read by `loss`): the share of each target's probability spread over the vocabulary
        model.label_smoothing = float(cfg["train"].get("label_smoothing", 0.0))
        return model

    @staticmethod
    def positions_needed(data: Data, max_output_ratio: float) -> int:
        """Positions a Transformer reads on this data: sources + </s>, <s> + references (teacher forcing), and
        greedy decoding's longest output (`_translate`: ratio x the longest padded source + 2)."""
        pairs = [p for ps in data.pairs.values() for p in ps]
        longest_src = max(len(p.src) for p in pairs) + 1
        longest_tgt = max(len(p.tgt) for p in pairs) + 1
        return max(longest_src, longest_tgt, int(max_output_ratio * longest_src) + 2)

    @staticmethod
    def _check_source_lengths(mechanism: nn.Module, cfg: dict, data: Data) -> None:
        """A mechanism with a fixed number of source positions (location attention's `max_len`) must cover the
        longest source of every split (+ </s>): validation and test keep sentences longer than the scale's
        max_len. Fail before training, naming the option, rather than at evaluation."""
        limit = getattr(mechanism, "max_len", None)
        if limit is None:
            return
        longest = {split: max((len(p.src) for p in pairs), default=0) + 1 for split, pairs in data.pairs.items()}
        split = max(longest, key=longest.get)
        if longest[split] > limit:
            raise ParamsError(f"tasks.translation.runs.{cfg.get('run', '?')}.options.max_len: value {limit} is too small: "
                              f"{cfg['attention']} attention scores at most max_len source positions, and the {split} "
                              f"split's longest source has {longest[split]} (with </s>); expected >= {longest[split]}")

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        """Shuffled, then length-sorted within pools of 50 batches (less padding), batch order shuffled.

        `train.batch_sort`: source (default) sorts by source length; target by target length, then source
        length. The decoder steps through every position up to a batch's longest target, so on real data,
        whose target lengths vary more for a given source length than the synthetic corpus's, sorting by
        target wastes fewer decoder steps on padding (Multi30k En-Fr: 97% of the target positions are words
        instead of 71%, 86% of the source positions instead of 97%)."""
        size = cfg["train"]["batch_size"]
        perm = torch.randperm(len(data.pairs["train"]), generator=generator).tolist()
        if cfg["train"].get("batch_sort", "source") == "target":
            lengths = [(len(p.tgt), len(p.src)) for p in data.pairs["train"]]
        else:
            lengths = [len(p.src) for p in data.pairs["train"]]
        batches = []
        for start in range(0, len(perm), size * 50):
            pool = sorted(perm[start:start + size * 50], key=lambda i: lengths[i])
            batches += [pool[i:i + size] for i in range(0, len(pool), size)]
        for j in torch.randperm(len(batches), generator=generator).tolist():
            yield data.batch("train", batches[j])

    def steps_per_epoch(self, data: Data, cfg: dict) -> int:
        """`batches` cuts each pool of 50 x batch_size pairs into 50 batches, the last pool's rest into as few as
        fit: ceil(pairs / batch_size) in all."""
        return -(-len(data.pairs["train"]) // cfg["train"]["batch_size"])

    def source_tokens(self, batch: dict) -> torch.Tensor:
        """Source positions the encoder reads, padding excluded: each sentence's tokens and its </s>."""
        return batch["src_len"].sum()

    def loss(self, model: nn.Module, batch: dict, device: torch.device):
        """Mean cross-entropy over the real target words (padding excluded), label-smoothed when the run's
        `train.label_smoothing` > 0 (Szegedy et al. 2016, torch's `label_smoothing`). The RNN's output layer, the
        [H x V] matrix that dominates a step's cost, maps only those words' states, in one call: the mean
        over the same positions as with the logits of every position and ignore_index=PAD."""
        b = to_device(batch, device)
        if model.feature_states:   # the output layer maps the real target words' states only
            states, _ = model.features(b["src"], b["src_len"], b["tgt_in"])
            words = b["tgt_out"] != PAD
            logits, gold = model.out(states[words]), b["tgt_out"][words]
        else:
            logits, _ = model(b["src"], b["src_len"], b["tgt_in"])
            logits, gold = logits.flatten(0, 1), b["tgt_out"].flatten()
        loss = nn.functional.cross_entropy(logits.float(), gold, ignore_index=PAD,
                                           label_smoothing=getattr(model, "label_smoothing", 0.0))
        return loss, int(b["src"].size(0))

    # ---- evaluation -------------------------------------------------------------------
    @staticmethod
    def beam_settings(cfg: dict) -> dict:
        """The test set's beam search: size (1: greedy only), length normalisation and its exponent."""
        ev = cfg["eval"]
        return {"beam_size": int(ev.get("beam_size", 1)), "length_norm": ev.get("length_norm", "gnmt"),
                "length_penalty": float(ev.get("length_penalty", 0.6))}

    def _translate(self, model, data: Data, split: str, cfg: dict, device, beam: dict | None = None) -> list[list[str]]:
        """Greedy translations of `split` as target tokens, or beam-searched ones with `beam` (beam_settings)."""
        hyps: list[list[str]] = [[] for _ in data.pairs[split]]
        ratio = cfg["eval"]["max_output_ratio"]
        for index, batch in data.ordered_batches(split, 256):
            b = to_device(batch, device)
            max_len = int(ratio * b["src"].size(1)) + 2
            if beam is None:
                tokens, _ = model.greedy(b["src"], b["src_len"], max_len=max_len)
            else:
                tokens, _ = model.beam_search(b["src"], b["src_len"], beam["beam_size"], max_len,
                                              alpha=beam["length_penalty"], norm=beam["length_norm"])
            for i, row in zip(index, tokens.tolist()):
                hyps[i] = data.tgt_vocab.decode(row)
        return hyps

    @torch.no_grad()
    def validate(self, model, data: Data, cfg: dict, device) -> float:
        hyps = self._translate(model, data, "valid", cfg, device)
        refs = [" ".join(p.tgt) for p in data.pairs["valid"]]
        # on the tokens (no detokenising per epoch); tokenised by the pipeline: as they are, like bleu_tok
        tokenize = "none" if data.preprocessing["tokenize"] != "none" else None
        return corpus_bleu([" ".join(h) for h in hyps], refs, tokenize=tokenize)[0]

    def _teacher_forced_attention(self, model, data: Data, split: str, device) -> list[np.ndarray]:
        """Attention of every pair while reading its reference: [tgt tokens + </s>, src tokens + </s>]."""
        out: list[np.ndarray] = [None] * len(data.pairs[split])  # type: ignore[list-item]
        for index, batch in data.ordered_batches(split, 256):
            b = to_device(batch, device)
            kwargs = {"need_weights": True} if model.weights_on_request else {}
            _, weights = model(b["src"], b["src_len"], b["tgt_in"], **kwargs)
            weights = weights.float().cpu().numpy()
            for row, i in enumerate(index):
                p = data.pairs[split][i]
                out[i] = weights[row, : len(p.tgt) + 1, : len(p.src) + 1]
        return out

    @staticmethod
    def scoring_texts(data: Data, pairs: list[Pair], hyp_tokens: list[list[str]]) -> tuple[list[str], list[str], dict]:
        """(hypotheses, references, sacreBLEU options) of the headline scores.

        Corpora the pipeline tokenised: hypotheses detokenised (sacremoses, the target language) against
        the raw reference lines, case-insensitive when the data were lowercased. Otherwise (the synthetic
        corpus, pre-tokenised files): the tokens joined by spaces on both sides."""
        prep = data.preprocessing
        if prep["tokenize"] == "none" or any(p.ref is None for p in pairs):
            return [" ".join(h) for h in hyp_tokens], [" ".join(p.tgt) for p in pairs], {}
        detok = preprocess.detokenizer(prep["tokenize"], prep["lang"]["target"])
        return [detok(h) for h in hyp_tokens], [p.ref for p in pairs], {"lowercase": prep["lowercase"]}

    @torch.no_grad()
    def evaluate(self, model, data: Data, cfg: dict, device, out_dir: Path) -> dict:
        pairs = data.pairs["test"]
        edges = cfg["eval"]["length_buckets"]
        started = time.perf_counter()
        hyp_tokens = self._translate(model, data, "test", cfg, device)
        greedy_seconds = time.perf_counter() - started
        hyps = [" ".join(h) for h in hyp_tokens]
        refs = [" ".join(p.tgt) for p in pairs]
        texts, raw_refs, opts = self.scoring_texts(data, pairs, hyp_tokens)
        detok = bool(opts)
        bleu, bleu_sig = corpus_bleu(texts, raw_refs, **opts)
        chrf, chrf_sig = corpus_chrf(texts, raw_refs, **opts)
        buckets = [length_bucket(len(p.src), edges) for p in pairs]
        by_length, counts = {}, {}
        for label in bucket_labels(edges):
            idx = [i for i, b in enumerate(buckets) if b == label]
            counts[label] = len(idx)
            by_length[label] = corpus_bleu([texts[i] for i in idx], [raw_refs[i] for i in idx], **opts)[0] if idx else None

        attention = self._teacher_forced_attention(model, data, "test", device)
        aligns = model.produces_alignment
        aer = None
        if aligns and all(p.align is not None for p in pairs):
            predicted = [argmax_alignment(w, len(p.src), len(p.tgt)) for w, p in zip(attention, pairs)]
            aer = round(alignment_error_rate(predicted, [set(map(tuple, p.align)) for p in pairs]), 4)

        beam = self.beam_settings(cfg)
        beam_hyps = None
        if beam["beam_size"] > 1:
            started = time.perf_counter()
            beam_tokens = self._translate(model, data, "test", cfg, device, beam=beam)
            beam_seconds = time.perf_counter() - started
            beam_hyps = [" ".join(h) for h in beam_tokens]
            beam_texts = self.scoring_texts(data, pairs, beam_tokens)[0]
            # timings stay out of metrics.json (equal results, equal files); the log has them
            log.info("%s: test decoding greedy %.2fs, beam %d %.2fs (x%.1f)", cfg.get("run", "?"), greedy_seconds,
                     beam["beam_size"], beam_seconds, beam_seconds / max(greedy_seconds, 1e-9))

        self._export(out_dir, pairs, hyps, attention, buckets, cfg["eval"]["heatmap_sentences"],
                     detok=(texts, raw_refs) if detok else None, beam_hyps=beam_hyps)
        metrics = {
            "bleu": bleu, "bleu_signature": bleu_sig, "chrf": chrf, "chrf_signature": chrf_sig,
            "bleu_by_length": by_length, "sentences_by_length": counts, "aer": aer, "alignment": bool(aligns),
            "exact_match": round(float(np.mean([h == r for h, r in zip(hyps, refs)])), 4),
            "test_sentences": len(pairs),
        }
        if detok:
            # the secondary figure: BLEU on the pipeline's own tokens (both sides tokenised and, if asked, lowercased)
            metrics["bleu_tok"], metrics["bleu_tok_signature"] = corpus_bleu(hyps, refs, tokenize="none")
            metrics["scored_on"] = (f"detokenised hypotheses (sacremoses, {data.preprocessing['lang']['target']}) "
                                    "against the raw references" + (", case-insensitive" if opts["lowercase"] else ""))
            metrics["hyp_unk_tokens"] = sum(h.count("<unk>") for h in hyp_tokens)
        if beam_hyps is not None:   # the same scores of the beam search's translations, beside the greedy ones
            metrics.update(beam)
            metrics["bleu_beam"] = corpus_bleu(beam_texts, raw_refs, **opts)[0]
            metrics["chrf_beam"] = corpus_chrf(beam_texts, raw_refs, **opts)[0]
            metrics["exact_match_beam"] = round(float(np.mean([h == r for h, r in zip(beam_hyps, refs)])), 4)
            if detok:
                metrics["bleu_tok_beam"] = corpus_bleu(beam_hyps, refs, tokenize="none")[0]
                metrics["hyp_unk_tokens_beam"] = sum(h.count("<unk>") for h in beam_tokens)
        return metrics

    @staticmethod
    def heatmap_indices(pairs: list[Pair], k: int) -> list[int]:
        """The same k test sentences for every run: the first ones of 8 to 16 source tokens."""
        mid = [i for i, p in enumerate(pairs) if 8 <= len(p.src) <= 16]
        rest = [i for i in range(len(pairs)) if i not in set(mid)]
        return (mid + rest)[:k]

    def _export(self, out_dir: Path, pairs, hyps, attention, buckets, k: int, detok=None, beam_hyps=None) -> None:
        arrays: dict[str, np.ndarray] = {}
        for n, i in enumerate(self.heatmap_indices(pairs, k)):
            p = pairs[i]
            gold = np.zeros((len(p.tgt) + 1, len(p.src) + 1), dtype=np.float32)
            for s, t in p.align or ():
                gold[t, s] = 1.0
            arrays[f"src_{n}"] = np.array(list(p.src) + ["</s>"])
            arrays[f"tgt_{n}"] = np.array(list(p.tgt) + ["</s>"])
            arrays[f"attn_{n}"] = attention[i].astype(np.float32)
            arrays[f"gold_{n}"] = gold
        with aio.atomic_path(out_dir / "attention.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        records = [{"src": " ".join(p.src), "ref": " ".join(p.tgt), "hyp": h, "bucket": b}
                   for p, h, b in zip(pairs, hyps, buckets)]
        if detok is not None:  # what the headline scores compared
            for record, hyp_text, ref_text in zip(records, *detok):
                record["hyp_detok"], record["ref_raw"] = hyp_text, ref_text
        if beam_hyps is not None:  # the beam search's translation beside the greedy one
            for record, hyp in zip(records, beam_hyps):
                record["hyp_beam"] = hyp
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n")


register(Translation())
