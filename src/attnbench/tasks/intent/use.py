"""Using a trained intent run: `attnbench predict` classifies what a user types, without retraining.

An utterance is tokenised as `prepare` tokenised the dataset (lowercased word tokens), cut to the run's
max_len and encoded with the run's vocabulary (unknown words become <unk>). For each utterance it gives
the predicted intent, its probability (the softmax of the logits; a linear SVM such as the TF-IDF
baseline's has scores, not probabilities), the next most likely intents and the token weights the run's
pooling puts on each token (attention pooling: its weights; max pooling: the saliency share; BERT's
[CLS] attention), which is what the report's highlighted utterances show.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax
import torch
from torch.nn.utils.rnn import pad_sequence

from ... import io as aio
from ...errors import DataError
from ...models.bert import PAD, UNK
from ..common import step_command, trained_run
from .data import tokenize

TASK = "intent"


@dataclass
class Prediction:
    text: str                                  # the utterance as given
    tokens: list[str]                          # as the model reads them (tokenised, cut to max_len)
    unknown: list[bool]                        # which tokens are outside the vocabulary (<unk> to the model)
    intent: str
    probability: float | None                  # None where the classifier has no probabilities (linear SVM)
    score: float                               # the logit / decision value of the predicted intent
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the next intents, probability (or score)
    weights: list[float] | None = None         # one per token; None for runs without token weights

    def as_dict(self) -> dict:
        return {"text": self.text, "intent": self.intent, "probability": self.probability, "score": self.score,
                "alternatives": [{"intent": k, "value": v} for k, v in self.alternatives],
                "tokens": self.tokens, "unknown": self.unknown, "weights": self.weights}


def load_run(task, cfg: dict, device: torch.device, params_path: str = "params.yaml"):
    """(data, model) of a trained run, or a clear error: not trained (with the commands to run first), or
    prepared data that are not those the run was trained on."""
    run_dir, prepared = trained_run(TASK, cfg, params_path)
    data = task.load(prepared, cfg)
    manifest = aio.read_json(prepared / "manifest.json") if (prepared / "manifest.json").is_file() else {}
    if manifest.get("scale", cfg["scale"]) != cfg["scale"]:
        raise DataError(f"{prepared}: prepared at scale {manifest['scale']}, but run {cfg['run']} was trained at scale "
                        f"{cfg['scale']} (its vocabulary and labels differ); prepare it again with the run's "
                        f"settings ({step_command(params_path, 'prepare', TASK, cfg['dataset'])})")
    return data, task.load_trained(data, cfg, run_dir, device)


@torch.no_grad()
def predict(task, model, data, cfg: dict, lines: list[str], device: torch.device, top: int = 3,
            batch_size: int = 256) -> list[Prediction]:
    """The intent of each raw utterance in `lines`, with its probability, `top` - 1 alternatives and token weights."""
    max_len = cfg["size"]["max_len"]
    tokens = [list(tokenize(line))[:max_len] for line in lines]
    if task.is_tfidf(cfg):   # the baseline reads the text itself (its own n-grams), as evaluation does
        scores = np.asarray(model.decision_function([" ".join(t) for t in tokens]))
        classes = model.classes.numpy()
        full = np.full((len(lines), len(data.labels)), -np.inf)
        full[:, classes] = scores
        return [_prediction(line, toks, data, full[i], probabilities=cfg["model_options"].get("classifier") == "logistic",
                            weights=None, top=top, vocabulary=False) for i, (line, toks) in enumerate(zip(lines, tokens))]
    ids = [torch.tensor(data.vocab.encode(t) or [UNK]) for t in tokens]
    out: list[Prediction | None] = [None] * len(lines)
    for start in range(0, len(lines), batch_size):
        index = list(range(start, min(start + batch_size, len(lines))))
        batch = pad_sequence([ids[i] for i in index], batch_first=True, padding_value=PAD).to(device)
        logits, extra = model(batch, need_weights=True)
        logits = logits.float().cpu().numpy()
        weights = extra["weights"]
        for row, i in enumerate(index):
            w = None if weights is None else [round(float(v), 4) for v in weights[row, : len(tokens[i])].float().cpu()]
            out[i] = _prediction(lines[i], tokens[i], data, logits[row], probabilities=True, weights=w, top=top)
    return out  # type: ignore[return-value]


def _prediction(text: str, tokens: list[str], data, logits: np.ndarray, probabilities: bool,
                weights: list[float] | None, top: int, vocabulary: bool = True) -> Prediction:
    """One utterance's prediction from its logits (or scores); `vocabulary`: whether the model reads word ids
    (the TF-IDF baseline reads n-grams of the text: no word is unknown to it)."""
    order = np.argsort(-logits, kind="stable")[:max(top, 1)]
    values = softmax(logits) if probabilities else logits
    best = int(order[0])
    return Prediction(text=text, tokens=tokens, unknown=[vocabulary and t not in data.vocab.stoi for t in tokens],
                      intent=data.labels[best], probability=round(float(values[best]), 4) if probabilities else None,
                      score=round(float(logits[best]), 4),
                      alternatives=[(data.labels[int(k)], round(float(values[k]), 4)) for k in order[1:]],
                      weights=weights)


def render(item: Prediction) -> str:
    """One line a user reads: intent, probability (or score), the alternatives, and the tokens with their weights."""
    value = f"p={item.probability:.3f}" if item.probability is not None else f"score={item.score:.3f}"
    others = ", ".join(f"{k} {v:.3f}" for k, v in item.alternatives)
    if item.weights is None:
        words = " ".join(t + ("*" if u else "") for t, u in zip(item.tokens, item.unknown))
    else:
        words = " ".join(f"{t}{'*' if u else ''}:{w:.2f}" for t, u, w in zip(item.tokens, item.unknown, item.weights))
    return f"{item.intent}\t{value}\t{('then ' + others) if others else ''}\t{words}"


def weight_kind(task, cfg: dict) -> str:
    """What the token weights are, in words, for the command's log."""
    if task.is_tfidf(cfg):
        return "none (a linear model over TF-IDF n-grams of the text)"
    kind = task._weight_kind(cfg)
    return {"attention": "attention weights", "saliency": "max-pool saliency shares",
            "cls": "[CLS] attention of the last layer"}.get(kind, "none (this run's pooling has no token weights)") + \
        "; * marks a word outside the vocabulary"
