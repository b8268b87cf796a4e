"""Which mechanism fits which model is decided by declared capabilities, never by lists of names.

Every (task, model, mechanism) the registries allow is tried: a run of it either passes the task's own
validation and then builds at smoke scale and takes one forward + backward step on one small training batch
through the task's own `build_model`, `batches` and `loss`, or it is refused with a ParamsError that names the
run, the mechanism, the capability it lacks and what would fit. A mechanism registered here, declaring a
capability and nothing else, is then accepted (and trains) wherever that capability is what a model needs.
"""
from __future__ import annotations

import copy

import pytest
import torch

from attnbench import attention, tasks
from attnbench.attention import REGISTRY, Attention, register
from attnbench.attention.multihead import MultiHeadAttention
from attnbench.attention.reinforce import ReinforceHardAttention
from attnbench.attention.scores import NoAttention
from attnbench.config import SYNTHETIC, dataset_section, for_dataset, resolve_run
from attnbench.errors import ParamsError
from attnbench.tasks.common import mechanism_option
from attnbench.validation import load_params

from .conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml", {"scale": "smoke"})
TASKS = sorted(PARAMS["tasks"])
RUN_OPTIONS = {"glimpse": {"variant": "centred"}}   # options of a run that are the task's, not the mechanism's
LONG_ENOUGH = 256      # max_len of a mechanism that scores a fixed number of positions (location): every task's keys
BATCH = 4                                          # training examples of the one step
NOT_TORCH = {("documents", "tfidf"), ("intent", "tfidf")}   # scikit-learn baselines: no network to step
COMBOS = [(t, m, a) for t in TASKS for m in PARAMS["tasks"][t]["models"] for a in attention.available()]


def _params(task: str, model: str, mechanism: str, options: dict | None = None) -> dict:
    """params.yaml at smoke scale with `task`'s runs replaced by one run, `probe`, of (model, mechanism)."""
    p = copy.deepcopy(PARAMS)
    section = p["tasks"][task]
    opts = {**RUN_OPTIONS.get(task, {}), **(options or {})}
    if mechanism_option(mechanism, opts, "max_len") is not None and (task, model) not in NOT_TORCH:
        opts.setdefault("max_len", LONG_ENOUGH)   # sized to the keys, as a run must be (test below)
    section["runs"] = {"probe": {"model": model, "attention": mechanism, **({"options": opts} if opts else {})}}
    section["train"]["batch_size"] = BATCH
    return p


def _check(task: str, p: dict) -> None:
    tasks.get(task).check_params(dataset_section(p, task, SYNTHETIC), "params.yaml")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each task's smoke data, prepared once (on first use) into a temporary folder."""
    done: dict[str, object] = {}

    def get(task: str):
        if task not in done:
            out = tmp_path_factory.mktemp(task)
            with torch.random.fork_rng(devices=[]):
                tasks.get(task).prepare(for_dataset(PARAMS, task, SYNTHETIC), out)
            done[task] = out
        return done[task]

    return get


def _one_step(task: str, p: dict, prepared) -> None:
    """The task's own model, batches and loss: build, one forward on one training batch, one backward."""
    t = tasks.get(task)
    cfg = resolve_run(p, task, "probe", 0)
    torch.manual_seed(0)
    data = t.load(prepared(task), cfg)
    model = t.build_model(cfg, data).train()
    t.start_epoch(model, cfg, 1)
    batch = next(iter(t.batches(data, cfg, torch.Generator().manual_seed(0))))
    loss, _ = t.loss(model, batch, torch.device("cpu"))
    assert torch.isfinite(loss).all(), (task, cfg["model"], cfg["attention"])
    if loss.requires_grad:   # the closed-form baselines (seasonal naive, ridge, ...) have nothing to train
        loss.backward()
        assert any(q.grad is not None for q in model.parameters()), (task, cfg["model"], cfg["attention"])


@pytest.mark.parametrize("task,model,mechanism", COMBOS, ids=["/".join(c) for c in COMBOS])
def test_every_pair_is_accepted_and_trains_or_is_refused_by_capability(task, model, mechanism, prepared):
    p = _params(task, model, mechanism)
    try:
        _check(task, p)
    except ParamsError as exc:
        message = str(exc)
        assert f"runs.probe.attention: value {mechanism!r} is not allowed for model {model!r}" in message, message
        # the missing capability in words, then what fits: the registry's mechanisms that have it
        assert "it lacks " in message and "expected" in message, message
        fitting = message.rsplit("expected", 1)[1]
        assert mechanism not in fitting.replace(":", ",").replace(" ", "").split(","), message
        return
    if (task, model) not in NOT_TORCH:
        _one_step(task, p, prepared)


# ---- a new mechanism that declares a capability fits where it is needed, with no list to edit ----------------
class ProbeHeads(MultiHeadAttention):
    """A multi-head layer under another name: what a Transformer block needs."""

    description = "probe: multi-head attention under another name"


class ProbeHard(ReinforceHardAttention):
    """A sampled location trained by REINFORCE: captioning's hard decoder."""

    description = "probe: REINFORCE hard attention under another name"


class ProbeNone(NoAttention):
    """Another mechanism that does not attend: the models without attention take it."""

    description = "probe: no attention under another name"


class ProbePairs(Attention):
    """Weights over feature-interaction pairs, from the keys alone (query-free)."""

    forms = frozenset({"pairs"})
    decoder_step = False
    description = "probe: a query-free score of each pair vector"

    def __init__(self, query_dim, key_dim, value_dim):
        super().__init__(query_dim, key_dim, value_dim)
        self.w = torch.nn.Linear(key_dim, 1)

    def score(self, query, keys):
        return self.w(keys).squeeze(-1).unsqueeze(1).expand(-1, query.shape[1], -1)


class ProbeSlots(Attention):
    """Weights over learned memory slots (an external-attention look-alike) for a feature map's pixels."""

    forms = frozenset({"map"})
    decoder_step = False
    weights_over = "slots"
    produces_alignment = False
    description = "probe: a memory of slots read by each pixel"

    def __init__(self, query_dim, key_dim, value_dim, memory_size: int = 4):
        super().__init__(query_dim, key_dim, value_dim)
        self.m_k = torch.nn.Linear(query_dim, memory_size, bias=False)
        self.m_v = torch.nn.Linear(memory_size, query_dim, bias=False)

    def attend(self, query, keys, values, mask, positions):
        a = torch.softmax(self.m_k(query), dim=-1)
        return self.m_v(a), a


# (mechanism class, its capability in words, the (task, model)s that need it, a (task, model) it does not fit)
PROBES = [
    (ProbeHeads, "a multi-head layer", [("translation", "transformer"), ("load", "transformer"), ("intent", "bert")],
     ("translation", "rnn")),
    (ProbeHard, "REINFORCE", [("captioning", "cnn_lstm")], ("load", "feature_attn")),
    (ProbeNone, "no attention", [("load", "seasonal_naive"), ("glimpse", "cnn"), ("recsys", "fm"), ("ships", "shallow"),
                                 ("load", "gru"), ("documents", "han"), ("captioning", "cnn_lstm")], ("load", "feature_attn")),
    (ProbePairs, "pairs", [("recsys", "afm")], ("translation", "rnn")),
    (ProbeSlots, "slots over a feature map", [("ships", "deep")], ("load", "gru")),
]


@pytest.mark.parametrize("cls,capability,users,misfit", PROBES, ids=[p[1] for p in PROBES])
def test_a_new_mechanism_fits_by_what_it_declares(cls, capability, users, misfit, prepared):
    name = f"probe_{cls.__name__.lower()}"
    register(name)(cls)
    try:
        for task, model in users:
            p = _params(task, model, name)
            _check(task, p)                      # accepted: no list of names stood in the way
            _one_step(task, p, prepared)
        if cls is ProbeHard:   # captioning reads the capability: the hard decoder and its REINFORCE loss
            t = tasks.get("captioning")
            cfg = resolve_run(_params("captioning", "cnn_lstm", name), "captioning", "probe", 0)
            assert t.build_model(cfg, t.load(prepared("captioning"), cfg)).kind == "hard"
        task, model = misfit   # refused where it lacks what another model needs, naming it and the missing capability
        with pytest.raises(ParamsError, match=rf"runs\.probe\.attention: value '{name}' is not allowed for model "
                                              rf"'{model}': it lacks "):
            _check(task, _params(task, model, name))
    finally:
        REGISTRY.pop(name, None)


def test_a_fixed_number_of_positions_must_cover_the_window():
    """location attention scores at most max_len keys: too few for the window is refused, naming the option."""
    p = _params("load", "gru", "location", {"max_len": 64})
    with pytest.raises(ParamsError, match=r"tasks\.load\.runs\.probe\.options\.max_len: value 64 is too small.*expected >= "):
        _check("load", p)
