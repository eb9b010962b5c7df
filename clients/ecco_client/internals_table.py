"""Readable text tables of the internals: layer predictions, token rankings, the watch list (with the
layer at which one candidate overtakes another), FFNN activations, NMF factors and layer similarity.

Ranks are printed 1-based (1 = top) for reading; the result objects keep the wire's 0-based ranks.
"""

from __future__ import annotations

from .internals import Internals, NeuronActivations, NmfFactors, SimilarityMatrices, WatchedTokens
from .results import ExplainResult
from .text import shown


def _name(internals: Internals, result: ExplainResult, token_id: int, width: int = 12) -> str:
    text = internals.token_text(token_id)
    return shown(text, width) if text is not None else f"#{token_id}"


def _at(result: ExplainResult, position: int) -> str:
    return f"{position} {shown(result.tokens[position].text)}" if position < len(result.tokens) else str(position)


def _layer_label(layer: int, n_layers: int) -> str:
    return "emb" if layer == 0 else ("out" if layer == n_layers else str(layer))


def layer_predictions_table(result: ExplainResult, internals: Internals) -> list[str]:
    lp = internals.layer_predictions
    if lp is None:
        return []
    top = len(lp.predictions[0].token_ids[0]) if lp.predictions else 0
    lines = [
        f"layer predictions (logit lens, top {top} per lens layer; emb = embeddings, out = layer "
        f"{internals.n_layers} = the model's output; output deviation {lp.output_deviation:.2g})"
    ]
    for p in lp.predictions:
        following = _at(result, p.position + 1) if p.position + 1 < len(result.tokens) else "(end)"
        lines.append(f"  at {_at(result, p.position)} -> next token {following}")
        for layer in range(len(p.token_ids)):
            cells = " | ".join(f"{_name(internals, result, t)} {q:.3g}" for t, q in p.top(layer))
            lines.append(f"    {_layer_label(layer, internals.n_layers):>4}  {cells}")
    return lines


def _rank_grid(internals: Internals, headers: list[str], ranks, probabilities, width: int = 16) -> list[str]:
    lines = [f"  {'layer':>5}  " + "".join(f"{h:>{width}}" for h in headers)]
    for layer in range(internals.n_layers + 1):
        cells = "".join(
            f"{f'{r[layer] + 1} ({q[layer]:.2g})':>{width}}" for r, q in zip(ranks, probabilities, strict=True)
        )
        lines.append(f"  {_layer_label(layer, internals.n_layers):>5}  {cells}")
    return lines


def token_rankings_table(result: ExplainResult, internals: Internals) -> list[str]:
    tr = internals.token_rankings
    if tr is None:
        return []
    lines = ["token rankings: rank (probability) of each generated token per lens layer, where it was predicted"]
    headers = [f"{p} {shown(result.tokens[p].text, 10)}" for p in tr.positions]
    return lines + _rank_grid(internals, headers, tr.ranks, tr.probabilities)


def overtakes(watch: WatchedTokens, names: list[str], n_layers: int) -> list[str]:
    """One line per watched token: the layer at which the output's leader overtakes it."""
    if len(watch.token_ids) < 2:
        return []
    lead = watch.leader
    lines = []
    for other in range(len(watch.token_ids)):
        if other == lead:
            continue
        layer = watch.overtake_layer(watch.token_ids[lead], watch.token_ids[other])
        if layer is None:  # a tie at the output
            lines.append(f"  {names[lead]} and {names[other]} share rank {watch.ranks[lead][-1] + 1} at the output")
        elif layer == 0:
            lines.append(f"  {names[lead]} is above {names[other]} at every layer")
        else:
            lines.append(
                f"  layer at which {names[lead]} overtakes {names[other]}: {_layer_label(layer, n_layers)} "
                f"(and stays ahead to the output)"
            )
    return lines


def watch_table(result: ExplainResult, internals: Internals) -> list[str]:
    watch = internals.watch
    if watch is None:
        return []
    names = [_name(internals, result, t, 14) for t in watch.token_ids]
    lines = [f"watch list at {_at(result, watch.position)}: rank (probability) per lens layer, 1 = top"]
    lines += _rank_grid(internals, names, watch.ranks, watch.probabilities)
    return lines + overtakes(watch, names, internals.n_layers)


def activations_table(result: ExplainResult, activations: NeuronActivations, *, top: int = 5) -> list[str]:
    n_blocks, n_pos = len(activations.layers), len(activations.positions)
    form = "full, float16" if activations.full else f"top neurons by {activations.order}"
    lines = [f"FFNN activations: {n_blocks} blocks x {n_pos} positions x {activations.n_neurons} neurons ({form})"]
    magnitude = activations.order == "magnitude"
    for item in activations.layers:
        strongest = [
            (value, neuron, position)
            for row, position in enumerate(activations.positions)
            for neuron, value in item.top(row, top, magnitude=magnitude)
        ]
        strongest.sort(key=lambda c: abs(c[0]) if magnitude else c[0], reverse=True)
        cells = " | ".join(f"n{n} {v:.3g} @ {_at(result, p)}" for v, n, p in strongest[:top])
        lines.append(f"  block {item.layer:>3}: {cells}")
    return lines


def nmf_table(result: ExplainResult, nmf: NmfFactors, *, top: int = 5) -> list[str]:
    blocks = ",".join(str(b) for b in nmf.layers)
    lines = [
        f"NMF: {nmf.n_components} components of blocks {blocks} over {len(nmf.positions)} positions "
        f"(relative error {nmf.relative_error:.3g}, {nmf.n_iter} iterations)"
    ]
    for c, strengths in enumerate(nmf.token_strengths):
        ranked = sorted(range(len(strengths)), key=lambda j: strengths[j], reverse=True)[:top]
        tokens = " | ".join(f"{_at(result, nmf.positions[j])} {strengths[j]:.3g}" for j in ranked if strengths[j] > 0)
        neurons = " | ".join(f"b{b}:n{n} {w:.3g}" for b, n, w in nmf.component_neurons(c)[:top])
        lines += [f"  component {c}: fires on {tokens or '(nothing)'}", f"  {'':>11}  top neurons {neurons}"]
    return lines


_REPRESENTATION_NAMES = {"hidden": "hidden states", "ffn": "FFNN activations"}


def similarity_table(similarity: SimilarityMatrices) -> list[str]:
    """One grid per representation, two decimals per cell (the matrix is square, rows = columns)."""
    positions = similarity.positions
    span = f"{positions[0]}..{positions[-1]}" if positions == tuple(range(positions[0], positions[-1] + 1)) else ""
    lines = [
        f"layer similarity ({similarity.method}) over {similarity.n_tokens} tokens" + (f" ({span})" if span else "")
    ]
    for item in similarity.matrices:
        labels = item.labels
        width = max(5, *(len(label) + 1 for label in labels))
        lines.append(f"  {_REPRESENTATION_NAMES.get(item.representation, item.representation)}")
        lines.append(f"  {'':>{width}}" + "".join(f"{label:>{width}}" for label in labels))
        for label, row in zip(labels, item.matrix, strict=True):
            lines.append(f"  {label:>{width}}" + "".join(f"{value:>{width}.2f}" for value in row))
    return lines


def internals_table(result: ExplainResult, *, top: int = 5) -> str:
    """Every part of ``result.internals`` as text (empty when the reply has none)."""
    internals = result.internals
    if internals is None:
        return ""
    sections = [
        layer_predictions_table(result, internals),
        token_rankings_table(result, internals),
        watch_table(result, internals),
        activations_table(result, internals.activations, top=top) if internals.activations else [],
        nmf_table(result, internals.nmf, top=top) if internals.nmf else [],
        similarity_table(internals.similarity) if internals.similarity else [],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
