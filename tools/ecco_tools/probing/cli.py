"""``python -m ecco_tools.probing``: similarity over saved activations, and the probing experiment.

similarity A B [--method linear_cka|cca|svcca|pwcca] [--keep 0.99]
    A, B: ``.npy`` (2-D, n_examples x n_neurons) or ``FILE.npz:KEY``; the same examples in both.
layers FILE [--method ...] [--max-examples N] [--csv OUT]
    FILE: a 3-D ``.npy`` (n_layers, n_examples, n_neurons) — e.g. ``hidden.npy`` / ``ffnn.npy``
    kept by ``probe --keep-activations DIR`` — or an ``.npz`` of 2-D arrays (one per layer, in
    key order). Prints the n_layers x n_layers similarity matrix.
probe --model DIR --conllu FILE [--label upos|xpos|deprel] [--out docs/probing] ...
    Per-layer probes on FFNN activations vs hidden states; writes <out>/<name>.csv/.md/.png.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ecco_engine.errors import EngineError


def load_matrix(spec: str) -> np.ndarray:
    """A 2-D array from ``file.npy`` or ``file.npz:key`` (or an ``.npz`` holding exactly one array)."""
    path, _, key = spec.partition(":") if ".npz:" in spec else (spec, "", "")
    if path.endswith(".npz"):
        with np.load(path) as archive:
            if not key:
                if len(archive.files) != 1:
                    raise SystemExit(f"{path} holds {archive.files}: name one as {path}:KEY")
                key = archive.files[0]
            return np.asarray(archive[key])
    return np.load(path, mmap_mode="r")


def load_layers(path: str) -> list[np.ndarray]:
    """Per-layer 2-D arrays from a 3-D ``.npy`` or an ``.npz`` (keys in sorted order)."""
    if path.endswith(".npz"):
        with np.load(path) as archive:
            return [np.asarray(archive[k]) for k in sorted(archive.files)]
    stack = np.load(path, mmap_mode="r")
    if stack.ndim != 3:
        raise SystemExit(f"{path}: expected (n_layers, n_examples, n_neurons), got shape {stack.shape}")
    return [stack[k] for k in range(stack.shape[0])]


def _similarity(args: argparse.Namespace) -> int:
    from ecco_engine.analysis import similarity_function, svcca

    a, b = load_matrix(args.a), load_matrix(args.b)
    value = svcca(a, b, keep=args.keep) if args.method == "svcca" else similarity_function(args.method)(a, b)
    print(f"{args.method}\t{value:.6f}")
    return 0


def _layers(args: argparse.Namespace) -> int:
    from ecco_engine.analysis import layer_similarity

    layers = load_layers(args.file)
    if args.max_examples:
        layers = [layer[: args.max_examples] for layer in layers]
    matrix = layer_similarity([np.asarray(layer, dtype=np.float32) for layer in layers], args.method)
    rows = ["\t".join(f"{v:.4f}" for v in row) for row in matrix]
    print("\n".join(rows))
    if args.csv:
        np.savetxt(args.csv, matrix, delimiter=",", fmt="%.6f")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from .experiment import check_label, run_probing
    from .probes import ProbeConfig
    from .report import markdown, write_report

    config = ProbeConfig(c=args.c, max_iter=args.max_iter, test_share=args.test_share, seed=args.seed)
    report = run_probing(
        args.model,
        args.conllu,
        name=args.name,
        label=check_label(args.label),
        kind=args.kind,
        subtoken=args.subtoken,
        max_words=args.max_words,
        batch_size=args.batch_size,
        config=config,
        keep_activations=args.keep_activations,
        layers=args.layers,
        quiet=args.quiet,
    )
    paths = write_report(report, args.out)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ecco_tools.probing", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    methods = ["linear_cka", "cka", "cca", "svcca", "pwcca"]

    sim = sub.add_parser("similarity", help="similarity of two saved activation matrices")
    sim.add_argument("a")
    sim.add_argument("b")
    sim.add_argument("--method", default="linear_cka", choices=methods)
    sim.add_argument("--keep", type=float, default=0.99, help="svcca: share of variance kept (default 0.99)")
    sim.set_defaults(run=_similarity)

    lay = sub.add_parser("layers", help="layer x layer similarity matrix of saved activations")
    lay.add_argument("file")
    lay.add_argument("--method", default="linear_cka", choices=methods)
    lay.add_argument("--max-examples", type=int, default=0, help="use only the first N examples (0: all)")
    lay.add_argument("--csv", help="also write the matrix to this CSV file")
    lay.set_defaults(run=_layers)

    pr = sub.add_parser("probe", help="per-layer linear probes: FFNN activations vs hidden states")
    pr.add_argument("--model", required=True, help="local model folder (causal LM or BERT-family encoder)")
    pr.add_argument("--conllu", required=True, help="labelled sentences (CoNLL-U, gold or silver)")
    pr.add_argument("--label", default="upos", help="upos (default), xpos or deprel")
    pr.add_argument("--name", help="name of the outputs (default: the model folder's name)")
    pr.add_argument("--out", default="docs/probing", help="output folder (default docs/probing)")
    pr.add_argument("--kind", default="auto", choices=["auto", "causal", "encoder"])
    pr.add_argument("--subtoken", default="auto", choices=["auto", "first", "last", "mean"])
    pr.add_argument("--max-words", type=int, help="use whole sentences, in file order, up to N words")
    pr.add_argument("--batch-size", type=int, default=16)
    pr.add_argument("--c", type=float, default=0.5, help="inverse L2 strength of the probes (default 0.5)")
    pr.add_argument("--max-iter", type=int, default=100, help="L-BFGS iterations per probe (default 100)")
    pr.add_argument("--test-share", type=float, default=0.2, help="share of sentences held out (default 0.2)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument(
        "--layers",
        type=int,
        nargs="+",
        help="probe only these layers l (hidden state of layer l: 0..L; FFNN of block l-1: 1..L)",
    )
    pr.add_argument("--keep-activations", help="keep hidden.npy / ffnn.npy (float16) in this folder")
    pr.add_argument("--quiet", action="store_true", help="no progress bar or per-layer log")
    pr.set_defaults(run=_probe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (EngineError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
