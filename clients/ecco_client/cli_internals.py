"""The command line's options for looking inside the model (``ecco explain --layers --watch " Paris" ...``)
and for neuron interventions (``--intervene``, on ``generate`` too).

``--top-k`` is the sampling filter of generation (since the first release), so the logit lens's k is
``--lens-top-k``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .build import parse_intervention

#: dests of the options that are ``InternalsParams`` fields: ``internals.<field>``
INTERNALS = "internals."


def _ints(value: str) -> list[int]:
    try:
        return [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def _intervention(value: str):
    try:
        return parse_intervention(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_intervention_option(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("neuron interventions")
    group.add_argument(
        "--intervene",
        dest=f"{INTERNALS}interventions",
        type=_intervention,
        action="append",
        default=[],
        metavar="LAYER:NEURON:set|scale:VALUE",
        help="set or scale one FFNN neuron of one block during the whole request, e.g. 3:117:set:0 (repeatable)",
    )


def add_internals_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "inside the model",
        "lens layers 0..n_layers (0 = embeddings, n_layers = the output); blocks 0..n_layers-1; "
        "positions are absolute positions in the sequence (prompt + generated)",
    )
    group.add_argument("--layers", action="store_true", help="layer predictions (logit lens) and token rankings")
    group.add_argument(
        "--lens-top-k", dest=f"{INTERNALS}top_k", type=int, metavar="K", help="tokens per lens layer (server default 5)"
    )
    group.add_argument(
        "--lens-positions",
        dest=f"{INTERNALS}positions",
        type=_ints,
        default=[],
        metavar="P,..",
        help="lens positions (default: the predicting ones)",
    )
    group.add_argument(
        "--watch",
        dest=f"{INTERNALS}watch",
        action="append",
        default=[],
        metavar="TEXT",
        help="watch a one-token text (repeatable)",
    )
    group.add_argument("--watch-id", type=int, action="append", default=[], metavar="ID", help="watch a token id")
    group.add_argument(
        "--watch-position",
        dest=f"{INTERNALS}watch_position",
        type=int,
        metavar="P",
        help="watch position (default: last prompt token)",
    )
    group.add_argument(
        "--activations",
        dest=f"{INTERNALS}activations",
        action="store_true",
        help="FFNN neuron activations (full, float16)",
    )
    group.add_argument(
        "--activation-top-k",
        dest=f"{INTERNALS}activation_top_k",
        type=int,
        metavar="K",
        help="only the top K neurons per block and position",
    )
    group.add_argument(
        "--activation-order",
        dest=f"{INTERNALS}activation_order",
        choices=["value", "magnitude"],
        help="top neurons by (default value)",
    )
    group.add_argument(
        "--activation-layers",
        dest=f"{INTERNALS}activation_layers",
        type=_ints,
        default=[],
        metavar="B,..",
        help="blocks (default: all)",
    )
    group.add_argument(
        "--activation-positions",
        dest=f"{INTERNALS}activation_positions",
        type=_ints,
        default=[],
        metavar="P,..",
        help="positions (default: all)",
    )
    group.add_argument(
        "--nmf",
        dest=f"{INTERNALS}nmf_components",
        type=int,
        metavar="N",
        help="NMF of the activations into N components",
    )
    group.add_argument(
        "--nmf-layers",
        dest=f"{INTERNALS}nmf_layers",
        type=_ints,
        default=[],
        metavar="B,..",
        help="blocks factored by NMF",
    )
    group.add_argument(
        "--nmf-top-neurons",
        dest=f"{INTERNALS}nmf_top_neurons",
        type=int,
        metavar="K",
        help="top neurons per component (default 10)",
    )
    group.add_argument(
        "--similarity",
        dest=f"{INTERNALS}similarity",
        choices=["hidden", "ffn"],
        action="append",
        default=[],
        help="layer x layer similarity of the hidden states or FFNN activations over the tokens (repeatable)",
    )
    group.add_argument(
        "--similarity-method",
        dest=f"{INTERNALS}similarity_method",
        metavar="NAME",
        help="linear_cka (default; alias cka), cca, svcca or pwcca (the CCA family needs many tokens)",
    )
    group.add_argument(
        "--similarity-positions",
        dest=f"{INTERNALS}similarity_positions",
        type=_ints,
        default=[],
        metavar="P,..",
        help="tokens compared (default: all)",
    )
    group.add_argument("--no-attribution", dest="skip", action="store_true", help="skip attribution (only look inside)")


def internals_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``build_request``'s ``internals`` (the ``internals.<field>`` options as a dict for ``build_internals``;
    ``--layers`` asks for layer predictions and token rankings, ``--watch-id`` adds ids to ``--watch``),
    or None when nothing is asked."""
    options = {name.removeprefix(INTERNALS): v for name, v in vars(args).items() if name.startswith(INTERNALS)}
    if getattr(args, "layers", False):
        options |= {"layer_predictions": True, "token_rankings": True}
    if getattr(args, "watch_id", None):
        options["watch"] = [*options["watch"], *args.watch_id]
    return options if any(v not in (None, False, []) for v in options.values()) else None


def interventions_text(items: list[pb.Intervention]) -> str:
    """One line naming the interventions a request applied (the reply does not echo them)."""
    shown = [f"block {i.layer} neuron {i.neuron} {'scale' if i.mode == pb.SCALE else 'set'} {i.value:g}" for i in items]
    return "interventions: " + " · ".join(shown)
