"""Reading TorchServe 0.12's rows: for each request of a batch, its transport and its ``Call``.

How TorchServe hands requests over (``decode_input_request=false`` in config.properties; measured):

- every row is ``{"body": bytes}``: REST bodies and gRPC ``PredictionsRequest.input["body"]`` alike
  (TorchServe's own name for a REST body is "data"); a gRPC request without ``input["body"]`` has
  another key only;
- REST rows carry the HTTP headers plus ``explain: "True"|"False"`` (``/explanations`` vs
  ``/predictions``); ``/predictions`` and ``/explanations`` rows also carry ``url_path``, the KServe v1
  paths (``/v1/models/{m}:predict|:explain``) do not;
- gRPC rows carry no header. Predictions and StreamPredictions look the same to the worker, so only a
  request that asks for a stream (``ExplainRequest.stream``) is streamed.

Each adapter of ``TRANSPORTS`` tells its rows from these headers (``Transport.claims``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ecco_codec import Kind

from .calls import Call, media_type
from .grpc import GRPC
from .kserve_v1 import KSERVE_V1
from .rest import REST
from .transport import Transport

#: the transports TorchServe carries, each recognising its own rows
TRANSPORTS: tuple[Transport, ...] = (REST, KSERVE_V1, GRPC)
INPUT_KEYS = ("body", "data")  # gRPC input key (ecco_proto.INPUT_KEY) / TorchServe's REST body name


@dataclass(frozen=True)
class Row:
    """One request of a TorchServe batch."""

    index: int
    transport: Transport
    call: Call


def read_row(
    index: int, row: Mapping[str, Any], headers: Mapping[str, Any], transports: Sequence[Transport] = TRANSPORTS
) -> Row:
    """Row ``index`` of a batch, from its data and ``context.get_all_request_header(index)``."""
    named = {str(key).lower(): value for key, value in headers.items() if isinstance(value, str)}
    transport = next(t for t in transports if t.claims(named))
    explain = named.get("explain")
    url_kind: Kind | None = None if explain is None else "explain" if explain == "True" else "generate"
    body = next((row[key] for key in INPUT_KEYS if key in row), None)
    return Row(index, transport, Call(body, media_type(named.get("content-type")), url_kind))
