"""Analysis of activation vectors: representation similarity and linear probing classifiers.

* ``similarity``: ``cca``, ``svcca``, ``pwcca``, ``linear_cka`` over two ``(n_examples, n_neurons)``
  matrices, and ``layer_similarity(activations_by_layer, method)`` -> ``(n_layers, n_layers)``.
* ``probing``: logistic-regression probes with a split by sentence, majority / word-type
  baselines and Hewitt & Liang's control task (selectivity).
* ``conllu`` / ``alignment``: labelled words (CoNLL-U) and their model sub-tokens.
* ``extract`` (torch / transformers): batched word vectors of every layer, FFNN activations and
  hidden states, for causal LMs and BERT-family encoders; ``experiment`` / ``report`` run and
  write the paper's probing experiment. Command line: ``python -m ecco_engine.analysis --help``.

The similarity, probing, CoNLL-U and alignment modules use numpy / scipy / scikit-learn only;
importing this package does not import ``extract``.
"""

from .alignment import AlignedSentence, align_offsets, align_sentence, word_vectors
from .conllu import Sentence, format_conllu, parse_conllu, read_conllu
from .probing import (
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
from .similarity import (
    SIMILARITY_METHODS,
    canonical_correlations,
    cca,
    layer_similarity,
    linear_cka,
    pwcca,
    similarity,
    similarity_function,
    svcca,
)

__all__ = [
    "SIMILARITY_METHODS",
    "AlignedSentence",
    "ProbeConfig",
    "ProbeScore",
    "Sentence",
    "Split",
    "align_offsets",
    "align_sentence",
    "canonical_correlations",
    "cca",
    "control_labels",
    "fit_probe",
    "format_conllu",
    "layer_similarity",
    "linear_cka",
    "majority_baseline",
    "parse_conllu",
    "probe",
    "pwcca",
    "read_conllu",
    "similarity",
    "similarity_function",
    "split_by_sentence",
    "svcca",
    "word_type_baseline",
    "word_vectors",
]
