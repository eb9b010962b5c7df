"""The paper's probing experiment: per layer, a linear probe on FFNN activations vs on hidden states.

``run_probing`` = read labelled sentences (CoNLL-U) → extract every layer's word vectors
(``extract``, batched, float16 on disk) → one split by sentence → for every hidden-state depth
and every FFNN layer, a task probe and a control-task probe (``probing``) → a ``ProbingReport``
(written as CSV / Markdown / PNG by ``report``). The control task's word types are the
lower-cased word forms (one random label per type, as in Hewitt & Liang 2019).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecco_engine.errors import InvalidRequest

from .alignment import pick_subtoken
from .conllu import Sentence, read_conllu
from .probes import ProbeConfig, control_labels, majority_baseline, probe, split_by_sentence, word_type_baseline


@dataclass(frozen=True)
class LayerResult:
    """One probe pair at layer ``layer``: ``representation`` ``hidden`` probes ``hidden_states[layer]``
    (0..L), ``ffnn`` the FFNN of block ``layer - 1`` (layer 1..L), the block that writes that layer."""

    representation: str
    layer: int
    width: int
    accuracy: float
    control_accuracy: float
    n_iter: int

    @property
    def selectivity(self) -> float:
        return self.accuracy - self.control_accuracy


@dataclass(frozen=True)
class ProbingReport:
    """Everything a reader needs to judge one model's probing run."""

    model: str
    model_path: str
    data: str
    label: str
    subtoken: str
    n_layers: int
    n_sentences: int
    n_words: int
    n_train: int
    n_test: int
    n_classes: int
    n_unaligned_words: int
    n_tokens: int
    majority_accuracy: float
    word_type_accuracy: float
    config: ProbeConfig
    extract_seconds: float
    probe_seconds: float
    results: tuple[LayerResult, ...] = field(default=())

    def result(self, representation: str, layer: int) -> LayerResult | None:
        for r in self.results:
            if r.representation == representation and r.layer == layer:
                return r
        return None


def take_words(sentences: Sequence[Sentence], max_words: int | None) -> list[Sentence]:
    """Sentences in file order until ``max_words`` words (whole sentences; None: all)."""
    if max_words is None:
        return list(sentences)
    out: list[Sentence] = []
    total = 0
    for s in sentences:
        if total + len(s.words) > max_words and out:
            break
        out.append(s)
        total += len(s.words)
    return out


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def run_probing(
    model_path: str | os.PathLike[str],
    conllu_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    label: str = "upos",
    kind: str = "auto",
    subtoken: str = "auto",
    max_words: int | None = None,
    batch_size: int = 16,
    config: ProbeConfig | None = None,
    keep_activations: str | os.PathLike[str] | None = None,
    layers: Sequence[int] | None = None,
    quiet: bool = False,
) -> ProbingReport:
    """Probe every layer of the model at ``model_path`` for ``label`` on the sentences of ``conllu_path``.

    ``layers`` (None: all) limits the probes to these layers ``l``: the hidden state of layer ``l``
    (``0..L``) and the FFNN of block ``l - 1`` (``l = 1..L``); every layer is still extracted.
    """
    from .extract import extract_word_features, load_for_probing

    config = config or ProbeConfig()
    sentences = take_words(read_conllu(conllu_path), max_words)
    labels_of = [s.labels(label) for s in sentences]
    model, tokenizer, causal = load_for_probing(model_path, kind)
    mode = pick_subtoken(subtoken, causal)
    with tempfile.TemporaryDirectory(prefix="ecco-probe-") as tmp:
        where = Path(keep_activations) if keep_activations else Path(tmp)
        features = extract_word_features(
            model, tokenizer, sentences, where, causal=causal, subtoken=mode, batch_size=batch_size, progress=not quiet
        )
        del model
        _log(f"extracted {features.n_tokens} tokens in {features.seconds:.1f} s", quiet)
        si, wi = features.sentence_index, features.word_index
        labels = np.array([labels_of[s][w] for s, w in zip(si, wi, strict=True)], dtype=object)
        types = [sentences[s].words[w].lower() for s, w in zip(si, wi, strict=True)]
        control = control_labels(types, list(labels), seed=config.seed)
        split = split_by_sentence(si, config.test_share, config.seed)
        train_types = [types[i] for i in split.train]
        test_types = [types[i] for i in split.test]
        started = time.perf_counter()
        results: list[LayerResult] = []
        for representation, stack in (("hidden", features.hidden()), ("ffnn", features.ffnn())):
            first_layer = 0 if representation == "hidden" else 1  # ffnn.npy[b] is block b, which writes layer b + 1
            for k in range(stack.shape[0]):
                if layers is not None and k + first_layer not in layers:
                    continue
                score = probe(np.asarray(stack[k], dtype=np.float32), labels, control, split, config)
                layer = k + first_layer
                results.append(
                    LayerResult(
                        representation, layer, int(stack.shape[2]), score.accuracy, score.control_accuracy, score.n_iter
                    )
                )
                _log(
                    f"{representation:6s} layer {layer:2d}: accuracy {score.accuracy:.3f} "
                    f"control {score.control_accuracy:.3f} selectivity {score.selectivity:+.3f}",
                    quiet,
                )
            del stack
        n_layers = int(features.ffnn().shape[0])
        return ProbingReport(
            model=name or Path(model_path).name,
            model_path=str(model_path),
            data=str(conllu_path),
            label=label,
            subtoken=mode,
            n_layers=n_layers,
            n_sentences=len(sentences),
            n_words=len(labels),
            n_train=int(split.train.size),
            n_test=int(split.test.size),
            n_classes=len(set(labels)),
            n_unaligned_words=features.n_unaligned_words,
            n_tokens=features.n_tokens,
            majority_accuracy=majority_baseline(list(labels[split.train]), list(labels[split.test])),
            word_type_accuracy=word_type_baseline(
                train_types, list(labels[split.train]), test_types, list(labels[split.test])
            ),
            config=config,
            extract_seconds=features.seconds,
            probe_seconds=time.perf_counter() - started,
            results=tuple(results),
        )


def check_label(label: str) -> str:
    if label not in ("upos", "xpos", "deprel"):
        raise InvalidRequest("label", f"must be upos, xpos or deprel, got {label!r}")
    return label
