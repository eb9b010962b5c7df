"""ecco: generate or explain through a served model from the command line.

    ecco explain --model smollm2-135m-instruct --prompt "The capital of France is" --max-new-tokens 4
    ecco explain --grpc 127.0.0.1:7070 --chat "user:Capital of France?" --method grad_x_input --json
    ecco generate --url http://127.0.0.1:8080 --prompt "Hello" --key-file .run/serve/key_file.json
    ecco explain --prompt "The capital of France is" --no-attribution --layers --watch " Paris" --watch " London"
    ecco explain --prompt "Hi" --activations --activation-top-k 5 --nmf 3 --intervene 3:117:set:0
    ecco explain --grpc 127.0.0.1:7070 --prompt "The capital of France is" --stream
    ecco explain --prompt "The capital of France is" --html explanation.html
    ecco explain --chat "user:Capital of France?" --group words --top-n-tokens 3
    ecco explain --prompt "The capital of France is" --continuation-ids 12366,30 --target contrastive \
        --contrast-each " Rome" --contrast-each-id 28
    ecco explain --prompt "The capital of France is" --method occlusion --faithfulness --perturbation deletion
    ecco view response.json -o explanation.html
    ecco ui --port 8090            # the live page on http://127.0.0.1:8090/: type a prompt, watch it explained

Prints a table (each explained token with its top source tokens) or, with --json, the reply's proto3
JSON; --html FILE also writes the views (one self-contained HTML file). The token: --token, else the
"inference" key of --key-file, else of $ECCO_KEY_FILE, ./key_file.json or .run/serve/key_file.json (the
first that exists). Exit status 1 on a request error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .auth import token_source
from .build import REQUEST_OPTIONS
from .cli_internals import (
    INTERNALS,
    add_internals_options,
    add_intervention_option,
    internals_options,
    interventions_text,
)
from .client import EccoClient
from .errors import EccoError
from .results import ExplainResult, GenerateResult, RowEvent, TokenEvent
from .table import explanation_table, generation_table, shown
from .ui_command import add_ui_command, run_ui
from .view_command import add_view_command, run_view
from .views import write_html

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_MODEL = "smollm2-135m-instruct"


def _chat(value: str) -> tuple[str, str]:
    role, sep, content = value.partition(":")
    if not sep or not role:
        raise argparse.ArgumentTypeError(f"--chat takes role:content, got {value!r}")
    return role, content


def _integers(option: str):
    def parse(value: str) -> list[int]:
        try:
            return [int(p) for p in value.split(",") if p.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes comma-separated integers, got {value!r}") from None

    return parse


_positions = _integers("--positions")


def _fractions(value: str) -> list[float]:
    try:
        return [float(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fractions takes comma-separated numbers, got {value!r}") from None


#: the CLI's faithfulness options (dests named as the FaithfulnessParams fields); any of them asks for the metrics
FAITHFULNESS_OPTIONS = ("fractions", "perturbation", "replacement_token", "aopc_steps")


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("server")
    where.add_argument("--url", help=f"TorchServe inference URL (REST; default {DEFAULT_URL})")
    where.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC (TorchServe's gRPC inference port) instead")
    where.add_argument("--model", default=os.environ.get("ECCO_MODEL", DEFAULT_MODEL), help="model name (%(default)s)")
    where.add_argument("--token", default=os.environ.get("ECCO_TOKEN"), help="inference key ($ECCO_TOKEN)")
    where.add_argument("--key-file", help="TorchServe's key_file.json (its 'inference' key is used)")
    where.add_argument("--kserve", action="store_true", help="REST: use the KServe v1 path /v1/models/{model}:...")
    where.add_argument("--timeout", type=float, default=600.0, help="seconds (%(default)s)")
    what = parser.add_argument_group("input")
    what.add_argument("--prompt", help="plain-text prompt")
    what.add_argument(
        "--chat", dest="messages", type=_chat, action="append", default=[], metavar="ROLE:CONTENT", help="a chat turn"
    )
    what.add_argument("--continuation", help="explain this given text instead of generating (teacher forcing)")
    what.add_argument(
        "--continuation-ids",
        type=_integers("--continuation-ids"),
        default=[],
        metavar="ID,ID,...",
        help="replay these token ids exactly instead of generating (e.g. a logged response)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", type=int)
    gen.add_argument("--do-sample", action="store_true", default=None)
    gen.add_argument("--temperature", type=float)
    gen.add_argument("--top-k", type=int)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--top-n-tokens", type=int, help="alternatives (with log-probabilities) per generated token")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the JSON reply instead of a table")
    out.add_argument(
        "--stream", action="store_true", help="ask for a stream: show tokens (and rows) as they arrive (gRPC or REST)"
    )
    out.add_argument("--html", metavar="FILE", help="also write the views to FILE (self-contained HTML, opens offline)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ecco", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate text (no attribution)")
    _common(generate)
    add_intervention_option(generate)
    explain = commands.add_parser("explain", help="generate, then attribute each generated token")
    _common(explain)
    att = explain.add_argument_group("attribution")
    att.add_argument("--method", dest="methods", action="append", default=[], help="attribution method (repeatable)")
    att.add_argument("--target", help="probability | log_probability | logit | contrastive")
    att.add_argument("--contrast", dest="contrast_token", help="contrast token text (target contrastive)")
    att.add_argument("--contrast-id", dest="contrast_token_id", type=int, help="contrast token id (target contrastive)")
    att.add_argument(
        "--contrast-each",
        dest="contrast_tokens",
        action="append",
        default=[],
        metavar="TEXT",
        help="contrast token of the next explained token, in order (repeatable; with --contrast-each-id)",
    )
    att.add_argument(
        "--contrast-each-id", dest="contrast_tokens", action="append", type=int, metavar="ID", help="the same, as an id"
    )
    att.add_argument("--baseline", help="zero | eos | bos | pad | unk | mask")
    att.add_argument("--n-steps", type=int)
    att.add_argument("--integration", help="gauss_legendre | riemann_left | ...")
    att.add_argument("--aggregation", help="l2 | sum | l2_normalized")
    att.add_argument("--positions", type=_positions, default=[], help="generated-token indices, e.g. 0,2")
    att.add_argument("--completeness-tolerance", type=float)
    att.add_argument("--max-n-steps", type=int)
    att.add_argument("--precision", help="dtype of the attribution passes: float32 | bfloat16 | float16")
    att.add_argument("--n-samples", type=int, help="sampled methods: samples per token (method default)")
    att.add_argument("--sampling-seed", type=int, help="sampled methods: seed of the draws (0)")
    att.add_argument("--stdevs", type=float, help="gradient_shap: noise std on the input embeddings (0)")
    att.add_argument("--float16", action="store_true", help="ask for float16 attribution matrices")
    faith = explain.add_argument_group("faithfulness (any of these measures it)")
    faith.add_argument(
        "--faithfulness", action="store_true", help="measure comprehensiveness, sufficiency and AOPC of each method"
    )
    faith.add_argument("--fractions", type=_fractions, help="shares of the sources perturbed, e.g. 0.1,0.2,0.5")
    faith.add_argument("--perturbation", help="deletion | replacement")
    faith.add_argument("--replacement-token", help="replacement: eos | bos | pad | unk | mask")
    faith.add_argument("--aopc-steps", type=int, help="longest perturbation curve, in tokens")
    att.add_argument("--top", type=int, default=5, help="sources (and neurons) shown per row (%(default)s)")
    grouping = explain.add_argument_group("grouping (scores by word, span or chat turn)")
    grouping.add_argument("--group", choices=("tokens", "words", "spans", "turns"), help="also show scores by group")
    grouping.add_argument("--span", dest="spans", action="append", default=[], metavar="START:END", help="a span")
    grouping.add_argument("--keep-special", action="store_true", help="keep special and chat-template tokens")
    add_internals_options(explain)
    add_intervention_option(explain)
    add_view_command(commands)
    add_ui_command(commands, default_url=DEFAULT_URL, default_model=DEFAULT_MODEL)
    return top


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """``build_request``'s keywords: every option whose dest is a request field, plus the internals."""
    options = {
        name: value
        for name, value in vars(args).items()
        if name in REQUEST_OPTIONS and name not in ("faithfulness", *FAITHFULNESS_OPTIONS)
    }
    if options.get("contrast_token") is not None and options.get("contrast_token_id") is not None:
        raise SystemExit("ecco: give --contrast or --contrast-id, not both")
    if options.get("skip") and options.get("methods"):
        raise SystemExit("ecco: give --method or --no-attribution, not both")
    if options.get("contrast_tokens") and (options.get("contrast_token"), options.get("contrast_token_id")) != (
        None,
        None,
    ):
        raise SystemExit("ecco: give --contrast / --contrast-id or --contrast-each / --contrast-each-id, not both")
    if getattr(args, "group", None):
        options["grouping"] = {"unit": args.group, "spans": args.spans, "keep_special": args.keep_special}
    elif getattr(args, "spans", None) or getattr(args, "keep_special", False):
        raise SystemExit("ecco: --span and --keep-special need --group")
    faithfulness = {name: getattr(args, name, None) for name in FAITHFULNESS_OPTIONS}
    if getattr(args, "faithfulness", False) or any(v is not None for v in faithfulness.values()):
        options["faithfulness"] = faithfulness
    return options | {"internals": internals_options(args)}


def _client(args: argparse.Namespace) -> EccoClient:
    token = token_source(args.token, args.key_file)()
    if args.grpc and args.url:
        raise SystemExit("ecco: give --url or --grpc, not both")
    if args.grpc:
        return EccoClient(grpc=args.grpc, model=args.model, token=token, timeout=args.timeout)
    url = args.url or DEFAULT_URL
    return EccoClient(url=url, model=args.model, token=token, timeout=args.timeout, kserve=args.kserve)


def _run(args: argparse.Namespace, out: Any) -> GenerateResult:
    with _client(args) as client:
        if not args.stream:
            send = client.explain if args.command == "explain" else client.generate
            return send(**_options(args))
        result = None
        for item in client.stream(args.command, **_options(args)):
            if isinstance(item, TokenEvent) and not args.json:
                print(f"token {item.index}: {shown(item.token.text, 40)}", file=out, flush=True)
            elif isinstance(item, RowEvent) and not args.json:
                print(f"row   {item.method} @ {item.target_position}", file=out, flush=True)
            elif isinstance(item, GenerateResult):
                result = item
        if result is None:
            raise EccoError(502, "INTERNAL", "the stream ended without a summary")
        return result


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    if args.command == "view":
        return run_view(args)
    if args.command == "ui":
        return run_ui(args)
    if args.stream and args.kserve:
        raise SystemExit("ecco: the KServe v1 paths do not stream; drop --kserve or --stream")
    try:
        result = _run(args, out)
    except EccoError as error:
        print(f"ecco: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:  # key file, option values
        print(f"ecco: {error}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"ecco: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False), file=out)
    elif isinstance(result, ExplainResult):
        print(explanation_table(result, top=args.top), file=out)
    else:
        print(generation_table(result), file=out)
    interventions = getattr(args, f"{INTERNALS}interventions")
    if interventions and not args.json:
        print(interventions_text(interventions), file=out)
    if args.html:
        print(f"views written to {write_html(result.to_json(), args.html).resolve()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
