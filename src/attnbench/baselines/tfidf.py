"""The classical text-classification baseline: TF-IDF n-grams and a linear classifier (scikit-learn).

Features: word n-grams (the project's own tokens, so ``don't`` and punctuation marks stay tokens)
and character n-grams within word boundaries (``char_wb``: robust to typos and inflections), each
TF-IDF weighted with sublinear tf (1 + log tf), smoothed idf and L2-normalised, side by side (a
scikit-learn FeatureUnion). Classifier: ``LinearSVC`` (one-vs-rest squared hinge) or
``LogisticRegression`` (multinomial), its regularisation strength C picked on the validation split
from ``C`` (the first best on ties). Trained on the training split only, like every other run.

It is fitted in closed form, outside the shared torch loop (no epochs), and saved like every run: the
fitted vocabularies (UTF-8 bytes + offsets), idf vectors, coefficients and intercepts are tensors of
an ``nn.Module`` (:class:`TfidfClassifier`) whose state dict goes into ``model.pt`` through
``training.save_trained``; loading it back needs no pickle (weights_only) and reproduces the
scikit-learn pipeline's decision function (tests/test_tfidf_baseline.py checks both).

Used by the intent task (utterances) and the documents task (whole document text).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger("attnbench.tfidf")

MODEL = "tfidf"   # a run's model (documents) or a model's encoder (intent) that selects this baseline
DEFAULTS = {"word_ngrams": [1, 2], "char_ngrams": [2, 5], "min_df": 1, "sublinear_tf": True,
            "classifier": "linear_svc", "C": [0.1, 0.3, 1.0, 3.0, 10.0], "max_iter": 5000}
WORD_PATTERN = r"\S+"   # the texts are the project's tokens joined by spaces
PARTS = ("word", "char")
ANALYZERS = {"word": "word", "char": "char_wb"}
DESCRIPTION = "classical baseline: TF-IDF n-grams + linear classifier"


def options(opts: dict) -> dict:
    """The model options with the defaults filled in (params may leave any of them out)."""
    out = {**DEFAULTS, **{k: v for k, v in opts.items() if k != "encoder"}}
    out["C"] = [float(c) for c in out["C"]]
    return out


def describe(opts: dict) -> str:
    """A one-line description for the report, e.g. 'TF-IDF word 1–2 + char 2–5 grams, LinearSVC'."""
    o = options(opts)
    clf = {"linear_svc": "LinearSVC", "logistic": "logistic regression"}[o["classifier"]]
    w, c = o["word_ngrams"], o["char_ngrams"]
    return f"TF-IDF word {w[0]}–{w[1]} + char {c[0]}–{c[1]} grams, {clf}"


def _vectorizer(part: str, o: dict, vocabulary=None):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    kw = {"analyzer": ANALYZERS[part], "ngram_range": tuple(o[f"{part}_ngrams"]), "lowercase": False,
          "dtype": np.float64}
    if part == "word":
        kw["token_pattern"] = WORD_PATTERN
    if vocabulary is not None:
        return CountVectorizer(vocabulary=vocabulary, **kw)
    return TfidfVectorizer(min_df=o["min_df"], sublinear_tf=o["sublinear_tf"], **kw)


def make_features(opts: dict):
    """The features: word and char_wb TF-IDF side by side (a FeatureUnion), unfitted."""
    from sklearn.pipeline import FeatureUnion

    o = options(opts)
    return FeatureUnion([(p, _vectorizer(p, o)) for p in PARTS])


def make_pipeline(opts: dict, C: float, seed: int = 0):
    """The scikit-learn pipeline this baseline is (features + classifier), unfitted."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", make_features(opts)), ("classifier", _classifier(options(opts), C, seed))])


def _classifier(o: dict, C: float, seed: int):
    if o["classifier"] == "linear_svc":
        from sklearn.svm import LinearSVC

        return LinearSVC(C=C, max_iter=o["max_iter"], random_state=seed)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=o["max_iter"], random_state=seed)


def _pack_terms(vocabulary: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A vocabulary (term -> column) as UTF-8 bytes of the terms in column order, and their end offsets."""
    terms = sorted(vocabulary, key=vocabulary.__getitem__)
    encoded = [t.encode("utf-8") for t in terms]
    offsets = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    return torch.from_numpy(data), torch.from_numpy(offsets)


def _unpack_terms(data: torch.Tensor, offsets: torch.Tensor) -> dict[str, int]:
    raw = data.numpy().tobytes()
    ends = offsets.tolist()
    starts = [0] + ends[:-1]
    return {raw[s:e].decode("utf-8"): i for i, (s, e) in enumerate(zip(starts, ends))}


class TfidfClassifier(nn.Module):
    """A fitted TF-IDF + linear classifier as tensors. `coef` [K, F] and `intercept` [K] are its
    (frozen) parameters, so the parameter count is the classifier's; the vocabularies and idf are
    buffers. `classes` maps the K rows to the task's class ids."""

    def __init__(self, state: dict[str, torch.Tensor], opts: dict) -> None:
        super().__init__()
        self.opts = options(opts)
        for part in PARTS:
            for key in ("terms", "offsets", "idf"):
                self.register_buffer(f"{part}_{key}", state[f"{part}_{key}"].clone())
        self.register_buffer("classes", state["classes"].clone())
        self.coef = nn.Parameter(state["coef"].clone(), requires_grad=False)
        self.intercept = nn.Parameter(state["intercept"].clone(), requires_grad=False)
        self._vectorizers = None

    @classmethod
    def from_pipeline(cls, pipeline, opts: dict) -> "TfidfClassifier":
        union, clf = pipeline.named_steps["features"], pipeline.named_steps["classifier"]
        state: dict[str, torch.Tensor] = {}
        for name, vec in union.transformer_list:
            state[f"{name}_terms"], state[f"{name}_offsets"] = _pack_terms(vec.vocabulary_)
            state[f"{name}_idf"] = torch.from_numpy(np.asarray(vec.idf_, dtype=np.float64).copy())
        coef, intercept = np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
        if coef.shape[0] == 1:   # two classes: one score for classes_[1]; as two rows, argmax gives the same class
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        state.update(coef=torch.from_numpy(coef.copy()), intercept=torch.from_numpy(intercept.copy()),
                     classes=torch.from_numpy(np.asarray(clf.classes_, dtype=np.int64).copy()))
        return cls(state, opts)

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def features(self, texts: Sequence[str]):
        """The TF-IDF matrix [N, F] (scipy CSR) of `texts`, as the fitted pipeline computes it."""
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        if self._vectorizers is None:
            self._vectorizers = [_vectorizer(p, self.opts, _unpack_terms(getattr(self, f"{p}_terms"),
                                                                         getattr(self, f"{p}_offsets")))
                                 for p in PARTS]
        blocks = []
        for part, vec in zip(PARTS, self._vectorizers):
            x = vec.transform(texts).astype(np.float64)
            if self.opts["sublinear_tf"]:
                np.log(x.data, x.data)
                x.data += 1.0
            x = x @ sp.diags(getattr(self, f"{part}_idf").numpy())
            blocks.append(normalize(x, norm="l2", copy=False))
        return sp.hstack(blocks, format="csr")

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        x = self.features(texts)
        return np.asarray(x @ self.coef.detach().numpy().T) + self.intercept.detach().numpy()

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class ids (the task's) of `texts`."""
        return self.classes.numpy()[np.argmax(self.decision_function(texts), axis=1)]

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.decision_function(texts))


def _train_loss(pipeline, x, y: np.ndarray) -> float:
    """The classifier's own objective's data term on the training split: mean one-vs-rest squared hinge
    (LinearSVC) or log-loss (logistic regression)."""
    clf = pipeline.named_steps["classifier"]
    if hasattr(clf, "predict_proba"):
        from sklearn.metrics import log_loss

        return float(log_loss(y, clf.predict_proba(x), labels=clf.classes_))
    scores = clf.decision_function(x)
    if scores.ndim == 1:
        scores = np.stack([-scores, scores], axis=1)
    sign = np.where(y[:, None] == clf.classes_[None, :], 1.0, -1.0)
    return float(np.mean(np.maximum(0.0, 1.0 - sign * scores) ** 2))


def fit_select(train: Sequence[str], y_train: Sequence[int], valid: Sequence[str], y_valid: Sequence[int],
               opts: dict, seed: int = 0) -> tuple[TfidfClassifier, dict]:
    """Fit the features on `train`, a classifier per C, keep the C with the best validation accuracy (the
    first on ties). Returns the fitted model and what was measured (C scores, chosen C, loss, seconds)."""
    from sklearn.pipeline import Pipeline

    o = options(opts)
    y_train, y_valid = np.asarray(y_train), np.asarray(y_valid)
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"the TF-IDF baseline needs at least 2 classes in the training split, got {len(np.unique(y_train))}")
    t0 = time.perf_counter()
    features = make_features(o)
    x_train = features.fit_transform(list(train))
    x_valid = features.transform(list(valid))
    scores: dict[str, float] = {}
    best = None
    for C in o["C"]:
        clf = _classifier(o, C, seed).fit(x_train, y_train)
        acc = float(np.mean(clf.predict(x_valid) == y_valid))
        scores[f"{C:g}"] = round(acc, 6)
        log.info("tfidf C=%g: valid accuracy %.4f", C, acc)
        if best is None or acc > best[0]:
            best = (acc, C, clf)
    acc, C, clf = best
    pipeline = Pipeline([("features", features), ("classifier", clf)])
    model = TfidfClassifier.from_pipeline(pipeline, o)
    info = {"C": C, "valid_accuracy_by_C": scores, "valid_accuracy": acc, "features": model.n_features,
            "train_loss": _train_loss(pipeline, x_train, y_train), "seconds": time.perf_counter() - t0,
            "examples": int(len(y_train)), "classifier": o["classifier"]}
    log.info("tfidf: C %g picked on validation (accuracy %.4f), %d features", C, acc, model.n_features)
    return model, info


def fit_run(train: Sequence[str], y_train, valid: Sequence[str], y_valid, cfg: dict, run_dir: Path,
            device: torch.device) -> dict:
    """Fit one run and write model.pt, train_log.csv and train_info.json like the shared loop does."""
    from .. import io as aio
    from ..training import save_trained, seed_everything

    seed_everything(cfg["seed"])
    model, info = fit_select(train, y_train, valid, y_valid, cfg["model_options"], seed=cfg["seed"])
    seconds = info["seconds"]
    rows = [{"epoch": 1, "train_loss": round(info["train_loss"], 6), "valid_metric": round(info["valid_accuracy"], 6),
             "best_valid": round(info["valid_accuracy"], 6), "seconds": round(seconds, 3),
             "examples_per_s": round(info["examples"] / max(seconds, 1e-9), 1), "lr": ""}]
    out = save_trained(model, cfg, run_dir, rows, device=device, best_epoch=1, best_valid=info["valid_accuracy"],
                       train_seconds=seconds)
    out = {**out, "classifier": info["classifier"], "C": info["C"], "valid_accuracy_by_C": info["valid_accuracy_by_C"],
           "features": info["features"]}
    aio.write_json(Path(run_dir) / "train_info.json", out)
    return out


def load_run(cfg: dict, run_dir: Path, device: torch.device) -> TfidfClassifier:
    """The fitted baseline of a run (weights_only; a checkpoint of another configuration is refused)."""
    from ..config import config_hash
    from ..training import TrainingError, load_checkpoint

    path = Path(run_dir) / "model.pt"
    ckpt = load_checkpoint(path)
    if ckpt.get("config_hash") != config_hash(cfg):
        raise TrainingError(
            f"{path} was trained with another configuration (hash {ckpt.get('config_hash')}, expected {config_hash(cfg)}).\n"
            f"  checkpoint config: {ckpt.get('config')}\n  requested config:  {cfg}")
    try:
        model = TfidfClassifier(ckpt["model"], cfg["model_options"])
    except KeyError as exc:
        raise TrainingError(f"{path}: not a TF-IDF baseline checkpoint (no {exc.args[0]!r}) for {cfg['run']}") from exc
    return model.eval()   # scikit-learn on the host: the device does not apply
