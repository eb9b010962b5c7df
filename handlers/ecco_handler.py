"""TorchServe handler for ecco-serve: TorchServe glue over the data plane (``ecco_dataplane``).

``initialize`` loads the model once per worker; ``handle`` serves a batch row by row: ``read_row``
finds each row's transport and call, ``DataPlane.serve`` answers it (decode -> engine -> encode, the
metrics, the failure mapping), and this module sends what TorchServe needs sent its own way:

- stream events as they come, with ``send_intermediate_predict_response`` (gRPC: a message of
  StreamPredictions; REST: a JSON line of a chunked reply); the final replies are returned;
- a failure the transport sends as a status (REST, KServe v1) is the row's own status
  (``context.set_response_status``), so one row's failure never fails the other rows of a batch;
- the frontend ignores a gRPC row's status, so a gRPC row that fails alone in its batch raises
  ``PredictionException`` (400 -> INVALID_ARGUMENT, 413 -> RESOURCE_EXHAUSTED, 422 ->
  FAILED_PRECONDITION, 500 -> INTERNAL; also after streamed events: the call then ends with that
  status); inside a larger batch its reply carries the error;
- every gRPC row gets the header ``ts_stream_next: false``, on which the frontend completes a
  StreamPredictions call (a REST row must not: its reply would hang);
- gRPC rows with ``stream`` are refused unless ``handler.grpc_stream`` opts in (``ecco_dataplane.grpc``:
  the worker cannot tell StreamPredictions from Predictions, and a stream on Predictions kills the worker).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.utils.util import PredictionException

import ecco_engine
from ecco_dataplane import GRPC, GRPC_STREAMING, KSERVE_V1, REST, DataPlane, Grpc, Reply, Row, Transport, read_row
from ecco_engine import EngineLimits, Explainer
from ecco_engine.loading import load_model, model_dtype, resolve_device
from ecco_serving.metrics import initialize_model

logger = logging.getLogger(__name__)


class EccoHandler:
    """TorchServe entry point (``initialize`` once per worker, ``handle`` per batch)."""

    def __init__(self) -> None:
        self.plane: DataPlane | None = None
        self.transports: tuple[Transport, ...] = (REST, KSERVE_V1, GRPC)

    @property
    def initialized(self) -> bool:
        return self.plane is not None

    @property
    def explainer(self) -> Explainer:
        assert self.plane is not None, "initialize first"
        return self.plane.explainer

    def initialize(self, context) -> None:
        settings = (context.model_yaml_config or {}).get("handler", {})
        threads = int(settings.get("torch_threads", 0))
        if threads > 0:
            torch.set_num_threads(threads)
        folder = Path(context.system_properties["model_dir"]) / settings.get("model_subdir", "model")
        dtype = model_dtype(settings.get("dtype"))
        # the GPU TorchServe assigned this worker (gpu_id), or the one model-config.yaml names
        device = resolve_device(settings.get("device"), context.system_properties.get("gpu_id"))
        # nested `internals:` limits; an unknown name fails here, at start-up, before the model loads
        limits = EngineLimits.from_mapping(settings.get("limits") or {})
        if settings.get("grpc_stream", False):  # opt-in: see ecco_dataplane.grpc
            self.transports = (REST, KSERVE_V1, GRPC_STREAMING)
        start = time.perf_counter()
        model, tokenizer = load_model(folder, dtype=dtype, device=device)
        self.plane = DataPlane(Explainer(model, tokenizer, limits=limits), context.model_name)
        initialize_model(context.model_name)  # the usual metric series at zero (ecco_serving.metrics)
        logger.info(
            "loaded %s from %s on %s (%s) in %.1f s (ecco_engine from %s)",
            context.model_name, folder, device, dtype, time.perf_counter() - start, Path(ecco_engine.__file__).parent,
        )  # fmt: skip

    def handle(self, data: list[dict[str, Any]], context) -> list[bytes]:
        if len(data) > 1:
            logger.info("handling a batch of %d requests", len(data))
        rows = [
            read_row(index, raw, context.get_all_request_header(index), self.transports)
            for index, raw in enumerate(data)
        ]
        replies = [self._serve(row, context) for row in rows]
        lone = replies[0] if len(rows) == 1 and isinstance(rows[0].transport, Grpc) else None
        if lone is not None and lone.failure is not None:  # the only way to give a gRPC call a status
            raise PredictionException(lone.failure.message, lone.failure.status)
        for row, reply in zip(rows, replies, strict=True):
            context.set_response_content_type(row.index, reply.content_type)
            if reply.failure is not None and reply.as_status:
                context.set_response_status(reply.failure.status, reply.failure.code, row.index)
            if isinstance(row.transport, Grpc):
                context.set_response_header(row.index, "ts_stream_next", "false")
        return [reply.body for reply in replies]

    def _serve(self, row: Row, context) -> Reply:
        """Send the row's stream events as they come; return its final reply."""
        assert self.plane is not None, "initialize first"
        final = None
        for reply in self.plane.serve(row.transport, row.call):
            if reply.final:
                final = reply
                continue
            context.set_response_content_type(row.index, reply.content_type)
            request_ids = {row.index: context.request_ids[row.index]}
            send_intermediate_predict_response(
                {row.index: reply.body}, request_ids, "Intermediate Prediction success", 200, context
            )
        assert final is not None, "DataPlane.serve ends with the final reply"
        return final


_service = EccoHandler()


def handle(data: list[dict[str, Any]] | None, context) -> list[bytes] | None:
    """TorchServe's module-level entry point: ``handle(None, ctx)`` initializes."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
