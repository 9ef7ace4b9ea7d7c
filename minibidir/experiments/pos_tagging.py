"""Experiment 2 · 单向不行，那就双向: part-of-speech tagging with a unidirectional LSTM and a
bidirectional one, on the Universal Dependencies English Web Treebank (UD English EWT).

A tagger reads a sentence w_1 .. w_n and gives each word one of the 17 universal POS tags.
The tag of a word often depends on what comes *after* it ("I **saw** ..." vs "a **saw** is"),
so a left-to-right LSTM, whose state at position t has read only w_1 .. w_t, is at a
disadvantage; a bidirectional LSTM concatenates a forward state (w_1 .. w_t) and a backward
state (w_t .. w_n) and sees the whole sentence at every position::

    x_t = [ e(w_t) ; c(w_t) ]                       word embedding (+ character features)
    →h_t = LSTM_fwd(x_t, →h_{t-1})                 ←h_t = LSTM_bwd(x_t, ←h_{t+1})
    h_t  = →h_t  (unidirectional)   or   [ →h_t ; ←h_t ]  (bidirectional)
    p(y_t | w) = softmax(W h_t + b)

The character features c(w) come from a small character BiLSTM over the letters of the word,
its two final states concatenated (Ling et al., 2015; Plank, Søgaard & Goldberg, 2016): they
give unseen words a representation from their spelling (suffixes, capitals, digits, hyphens).

Four variants are compared, {uni, bi} × {word, word + char}; :func:`compare` builds the table
and puts the published figures beside it (:data:`REFERENCES`).  Everything is seeded
(:func:`minibidir.manual_seed` for initialisation and dropout, a NumPy generator of the same
seed for shuffling and word dropout).

Pieces, in the order a run uses them:

* :class:`Vocab`, :func:`build_vocabs`: word vocabulary (optionally lower-cased, with a minimum
  frequency; ``[PAD]`` = 0, ``[UNK]`` = 1) and character vocabulary.
* :class:`Featurizer`: sentences → :class:`Encoded` id arrays; lists of them → a padded
  :class:`Batch` (``lengths`` for the LSTM's packed-sequence semantics, tags ``-100`` at padding,
  and the characters of the batch's *unique* word forms, so the character LSTM runs once per
  distinct word rather than once per token).
* :func:`length_batches`: batches of sentences of similar length (little padding), in random
  order for training.
* :class:`Tagger`: the model; :func:`tagging_loss`, :func:`evaluate`, :func:`word_dropout`.
* :func:`run` (one configuration → accuracies, times, parameter counts), :func:`compare` (the
  four variants → table), :data:`QUICK` and :data:`FULL` settings, :func:`main` (command line).

Command line (set ``MINIBIDIR_DATA_MIRROR`` to a local copy of the data, if there is one)::

    python -m minibidir.experiments.pos_tagging --variants bi-char --json bi-char.json
    python -m minibidir.experiments.pos_tagging --quick            # the four variants, small
    python -m minibidir.experiments.pos_tagging --table *.json     # table from saved results
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .. import backend as B
from .. import functional as F
from .. import checkpoint, nn, optim
from ..autograd import Tensor, no_grad
from ..backend import manual_seed
from ..data import UPOS_TAGS, load_ud

try:                                   # progress bars are a nicety, never a requirement
    from tqdm.auto import tqdm as _tqdm
except ImportError:                    # pragma: no cover
    _tqdm = None

__all__ = ["PAD", "UNK", "PAD_ID", "UNK_ID", "IGNORE_INDEX", "TAGS", "NUM_TAGS", "Vocab", "build_vocabs",
           "Encoded", "Batch", "Featurizer", "length_batches", "word_dropout", "CharBiLSTM",
           "Tagger", "tagging_loss", "count_correct", "evaluate", "predict", "baselines",
           "lstm_param_count", "matched_hidden", "count_parameters", "load_splits", "blas_threads",
           "QUICK", "FULL", "VARIANTS", "REFERENCES", "run", "compare", "format_table", "main"]

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
IGNORE_INDEX = -100                    # the tag at padded positions: no loss, no accuracy


#: The 17 universal POS tags, in the order of the model's outputs.
TAGS = tuple(UPOS_TAGS)
NUM_TAGS = len(TAGS)


# ============================================================================ vocabularies

class Vocab:
    """A token ↔ id table: ``itos[i]`` is the token of id ``i``, ``stoi`` the reverse.

    Ids 0 and 1 are ``[PAD]`` and ``[UNK]``; then the tokens seen at least ``min_freq`` times,
    most frequent first (ties alphabetical, so the table is deterministic).  ``counts[i]`` is
    the training count of token ``i`` (0 for the specials), used by :func:`word_dropout`.
    Looking up an unknown token gives ``[UNK]``'s id.
    """

    def __init__(self, counts, min_freq=1):
        if min_freq < 1:
            raise ValueError(f"Vocab: min_freq must be at least 1, got {min_freq}")
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in (PAD, UNK)),
                      key=lambda t: (-counts[t], t))
        self.itos = [PAD, UNK] + kept
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.counts = np.array([0, 0] + [counts[t] for t in kept], dtype=np.int64)
        self.min_freq = min_freq

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def __getitem__(self, token):
        return self.stoi.get(token, UNK_ID)

    def encode(self, tokens):
        """Ids of ``tokens`` as an int64 array (``[UNK]`` for unknown ones)."""
        get = self.stoi.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int64, count=len(tokens))

    def __repr__(self):
        return f"Vocab({len(self)} entries, min_freq={self.min_freq})"


def build_vocabs(sentences, lowercase=False, min_freq=1, char_min_freq=1):
    """``(word_vocab, char_vocab)`` from training sentences (objects with ``.words``).

    Words are lower-cased first when ``lowercase`` (the character features still see the
    original spelling, capitals included); characters are counted over the original forms.
    """
    words = Counter()
    chars = Counter()
    for s in sentences:
        for w in s.words:
            words[w.lower() if lowercase else w] += 1
            chars.update(w)
    return Vocab(words, min_freq), Vocab(chars, char_min_freq)


# ============================================================================ encoding and batching

@dataclass
class Encoded:
    """One sentence as arrays of length n: word ids, form ids (the :class:`Featurizer`'s table of
    distinct surface forms), tag ids (None when untagged), and ``oov`` (the form was not seen
    in training)."""
    words: np.ndarray
    forms: np.ndarray
    tags: np.ndarray | None
    oov: np.ndarray

    def __len__(self):
        return len(self.words)


@dataclass
class Batch:
    """A padded batch of B sentences, the longest of length T.

    * ``words`` (B, T) word ids, ``[PAD]`` (0) after each sentence's end;
    * ``tags`` (B, T) tag ids, ``IGNORE_INDEX`` (-100) at padding;
    * ``lengths`` (B,) the true lengths (the LSTM's packed-sequence semantics);
    * ``chars`` (U, C) the character ids of the U distinct word forms in the batch (``[PAD]``
      after each form's end), ``char_lengths`` (U,) their lengths;
    * ``form_index`` (B, T) which of the U forms stands at each position (0 at padding);
    * ``oov`` (B, T) True where the form was not seen in training; ``mask`` (B, T) True at
      real tokens; ``index``: positions of the sentences in the list they came from.
    """
    words: np.ndarray
    tags: np.ndarray
    lengths: np.ndarray
    chars: np.ndarray
    char_lengths: np.ndarray
    form_index: np.ndarray
    oov: np.ndarray
    mask: np.ndarray
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def num_tokens(self):
        return int(self.lengths.sum())


class Featurizer:
    """Turns words into the ids a :class:`Tagger` reads.

    ``word_vocab``/``char_vocab`` from :func:`build_vocabs`; ``lowercase`` must match how the
    word vocabulary was built; ``known_forms``: the training word forms (for the OOV
    accuracy).  Every distinct surface form gets a *form id*; its characters are stored once
    (a form longer than ``max_word_len`` keeps its first and last ``max_word_len // 2``
    characters: prefix and suffix are what the character LSTM's two final states summarise).
    """

    def __init__(self, word_vocab, char_vocab, lowercase=False, max_word_len=20, known_forms=()):
        if max_word_len < 2:
            raise ValueError(f"Featurizer: max_word_len must be at least 2, got {max_word_len}")
        self.word_vocab, self.char_vocab = word_vocab, char_vocab
        self.lowercase, self.max_word_len = bool(lowercase), int(max_word_len)
        self.known_forms = frozenset(known_forms)
        self._form_id = {"": 0}                   # form 0: the empty form, used at padding
        self._form_chars = [np.zeros(0, np.int64)]
        self._table = None                        # (num_forms, max_word_len) char ids, built lazily
        self._table_len = None

    @property
    def num_forms(self):
        return len(self._form_chars)

    def form_id(self, form):
        i = self._form_id.get(form)
        if i is None:
            if not form:
                raise ValueError("Featurizer: a word must have at least one character")
            i = self._form_id[form] = len(self._form_chars)
            if len(form) > self.max_word_len:
                h = self.max_word_len // 2
                form = form[:h] + form[-h:]
            self._form_chars.append(self.char_vocab.encode(form))
            self._table = None
        return i

    def encode(self, sentence):
        """A sentence (an object with ``.words`` and optionally ``.upos``, or a list of words)
        → :class:`Encoded`."""
        words = list(sentence.words if hasattr(sentence, "words") else sentence)
        if not words:
            raise ValueError("Featurizer.encode: empty sentence")
        keys = [w.lower() for w in words] if self.lowercase else words
        tags = getattr(sentence, "upos", None)
        tag_ids = None
        if tags is not None:
            index = _tag_index()
            try:
                tag_ids = np.array([index[t] for t in tags], dtype=np.int64)
            except KeyError as e:
                raise ValueError(f"Featurizer.encode: unknown UPOS tag {e.args[0]!r}") from None
        return Encoded(words=self.word_vocab.encode(keys),
                       forms=np.array([self.form_id(w) for w in words], dtype=np.int64),
                       tags=tag_ids,
                       oov=np.array([w not in self.known_forms for w in words], dtype=bool))

    def encode_all(self, sentences):
        return [self.encode(s) for s in sentences]

    def _char_table(self):
        if self._table is None:
            n = len(self._form_chars)
            table = np.zeros((n, self.max_word_len), dtype=np.int64)
            lens = np.zeros(n, dtype=np.int64)
            for i, c in enumerate(self._form_chars):
                table[i, :len(c)] = c
                lens[i] = len(c)
            self._table, self._table_len = table, lens
        return self._table, self._table_len

    def batch(self, items, index=None):
        """Pad a list of :class:`Encoded` into a :class:`Batch`."""
        if not items:
            raise ValueError("Featurizer.batch: no sentences")
        lengths = np.array([len(x) for x in items], dtype=np.int64)
        Bn, T = len(items), int(lengths.max())
        words = np.full((Bn, T), PAD_ID, dtype=np.int64)
        forms = np.zeros((Bn, T), dtype=np.int64)
        tags = np.full((Bn, T), IGNORE_INDEX, dtype=np.int64)
        oov = np.zeros((Bn, T), dtype=bool)
        for b, x in enumerate(items):
            n = len(x)
            words[b, :n] = x.words
            forms[b, :n] = x.forms
            oov[b, :n] = x.oov
            if x.tags is not None:
                tags[b, :n] = x.tags
        mask = np.arange(T)[None, :] < lengths[:, None]
        uniq, inverse = np.unique(forms[mask], return_inverse=True)
        form_index = np.zeros((Bn, T), dtype=np.int64)
        form_index[mask] = inverse.reshape(-1)
        table, table_len = self._char_table()
        char_lengths = table_len[uniq]
        chars = np.ascontiguousarray(table[uniq, :int(char_lengths.max())])
        idx = np.arange(Bn) if index is None else np.asarray(index, dtype=np.int64)
        return Batch(words=words, tags=tags, lengths=lengths, chars=chars, char_lengths=char_lengths,
                     form_index=form_index, oov=oov, mask=mask, index=idx)


@functools.lru_cache(maxsize=1)
def _tag_index():
    return {t: i for i, t in enumerate(TAGS)}


def length_batches(lengths, batch_size, rng=None):
    """Index arrays of ``batch_size`` sentences of similar length.

    Sentences are sorted by length (ties broken at random when ``rng`` is given, so the
    batches differ between epochs) and cut into consecutive chunks; with ``rng`` the order of
    the chunks is shuffled too.  Padding is then at most the length spread inside a chunk.
    """
    lengths = np.asarray(lengths)
    if batch_size < 1:
        raise ValueError(f"length_batches: batch_size must be positive, got {batch_size}")
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.lexsort((rng.random(len(lengths)), lengths))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def word_dropout(words, counts, alpha, rng):
    """Replace each real word id by ``[UNK]`` with probability α / (α + count(w))
    (Kiperwasser & Goldberg, 2016): rare words are dropped often, frequent ones almost never,
    so the model learns what to do with ``[UNK]`` (and to lean on the character features).
    ``[PAD]`` and ``[UNK]`` stay as they are.  Returns a new array."""
    if alpha <= 0:
        return words
    c = counts[words]
    p = alpha / (alpha + c)
    drop = (words > UNK_ID) & (rng.random(words.shape) < p)
    return np.where(drop, UNK_ID, words)


# ============================================================================ the model

class CharBiLSTM(nn.Module):
    """Character features of words: c(w) = [→h_{|w|} ; ←h_1], the final states of a forward
    and a backward LSTM over the character embeddings of w (dimension 2·``char_hidden``)."""

    def __init__(self, num_chars, char_dim, char_hidden):
        super().__init__()
        self.hidden = char_hidden
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(char_dim, char_hidden, bidirectional=True)

    def forward(self, chars, lengths):
        """``chars`` (U, C) ids, ``lengths`` (U,) → (U, 2·char_hidden)."""
        U = chars.shape[0]
        x = self.embedding(chars.T)                           # (C, U, char_dim), time-major
        _, (h_n, _) = self.lstm(x, lengths=lengths)           # h_n (2, U, H): forward, backward
        return F.transpose(h_n, 0, 1).reshape(U, 2 * self.hidden)


def _size(v):
    return v if isinstance(v, (int, np.integer)) else len(v)


class Tagger(nn.Module):
    """Embedding (+ character BiLSTM) → LSTM (uni- or bidirectional) → Linear to the tags.

    ``Tagger(word_vocab, char_vocab, num_tags, word_dim, char_dim, char_hidden, hidden,
    num_layers, bidirectional, use_chars, dropout)``; the vocabularies may be given as sizes.
    Dropout (probability ``dropout``) is applied to the LSTM's input, between its layers and
    to its output.  ``forward(batch, words=None)`` returns logits (B, T, num_tags); ``words``
    replaces ``batch.words`` (word dropout).  Positions past a sentence's end give the bias
    only (the LSTM outputs zeros there) and are ignored by the loss and the accuracy.
    """

    def __init__(self, word_vocab, char_vocab, num_tags=NUM_TAGS, word_dim=100, char_dim=30,
                 char_hidden=50, hidden=128, num_layers=1, bidirectional=True, use_chars=True,
                 dropout=0.33):
        super().__init__()
        self.config = dict(num_words=_size(word_vocab), num_chars=_size(char_vocab) if use_chars else 0,
                           num_tags=int(num_tags), word_dim=int(word_dim), char_dim=int(char_dim),
                           char_hidden=int(char_hidden), hidden=int(hidden), num_layers=int(num_layers),
                           bidirectional=bool(bidirectional), use_chars=bool(use_chars),
                           dropout=float(dropout))
        self.use_chars, self.bidirectional = bool(use_chars), bool(bidirectional)
        self.word_embedding = nn.Embedding(_size(word_vocab), word_dim, padding_idx=PAD_ID)
        in_dim = word_dim
        if self.use_chars:
            self.char_encoder = CharBiLSTM(_size(char_vocab), char_dim, char_hidden)
            in_dim += 2 * char_hidden
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=num_layers, bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear((2 if bidirectional else 1) * hidden, num_tags)

    def forward(self, batch, words=None):
        words = batch.words if words is None else words
        x = self.word_embedding(words.T)                      # (T, B, word_dim), time-major
        if self.use_chars:
            feats = self.char_encoder(batch.chars, batch.char_lengths)      # (U, 2·char_hidden)
            c = F.embedding(batch.form_index.T, feats)                      # (T, B, 2·char_hidden)
            x = F.concat([x, c], axis=-1)
        h, _ = self.lstm(self.drop(x), lengths=batch.lengths)              # (T, B, D·hidden)
        logits = self.head(self.drop(h))                                    # (T, B, num_tags)
        return F.transpose(logits, 0, 1)                                    # (B, T, num_tags)


def tagging_loss(logits, tags):
    """Mean cross-entropy over the real tokens: logits (B, T, K), tags (B, T) with
    ``IGNORE_INDEX`` at padding (those positions add nothing and are not counted)."""
    K = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, K), tags.reshape(-1), ignore_index=IGNORE_INDEX)


def count_correct(logits, tags, where=None):
    """``(correct, total)`` over positions whose tag is not ``IGNORE_INDEX`` (and, if given,
    where ``where`` is True)."""
    scores = B.to_numpy(logits.data if isinstance(logits, Tensor) else logits)
    pred = scores.argmax(axis=-1)
    real = tags != IGNORE_INDEX
    if where is not None:
        real = real & where
    return int((pred == tags)[real].sum()), int(real.sum())


def evaluate(model, batches):
    """Accuracy of ``model`` (in eval mode, no graph) on prepared :class:`Batch` es:
    ``{"acc", "oov_acc", "tokens", "oov_tokens"}``; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    c = n = oc = on = 0
    try:
        with no_grad():
            for batch in batches:
                logits = model(batch)
                a, b = count_correct(logits, batch.tags)
                oa, ob = count_correct(logits, batch.tags, batch.oov)
                c, n, oc, on = c + a, n + b, oc + oa, on + ob
    finally:
        model.train(was_training)
    return {"acc": c / max(n, 1), "oov_acc": oc / on if on else float("nan"),
            "tokens": n, "oov_tokens": on}


def predict(model, featurizer, sentences, batch_size=256):
    """Tag lists of words: ``predict(model, featurizer, [["I", "saw", "her"]])`` →
    ``[["PRON", "VERB", "PRON"]]``."""
    encoded = [featurizer.encode(list(s)) for s in sentences]
    out = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for idx in length_batches([len(e) for e in encoded], batch_size):
                batch = featurizer.batch([encoded[i] for i in idx], idx)
                pred = B.to_numpy(model(batch).data).argmax(axis=-1)
                for row, i in enumerate(idx):
                    out[i] = [TAGS[k] for k in pred[row, :len(encoded[i])]]
    finally:
        model.train(was_training)
    return out


# ============================================================================ baselines, parameter budgets

def baselines(train_sentences, eval_sentences):
    """Two reference points that need no model: every token gets the most frequent tag of the
    training set (``majority_tag``); every token gets its word's most frequent training tag,
    unseen words the overall majority tag (``word_majority``)."""
    tag_counts = Counter(t for s in train_sentences for t in s.upos)
    majority = tag_counts.most_common(1)[0][0]
    per_word = {}
    for s in train_sentences:
        for w, t in zip(s.words, s.upos):
            per_word.setdefault(w, Counter())[t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in per_word.items()}
    n = m1 = m2 = 0
    for s in eval_sentences:
        for w, t in zip(s.words, s.upos):
            n += 1
            m1 += t == majority
            m2 += t == best.get(w, majority)
    return {"majority_tag": m1 / max(n, 1), "majority_tag_name": majority,
            "word_majority": m2 / max(n, 1)}


def lstm_param_count(input_size, hidden, num_layers=1, bidirectional=False):
    """Parameters of ``nn.LSTM(input_size, hidden, num_layers, bidirectional)``:
    per layer and direction 4H(in + H) weights and 2·4H biases."""
    D = 2 if bidirectional else 1
    total = 0
    for k in range(num_layers):
        in_k = input_size if k == 0 else D * hidden
        total += D * 4 * hidden * (in_k + hidden + 2)
    return total


def matched_hidden(input_size, hidden, num_layers=1):
    """The hidden size of a *unidirectional* LSTM with about as many parameters as a
    bidirectional one of size ``hidden`` (so "bi beats uni" is not just "bigger beats smaller";
    roughly √2·… to 2× ``hidden``, depending on the input size)."""
    target = lstm_param_count(input_size, hidden, num_layers, True)
    best = hidden
    for h in range(hidden, 4 * hidden + 1):
        if abs(lstm_param_count(input_size, h, num_layers, False) - target) < \
                abs(lstm_param_count(input_size, best, num_layers, False) - target):
            best = h
    return best


def count_parameters(model):
    """Parameter counts: ``total`` and by part (``word_embedding``, ``char``, ``lstm``, ``head``)."""
    parts = {"word_embedding": 0, "char": 0, "lstm": 0, "head": 0}
    for name, p in model.named_parameters():
        key = {"word_embedding": "word_embedding", "char_encoder": "char", "lstm": "lstm",
               "head": "head"}[name.split(".")[0]]
        parts[key] += int(p.data.size)
    parts["total"] = sum(parts.values())
    return parts


# ============================================================================ settings

#: The full experiment: the whole training set, sizes chosen so that the word + char BiLSTM
#: trains on two CPU cores within the 30-minute budget (see the report in the docs).
FULL = dict(
    dataset="ud_english_ewt", seed=1, data_seed=0,
    train_limit=None, dev_limit=None, test_limit=None,
    lowercase=True, min_freq=1, word_dropout=0.25, max_word_len=20,
    word_dim=100, char_dim=30, char_hidden=50, hidden=128, num_layers=1, dropout=0.33,
    bidirectional=True, use_chars=True,
    optimizer="adam", lr=2e-3, weight_decay=0.0, clip=5.0, schedule="constant",
    batch_size=32, eval_batch_size=256, epochs=15, time_budget_s=None,
    checkpoint=None, state_path=None, blas_threads=1,
)

# Settings that may change between an interrupted run and its resumption.
_RESUMABLE = ("epochs", "time_budget_s", "checkpoint", "state_path", "blas_threads")

#: A small, fast setting for the test suite and the notebooks (seconds, not minutes): a
#: subset of the training set, one epoch, tiny sizes.
QUICK = dict(FULL, train_limit=1500, dev_limit=300, test_limit=300,
             word_dim=32, char_dim=16, char_hidden=16, hidden=32, dropout=0.1,
             lr=1e-2, batch_size=16, epochs=1)

#: The four variants: name → (bidirectional, use_chars).
VARIANTS = {
    "uni-word": dict(bidirectional=False, use_chars=False),
    "bi-word": dict(bidirectional=True, use_chars=False),
    "uni-char": dict(bidirectional=False, use_chars=True),
    "bi-char": dict(bidirectional=True, use_chars=True),
}

#: Published figures to read our table against (test accuracy, %).  The UD figures are on an
#: older release of the same treebank (UD 1.2 English); the PTB ones are on a different corpus
#: and tag set (45 Penn tags), words only, no pre-trained embeddings.
REFERENCES = [
    ("Plank, Søgaard & Goldberg (2016), UD 1.2 English", "bi-LSTM, word embeddings", 92.1),
    ("Plank, Søgaard & Goldberg (2016), UD 1.2 English", "best bi-LSTM reported (pre-trained embeddings / auxiliary loss)", 95.2),
    ("Huang, Xu & Yu (2015), Penn Treebank POS", "LSTM, word features, random init", 94.63),
    ("Huang, Xu & Yu (2015), Penn Treebank POS", "BI-LSTM, word features, random init", 96.04),
]


# ============================================================================ data

@functools.lru_cache(maxsize=4)
def _load(dataset, split):
    return tuple(load_ud(dataset, split))


def _subset(sentences, limit, seed):
    if limit is None or limit >= len(sentences):
        return list(sentences)
    keep = np.sort(np.random.default_rng(seed).permutation(len(sentences))[:limit])
    return [sentences[i] for i in keep]


def load_splits(config):
    """``(train, dev, test)`` sentence lists for a configuration (a seeded random subset of each
    split when ``train_limit``/``dev_limit``/``test_limit`` are set)."""
    name, seed = config["dataset"], config["data_seed"]
    return tuple(_subset(_load(name, split), config[f"{split}_limit"], seed + k)
                 for k, split in enumerate(("train", "dev", "test")))


# ============================================================================ BLAS threads

_BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                 "openblas_set_num_threads64_", "openblas_set_num_threads")


def _openblas():
    """The OpenBLAS library NumPy loaded (Linux), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                            and ".so" in line})
        for path in paths:
            lib = ctypes.CDLL(path)
            for name in _BLAS_SETTERS:
                if hasattr(lib, name):
                    return lib, name, name.replace("set_", "get_")
    except OSError:
        pass
    return None


def blas_threads(n=None):
    """Set OpenBLAS's thread count in this process (``OPENBLAS_NUM_THREADS`` only acts before
    NumPy is imported) and return the previous count; ``n=None`` only reads it.  Returns None
    where NumPy does not use OpenBLAS.

    The tagger's matrix products are small ((32, 128) by (128, 512) per time step): on two
    cores a second BLAS thread gains little, and on a loaded machine its spin-waiting made a
    training epoch 10× slower than one thread.  :data:`FULL` and :data:`QUICK` ask for one.
    """
    found = _openblas()
    if found is None:
        return None
    lib, setter, getter = found
    before = int(getattr(lib, getter)()) if hasattr(lib, getter) else None
    if n is not None:
        getattr(lib, setter)(int(n))
    return before


# ============================================================================ one run

def _progress(iterable, enabled, **kw):
    if enabled and _tqdm is not None:
        return _tqdm(iterable, **kw)
    return iterable


def _say(msg, progress, log):
    if log is not None:
        log(msg)
    elif progress:
        (_tqdm.write if _tqdm is not None else print)(msg)


def _state_copy(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def _make_optimizer(cfg, params):
    name = cfg["optimizer"].lower()
    if name == "adam":
        return optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if name == "adamw":
        return optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise ValueError(f"pos_tagging: unknown optimizer {cfg['optimizer']!r} (adam or adamw)")


def run(config=None, *, progress=True, log=None, return_model=False, splits=None):
    """Train one tagger and return its results.

    ``config``: overrides of :data:`FULL` (e.g. ``dict(QUICK)`` or ``{"bidirectional":
    False}``).  Trains for ``epochs`` epochs (stopping early when the next epoch would pass
    ``time_budget_s``), evaluates on dev after every epoch, keeps the parameters of the best
    dev epoch (in memory; also written with :mod:`minibidir.checkpoint` when ``checkpoint``
    names a file), and evaluates those on test.  With ``state_path``, the whole training
    state (model, optimizer, schedule, both random generators, history, best model, time
    spent) is saved there after every epoch, and a run whose ``state_path`` already exists
    resumes after its last finished epoch, continuing exactly as if it had not stopped.

    Returns a JSON-serialisable dict: ``dev_acc`` (best), ``test_acc``, ``test_oov_acc``,
    ``best_epoch``, ``history`` (per epoch: mean training loss, dev accuracy, seconds),
    ``train_time_s`` (wall-clock seconds of training and the per-epoch dev evaluations),
    ``train_cpu_s`` (this process's CPU seconds for the same; steadier on a shared machine),
    ``time_s``/``cpu_s`` (everything, data loading included), ``epoch_time_s`` (median),
    ``params`` (by part), ``baselines`` (test), the vocabulary sizes and the full ``config``;
    with ``return_model`` also ``model`` and ``featurizer`` (not serialisable).
    ``splits``: ``(train, dev, test)`` sentence lists to use instead of loading them.
    """
    cfg = dict(FULL)
    cfg.update(config or {})
    unknown = set(cfg) - set(FULL) - {"variant"}
    if unknown:
        raise ValueError(f"pos_tagging.run: unknown settings {sorted(unknown)}")
    before = blas_threads(cfg["blas_threads"]) if cfg["blas_threads"] else None
    try:
        return _run(cfg, progress, log, return_model, splits)
    finally:
        if before:
            blas_threads(before)


def _run(cfg, progress, log, return_model, splits):
    t_start = time.perf_counter()
    c_start = time.process_time()
    manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])

    train_s, dev_s, test_s = splits if splits is not None else load_splits(cfg)
    word_vocab, char_vocab = build_vocabs(train_s, cfg["lowercase"], cfg["min_freq"])
    feat = Featurizer(word_vocab, char_vocab, cfg["lowercase"], cfg["max_word_len"],
                      known_forms={w for s in train_s for w in s.words})
    train_e, dev_e, test_e = (feat.encode_all(s) for s in (train_s, dev_s, test_s))

    def fixed_batches(encoded):
        return [feat.batch([encoded[i] for i in idx], idx)
                for idx in length_batches([len(e) for e in encoded], cfg["eval_batch_size"])]

    dev_b, test_b = fixed_batches(dev_e), fixed_batches(test_e)
    train_lengths = [len(e) for e in train_e]

    model = Tagger(word_vocab, char_vocab, len(TAGS), cfg["word_dim"], cfg["char_dim"],
                   cfg["char_hidden"], cfg["hidden"], cfg["num_layers"], cfg["bidirectional"],
                   cfg["use_chars"], cfg["dropout"])
    model.train()
    params = list(model.parameters())
    opt = _make_optimizer(cfg, params)
    steps_per_epoch = math.ceil(len(train_e) / cfg["batch_size"])
    sched = None
    if cfg["schedule"] == "cosine":
        sched = optim.CosineAnnealingLR(opt, T_max=cfg["epochs"] * steps_per_epoch,
                                        eta_min=0.05 * cfg["lr"])
    elif cfg["schedule"] != "constant":
        raise ValueError(f"pos_tagging: unknown schedule {cfg['schedule']!r} (constant or cosine)")
    name = cfg.get("variant") or ("bi" if cfg["bidirectional"] else "uni") + \
        ("-char" if cfg["use_chars"] else "-word")

    history, best, best_state = [], -1.0, None
    prior_time = prior_cpu = 0.0                  # training time spent before a resume
    state_path = cfg["state_path"]
    if state_path and os.path.exists(state_path):
        saved = checkpoint.load(state_path)
        fixed = {k: v for k, v in cfg.items() if k not in _RESUMABLE}
        was = {k: v for k, v in saved["config"].items() if k not in _RESUMABLE}
        if json.dumps(fixed, sort_keys=True) != json.dumps(was, sort_keys=True):
            raise ValueError(f"pos_tagging: {state_path} holds the state of a different "
                             f"configuration; delete it or choose another state_path")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        if sched is not None:
            sched.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = saved["rng"]
        B.set_rng_state(saved["library_rng"])
        history, best, best_state = saved["history"], saved["best"], saved["best_model"]
        prior_time, prior_cpu = saved["train_time_s"], saved["train_cpu_s"]
        _say(f"[{name}] resuming after epoch {len(history)} from {state_path}", progress, log)
    t_train, c_train = time.perf_counter(), time.process_time()
    for epoch in range(len(history) + 1, cfg["epochs"] + 1):
        elapsed = prior_time + time.perf_counter() - t_train
        if cfg["time_budget_s"] and history and \
                elapsed + history[-1]["seconds"] > cfg["time_budget_s"]:
            _say(f"[{name}] stopping before epoch {epoch}: the time budget "
                 f"({cfg['time_budget_s']:.0f} s) would be exceeded", progress, log)
            break
        t0 = time.perf_counter()
        model.train()
        total_loss = total_tokens = 0.0
        bar = _progress(length_batches(train_lengths, cfg["batch_size"], rng), progress,
                        desc=f"{name} epoch {epoch}/{cfg['epochs']}", leave=False,
                        total=steps_per_epoch, unit="batch")
        for idx in bar:
            batch = feat.batch([train_e[i] for i in idx], idx)
            words = word_dropout(batch.words, word_vocab.counts, cfg["word_dropout"], rng)
            loss = tagging_loss(model(batch, words), batch.tags)
            opt.zero_grad()
            loss.backward()
            if cfg["clip"]:
                optim.clip_grad_norm_(params, cfg["clip"])
            opt.step()
            if sched is not None:
                sched.step()
            n = batch.num_tokens
            total_loss += loss.item() * n
            total_tokens += n
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total_loss / total_tokens:.3f}", refresh=False)
        dev = evaluate(model, dev_b)
        secs = time.perf_counter() - t0
        history.append({"epoch": epoch, "loss": total_loss / max(total_tokens, 1),
                        "dev_acc": dev["acc"], "dev_oov_acc": dev["oov_acc"], "seconds": secs})
        improved = dev["acc"] > best
        if improved:
            best, best_state = dev["acc"], _state_copy(model)
            if cfg["checkpoint"]:
                checkpoint.save_state_dict(cfg["checkpoint"], best_state)
        if state_path:                             # everything needed to go on from here
            checkpoint.save(state_path, config=cfg, model=model.state_dict(),
                            optimizer=opt.state_dict(),
                            scheduler=sched.state_dict() if sched is not None else None,
                            rng=rng.bit_generator.state, library_rng=B.get_rng_state(),
                            history=history, best=best, best_model=best_state,
                            train_time_s=prior_time + time.perf_counter() - t_train,
                            train_cpu_s=prior_cpu + time.process_time() - c_train)
        _say(f"[{name}] epoch {epoch:2d}  loss {history[-1]['loss']:.4f}  dev {100 * dev['acc']:.2f}%  "
             f"(OOV {100 * dev['oov_acc']:.1f}%)  {secs:.0f} s" + ("  *" if improved else ""),
             progress, log)
    train_time = prior_time + time.perf_counter() - t_train
    train_cpu = prior_cpu + time.process_time() - c_train

    model.load_state_dict(best_state)
    test = evaluate(model, test_b)
    best_epoch = max(history, key=lambda h: h["dev_acc"])["epoch"]
    result = {
        "variant": name,
        "dev_acc": best, "test_acc": test["acc"], "test_oov_acc": test["oov_acc"],
        "test_tokens": test["tokens"], "test_oov_tokens": test["oov_tokens"],
        "best_epoch": best_epoch, "epochs_run": len(history), "history": history,
        "train_time_s": train_time, "train_cpu_s": train_cpu, "time_s": time.perf_counter() - t_start,
        "cpu_s": time.process_time() - c_start,
        "epoch_time_s": float(np.median([h["seconds"] for h in history])),
        "params": count_parameters(model),
        "baselines": baselines(train_s, test_s),
        "sizes": {"train_sentences": len(train_s), "train_tokens": int(sum(train_lengths)),
                  "word_vocab": len(word_vocab), "char_vocab": len(char_vocab)},
        "config": cfg,
    }
    if return_model:
        result["model"], result["featurizer"] = model, feat
    return result


# ============================================================================ the comparison

def _variant_config(base, name, match_params, overrides):
    cfg = dict(base)
    cfg.update(VARIANTS[name])
    cfg["variant"] = name
    if match_params and not cfg["bidirectional"]:
        in_dim = cfg["word_dim"] + (2 * cfg["char_hidden"] if cfg["use_chars"] else 0)
        cfg["hidden"] = matched_hidden(in_dim, cfg["hidden"], cfg["num_layers"])
    cfg.update((overrides or {}).get(name, {}))
    return cfg


def compare(settings=None, quick=False, variants=tuple(VARIANTS), match_params=True,
            overrides=None, progress=True, log=None):
    """Run the four variants {uni, bi} × {word, word + char} and tabulate them.

    ``settings``: overrides applied to every variant on top of :data:`QUICK` (``quick=True``)
    or :data:`FULL`.  ``match_params``: give each unidirectional LSTM the hidden size whose
    parameter count is closest to its bidirectional twin's (:func:`matched_hidden`), so the
    comparison is at an equal-ish parameter budget (the table shows the counts).
    ``overrides``: per-variant settings, e.g. ``{"uni-word": {"epochs": 10}}``.
    Returns ``{"results": [run(...) per variant], "table": format_table(...)}``.
    """
    base = dict(QUICK if quick else FULL)
    base.update(settings or {})
    splits = load_splits(base)
    results = []
    for name in variants:
        cfg = _variant_config(base, name, match_params, overrides)
        results.append(run(cfg, progress=progress, log=log, splits=splits))
    return {"results": results, "table": format_table(results)}


def format_table(results, references=True):
    """A Markdown table of :func:`run` results (test accuracy, OOV accuracy, best dev
    accuracy, parameters, epochs, time), with the test baselines and the published figures
    (:data:`REFERENCES`) beside it."""
    lines = ["| model | hidden | LSTM params | all params | epochs (best) | train time | dev acc | test acc | test OOV acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c, p = r["config"], r["params"]
        layers = f"{c['num_layers']}×" if c["num_layers"] > 1 else ""
        lines.append(f"| {r['variant']} | {layers}{c['hidden']} | {p['lstm']:,} | {p['total']:,} | "
                     f"{r['epochs_run']} ({r['best_epoch']}) | {r['train_time_s'] / 60:.1f} min | "
                     f"{100 * r['dev_acc']:.2f} | **{100 * r['test_acc']:.2f}** | "
                     f"{100 * r['test_oov_acc']:.2f} |")
    if results:
        b = results[0]["baselines"]
        lines.append(f"| baseline: every token {b['majority_tag_name']} | | | | | | | "
                     f"{100 * b['majority_tag']:.2f} | |")
        lines.append(f"| baseline: most frequent tag of the word | | | | | | | "
                     f"{100 * b['word_majority']:.2f} | |")
    if references:
        lines += ["", "| published | model | test acc |", "|---|---|---|"]
        lines += [f"| {src} | {model} | {acc:.2f} |" for src, model, acc in REFERENCES]
    return "\n".join(lines)


# ============================================================================ command line

def _parse_value(text):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None, "null": None}.get(text.lower(), text)


def _jsonable(result):
    return {k: v for k, v in result.items() if k not in ("model", "featurizer")}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minibidir.experiments.pos_tagging",
                                description="UPOS tagging on UD English EWT: unidirectional vs "
                                            "bidirectional LSTM, word vs word + character features.")
    p.add_argument("--quick", action="store_true", help="the small QUICK setting")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated, from " + ", ".join(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override settings, e.g. --set epochs=10 hidden=150")
    p.add_argument("--no-match-params", action="store_true",
                   help="give the unidirectional LSTMs the same hidden size as the bidirectional ones")
    p.add_argument("--json", help="write the results (a list) to this file")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of saved results")
    args = p.parse_args(argv)
    if args.table:
        results = []
        for path in args.table:
            with open(path, encoding="utf-8") as f:
                loaded = json.load(f)
            results += loaded if isinstance(loaded, list) else [loaded]
        print(format_table(results))
        return 0
    settings = {}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = _parse_value(value)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        p.error(f"unknown variants {bad}; choose from {list(VARIANTS)}")
    B.tune_malloc()
    out = compare(settings, quick=args.quick, variants=names, match_params=not args.no_match_params,
                  progress=not args.no_progress, log=None if not args.no_progress else print)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([_jsonable(r) for r in out["results"]], f, indent=1)
    print(out["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
