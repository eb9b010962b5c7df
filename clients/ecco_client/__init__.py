"""ecco_client: call a served ecco-serve model over REST or gRPC (no torch needed).

    from ecco_client import EccoClient
    with EccoClient(url="http://127.0.0.1:8080", model="smollm2-135m-instruct", key_file="key_file.json") as c:
        result = c.explain(prompt="The capital of France is", max_new_tokens=4)
        print(result.attribution("integrated_gradients").scores)
        look = c.explain(prompt="The capital of France is", attribute=False,
                         internals={"layer_predictions": True, "watch": [" Paris", " London"]})
        print(look.internals.watch.overtake_layer(" Paris", " London"))

Command line: ``ecco explain --prompt ...`` (see ``ecco --help``).
"""

from __future__ import annotations

from .auth import find_key_file, read_key_file
from .build import build_internals, build_request, parse_intervention
from .client import EccoClient
from .errors import EccoError
from .internals import (
    Internals,
    LayerActivations,
    LayerPredictions,
    NeuronActivations,
    NmfFactors,
    PositionPredictions,
    TokenRankings,
    WatchedTokens,
)
from .results import Attribution, ExplainResult, Faithfulness, GenerateResult, RowEvent, Timing, Token, TokenEvent
from .transports import GrpcTransport, RestTransport

__all__ = [
    "Attribution",
    "EccoClient",
    "EccoError",
    "ExplainResult",
    "Faithfulness",
    "GenerateResult",
    "GrpcTransport",
    "Internals",
    "LayerActivations",
    "LayerPredictions",
    "NeuronActivations",
    "NmfFactors",
    "PositionPredictions",
    "RestTransport",
    "RowEvent",
    "Timing",
    "Token",
    "TokenEvent",
    "TokenRankings",
    "WatchedTokens",
    "build_internals",
    "build_request",
    "find_key_file",
    "parse_intervention",
    "read_key_file",
]
