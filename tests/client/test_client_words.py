"""Client and CLI for issue 12's user-facing options against the REST and gRPC servers of conftest:
log-probs and alternatives, exact replay by ids, per-position contrast, grouping by words and turns."""

from __future__ import annotations

import io
import json

import pytest
from fake_torchserve import MODEL, TOKEN
from google.protobuf import json_format

from ecco_client import EccoClient, build_request
from ecco_client.cli import main
from ecco_proto.ecco.v1 import ecco_pb2 as pb


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_client_results_carry_logprobs_grouping_and_contrast_ids(rest_url, grpc_target, transport: str) -> None:
    where = {"url": rest_url} if transport == "rest" else {"grpc": grpc_target}
    with EccoClient(model=MODEL, token=TOKEN, **where) as client:
        logged = client.generate(prompt="The capital of France is", max_new_tokens=3, top_n_tokens=2)
        generated = logged.generated_tokens
        assert all(t.logprob is not None and len(t.top_tokens) == 2 for t in generated)
        assert all(t.logprob is None for t in logged.tokens[: logged.prompt_length])
        replayed = client.explain(
            prompt="The capital of France is",
            continuation_ids=[t.id for t in generated],
            target="contrastive",
            contrast_tokens=[5, 6, 7],
            methods=["grad_x_input"],
            grouping={"unit": "words"},
        )
    assert [t.id for t in replayed.generated_tokens] == [t.id for t in generated]
    assert [t.logprob for t in replayed.generated_tokens] == pytest.approx([t.logprob for t in generated], abs=1e-5)
    assert replayed.attribution("grad_x_input").contrast_token_ids == (5, 6, 7)
    view = replayed.grouped
    assert view is not None and view.unit == "words"
    assert [g.text for g in view.groups if not g.generated] == ["The", " capital", " of", " France", " is"]
    grouped = view.attribution("grad_x_input")
    assert len(grouped.scores) == len(grouped.target_groups) and len(grouped.scores[0]) == len(view.groups)


def test_build_request_takes_spans_and_token_refs() -> None:
    message = build_request(
        "explain",
        prompt="x",
        contrast_tokens=[" Rome", 4],
        grouping={"unit": "spans", "spans": ["0:3", (4, 9)], "keep_special": True},
    )
    assert [r.WhichOneof("token") for r in message.attribution.contrast_tokens] == ["text", "id"]
    assert [(s.start, s.end) for s in message.grouping.spans] == [(0, 3), (4, 9)]
    assert message.grouping.unit == pb.SPANS and message.grouping.keep_special


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_options(server_args, transport: str) -> None:
    args = server_args[transport]
    chat = ["--chat", "user:The capital of France is", "--max-new-tokens", "2"]
    code, text = _run(["explain", *args, *chat, "--method", "grad_x_input", "--group", "words", "--top", "2"])
    assert code == 0, text
    assert "  by words: " in text and '" France"' in text and "<|im_start|>" not in text.split("grad_x_input (")[1]
    code, text = _run(["generate", *args, "--prompt", "The capital", "--max-new-tokens", "2", "--top-n-tokens", "2"])
    assert code == 0 and "logprob" in text and "top: " in text
    code, text = _run(
        [
            "explain", *args, "--prompt", "The capital", "--continuation-ids", "5,6", "--method", "grad_x_input",
            "--target", "contrastive", "--contrast-each", "The", "--contrast-each-id", "9", "--json",
        ]
    )  # fmt: skip
    assert code == 0, text
    reply = json_format.ParseDict(json.loads(text), pb.ExplainResponse())
    assert [t.id for t in reply.tokens[reply.prompt_length :]] == [5, 6]
    assert list(reply.attributions[0].contrast_token_ids)[1] == 9
    with pytest.raises(SystemExit):
        _run(["explain", *args, "--prompt", "x", "--span", "0:1"])  # --span needs --group
