"""Experiment · 掩码语言模型预训练 (MLM pretraining): a small BERT from scratch on a CPU, its
left-to-right twin, and BERT's Table 5 on sentence polarity.

Document 002 (§2.1, §3.1, §4.1, §5.2) pretrains a bidirectional encoder by masked language
modelling: hide 15% of the tokens and predict each hidden token from everything else::

    P(x_i | X∖x_i) = softmax(W_c h_i + b_c),   L_MLM = −(1/|M|) Σ_{i∈M} log P(x_i | X∖x_i)

This module does that from scratch, under a wall-clock budget, and asks the question of BERT's
ablation (Devlin et al. 2019, Table 5): does the *bidirectional* objective matter, compared
with a left-to-right language model of the same size trained for the same time?

Experiment 1 · pretraining (:func:`run_pretraining`)
----------------------------------------------------
* **Corpus**: the English text of the data mirror, about 1.2M WordPiece tokens: WikiText-2
  *valid* and *test* (the mirror has no train split; headings dropped, ``@-@`` → ``-``,
  ``<unk>`` → ``[UNK]``), tiny-shakespeare (cut into documents of about 20,000 characters at
  speech boundaries) and the 65 State of the Union addresses.  **Held-out split by
  document**: within each source, 10% of the documents (:func:`minibidir.data.split_indices`,
  seed 0), so no held-out sentence has a neighbour in the training text.
* **Vocabulary**: an 8,000-token uncased WordPiece vocabulary trained on the *training*
  documents only (:meth:`~minibidir.text.tokenizer.WordPieceTokenizer.train`, two seconds).
  Lower-cased because the downstream polarity data is lower-cased.
* **Sequences**: each document is tokenised and cut into pieces of 126 tokens, packed as
  ``[CLS] piece [SEP]`` (128 tokens; BERT's length for 90% of its steps).  ``[UNK]`` (WikiText's
  ``<unk>``) counts as special: never masked, never a target.
* **Model** (:data:`FULL`): 4 layers, d_model 128, 4 heads of 32, feed-forward 512, GELU,
  post-LN, learned positions, MLM head tied to the word embeddings: 1.86M parameters, of which
  1.0M are the word embeddings.  Why so small: on two CPU cores a 4-layer d = 256 model trains
  at about 3,000 tokens/s and needs over two minutes for one epoch of polarity; d = 128 runs
  about 1.6x faster in pretraining (4,400-4,600 tokens/s measured, one BLAS thread, shared
  machine), so 12 minutes give about 3M tokens (three passes over the corpus), and it
  fine-tunes one epoch of polarity in about a minute.  Compute-optimal scaling (Hoffmann et al.
  2022) points the same way: 12 minutes at ~25 GFLOP/s, about 2·10^13 FLOPs, call for about
  0.4M non-embedding parameters (this model has 0.8M).  **Initialisation** N(0, 0.05²) instead of BERT's 0.02: the same
  multiple of 1/√d (0.02·√(768/128) ≈ 0.05), and in short trial runs (150 steps) it left the
  unigram plateau sooner (held-out loss 6.72 vs 6.77).  **No dropout** in pretraining: each
  sequence is seen only a few times in the budget (as in Geiping & Goldstein's "Cramming"); in
  the same trial dropout 0.1 gave 6.72, none 6.67.  Fine-tuning puts dropout 0.1 back.
* **The left-to-right twin**: the same :class:`~minibidir.models.BertForMaskedLM` with
  ``BertConfig(causal=True)``: identical parameters and initial weights (same seed), every
  self-attention causally masked, trained as a next-token language model
  (:func:`~minibidir.models.bert.next_token_labels`; targets that are special tokens or
  ``[UNK]`` are skipped).  It predicts ~127 tokens per sequence instead of ~19, so its vocabulary
  head costs more and it takes fewer steps in the same time: the comparison is at equal
  wall-clock, as the task asks, and the table reports steps and tokens of both.
* **Optimisation**: AdamW (β = (0.9, 0.98), weight decay 0.01, none on biases and LayerNorm
  weights), peak learning rate 1e-3, gradient norm clipped at 1, batches of 32 sequences.
  The schedule is a linear warm-up over the first 6% of the run and a linear decay to 0, where
  "the run" is measured by the *budget*: the progress of step k is max(k / max_steps,
  training time / time budget), so a time-limited run still ends its decay when the time is up
  (as in Geiping & Goldstein's "Cramming").  Only the optimisation steps count against the budget,
  not the evaluations.  (A peak of 3e-3 did worse in the 150-step trial: 6.84.)
* **Held-out evaluation** (:class:`HeldOut`): the masks of the held-out sequences are drawn
  once, with a fixed seed (:data:`EVAL_MASK_SEED`), so every evaluation of every model sees the
  same masked positions.  The MLM model is scored on the masked positions only (BERT's 15%,
  80/10/10); the twin on every next-token target, and also on the subset whose target is one of
  the MLM model's masked tokens (the *same* tokens, predicted from the left context only).
* **A 5-minute trial** of each (``--budget 5``; one BLAS thread on a machine shared with other
  jobs): the MLM model took 320 steps (1.29M tokens, 4,440 tokens/s) to a held-out loss of 6.45
  and a masked-token accuracy of 10.0%; the twin 130 steps (0.53M tokens, 1,800 tokens/s) to a
  next-token accuracy of 8.9%, 9.3% on the masked tokens.  Both are still early: MLM first sits
  on a plateau near the most-frequent-token baseline (5.3%) while the twin, which reads the
  current token, learns bigram statistics at once.
* **Checkpoints**: ``OUT/mlm`` and ``OUT/ltr`` each hold ``checkpoint.safetensors``
  (:mod:`minibidir.checkpoint`: the state dict, the config and the run's figures), a
  ``config.json`` and the vocabulary (``vocab.txt``, ``tokenizer_config.json``);
  :func:`load_pretrained` reads them back.

Experiment 2(a) · Table 5 (:func:`run_table5`)
----------------------------------------------
Fine-tune on sentence polarity (the fixed 80/10/10 split of
:func:`minibidir.experiments.finetune.polarity_splits`) three models of the same shape: the
MLM-pretrained one, the left-to-right twin (still causal when fine-tuned, as BERT's "LTR & No
NSP"), and one with no pretraining.  **Pooling**: the mean of the token vectors for all three.
Under the causal mask, [CLS] at position 0 sees only itself, so a [CLS] classifier would give
the twin nothing to read; the mean is defined the same way for both models and the
pooler (tanh(W_p h_[CLS])) was never trained here (no next-sentence prediction).  ``pooling=
"last"`` (the last real token, [SEP], which under the causal mask has read the whole
sentence: GPT's choice) is available for the twin.  Plain fine-tuning (λ = 0), AdamW lr 5e-4
(better than 2e-4 in a trial: 67.5% vs 63.7% test accuracy after one epoch), one epoch of
batches of 32 (267 steps, about a minute), 10% warm-up, dropout 0.1, evaluation on the
validation set every 90 steps, the best-on-validation model tested.

Experiment 2(b) · λ sweep (:func:`run_sweep`)
---------------------------------------------
Document 002's bidirectional fine-tuning, L = λ·L_MLM + (1−λ)·L_task
(:func:`minibidir.train.bidirectional_fine_tune`), of the small MLM-pretrained model: λ ∈ {0,
0.1, 0.3, 0.5}, schedules "joint" and "alternating", seeds 0, 1, 2; mean ± std of the test
accuracy.  λ = 0 is the same plain fine-tuning under both schedules and runs once per seed.

Published references (:data:`REFERENCES`), BERT-base Table 5 (dev sets): "No NSP" (MLM only)
92.6 vs "LTR & No NSP" 92.1 on SST-2, 86.5 vs 77.5 on MRPC.  Sentence polarity is not SST-2
(it is its source, Pang & Lee's 10,662 snippets, without the phrase-level labels), and a 2M
parameter model pretrained for minutes on 1M words is not BERT: the figures say what direction
to expect, not what value.

Settings: :data:`QUICK` (seconds, for the tests and the notebook: a few documents per source,
a d = 64 model, a fixed number of steps) and :data:`FULL`.

Command line (``MINIBIDIR_DATA_MIRROR`` may name a local copy of the data)::

    python -m minibidir.experiments.pretrain pretrain --out runs/pretrain          # 2 x 12 min
    python -m minibidir.experiments.pretrain pretrain --budget 5 --out runs/p5     # 2 x 5 min
    python -m minibidir.experiments.pretrain table5 --out runs/pretrain --seeds 0 1 2
    python -m minibidir.experiments.pretrain sweep --out runs/pretrain --json-dir runs/sweep
    python -m minibidir.experiments.pretrain all --quick --out runs/quick   # everything, seconds
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import backend as B
from .. import checkpoint, data
from .. import functional as F
from ..autograd import no_grad
from ..models.bert import BertConfig, BertForMaskedLM, next_token_labels
from ..optim import clip_grad_norm_
from ..text.tokenizer import WordPieceTokenizer
from ..train import (
    BertForBidirectionalFineTuning,
    EncodedData,
    MLMMasker,
    Trainer,
    evaluate_classifier,
    make_batches,
    make_optimizer,
    mlm_loss,
)
from .finetune import polarity_splits

try:                                   # progress bars are a nicety, never a requirement
    from tqdm.auto import tqdm as _tqdm
except ImportError:                    # pragma: no cover
    _tqdm = None

__all__ = ["SOURCES", "OBJECTIVES", "MODEL_KINDS", "EVAL_MASK_SEED", "QUICK", "FULL", "REFERENCES", "CORPUS_KEYS",
           "MODEL_KEYS", "PRETRAIN_KEYS", "FT_KEYS",
           "wikitext_documents", "shakespeare_documents", "state_union_documents", "load_corpus",
           "split_corpus", "train_tokenizer", "pack_documents", "model_config", "ltr_labels",
           "objective_loss", "HeldOut", "make_heldout", "evaluate_heldout", "lr_factor", "pretrain",
           "save_pretrained", "load_pretrained", "prepare_corpus", "run_pretraining",
           "FineTuneModel", "build_classifier", "finetune_polarity", "run_table5", "run_sweep",
           "summarize", "format_pretraining", "format_table5", "format_sweep", "main"]

SOURCES = ("wikitext2", "tiny_shakespeare", "state_union")
#: "mlm": masked language model (bidirectional); "ltr": the causal twin, next-token prediction.
OBJECTIVES = ("mlm", "ltr")
#: The three models of the Table-5 comparison.
MODEL_KINDS = ("mlm", "ltr", "scratch")
#: The seed of the held-out set's fixed masks.
EVAL_MASK_SEED = 1234
IGNORE = -100

#: The full experiment.  ``time_budget_s``: training time per pretrained model.
FULL = dict(
    # corpus and vocabulary
    max_docs=None, max_doc_chars=None, heldout_fraction=0.1, split_seed=0, vocab_size=8000, seq_len=128,
    # model
    hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512, dropout=0.0, init_std=0.05,
    # pretraining
    time_budget_s=12 * 60.0, max_steps=None, batch_size=32, lr=1e-3, warmup=0.06, weight_decay=0.01,
    betas=(0.9, 0.98), max_grad_norm=1.0, seed=0, eval_every=None, eval_every_s=60.0, eval_limit=128,
    # fine-tuning on polarity (Table 5 and the λ sweep)
    ft_epochs=1, ft_batch_size=32, ft_lr=5e-4, ft_max_length=64, ft_dropout=0.1, ft_warmup=0.1,
    ft_pooling="mean", ft_eval_every=90, ft_train_limit=None, ft_eval_limit=None, ft_val_limit=None,
)

#: Seconds: a few documents of each source, a two-layer d = 64 model, a fixed number of steps
#: (deterministic), fine-tuning on 512 polarity sentences.
QUICK = dict(
    FULL,
    max_docs=4, max_doc_chars=6000, vocab_size=1000, seq_len=64,
    hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
    time_budget_s=None, max_steps=80, batch_size=16, lr=2e-3, eval_every=10, eval_every_s=None, eval_limit=32,
    ft_epochs=2, ft_batch_size=32, ft_lr=1e-3, ft_eval_every=None, ft_train_limit=512, ft_eval_limit=256,
    ft_val_limit=64,
)

#: BERT-base, Table 5 of Devlin et al. (2019): dev-set accuracy (%) without next-sentence
#: prediction, bidirectional (MLM) vs left-to-right.
REFERENCES = {
    "SST-2": {"No NSP (MLM)": 92.6, "LTR & No NSP": 92.1},
    "MRPC": {"No NSP (MLM)": 86.5, "LTR & No NSP": 77.5},
}

#: Which settings go to :func:`prepare_corpus`, :func:`model_config`, :func:`pretrain` and the
#: fine-tuning (``ft_*``).
CORPUS_KEYS = ("max_docs", "max_doc_chars", "heldout_fraction", "split_seed", "vocab_size", "seq_len")
PRETRAIN_KEYS = ("time_budget_s", "max_steps", "batch_size", "lr", "warmup", "weight_decay", "betas",
                  "max_grad_norm", "seed", "eval_every", "eval_every_s", "eval_limit")
MODEL_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "seq_len", "dropout", "init_std")
FT_KEYS = ("ft_epochs", "ft_batch_size", "ft_lr", "ft_max_length", "ft_dropout", "ft_warmup", "ft_pooling",
            "ft_eval_every", "ft_train_limit", "ft_eval_limit", "ft_val_limit")


def _quiet(*args, **kwargs):
    pass


# ============================================================================ the corpus

def _clean_wikitext(line):
    """WikiText's tokenised line as plain text: ``@-@`` → ``-`` (also ``@,@``, ``@.@``) and
    ``<unk>`` → ``[UNK]`` (kept as one token by the tokenizer)."""
    return (line.strip().replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
            .replace("<unk>", "[UNK]"))


def wikitext_documents(splits=("valid", "test")):
    """WikiText-2's articles as documents (a line `` = Title = `` starts one; section headings
    and blank lines are dropped, paragraphs joined by newlines)."""
    docs = []
    for split in splits:
        current = None
        for line in data.read_wikitext(split):
            s = line.strip()
            if not s:
                continue
            if s.startswith("= ") and not s.startswith("= ="):      # an article's title
                current = []
                docs.append(current)
                continue
            if s.startswith("="):                                   # a section heading
                continue
            if current is None:
                current = []
                docs.append(current)
            current.append(_clean_wikitext(s))
    return ["\n".join(d) for d in docs if d]


def shakespeare_documents(chars_per_doc=20000):
    """Tiny-shakespeare cut at speech boundaries (blank lines) into documents of about
    ``chars_per_doc`` characters (56 documents)."""
    speeches = data.read_tiny_shakespeare().split("\n\n")
    docs, current, n = [], [], 0
    for sp in speeches:
        current.append(sp)
        n += len(sp) + 2
        if n >= chars_per_doc:
            docs.append("\n\n".join(current))
            current, n = [], 0
    if current:
        docs.append("\n\n".join(current))
    return docs


def state_union_documents():
    """The 65 State of the Union addresses, one document each."""
    return [text for _, text in data.read_state_union()]


def load_corpus(max_docs=None, max_doc_chars=None):
    """``{source: [document, ...]}`` for the three sources (:data:`SOURCES`).  ``max_docs``
    keeps the first documents of each source, ``max_doc_chars`` the start of each (quick runs)."""
    corpus = {"wikitext2": wikitext_documents(), "tiny_shakespeare": shakespeare_documents(),
              "state_union": state_union_documents()}
    for k, docs in corpus.items():
        if max_docs is not None:
            docs = docs[:max_docs]
        if max_doc_chars is not None:
            docs = [d[:max_doc_chars] for d in docs]
        corpus[k] = docs
    return corpus


def split_corpus(corpus, heldout_fraction=0.1, seed=0):
    """``(train_docs, heldout_docs)``, each ``{source: [document, ...]}``: within each source a
    seeded random ``heldout_fraction`` of the documents is held out (at least one)."""
    train, held = {}, {}
    for k, docs in corpus.items():
        n = len(docs)
        n_held = max(1, round(heldout_fraction * n)) if n > 1 else 0
        frac = n_held / n if n else 0.0
        tr, he = data.split_indices(n, seed=seed, fractions=(1.0 - frac, frac))
        train[k], held[k] = [docs[i] for i in tr], [docs[i] for i in he]
    return train, held


def train_tokenizer(docs, vocab_size=8000):
    """An uncased WordPiece tokenizer with a vocabulary of ``vocab_size`` learned from ``docs``
    (a list of texts, or ``{source: [text, ...]}``)."""
    texts = [t for ds in docs.values() for t in ds] if isinstance(docs, dict) else list(docs)
    return WordPieceTokenizer.train(texts, vocab_size=vocab_size, min_frequency=2, do_lower_case=True)


def pack_documents(tokenizer, docs, seq_len=128, min_tokens=8):
    """Cut each document's tokens into pieces of ``seq_len − 2`` and wrap each as ``[CLS] piece
    [SEP]``; a last piece shorter than ``min_tokens`` is dropped.  ``docs``: a list of texts or
    ``{source: [text, ...]}``.  Returns an :class:`~minibidir.train.EncodedData` whose
    ``special_tokens_mask`` is 1 at [CLS], [SEP] and [UNK] (never masked, never a target)."""
    if seq_len < 3:
        raise ValueError(f"pack_documents: seq_len must be at least 3, got {seq_len}")
    texts = [t for ds in docs.values() for t in ds] if isinstance(docs, dict) else list(docs)
    body = seq_len - 2
    cls, sep, unk = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id
    ids, special = [], []
    for text in texts:
        toks = np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)
        for s in range(0, len(toks), body):
            piece = toks[s:s + body]
            if len(piece) < min_tokens:
                continue
            ids.append(np.concatenate([[cls], piece, [sep]]))
            special.append(np.concatenate([[1], (piece == unk).astype(np.int64), [1]]))
    return EncodedData(ids, None, special, tokenizer.pad_token_id)


def model_config(vocab_size, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=None, seq_len=128,
                 dropout=0.1, init_std=0.02, causal=False):
    """The :class:`~minibidir.models.BertConfig` of the experiment (GELU, post-LN, learned
    positions up to ``seq_len``; weights drawn from N(0, ``init_std``²))."""
    return BertConfig(vocab_size=int(vocab_size), hidden_size=hidden_size, num_hidden_layers=num_layers,
                      num_attention_heads=num_heads, intermediate_size=intermediate_size or 4 * hidden_size,
                      max_position_embeddings=seq_len, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout, initializer_range=init_std, causal=causal)


# ============================================================================ the two objectives

def ltr_labels(input_ids, attention_mask, special_tokens_mask):
    """Next-token labels (:func:`~minibidir.models.bert.next_token_labels`: position t is
    labelled with token t+1) with every target that is special, [UNK] or padding set to -100."""
    ids = np.asarray(input_ids)
    labels = np.asarray(next_token_labels(ids, attention_mask))
    nxt_special = np.ones(ids.shape, dtype=bool)
    nxt_special[:, :-1] = np.asarray(special_tokens_mask)[:, 1:] != 0
    labels[nxt_special] = IGNORE
    return labels


def objective_loss(model, batch, objective, masker=None):
    """The training loss of one batch: "mlm", the masked-LM loss on a masked copy (``masker``
    draws the masks; the head runs on the masked rows only), or "ltr", the next-token loss of
    the causal twin.  None when the batch has no target."""
    if objective == "mlm":
        return mlm_loss(model, batch, masker)
    if objective != "ltr":
        raise ValueError(f"objective_loss: objective must be one of {OBJECTIVES}, got {objective!r}")
    labels = ltr_labels(batch["input_ids"], batch["attention_mask"], batch["special_tokens_mask"])
    chosen = labels != IGNORE
    if not chosen.any():
        return None
    loss, _ = model(batch["input_ids"], batch["attention_mask"], labels=labels, masked_positions=chosen)
    return loss


# ============================================================================ held-out evaluation

@dataclass
class HeldOut:
    """The held-out sequences with masks drawn once: ``input_ids`` (n, T) clean,
    ``attention_mask``, ``special_tokens_mask`` (1 at special tokens, [UNK] and padding),
    ``masked_ids`` and ``mlm_labels`` (BERT's masking with :data:`EVAL_MASK_SEED`; -100 where
    not masked), ``ltr_labels`` (next-token targets, -100 where none) and ``at_masked`` (True at
    the positions t whose next-token target t+1 is one of the masked tokens)."""
    input_ids: np.ndarray
    attention_mask: np.ndarray
    special_tokens_mask: np.ndarray
    masked_ids: np.ndarray
    mlm_labels: np.ndarray
    ltr_labels: np.ndarray
    at_masked: np.ndarray

    def __len__(self):
        return len(self.input_ids)

    def subset(self, n):
        return HeldOut(*(getattr(self, f.name)[:n] for f in dataclasses.fields(self)))


def make_heldout(encoded, tokenizer, seed=EVAL_MASK_SEED, probability=0.15):
    """A :class:`HeldOut` from an :class:`~minibidir.train.EncodedData`: every sequence in one
    padded batch, masked once with ``MLMMasker(seed)``: the masks depend on the seed only,
    not on how an evaluation is batched."""
    b = encoded.batch(np.arange(len(encoded)))
    masker = MLMMasker.from_tokenizer(tokenizer, probability=probability, seed=seed)
    masked, labels = masker(b)
    ltr = ltr_labels(b["input_ids"], b["attention_mask"], b["special_tokens_mask"])
    at_masked = np.zeros(labels.shape, dtype=bool)
    at_masked[:, :-1] = labels[:, 1:] != IGNORE
    return HeldOut(b["input_ids"], b["attention_mask"], b["special_tokens_mask"], masked, labels, ltr, at_masked)


def evaluate_heldout(model, heldout, objective, batch_size=64, limit=None):
    """Held-out loss and accuracy, counted over the target positions only.

    "mlm": the model reads ``masked_ids`` and is scored at the masked positions (``mlm_labels``
    ≠ -100, the [MASK], random and unchanged cases alike); every other position is neither
    scored nor counted.  "ltr": the model reads the clean ``input_ids`` and is scored at every
    next-token target; ``acc_at_masked`` is its accuracy on the targets that the MLM model is
    asked for (the same tokens, from the left context only).  Returns ``{"loss", "acc",
    "count"}`` (+ ``"acc_at_masked"``, ``"count_at_masked"`` for "ltr"); ``limit``: the first
    so many sequences."""
    if objective not in OBJECTIVES:
        raise ValueError(f"evaluate_heldout: objective must be one of {OBJECTIVES}, got {objective!r}")
    h = heldout.subset(limit) if limit is not None else heldout
    was_training = model.training
    model.eval()
    total, correct, count, correct_m, count_m = 0.0, 0, 0, 0, 0
    try:
        with no_grad():
            for s in range(0, len(h), batch_size):
                sl = slice(s, s + batch_size)
                ids = h.masked_ids[sl] if objective == "mlm" else h.input_ids[sl]
                labels = h.mlm_labels[sl] if objective == "mlm" else h.ltr_labels[sl]
                chosen = labels != IGNORE
                k = int(chosen.sum())
                if not k:
                    continue
                loss, logits = model(ids, h.attention_mask[sl], labels=labels, masked_positions=chosen)
                hit = B.to_numpy(logits.data).argmax(axis=1) == labels[chosen]
                total += float(loss.item()) * k
                correct += int(hit.sum())
                count += k
                if objective == "ltr":
                    sub = h.at_masked[sl][chosen]
                    correct_m += int(hit[sub].sum())
                    count_m += int(sub.sum())
    finally:
        model.train(was_training)
    out = {"loss": total / max(count, 1), "acc": correct / max(count, 1), "count": count}
    if objective == "ltr":
        out.update(acc_at_masked=correct_m / max(count_m, 1), count_at_masked=count_m)
    return out


# ============================================================================ pretraining

def lr_factor(progress, warmup=0.06):
    """Linear warm-up over the first ``warmup`` of the run, then linear decay to 0 at the end
    (``progress`` in [0, 1])."""
    p = min(max(float(progress), 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return p / warmup
    return max(0.0, (1.0 - p) / (1.0 - warmup)) if warmup < 1 else 0.0


def _new_history():
    return {"step": [], "time": [], "tokens": [], "loss": [], "lr": [],
            "eval_step": [], "eval_time": [], "eval_tokens": [], "val_loss": [], "val_acc": []}


def pretrain(objective, train_data, heldout, tokenizer, config, *, time_budget_s=None, max_steps=None,
             batch_size=32, lr=1e-3, warmup=0.06, weight_decay=0.01, betas=(0.9, 0.98), max_grad_norm=1.0,
             seed=0, eval_every=None, eval_every_s=None, eval_limit=128, eval_batch_size=64, progress=True,
             log=print):
    """Train a :class:`~minibidir.models.BertForMaskedLM` from scratch with ``objective`` "mlm"
    (bidirectional, masked LM) or "ltr" (``config`` made causal, next-token LM).

    The run stops when its training time reaches ``time_budget_s`` or after ``max_steps``
    steps, whichever comes first (at least one must be given; with ``max_steps`` only, the run
    is deterministic).  Learning rate: ``lr`` · :func:`lr_factor` (progress), progress =
    max(step / max_steps, training time / time_budget_s).  ``seed`` seeds the initial weights
    (the same for both objectives), dropout, the data order and the masking.  Evaluation on
    the first ``eval_limit`` held-out sequences every ``eval_every`` steps or ``eval_every_s``
    seconds of training time, and on the whole held-out set at the end.

    Returns a dict: ``model``, ``objective``, ``steps``, ``tokens`` (real tokens read),
    ``epochs`` (passes over the training sequences), ``train_time`` (optimisation steps only),
    ``tokens_per_s``, ``heldout`` (:func:`evaluate_heldout` on all held-out sequences),
    ``history`` (per step: ``step``, ``time``, ``tokens``, ``loss``, ``lr``; per evaluation:
    ``eval_step``, ``eval_time``, ``eval_tokens``, ``val_loss``, ``val_acc``), ``params``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"pretrain: objective must be one of {OBJECTIVES}, got {objective!r}")
    if time_budget_s is None and max_steps is None:
        raise ValueError("pretrain: give time_budget_s, max_steps or both")
    log = log or _quiet
    config = dataclasses.replace(config, causal=objective == "ltr")
    B.manual_seed(seed)
    model = BertForMaskedLM(config)
    opt = make_optimizer(model, lr, weight_decay)
    for g in opt.param_groups:
        g["betas"] = tuple(betas)
    masker = MLMMasker.from_tokenizer(tokenizer, seed=seed) if objective == "mlm" else None
    params = list(model.parameters())
    history = _new_history()
    step = epoch = 0
    train_time, tokens = 0.0, 0
    order = make_batches(train_data.lengths, batch_size, shuffle=True, seed=seed, epoch=0)
    pos = 0
    last_eval_time = 0.0
    name = "MLM" if objective == "mlm" else "left-to-right LM"
    log(f"pretrain {name}: {len(train_data)} sequences, {model.num_parameters() / 1e6:.2f}M parameters, "
        + (f"budget {time_budget_s / 60:.1f} min" if time_budget_s else f"{max_steps} steps"))

    def fraction():
        f = 0.0
        if max_steps:
            f = max(f, step / max_steps)
        if time_budget_s:
            f = max(f, train_time / time_budget_s)
        return f

    def evaluate(limit):
        r = evaluate_heldout(model, heldout, objective, eval_batch_size, limit)
        history["eval_step"].append(step)
        history["eval_time"].append(train_time)
        history["eval_tokens"].append(tokens)
        history["val_loss"].append(r["loss"])
        history["val_acc"].append(r["acc"])
        return r

    bar = _tqdm(total=1000, desc=f"pretrain {objective}", leave=False) if progress and _tqdm else None
    model.train()
    try:
        while fraction() < 1.0:
            f = lr_factor(fraction(), warmup)
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * f
            if pos == len(order):
                epoch, pos = epoch + 1, 0
                order = make_batches(train_data.lengths, batch_size, shuffle=True, seed=seed, epoch=epoch)
            batch = train_data.batch(order[pos])
            pos += 1
            t0 = time.perf_counter()
            loss = objective_loss(model, batch, objective, masker)
            if loss is not None:
                for p in params:
                    p.grad = None
                loss.backward()
                if max_grad_norm:
                    clip_grad_norm_([p for p in params if p.grad is not None], max_grad_norm)
                opt.step()
                for p in params:
                    p.grad = None
            train_time += time.perf_counter() - t0
            step += 1
            tokens += int(batch["attention_mask"].sum())
            value = float(loss.item()) if loss is not None else None
            for k, v in (("step", step), ("time", train_time), ("tokens", tokens), ("loss", value),
                         ("lr", lr * f)):
                history[k].append(v)
            due = (eval_every and step % eval_every == 0) or \
                  (eval_every_s and train_time - last_eval_time >= eval_every_s)
            if due and fraction() < 1.0:
                last_eval_time = train_time
                r = evaluate(eval_limit)
                if bar is not None:
                    bar.write(f"{objective} step {step} ({train_time:.0f} s): held-out loss {r['loss']:.3f}, "
                              f"acc {100 * r['acc']:.1f}%")
            if bar is not None:
                bar.n = min(1000, int(1000 * fraction()))
                bar.set_postfix(loss=f"{value:.3f}" if value is not None else "-", refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    final = evaluate_heldout(model, heldout, objective, eval_batch_size)
    history["eval_step"].append(step)
    history["eval_time"].append(train_time)
    history["eval_tokens"].append(tokens)
    history["val_loss"].append(final["loss"])
    history["val_acc"].append(final["acc"])
    result = {"model": model, "objective": objective, "steps": step, "tokens": tokens,
              "epochs": step * batch_size / max(len(train_data), 1), "train_time": train_time,
              "tokens_per_s": tokens / train_time if train_time > 0 else float("nan"),
              "heldout": final, "history": history, "params": model.num_parameters(),
              "settings": dict(time_budget_s=time_budget_s, max_steps=max_steps, batch_size=batch_size, lr=lr,
                               warmup=warmup, weight_decay=weight_decay, betas=list(betas),
                               max_grad_norm=max_grad_norm, seed=seed)}
    extra = f", at the masked tokens {100 * final['acc_at_masked']:.1f}%" if objective == "ltr" else ""
    log(f"pretrain {name}: {step} steps, {tokens} tokens in {train_time:.0f} s ({result['tokens_per_s']:.0f} "
        f"tokens/s); held-out loss {final['loss']:.3f}, accuracy {100 * final['acc']:.1f}% over "
        f"{final['count']} targets{extra}")
    return result


# ============================================================================ checkpoints

def save_pretrained(directory, model, tokenizer, **meta):
    """Write ``checkpoint.safetensors`` (:func:`minibidir.checkpoint.save`: ``model`` (the state
    dict), ``config`` and ``meta``), ``config.json`` and the vocabulary to ``directory``."""
    os.makedirs(directory, exist_ok=True)
    checkpoint.save(os.path.join(directory, "checkpoint.safetensors"), model=model.state_dict(),
                    config=model.config.to_dict(), meta=_jsonable(meta))
    model.config.to_json(os.path.join(directory, "config.json"))
    tokenizer.save_pretrained(directory)
    return directory


def load_pretrained(directory):
    """``(model, tokenizer, meta)`` from a directory written by :func:`save_pretrained`: a
    :class:`~minibidir.models.BertForMaskedLM` (causal if it was) in eval mode."""
    path = os.path.join(directory, "checkpoint.safetensors")
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_pretrained: no checkpoint.safetensors in {directory} "
                                f"(run `python -m minibidir.experiments.pretrain pretrain --out ...` first)")
    s = checkpoint.load(path)
    model = BertForMaskedLM(BertConfig.from_dict(s["config"]))
    model.load_state_dict(s["model"])
    model.eval()
    return model, WordPieceTokenizer.from_pretrained_dir(directory), s.get("meta") or {}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if k != "model"}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# ============================================================================ experiment 1

def prepare_corpus(max_docs=None, max_doc_chars=None, heldout_fraction=0.1, split_seed=0, vocab_size=8000,
                   seq_len=128, log=print, **_):
    """Load, split, train the vocabulary on the training part, pack both parts.  Returns a dict:
    ``tokenizer``, ``train`` (:class:`~minibidir.train.EncodedData`), ``heldout``
    (:class:`HeldOut`), ``stats`` (documents, sequences and tokens per part and source)."""
    log = log or _quiet
    t0 = time.perf_counter()
    corpus = load_corpus(max_docs, max_doc_chars)
    train_docs, held_docs = split_corpus(corpus, heldout_fraction, split_seed)
    tokenizer = train_tokenizer(train_docs, vocab_size)
    train = pack_documents(tokenizer, train_docs, seq_len)
    held_enc = pack_documents(tokenizer, held_docs, seq_len)
    heldout = make_heldout(held_enc, tokenizer)
    stats = {"documents": {k: [len(train_docs[k]), len(held_docs[k])] for k in corpus},
             "train_sequences": len(train), "heldout_sequences": len(held_enc),
             "train_tokens": int(train.lengths.sum()), "heldout_tokens": int(held_enc.lengths.sum()),
             "vocab_size": tokenizer.vocab_size, "seconds": time.perf_counter() - t0}
    log(f"corpus: {stats['train_tokens']} training tokens in {len(train)} sequences, {stats['heldout_tokens']} "
        f"held-out tokens in {len(held_enc)}; vocabulary {tokenizer.vocab_size} ({stats['seconds']:.1f} s)")
    return {"tokenizer": tokenizer, "train": train, "heldout": heldout, "stats": stats}


def run_pretraining(settings=None, objectives=OBJECTIVES, out_dir=None, corpus=None, progress=True, log=print,
                    **overrides):
    """Experiment 1: prepare the corpus (:func:`prepare_corpus`), pretrain each of
    ``objectives`` with the same settings and budget (:func:`pretrain`), save the checkpoints
    to ``out_dir/<objective>`` when given.  ``settings``: :data:`FULL` (default) or
    :data:`QUICK`, with ``overrides`` on top (e.g. ``time_budget_s=300``).  ``corpus``: the
    result of :func:`prepare_corpus` to reuse.  Returns ``{"corpus": stats, "settings",
    "results": {objective: pretrain result}, "tokenizer"}``."""
    s = dict(FULL if settings is None else settings, **overrides)
    corpus = corpus or prepare_corpus(**{k: s[k] for k in CORPUS_KEYS}, log=log)
    tok = corpus["tokenizer"]
    cfg = model_config(tok.vocab_size, **{k: s[k] for k in MODEL_KEYS})
    results = {}
    for objective in objectives:
        r = pretrain(objective, corpus["train"], corpus["heldout"], tok, cfg, progress=progress, log=log,
                     **{k: s[k] for k in PRETRAIN_KEYS})
        results[objective] = r
        if out_dir:
            save_pretrained(os.path.join(out_dir, objective), r["model"], tok, objective=objective,
                            result=_summary(r), corpus=corpus["stats"], settings=s)
    return {"corpus": corpus["stats"], "settings": s, "results": results, "tokenizer": tok}


def _summary(r):
    """A pretraining result without the model (JSON-able)."""
    return _jsonable({k: v for k, v in r.items() if k != "model"})


def format_pretraining(results):
    """A Markdown table of :func:`run_pretraining`'s results."""
    rows = [("| model | objective | steps | tokens | passes | train time (s) | tokens/s | held-out loss | "
             "held-out accuracy | accuracy at the masked tokens |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for obj, r in results.items():
        h = r["heldout"]
        kind = "bidirectional, masked LM" if obj == "mlm" else "left-to-right (causal), next token"
        at_m = h["acc"] if obj == "mlm" else h["acc_at_masked"]
        rows.append(f"| {obj} | {kind} | {r['steps']} | {r['tokens']} | {r['epochs']:.2f} | {r['train_time']:.0f} | "
                    f"{r['tokens_per_s']:.0f} | {h['loss']:.3f} | {100 * h['acc']:.2f}% ({h['count']}) | "
                    f"{100 * at_m:.2f}% |")
    return "\n".join(rows)


# ============================================================================ experiment 2: fine-tuning

class FineTuneModel(BertForBidirectionalFineTuning):
    """:class:`~minibidir.train.BertForBidirectionalFineTuning` with one more pooling,
    ``"last"``: the vector of the last real token ([SEP]), which under the causal mask is the
    only position that has read the whole sentence."""

    def __init__(self, config, num_labels=2, pooling="mean"):
        if pooling not in ("pooler", "cls", "mean", "last"):
            raise ValueError(f"FineTuneModel: pooling must be 'pooler', 'cls', 'mean' or 'last', got {pooling!r}")
        super().__init__(config, num_labels, "mean" if pooling == "last" else pooling)
        self.pooling = pooling

    def _pool(self, seq, pooled, attention_mask):
        if self.pooling != "last":
            return super()._pool(seq, pooled, attention_mask)
        n, T, H = seq.shape
        mask = np.ones((n, T), dtype=np.int64) if attention_mask is None else B.to_numpy(attention_mask)
        last = np.maximum(mask.sum(axis=1) - 1, 0)
        rows = np.arange(n) * T + last
        xp = B.get_array_module(seq.data)
        return F.reshape(seq, n * T, H)[xp.asarray(rows)]


def build_classifier(kind, pretrained=None, config=None, pooling="mean", dropout=0.1, num_labels=2):
    """The polarity classifier for ``kind`` in :data:`MODEL_KINDS`: "mlm" and "ltr" take the
    encoder (and the MLM head) from ``pretrained`` (a directory of :func:`save_pretrained`, or a
    :class:`~minibidir.models.BertForMaskedLM`); "scratch" builds the same bidirectional shape
    from ``config`` (or ``pretrained``'s config, made bidirectional) with fresh weights.  The
    classifier (and for "scratch" everything) is initialised from the library's generator:
    seed it first.  ``dropout`` replaces the pretraining dropout."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"build_classifier: kind must be one of {MODEL_KINDS}, got {kind!r}")
    if isinstance(pretrained, (str, os.PathLike)):
        pretrained, _, _ = load_pretrained(pretrained)
    if pretrained is not None:
        config = pretrained.config
    if config is None:
        raise ValueError("build_classifier: give pretrained= or config=")
    if kind == "scratch":
        config = dataclasses.replace(config, causal=False)
    elif kind == "ltr" and not config.causal:
        raise ValueError("build_classifier: kind 'ltr' needs the causal (left-to-right) checkpoint")
    elif kind == "mlm" and config.causal:
        raise ValueError("build_classifier: kind 'mlm' needs the bidirectional (MLM) checkpoint")
    config = dataclasses.replace(config, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = FineTuneModel(config, num_labels=num_labels, pooling=pooling)
    if kind != "scratch":
        missing, unexpected = model.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("classifier.", "bert.pooler.")) for k in missing):
            raise KeyError(f"build_classifier: the checkpoint does not fit (missing {missing}, "
                           f"unexpected {unexpected})")
    return model


_POLARITY_CACHE = {}


def _polarity(tokenizer, max_length, train_limit, eval_limit, val_limit):
    key = (id(tokenizer), max_length, train_limit, eval_limit, val_limit)
    if key not in _POLARITY_CACHE:
        _POLARITY_CACHE.clear()
        splits = polarity_splits(train_limit, eval_limit, val_limit)
        _POLARITY_CACHE[key] = (tokenizer, {k: EncodedData.from_texts(tokenizer, s, y, max_length=max_length)
                                            for k, (s, y) in splits.items()})
    return _POLARITY_CACHE[key][1]


def finetune_polarity(kind, pretrained=None, tokenizer=None, seed=0, *, lam=0.0, schedule="joint", config=None,
                      epochs=1, batch_size=32, lr=5e-4, max_length=64, dropout=0.1, warmup=0.1, pooling="mean",
                      eval_every=None, train_limit=None, eval_limit=None, val_limit=None, progress=True, log=print):
    """Fine-tune one model (:func:`build_classifier`) on sentence polarity with λ·L_MLM +
    (1−λ)·L_task (λ = 0: plain fine-tuning) and test the best-on-validation model.  ``seed``
    seeds the classifier, dropout, the data order and the masking; the split is fixed.
    Returns a dict with ``test_acc``, ``val_acc``, ``time``, ``tokens_per_s``, the settings and
    the ``history``."""
    log = log or _quiet
    t0 = time.perf_counter()
    if isinstance(pretrained, (str, os.PathLike)):
        pretrained, tok, _ = load_pretrained(pretrained)
        tokenizer = tokenizer or tok
    if tokenizer is None:
        raise ValueError("finetune_polarity: give tokenizer= (or a checkpoint directory as pretrained=)")
    enc = _polarity(tokenizer, max_length, train_limit, eval_limit, val_limit)
    B.manual_seed(seed)
    model = build_classifier(kind, pretrained, config, pooling=pooling, dropout=dropout)
    masker = MLMMasker.from_tokenizer(tokenizer, seed=seed) if lam > 0 else None
    trainer = Trainer(model, enc["train"], enc["val"], masker=masker, lam=lam, schedule=schedule, seed=seed,
                      epochs=epochs, batch_size=batch_size, lr=lr, warmup_ratio=warmup, eval_every=eval_every,
                      progress=progress)
    history = trainer.fit()
    test = evaluate_classifier(model, enc["test"], trainer.config.eval_batch_size)
    r = {"kind": kind, "lam": lam, "schedule": schedule, "seed": seed, "pooling": pooling, "epochs": epochs,
         "batch_size": batch_size, "lr": lr, "n_train": len(enc["train"]), "n_val": len(enc["val"]),
         "n_test": len(enc["test"]), "test_acc": test["acc"], "test_loss": test["loss"],
         "val_acc": trainer.best["metric"], "best_step": trainer.best["step"], "steps": trainer.global_step,
         "time": time.perf_counter() - t0, "train_time": trainer.train_seconds,
         "tokens_per_s": trainer.tokens_per_s, "history": history}
    log(f"polarity, {kind} (λ={lam:g} {schedule}, seed {seed}): test {100 * r['test_acc']:.2f}%, val "
        f"{100 * (r['val_acc'] or float('nan')):.2f}%, {r['time']:.0f} s")
    return r


def _ft_kwargs(s):
    return dict(epochs=s["ft_epochs"], batch_size=s["ft_batch_size"], lr=s["ft_lr"], max_length=s["ft_max_length"],
                dropout=s["ft_dropout"], warmup=s["ft_warmup"], pooling=s["ft_pooling"], eval_every=s["ft_eval_every"],
                train_limit=s["ft_train_limit"], eval_limit=s["ft_eval_limit"], val_limit=s["ft_val_limit"])


def _models_from(pretrained):
    """``{"mlm": model, "ltr": model}`` and the tokenizer from a directory (``DIR/mlm``,
    ``DIR/ltr``) or from :func:`run_pretraining`'s result."""
    if isinstance(pretrained, (str, os.PathLike)):
        models, tok = {}, None
        for obj in OBJECTIVES:
            d = os.path.join(pretrained, obj)
            if os.path.exists(os.path.join(d, "checkpoint.safetensors")):
                models[obj], tok, _ = load_pretrained(d)
        if not models:
            raise FileNotFoundError(f"no pretrained checkpoints under {pretrained} (expected {pretrained}/mlm and "
                                    f"{pretrained}/ltr; run the pretrain command first)")
        return models, tok
    return {k: r["model"] for k, r in pretrained["results"].items()}, pretrained["tokenizer"]


def run_table5(pretrained, seeds=(0,), settings=None, kinds=MODEL_KINDS, progress=True, log=print, **overrides):
    """Experiment 2(a): fine-tune the MLM-pretrained model, its left-to-right twin and a model
    with no pretraining on polarity (λ = 0), for each seed.  ``pretrained``: a directory with
    ``mlm/`` and ``ltr/`` checkpoints, or :func:`run_pretraining`'s result.  ``overrides``: any
    ``ft_*`` setting (e.g. ``ft_pooling="last"``).  Returns the list of results."""
    s = dict(FULL if settings is None else settings, **overrides)
    models, tok = _models_from(pretrained)
    base = models.get("mlm") or models.get("ltr")
    results = []
    for seed in seeds:
        for kind in kinds:
            if kind != "scratch" and kind not in models:
                log(f"table5: no {kind} checkpoint, skipped")
                continue
            src = models.get(kind) if kind != "scratch" else None
            cfg = base.config if kind == "scratch" else None
            results.append(finetune_polarity(kind, src, tok, seed, config=cfg, progress=progress, log=log,
                                             **_ft_kwargs(s)))
    return results


def run_sweep(pretrained, lams=(0.0, 0.1, 0.3, 0.5), schedules=("joint", "alternating"), seeds=(0, 1, 2),
              settings=None, out_dir=None, progress=True, log=print, **overrides):
    """Experiment 2(b): bidirectional fine-tuning of the MLM-pretrained model for every (λ,
    schedule, seed); λ = 0 runs once per seed.  ``pretrained``: a directory (its ``mlm/``) or
    :func:`run_pretraining`'s result.  With ``out_dir``, each result is saved as JSON there and
    a saved result is read instead of run again.  Returns the list of results."""
    s = dict(FULL if settings is None else settings, **overrides)
    models, tok = _models_from(pretrained)
    if "mlm" not in models:
        raise FileNotFoundError("run_sweep: needs the MLM-pretrained checkpoint")
    results = []
    for seed in seeds:
        for lam in lams:
            for schedule in (schedules if lam > 0 else schedules[:1]):
                path = os.path.join(out_dir, f"sweep_lam{lam:g}_{schedule}_seed{seed}.json") if out_dir else None
                if path and os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        results.append(json.load(f))
                    continue
                r = finetune_polarity("mlm", models["mlm"], tok, seed, lam=lam, schedule=schedule, progress=progress,
                                      log=log, **_ft_kwargs(s))
                if path:
                    os.makedirs(out_dir, exist_ok=True)
                    with open(path, "w", encoding="utf-8") as f:
                        json.dump(_jsonable(r), f)
                results.append(r)
    return results


def summarize(results, keys):
    """Group results by ``keys`` (a tuple of field names): ``{group: (mean, std, n)}`` of the
    test accuracy (std with n − 1; 0 for a single run)."""
    groups = {}
    for r in results:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r["test_acc"])
    return {g: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            for g, v in groups.items()}


_KIND_NAMES = {"mlm": "MLM-pretrained (bidirectional)", "ltr": "left-to-right twin (causal)",
               "scratch": "no pretraining"}


def format_table5(results):
    """Mean ± std test accuracy per model kind, and BERT's published Table 5 below."""
    stats = summarize(results, ("kind",))
    rows = ["| model | runs | polarity test accuracy (%) |", "|---|---|---|"]
    for kind in MODEL_KINDS:
        if (kind,) in stats:
            m, sd, n = stats[(kind,)]
            rows.append(f"| {_KIND_NAMES[kind]} | {n} | {100 * m:.2f} ± {100 * sd:.2f} |")
    rows.append("")
    rows.append("BERT-base, Table 5 (Devlin et al. 2019), dev accuracy: " + "; ".join(
        f"{task} {v['No NSP (MLM)']} (MLM) vs {v['LTR & No NSP']} (LTR)" for task, v in REFERENCES.items()))
    return "\n".join(rows)


def format_sweep(results):
    """Mean ± std test accuracy per (λ, schedule)."""
    stats = summarize(results, ("lam", "schedule"))
    rows = ["| λ | schedule | runs | test accuracy (%) |", "|---|---|---|---|"]
    for (lam, schedule), (m, sd, n) in sorted(stats.items()):
        rows.append(f"| {lam:g} | {schedule if lam > 0 else '(plain)'} | {n} | {100 * m:.2f} ± {100 * sd:.2f} |")
    return "\n".join(rows)


# ============================================================================ command line

def _budget(text):
    """Minutes ("12", "0.5") or seconds with an "s" ("300s")."""
    t = text.strip().lower()
    value = float(t[:-1]) if t.endswith("s") else 60.0 * float(t.rstrip("m"))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the budget must be positive, got {text!r}")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minibidir.experiments.pretrain",
                                description="MLM pretraining of a small BERT and its left-to-right twin on CPU; "
                                            "BERT's Table 5 and the λ sweep on sentence polarity.")
    p.add_argument("command", choices=["pretrain", "table5", "sweep", "all"],
                   help="pretrain: experiment 1 (writes OUT/mlm, OUT/ltr); table5: fine-tune both and a model "
                        "without pretraining; sweep: λ·L_MLM + (1−λ)·L_task; all: pretrain then table5")
    p.add_argument("--quick", action="store_true", help="the QUICK setting (seconds)")
    p.add_argument("--budget", type=_budget, default=None,
                   help="pretraining time per model, minutes (or seconds with an 's', e.g. 300s); default 12")
    p.add_argument("--max-steps", type=int, default=None, help="also stop pretraining after so many steps")
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    p.add_argument("--out", default="runs/pretrain", help="checkpoint directory (default runs/pretrain)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="fine-tuning seeds (default: 0 for table5, 0 1 2 for sweep)")
    p.add_argument("--lam", type=float, nargs="+", default=[0.0, 0.1, 0.3, 0.5])
    p.add_argument("--schedule", nargs="+", default=["joint", "alternating"], choices=["joint", "alternating"])
    p.add_argument("--pooling", default=None, choices=["mean", "last", "cls"], help="fine-tuning pooling")
    p.add_argument("--ft-epochs", type=int, default=None, help="fine-tuning epochs (default 1)")
    p.add_argument("--ft-lr", type=float, default=None, help="fine-tuning peak learning rate (default 5e-4)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--json-dir", default=None, help="sweep: one JSON per run here (a restarted sweep skips them)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    B.tune_malloc()
    s = dict(QUICK if a.quick else FULL)
    if a.budget is not None:
        s["time_budget_s"] = a.budget
    if a.max_steps is not None:
        s["max_steps"] = a.max_steps
    if a.pooling:
        s["ft_pooling"] = a.pooling
    if a.ft_epochs is not None:
        s["ft_epochs"] = a.ft_epochs
    if a.ft_lr is not None:
        s["ft_lr"] = a.ft_lr
    progress = not a.no_progress
    out = {"settings": _jsonable(s)}
    pre = None
    if a.command in ("pretrain", "all"):
        pre = run_pretraining(s, a.objectives, out_dir=a.out, progress=progress)
        out["corpus"] = pre["corpus"]
        out["pretraining"] = {k: _summary(r) for k, r in pre["results"].items()}
        print(format_pretraining(pre["results"]))
    if a.command in ("table5", "all"):
        results = run_table5(pre or a.out, a.seeds or [0], s, progress=progress)
        out["table5"] = [_jsonable(r) for r in results]
        print(format_table5(results))
    if a.command == "sweep":
        results = run_sweep(a.out, a.lam, a.schedule, a.seeds or [0, 1, 2], s, out_dir=a.json_dir, progress=progress)
        out["sweep"] = [_jsonable(r) for r in results]
        print(format_sweep(results))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
