"""CoNLL-U reading and word -> sub-token alignment on characters."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_engine import InvalidRequest
from ecco_tools.probing import Sentence, align_offsets, align_sentence, format_conllu, parse_conllu, read_conllu
from ecco_tools.probing.alignment import pick_subtoken, word_spans
from tiny_models import tiny_tokenizer

CONLLU = """# newdoc
# sent_id = a1
# text = We can't stop.
1\tWe\twe\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tstop\tstop\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
4.1\tgone\t_\t_\t_\t_\t_\t_\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tcapital\tcapital\tNOUN\tNN\t_\t0\troot\t_\tSpaceAfter=No
3\t,\t,\tPUNCT\t,\t_\t2\tpunct\t_\t_
"""


def test_conllu_words_labels_multiword_tokens_and_spacing():
    first, second = list(parse_conllu(CONLLU.splitlines(keepends=True)))
    assert first.sent_id == "a1" and second.sent_id == "2"
    assert first.words == ("We", "ca", "n't", "stop", ".")  # syntactic words; empty node 4.1 skipped
    assert first.upos == ("PRON", "AUX", "PART", "VERB", "PUNCT")
    assert first.labels("deprel") == ("nsubj", "aux", "advmod", "root", "punct")
    assert first.heads == (3, 4, 4, 0, 4)
    assert first.text == "We can't stop."  # the surface token "can't" stands for "ca" + "n't"
    assert word_spans(first) == [(0, 2), (3, 8), (3, 8), (9, 13), (13, 14)]
    assert second.text == "The capital,"
    with pytest.raises(InvalidRequest, match="label"):
        first.labels("lemma")


def test_conllu_round_trip_and_errors(tmp_path):
    sentence = Sentence(
        words=("Hello", ",", "world", "!"),
        upos=("INTJ", "PUNCT", "NOUN", "PUNCT"),
        xpos=("UH", ",", "NN", "."),
        deprel=("root", "punct", "vocative", "punct"),
        space_after=(False, True, False, True),
        sent_id="s1",
        heads=(0, 1, 1, 1),
    )
    path = tmp_path / "x.conllu"
    path.write_text(format_conllu([sentence], ["source = test"]), encoding="utf-8")
    (back,) = read_conllu(path)
    assert back == sentence and back.text == "Hello, world!"
    path.write_text("1\tonly\tthree\n\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="10 tab-separated columns"):
        read_conllu(path)
    path.write_text("# just a comment\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="no sentences"):
        read_conllu(path)


def test_align_offsets_trims_spaces_skips_specials_and_shares_merged_tokens():
    text = "I cannot go."
    spans = [(0, 1), (2, 5), (5, 8), (9, 11), (11, 12)]  # I / can / not / go / .
    offsets = [(0, 0), (0, 1), (1, 8), (8, 11), (11, 12), (0, 0)]  # [CLS] I " cannot" " go" . [SEP]
    assert align_offsets(text, spans, offsets) == ((1,), (2,), (2,), (3,), (4,))
    # a word split into several tokens gets all of them, in order
    assert align_offsets("unbelievable", [(0, 12)], [(0, 2), (2, 9), (9, 12)]) == ((0, 1, 2),)
    # a character the tokenizer dropped leaves its word without tokens
    assert align_offsets("a \u200b b", [(0, 1), (2, 3), (4, 5)], [(0, 1), (4, 5)]) == ((0,), (), (1,))


def test_align_sentence_with_a_byte_level_bpe_tokenizer():
    tok = tiny_tokenizer()
    (sentence,) = parse_conllu(
        [f"{i + 1}\t{w}\t_\tX\tX\t_\t0\tdep\t_\t{'SpaceAfter=No' if w in ('Paris',) else '_'}\n"
         for i, w in enumerate(["The", "capital", "of", "France", "is", "Paris", "."])]
    )  # fmt: skip
    aligned = align_sentence(sentence, tok)
    assert sentence.text == "The capital of France is Paris."
    assert aligned.kept_words == tuple(range(7))
    tokens = tok.convert_ids_to_tokens(list(aligned.input_ids))
    for word, positions in zip(sentence.words, aligned.word_tokens, strict=True):
        pieces = "".join(tokens[p] for p in positions).replace("Ġ", "")
        assert pieces == word  # the word's tokens spell the word (byte-level BPE: ASCII here)


def test_subtoken_choice_and_word_vectors():
    from ecco_tools.probing import word_vectors

    assert pick_subtoken("auto", causal=True) == "last" and pick_subtoken("auto", causal=False) == "first"
    with pytest.raises(InvalidRequest, match="subtoken"):
        pick_subtoken("middle", causal=True)
    states = np.arange(12, dtype=np.float32).reshape(4, 3)
    words = [(0,), (1, 2, 3)]
    np.testing.assert_array_equal(word_vectors(states, words, "first"), states[[0, 1]])
    np.testing.assert_array_equal(word_vectors(states, words, "last"), states[[0, 3]])
    np.testing.assert_array_equal(word_vectors(states, words, "mean"), np.stack([states[0], states[1:].mean(0)]))
