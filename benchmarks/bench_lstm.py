"""BiLSTM tagger training step: minibidir's fused LSTM beside PyTorch's nn.LSTM and beside a
PyTorch LSTMCell loop, in one process, with the same weights.

    python benchmarks/bench_lstm.py [--repeats 20] [--threads 2] [--memory]

Model: Embedding(8000, 128) -> LSTM(128, 256, num_layers=2, bidirectional=True,
batch_first=True) -> Linear(512, 50), token-level softmax cross-entropy; batch 32, sequence
length 64, float32; one step = forward + backward + plain SGD update.

Timing: the three implementations run alternately in the same process under the same
allocator settings (``minibidir.backend.tune_malloc``); each repeat times a few steps of
each, and the figures reported are the medians of the per-repeat ratios (these machines
are noisy).  Targets: minibidir <= 1.3x PyTorch's fused nn.LSTM and faster than the
LSTMCell loop.

Memory (``--memory``): each implementation runs alone in a fresh subprocess (model built,
data made, both libraries imported); the figure is the peak resident set during three
training steps (``VmHWM``, reset just before the first step through
``/proc/self/clear_refs``) minus the resident set at that moment: the peak of activations,
saved tensors, gradients and temporaries, plus any one-time allocations of the first step.
For minibidir, tracemalloc's peak over one step (NumPy reports its buffers to tracemalloc)
is shown as well.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

VOCAB, EMB, HIDDEN, LAYERS, TAGS = 8000, 128, 256, 2, 50
BATCH, SEQ, LR = 32, 64, 0.05


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (BATCH, SEQ))
    tags = rng.integers(0, TAGS, (BATCH, SEQ))
    return ids, tags


def make_weights(seed=0):
    """One set of float32 weights in PyTorch's state-dict layout, shared by every side."""
    import minibidir as mb
    mb.manual_seed(seed)
    model = build_mb()
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- minibidir

def build_mb():
    from minibidir import nn
    return nn.Sequential(nn.Embedding(VOCAB, EMB),
                         nn.LSTM(EMB, HIDDEN, num_layers=LAYERS, bidirectional=True, batch_first=True),
                         nn.Linear(2 * HIDDEN, TAGS))


def mb_stepper(weights, ids, tags):
    import minibidir as mb
    from minibidir import functional as F
    from minibidir import optim
    model = build_mb()
    model.load_state_dict(weights)
    model.train()
    emb, lstm, head = model
    opt = optim.SGD(model.parameters(), lr=LR)
    ids_t = mb.tensor(ids)
    tags_flat = tags.reshape(-1)

    def step():
        out, _ = lstm(emb(ids_t))
        logits = head(out).reshape(BATCH * SEQ, TAGS)
        loss = F.cross_entropy(logits, tags_flat)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


# ----------------------------------------------------------------------------- PyTorch

def torch_fused_stepper(weights, ids, tags):
    import torch
    model = torch.nn.Sequential(torch.nn.Embedding(VOCAB, EMB),
                                torch.nn.LSTM(EMB, HIDDEN, num_layers=LAYERS, bidirectional=True,
                                              batch_first=True),
                                torch.nn.Linear(2 * HIDDEN, TAGS))
    model.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
    model.train()
    emb, lstm, head = model
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    ids_t, tags_t = torch.tensor(ids), torch.tensor(tags.reshape(-1))

    def step():
        out, _ = lstm(emb(ids_t))
        loss = torch.nn.functional.cross_entropy(head(out).reshape(BATCH * SEQ, TAGS), tags_t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def torch_cell_stepper(weights, ids, tags):
    """The same model with the recurrence written as a Python loop over torch.nn.LSTMCell."""
    import torch
    emb = torch.nn.Embedding(VOCAB, EMB)
    emb.weight.data = torch.tensor(weights["0.weight"])
    cells = []
    for k in range(LAYERS):
        for sfx in ("", "_reverse"):
            cell = torch.nn.LSTMCell(EMB if k == 0 else 2 * HIDDEN, HIDDEN)
            cell.load_state_dict({n: torch.tensor(weights[f"1.{n}_l{k}{sfx}"])
                                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
            cells.append(cell)
    head = torch.nn.Linear(2 * HIDDEN, TAGS)
    head.load_state_dict({"weight": torch.tensor(weights["2.weight"]), "bias": torch.tensor(weights["2.bias"])})
    params = list(emb.parameters()) + [p for c in cells for p in c.parameters()] + list(head.parameters())
    opt = torch.optim.SGD(params, lr=LR)
    ids_t, tags_t = torch.tensor(ids), torch.tensor(tags.reshape(-1))

    def run(cell, xs, reverse):
        h = c = xs[0].new_zeros(BATCH, HIDDEN)
        outs = [None] * SEQ
        for t in (range(SEQ - 1, -1, -1) if reverse else range(SEQ)):
            h, c = cell(xs[t], (h, c))
            outs[t] = h
        return outs

    def step():
        x = emb(ids_t)                          # (B, T, E)
        for k in range(LAYERS):
            xs = x.unbind(1)
            f = run(cells[2 * k], xs, False)
            r = run(cells[2 * k + 1], xs, True)
            x = torch.stack([torch.cat([a, b], dim=1) for a, b in zip(f, r)], dim=1)
        loss = torch.nn.functional.cross_entropy(head(x).reshape(BATCH * SEQ, TAGS), tags_t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


STEPPERS = {"minibidir": mb_stepper, "torch-fused": torch_fused_stepper, "torch-cell": torch_cell_stepper}


# ----------------------------------------------------------------------------- memory

def _proc_status():
    """VmRSS (resident now) and VmHWM (peak resident since the last reset), in KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def _memory_child(name, threads, steps):
    import minibidir as mb
    import torch
    mb.backend.tune_malloc()
    torch.set_num_threads(threads)
    ids, tags = make_data()
    step = STEPPERS[name](make_weights(), ids, tags)
    try:
        with open("/proc/self/clear_refs", "w") as f:      # reset the peak (VmHWM) to the current RSS
            f.write("5")
        base = _proc_status()["VmRSS"]
        for _ in range(steps):
            step()
        peak = _proc_status()["VmHWM"]
    except OSError:                                      # no /proc: fall back to ru_maxrss
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(steps):
            step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = None
    if name == "minibidir":
        import tracemalloc
        tracemalloc.start()
        start, _ = tracemalloc.get_traced_memory()
        step()
        _, top = tracemalloc.get_traced_memory()
        traced = top - start
        tracemalloc.stop()
    return {"rss_delta_mib": (peak - base) / 1024, "traced_mib": None if traced is None else traced / 2 ** 20}


def measure_memory(threads, steps=3):
    out = {}
    for name in STEPPERS:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", name, "--threads", str(threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--steps", type=int, default=2, help="steps timed per repeat and implementation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (subprocesses)")
    ap.add_argument("--no-cell", action="store_true", help="skip the (slow) LSTMCell loop")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child, args.threads, 3)))
        return

    import torch
    import minibidir as mb
    mb.backend.tune_malloc()                 # the same allocator settings for every side
    torch.set_num_threads(args.threads)
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"BiLSTM tagger: Embedding({VOCAB}, {EMB}) -> LSTM({EMB}, {HIDDEN}, layers={LAYERS}, bidirectional) "
          f"-> Linear({2 * HIDDEN}, {TAGS}); batch {BATCH}, seq {SEQ}, float32; forward+backward+SGD")

    ids, tags = make_data()
    weights = make_weights()
    names = [n for n in STEPPERS if not (args.no_cell and n == "torch-cell")]
    steps = {n: STEPPERS[n](weights, ids, tags) for n in names}

    # Same weights, same data: the three loss trajectories must agree.
    losses = {n: [steps[n]() for _ in range(3)] for n in names}
    for n in names[1:]:
        assert np.allclose(losses[n], losses["minibidir"], rtol=2e-4), f"losses differ: {losses}"
    print("first losses: " + "; ".join(f"{n} {', '.join(f'{v:.5f}' for v in losses[n])}" for n in names))

    times = {n: [] for n in names}
    for _ in range(args.repeats):
        for n in names:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                steps[n]()
            times[n].append((time.perf_counter() - t0) / args.steps)
    med = {n: statistics.median(v) * 1e3 for n, v in times.items()}
    print(f"\nstep time (median of {args.repeats} repeats x {args.steps} steps):  " +
          "   ".join(f"{n} {med[n]:.1f} ms" for n in names))
    r_fused = statistics.median(a / b for a, b in zip(times["minibidir"], times["torch-fused"]))
    print(f"minibidir / torch nn.LSTM      = {r_fused:.2f}x   (median of per-repeat ratios; target <= 1.3x)")
    if "torch-cell" in names:
        r_cell = statistics.median(a / b for a, b in zip(times["minibidir"], times["torch-cell"]))
        print(f"minibidir / torch LSTMCell loop = {r_cell:.2f}x   (target < 1x)")

    if args.memory:
        mem = measure_memory(args.threads)
        print("\npeak memory of a training step (growth of peak RSS over the state before the first step, "
              "each implementation alone in a subprocess):")
        for n, m in mem.items():
            extra = f"   (tracemalloc peak {m['traced_mib']:.1f} MiB)" if m["traced_mib"] is not None else ""
            print(f"    {n:12s} {m['rss_delta_mib']:7.1f} MiB{extra}")
        print(f"minibidir / torch nn.LSTM memory = "
              f"{mem['minibidir']['rss_delta_mib'] / mem['torch-fused']['rss_delta_mib']:.2f}x   (target <= 1.3x)")


if __name__ == "__main__":
    main()
