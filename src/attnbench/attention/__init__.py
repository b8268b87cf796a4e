"""Attention mechanisms behind one interface, selectable by name.

>>> from attnbench.attention import build, available
>>> attn = build("additive", query_dim=32, key_dim=48, value_dim=48, attn_dim=16)
>>> context, weights = attn(query, keys, values, mask)   # doctest: +SKIP

See :mod:`attnbench.attention.base` for the calling convention.
"""

from __future__ import annotations

from .base import (
    NO_ATTENTION,
    REGISTRY,
    Attention,
    UnknownMechanismError,
    available,
    build,
    capable,
    get_class,
    Needs,
    masked_softmax,
    refusal,
    register,
    resolve_positions,
)
from .afm import AFMAttention  # noqa: F401  (recsys: AFM's pair-attention net)
from .external import ExternalAttention
from .hard import HardAttention
from .glimpse import GlimpseAttention  # noqa: F401  (glimpse: RAM's hard glimpses)
from .local import LocalMonotonicAttention, LocalPredictiveAttention
from .multihead import MultiHeadAttention
from .neighbour import NeighbourAttention  # noqa: F401  (load: leave-one-out local attention of the anomaly mask)
from .pooling import SelfDotAttention, TokenLocationAttention  # noqa: F401  (intent pooling scores)
from .scores import (
    AdditiveAttention,
    ConcatAttention,
    CosineAttention,
    DotAttention,
    GeneralAttention,
    KeyValueAttention,
    LocationAttention,
    NoAttention,
    ScaledDotAttention,
)
from .vision import ChannelSE, SpatialCBAM, TaskPartitionGate  # noqa: F401  (ships: convolutional attention)

__all__ = [
    "REGISTRY",
    "AdditiveAttention",
    "Attention",
    "ConcatAttention",
    "CosineAttention",
    "DotAttention",
    "ExternalAttention",
    "GeneralAttention",
    "HardAttention",
    "KeyValueAttention",
    "LocalMonotonicAttention",
    "LocalPredictiveAttention",
    "LocationAttention",
    "MultiHeadAttention",
    "NO_ATTENTION",
    "Needs",
    "NoAttention",
    "ScaledDotAttention",
    "UnknownMechanismError",
    "available",
    "build",
    "capable",
    "get_class",
    "masked_softmax",
    "refusal",
    "register",
    "resolve_positions",
]

from .reinforce import ReinforceHardAttention  # noqa: E402,F401  (captioning: Show-Attend-Tell hard attention)

# Every other module of this package too: a new mechanism is one class in one new file, found here by
# its @register line without an import to add above.
import pkgutil as _pkgutil  # noqa: E402
from importlib import import_module as _import_module  # noqa: E402

for _module in _pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        _import_module(f"{__name__}.{_module.name}")
