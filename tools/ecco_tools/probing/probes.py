"""Linear probing classifiers with the controls that make their accuracy readable.

* ``split_by_sentence``: held-out split by *sentence* (never by token, so no sentence is seen in
  both halves), with a fixed seed.
* ``fit_probe``: multinomial logistic regression (L2, ``C``) on standardized features, at most
  ``max_iter`` L-BFGS iterations; accuracy on the held-out words. The iteration cap is part of
  the probe's definition (early stopping limits capacity, as the L2 term does): the task probes
  converge at or near it, while memorizing the control task's random type labels takes 2-3x
  longer (measured on SmolLM2's hidden state after block 18, 2946 training words, tol 1e-3: the
  task probe converged after 100 iterations, the control probe after 261). One setting is used
  for every layer and representation, so comparisons between them stay fair.
* Baselines: ``majority_baseline`` (the most frequent training label) and
  ``word_type_baseline`` (each word type's most frequent training label, else the majority:
  what word identity alone gives).
* ``control_labels``: Hewitt & Liang's (2019) control task: every word *type* gets one random
  label, drawn once from the empirical label distribution, so a probe can only solve it by
  memorizing types. ``selectivity = task accuracy - control accuracy`` (same probe, same split):
  high selectivity means the accuracy reflects the representation, not the probe's capacity.

Plain numpy / scikit-learn; no model code.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ecco_engine.errors import InvalidRequest


@dataclass(frozen=True)
class ProbeConfig:
    """How every probe is trained (one setting for all layers and representations)."""

    c: float = 0.5  # inverse L2 strength of the logistic regression
    max_iter: int = 100  # L-BFGS iterations: also an early-stopping limit on memorization (see module doc)
    tol: float = 1e-3
    test_share: float = 0.2  # share of sentences held out
    seed: int = 0


@dataclass(frozen=True)
class Split:
    """Row indices of the training and held-out words."""

    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class ProbeScore:
    """One probe: held-out accuracy on the task and on the control task, and their difference."""

    accuracy: float
    control_accuracy: float
    n_iter: int

    @property
    def selectivity(self) -> float:
        return self.accuracy - self.control_accuracy


def split_by_sentence(sentence_ids: np.ndarray, test_share: float = 0.2, seed: int = 0) -> Split:
    """Hold out a ``test_share`` of the *sentences* (at least one, at most all but one), shuffled by ``seed``."""
    if not 0.0 < test_share < 1.0:
        raise InvalidRequest("test_share", f"must be in (0, 1), got {test_share}")
    ids = np.asarray(sentence_ids)
    unique = np.unique(ids)
    if unique.size < 2:
        raise InvalidRequest("sentences", f"a split by sentence needs >= 2 sentences, got {unique.size}")
    order = np.random.default_rng(seed).permutation(unique)
    n_test = min(max(1, round(test_share * unique.size)), unique.size - 1)
    held_out = np.isin(ids, order[:n_test])
    return Split(train=np.flatnonzero(~held_out), test=np.flatnonzero(held_out))


def control_labels(types: Sequence[str], labels: Sequence[str], seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: one label per word type, sampled from the label distribution.

    ``types`` and ``labels`` are per word (same length). Types are visited in sorted order, so the
    result depends only on the data and ``seed``.
    """
    if len(types) != len(labels):
        raise InvalidRequest("labels", f"{len(types)} word types but {len(labels)} labels")
    counts = Counter(labels)
    classes = sorted(counts)
    probs = np.array([counts[c] for c in classes], dtype=np.float64)
    rng = np.random.default_rng(seed)
    distinct = sorted(set(types))
    drawn = rng.choice(len(classes), size=len(distinct), p=probs / probs.sum())
    by_type = {t: classes[k] for t, k in zip(distinct, drawn, strict=True)}
    return np.array([by_type[t] for t in types], dtype=object)


def majority_baseline(train_labels: Sequence[str], test_labels: Sequence[str]) -> float:
    """Accuracy of always predicting the most frequent training label."""
    top = Counter(train_labels).most_common(1)[0][0]
    return float(np.mean([label == top for label in test_labels]))


def word_type_baseline(
    train_types: Sequence[str], train_labels: Sequence[str], test_types: Sequence[str], test_labels: Sequence[str]
) -> float:
    """Accuracy of predicting each word type's most frequent training label (unseen types: the majority)."""
    per_type: dict[str, Counter[str]] = {}
    for t, label in zip(train_types, train_labels, strict=True):
        per_type.setdefault(t, Counter())[label] += 1
    majority = Counter(train_labels).most_common(1)[0][0]
    guesses = [per_type[t].most_common(1)[0][0] if t in per_type else majority for t in test_types]
    return float(np.mean([g == label for g, label in zip(guesses, test_labels, strict=True)]))


def fit_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, config: ProbeConfig
) -> tuple[float, int]:
    """``(held-out accuracy, iterations)`` of a logistic-regression probe; one class only → that class."""
    classes = np.unique(y_train)
    if classes.size == 1:
        return float(np.mean(y_test == classes[0])), 0
    scaler = StandardScaler().fit(x_train.astype(np.float32))
    model = LogisticRegression(C=config.c, max_iter=config.max_iter, tol=config.tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # n_iter is reported
        model.fit(scaler.transform(x_train.astype(np.float32)), y_train)
    predicted = model.predict(scaler.transform(x_test.astype(np.float32)))
    return float(np.mean(predicted == y_test)), int(np.max(model.n_iter_))


def probe(
    features: np.ndarray, labels: np.ndarray, control: np.ndarray, split: Split, config: ProbeConfig
) -> ProbeScore:
    """Train the task probe and the control probe on ``features`` ``(n_words, width)`` with one split."""
    if features.ndim != 2 or features.shape[0] != labels.shape[0] or labels.shape != control.shape:
        raise InvalidRequest(
            "features", f"need (n_words, width) features and n_words labels, got {features.shape}, {labels.shape}"
        )
    x_train, x_test = features[split.train], features[split.test]
    accuracy, n_iter = fit_probe(x_train, labels[split.train], x_test, labels[split.test], config)
    control_accuracy, _ = fit_probe(x_train, control[split.train], x_test, control[split.test], config)
    return ProbeScore(accuracy=accuracy, control_accuracy=control_accuracy, n_iter=n_iter)
