"""Probing classifiers: a planted linear signal is found, random labels stay at chance, controls are right."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ecco_engine import InvalidRequest
from ecco_tools.probing import (
    ProbeConfig,
    control_labels,
    majority_baseline,
    probe,
    split_by_sentence,
    word_type_baseline,
)

CONFIG = ProbeConfig(c=0.5, max_iter=300, seed=0)


def synthetic(seed: int, n_sentences: int = 120, words: int = 10, width: int = 64, n_classes: int = 5):
    """Words with a label linearly encoded along 5 random directions (+ noise), grouped into sentences."""
    rng = np.random.default_rng(seed)
    n = n_sentences * words
    labels = rng.integers(0, n_classes, n)
    directions = rng.standard_normal((n_classes, width))
    features = 3.0 * directions[labels] + rng.standard_normal((n, width))
    sentence_ids = np.repeat(np.arange(n_sentences), words)
    return features.astype(np.float32), np.array([f"L{k}" for k in labels], dtype=object), sentence_ids


def test_split_is_by_sentence_with_a_fixed_seed():
    ids = np.repeat(np.arange(50), 7)
    split = split_by_sentence(ids, test_share=0.2, seed=3)
    assert set(ids[split.train]).isdisjoint(ids[split.test])  # no sentence on both sides
    assert len(set(ids[split.test])) == 10 and split.train.size + split.test.size == ids.size
    again = split_by_sentence(ids, test_share=0.2, seed=3)
    np.testing.assert_array_equal(again.test, split.test)
    assert not np.array_equal(split_by_sentence(ids, 0.2, seed=4).test, split.test)
    with pytest.raises(InvalidRequest, match="test_share"):
        split_by_sentence(ids, test_share=1.0)
    with pytest.raises(InvalidRequest, match=">= 2 sentences"):
        split_by_sentence(np.zeros(5), 0.2)


def test_a_planted_linear_signal_is_found_on_held_out_sentences():
    features, labels, ids = synthetic(0)
    split = split_by_sentence(ids, 0.2, 0)
    score = probe(features, labels, labels, split, CONFIG)
    assert score.accuracy > 0.97  # measured 1.000; classes are 3 sigma apart along their directions


def test_random_labels_stay_near_chance():
    features, _, ids = synthetic(1)
    random_labels = np.array([f"R{k}" for k in np.random.default_rng(2).integers(0, 5, ids.size)], dtype=object)
    split = split_by_sentence(ids, 0.2, 0)
    score = probe(features, random_labels, random_labels, split, CONFIG)
    # chance = 0.2; 240 held-out words -> standard error 0.026; allow ~3.5 SE
    assert abs(score.accuracy - 0.2) < 0.09


def test_control_task_gives_one_label_per_type_from_the_label_distribution():
    rng = np.random.default_rng(5)
    vocab = [f"w{i}" for i in range(400)]
    types = [vocab[i] for i in rng.integers(0, 400, 5000)]
    labels = ["NOUN"] * 3000 + ["VERB"] * 1500 + ["DET"] * 500
    control = control_labels(types, labels, seed=0)
    by_type: dict[str, set[str]] = {}
    for t, c in zip(types, control, strict=True):
        by_type.setdefault(t, set()).add(c)
    assert all(len(v) == 1 for v in by_type.values())  # a type always gets the same control label
    drawn = Counter(next(iter(v)) for v in by_type.values())
    assert set(drawn) <= {"NOUN", "VERB", "DET"}
    assert drawn["NOUN"] / len(by_type) == pytest.approx(0.6, abs=0.08)  # sampled with the label shares
    np.testing.assert_array_equal(control_labels(types, labels, seed=0), control)  # deterministic


def test_selectivity_separates_a_representation_from_type_memorization():
    """A one-hot word-identity representation solves the control task too (low selectivity);
    a representation that encodes the label but not the word type does not (high selectivity)."""
    rng = np.random.default_rng(7)
    n_types, n = 60, 3000
    types = rng.integers(0, n_types, n)
    type_label = rng.integers(0, 4, n_types)
    labels = np.array([f"L{type_label[t]}" for t in types], dtype=object)
    ids = np.repeat(np.arange(n // 10), 10)
    split = split_by_sentence(ids, 0.2, 0)
    control = control_labels([f"w{t}" for t in types], list(labels), seed=1)
    identity = np.eye(n_types, dtype=np.float32)[types]
    label_only = np.eye(4, dtype=np.float32)[type_label[types]] + 0.1 * rng.standard_normal((n, 4)).astype(np.float32)
    memorizer = probe(identity, labels, control, split, CONFIG)
    encoder = probe(label_only, labels, control, split, CONFIG)
    assert memorizer.accuracy > 0.95 and memorizer.control_accuracy > 0.9 and memorizer.selectivity < 0.1
    assert encoder.accuracy > 0.95 and encoder.control_accuracy < 0.6 and encoder.selectivity > 0.35


def test_baselines():
    train = ["NOUN"] * 6 + ["VERB"] * 4
    assert majority_baseline(train, ["NOUN", "VERB", "NOUN", "DET"]) == 0.5
    train_types, train_labels = ["run"] * 4 + ["dog"] * 6, ["VERB"] * 4 + ["NOUN"] * 6
    # "run" -> VERB (seen 4x as VERB), "dog" -> NOUN; unseen "cat" -> the overall majority NOUN
    test_types, test_labels = ["run", "dog", "cat", "run"], ["VERB", "NOUN", "NOUN", "NOUN"]
    assert word_type_baseline(train_types, train_labels, test_types, test_labels) == 0.75


def test_probe_rejects_mismatched_shapes():
    features, labels, ids = synthetic(3, n_sentences=10)
    split = split_by_sentence(ids, 0.2, 0)
    with pytest.raises(InvalidRequest, match="n_words"):
        probe(features[:-1], labels, labels, split, CONFIG)
