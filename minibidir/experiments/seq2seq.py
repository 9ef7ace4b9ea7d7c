"""Experiment 3 · 单向不行，那就双向: sequence to sequence on real data, character-level
lemmatisation of UD English EWT.

The task.  Given a word form and its universal POS tag, write its lemma, one character at a
time: ``studies/VERB -> study``, ``went/VERB -> go``, ``children/NOUN -> child``,
``'s/AUX -> be``.  The source is the tag as one extra symbol followed by the characters of the
form, the target the characters of the lemma::

    x = (<VERB>, s, t, u, d, i, e, s)              y = (s, t, u, d, y)

Why right context matters.  A decoder writes y_1 first, but what y_1 .. y_k should be depends
on the *end* of the form: after ``stud`` it must know whether the word ends in ``-ies``
(``study``), ``-ied`` (``study``), ``-ying`` (``study``) or ``-ents`` (``student``); ``went``
becomes ``go`` from its very first letter.  An encoder state →h_t of a left-to-right LSTM has
read x_1 .. x_t only, so when the decoder's attention lands on the stem it finds no trace of the
ending there; a bidirectional state h_t = [→h_t; ←h_t] carries both sides (000 §4.1.1).

The models (:data:`MODELS`), all trained on the same data with the same schedule:

=================  =====================================================================
name               what it is
=================  =====================================================================
``uni-lstm``       embeddings → **left-to-right** LSTM encoder → attention LSTM decoder
``bi-lstm``        embeddings → :class:`~minibidir.models.BiLSTMEncoder` → the *same*
                   decoder (the two differ only in the encoder; at equal parameter budget:
                   the unidirectional encoder's hidden size is solved for)
``bi-aligned``     :class:`~minibidir.models.BiLSTMEncoder` →
                   :class:`~minibidir.models.BiLSTMDecoder` (000 §4.2.1 in the library's
                   reading): a *transducer* whose output t is aligned with input t, all
                   positions predicted at once (no left-to-right generation); the source gets
                   ``aligned_slots`` extra positions so that a lemma may be a little longer than
                   its form (``wo -> will``)
``transformer``    :class:`~minibidir.models.Seq2SeqBiTransformer`: an unmasked Transformer
                   encoder, a left-to-right and a right-to-left decoder trained jointly;
                   evaluated three ways: greedy, left-to-right beam search (``beam_size``), and
                   the beam's n-best list reranked by log p_L2R + w · log p_R2L
                   (:mod:`minibidir.models.beam`)
=================  =====================================================================

The attention decoder of ``uni-lstm`` / ``bi-lstm`` is Luong et al.'s (2015) "general"
attention without input feeding::

    s_0 = tanh(W_b h_enc)   (h_enc: the encoder's final state, [→h_n; ←h_1] when bidirectional)
    s_t = LSTM(s_{t-1}, e(y_{t-1}))
    c_t = softmax((W_q s_t) mᵀ / √E) m                 m = the encoder outputs (E features)
    p(y_t | y_<t, x) = softmax(W_o tanh(W_c [s_t; c_t]))

Without input feeding the decoder LSTM runs over the whole (teacher-forced) target as one fused
op, and attention over all target positions is one op, so training costs a handful of
autograd nodes per batch.

Data choices.

* Splits: the treebank's official train / dev / test; dev chooses the epoch, test is read once.
* **Types, not tokens, for training.**  Each distinct (form, UPOS, lemma) triple of the training
  split is one training example, seen once per epoch.  Token frequency is Zipfian: ``.``,
  ``the`` and ``,`` alone are 12% of the tokens, and 78% of the tokens are their own lemma, so a
  token-weighted epoch would spend most of its time on a few hundred frequent words a lookup
  table handles anyway, at nine times the cost (204,577 tokens vs 22,185 types).  Types put the
  weight on what the experiment is about: spelling rules that carry over to unseen words.
* **Both views for evaluation.**  Test types are decoded once each; the table reports exact match
  per type, per type *not seen in training* (its (form, UPOS) pair is new: the real test of a
  character model), and per token (each type weighted by its test count: the usual UD lemma
  accuracy, with gold tokenisation and gold UPOS), plus character accuracy (the fraction of
  positions i < max(|ŷ|, |y|) where ŷ_i = y_i) and the mean edit distance.
* Forms or lemmas longer than ``max_chars`` characters (URLs, e-mail addresses; their lemma is
  usually the form) are left out of all splits; :func:`load_data` counts them.
* Case is kept (``The -> the`` but ``Paris -> Paris``: the tag tells which).  About two hundred
  (form, UPOS) pairs of the training split have two lemmas (annotation noise and typo
  corrections, ``in -> in / into``); both triples are kept.
* Two baselines need no model: **copy** (lemma = form) and **lookup** (the most frequent training
  lemma of the (form, UPOS) pair, else copy).  Lookup is hard to beat on frequent tokens; on
  unseen types it *is* copy, and that is where the models must win.

Training and evaluation.  Adam with a linear warm-up and a cosine decay, gradient clipping,
batches of forms of similar length; after every epoch greedy exact match on a fixed seeded subset of
``dev_eval_limit`` dev types chooses the epoch whose parameters are kept (decoding all 5,917 dev
types greedily after every epoch would cost the Transformer more than its training).  The test
types are decoded greedily (per-position argmax for ``bi-aligned``); the Transformer's beam search
runs one word at a time (:meth:`~minibidir.models.Seq2SeqBiTransformer.translate`), so it decodes a
seeded subset of ``beam_limit`` test types, and the table adds greedy decoding on the same subset
for comparison.  Everything is seeded: :func:`minibidir.manual_seed` before each model is built, a
NumPy generator of the same seed for the batch order.

Settings: :data:`QUICK` (tests, seconds), :data:`DEMO` (the notebook, a few minutes), :data:`FULL`
(``python -m minibidir seq2seq``: about ten minutes of CPU time on one core; one BLAS thread).

References.  Kanerva, Ginter & Salakoski (2020, "Universal Lemmatizer", Natural Language
Engineering) lemmatise UD treebanks with the same kind of model: a character-level
encoder-decoder that generates the lemma one character at a time from the form's characters and
its morphosyntactic tags; they report that it reduced the errors of UDPipe Future by 19%
(relative, on average over 76 treebanks).  :data:`REFERENCES` lists a published accuracy to read
the table against; it is not directly comparable (lemmas in sentence context, predicted tags,
BERT features, over many treebanks), and we know of no published figure for exactly this setting
(gold UPOS, no sentence context, types).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend as B
from .. import functional as F
from .. import nn, optim
from ..autograd import Tensor, no_grad
from ..backend import manual_seed
from ..data import UPOS_TAGS, load_ud
from ..models.beam import rerank
from ..models.bidirectional import BiLSTMDecoder, BiLSTMEncoder, Seq2SeqBiTransformer
from .pos_tagging import _parse_value    # the same --set KEY=VALUE parsing as the POS experiment

try:                                   # progress bars are a nicety, never a requirement
    from tqdm.auto import tqdm as _tqdm
except ImportError:                    # pragma: no cover
    _tqdm = None

__all__ = ["SPECIALS", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "IGNORE_INDEX", "MODELS", "CATEGORIES",
           "QUICK", "DEMO", "FULL", "REFERENCES", "Item", "LemmaData", "Vocab", "load_data", "category",
           "encode_sources", "encode_targets", "aligned_arrays", "LSTMSeq2Seq", "AlignedBiLSTM",
           "build_model", "count_parameters", "lstm_seq2seq_params", "aligned_params", "plan_sizes",
           "predict", "transformer_greedy", "transformer_beam", "levenshtein", "score", "baselines",
           "run", "format_table", "plot_results", "save_json", "main"]

SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
IGNORE_INDEX = -100

#: name -> short description (the table's second column)
MODELS = {
    "uni-lstm": "left-to-right LSTM encoder + attention decoder",
    "bi-lstm": "BiLSTM encoder + attention decoder",
    "bi-aligned": "BiLSTM encoder + BiLSTMDecoder (aligned)",
    "transformer": "Seq2SeqBiTransformer (greedy / beam / beam + R2L)",
}

#: How a lemma differs from its form (see :func:`category`), in the order of the plots.
CATEGORIES = ("copy", "case only", "cut ending", "change ending", "change start")

#: The full experiment (``python -m minibidir seq2seq``): the whole treebank.
FULL = dict(
    dataset="ud_english_ewt", seed=0, data_seed=0, max_chars=24,
    train_limit=None, dev_limit=None, test_limit=None,
    models=tuple(MODELS),
    embed_dim=48, enc_hidden=96, dec_hidden=128, dropout=0.2, aligned_slots=3,
    d_model=64, nhead=4, num_layers=2, dim_feedforward=192, tf_dropout=0.1,
    batch_size=64, epochs=8, lr_lstm=3e-3, lr_transformer=2e-3, warmup=0.05, clip=1.0,
    eval_batch_size=512, dev_eval_limit=1500, beam_size=4, rerank_weight=1.0, beam_limit=2000,
    time_budget_s=None, blas_threads=1,
)

#: The notebook's setting (a few minutes in all): 8,000 of the training types, 2,000 test types,
#: smaller models, 6 epochs.
DEMO = dict(FULL, train_limit=8000, dev_limit=None, test_limit=2000, embed_dim=32, enc_hidden=64,
            dec_hidden=96, d_model=48, nhead=4, dim_feedforward=128, epochs=6, dev_eval_limit=800,
            beam_limit=400)

#: A setting small enough for the test suite (seconds): 1,500 training types, 300 test types, one
#: Transformer layer, three epochs at a high learning rate without dropout or warm-up.  The models
#: are far from trained (the copy baseline beats them), but every part runs.
QUICK = dict(DEMO, train_limit=1500, dev_limit=None, test_limit=300, num_layers=1, dim_feedforward=96,
             dropout=0.0, tf_dropout=0.0, warmup=0.0, lr_lstm=1e-2, lr_transformer=5e-3, batch_size=32,
             epochs=3, dev_eval_limit=150, beam_limit=40)

#: Published figures to read the table against (accuracy, %).  Not directly comparable: see the
#: second field.
REFERENCES = [
    ("Straka, Straková & Hajič (2019), SIGMORPHON 2019 Task 2",
     "lemmatisation in context (UDPipe 2.0 + BERT), the winning overall result over the task's UD treebanks",
     95.78),
]


# ============================================================================ data

@dataclass(frozen=True)
class Item:
    """One (form, UPOS, lemma) type and how many tokens of it the split holds."""
    form: str
    upos: str
    lemma: str
    count: int = 1


@dataclass
class LemmaData:
    """The prepared splits (lists of :class:`Item`), the character vocabulary, the training
    (form, UPOS) pairs and their most frequent lemma (for the lookup baseline and the "unseen"
    column), and counts of what was left out (``excluded``, per split: types and tokens longer
    than ``max_chars``)."""
    train: list
    dev: list
    test: list
    vocab: "Vocab"
    lookup: dict
    excluded: dict
    sizes: dict


class Vocab:
    """One symbol table for sources and targets: the four specials ``[PAD] [BOS] [EOS] [UNK]``,
    the 17 UPOS tags as ``<TAG>`` symbols, then every character of the training forms and
    lemmas (most frequent first, ties by code point)."""

    def __init__(self, items):
        counts = Counter()
        for it in items:
            counts.update(it.form)
            counts.update(it.lemma)
        chars = sorted(counts, key=lambda c: (-counts[c], c))
        self.itos = list(SPECIALS) + [f"<{t}>" for t in UPOS_TAGS] + chars
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.first_char = len(SPECIALS) + len(UPOS_TAGS)

    def __len__(self):
        return len(self.itos)

    def tag(self, upos):
        try:
            return self.stoi[f"<{upos}>"]
        except KeyError:
            raise ValueError(f"seq2seq: unknown UPOS tag {upos!r}") from None

    def chars(self, text):
        get = self.stoi.get
        return [get(c, UNK_ID) for c in text]

    def decode(self, ids):
        """Ids → a string, up to the first ``[EOS]``; ``[PAD]``/``[BOS]`` and tag symbols are
        skipped, ``[UNK]`` becomes U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i == UNK_ID:
                out.append("\ufffd")
            elif i >= self.first_char:
                out.append(self.itos[i])
        return "".join(out)


def category(form, lemma):
    """How ``lemma`` differs from ``form`` (one of :data:`CATEGORIES`): ``copy`` (equal),
    ``case only`` (``The -> the``), ``cut ending`` (the lemma is a prefix of the form, ignoring
    case: ``children -> child``), ``change ending`` (same first letter: ``studies -> study``,
    ``made -> make``), ``change start`` (``went -> go``, ``'s -> be``, ``me -> I``)."""
    if lemma == form:
        return "copy"
    f, g = form.lower(), lemma.lower()
    if f == g:
        return "case only"
    if f.startswith(g):
        return "cut ending"
    if f[:1] == g[:1]:
        return "change ending"
    return "change start"


def _split_types(sentences, max_chars):
    counts = Counter(triple for s in sentences for triple in zip(s.words, s.upos, s.lemmas))
    kept, ex_types, ex_tokens = [], 0, 0
    for (form, upos, lemma), n in sorted(counts.items()):
        if len(form) > max_chars or len(lemma) > max_chars or not form or not lemma:
            ex_types += 1
            ex_tokens += n
            continue
        kept.append(Item(form, upos, lemma, n))
    return kept, {"types": ex_types, "tokens": ex_tokens,
                  "all_types": len(counts), "all_tokens": int(sum(counts.values()))}


def _subset(items, limit, seed):
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:limit])
    return [items[i] for i in keep]


_DATA_CACHE = {}


def load_data(dataset="ud_english_ewt", max_chars=24, train_limit=None, dev_limit=None, test_limit=None,
              data_seed=0, splits=None):
    """The prepared :class:`LemmaData` (cached per arguments).  ``splits``: ``(train, dev, test)``
    sentence lists (objects with ``words``, ``upos``, ``lemmas``) to use instead of loading the
    treebank.  The limits take seeded random subsets of the *types* of each split."""
    key = (dataset, max_chars, train_limit, dev_limit, test_limit, data_seed)
    from_treebank = splits is None
    if from_treebank and key in _DATA_CACHE:
        return _DATA_CACHE[key]
    if from_treebank:
        splits = [load_ud(dataset, s) for s in ("train", "dev", "test")]
    parts, excluded = [], {}
    for k, (name, sents, limit) in enumerate(zip(("train", "dev", "test"), splits,
                                                  (train_limit, dev_limit, test_limit))):
        items, ex = _split_types(sents, max_chars)
        parts.append(_subset(items, limit, data_seed + k))
        excluded[name] = ex
    train, dev, test = parts
    lookup_counts = {}
    for it in train:
        lookup_counts.setdefault((it.form, it.upos), Counter())[it.lemma] += it.count
    lookup = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in lookup_counts.items()}
    vocab = Vocab(train)
    sizes = {"train_types": len(train), "train_tokens": int(sum(i.count for i in train)),
             "dev_types": len(dev), "dev_tokens": int(sum(i.count for i in dev)),
             "test_types": len(test), "test_tokens": int(sum(i.count for i in test)),
             "test_unseen_types": sum((i.form, i.upos) not in lookup for i in test),
             "vocab": len(vocab)}
    out = LemmaData(train, dev, test, vocab, lookup, excluded, sizes)
    if from_treebank:
        if len(_DATA_CACHE) > 8:
            _DATA_CACHE.clear()
        _DATA_CACHE[key] = out
    return out


# ============================================================================ arrays

def encode_sources(items, vocab, slots=0):
    """``(ids (N, S), lengths (N,))``: each source is ``<TAG> c_1 .. c_n`` (+ ``slots`` extra
    ``[EOS]`` positions for the aligned model), padded with ``[PAD]``."""
    rows = [[vocab.tag(it.upos)] + vocab.chars(it.form) + [EOS_ID] * slots for it in items]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.full((len(rows), int(lengths.max()) if rows else 1), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, lengths


def encode_targets(items, vocab):
    """(N, T) lemma character ids padded with ``[PAD]`` (no ``[BOS]``/``[EOS]``: the layout
    :class:`~minibidir.models.Seq2SeqBiTransformer` expects)."""
    rows = [vocab.chars(it.lemma) for it in items]
    T = max((len(r) for r in rows), default=1)
    ids = np.full((len(rows), T), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids


def _teacher_forcing(tgt):
    """[BOS, y] → [y, EOS] for targets (N, T) padded with PAD: decoder inputs (N, T+1) and gold
    outputs (N, T+1) with ``IGNORE_INDEX`` past the EOS."""
    N, T = tgt.shape
    lens = (tgt != PAD_ID).sum(axis=1)
    inp = np.full((N, T + 1), PAD_ID, dtype=np.int64)
    gold = np.full((N, T + 1), IGNORE_INDEX, dtype=np.int64)
    inp[:, 0] = BOS_ID
    inp[:, 1:] = tgt
    gold[:, :T] = np.where(tgt != PAD_ID, tgt, IGNORE_INDEX)
    gold[np.arange(N), lens] = EOS_ID
    return inp, gold


def aligned_arrays(items, vocab, slots):
    """Inputs and aligned targets of the ``bi-aligned`` model: sources ``<TAG> c_1 .. c_n`` +
    ``slots`` × ``[EOS]`` (length L = n + 1 + slots); target position 0 (the tag) is ignored,
    position j ≥ 1 holds the lemma's j-th character, ``[EOS]`` after its end.  A lemma longer
    than n + slots is cut (it cannot be written; ``fits`` is False for it)."""
    src, lengths = encode_sources(items, vocab, slots)
    gold = np.full(src.shape, IGNORE_INDEX, dtype=np.int64)
    fits = np.ones(len(items), dtype=bool)
    for i, it in enumerate(items):
        L = int(lengths[i])
        chars = vocab.chars(it.lemma)
        fits[i] = len(chars) <= L - 1
        row = (chars + [EOS_ID] * L)[:L - 1]
        gold[i, 1:L] = row
    return src, lengths, gold, fits


def _to(device, a):
    return a if device == "cpu" else B.to_device(a, device)


def _key_mask(lengths, S, xp):
    """(B, 1, S) booleans, True at real source positions (SDPA: True = may attend)."""
    return xp.asarray(np.arange(S)[None, None, :] < np.asarray(lengths)[:, None, None])


# ============================================================================ models

class LSTMSeq2Seq(nn.Module):
    """Embeddings → LSTM encoder (left-to-right ``nn.LSTM``, or ``BiLSTMEncoder``) → attention LSTM
    decoder (Luong's general attention, no input feeding; see the module docstring).

    ``forward(src, lengths, tgt_in)`` → logits (B, T, V) for decoder inputs ``tgt_in`` =
    [BOS, y_1 .. y_{T-1}]; ``encode(src, lengths)`` → (memory (B, S, E), summary (B, E));
    ``greedy(src, lengths, max_len)`` → (B, ≤ max_len) generated ids (host).
    """

    def __init__(self, vocab_size, embed_dim, enc_hidden, dec_hidden, bidirectional, dropout=0.2):
        super().__init__()
        self.bidirectional = bool(bidirectional)
        self.src_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        if self.bidirectional:
            self.encoder = BiLSTMEncoder(embed_dim, enc_hidden, batch_first=True)
            E = 2 * enc_hidden
        else:
            self.encoder = nn.LSTM(embed_dim, enc_hidden, batch_first=True)
            E = enc_hidden
        self.memory_size, self.dec_hidden = E, dec_hidden
        self.bridge = nn.Linear(E, dec_hidden)
        self.decoder = nn.LSTM(embed_dim, dec_hidden, batch_first=True)
        self.query = nn.Linear(dec_hidden, E, bias=False)
        self.combine = nn.Linear(dec_hidden + E, dec_hidden)
        self.out = nn.Linear(dec_hidden, vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, src, lengths):
        x = self.drop(self.src_embed(src))
        if self.bidirectional:
            memory, hidden = self.encoder(x, lengths=lengths)          # hidden: (2, B, H) = →h_n, ←h_1
            summary = F.concat([hidden[0], hidden[1]], axis=-1)
        else:
            memory, (h, _) = self.encoder(x, lengths=lengths)          # h: (1, B, H) = →h_n
            summary = h[0]
        return memory, summary

    def initial_state(self, summary):
        h0 = F.tanh(self.bridge(summary))
        Bn = h0.shape[0]
        h0 = h0.reshape(1, Bn, self.dec_hidden)
        c0 = Tensor(B.get_array_module(h0.data).zeros(h0.shape, dtype=h0.dtype))
        return h0, c0

    def attend(self, s, memory, key_mask):
        """Output logits from decoder states ``s`` (B, T, H_d)."""
        ctx = F.scaled_dot_product_attention(self.query(s), memory, memory, attn_mask=key_mask)
        o = F.tanh(self.combine(F.concat([s, ctx], axis=-1)))
        return self.out(self.drop(o))

    def forward(self, src, lengths, tgt_in):
        memory, summary = self.encode(src, lengths)
        xp = B.get_array_module(memory.data)
        s, _ = self.decoder(self.drop(self.tgt_embed(tgt_in)), self.initial_state(summary))
        return self.attend(s, memory, _key_mask(lengths, memory.shape[1], xp))

    def attention_weights(self, src, lengths, tgt_in):
        """The attention weights (B, T, S) of the teacher-forced decoder for inputs ``tgt_in``
        ([BOS, y_1 .. y_{T-1}]): row t is where the decoder looks while writing y_t (no graph;
        call ``eval()`` first for dropout-free weights)."""
        with no_grad():
            memory, summary = self.encode(src, lengths)
            xp = B.get_array_module(memory.data)
            s, _ = self.decoder(self.tgt_embed(tgt_in), self.initial_state(summary))
            _, w = F.scaled_dot_product_attention(self.query(s), memory, memory,
                                                  attn_mask=_key_mask(lengths, memory.shape[1], xp),
                                                  return_weights=True)
        return B.to_numpy(w.data)

    def greedy(self, src, lengths, max_len):
        """Greedy decoding of a batch: the most probable next character at each step (``[PAD]``
        and ``[BOS]`` never), until every row has emitted ``[EOS]`` or ``max_len`` steps."""
        with no_grad():
            memory, summary = self.encode(src, lengths)
            xp = B.get_array_module(memory.data)
            mask = _key_mask(lengths, memory.shape[1], xp)
            state = self.initial_state(summary)
            Bn = memory.shape[0]
            prev = np.full((Bn, 1), BOS_ID, dtype=np.int64)
            out, done = [], np.zeros(Bn, dtype=bool)
            for _ in range(max_len):
                s, state = self.decoder(self.tgt_embed(xp.asarray(prev)), state)
                logits = B.to_numpy(self.attend(s, memory, mask).data)[:, 0]
                logits[:, [PAD_ID, BOS_ID]] = -np.inf
                tok = logits.argmax(axis=-1)
                tok[done] = EOS_ID
                out.append(tok)
                done |= tok == EOS_ID
                if done.all():
                    break
                prev = tok[:, None]
        return np.stack(out, axis=1)


class AlignedBiLSTM(nn.Module):
    """Embeddings → :class:`~minibidir.models.BiLSTMEncoder` → :class:`~minibidir.models.BiLSTMDecoder`
    whose output at position t is the lemma's character aligned with source position t (see
    :func:`aligned_arrays`); the decoder starts from the encoder's final states.
    ``forward(src, lengths)`` → logits (B, L, V)."""

    def __init__(self, vocab_size, embed_dim, hidden, dropout=0.2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.encoder = BiLSTMEncoder(embed_dim, hidden, batch_first=True)
        self.decoder = BiLSTMDecoder(hidden, vocab_size, input_size=2 * hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, src, lengths):
        h, hidden = self.encoder(self.drop(self.embed(src)), lengths=lengths)
        y, _ = self.decoder(self.drop(h), hidden, lengths=lengths)
        return y


def count_parameters(module):
    """The number of trainable numbers in ``module``."""
    return int(sum(int(p.data.size) for p in module.parameters()))


def _lstm(inp, h, directions=1):
    return directions * (4 * h * (inp + h) + 8 * h)


def lstm_seq2seq_params(V, e, enc_hidden, dec_hidden, bidirectional):
    """Parameters of :class:`LSTMSeq2Seq` (two embeddings, encoder, bridge, decoder, query,
    combination and output layers)."""
    D = 2 if bidirectional else 1
    E = D * enc_hidden
    return (2 * V * e + _lstm(e, enc_hidden, D) + (E * dec_hidden + dec_hidden) + _lstm(e, dec_hidden)
            + dec_hidden * E + ((dec_hidden + E) * dec_hidden + dec_hidden) + (dec_hidden * V + V))


def aligned_params(V, e, hidden):
    """Parameters of :class:`AlignedBiLSTM`: embedding, BiLSTM encoder, the BiLSTMDecoder's two
    LSTMCells (input [h_t; c_t], 4H features), two query maps and the output layer."""
    E = 2 * hidden
    return V * e + _lstm(e, hidden, 2) + 2 * (4 * hidden * (2 * E + hidden) + 8 * hidden) \
        + 2 * hidden * E + (2 * hidden * V + V)


def _closest(fn, budget, lo=1, hi=2048):
    best = None
    for h in range(lo, hi + 1):
        n = fn(h)
        if best is None or abs(n - budget) < abs(best[1] - budget):
            best = (h, n)
        if n > budget:
            break
    return best[0]


def plan_sizes(cfg, V):
    """``({model: size}, budget)``: the budget is the parameter count of ``bi-lstm``; the
    ``uni-lstm`` encoder's hidden size and the ``bi-aligned`` hidden size are the ones whose
    counts come closest to it.  The Transformer's size is set by ``d_model`` etc. (reported)."""
    e, H, Hd = cfg["embed_dim"], cfg["enc_hidden"], cfg["dec_hidden"]
    budget = lstm_seq2seq_params(V, e, H, Hd, True)
    return {"uni-lstm": _closest(lambda h: lstm_seq2seq_params(V, e, h, Hd, False), budget),
            "bi-lstm": H,
            "bi-aligned": _closest(lambda h: aligned_params(V, e, h), budget),
            "transformer": cfg["d_model"]}, budget


def build_model(name, cfg, V, plan=None):
    """The model ``name`` of :data:`MODELS` under settings ``cfg`` for a vocabulary of size V."""
    plan = plan or plan_sizes(cfg, V)[0]
    if name == "uni-lstm" or name == "bi-lstm":
        return LSTMSeq2Seq(V, cfg["embed_dim"], plan[name], cfg["dec_hidden"], name == "bi-lstm", cfg["dropout"])
    if name == "bi-aligned":
        return AlignedBiLSTM(V, cfg["embed_dim"], plan[name], cfg["dropout"])
    if name == "transformer":
        return Seq2SeqBiTransformer(V, V, d_model=cfg["d_model"], nhead=cfg["nhead"],
                                    num_encoder_layers=cfg["num_layers"], num_decoder_layers=cfg["num_layers"],
                                    dim_feedforward=cfg["dim_feedforward"], dropout=cfg["tf_dropout"],
                                    max_len=cfg["max_chars"] + cfg["aligned_slots"] + 8,
                                    pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
    raise ValueError(f"seq2seq: unknown model {name!r}; choose from {list(MODELS)}")


def _l2r_parameters(model):
    """The Transformer's parameters that greedy and beam decoding use (all but the R2L decoder)."""
    return int(sum(int(p.data.size) for n, p in model.named_parameters()
                   if not (n.startswith("r2l_") or n.startswith("decoder.backward_decoder"))))


# ============================================================================ losses and decoding

def _loss(name, model, items, vocab, cfg, device):
    if name == "bi-aligned":
        src, lengths, gold, _ = aligned_arrays(items, vocab, cfg["aligned_slots"])
        logits = model(_to(device, src), lengths)
        V = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, V), _to(device, gold.reshape(-1)), ignore_index=IGNORE_INDEX)
    src, lengths = encode_sources(items, vocab)
    tgt = encode_targets(items, vocab)
    if name == "transformer":
        l2r, r2l = model(src, tgt)
        return l2r + r2l
    inp, gold = _teacher_forcing(tgt)
    logits = model(_to(device, src), lengths, _to(device, inp))
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), _to(device, gold.reshape(-1)), ignore_index=IGNORE_INDEX)


def transformer_greedy(model, items, vocab, max_len, device="cpu"):
    """Greedy left-to-right decoding of a *batch* with a :class:`Seq2SeqBiTransformer`: the same
    computation as ``model.greedy`` (one source at a time, in the library), run for many sources
    at once: the decoder reruns over each whole prefix, ``[PAD]`` and ``[BOS]`` are never chosen.
    Returns (N, ≤ max_len) ids."""
    src, _ = encode_sources(items, vocab)
    with no_grad():
        memory, src_pad = model.encode(src)
        N = src.shape[0]
        prefix = np.full((N, 1), BOS_ID, dtype=np.int64)
        out, done = [], np.zeros(N, dtype=bool)
        for t in range(max_len):
            pad = np.zeros(prefix.shape, dtype=bool)
            logits = model.decode_logits(memory, src_pad, prefix, pad, "l2r")
            lp = B.to_numpy(logits.data)[:, -1].astype(np.float64)
            lp[:, [PAD_ID, BOS_ID]] = -np.inf
            tok = lp.argmax(axis=-1)
            tok[done] = EOS_ID
            out.append(tok)
            done |= tok == EOS_ID
            if done.all():
                break
            prefix = np.concatenate([prefix, tok[:, None]], axis=1)
    return np.stack(out, axis=1)


def predict(name, model, items, vocab, cfg, device="cpu"):
    """Greedy (or, for ``bi-aligned``, per-position argmax) lemmas of ``items``: a list of strings,
    in the order of ``items`` (batches of similar length inside)."""
    was = model.training
    model.eval()
    preds = [None] * len(items)
    order = np.argsort([len(it.form) for it in items], kind="stable")
    bs = cfg["eval_batch_size"]
    max_len = cfg["max_chars"] + cfg["aligned_slots"] + 1
    try:
        for k in range(0, len(order), bs):
            idx = order[k:k + bs]
            chunk = [items[i] for i in idx]
            if name == "bi-aligned":
                src, lengths, _, _ = aligned_arrays(chunk, vocab, cfg["aligned_slots"])
                with no_grad():
                    ids = B.to_numpy(model(_to(device, src), lengths).data).argmax(axis=-1)[:, 1:]
                ids[np.arange(ids.shape[1])[None, :] >= (lengths - 1)[:, None]] = EOS_ID    # past each end
            elif name == "transformer":
                ids = transformer_greedy(model, chunk, vocab, max_len, device)
            else:
                src, lengths = encode_sources(chunk, vocab)
                ids = model.greedy(_to(device, src), lengths, max_len)
            for i, row in zip(idx, ids):
                preds[i] = vocab.decode(row)
    finally:
        model.train(was)
    return preds


def transformer_beam(model, items, vocab, beam_size=4, weight=1.0, max_len=None):
    """Left-to-right beam search (:meth:`Seq2SeqBiTransformer.translate`, one word at a time) and
    the n-best list reranked by log p_L2R + ``weight`` · log p_R2L.  Returns one dict per item:
    ``beam`` and ``rerank`` (the two choices, strings) and ``nbest`` (the complete candidates as
    ``[string, log p_L2R, log p_R2L]``, in the beam's order), from which any other weight can be
    re-evaluated without running the model again."""
    was = model.training
    model.eval()
    max_len = max_len or 40
    rows = []
    try:
        for it in items:
            src = [vocab.tag(it.upos)] + vocab.chars(it.form)
            nbest = model.translate(src, beam_size=beam_size, max_len=max_len, rerank_weight=None)
            complete = [h for h in nbest if h.finished] or nbest
            both = rerank(complete, lambda hyps: model.score(src, hyps, "r2l"), weight=1.0)
            by_tokens = {h.tokens: h.components["r2l"] for h in both}
            listed = [[vocab.decode(h.tokens), float(h.score), float(by_tokens[h.tokens])] for h in complete]
            best = max(listed, key=lambda c: c[1] + weight * c[2]) if listed else ["", 0.0, 0.0]
            rows.append({"beam": vocab.decode(nbest[0].tokens), "rerank": best[0], "nbest": listed})
    finally:
        model.train(was)
    return rows


# ============================================================================ scoring

def levenshtein(a, b):
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _char_acc(p, g):
    n = max(len(p), len(g))
    if n == 0:
        return 1.0
    return sum(a == b for a, b in zip(p, g)) / n


def score(preds, items, lookup):
    """Metrics of predicted lemmas ``preds`` (strings, one per item of ``items``):
    ``type_em`` (exact match per type), ``token_em`` (per token: each type weighted by its
    count), ``unseen_em`` (types whose (form, UPOS) is not in ``lookup``, the training pairs),
    ``char_acc``, ``edit_distance`` (means over types), ``by_category`` ({category: [correct,
    total]} over types), and the counts."""
    if len(preds) != len(items):
        raise ValueError(f"seq2seq.score: {len(preds)} predictions for {len(items)} items")
    ok = np.array([p == it.lemma for p, it in zip(preds, items)], dtype=bool)
    w = np.array([it.count for it in items], dtype=np.float64)
    unseen = np.array([(it.form, it.upos) not in lookup for it in items], dtype=bool)
    cats = {c: [0, 0] for c in CATEGORIES}
    for good, it in zip(ok, items):
        c = cats[category(it.form, it.lemma)]
        c[0] += int(good)
        c[1] += 1
    n = max(len(items), 1)
    return {"type_em": float(ok.mean()) if len(items) else 0.0,
            "token_em": float((ok * w).sum() / max(w.sum(), 1)),
            "unseen_em": float(ok[unseen].mean()) if unseen.any() else float("nan"),
            "char_acc": sum(_char_acc(p, it.lemma) for p, it in zip(preds, items)) / n,
            "edit_distance": sum(levenshtein(p, it.lemma) for p, it in zip(preds, items)) / n,
            "by_category": cats, "types": len(items), "tokens": int(w.sum()), "unseen_types": int(unseen.sum())}


def with_lookup(preds, items, lookup):
    """The usual practical combination: the training lemma for a (form, UPOS) pair seen in
    training, the model's prediction otherwise."""
    return [lookup.get((it.form, it.upos), p) for p, it in zip(preds, items)]


def baselines(data):
    """Test scores of **copy** (lemma = form) and **lookup** (the training lemma of the
    (form, UPOS) pair, else copy)."""
    test = data.test
    copy = [it.form for it in test]
    look = [data.lookup.get((it.form, it.upos), it.form) for it in test]
    return {"copy": score(copy, test, data.lookup), "lookup": score(look, test, data.lookup)}


# ============================================================================ training

def _progress(iterable, enabled, **kw):
    if enabled and _tqdm is not None:
        return _tqdm(iterable, **kw)
    return iterable


def _state_copy(model):
    return {k: B.to_numpy(v).copy() for k, v in model.state_dict().items()}


def _batches(items, batch_size, rng):
    """Index chunks of similar source length, in random order (ties broken at random)."""
    lengths = np.array([len(it.form) for it in items])
    order = np.lexsort((rng.random(len(items)), lengths))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def _train_one(name, cfg, data, plan, device, progress, say):
    manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    V = len(data.vocab)
    model = build_model(name, cfg, V, plan)
    if device != "cpu":
        model.to(device)
    params = list(model.parameters())
    lr = cfg["lr_transformer"] if name == "transformer" else cfg["lr_lstm"]
    opt = optim.Adam(params, lr=lr)
    train = data.train
    if name == "bi-aligned":          # lemmas longer than form + slots cannot be written: not trained on
        fits = aligned_arrays(train, data.vocab, cfg["aligned_slots"])[3]
        train = [it for it, f in zip(train, fits) if f]
    steps_per_epoch = math.ceil(len(train) / cfg["batch_size"])
    total = steps_per_epoch * cfg["epochs"]
    sched = optim.WarmupCosine(opt, int(cfg["warmup"] * total), total, min_factor=0.05)
    dev_items = _dev_subset(data, cfg)
    history, best, best_state = [], -1.0, None
    t_train, c_train = time.perf_counter(), time.process_time()
    for epoch in range(1, cfg["epochs"] + 1):
        if cfg["time_budget_s"] and history and \
                time.perf_counter() - t_train + history[-1]["seconds"] > cfg["time_budget_s"]:
            say(f"[{name}] stopping before epoch {epoch}: the time budget ({cfg['time_budget_s']:.0f} s) "
                f"would be exceeded")
            break
        t0 = time.perf_counter()
        model.train()
        run_loss, n = 0.0, 0
        bar = _progress(_batches(train, cfg["batch_size"], rng), progress, leave=False, unit="batch",
                        desc=f"{name} epoch {epoch}/{cfg['epochs']}", total=steps_per_epoch)
        for idx in bar:
            loss = _loss(name, model, [train[i] for i in idx], data.vocab, cfg, device)
            opt.zero_grad()
            loss.backward()
            if cfg["clip"]:
                optim.clip_grad_norm_(params, cfg["clip"])
            opt.step()
            sched.step()
            run_loss += loss.item() * len(idx)
            n += len(idx)
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{run_loss / n:.3f}", refresh=False)
        dev = score(predict(name, model, dev_items, data.vocab, cfg, device), dev_items, data.lookup)
        secs = time.perf_counter() - t0
        history.append({"epoch": epoch, "loss": run_loss / max(n, 1), "dev_em": dev["type_em"], "seconds": secs})
        improved = dev["type_em"] > best
        if improved:
            best, best_state = dev["type_em"], _state_copy(model)
        say(f"[{name}] epoch {epoch:2d}  loss {history[-1]['loss']:.4f}  dev exact match "
            f"{100 * dev['type_em']:.2f}%  {secs:.0f} s" + ("  *" if improved else ""))
    train_time, train_cpu = time.perf_counter() - t_train, time.process_time() - c_train
    model.load_state_dict(best_state)
    model.eval()
    return model, {"history": history, "dev_em": best, "train_time_s": train_time, "train_cpu_s": train_cpu,
                   "best_epoch": max(history, key=lambda h: h["dev_em"])["epoch"], "epochs_run": len(history),
                   "trained_on": len(train)}


def _dev_subset(data, cfg):
    """The dev types every epoch is scored on (a seeded subset of ``dev_eval_limit`` types: greedy
    decoding of the whole dev split after every epoch would cost the Transformer more than its
    training)."""
    return _subset(data.dev, cfg["dev_eval_limit"], cfg["data_seed"] + 11)


def _settings(quick, overrides):
    cfg = dict(QUICK if quick else FULL)
    for k, v in (overrides or {}).items():
        if k not in FULL:
            raise ValueError(f"seq2seq: unknown setting {k!r}; known: {sorted(FULL)}")
        cfg[k] = v
    if isinstance(cfg["models"], str):
        cfg["models"] = tuple(m.strip() for m in cfg["models"].split(",") if m.strip())
    cfg["models"] = tuple(cfg["models"])
    bad = [m for m in cfg["models"] if m not in MODELS]
    if bad or not cfg["models"]:
        raise ValueError(f"seq2seq: unknown models {bad}; choose from {list(MODELS)}")
    for k in ("epochs", "batch_size", "embed_dim", "enc_hidden", "dec_hidden", "d_model", "nhead", "num_layers",
              "dim_feedforward", "beam_size", "max_chars", "eval_batch_size"):
        if not isinstance(cfg[k], (int, np.integer)) or isinstance(cfg[k], bool) or cfg[k] < 1:
            raise ValueError(f"seq2seq: {k} must be a positive integer, got {cfg[k]!r}")
    if cfg["d_model"] % cfg["nhead"]:
        raise ValueError(f"seq2seq: d_model ({cfg['d_model']}) must be divisible by nhead ({cfg['nhead']})")
    return cfg


def run(settings=None, *, quick=False, device="cpu", progress=True, log=None, splits=None, return_models=False):
    """Train and evaluate the models of the setting; return the results.

    ``settings``: overrides of :data:`QUICK` (``quick=True``) or :data:`FULL` (e.g.
    ``dict(DEMO)``, ``{"models": ("uni-lstm", "bi-lstm"), "epochs": 3}``); ``device``: ``"cpu"``
    or ``"cuda"``; ``progress``: tqdm bars; ``log``: a function receiving progress lines;
    ``splits``: ``(train, dev, test)`` sentence lists instead of the treebank.

    Returns a JSON-serialisable dict: ``config``, ``data`` (sizes, what was left out),
    ``budget`` (the parameter count of ``bi-lstm``), ``baselines`` (copy, lookup), ``rows`` (one
    per table row: model, decoding, params, training history and time, dev and test scores,
    test predictions), ``transformer_nbest`` (per beam-decoded test item: the complete
    candidates with both log-probabilities) and ``table`` (Markdown); with ``return_models``
    also ``models`` ({name: model}) and ``lemma_data`` (not serialisable).
    """
    cfg = _settings(quick, settings)
    device = str(device)
    if device not in ("cpu", "cuda"):
        raise ValueError(f"seq2seq: device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        B.to_device(np.zeros(1, np.float32), "cuda")   # fails now, clearly, when there is no device
    from .pos_tagging import blas_threads
    before = blas_threads(cfg["blas_threads"]) if cfg["blas_threads"] else None
    try:
        return _run(cfg, device, progress, log, splits, return_models)
    finally:
        if before:
            blas_threads(before)


def _run(cfg, device, progress, log, splits, return_models):
    t_start, c_start = time.perf_counter(), time.process_time()
    say = log or ((_tqdm.write if _tqdm is not None else print) if progress else (lambda m: None))
    data = load_data(cfg["dataset"], cfg["max_chars"], cfg["train_limit"], cfg["dev_limit"], cfg["test_limit"],
                     cfg["data_seed"], splits)
    V = len(data.vocab)
    plan, budget = plan_sizes(cfg, V)
    s = data.sizes
    say(f"{cfg['dataset']}: {s['train_types']:,} training types ({s['train_tokens']:,} tokens), "
        f"{s['dev_types']:,} dev types, {s['test_types']:,} test types ({s['test_tokens']:,} tokens, "
        f"{s['test_unseen_types']:,} types unseen in training); {V} symbols")
    rows, models, nbest_rows = [], {}, None
    base = baselines(data)
    for name in cfg["models"]:
        model, info = _train_one(name, cfg, data, plan, device, progress, say)
        models[name] = model
        params = count_parameters(model)
        common = {"model": name, "size": plan[name], "params": params, **info}
        t0 = time.perf_counter()
        preds = predict(name, model, data.test, data.vocab, cfg, device)
        decode_s = time.perf_counter() - t0
        decoding = {"uni-lstm": "greedy", "bi-lstm": "greedy", "bi-aligned": "argmax per position",
                    "transformer": "greedy"}[name]
        row = dict(common, decoding=decoding, test=score(preds, data.test, data.lookup), predictions=preds,
                   test_with_lookup=score(with_lookup(preds, data.test, data.lookup), data.test, data.lookup),
                   decode_time_s=decode_s, test_items=len(data.test))
        if name == "transformer":
            row["params_l2r"] = _l2r_parameters(model)
        rows.append(row)
        say(f"[{name}] test exact match {100 * row['test']['type_em']:.2f}% of types "
            f"({100 * row['test']['unseen_em']:.2f}% unseen), {100 * row['test']['token_em']:.2f}% of tokens")
        if name == "transformer":
            limit = cfg["beam_limit"]
            subset = data.test if limit is None or limit >= len(data.test) else \
                _subset(data.test, limit, cfg["data_seed"] + 7)
            t0 = time.perf_counter()
            nbest_rows = transformer_beam(model, subset, data.vocab, cfg["beam_size"], cfg["rerank_weight"],
                                          max_len=cfg["max_chars"] + cfg["aligned_slots"] + 1)
            beam_s = time.perf_counter() - t0
            index = {id(it): k for k, it in enumerate(data.test)}
            greedy_sub = [preds[index[id(it)]] for it in subset]
            kinds = [("rerank", f"beam {cfg['beam_size']} + R2L rerank (w={cfg['rerank_weight']:g})"),
                     ("beam", f"beam {cfg['beam_size']}")]
            if len(subset) < len(data.test):      # greedy again, on the items the beam decoded
                kinds.append(("greedy", "greedy"))
            for what, label in kinds[::-1]:
                p = greedy_sub if what == "greedy" else [r[what] for r in nbest_rows]
                rows.append(dict(common, decoding=label, test=score(p, subset, data.lookup), predictions=p,
                                 test_with_lookup=score(with_lookup(p, subset, data.lookup), subset, data.lookup),
                                 decode_time_s=0.0 if what == "greedy" else beam_s, test_items=len(subset),
                                 params_l2r=row["params_l2r"]))
            gold = [it.lemma for it in subset]
            in_nbest = [any(c[0] == g for c in r["nbest"]) for r, g in zip(nbest_rows, gold)]
            fixed = sum(r["rerank"] == g and r["beam"] != g for r, g in zip(nbest_rows, gold))
            broken = sum(r["beam"] == g and r["rerank"] != g for r, g in zip(nbest_rows, gold))
            rows[-1]["rerank_stats"] = {"in_nbest": float(np.mean(in_nbest)) if in_nbest else 0.0,
                                        "fixed": int(fixed), "broken": int(broken), "items": len(subset)}
            nbest_rows = [dict(r, form=it.form, upos=it.upos, lemma=it.lemma) for r, it in zip(nbest_rows, subset)]
            say(f"[transformer] beam search on {len(subset):,} test types: exact match "
                f"{100 * rows[-2]['test']['type_em']:.2f}%, reranked {100 * rows[-1]['test']['type_em']:.2f}% "
                f"(gold in the {cfg['beam_size']}-best list: {100 * rows[-1]['rerank_stats']['in_nbest']:.1f}%; "
                f"{beam_s:.0f} s)")
    result = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
              "device": device,
              "data": {"sizes": data.sizes, "excluded": data.excluded, "max_chars": cfg["max_chars"],
                       "dev_types_scored": len(_dev_subset(data, cfg))},
              "budget": budget, "baselines": base, "rows": rows, "transformer_nbest": nbest_rows,
              "time_s": time.perf_counter() - t_start, "cpu_s": time.process_time() - c_start}
    result["table"] = format_table(result)
    if return_models:
        result["models"], result["lemma_data"] = models, data
    return result


# ============================================================================ reporting

def format_table(result, references=True):
    """A Markdown table of :func:`run`'s result: model, decoding, parameters, epochs, training time,
    dev exact match, test exact match (types, unseen types, tokens), character accuracy, edit
    distance; the baselines; and the published figure of :data:`REFERENCES`."""
    lines = ["| model | decoding | params | epochs (best) | train time | dev EM | test EM types | "
             "unseen types | tokens | tokens, lookup + model | char acc | edit dist |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    s = result["data"]["sizes"]
    for r in result["rows"]:
        t = r["test"]
        params = f"{r['params']:,}" + (f" ({r['params_l2r']:,} L2R)" if "params_l2r" in r else "")
        full = r["test_items"] == result["data"]["sizes"]["test_types"]
        sub = "" if full else f", {r['test_items']:,} types"
        tokens = f"{100 * t['token_em']:.2f} | {100 * r['test_with_lookup']['token_em']:.2f}" if full else "- | -"
        lines.append(f"| {r['model']} | {r['decoding']}{sub} | {params} | {r['epochs_run']} ({r['best_epoch']}) | "
                     f"{r['train_time_s'] / 60:.1f} min | {100 * r['dev_em']:.2f} | **{100 * t['type_em']:.2f}** | "
                     f"{100 * t['unseen_em']:.2f} | {tokens} | {100 * t['char_acc']:.2f} | "
                     f"{t['edit_distance']:.3f} |")
    for name, b in result["baselines"].items():
        what = "lemma = form" if name == "copy" else "training lemma of (form, UPOS), else copy"
        lines.append(f"| baseline: {name} | {what} | 0 | | | | {100 * b['type_em']:.2f} | {100 * b['unseen_em']:.2f} | "
                     f"{100 * b['token_em']:.2f} | | {100 * b['char_acc']:.2f} | {b['edit_distance']:.3f} |")
    ex = result["data"]["excluded"]["test"]
    lines.append("")
    if any(r["test_items"] != s["test_types"] for r in result["rows"]):
        lines.append("Rows marked with a number of types were decoded on a seeded subset of the test types (beam "
                     "search runs one word at a time); compare them with the greedy row on the same subset. Token "
                     "columns are left out for them (a few frequent types would dominate).")
    lines.append(f"{s['train_types']:,} training types, {s['test_types']:,} test types ({s['test_tokens']:,} tokens, "
                 f"{s['test_unseen_types']:,} types unseen in training); {ex['types']} test types "
                 f"({ex['tokens']} tokens) longer than {result['data']['max_chars']} characters left out. "
                 f"Dev EM: greedy exact match on {result['data']['dev_types_scored']:,} dev types (the epoch "
                 f"kept is the best of them). Parameter budget (bi-lstm): {result['budget']:,}.")
    stats = next((r["rerank_stats"] for r in result["rows"] if "rerank_stats" in r), None)
    if stats:
        lines.append(f"Reranking: gold lemma in the n-best list for {100 * stats['in_nbest']:.1f}% of "
                     f"{stats['items']:,} types; reranking fixed {stats['fixed']} and broke {stats['broken']}.")
    if references:
        lines += ["", "| published | setting | accuracy |", "|---|---|---|"]
        lines += [f"| {src} | {what} | {acc:.2f} |" for src, what, acc in REFERENCES]
    return "\n".join(lines)


def plot_results(result, path=None, ax=None):
    """A bar chart of test exact match (all types and unseen types) per table row, the
    baselines as lines.  Saved to ``path`` (PNG) when given; returns the figure."""
    import matplotlib
    if path is not None and ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.5 * len(rows) + 3, 4.2))
    else:
        fig = ax.figure
    x = np.arange(len(rows))
    allv = [100 * r["test"]["type_em"] for r in rows]
    unseen = [100 * r["test"]["unseen_em"] for r in rows]
    ax.bar(x - 0.2, allv, 0.4, label="all test types", color="#4C72B0")
    ax.bar(x + 0.2, unseen, 0.4, label="types unseen in training", color="#DD8452")
    for xi, a, u in zip(x, allv, unseen):
        ax.text(xi - 0.2, a + 0.5, f"{a:.1f}", ha="center", fontsize=8)
        ax.text(xi + 0.2, u + 0.5, f"{u:.1f}", ha="center", fontsize=8)
    for name, style in (("copy", ":"), ("lookup", "--")):
        b = result["baselines"][name]
        ax.axhline(100 * b["type_em"], color="gray", ls=style, lw=1, label=f"{name} baseline (all types)")
    n_test = result["data"]["sizes"]["test_types"]

    def label(r):
        text = f"{r['model']}\n{r['decoding'].replace(' + R2L', chr(10) + '+ R2L')}"
        return text + ("" if r["test_items"] == n_test else f"\n({r['test_items']:,} test types)")

    ax.set_xticks(x)
    ax.set_xticklabels([label(r) for r in rows], fontsize=8)
    ax.set_ylabel("test exact match of the lemma (%)")
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Lemmatisation (UD English EWT): uni- vs bidirectional encoders and decoders", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    if fig is not None:
        fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def _jsonable(result):
    return {k: v for k, v in result.items() if k not in ("models", "lemma_data")}


def save_json(result, path):
    """Write a :func:`run` result to ``path`` as JSON (without the models)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(_jsonable(result), fh, indent=1)
    return path


# ============================================================================ command line

def parse_settings(items):
    """``["epochs=3", "models=uni-lstm,bi-lstm"]`` → a settings dict (ValueError on a bad item)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        if key not in FULL:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(FULL))}")
        out[key] = _parse_value(value)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minibidir.experiments.seq2seq",
                                description="Character-level lemmatisation on UD English EWT: a left-to-right vs a "
                                            "bidirectional LSTM encoder with the same attention decoder, the "
                                            "library's aligned BiLSTMDecoder, and a Seq2SeqBiTransformer decoded "
                                            "greedily, by beam search and by beam search + right-to-left reranking.")
    p.add_argument("--quick", action="store_true", help="the small QUICK setting (seconds)")
    p.add_argument("--demo", action="store_true", help="the notebook's DEMO setting (a few minutes)")
    p.add_argument("--models", default=None, help="comma-separated, from " + ", ".join(MODELS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override settings, e.g. --set epochs=4 enc_hidden=64")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--plot", help="write the bar chart to this PNG file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick and args.demo:
        p.error("choose one of --quick and --demo")
    try:
        settings = dict(DEMO) if args.demo else {}
        settings.update(parse_settings(args.set))
        if args.models:
            settings["models"] = args.models
        cfg = _settings(args.quick, settings)
    except ValueError as e:
        p.error(str(e))
    B.tune_malloc()
    res = run(cfg, quick=args.quick, progress=not args.no_progress, log=print if args.no_progress else None)
    if args.json:
        save_json(res, args.json)
    if args.plot:
        plot_results(res, args.plot)
    print(res["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
