"""Using a trained translation run: translate what a user types (`attnbench translate`) and score the run on
other parallel files (`attnbench score`), both without retraining.

A run is found as the pipeline left it: its model.pt (whose training config is checked against params.yaml's,
as `evaluate` checks it) and its dataset's prepared folder (vocabularies and the preprocessing the manifest
records). Input is preprocessed as `prepare` preprocessed the corpus (Moses tokenisation and lowercasing where
the data spec asks for them) and output detokenised as evaluation detokenises it, so `score` on the run's own
test files gives exactly the run's own metrics. Prepared data that no longer match the run (prepared again
under other settings) are refused, naming what differs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ... import io as aio
from ... import paths
from ...errors import DataError
from ...training import load_checkpoint
from ..common import step_command, trained_run
from . import preprocess
from .data import Pair, read_parallel
from ...models.seq2seq import EOS, PAD

TASK = "translation"


@dataclass
class Translated:
    source: list[str]          # the source tokens as preprocessed, </s> not included
    unknown: list[bool]        # which of them are out of the source vocabulary (<unk> to the model)
    tokens: list[str]          # the output tokens, </s> not included
    ended: bool                # whether the model emitted </s>
    text: str                  # the output detokenised, as evaluation scores it
    attention: np.ndarray      # [len(tokens) (+1 with </s>), len(source) + 1]


def load_run(task, cfg: dict, device: torch.device, params_path: str = "params.yaml"):
    """(data, model) of a trained run, or a clear error: no checkpoint (and the commands that make one), or
    prepared data that do not match the run's training config."""
    run_dir, prepared = trained_run(TASK, cfg, params_path)
    data = task.load(prepared, cfg)
    check_prepared(data, prepared, cfg, load_checkpoint(run_dir / "model.pt"), params_path)
    return data, task.load_trained(data, cfg, run_dir, device)


def check_prepared(data, prepared: Path, cfg: dict, ckpt: dict, params_path: str = "params.yaml") -> None:
    """Refuse prepared data whose preprocessing or vocabularies are not those the run was trained with."""
    fix = (f"prepare it again with the run's settings ({step_command(params_path, 'prepare', TASK, cfg['dataset'])}) "
           "or retrain the run on these data")
    trained = (ckpt.get("config") or cfg)["data"]
    expected, found = preprocess.settings(trained), data.preprocessing
    if found != expected:
        raise DataError(f"{prepared}: prepared with preprocessing {found}, but run {cfg['run']} was trained with "
                        f"{expected}; {fix}")
    manifest = aio.read_json(prepared / "manifest.json") if (prepared / "manifest.json").is_file() else {}
    if manifest.get("scale", cfg["scale"]) != cfg["scale"]:
        raise DataError(f"{prepared}: prepared at scale {manifest['scale']}, but run {cfg['run']} was trained at scale "
                        f"{cfg['scale']} (its training pairs and vocabularies differ); {fix}")
    for side in preprocess.SIDES:
        limits, recorded = preprocess.vocab_limits(trained, side), manifest.get("vocab", {}).get(side)
        if recorded is not None and {k: recorded.get(k) for k in limits} != limits:
            raise DataError(f"{prepared}: the {side} vocabulary was cut with {({k: recorded.get(k) for k in limits})}, "
                            f"but run {cfg['run']} was trained with {limits}; {fix}")
    weights = ckpt.get("model", {})
    for side, vocab, key in (("source", data.src_vocab, "src_emb.weight"), ("target", data.tgt_vocab, "tgt_emb.weight")):
        if key in weights and weights[key].shape[0] != len(vocab):
            raise DataError(f"{prepared / 'vocab.json'}: the {side} vocabulary has {len(vocab)} entries, but run "
                            f"{cfg['run']} seed {cfg['seed']} was trained with {weights[key].shape[0]}; {fix}")


def translate(model, data, lines: list[str], cfg: dict, device: torch.device, beam: dict | None = None,
              batch_size: int = 64) -> list[Translated]:
    """Translations of raw `lines` (greedy, or beam-searched with `beam`: Translation.beam_settings)."""
    prep = data.preprocessing
    tokenize = preprocess.tokenizer(prep["tokenize"], prep["lang"]["source"], prep["lowercase"])
    detokenize = preprocess.detokenizer(prep["tokenize"], prep["lang"]["target"])
    sources = [list(tokenize(line)) for line in lines]
    ids = [torch.tensor(data.src_vocab.encode(s) + [EOS]) for s in sources]
    out: list[Translated | None] = [None] * len(lines)
    order = sorted(range(len(lines)), key=lambda i: len(ids[i]))
    ratio = cfg["eval"]["max_output_ratio"]
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            src = pad_sequence([ids[i] for i in index], batch_first=True, padding_value=PAD).to(device)
            src_len = torch.tensor([len(ids[i]) for i in index])
            max_len = int(ratio * src.size(1)) + 2
            if beam is None or beam["beam_size"] == 1:
                tokens, weights = model.greedy(src, src_len.to(device), max_len=max_len)
            else:
                tokens, weights = model.beam_search(src, src_len.to(device), beam["beam_size"], max_len,
                                                    alpha=beam["length_penalty"], norm=beam["length_norm"])
            weights = weights.float().cpu().numpy()
            for row, i in enumerate(index):
                ids_out = tokens[row].tolist()
                words = data.tgt_vocab.decode(ids_out)
                ended = EOS in ids_out
                steps = ids_out.index(EOS) + 1 if ended else len(ids_out)
                out[i] = Translated(sources[i], [t not in data.src_vocab.stoi for t in sources[i]], words, ended,
                                    detokenize(words), weights[row, :steps, :len(ids[i])])
    return out  # type: ignore[return-value]


def heat_map(item: Translated, path: Path, title: str = "") -> None:
    """A PNG of one translation's attention: source tokens (x) against output tokens (y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [t + ("*" if unk else "") for t, unk in zip(item.source, item.unknown)] + ["</s>"]
    ys = item.tokens + (["</s>"] if item.ended else [])
    ys = ys[:item.attention.shape[0]]
    width, height = 1.6 + 0.32 * len(xs), 1.4 + 0.3 * len(ys)
    fig, ax = plt.subplots(figsize=(max(width, 3.5), max(height, 2.5)))
    image = ax.imshow(item.attention, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, rotation=90, parse_math=False)
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels(ys, parse_math=False)
    ax.set_xlabel("source tokens" + ("  (* not in the vocabulary: <unk>)" if any(item.unknown) else ""))
    ax.set_ylabel("output tokens")
    if title:
        ax.set_title(title, parse_math=False, fontsize=9)
    fig.colorbar(image, ax=ax, label="attention weight")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with aio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def heat_map_paths(target: str | Path, n: int) -> list[Path]:
    """Where --attention writes the n maps: a .png name for one sentence (NAME-1.png, NAME-2.png, ... for
    several), otherwise a folder holding sentence-1.png, sentence-2.png, ..."""
    target = Path(target)
    if target.suffix.lower() == ".png":
        return [target] if n == 1 else [target.with_name(f"{target.stem}-{k}.png") for k in range(1, n + 1)]
    return [target / f"sentence-{k}.png" for k in range(1, n + 1)]


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def score_name(source: str | Path, name: str | None) -> str:
    """The name of a scoring's results: --name, or the source file's name up to its first dot."""
    name = name or Path(source).name.split(".")[0]
    if not NAME.match(name):
        raise DataError(f"score name {name!r} is not allowed; expected letters, digits, '_', '.' or '-' (give --name)")
    return name


def read_test_pairs(data, source: str, target: str | None) -> list[Pair]:
    """Parallel files (source + target, or one TSV) preprocessed as `prepare` preprocessed the run's corpus."""
    prep = data.preprocessing
    tokenizers = tuple(preprocess.tokenizer(prep["tokenize"], prep["lang"][side], prep["lowercase"])
                       for side in preprocess.SIDES)
    return read_parallel(source, target, tokenizers=tokenizers, keep_raw=prep["tokenize"] != "none")
