"""Readers for the plain-text corpora and the sentence-polarity data, and a seeded split.

Every reader fetches its file through the registry (mirror, cache or download, always verified)
unless it is given a path.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from .registry import fetch

__all__ = ["read_lines", "read_wikitext", "wikitext_tokens", "tokens_with_eos",
           "read_tiny_shakespeare", "read_state_union", "read_polarity", "split_indices"]


def read_lines(path, encoding: str = "utf-8") -> list[str]:
    """The lines of a text file without their line endings (a final newline starts no line)."""
    with open(path, encoding=encoding, newline="") as fh:     # split on "\n" only
        text = fh.read().replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_wikitext(split: str = "valid", path=None) -> list[str]:
    """The lines of a WikiText-2 split (``"valid"``, ``"test"``, or ``"train"`` if fetched),
    exactly as in the file: headings like ``" = Homarus gammarus = "``, blank lines included."""
    return read_lines(path if path is not None else fetch("wikitext2", split))


def tokens_with_eos(lines, eos: str = "<eos>") -> list[str]:
    """Whitespace tokens of every line followed by ``eos``, blank lines included: the convention
    behind WikiText's published token counts (and PyTorch's word_language_model)."""
    out: list[str] = []
    for line in lines:
        out.extend(line.split())
        out.append(eos)
    return out


def wikitext_tokens(split: str = "valid", path=None) -> list[str]:
    """A WikiText-2 split as one token stream with ``<eos>`` after every line
    (valid: 217,646 tokens; test: 245,569)."""
    return tokens_with_eos(read_wikitext(split, path))


def read_tiny_shakespeare(path=None) -> str:
    """Tiny-shakespeare as one string (1,115,394 characters)."""
    with open(path if path is not None else fetch("tiny_shakespeare"), encoding="utf-8", newline="") as fh:
        return fh.read()


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")         # six of the speeches are ISO-8859-1
    return text.replace("\r\n", "\n")


def read_state_union(path=None) -> list[tuple[str, str]]:
    """The 65 State of the Union speeches as ``(name, text)`` pairs in file order, e.g.
    ``("1945-Truman", "PRESIDENT HARRY S. TRUMAN'S ADDRESS ...")``.  Read from the zip without
    unpacking it; each file is decoded as UTF-8, falling back to latin-1."""
    archive = path if path is not None else fetch("state_union")
    speeches = []
    with zipfile.ZipFile(archive) as zf:
        for name in sorted(zf.namelist()):
            base = name.rsplit("/", 1)[-1]
            if not base.endswith(".txt"):     # the folder entry and README
                continue
            speeches.append((base[:-4], _decode(zf.read(name))))
    return speeches


def read_polarity(pos=None, neg=None) -> tuple[list[str], np.ndarray]:
    """The sentence-polarity data: ``(sentences, labels)``, the 5,331 positive snippets first
    (label 1) and then the 5,331 negative ones (label 0).  Sentences are the file's lines with
    surrounding whitespace removed (already lower-cased and tokenised).  There is no official
    split: use :func:`split_indices`."""
    pos_lines = [s.strip() for s in read_lines(pos if pos is not None else fetch("rt_polarity", "pos"))]
    neg_lines = [s.strip() for s in read_lines(neg if neg is not None else fetch("rt_polarity", "neg"))]
    labels = np.concatenate([np.ones(len(pos_lines), dtype=np.int64),
                             np.zeros(len(neg_lines), dtype=np.int64)])
    return pos_lines + neg_lines, labels


def split_indices(n: int, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> tuple[np.ndarray, ...]:
    """Split ``range(n)`` into disjoint parts of the given fractions (which sum to 1), at random
    but reproducibly: ``np.random.default_rng(seed).permutation(n)`` cut into consecutive pieces.
    Part ``i`` gets ``floor(n * fractions[i])`` indices, the last part the rest.  Each part is
    returned sorted (int64).  The PCG64 generator gives the same split on every platform."""
    n = int(n)
    if n < 0:
        raise ValueError(f"split_indices: n must be >= 0, got {n}")
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(f < 0 or not math.isfinite(f) for f in fractions):
        raise ValueError(f"split_indices: fractions must be non-negative numbers, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split_indices: fractions must sum to 1, got {fractions} (sum {sum(fractions)})")
    perm = np.random.default_rng(seed).permutation(n)
    sizes = [int(math.floor(n * f + 1e-9)) for f in fractions[:-1]]
    bounds = np.cumsum([0] + sizes)
    parts = [perm[bounds[i]:bounds[i + 1]] for i in range(len(sizes))] + [perm[bounds[-1]:]]
    return tuple(np.sort(p).astype(np.int64) for p in parts)
