"""ecco_engine: generation with per-token attribution for Hugging Face causal LMs.

Imports torch, transformers, captum, numpy, scipy and scikit-learn only: nothing of
TorchServe, gRPC, protobuf, HTTP or HTML. Entry point: ``Explainer(model, tokenizer).explain(request)``.
"""

from .attribution import AttributionRow
from .deadline import Deadline
from .errors import (
    DeadlineExceeded,
    EngineError,
    InvalidRequest,
    LimitExceeded,
    NonFiniteResult,
    UnknownMethod,
    UnsupportedModel,
)
from .explainer import EngineLimits, Explainer, GeneratedToken, StreamEvent
from .grouping import CharSpan, GroupedView, GroupingParams, GroupUnit
from .layout import LayoutOverride, ModelLayout, discover_layout
from .methods import REGISTRY, AttributionMethod, register
from .tokens import Token, TokenAlternative
from .types import (
    Aggregation,
    Attribution,
    AttributionParams,
    ChatMessage,
    ExplainRequest,
    Explanation,
    GenerationParams,
    GenerationResult,
    Integration,
    TargetKind,
    Timing,
)

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "Aggregation",
    "Attribution",
    "AttributionMethod",
    "AttributionParams",
    "AttributionRow",
    "CharSpan",
    "ChatMessage",
    "Deadline",
    "DeadlineExceeded",
    "EngineError",
    "EngineLimits",
    "ExplainRequest",
    "Explainer",
    "Explanation",
    "GeneratedToken",
    "GenerationParams",
    "GenerationResult",
    "GroupUnit",
    "GroupedView",
    "GroupingParams",
    "Integration",
    "InvalidRequest",
    "LayoutOverride",
    "LimitExceeded",
    "ModelLayout",
    "NonFiniteResult",
    "StreamEvent",
    "TargetKind",
    "Timing",
    "Token",
    "TokenAlternative",
    "UnknownMethod",
    "UnsupportedModel",
    "discover_layout",
    "register",
]
