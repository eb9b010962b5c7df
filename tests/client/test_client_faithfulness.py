"""The client's typed faithfulness result, its table lines and the CLI options that ask for it."""

from __future__ import annotations

import pytest

from ecco_client import ExplainResult, Faithfulness
from ecco_client.cli import _options, parser
from ecco_client.table import explanation_table
from ecco_proto.ecco.v1 import ecco_pb2 as pb


def reply() -> pb.ExplainResponse:
    faithfulness = pb.Faithfulness(
        perturbation=pb.DELETION,
        fractions=[0.1, 0.5],
        aopc_steps=10,
        comprehensiveness=pb.Matrix(rows=2, cols=2, values=[0.5, 0.25, 0.125, 0.0]),
        sufficiency=pb.Matrix(rows=2, cols=2, values=[0.0, 0.5, 0.25, 0.25]),
        aopc=[0.75, 0.5],
        mean_comprehensiveness=0.21875,
        mean_sufficiency=0.25,
        mean_aopc=0.625,
        forward_token_rows=1234,
    )
    attribution = pb.Attribution(
        method="occlusion",
        target_positions=[2, 3],
        n_sources=3,
        scores=pb.Matrix(rows=2, cols=3, values=[0.5, 0.5, 0.0, 0.2, 0.3, 0.5]),
        target_scores=[0.9, 0.8],
        faithfulness=faithfulness,
    )
    tokens = [pb.Token(id=i, text=t) for i, t in enumerate(["A", " b", " c", " d"])]
    return pb.ExplainResponse(tokens=tokens, prompt_length=2, attributions=[attribution])


def test_typed_result_and_table() -> None:
    result = ExplainResult.from_proto(reply())
    f = result.attribution("occlusion").faithfulness
    assert f == Faithfulness(
        perturbation="deletion",
        replacement_token=None,
        replacement_token_id=None,
        fractions=(0.1, 0.5),
        aopc_steps=10,
        comprehensiveness=((0.5, 0.25), (0.125, 0.0)),
        sufficiency=((0.0, 0.5), (0.25, 0.25)),
        aopc=(0.75, 0.5),
        mean_comprehensiveness=0.21875,
        mean_sufficiency=0.25,
        mean_aopc=0.625,
        forward_token_rows=1234,
    )
    lines = explanation_table(result).splitlines()
    header = next(line for line in lines if "pos" in line and "token" in line)
    assert "comp" in header and "suff" in header and "AOPC" in header
    row = next(line for line in lines if line.strip().startswith("2 "))
    assert "0.375" in row and "0.250" in row and "0.750" in row  # per-token means over the fractions
    summary = next(line for line in lines if "faithfulness (" in line)
    assert "deletion; fractions 0.1, 0.5; AOPC over up to 10 tokens" in summary
    assert "comprehensiveness 0.219" in summary and "sufficiency 0.25" in summary and "1,234 forward" in summary


def test_no_faithfulness_no_columns() -> None:
    message = reply()
    message.attributions[0].ClearField("faithfulness")
    result = ExplainResult.from_proto(message)
    assert result.attributions[0].faithfulness is None
    assert "comp" not in explanation_table(result) and "faithfulness (" not in explanation_table(result)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], None),
        (["--faithfulness"], {"fractions": None, "perturbation": None, "replacement_token": None, "aopc_steps": None}),
        (
            [
                "--perturbation",
                "replacement",
                "--replacement-token",
                "bos",
                "--fractions",
                "0.1,0.3",
                "--aopc-steps",
                "4",
            ],
            {"fractions": [0.1, 0.3], "perturbation": "replacement", "replacement_token": "bos", "aopc_steps": 4},
        ),
    ],
)
def test_cli_options_ask_for_faithfulness(argv, expected) -> None:
    options = _options(parser().parse_args(["explain", "--prompt", "x", *argv]))
    assert options.get("faithfulness") == expected
    assert "fractions" not in options and "perturbation" not in options
