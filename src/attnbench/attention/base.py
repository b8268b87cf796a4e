"""Common interface, masking helper and registry for attention mechanisms.

Every mechanism is an :class:`Attention` subclass constructed as
``Cls(query_dim, key_dim, value_dim, **options)`` and called as::

    context, weights = attn(query, keys, values, mask=None, positions=None)

* ``query``  ``[B, Dq]`` (one decoding step) or ``[B, Tq, Dq]``
* ``keys``   ``[B, Tk, Dk]``;  ``values`` ``[B, Tk, Dv]``
* ``mask``   bool ``[B, Tk]``, True marks a real (non-padding) position
* ``positions`` optional time index of each query step: int, ``[Tq]`` or
  ``[B, Tq]`` (``[B]`` is also accepted for a 2-D query).  Defaults to
  ``arange(Tq)`` for a 3-D query and ``0`` for a 2-D query.

The outputs follow the query: ``context`` is ``[B, output_dim]`` /
``[B, Tq, output_dim]`` and ``weights`` ``[B, Tk]`` / ``[B, Tq, Tk]``.
Weights sum to 1 over the real positions and are exactly 0 on masked ones; a
row without any real position yields all-zero weights (never NaN).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, ClassVar, TypeVar

import torch
from torch import Tensor, nn

__all__ = [
    "Attention",
    "NO_ATTENTION",
    "Needs",
    "REGISTRY",
    "UnknownMechanismError",
    "available",
    "build",
    "masked_softmax",
    "refusal",
    "register",
    "resolve_positions",
]


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` along ``dim`` restricted to ``mask`` (True = keep).

    ``mask`` must broadcast to ``scores``.  Masked entries get exactly 0; a
    slice with no kept entry gets all zeros instead of NaN (masked scores are
    filled with the dtype's most negative finite value, not ``-inf``).
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    mask = mask.to(torch.bool)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim).masked_fill(~mask, 0.0)


def resolve_positions(
    positions: int | Tensor | None,
    batch: int,
    steps: int,
    single_step: bool,
    device: torch.device,
) -> Tensor:
    """Normalise ``positions`` to a LongTensor ``[batch, steps]``."""
    if positions is None:
        if single_step:
            return torch.zeros(batch, 1, dtype=torch.long, device=device)
        return torch.arange(steps, device=device).expand(batch, steps)
    p = torch.as_tensor(positions, device=device).long()
    if p.dim() == 0 or p.numel() == 1:
        return p.reshape(1, 1).expand(batch, steps)
    if p.dim() == 1:
        if p.numel() == steps:
            return p.view(1, steps).expand(batch, steps)
        if steps == 1 and p.numel() == batch:
            return p.view(batch, 1)
    if p.dim() == 2 and tuple(p.shape) == (batch, steps):
        return p
    raise ValueError(
        f"positions of shape {tuple(p.shape)} do not fit batch={batch}, query steps={steps}"
    )


class Attention(nn.Module):
    """Base class: ``forward(query, keys, values, mask=None, *, positions=None)``.

    Subclasses implement either :meth:`score` (returning ``[B, Tq, Tk]``
    unnormalised scores; the default :meth:`attend` then applies
    :func:`masked_softmax` and a weighted sum of the values) or override
    :meth:`attend` itself.  Both always see a 3-D query.
    """

    produces_alignment: ClassVar[bool] = True
    description: ClassVar[str] = ""
    name: ClassVar[str] = ""  # set by @register
    # Capabilities the models and tasks read instead of lists of names (scikit-learn's estimator tags,
    # for mechanisms). A new mechanism states what differs from these defaults.
    decoder_step: ClassVar[bool] = True  # weighs a sequence of keys for one query at a time (an RNN decoder step)
    forms: ClassVar[frozenset[str]] = frozenset({"sequence"})  # what it attends over: "sequence" (query vs keys),
    #   "map" (a 2-D feature map), "gate" (also: gates a feature map in place, `forward_map`), "pairs"
    #   (feature-interaction vectors), "glimpse" (image locations), "partition" (a coarse net's class region)
    weights_over: ClassVar[str] = "keys"  # what its weights lie over: "keys" (one weight per key position), "slots"
    #   (learned memory slots, not the keys), "channels" / "pixels" (gates of a feature map), "region", "locations"
    attends: ClassVar[bool] = True       # False: the no-attention baseline (fixed uniform weights), which a model
    #   may replace by its attention-free variant
    ordered: ClassVar[bool] = False      # reads the keys' order (a window around a position): needs a sequence
    sampled: ClassVar[bool] = False      # picks one key in training (hard attention) instead of weighing them all
    reinforce: ClassVar[bool] = False    # that pick is trained by REINFORCE: `choose` gives the caller log-probabilities
    heads: ClassVar[bool] = False        # a multi-head layer with the Transformer block's calls (causal, cached steps)
    equal_dims: ClassVar[bool] = False   # compares query and key vectors directly: needs query_dim == key_dim
    caches_keys: ClassVar[bool] = False  # `project_keys` / `projected_scores`: the keys projected once per memory
    scaling: ClassVar[str] = "quadratic"  # how its cost grows with the length (self-attention): quadratic | linear
    #   | image (follows the image a sequence folds into, not its length alone: no exponent expected)

    def __init__(self, query_dim: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.query_dim = int(query_dim)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim)
        self.output_dim = int(value_dim)

    # -- helpers shared by all mechanisms ---------------------------------
    @staticmethod
    def _as_3d(query: Tensor) -> tuple[Tensor, bool]:
        if query.dim() == 2:
            return query.unsqueeze(1), True
        if query.dim() == 3:
            return query, False
        raise ValueError(f"query must be [B, Dq] or [B, Tq, Dq], got {tuple(query.shape)}")

    @staticmethod
    def _check_mask(mask: Tensor | None, keys: Tensor) -> Tensor | None:
        if mask is None:
            return None
        if tuple(mask.shape) != tuple(keys.shape[:2]):
            raise ValueError(
                f"mask must be [B, Tk] = {tuple(keys.shape[:2])}, got {tuple(mask.shape)}"
            )
        return mask.to(torch.bool)

    @staticmethod
    def _restore(context: Tensor, weights: Tensor | None, single: bool) -> tuple[Tensor, Tensor | None]:
        if single:
            context = context.squeeze(1)
            weights = None if weights is None else weights.squeeze(1)
        return context, weights

    # -- public API ---------------------------------------------------------
    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        *,
        positions: int | Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        q, single = self._as_3d(query)
        mask = self._check_mask(mask, keys)
        pos = resolve_positions(positions, q.shape[0], q.shape[1], single, q.device)
        context, weights = self.attend(q, keys, values, mask, pos)
        return self._restore(context, weights, single)

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        """3-D query ``[B, Tq, Dq]`` -> (context ``[B, Tq, Dv]``, weights ``[B, Tq, Tk]``)."""
        scores = self.score(query, keys)
        weights = masked_softmax(scores, None if mask is None else mask.unsqueeze(1))
        return torch.bmm(weights, values), weights

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """Unnormalised scores ``[B, Tq, Tk]`` for a 3-D query."""
        raise NotImplementedError(f"{type(self).__name__} does not define a score function")


# -- registry ---------------------------------------------------------------
REGISTRY: dict[str, type[Attention]] = {}

A = TypeVar("A", bound=type[Attention])


class UnknownMechanismError(KeyError):
    """Raised by :func:`build` for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise show the repr
        return str(self.args[0]) if self.args else ""


def register(name: str) -> Callable[[A], A]:
    """Class decorator adding an :class:`Attention` subclass to ``REGISTRY``."""

    def decorator(cls: A) -> A:
        if name in REGISTRY:
            raise ValueError(
                f"attention mechanism {name!r} is already registered "
                f"(by {REGISTRY[name].__qualname__})"
            )
        if not (isinstance(cls, type) and issubclass(cls, Attention)):
            raise TypeError(f"@register({name!r}) needs an Attention subclass, got {cls!r}")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return decorator


def available() -> list[str]:
    """Sorted names of all registered mechanisms."""
    return sorted(REGISTRY)


@dataclass(frozen=True)
class Needs:
    """What a model needs of the mechanism it is given, in capability tags (None: either value fits).

    ``forms``: the mechanism attends over one of these; ``alignment``: its ``produces_alignment``; the other
    fields are the tags of the same name. ``optional``: a mechanism that does not attend (``none``) fits too,
    as the model's attention-free variant. A model declares its needs as ``attention_needs``."""

    forms: tuple[str, ...] | None = ("sequence",)
    decoder_step: bool | None = None
    alignment: bool | None = None
    attends: bool | None = True
    ordered: bool | None = None
    sampled: bool | None = None
    reinforce: bool | None = None
    heads: bool | None = None
    equal_dims: bool | None = None
    optional: bool = False

    def missing(self, cls: type[Attention]) -> list[str]:
        """What ``cls`` lacks of these needs, in words (empty: it fits)."""
        if self.optional and not cls.attends:
            return []
        out = []
        if self.forms is not None and not set(self.forms) & cls.forms:
            out.append(f"attention over {' or '.join(FORM_WORDS.get(f, f) for f in self.forms)} (it attends over "
                       f"{', '.join(FORM_WORDS.get(f, f) for f in sorted(cls.forms))})")
        for field, tag in TAGS.items():
            want = getattr(self, field)
            if want is not None and getattr(cls, tag) != want:
                out.append(CAPABILITY_WORDS[field, want].format(over=cls.weights_over))
        return out

    def fitting(self) -> list[str]:
        """Sorted names of the registered mechanisms that meet these needs."""
        return sorted(name for name, cls in REGISTRY.items() if not self.missing(cls))


# a model without attention: only a mechanism that does not attend (`none`) fits
NO_ATTENTION = Needs(forms=None, attends=False)
FORM_WORDS = {"sequence": "a sequence of keys for a query", "map": "a 2-D feature map",
              "gate": "a feature map it gates in place", "pairs": "feature-interaction pairs",
              "glimpse": "image locations (glimpses)", "partition": "a coarse net's class region"}
TAGS = {"decoder_step": "decoder_step", "alignment": "produces_alignment", "attends": "attends", "ordered": "ordered",
        "sampled": "sampled", "reinforce": "reinforce", "heads": "heads", "equal_dims": "equal_dims"}
# (field, the value needed) -> the capability in words, as a refusal names it
CAPABILITY_WORDS = {
    ("decoder_step", True): "weighing the keys for one query at a time (an RNN decoder step)",
    ("decoder_step", False): "attending without an outside query (it is one decoder step)",
    ("alignment", True): "weights over the keys, an alignment (its weights are over {over})",
    ("alignment", False): "weights that are not an alignment over the keys",
    ("attends", True): "attention (input-dependent weights; it is the fixed mean of no attention)",
    ("attends", False): "no attention (the model has none: it takes no mechanism)",
    ("ordered", True): "attention around a position of an ordered sequence",
    ("ordered", False): "attention without an order among the keys (it attends around a position of an ordered "
                        "sequence)",
    ("sampled", True): "a sampled choice of one key",
    ("sampled", False): "soft weights over every key (it samples one key in training)",
    ("reinforce", True): "a sampled choice trained by REINFORCE (log-probabilities for the caller)",
    ("reinforce", False): "training by backpropagation alone (it needs the caller's REINFORCE term)",
    ("heads", True): "a multi-head layer (the Transformer block's)",
    ("heads", False): "a single attention (it is a whole multi-head layer, the Transformer's)",
    ("equal_dims", True): "query and keys of one size",
    ("equal_dims", False): "a query and keys of different sizes (it compares them directly, so needs equal sizes)",
}


def capable(decoder_step: bool | None = None, form: str | None = None, alignment: bool | None = None) -> list[str]:
    """Sorted names of the registered mechanisms with these capabilities (None: any)."""
    return Needs(forms=None if form is None else (form,), decoder_step=decoder_step, alignment=alignment,
                 attends=None).fitting()


def refusal(name: str, needs: Needs) -> str | None:
    """Why mechanism ``name`` does not fit a model with ``needs``, in words naming what it lacks and what
    would fit (the registry's mechanisms with these capabilities); None when it fits."""
    missing = needs.missing(get_class(name))
    if not missing:
        return None
    fitting = needs.fitting()
    expected = f"expected: {fitting[0]}" if len(fitting) == 1 else f"expected one of: {', '.join(fitting)}"
    return f"it lacks {'; '.join(missing)}; {expected}"


def get_class(name: str) -> type[Attention]:
    """The class registered as ``name`` (its capability tags), :class:`UnknownMechanismError` otherwise."""
    if name not in REGISTRY:
        raise UnknownMechanismError(f"unknown attention mechanism {name!r}; available: {', '.join(available())}")
    return REGISTRY[name]


def _accepted_options(cls: type[Attention]) -> tuple[list[str], bool]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    fixed = {"query_dim", "key_dim", "value_dim"}
    names = [
        p.name
        for p in params
        if p.name not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    return names, takes_any


def build(name: str, query_dim: int, key_dim: int, value_dim: int, **options: object) -> Attention:
    """Instantiate the mechanism registered as ``name``.

    Raises :class:`UnknownMechanismError` (a ``KeyError``) listing the
    available names for an unknown ``name``, and ``TypeError`` naming the
    mechanism, the offending option(s) and the accepted options when an
    option is not accepted by the mechanism's ``__init__``.
    """
    if name not in REGISTRY:
        raise UnknownMechanismError(
            f"unknown attention mechanism {name!r}; available: {', '.join(available())}"
        )
    cls = REGISTRY[name]
    accepted, takes_any = _accepted_options(cls)
    bad = sorted(k for k in options if k not in accepted)
    if bad and not takes_any:
        raise TypeError(
            f"attention mechanism {name!r} got unexpected option(s) {bad}; "
            f"accepted options: {accepted}"
        )
    return cls(query_dim, key_dim, value_dim, **options)
