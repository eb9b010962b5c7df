"""The paper's probing experiment: per-layer linear probes on FFNN activations vs hidden states.

* ``conllu`` / ``alignment``: labelled words (CoNLL-U) and their model sub-tokens;
* ``probes``: logistic-regression probes with a split by sentence, majority / word-type
  baselines and Hewitt & Liang's control task (selectivity);
* ``extract`` (torch / transformers): batched word vectors of every layer, FFNN activations and
  hidden states, for causal LMs and BERT-family encoders; ``experiment`` / ``report`` run and
  write the experiment. Command line: ``python -m ecco_tools.probing --help``.

Layers and blocks are numbered as everywhere else (docs/internals.md, "Layers and blocks"):
layer ``l`` = ``hidden_states[l]`` (0 = embeddings), block ``b`` = ``0..n_layers-1``.
The similarity measures are the engine's (``ecco_engine.analysis``). The CoNLL-U, alignment and
probe modules use numpy / scikit-learn only; importing this package does not import ``extract``.
"""

from .alignment import AlignedSentence, align_offsets, align_sentence, word_vectors
from .conllu import Sentence, format_conllu, parse_conllu, read_conllu
from .probes import (
    ProbeConfig,
    ProbeScore,
    Split,
    control_labels,
    fit_probe,
    majority_baseline,
    probe,
    split_by_sentence,
    word_type_baseline,
)

__all__ = [
    "AlignedSentence",
    "ProbeConfig",
    "ProbeScore",
    "Sentence",
    "Split",
    "align_offsets",
    "align_sentence",
    "control_labels",
    "fit_probe",
    "format_conllu",
    "majority_baseline",
    "parse_conllu",
    "probe",
    "read_conllu",
    "split_by_sentence",
    "word_type_baseline",
    "word_vectors",
]
