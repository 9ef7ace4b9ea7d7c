"""A CoNLL-U reader (Universal Dependencies), for taggers and parsers.

A CoNLL-U file is a sequence of sentences separated by blank lines.  Each sentence starts with
``#`` comment lines (``# sent_id = ...``, ``# text = ...``) followed by one tab-separated row of
10 columns per word::

    ID  FORM  LEMMA  UPOS  XPOS  FEATS  HEAD  DEPREL  DEPS  MISC

Only rows whose ID is an integer are **syntactic words** and are read.  Two other kinds of rows
are skipped: multiword-token ranges (``3-4  don't``: the surface token that the words 3 and 4
were split from) and empty nodes (``8.1``: enhanced-dependency helpers with no surface form).
So in "don't" a tagger sees the words ``do`` and ``n't``, exactly as the treebank's statistics
count them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Sentence", "read_conllu", "load_ud", "UPOS_TAGS"]

#: The 17 universal part-of-speech tags (https://universaldependencies.org/u/pos/).
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
             "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")


@dataclass
class Sentence:
    """One sentence: parallel lists with one entry per syntactic word.

    ``heads`` are integers (0 = root, otherwise the 1-based index of the head word; -1 where the
    file has ``_``).  ``meta`` holds every ``# key = value`` comment, ``sent_id`` and ``text``
    among them.
    """
    words: list[str] = field(default_factory=list)
    lemmas: list[str] = field(default_factory=list)
    upos: list[str] = field(default_factory=list)
    xpos: list[str] = field(default_factory=list)
    feats: list[str] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)
    deprels: list[str] = field(default_factory=list)
    sent_id: str | None = None
    text: str | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)


def _bad(path, lineno, msg):
    return ValueError(f"{path}, line {lineno}: {msg}")


def read_conllu(path) -> list[Sentence]:
    """Read a CoNLL-U file into :class:`Sentence` objects (integer-ID rows only)."""
    path = Path(path)
    sentences: list[Sentence] = []
    sent = Sentence()
    started = False

    def finish(lineno):
        nonlocal sent, started
        if started:
            if not sent.words:
                raise _bad(path, lineno, "sentence without any word rows")
            n = len(sent.words)
            if any(h > n for h in sent.heads):
                raise _bad(path, lineno, f"sentence {sent.sent_id!r}: a HEAD points past its {n} words")
            sentences.append(sent)
        sent, started = Sentence(), False

    with open(path, encoding="utf-8-sig") as fh:
        lineno = 0
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                finish(lineno)
                continue
            started = True
            if line.startswith("#"):
                body = line[1:].strip()
                if "=" in body:
                    key, value = (s.strip() for s in body.split("=", 1))
                    sent.meta[key] = value
                    if key == "sent_id":
                        sent.sent_id = value
                    elif key == "text":
                        sent.text = value
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise _bad(path, lineno, f"expected 10 tab-separated columns, found {len(cols)}: {line!r}")
            wid = cols[0]
            if "-" in wid or "." in wid:          # multiword-token range or empty node
                continue
            if not wid.isdigit():
                raise _bad(path, lineno, f"ID {wid!r} is neither an integer, a range nor a decimal")
            if int(wid) != len(sent.words) + 1:
                raise _bad(path, lineno, f"word ID {wid} out of sequence (expected {len(sent.words) + 1})")
            head = cols[6]
            if head == "_":
                head_i = -1
            elif head.isdigit():
                head_i = int(head)
            else:
                raise _bad(path, lineno, f"HEAD {head!r} is not an integer")
            sent.words.append(cols[1])
            sent.lemmas.append(cols[2])
            sent.upos.append(cols[3])
            sent.xpos.append(cols[4])
            sent.feats.append(cols[5])
            sent.heads.append(head_i)
            sent.deprels.append(cols[7])
        finish(lineno + 1)
    return sentences


def load_ud(name: str = "ud_english_ewt", split: str = "train") -> list[Sentence]:
    """Read a registered UD treebank split, fetching it if needed:
    ``load_ud("ud_english_ewt", "dev")``."""
    from .registry import fetch
    return read_conllu(fetch(name, split))
