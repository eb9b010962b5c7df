"""The transport-neutral data plane and its adapters, without TorchServe: rows, replies, failures, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client import CollectorRegistry

import ecco_dataplane.plane
from ecco_codec import Failure
from ecco_dataplane import GRPC, GRPC_STREAMING, KSERVE_V1, REST, Call, DataPlane, Reply, Transport, read_row, to_reply
from ecco_engine import EngineLimits, Explainer, InvalidRequest
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ecco_serving.metrics import EccoMetrics, ObservedRequest
from tiny_models import tiny_model, tiny_tokenizer

GENERATE = {"prompt": "The capital", "generation": {"max_new_tokens": 2}}
TOO_LONG = {"prompt": "x", "generation": {"max_new_tokens": 9}}


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer(tiny_model("gpt2"), tiny_tokenizer(), limits=EngineLimits(max_new_tokens=8))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def plane(explainer, registry) -> DataPlane:
    return DataPlane(explainer, "tiny", metrics=EccoMetrics(registry))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    samples = [s for family in registry.collect() for s in family.samples if s.name == name]
    return sum(s.value for s in samples if wanted <= set(s.labels.items()))


def json_call(fields: dict, url_kind: str | None = "generate") -> Call:
    return Call(json.dumps(fields).encode(), "application/json", url_kind)


@pytest.mark.parametrize(("row", "headers", "transport", "call"), [
    ({"body": b"{}"}, {"Content-Type": "application/json; charset=utf-8", "explain": "True", "url_path": ""},
     REST, Call(b"{}", "application/json", "explain")),
    ({"data": b"{}"}, {"content-type": "application/json", "explain": "False"}, KSERVE_V1,
     Call(b"{}", "application/json", "generate")),
    ({"body": b"\x08\x01"}, {"body": {"content-type": ""}}, GRPC, Call(b"\x08\x01")),
    ({"request": b"\x08\x01"}, {"request": {"content-type": ""}}, GRPC, Call(None)),
])  # fmt: skip
def test_torchserve_rows_name_their_transport_and_call(row, headers, transport, call) -> None:
    read = read_row(3, row, headers)
    assert (read.index, read.transport, read.call) == (3, transport, call)


def test_serve_ends_with_one_final_reply(plane) -> None:
    replies = list(plane.serve(REST, json_call(GENERATE)))
    assert [r.final for r in replies] == [True] and replies[0].failure is None
    assert replies[0].content_type == "application/json" and json.loads(replies[0].body)["generated_text"]


def test_a_stream_sends_its_events_before_the_final_reply(plane) -> None:
    request = pb.ExplainRequest(prompt="x", generation=pb.GenerationParams(max_new_tokens=2), stream=True)
    replies = list(plane.serve(GRPC_STREAMING, Call(request.SerializeToString())))
    assert [r.final for r in replies] == [False] * (len(replies) - 1) + [True] and len(replies) > 1
    events = [pb.StreamEvent.FromString(r.body) for r in replies]
    assert {e.WhichOneof("event") for e in events[:-1]} == {"token"} and events[-1].HasField("generate_summary")


def test_grpc_refuses_stream_unless_the_model_opts_in(plane) -> None:
    """The worker cannot tell StreamPredictions from Predictions: by default one message, never a stream."""
    request = pb.ExplainRequest(prompt="x", generation=pb.GenerationParams(max_new_tokens=2), stream=True)
    (reply,) = plane.serve(GRPC, Call(request.SerializeToString()))
    assert reply.final and reply.failure is not None and reply.failure[:2] == (400, "INVALID_ARGUMENT")
    assert reply.failure.message.startswith("stream: not served over gRPC by this model")
    assert pb.StreamEvent.FromString(reply.body).error.code == 3  # the reply carries it too (batched rows)


def test_a_failure_is_mapped_once_and_handed_to_the_metrics(plane, registry, monkeypatch) -> None:
    mapped = []
    status_for = ecco_dataplane.plane.status_for
    monkeypatch.setattr(ecco_dataplane.plane, "status_for", lambda error: mapped.append(error) or status_for(error))
    (reply,) = plane.serve(REST, json_call(TOO_LONG))
    assert reply.failure == (413, "RESOURCE_EXHAUSTED", "generation.max_new_tokens: must be at most 8, got 9")
    assert reply.as_status and json.loads(reply.body)["type"] == "RESOURCE_EXHAUSTED"
    assert len(mapped) == 1
    errors = {"model": "tiny", "transport": "rest", "error": "LimitExceeded", "status": "413"}
    assert value(registry, "ecco_errors_total", **errors) == 1
    assert value(registry, "ecco_requests_total", transport="rest", outcome="client_error") == 1


def test_each_adapter_carries_the_failure_its_own_way(plane) -> None:
    (grpc,) = plane.serve(GRPC, json_call(TOO_LONG, url_kind=None))
    assert not grpc.as_status and json.loads(grpc.body)["error"]["code"] == 8  # the reply carries it
    (kserve,) = plane.serve(KSERVE_V1, json_call({"instances": [GENERATE, TOO_LONG]}))
    assert kserve.as_status and kserve.failure is not None
    assert kserve.failure.message.startswith("instances[1].generation.max_new_tokens: must be at most 8")
    (missing,) = plane.serve(GRPC, Call(None))
    assert missing.failure == (
        400,
        "INVALID_ARGUMENT",
        'body: missing: send the ecco.v1.ExplainRequest as input["body"]',
    )


class OpenInferenceV2(Transport):
    """A transport added in one small adapter: Open Inference Protocol v2 with the request as one BYTES input."""

    name = "oip_v2"

    def claims(self, headers: Mapping[str, str]) -> bool:
        return False  # not carried by TorchServe in this test

    def replies(self, plane: DataPlane, call: Call, observed: ObservedRequest) -> Iterator[Reply]:
        inputs = json.loads(self.require_body(call)).get("inputs") or []
        if len(inputs) != 1 or inputs[0].get("datatype") != "BYTES":
            raise InvalidRequest("inputs", "give one BYTES input holding the ecco.v1.ExplainRequest as JSON")
        job = plane.decode(Call(inputs[0]["data"][0].encode(), "application/json", call.url_kind), observed)
        (reply,) = plane.run(job, observed)
        output = {"name": "reply", "datatype": "BYTES", "shape": [1], "data": [reply.body.decode()]}
        yield Reply(json.dumps({"model_name": plane.model_name, "outputs": [output]}).encode(), "application/json")

    def failed(self, failure: Failure, call: Call, *, streamed: bool) -> Reply:
        return to_reply({"error": failure.message}, failure=failure)  # never streamed


def test_a_new_transport_is_one_adapter(plane, registry) -> None:
    oip = OpenInferenceV2()
    body = {"inputs": [{"name": "request", "datatype": "BYTES", "shape": [1], "data": [json.dumps(GENERATE)]}]}
    (reply,) = plane.serve(oip, json_call(body))
    output = json.loads(reply.body)["outputs"][0]
    assert json.loads(output["data"][0])["generated_text"] and reply.failure is None
    (failed,) = plane.serve(oip, json_call({"inputs": []}))
    assert json.loads(failed.body) == {
        "error": "inputs: give one BYTES input holding the ecco.v1.ExplainRequest as JSON"
    }
    assert value(registry, "ecco_requests_total", transport="oip_v2") == 2
