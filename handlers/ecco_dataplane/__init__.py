"""ecco_dataplane: one transport-neutral data plane and one small adapter per transport.

- ``DataPlane`` (plane.py): decode -> engine -> encode for one call, streaming included; counts it,
  maps any failure once to a ``Failure`` and hands that to the metrics;
- adapters (``Transport``, transport.py): ``REST`` (rest.py), ``KSERVE_V1`` (kserve_v1.py), ``GRPC``
  (grpc.py): how a call of the transport is decoded and what a failure looks like to its client;
- ``read_row`` (torchserve_rows.py): which transport a TorchServe row came over, and its ``Call``.

A carrier (the TorchServe handler, a test server) turns its requests into ``Call``s, iterates
``plane.serve(transport, call)`` and sends the ``Reply``s: stream events as they come, then the final one.
Adding a transport is one adapter file (and its entry in ``TRANSPORTS`` if TorchServe carries it).
"""

from __future__ import annotations

from .calls import JSON_TYPE, PROTO_TYPE, Call, Reply, media_type, to_reply
from .grpc import GRPC, GRPC_STREAMING, Grpc
from .kserve_v1 import KSERVE_V1, KServeV1
from .plane import DataPlane, Job
from .rest import REST, Rest
from .torchserve_rows import TRANSPORTS, Row, read_row
from .transport import Transport

__all__ = [
    "GRPC",
    "GRPC_STREAMING",
    "JSON_TYPE",
    "KSERVE_V1",
    "PROTO_TYPE",
    "REST",
    "TRANSPORTS",
    "Call",
    "DataPlane",
    "Grpc",
    "Job",
    "KServeV1",
    "Reply",
    "Rest",
    "Row",
    "Transport",
    "media_type",
    "read_row",
    "to_reply",
]
