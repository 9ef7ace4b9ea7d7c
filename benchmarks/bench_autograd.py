"""Autograd overhead and a small training step, minibidir beside PyTorch CPU in one process.

    python benchmarks/bench_autograd.py [--repeats 30] [--threads 2]

1. Per-op overhead: a chain of 1,000 small ops (shape (64,)) forward + backward.
2. MLP training step: 784-1024-1024-10, ReLU, softmax cross-entropy, batch 256, float32,
   forward + backward + SGD update.

Both sides run alternately in the same process under the same allocator settings, and
the reported figure is the median of the per-repeat time ratios (the machines are noisy).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np


def _timeit(fn, warmup=3, repeats=1):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def chain_mb(mb, n_ops, x0, c):
    x = mb.tensor(x0, requires_grad=True)
    cc = mb.tensor(c)
    y = x
    for i in range(n_ops // 4):
        y = y * cc
        y = y + cc
        y = y.tanh()
        y = y - cc
    y.sum().backward()
    return x.grad


def chain_torch(torch, n_ops, x0, c):
    x = torch.tensor(x0, requires_grad=True)
    cc = torch.tensor(c)
    y = x
    for i in range(n_ops // 4):
        y = y * cc
        y = y + cc
        y = y.tanh()
        y = y - cc
    y.sum().backward()
    return x.grad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    import minibidir as mb
    from minibidir import functional as F
    mb.backend.tune_malloc()          # the same allocator settings for both sides
    torch.set_num_threads(args.threads)
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")

    # ------------------------------------------------------------------ 1. overhead
    n_ops = 1000
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(64).astype(np.float32)
    c = (0.5 + rng.random(64)).astype(np.float32)
    g_mb = chain_mb(mb, n_ops, x0, c).numpy()
    g_t = chain_torch(torch, n_ops, x0, c).numpy()
    assert np.allclose(g_mb, g_t, rtol=1e-4, atol=1e-6), "chain gradients differ"
    ratios, t_mb, t_t = [], [], []
    for _ in range(args.repeats):
        a = _timeit(lambda: chain_mb(mb, n_ops, x0, c), warmup=1)
        b = _timeit(lambda: chain_torch(torch, n_ops, x0, c), warmup=1)
        t_mb.append(a)
        t_t.append(b)
        ratios.append(a / b)
    print(f"\n[1] chain of {n_ops} small ops, forward+backward")
    print(f"    minibidir {statistics.median(t_mb) * 1e6 / n_ops:7.2f} us/op   "
          f"torch {statistics.median(t_t) * 1e6 / n_ops:7.2f} us/op   "
          f"ratio (median of {args.repeats}) {statistics.median(ratios):.2f}x   target <= 2x")

    # ------------------------------------------------------------------ 2. MLP step
    sizes = [784, 1024, 1024, 10]
    batch, lr = 256, 0.01
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    Y = rng.integers(0, sizes[-1], batch)
    init = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(fan_in)
        init.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                     rng.uniform(-bound, bound, fan_out).astype(np.float32)))

    mb_params = [(mb.tensor(w.copy(), requires_grad=True), mb.tensor(b.copy(), requires_grad=True))
                 for w, b in init]
    t_params = [(torch.tensor(w.copy(), requires_grad=True), torch.tensor(b.copy(), requires_grad=True))
                for w, b in init]
    t_opt = torch.optim.SGD([p for wb in t_params for p in wb], lr=lr)
    Xm, Xt, Yt = mb.tensor(X), torch.tensor(X), torch.tensor(Y)

    def step_mb():
        h = Xm
        for i, (w, b) in enumerate(mb_params):
            h = F.linear(h, w, b)
            if i < len(mb_params) - 1:
                h = F.relu(h)
        loss = F.cross_entropy(h, Y)
        for w, b in mb_params:
            w.grad = b.grad = None
        loss.backward()
        with mb.no_grad():
            for w, b in mb_params:
                w.data -= lr * w.grad.data
                b.data -= lr * b.grad.data
        return loss.item()

    def step_torch():
        h = Xt
        for i, (w, b) in enumerate(t_params):
            h = torch.nn.functional.linear(h, w, b)
            if i < len(t_params) - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, Yt)
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()
        return loss.item()

    # Same weights, same data: the two trajectories must agree.
    l_mb = [step_mb() for _ in range(3)]
    l_t = [step_torch() for _ in range(3)]
    assert np.allclose(l_mb, l_t, rtol=1e-4), f"MLP losses differ: {l_mb} vs {l_t}"
    ratios, t_mb, t_t = [], [], []
    for _ in range(args.repeats):
        a = _timeit(step_mb, warmup=1, repeats=2)
        b = _timeit(step_torch, warmup=1, repeats=2)
        t_mb.append(a)
        t_t.append(b)
        ratios.append(a / b)
    flops = 2 * batch * sum(i * o for i, o in zip(sizes[:-1], sizes[1:])) * 3
    print(f"\n[2] MLP {'-'.join(map(str, sizes))}, batch {batch}, float32: forward+backward+SGD")
    print(f"    minibidir {statistics.median(t_mb) * 1e3:7.2f} ms   torch {statistics.median(t_t) * 1e3:7.2f} ms   "
          f"ratio (median of {args.repeats}) {statistics.median(ratios):.2f}x   target <= 1.5x")
    print(f"    ({flops / statistics.median(t_mb) / 1e9:.0f} GFLOP/s minibidir, "
          f"{flops / statistics.median(t_t) / 1e9:.0f} GFLOP/s torch, counting 3x the forward matmuls)")


if __name__ == "__main__":
    main()
