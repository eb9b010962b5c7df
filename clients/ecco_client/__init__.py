"""ecco_client: call a served ecco-serve model over REST or gRPC (no torch needed).

    from ecco_client import EccoClient
    with EccoClient(url="http://127.0.0.1:8080", model="smollm2-135m-instruct", key_file="key_file.json") as c:
        result = c.explain(prompt="The capital of France is", max_new_tokens=4)
        print(result.attribution("integrated_gradients").scores)

Command line: ``ecco explain --prompt ...`` (see ``ecco --help``).
"""

from __future__ import annotations

from .auth import find_key_file, read_key_file
from .build import build_request
from .client import EccoClient
from .errors import EccoError
from .results import Attribution, ExplainResult, GenerateResult, RowEvent, Timing, Token, TokenEvent
from .transports import GrpcTransport, RestTransport

__all__ = [
    "Attribution",
    "EccoClient",
    "EccoError",
    "ExplainResult",
    "GenerateResult",
    "GrpcTransport",
    "RestTransport",
    "RowEvent",
    "Timing",
    "Token",
    "TokenEvent",
    "build_request",
    "find_key_file",
    "read_key_file",
]
