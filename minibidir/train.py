"""Training loops: classification fine-tuning, masked-language-model steps and document 002's
bidirectional fine-tuning (双向微调, §3.3 and §4.3), with early stopping, checkpoints that resume
exactly, progress bars and loss/accuracy curves.

The objective (document 002, §4.3)
----------------------------------
Fine-tune a pretrained bidirectional encoder on a task while it keeps training the
masked-language-model objective that made it bidirectional::

    L = λ · L_MLM + (1 − λ) · L_task

Both heads sit on **one shared encoder** (:class:`BertForBidirectionalFineTuning`: a BERT
encoder, BERT's MLM head with the vocabulary projection tied to the word embeddings, and a
classifier), so every MLM gradient moves the same encoder weights that the classifier reads.
The document allows two ways to optimise it (§4.3: "交替优化 ... 也可以同时优化总损失函数"):

``schedule="joint"``
    One optimizer step per batch on the combined loss λ·L_MLM + (1−λ)·L_task.  The gradient is
    λ ∇L_MLM + (1−λ) ∇L_task, clipped as a whole, then one AdamW update.

``schedule="alternating"``
    Per batch, an MLM step and then a task step, each its own optimizer update (§3.3, steps 2
    and 3 repeated "直到模型在验证集上的性能不再提升": the early stopping below).  **How λ
    enters:** as the learning rate of each step, λ·η_t for the MLM step and (1−λ)·η_t for the
    task step, each objective with its own AdamW state (moments) over the shared parameters.
    Scaling the *loss* instead would be almost a no-op under Adam, whose update m̂/√v̂ does not
    change when the gradient is multiplied by a constant; scaling the step is what scaling the
    loss does under plain SGD (p ← p − η λ ∇L_MLM), and it keeps λ meaningful under Adam.
    Weight decay then totals (λ + 1 − λ)·η_t·wd per batch, as in one step.

Where the MLM text comes from: the masking (BERT's 15%, 80/10/10, :func:`minibidir.text.masking.mask_tokens`)
is applied to **a copy of the task batch's input ids**: the unlabelled text is the task's own
training sentences (in-domain), the classifier reads the clean sentence and the MLM head the
masked copy, two forward passes through the shared encoder.  The masking draws from its own
seeded generator (:class:`MLMMasker`), the dropout from the library's generator.

Special cases, exactly:

* λ = 0 is plain fine-tuning: the MLM branch is skipped (no masking, no forward pass, no
  optimizer state), so the parameters after N steps equal those of the plain loop with the
  same seed, bit for bit (``tests/test_train.py`` checks it against a hand-written loop on
  :class:`~minibidir.models.BertForSequenceClassification`).
* λ = 1 trains the MLM objective only: the classifier receives no gradient, and AdamW skips
  a parameter without a gradient (no weight decay either), so the classifier is untouched.

Pieces
------
* Batching: :func:`epoch_permutation`, :func:`make_batches` (seeded shuffling, optional
  length bucketing), :func:`pad_sequences` (to the longest in the batch), :class:`EncodedData`.
* :class:`MLMMasker` (seeded masking with a saveable state).
* :class:`BertForBidirectionalFineTuning` (one encoder, an MLM head and a classifier; pooling
  "pooler", "cls" or "mean").
* Losses and single steps: :func:`task_loss`, :func:`mlm_loss`, :func:`classification_step`,
  :func:`mlm_step`, :func:`bidirectional_step`; :func:`make_optimizer` (AdamW without decay on
  biases and LayerNorm weights).
* :func:`evaluate_classifier`, :func:`predict`, :func:`evaluate_mlm`.
* :class:`TrainConfig` and :class:`Trainer`: epochs, linear warm-up and decay, evaluation,
  early stopping with patience (the best model kept in a checkpoint), a history of the losses
  and validation metrics, a progress bar, and checkpoints from which an interrupted run
  resumes exactly (model, optimizers, schedules, random generators, step, place in the epoch's
  data order, early-stopping state, history).
* :func:`fine_tune`, :func:`train_mlm`, :func:`bidirectional_fine_tune`: the three loops in one
  call; :func:`plot_history`: loss and accuracy curves to a PNG.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from . import backend as B
from . import checkpoint as ckpt
from . import functional as F
from .autograd import no_grad
from .models.bert import BertModel, BertOnlyMLMHead, BertPreTrainedModel, _as_array
from .models.pretrained import mean_pooling
from .nn.dropout import Dropout
from .nn.linear import Linear
from .optim import AdamW, LinearWarmupDecay, clip_grad_norm_
from .text.masking import mask_tokens

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:                     # progress bars are optional
    _tqdm = None

__all__ = ["epoch_permutation", "make_batches", "pad_sequences", "EncodedData", "MLMMasker",
           "BertForBidirectionalFineTuning", "make_optimizer", "task_loss", "mlm_loss",
           "classification_step", "mlm_step", "bidirectional_step", "evaluate_classifier",
           "predict", "evaluate_mlm", "TrainConfig", "Trainer", "fine_tune", "train_mlm",
           "bidirectional_fine_tune", "plot_history", "SCHEDULES"]

SCHEDULES = ("joint", "alternating")


# ----------------------------------------------------------------------------- batching

def epoch_permutation(n, seed, epoch):
    """The order of the examples in epoch ``epoch``: a permutation of ``range(n)`` drawn from
    ``numpy.random.default_rng([seed, epoch])``.  It depends on (seed, epoch) only, so a resumed
    run finds the same order again without storing it."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))


def make_batches(lengths, batch_size, *, shuffle=True, seed=0, epoch=0, bucket_batches=None):
    """Split the examples into batches; returns a list of index arrays.

    ``shuffle``: the examples in :func:`epoch_permutation` order, otherwise in their order.
    ``bucket_batches=k``: within each window of k·batch_size consecutive examples (of that
    order), sort by length before cutting into batches, and (with ``shuffle``) shuffle the
    batches: sentences of similar length share a batch, so padding to the longest in the batch
    wastes little, while the batches stay random.  The last batch may be smaller.
    """
    lengths = np.asarray(lengths)
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"make_batches: batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if bucket_batches:
        window = int(bucket_batches) * batch_size
        pieces = []
        for s in range(0, n, window):
            w = order[s:s + window]
            pieces.append(w[np.argsort(lengths[w], kind="stable")])
        order = np.concatenate(pieces) if pieces else order
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if shuffle and bucket_batches:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad_sequences(sequences, pad_value=0, dtype=np.int64):
    """Pad integer sequences to the longest one: ``(array (batch, longest), attention_mask)``,
    the mask 1 at real tokens and 0 at padding."""
    T = max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), T), pad_value, dtype=dtype)
    mask = np.zeros((len(sequences), T), dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return out, mask


@dataclass
class EncodedData:
    """Tokenised examples without padding: ``input_ids[i]`` an int array, ``labels`` (n,) or
    None, ``special_tokens_mask[i]`` 1 at [CLS], [SEP], ... (never chosen for masking; None: no
    special tokens).  :meth:`batch` pads a selection to the longest of its sentences."""
    input_ids: list
    labels: np.ndarray | None = None
    special_tokens_mask: list | None = None
    pad_token_id: int = 0

    def __post_init__(self):
        self.input_ids = [np.asarray(s, dtype=np.int64) for s in self.input_ids]
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if len(self.labels) != len(self.input_ids):
                raise ValueError(f"EncodedData: {len(self.input_ids)} sentences but {len(self.labels)} labels")
        if self.special_tokens_mask is not None:
            self.special_tokens_mask = [np.asarray(s, dtype=np.int64) for s in self.special_tokens_mask]
            if [len(s) for s in self.special_tokens_mask] != [len(s) for s in self.input_ids]:
                raise ValueError("EncodedData: special_tokens_mask and input_ids differ in lengths")

    @classmethod
    def from_texts(cls, tokenizer, texts, labels=None, max_length=64):
        """Tokenise ``texts`` with a :class:`~minibidir.text.tokenizer.WordPieceTokenizer`
        ([CLS] text [SEP], truncated to ``max_length`` tokens)."""
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
        return cls(enc["input_ids"], labels, enc["special_tokens_mask"], tokenizer.pad_token_id)

    def __len__(self):
        return len(self.input_ids)

    @property
    def lengths(self):
        return np.array([len(s) for s in self.input_ids], dtype=np.int64)

    def subset(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        return EncodedData([self.input_ids[i] for i in idx],
                           None if self.labels is None else self.labels[idx],
                           None if self.special_tokens_mask is None else [self.special_tokens_mask[i] for i in idx],
                           self.pad_token_id)

    def batch(self, idx):
        """The examples ``idx`` as a dict of arrays: ``input_ids`` and ``attention_mask``
        (batch, longest), ``special_tokens_mask`` (1 at special tokens and padding), ``labels``."""
        ids, mask = pad_sequences([self.input_ids[i] for i in idx], self.pad_token_id)
        if self.special_tokens_mask is not None:
            special, _ = pad_sequences([self.special_tokens_mask[i] for i in idx], 1)
        else:
            special = 1 - mask
        out = {"input_ids": ids, "attention_mask": mask, "special_tokens_mask": special}
        if self.labels is not None:
            out["labels"] = self.labels[np.asarray(idx, dtype=np.int64)]
        return out


# ----------------------------------------------------------------------------- masking

class MLMMasker:
    """BERT's masking of a batch (15% of the ordinary tokens; of those 80% [MASK], 10% a random
    token, 10% unchanged; :func:`~minibidir.text.masking.mask_tokens`) with its own seeded
    generator.  ``masker(batch)`` returns ``(masked_ids, labels)``; :meth:`get_state` and
    :meth:`set_state` save and restore the generator for exact resumption."""

    def __init__(self, mask_token_id, vocab_size, special_ids=(), probability=0.15, seed=0):
        self.mask_token_id, self.vocab_size = int(mask_token_id), int(vocab_size)
        self.special_ids = tuple(int(i) for i in special_ids)
        self.probability = float(probability)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        excluded = np.array(self.special_ids + (self.mask_token_id,), dtype=np.int64)
        self.random_token_ids = np.setdiff1d(np.arange(self.vocab_size), excluded)

    @classmethod
    def from_tokenizer(cls, tokenizer, probability=0.15, seed=0):
        return cls(tokenizer.mask_token_id, tokenizer.vocab_size, tokenizer.all_special_ids, probability, seed)

    def fresh(self, seed):
        """A masker with the same settings and a new generator (e.g. fixed masks for evaluation)."""
        return MLMMasker(self.mask_token_id, self.vocab_size, self.special_ids, self.probability, seed)

    def __call__(self, batch):
        return mask_tokens(batch["input_ids"], batch["special_tokens_mask"], self.mask_token_id,
                           self.vocab_size, self.rng, mlm_probability=self.probability,
                           random_token_ids=self.random_token_ids)

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


# ----------------------------------------------------------------------------- the two-headed model

class BertForBidirectionalFineTuning(BertPreTrainedModel):
    """One BERT encoder with two heads, for document 002's bidirectional fine-tuning:

        MLM (§4.1):   P(x_i | X∖x_i) = softmax(W_c LayerNorm(GELU(W_t h_i + b_t)) + b_c),
                      W_c the word embeddings (tied), on the masked positions only
        task (§4.2):  P(y | X) = softmax(W_d v + b_d)

    ``pooling`` picks v: "pooler" (tanh(W_p h_[CLS] + b_p), as
    :class:`~minibidir.models.BertForSequenceClassification`), "cls" (h_[CLS], the document's
    formula) or "mean" (the mean of the real tokens' vectors, sentence-transformers' pooling).

    Parameter names are Hugging Face's (``bert.``, ``cls.predictions.``, ``classifier.``), so
    :func:`~minibidir.models.load_hf_bert` (``model_class=`` this class, ``strict=False``) fills
    the encoder from a checkpoint and initialises what the checkpoint lacks.

    :meth:`classify` returns logits, or ``(loss, logits)`` with ``labels`` (cross-entropy);
    :meth:`mlm` returns ``(loss, logits)`` over the positions whose label is not -100;
    ``forward`` is :meth:`classify`.
    """

    def __init__(self, config, num_labels=2, pooling="pooler"):
        super().__init__()
        if pooling not in ("pooler", "cls", "mean"):
            raise ValueError(f"BertForBidirectionalFineTuning: pooling must be 'pooler', 'cls' or 'mean', "
                             f"got {pooling!r}")
        if not isinstance(num_labels, (int, np.integer)) or num_labels < 2:
            raise ValueError(f"BertForBidirectionalFineTuning: num_labels must be an integer >= 2, got {num_labels!r}")
        self.config = config
        self.num_labels = int(num_labels)
        self.pooling = pooling
        self.bert = BertModel(config, add_pooling_layer=pooling == "pooler")
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = Linear(config.hidden_size, self.num_labels)
        self.init_weights(self.cls)
        self.init_weights(self.classifier)

    def _pool(self, seq, pooled, attention_mask):
        if self.pooling == "pooler":
            return pooled
        if self.pooling == "cls":
            return seq[:, 0]
        if attention_mask is None:
            attention_mask = np.ones(seq.shape[:2], dtype=np.int64)
        return mean_pooling(seq, attention_mask)

    def classify(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        seq, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(self._pool(seq, pooled, attention_mask)))
        if labels is None:
            return logits
        y = _as_array(labels, B.get_array_module(logits.data))
        if tuple(y.shape) != (logits.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError(f"{type(self).__name__}.classify: labels must be integers of shape "
                             f"({logits.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        return F.cross_entropy(logits, y), logits

    def mlm(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Masked-LM loss and logits: the head runs on the labelled rows only (``labels`` (batch,
        length), -100 where nothing is predicted)."""
        seq, _ = self.bert(input_ids, attention_mask, token_type_ids)
        n, T, H = seq.shape
        xp = B.get_array_module(seq.data)
        tgt = _as_array(labels, xp).reshape(-1)
        if tgt.shape[0] != n * T:
            raise ValueError(f"{type(self).__name__}.mlm: labels must have shape {(n, T)}, got "
                             f"{tuple(_as_array(labels, xp).shape)}")
        rows = xp.flatnonzero(tgt != -100)
        logits = self.cls(F.reshape(seq, n * T, H)[rows])
        return F.cross_entropy(logits, tgt[rows]), logits

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        return self.classify(input_ids, attention_mask, token_type_ids, labels)


# ----------------------------------------------------------------------------- losses and steps

def make_optimizer(model, lr, weight_decay=0.01, no_decay=("bias", "LayerNorm.weight"), head_lr_scale=1.0,
                   heads=("classifier.", "cls.")):
    """AdamW over every parameter of ``model``; parameters whose name ends with one of
    ``no_decay`` (biases, LayerNorm weights) get no weight decay, as in BERT's fine-tuning.

    ``head_lr_scale``: learning-rate factor for the parameters whose name starts with one of
    ``heads`` (the new classifier and MLM transform; the tied word embeddings count as the
    encoder's).  A freshly initialised head moves by about η per Adam step, far less than its
    initial spread (0.02) over a short run, so the encoder ends up adapting to a random head; a
    larger head learning rate lets the head learn in a few steps."""
    groups = {}
    for name, p in model.named_parameters():
        wd = 0.0 if name.endswith(tuple(no_decay)) else weight_decay
        scale = head_lr_scale if name.startswith(tuple(heads)) else 1.0
        groups.setdefault((scale, wd), []).append(p)
    return AdamW([{"params": ps, "lr": lr * scale, "weight_decay": wd}
                  for (scale, wd), ps in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1]))],
                 lr=lr, weight_decay=weight_decay)


def task_loss(model, batch):
    """``(loss, logits)`` of the classifier on a batch (:meth:`BertForBidirectionalFineTuning.classify`,
    or the model itself for a :class:`~minibidir.models.BertForSequenceClassification`)."""
    fn = getattr(model, "classify", model)
    return fn(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])


def mlm_loss(model, batch, masker):
    """The masked-LM loss on a masked copy of the batch (``masker`` draws the masks), or None
    when no position was chosen.  Works with :class:`BertForBidirectionalFineTuning` and
    :class:`~minibidir.models.BertForMaskedLM`."""
    ids, labels = masker(batch)
    chosen = labels != -100
    if not chosen.any():
        return None
    fn = getattr(model, "mlm", None)
    if fn is not None:
        loss, _ = fn(ids, batch["attention_mask"], labels=labels)
    else:
        loss, _ = model(ids, batch["attention_mask"], labels=labels, masked_positions=chosen)
    return loss


def _update(loss, params, optimizer, max_grad_norm):
    for p in params:
        p.grad = None
    loss.backward()
    if max_grad_norm:
        clip_grad_norm_([p for p in params if p.grad is not None], max_grad_norm)
    optimizer.step()


def classification_step(model, optimizer, batch, max_grad_norm=1.0):
    """One step of plain fine-tuning: L_task, backward, clip, optimizer step.  Returns the loss."""
    model.train()
    loss, _ = task_loss(model, batch)
    _update(loss, list(model.parameters()), optimizer, max_grad_norm)
    return float(loss.item())


def mlm_step(model, optimizer, batch, masker, max_grad_norm=1.0):
    """One masked-LM step on a masked copy of ``batch``.  Returns the loss (None: nothing masked)."""
    model.train()
    loss = mlm_loss(model, batch, masker)
    if loss is None:
        return None
    _update(loss, list(model.parameters()), optimizer, max_grad_norm)
    return float(loss.item())


def bidirectional_step(model, optimizers, batch, masker, lam, schedule="joint", max_grad_norm=1.0):
    """One step of bidirectional fine-tuning on one batch (see the module's notes).

    ``optimizers``: ``{"joint": opt}`` for ``schedule="joint"``; for "alternating" ``{"mlm":
    opt_m, "task": opt_t}`` whose learning rates carry the factors λ and 1 − λ (either may be
    absent when its factor is 0).  Returns ``{"loss", "mlm_loss", "task_loss"}`` as floats,
    None for a part not computed; ``loss`` = λ·mlm_loss + (1−λ)·task_loss (a missing part
    counted as 0)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"bidirectional_step: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"bidirectional_step: lam must be in [0, 1], got {lam}")
    model.train()
    params = list(model.parameters())
    out = {"loss": None, "mlm_loss": None, "task_loss": None}
    if schedule == "joint":
        total = None
        if lam < 1:
            lt, _ = task_loss(model, batch)
            out["task_loss"] = float(lt.item())
            total = lt if lam == 0 else (1.0 - lam) * lt
        if lam > 0:
            lm = mlm_loss(model, batch, masker)
            if lm is not None:
                out["mlm_loss"] = float(lm.item())
                total = lm * lam if total is None else total + lam * lm
        if total is not None:
            _update(total, params, optimizers["joint"], max_grad_norm)
    else:
        if lam > 0:
            lm = mlm_loss(model, batch, masker)
            if lm is not None:
                out["mlm_loss"] = float(lm.item())
                _update(lm, params, optimizers["mlm"], max_grad_norm)
        if lam < 1:
            lt, _ = task_loss(model, batch)
            out["task_loss"] = float(lt.item())
            _update(lt, params, optimizers["task"], max_grad_norm)
    if out["task_loss"] is not None or out["mlm_loss"] is not None:
        out["loss"] = (lam * (out["mlm_loss"] or 0.0) if lam > 0 else 0.0) + \
                      ((1.0 - lam) * (out["task_loss"] or 0.0) if lam < 1 else 0.0)
    for p in params:                      # free the gradients between steps
        p.grad = None
    return out


# ----------------------------------------------------------------------------- evaluation

def _eval_batches(data, batch_size):
    order = np.argsort(data.lengths, kind="stable")          # similar lengths together: little padding
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def predict(model, data, batch_size=128):
    """Class predictions (n,) and logits (n, num_labels) for every example, in order."""
    was_training = model.training
    model.eval()
    preds, logits_all = np.zeros(len(data), dtype=np.int64), None
    try:
        with no_grad():
            for idx in _eval_batches(data, batch_size):
                b = data.batch(idx)
                logits = B.to_numpy(getattr(model, "classify", model)(b["input_ids"], b["attention_mask"]).data)
                if logits_all is None:
                    logits_all = np.zeros((len(data), logits.shape[1]), dtype=logits.dtype)
                logits_all[idx] = logits
                preds[idx] = logits.argmax(axis=1)
    finally:
        model.train(was_training)
    return preds, logits_all


def evaluate_classifier(model, data, batch_size=128):
    """``{"acc", "loss"}`` of the classifier on ``data`` (mean cross-entropy; no dropout)."""
    preds, logits = predict(model, data, batch_size)
    y = data.labels
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return {"acc": float((preds == y).mean()), "loss": float(-logp[np.arange(len(y)), y].mean())}


def evaluate_mlm(model, data, masker, seed=0, batch_size=128):
    """``{"mlm_loss", "mlm_acc"}``: the masked-LM loss and accuracy over the masked positions of
    ``data``, with masks drawn by ``masker.fresh(seed)`` (the same masks on every call)."""
    m = masker.fresh(seed)
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    try:
        with no_grad():
            for idx in _eval_batches(data, batch_size):
                b = data.batch(idx)
                ids, labels = m(b)
                chosen = labels != -100
                k = int(chosen.sum())
                if not k:
                    continue
                fn = getattr(model, "mlm", None)
                if fn is not None:
                    loss, logits = fn(ids, b["attention_mask"], labels=labels)
                else:
                    loss, logits = model(ids, b["attention_mask"], labels=labels, masked_positions=chosen)
                total += float(loss.item()) * k
                correct += int((B.to_numpy(logits.data).argmax(axis=1) == labels[chosen]).sum())
                count += k
    finally:
        model.train(was_training)
    return {"mlm_loss": total / max(count, 1), "mlm_acc": correct / max(count, 1)}


# ----------------------------------------------------------------------------- the trainer

@dataclass
class TrainConfig:
    """Settings of a :class:`Trainer` run.

    ``lam``, ``schedule``: λ and "joint" / "alternating" (λ = 0: plain fine-tuning; λ = 1: MLM
    only).  ``lr`` the peak learning rate of AdamW (``weight_decay``, none on biases and
    LayerNorm weights), reached after ``warmup_ratio`` of the steps and decayed linearly to 0;
    ``head_lr_scale`` multiplies it for the new heads (:func:`make_optimizer`).
    ``bucket_batches``: length-bucketing window in batches (None: plain shuffling).
    ``eval_every``: evaluate every so many steps (None: at the end of each epoch; the last step
    is always evaluated).  ``patience``: stop after so many evaluations without an improvement
    of ``monitor`` by more than ``min_delta`` (None: never stop early).  ``monitor``: a key of
    the evaluation's result ("acc" by default; "mlm_loss" when λ = 1), maximised unless its
    name contains "loss".  ``restore_best``: load the best model at the end.
    ``checkpoint_dir``: where ``last.safetensors`` (every evaluation, every ``save_every`` steps,
    and when stopped by ``max_steps``) and ``best.safetensors`` go.
    """
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    head_lr_scale: float = 1.0
    lam: float = 0.0
    schedule: str = "joint"
    seed: int = 0
    bucket_batches: int | None = 50
    eval_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str | None = None
    restore_best: bool = True
    checkpoint_dir: str | None = None
    save_every: int | None = None
    eval_batch_size: int = 128
    progress: bool = True


#: Settings that change the trajectory: a resumed run must use the same values.
_TRAJECTORY = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "head_lr_scale", "lam",
               "schedule", "seed", "bucket_batches", "eval_every", "patience", "min_delta", "monitor")


def _new_history():
    return {"step": [], "loss": [], "mlm_loss": [], "task_loss": [], "lr": [],
            "eval_step": [], "eval_epoch": [], "train_loss": [], "train_mlm_loss": [],
            "train_task_loss": []}


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


class Trainer:
    """Fine-tuning, MLM training and bidirectional fine-tuning in one loop.

    ``Trainer(model, train_data, val_data=None, config=None, masker=None, eval_fn=None,
    **settings)``: ``train_data`` / ``val_data`` are :class:`EncodedData`; ``config`` a
    :class:`TrainConfig`, any of whose fields may be given as keywords instead; ``masker`` an
    :class:`MLMMasker` (needed when λ > 0); ``eval_fn(model) -> dict`` replaces the default
    evaluation (:func:`evaluate_classifier` on ``val_data``, or :func:`evaluate_mlm` when λ = 1).

    :meth:`fit` trains and returns :attr:`history`, a dict of lists:

    * every step: ``step``, ``loss`` (λ·L_MLM + (1−λ)·L_task), ``mlm_loss``, ``task_loss``
      (None where not computed), ``lr`` (η_t, the scheduled learning rate of the step; the
      alternating schedule's MLM and task updates use λ·η_t and (1−λ)·η_t);
    * every evaluation: ``eval_step``, ``eval_epoch`` (fractional), ``train_loss``,
      ``train_mlm_loss``, ``train_task_loss`` (means since the previous evaluation) and
      ``val_<key>`` for each key the evaluation returns (``val_acc``, ``val_loss``, ...).

    After :meth:`fit`: :attr:`best` (``{"metric", "step", "epoch"}``), :attr:`stopped_early`,
    :attr:`train_seconds` (optimisation time, evaluations excluded), :attr:`train_tokens`
    (real, non-padding tokens of the task batches), :attr:`tokens_per_s`.

    Resuming: ``fit(resume=path)`` (or ``resume=True`` for ``checkpoint_dir/last.safetensors``,
    when it exists) restores the model, optimizers, schedules, the library's random generator
    (dropout), the masker's generator, the step, the epoch and the place in its (seeded) data
    order, the early-stopping state and the history; the run then continues exactly as if it
    had never stopped.  (On CuPy, dropout draws from the device's generator, which
    :func:`minibidir.backend.get_rng_state` does not capture: there a resumed run with dropout
    differs from the uninterrupted one in its dropout masks.)  ``fit(max_steps=k)`` stops after step k and writes that checkpoint (an interruption
    on purpose).
    """

    def __init__(self, model, train_data, val_data=None, config=None, *, masker=None, eval_fn=None, **settings):
        config = dataclasses.replace(config or TrainConfig(), **settings)
        if config.schedule not in SCHEDULES:
            raise ValueError(f"Trainer: schedule must be one of {SCHEDULES}, got {config.schedule!r}")
        if not 0.0 <= config.lam <= 1.0:
            raise ValueError(f"Trainer: lam must be in [0, 1], got {config.lam}")
        if config.lam > 0 and masker is None:
            raise ValueError("Trainer: lam > 0 needs an MLMMasker (masker=...) to mask the MLM copies")
        if config.lam < 1 and train_data.labels is None:
            raise ValueError("Trainer: lam < 1 trains the classifier, but train_data has no labels")
        if len(train_data) == 0:
            raise ValueError("Trainer: train_data is empty")
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.config, self.masker = config, masker
        if eval_fn is None and val_data is not None:
            if config.lam < 1:
                eval_fn = lambda m: evaluate_classifier(m, val_data, config.eval_batch_size)   # noqa: E731
            else:
                eval_fn = lambda m: evaluate_mlm(m, val_data, masker, config.seed, config.eval_batch_size)  # noqa: E731
        self.eval_fn = eval_fn
        self.monitor = config.monitor or ("acc" if config.lam < 1 else "mlm_loss")
        self.steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        warmup = int(round(config.warmup_ratio * self.total_steps))
        self.optimizers, self.schedulers = {}, {}
        if config.schedule == "joint":
            factors = {"joint": 1.0}
        else:
            factors = {k: f for k, f in (("mlm", config.lam), ("task", 1.0 - config.lam)) if f > 0}
        for name, f in factors.items():
            opt = make_optimizer(model, config.lr * f, config.weight_decay, head_lr_scale=config.head_lr_scale)
            self.optimizers[name] = opt
            self.schedulers[name] = LinearWarmupDecay(opt, warmup, self.total_steps)
        self.global_step = self.epoch = self.batch_in_epoch = 0
        self.best = {"metric": None, "step": None, "epoch": None}
        self.bad_evals = 0
        self.stopped_early = False
        self.train_seconds, self.train_tokens = 0.0, 0
        self.history = _new_history()
        self._best_state = None
        self._since_eval = []
        self._batches, self._batches_epoch = None, None

    # -- paths and small helpers
    def _path(self, name):
        d = self.config.checkpoint_dir
        return None if d is None else os.path.join(d, f"{name}.safetensors")

    @property
    def last_path(self):
        return self._path("last")

    @property
    def best_path(self):
        return self._path("best")

    @property
    def tokens_per_s(self):
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else float("nan")

    def _epoch_batches(self):
        if self._batches_epoch != self.epoch:
            c = self.config
            self._batches = make_batches(self.train_data.lengths, c.batch_size, shuffle=True, seed=c.seed,
                                         epoch=self.epoch, bucket_batches=c.bucket_batches)
            self._batches_epoch = self.epoch
        return self._batches

    def _better(self, value):
        if self.best["metric"] is None:
            return True
        if "loss" in self.monitor:
            return value < self.best["metric"] - self.config.min_delta
        return value > self.best["metric"] + self.config.min_delta

    def done(self):
        return self.stopped_early or self.global_step >= self.total_steps

    # -- the loop
    def fit(self, max_steps=None, resume=None):
        """Train until the last epoch ends, early stopping fires, or step ``max_steps`` (then a
        checkpoint is written when ``checkpoint_dir`` is set).  ``resume``: a checkpoint path,
        or True for ``checkpoint_dir/last.safetensors`` if it exists (else the run starts from
        the beginning, so a restart loop can always pass it).  Returns :attr:`history`."""
        if resume is True:
            if self.last_path is None:
                raise ValueError("Trainer.fit: resume=True needs checkpoint_dir")
            if os.path.exists(self.last_path):          # nothing saved yet: start from the beginning
                self.load_checkpoint(self.last_path)
        elif resume:
            self.load_checkpoint(resume)
        c = self.config
        bar = None
        if c.progress and _tqdm is not None:
            name = "fine-tune" if c.lam == 0 else f"λ={c.lam:g} {c.schedule}"
            bar = _tqdm(total=self.total_steps, initial=self.global_step, desc=name, leave=False)
        try:
            while not self.done():
                if max_steps is not None and self.global_step >= max_steps:
                    if self.last_path is not None:
                        self.save_checkpoint(self.last_path)
                    return self.history
                self._train_one_step(bar)
                epoch_end = self.batch_in_epoch == 0
                due = (self.global_step % c.eval_every == 0) if c.eval_every else epoch_end
                if self.eval_fn is not None and (due or self.global_step == self.total_steps):
                    self._evaluate(bar)
                    if self.last_path is not None:
                        self.save_checkpoint(self.last_path)
                elif c.save_every and self.global_step % c.save_every == 0 and self.last_path is not None:
                    self.save_checkpoint(self.last_path)
        finally:
            if bar is not None:
                bar.close()
        if c.restore_best and self.best["step"] is not None:
            self.load_best()
        return self.history

    def _train_one_step(self, bar):
        c = self.config
        batches = self._epoch_batches()
        batch = self.train_data.batch(batches[self.batch_in_epoch])
        sched = next(iter(self.schedulers.values()))
        lr_now = c.lr * sched.factor(sched.last_epoch, c.lr)          # η_t of this step
        t0 = time.perf_counter()
        out = bidirectional_step(self.model, self.optimizers, batch, self.masker, c.lam, c.schedule,
                                 c.max_grad_norm)
        for s in self.schedulers.values():
            s.step()
        self.train_seconds += time.perf_counter() - t0
        self.train_tokens += int(batch["attention_mask"].sum())
        self.global_step += 1
        self.batch_in_epoch += 1
        if self.batch_in_epoch == len(batches):
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        h = self.history
        h["step"].append(self.global_step)
        for k in ("loss", "mlm_loss", "task_loss"):
            h[k].append(out[k])
        h["lr"].append(lr_now)
        self._since_eval.append(out)
        if bar is not None:
            bar.update(1)
            shown = {k: f"{v:.4f}" for k, v in out.items() if v is not None}
            if self.best["metric"] is not None:
                shown[f"best_{self.monitor}"] = f"{self.best['metric']:.4f}"
            bar.set_postfix(shown, refresh=False)

    def _evaluate(self, bar=None):
        metrics = self.eval_fn(self.model)
        if self.monitor not in metrics:
            raise KeyError(f"Trainer: the evaluation returned {sorted(metrics)}, not the monitored {self.monitor!r}")
        h = self.history
        h["eval_step"].append(self.global_step)
        h["eval_epoch"].append(self.global_step / self.steps_per_epoch)
        for k in ("loss", "mlm_loss", "task_loss"):
            h[f"train_{k}"].append(_mean([o[k] for o in self._since_eval]))
        self._since_eval = []
        for k, v in metrics.items():
            h.setdefault(f"val_{k}", []).append(float(v))
        value = float(metrics[self.monitor])
        if self._better(value):
            self.best = {"metric": value, "step": self.global_step, "epoch": self.global_step / self.steps_per_epoch}
            self.bad_evals = 0
            self._save_best()
        else:
            self.bad_evals += 1
            if self.config.patience is not None and self.bad_evals >= self.config.patience:
                self.stopped_early = True
        if bar is not None:
            bar.write(f"step {self.global_step}: " + ", ".join(f"val_{k} {v:.4f}" for k, v in metrics.items())
                      + ("  (best)" if self.best["step"] == self.global_step else "")
                      + ("  - stopping early" if self.stopped_early else ""))

    # -- checkpoints
    def _save_best(self):
        state = self.model.state_dict()
        if self.best_path is not None:
            ckpt.save(self.best_path, model=state, step=self.global_step, metric=self.best["metric"],
                      monitor=self.monitor)
            self._best_state = None
        else:                             # no directory: keep a copy in memory
            self._best_state = {k: B.to_numpy(v).copy() for k, v in state.items()}

    def load_best(self):
        """Load the best model seen (by the monitored metric) into :attr:`model`."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        elif self.best_path is not None and os.path.exists(self.best_path):
            self.model.load_state_dict(ckpt.load(self.best_path)["model"])
        else:
            raise FileNotFoundError("Trainer.load_best: no best model has been kept")
        return self.model

    def state(self):
        """Everything a resumed run needs, as a dict for :func:`minibidir.checkpoint.save`."""
        progress = {"global_step": self.global_step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                    "bad_evals": self.bad_evals, "stopped_early": self.stopped_early,
                    "train_seconds": self.train_seconds, "train_tokens": self.train_tokens,
                    "best": dict(self.best), "since_eval": list(self._since_eval)}
        out = {"model": self.model.state_dict(),
               "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
               "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
               "rng": B.get_rng_state(),
               "masker": self.masker.get_state() if self.masker is not None else None,
               "progress": progress, "history": self.history,
               "config": {k: getattr(self.config, k) for k in _TRAJECTORY}}
        if self._best_state is not None:
            out["best_model"] = self._best_state
        return out

    def save_checkpoint(self, path):
        """Write :meth:`state` to ``path`` atomically (a crash mid-write keeps the old file)."""
        ckpt.save(path, **self.state())

    def load_checkpoint(self, path):
        """Restore the state saved by :meth:`save_checkpoint` (the same settings are required)."""
        s = ckpt.load(path)
        differ = {k: (v, getattr(self.config, k)) for k, v in s["config"].items()
                  if k in _TRAJECTORY and v != getattr(self.config, k)
                  and not (isinstance(v, list) and tuple(v) == getattr(self.config, k))}
        if differ:
            raise ValueError(f"Trainer.load_checkpoint: {path} was written with other settings "
                             f"(saved, now): {differ}")
        if set(s["optimizers"]) != set(self.optimizers):
            raise ValueError(f"Trainer.load_checkpoint: {path} has optimizers {sorted(s['optimizers'])}, "
                             f"this run {sorted(self.optimizers)}")
        self.model.load_state_dict(s["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(s["optimizers"][k])
        for k, sch in self.schedulers.items():
            sch.load_state_dict(s["schedulers"][k])
        B.set_rng_state(s["rng"])
        if self.masker is not None and s["masker"] is not None:
            self.masker.set_state(s["masker"])
        p = s["progress"]
        self.global_step, self.epoch, self.batch_in_epoch = p["global_step"], p["epoch"], p["batch_in_epoch"]
        self.bad_evals, self.stopped_early = p["bad_evals"], p["stopped_early"]
        self.train_seconds, self.train_tokens = p["train_seconds"], p["train_tokens"]
        self.best = dict(p["best"])
        self._since_eval = [dict(o) for o in p["since_eval"]]
        self.history = {k: list(v) for k, v in s["history"].items()}
        self._best_state = s.get("best_model")
        self._batches_epoch = None
        return self


# ----------------------------------------------------------------------------- the loops in one call

def fine_tune(model, train_data, val_data=None, **settings):
    """Plain fine-tuning (λ = 0) with a :class:`Trainer`; returns the trainer (``.history``, ...)."""
    settings["lam"] = 0.0
    t = Trainer(model, train_data, val_data, **settings)
    t.fit()
    return t


def train_mlm(model, train_data, masker, val_data=None, **settings):
    """Masked-LM training only (λ = 1); evaluation (when ``val_data`` is given) is the masked-LM
    loss on fixed masks.  Returns the trainer."""
    settings["lam"] = 1.0
    t = Trainer(model, train_data, val_data, masker=masker, **settings)
    t.fit()
    return t


def bidirectional_fine_tune(model, train_data, val_data, masker, lam=0.1, schedule="joint", **settings):
    """Document 002's bidirectional fine-tuning, λ·L_MLM + (1−λ)·L_task, "joint" or
    "alternating".  Returns the trainer."""
    t = Trainer(model, train_data, val_data, masker=masker, lam=lam, schedule=schedule, **settings)
    t.fit()
    return t


# ----------------------------------------------------------------------------- curves

def _smooth(values, window):
    steps = [i for i, v in enumerate(values) if v is not None]
    v = np.array([values[i] for i in steps], dtype=np.float64)
    if window > 1 and len(v) >= window:
        kernel = np.ones(window) / window
        v = np.convolve(v, kernel, mode="valid")
        steps = steps[window - 1:]
    return steps, v


def plot_history(history, path, smooth=20, title=None):
    """Save the training curves of a :class:`Trainer` history to a PNG: the losses (moving
    average over ``smooth`` steps) against the step, and the validation metrics against the
    step of each evaluation.  Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.subplots(1, 2)
    step = history["step"]
    both = any(v is not None for v in history.get("mlm_loss", [])) and \
        any(v is not None for v in history.get("task_loss", []))
    for key, label in (("loss", "λ·L_MLM + (1−λ)·L_task"), ("task_loss", "L_task"), ("mlm_loss", "L_MLM")):
        if key == "loss" and not both:            # λ = 0 or 1: the total is one of the parts
            continue
        idx, v = _smooth(history.get(key, []), smooth)
        if len(v):
            ax_loss.plot([step[i] for i in idx], v, label=label)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"training loss (mean of {smooth} steps)")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    step_e = history["eval_step"]
    scores = [k for k in history if k.startswith("val_") and "loss" not in k]
    losses = [k for k in history if k.startswith("val_") and "loss" in k]
    for k in scores:
        ax_val.plot(step_e, history[k], marker="o", label=k)
    ax_right = ax_val.twinx() if scores and losses else ax_val
    for k in losses:
        ax_right.plot(step_e, history[k], marker="s", linestyle="--", color="tab:red", label=k)
    ax_val.set_xlabel("step")
    ax_val.set_ylabel(", ".join(scores) if scores else ", ".join(losses))
    if ax_right is not ax_val:
        ax_right.set_ylabel(", ".join(losses))
        ax_right.legend(loc="lower right")
    if scores or losses:
        ax_val.legend(loc="upper left")
    ax_val.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    return path
