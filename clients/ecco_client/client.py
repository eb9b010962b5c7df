"""``EccoClient``: generate and explain through a served ecco-serve model, over REST or gRPC."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any, Literal

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .auth import read_key_file
from .build import Kind, build_request
from .results import ExplainResult, GenerateResult, StreamItem, stream_item
from .transports import GrpcTransport, RestTransport


class EccoClient:
    """A client for one served model.

    ``EccoClient(url="http://127.0.0.1:8080", model="m")`` talks REST; ``EccoClient(grpc="127.0.0.1:7070",
    model="m")`` talks gRPC. Both return the same ``GenerateResult`` / ``ExplainResult``. The token is
    ``token``, else the "inference" key of ``key_file`` (TorchServe's ``key_file.json``), else none.
    Request options are the fields of ``ecco.v1.ExplainRequest`` (see ``build_request``); ``None``
    means "server default"::

        with EccoClient(url=url, model="smollm2", key_file="key_file.json") as client:
            result = client.explain(prompt="The capital of France is", max_new_tokens=4, n_steps=32)
            ig = result.attribution("integrated_gradients")
    """

    def __init__(
        self,
        *,
        model: str,
        url: str | None = None,
        grpc: str | None = None,
        token: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
        timeout: float = 600.0,
        wire: Literal["json", "proto"] = "json",
        kserve: bool = False,
        model_version: str | None = None,
    ) -> None:
        if (url is None) == (grpc is None):
            raise ValueError("give exactly one of url (REST) and grpc (host:port)")
        if token is None and key_file is not None:
            token = read_key_file(key_file)
        self.transport: RestTransport | GrpcTransport
        if url is not None:
            self.transport = RestTransport(
                url, model, token=token, timeout=timeout, wire=wire, kserve=kserve, model_version=model_version
            )
        else:
            assert grpc is not None
            self.transport = GrpcTransport(grpc, model, token=token, timeout=timeout, model_version=model_version)

    def __enter__(self) -> EccoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def ping(self) -> str:
        """TorchServe's health ("Healthy")."""
        return self.transport.ping()

    def send(self, kind: Kind, request: pb.ExplainRequest) -> GenerateResult | ExplainResult:
        """Send a ready-made ``ExplainRequest`` (its ``kind`` is set to ``kind``)."""
        message = pb.ExplainRequest()
        message.CopyFrom(request)
        message.kind = pb.EXPLAIN if kind == "explain" else pb.GENERATE
        reply = self.transport.call(kind, message)
        if kind == "explain":
            return ExplainResult.from_proto(reply)
        return GenerateResult.from_proto(reply)

    def generate(self, **options: Any) -> GenerateResult:
        """Generate (or take ``continuation``); no attribution."""
        result = self.send("generate", build_request("generate", **options))
        assert isinstance(result, GenerateResult)
        return result

    def explain(self, **options: Any) -> ExplainResult:
        """Generate, then attribute every explained token to the tokens before it."""
        result = self.send("explain", build_request("explain", **options))
        assert isinstance(result, ExplainResult)
        return result

    def stream(self, kind: Kind = "explain", **options: Any) -> Iterator[StreamItem]:
        """Ask for a stream (``ExplainRequest.stream``) and yield its items as they arrive: a
        ``TokenEvent`` per generated token, then (explain) a ``RowEvent`` per explained token and
        method, then the full ``GenerateResult`` / ``ExplainResult`` (equal to the unary reply).

        gRPC: TorchServe's StreamPredictions. REST: a chunked reply with one JSON event per line (JSON
        wire, not the KServe v1 paths). A failure raises ``EccoError``, also after some items arrived."""
        for event in self.stream_events(kind, build_request(kind, **options)):
            yield stream_item(event)

    def stream_events(self, kind: Kind, request: pb.ExplainRequest) -> Generator[pb.StreamEvent, None, None]:
        """The ``StreamEvent`` messages of a ready-made ``ExplainRequest`` (its ``kind`` and ``stream`` are
        set here), as they arrive; an ``error`` event raises ``EccoError``."""
        message = pb.ExplainRequest()
        message.CopyFrom(request)
        message.kind = pb.EXPLAIN if kind == "explain" else pb.GENERATE
        message.stream = True
        return self.transport.stream(kind, message)
