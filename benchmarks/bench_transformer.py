"""A Transformer masked-language-model training step, minibidir beside PyTorch CPU.

    python benchmarks/bench_transformer.py [--repeats 15] [--threads 2] [--dropout 0.1]
                                           [--memory] [--profile]

The model (float32), the same on both sides:

    token embedding (vocab 8000, d_model 256) + sinusoidal positional encoding
    -> 2 post-LN Transformer encoder layers (4 heads, feed-forward 1024, ReLU,
       dropout 0.1 in training mode on both sides; --dropout 0 to remove it)
    -> MLM head Linear(256 -> 8000) applied only to the 15% masked positions (their rows are
       gathered first) -> softmax cross-entropy
    Adam (lr 1e-4), batch 32, sequence 128: forward + backward + step.

1. Timing: both models hold the same weights and run in the same process under the same
   allocator settings (``minibidir.backend.tune_malloc()``) and thread count
   (``torch.set_num_threads``, OpenBLAS/OpenMP threads), alternating steps; the figure is the
   median of the per-repeat time ratios (the machines are noisy).  Before timing, one step
   runs in eval mode (dropout off, so both sides compute the same function) and its losses
   and updated weights must agree.
2. ``--memory``: peak resident memory of each side, each in its own subprocess that imports
   only its own library (the peak resident set, VmHWM), after a few training steps; reported both as the
   whole-process peak and as the growth over the process's size just before the first step
   (model, optimizer and data already built) - the step's working memory.
3. ``--profile``: cProfile of the minibidir step, the functions with the most own time.
"""
from __future__ import annotations

import argparse
import os
import sys


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (subprocesses)")
    ap.add_argument("--profile", action="store_true", help="also profile the minibidir step")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's allocator settings alone on both sides (no tune_malloc)")
    ap.add_argument("--memory-side", choices=["minibidir", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--memory-steps", type=int, default=4, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    # the same thread count for NumPy's BLAS as for PyTorch (set before NumPy is imported)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(ARGS.threads))

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

VOCAB, D_MODEL, NHEAD, FF, LAYERS, MASK_RATE, MASK_ID, LR = 8000, 256, 4, 1024, 2, 0.15, 1, 1e-4


def make_batch(batch, seq, seed=0):
    """Random token ids; 15% of the positions are replaced by [MASK] and are the only ones with
    a label.  Returns (inputs (B, S), flat indices of the masked positions (M,), labels (M,))."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=(batch, seq))
    n_mask = round(MASK_RATE * batch * seq)
    flat = np.sort(rng.choice(batch * seq, size=n_mask, replace=False))
    labels = ids.reshape(-1)[flat].copy()
    inputs = ids.copy()
    inputs.reshape(-1)[flat] = MASK_ID
    return inputs, flat, labels


# ----------------------------------------------------------------------------- minibidir

def build_minibidir(dropout, seq):
    from minibidir import nn, optim
    from minibidir import functional as F

    class MLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, D_MODEL)
            self.pos = nn.SinusoidalPositionalEncoding(D_MODEL, max_len=seq, batch_first=True)
            layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=dropout, activation="relu",
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, LAYERS)
            self.head = nn.Linear(D_MODEL, VOCAB)

        def forward(self, ids, flat, labels):
            h = self.encoder(self.pos(self.emb(ids)))                # (B, S, D)
            rows = h.reshape(-1, D_MODEL)[flat]                      # the masked positions only
            return F.cross_entropy(self.head(rows), labels)

    model = MLM()
    opt = optim.Adam(model.parameters(), lr=LR)

    def step(ids, flat, labels):
        loss = model(ids, flat, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return model, step


# ----------------------------------------------------------------------------- PyTorch

def build_torch(dropout, seq, pe_table):
    import torch

    class MLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, D_MODEL)
            self.register_buffer("pe", torch.as_tensor(pe_table), persistent=False)
            layer = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=dropout, activation="relu",
                                                     batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.head = torch.nn.Linear(D_MODEL, VOCAB)

        def forward(self, ids, flat, labels):
            h = self.encoder(self.emb(ids) + self.pe[: ids.shape[1]])
            rows = h.reshape(-1, D_MODEL)[flat]
            return torch.nn.functional.cross_entropy(self.head(rows), labels)

    model = MLM()
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def step(ids, flat, labels):
        loss = model(ids, flat, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return model, step


# ----------------------------------------------------------------------------- memory

def _status_mb(field):
    """VmRSS (now) or VmHWM (peak) of this process from /proc/self/status, in MiB.  (Not
    ``ru_maxrss``: on Linux a child started from a large parent inherits the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def memory_side(side, args):
    """Run in a subprocess: build one side only, train a few steps, print the RSS before the
    first step and the peak RSS."""
    if side == "minibidir":
        import minibidir as mb
        if not args.default_malloc:
            mb.backend.tune_malloc()
        mb.manual_seed(0)
        _, step = build_minibidir(args.dropout, args.seq)
        convert = lambda a: a  # noqa: E731
    else:
        import torch
        import minibidir as mb            # only for the same allocator setting and PE table
        if not args.default_malloc:
            mb.backend.tune_malloc()
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        from minibidir.nn.positional import _sinusoid_table
        _, step = build_torch(args.dropout, args.seq, _sinusoid_table(args.seq, D_MODEL).astype(np.float32))
        convert = torch.as_tensor
    ids, flat, labels = (convert(a) for a in make_batch(args.batch, args.seq))
    before = _status_mb("VmRSS")
    for _ in range(args.memory_steps):
        step(ids, flat, labels)
    print(f"{before:.1f} {_status_mb('VmHWM'):.1f}")


def measure_memory(args):
    import subprocess
    out = {}
    for side in ("minibidir", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-side", side, "--threads", str(args.threads),
               "--dropout", str(args.dropout), "--batch", str(args.batch), "--seq", str(args.seq)]
        if args.default_malloc:
            cmd.append("--default-malloc")
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        before, peak = map(float, res.stdout.split()[-2:])
        out[side] = (before, peak)
    (mb_before, mb_peak), (t_before, t_peak) = out["minibidir"], out["torch"]
    mb_step, t_step = mb_peak - mb_before, t_peak - t_before
    print(f"\n[2] peak memory (separate processes, peak resident set VmHWM, {args.memory_steps} training steps, "
          f"{'default malloc' if args.default_malloc else 'tune_malloc'})")
    print(f"    whole process:   minibidir {mb_peak:7.0f} MiB   torch {t_peak:7.0f} MiB   "
          f"ratio {mb_peak / t_peak:.2f}x   (torch's import alone is larger)")
    print(f"    step (peak - size before the first step): minibidir {mb_step:6.0f} MiB   torch {t_step:6.0f} MiB   "
          f"ratio {mb_step / t_step:.2f}x   target <= 1.3x")
    return mb_step / t_step


# ----------------------------------------------------------------------------- main

def main(args):
    if args.memory_side:
        memory_side(args.memory_side, args)
        return
    import torch
    import minibidir as mb
    if not args.default_malloc:
        mb.backend.tune_malloc()          # the same allocator settings for both sides
    torch.set_num_threads(args.threads)
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; dropout {args.dropout} (training mode)")

    mb.manual_seed(0)
    torch.manual_seed(0)
    m_model, m_step = build_minibidir(args.dropout, args.seq)
    t_model, t_step = build_torch(args.dropout, args.seq, m_model.pos.pe)
    assert list(m_model.state_dict()) == list(t_model.state_dict()), "parameter names differ"
    m_model.load_state_dict(t_model.state_dict())               # the same weights on both sides

    ids, flat, labels = make_batch(args.batch, args.seq)
    t_ids, t_flat, t_labels = torch.as_tensor(ids), torch.as_tensor(flat), torch.as_tensor(labels)

    # First step with dropout off (eval mode): the same function, so the same loss and update.
    m_model.eval()
    t_model.eval()
    l_mb, l_t = m_step(ids, flat, labels), t_step(t_ids, t_flat, t_labels)
    assert abs(l_mb - l_t) <= 1e-4 * abs(l_t), f"first-step losses differ: {l_mb} vs {l_t}"
    worst = max(float(np.abs(m_model.state_dict()[k] - v.detach().numpy()).max())
                for k, v in t_model.state_dict().items())
    assert worst < 1e-4, f"weights after the first Adam step differ by {worst}"
    print(f"first step (eval mode): loss minibidir {l_mb:.6f}  torch {l_t:.6f}  "
          f"(|diff| {abs(l_mb - l_t):.1e}); weights after the step agree to {worst:.1e}")
    m_model.train()
    t_model.train()

    for _ in range(2):                    # warm-up (allocator, caches)
        m_step(ids, flat, labels)
        t_step(t_ids, t_flat, t_labels)
    ratios, tm, tt = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        m_step(ids, flat, labels)
        t1 = time.perf_counter()
        t_step(t_ids, t_flat, t_labels)
        t2 = time.perf_counter()
        tm.append(t1 - t0)
        tt.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    print(f"\n[1] MLM step: emb {VOCAB}x{D_MODEL} + sinusoidal PE, {LAYERS} post-LN encoder layers "
          f"({NHEAD} heads, FFN {FF}, ReLU), head on the {len(flat)} masked rows; batch {args.batch}, "
          f"seq {args.seq}, float32, Adam: forward+backward+step")
    print(f"    minibidir {statistics.median(tm) * 1e3:7.1f} ms   torch {statistics.median(tt) * 1e3:7.1f} ms   "
          f"ratio (median of {args.repeats}) {statistics.median(ratios):.2f}x   "
          f"[min {min(ratios):.2f}, max {max(ratios):.2f}]   target <= 1.2x")
    # On a loaded machine the fastest step of each side is the best estimate of its unloaded time.
    print(f"    fastest step: minibidir {min(tm) * 1e3:7.1f} ms   torch {min(tt) * 1e3:7.1f} ms   "
          f"ratio {min(tm) / min(tt):.2f}x   (load average {os.getloadavg()[0]:.1f} at the end)")

    if args.memory:
        measure_memory(args)

    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        n = 5
        prof.enable()
        for _ in range(n):
            m_step(ids, flat, labels)
        prof.disable()
        st = pstats.Stats(prof)
        total = st.total_tt
        print(f"\n[3] cProfile of {n} minibidir steps ({total / n * 1e3:.0f} ms/step under the profiler); "
              f"own time per function:")
        rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:25]
        for (file, line, fn), (cc, nc, tottime, cumtime, _) in rows:
            where = f"{os.path.basename(file)}:{line}" if line else file
            print(f"    {tottime / total * 100:5.1f}%  {tottime / n * 1e3:7.2f} ms/step  {nc // n:5d} calls/step  "
                  f"{fn}  ({where})")


if __name__ == "__main__":
    main(ARGS)
