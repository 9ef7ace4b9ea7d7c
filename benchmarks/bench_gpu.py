"""The same training steps on a GPU: minibidir on CuPy beside PyTorch CUDA, in one process.

    python benchmarks/bench_gpu.py [--repeats 50] [--warmup 5] [--mlm-batch 128] [--mlm-seq 128]
                                   [--lstm-batch 256] [--lstm-seq 64] [--matmul-n 8192] [--dropout 0.1]
                                   [--tf32] [--no-torch] [--no-kernels] [--json PATH]
    python benchmarks/bench_gpu.py --allow-missing     # no usable GPU: say so and exit 0 (else 2)
    python benchmarks/bench_gpu.py --dry-run-standin   # tiny sizes on the CPU stand-in for CuPy and
                                                       # PyTorch CPU: checks that the code runs

What it measures (float32 throughout):

(a) the Transformer masked-LM training step of ``bench_transformer.py`` (token embedding 8000x256
    + sinusoidal positions, 2 post-LN encoder layers with 4 heads and FFN 1024, the vocabulary
    head on the 15% masked rows only, Adam), at a larger batch;
(b) the BiLSTM tagger step of ``bench_lstm.py`` (Embedding 8000x128, 2-layer bidirectional
    LSTM of 256, Linear 512->50, SGD), at a larger batch;
(c) the card's matrix-product rate: a large float32 matmul through CuPy and through PyTorch
    (both cuBLAS), in TFLOP/s, and the rate each training step achieves, from its matrix-product
    FLOPs counted analytically (forward + backward = 3x the forward products; elementwise work
    is not counted);
(d) work per step: the autograd ops minibidir records, and, through PyTorch's profiler (CUPTI,
    which sees every kernel in the process, CuPy's included), the GPU kernels and memory
    copies/sets of one step of each side.

How it times: both models start from the same weights (loaded through ``load_state_dict``) and
first take one step in eval mode (dropout off): their losses and gradients must agree.  Then
each side is warmed up (CuPy compiles its kernels on first use, both libraries fill their memory
pools, cuBLAS picks its algorithms), and the two sides run alternately, each step bracketed by a
device-wide synchronisation (``cupy.cuda.Device().synchronize()``, ``torch.cuda.synchronize()``):
a GPU runs asynchronously, so without it a timer measures how fast Python queues the work, not
how fast the GPU does it.  The figures are medians (and the 10th-90th percentiles); the ratio is
the median of the per-repeat ratios.  TF32 is off on both sides unless ``--tf32``
(``CUPY_TF32=1`` and PyTorch's ``allow_tf32``).

Without CuPy or without a visible GPU the script prints why and exits with status 2 (0 with
``--allow-missing``); it never needs a GPU to import.  ``--dry-run-standin`` runs every code path
once with tiny sizes on minibidir's CPU stand-in for CuPy (and PyTorch on the CPU); its timings are
CPU timings of that check and say nothing about a GPU.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

EXIT_OK, EXIT_CHECK_FAILED, EXIT_NO_GPU = 0, 1, 2

HERE = os.path.dirname(os.path.abspath(__file__))

DRY_SIZES = {"mlm_batch": 4, "mlm_seq": 16, "lstm_batch": 4, "lstm_seq": 8, "matmul_n": 256,
             "repeats": 3, "warmup": 1}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per side first")
    ap.add_argument("--mlm-batch", type=int, default=128)
    ap.add_argument("--mlm-seq", type=int, default=128)
    ap.add_argument("--lstm-batch", type=int, default=256)
    ap.add_argument("--lstm-seq", type=int, default=64)
    ap.add_argument("--matmul-n", type=int, default=8192)
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout of the Transformer (training mode)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on both sides")
    ap.add_argument("--no-torch", action="store_true", help="time the CuPy side only")
    ap.add_argument("--no-kernels", action="store_true", help="skip the kernel count (PyTorch's profiler)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--allow-missing", action="store_true",
                    help="exit 0 instead of 2 when CuPy or a GPU is missing")
    ap.add_argument("--dry-run-standin", action="store_true",
                    help="tiny sizes on the CPU stand-in for CuPy (and PyTorch CPU): checks the code path")
    args = ap.parse_args(argv)
    if args.dry_run_standin:
        for k, v in DRY_SIZES.items():
            setattr(args, k, v)
    return args


# ----------------------------------------------------------------------------- is there a GPU?

def gpu_status():
    """``(True, description)`` when CuPy is installed and sees a GPU, else ``(False, reason)``.
    Never raises: a missing library, driver or device is an answer, not an error."""
    try:
        import cupy
    except Exception as e:                     # ImportError, or a CuPy built for another CUDA
        return False, (f"CuPy is not installed or does not import ({type(e).__name__}: {e}); "
                       f"install cupy-cuda12x (or cupy-cuda11x) on a machine with an NVIDIA GPU")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:                     # no driver, no device, CUDA_VISIBLE_DEVICES=""
        return False, f"CuPy {cupy.__version__} is installed but no CUDA device is usable ({type(e).__name__}: {e})"
    if n < 1:
        return False, f"CuPy {cupy.__version__} is installed but sees no GPU"
    try:
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        mem = props["totalGlobalMem"] / 2 ** 30
        cc = f"{props['major']}.{props['minor']}"
        rt = cupy.cuda.runtime.runtimeGetVersion()
        return True, (f"{name} (compute capability {cc}, {mem:.0f} GiB), CuPy {cupy.__version__}, "
                      f"CUDA runtime {rt // 1000}.{rt % 1000 // 10}")
    except Exception as e:
        return False, f"CuPy sees {n} device(s) but cannot use device 0 ({type(e).__name__}: {e})"


# ----------------------------------------------------------------------------- the two sides

class Sides:
    """What differs between a GPU run and the dry run: minibidir's backend and how each side
    synchronises with its device; PyTorch (optional) and its device."""

    def __init__(self, mode, want_torch, tf32):
        import minibidir as mb
        self.mb, self.mode = mb, mode
        if mode == "cupy":
            import cupy
            self.cupy = cupy
            self.mb_sync = cupy.cuda.Device().synchronize
            self.mb_label = "minibidir (CuPy)"
        else:
            self.cupy = None
            self.mb_sync = _nothing
            self.mb_label = "minibidir (stand-in, CPU)"
        self.torch = self.torch_device = None
        self.torch_sync = _nothing
        self.torch_note = None
        if not want_torch:
            self.torch_note = "PyTorch side skipped (--no-torch)"
            return
        try:
            import torch
        except ImportError:
            self.torch_note = "PyTorch is not installed: the PyTorch side is skipped"
            return
        if mode == "cupy":
            if not torch.cuda.is_available():
                self.torch_note = f"PyTorch {torch.__version__} sees no CUDA device: the PyTorch side is skipped"
                return
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            self.torch, self.torch_device, self.torch_sync = torch, "cuda", torch.cuda.synchronize
            self.torch_label = "PyTorch (CUDA)"
        else:
            torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
            self.torch, self.torch_device = torch, "cpu"
            self.torch_label = "PyTorch (CPU)"

    @contextlib.contextmanager
    def device(self):
        """minibidir's backend for the device side ("cuda" means CuPy or the stand-in)."""
        with self.mb.backend.backend(self.mode):
            yield

    def device_array(self, a):
        return self.mb.backend.array_module(self.mode).asarray(a)


def _nothing():
    return None


# ----------------------------------------------------------------------------- timing

def time_alternating(steps, syncs, warmup, repeats):
    """Per-step wall times of each step function, the sides taking turns; each step starts on
    an idle device and ends when the device has finished it (synchronised on both ends)."""
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        syncs[name]()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync = syncs[name]
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def summary(ts):
    q = np.quantile(ts, [0.1, 0.9])
    return {"median_s": statistics.median(ts), "p10_s": float(q[0]), "p90_s": float(q[1]), "n": len(ts)}


@contextlib.contextmanager
def count_autograd_ops():
    """Count the minibidir Functions (forward ops) recorded while the block runs."""
    from minibidir.autograd import Function
    original = Function.__dict__["apply"]
    counter = collections.Counter()

    def apply(cls, *inputs, **options):
        counter[cls.__name__] += 1
        return original.__func__(cls, *inputs, **options)

    Function.apply = classmethod(apply)
    try:
        yield counter
    finally:
        Function.apply = original


def count_gpu_work(torch, fn, sync, on_gpu):
    """GPU kernels, memory copies and memory sets during one call of ``fn``, read from a
    PyTorch profiler trace (CUPTI records every kernel of the process, whichever library
    launched it).  ``None`` where it cannot be measured, with the reason."""
    if torch is None:
        return None, "needs PyTorch's profiler"
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    sync()
    with profile(activities=activities) as prof:
        fn()
        sync()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f).get("traceEvents", [])
    finally:
        os.unlink(path)
    cats = collections.Counter(e.get("cat") for e in events if isinstance(e, dict))
    launches = sum(1 for e in events if isinstance(e, dict) and e.get("cat") in ("cuda_runtime", "cuda_driver")
                   and "aunch" in str(e.get("name", "")))
    work = {"kernels": cats.get("kernel", 0), "memcpy": cats.get("gpu_memcpy", 0),
            "memset": cats.get("gpu_memset", 0), "launch_calls": launches, "cpu_ops": cats.get("cpu_op", 0)}
    if not on_gpu:
        return work, "no CUDA device: only the trace parsing was exercised"
    if work["kernels"] == 0:
        return work, "the profiler recorded no kernels (CUPTI unavailable?)"
    return work, None


def device_matmul_rate(sides, lib, n, repeats):
    """Seconds per (n x n) @ (n x n) float32 product (median over ``repeats``), timed with
    device events; on the dry run with the host clock."""
    if lib == "cupy" and sides.cupy is not None:
        cp = sides.cupy
        a = cp.random.standard_normal((n, n), dtype=cp.float32)
        b = cp.random.standard_normal((n, n), dtype=cp.float32)
        for _ in range(3):
            a @ b
        ts = []
        for _ in range(repeats):
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            a @ b
            end.record()
            end.synchronize()
            ts.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
        return statistics.median(ts)
    if lib == "torch" and sides.torch_device == "cuda":
        torch = sides.torch
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        for _ in range(3):
            a @ b
        ts = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            ts.append(start.elapsed_time(end) / 1e3)
        return statistics.median(ts)
    # dry run: the host's products (NumPy for the stand-in's side, PyTorch CPU for the other)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    if lib == "torch":
        a, b = sides.torch.from_numpy(a), sides.torch.from_numpy(b)
    a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


# ----------------------------------------------------------------------------- FLOPs

def mlm_step_flops(batch, seq, n_masked, d, ff, layers, vocab):
    """Matrix-product FLOPs of one MLM training step: 3x those of the forward pass (the
    backward pass computes two products per forward product: the input's and the weight's
    gradient).  A product of (m x k) and (k x n) costs 2mkn."""
    tokens = batch * seq
    per_layer = (2 * tokens * d * 3 * d           # Q, K, V projections
                 + 2 * 2 * batch * seq * seq * d  # Q Kᵀ and weights @ V, all heads together
                 + 2 * tokens * d * d             # output projection
                 + 2 * 2 * tokens * d * ff)       # feed-forward, two layers
    forward = layers * per_layer + 2 * n_masked * d * vocab      # vocabulary head on the masked rows
    return 3 * forward


def lstm_step_flops(batch, seq, emb, hidden, layers, tags):
    """Matrix-product FLOPs of one BiLSTM tagger step (3x the forward products): per layer and
    direction the input projection x W_ihᵀ (all steps) and the recurrent h W_hhᵀ (every step)."""
    forward = 0
    for k in range(layers):
        inp = emb if k == 0 else 2 * hidden
        forward += 2 * (2 * batch * seq * inp * 4 * hidden + 2 * batch * seq * hidden * 4 * hidden)
    forward += 2 * batch * seq * 2 * hidden * tags
    return 3 * forward


# ----------------------------------------------------------------------------- (a) the MLM step

def mlm_pair(sides, args):
    """The MLM model of bench_transformer.py on both sides, same weights, same batch on the
    device.  Returns (mb step, torch step or None, eval-mode check, info)."""
    import bench_transformer as BT
    mb = sides.mb
    from minibidir import optim
    mb.manual_seed(0)
    m_model, _ = BT.build_minibidir(args.dropout, args.mlm_seq)          # built on the host
    ids, flat, labels = BT.make_batch(args.mlm_batch, args.mlm_seq)
    t_model = None
    torch = sides.torch
    if torch is not None:
        torch.manual_seed(0)
        t_model, _ = BT.build_torch(args.dropout, args.mlm_seq, m_model.pos.pe)
        m_model.load_state_dict(t_model.state_dict())                    # the same weights
        t_model.to(sides.torch_device)
    with sides.device():
        m_model.to("cuda")
    m_opt = optim.Adam(m_model.parameters(), lr=BT.LR)
    with sides.device():
        d_ids = mb.tensor(ids, device="cuda")
    d_flat, d_labels = sides.device_array(flat), sides.device_array(labels)

    def mb_forward():
        return m_model(d_ids, d_flat, d_labels)

    def mb_step():
        with sides.device():
            loss = mb_forward()
            m_opt.zero_grad()
            loss.backward()
            m_opt.step()
        return loss

    t_step = t_forward = None
    if t_model is not None:
        t_opt = torch.optim.Adam(t_model.parameters(), lr=BT.LR)
        dev = sides.torch_device
        t_ids, t_flat, t_labels = (torch.as_tensor(a).to(dev) for a in (ids, flat, labels))

        def t_forward():
            return t_model(t_ids, t_flat, t_labels)

        def t_step():
            loss = t_forward()
            t_opt.zero_grad(set_to_none=True)
            loss.backward()
            t_opt.step()
            return loss

    info = {"batch": args.mlm_batch, "seq": args.mlm_seq, "masked_rows": len(flat),
            "tokens": args.mlm_batch * args.mlm_seq,
            "flops": mlm_step_flops(args.mlm_batch, args.mlm_seq, len(flat), BT.D_MODEL, BT.FF, BT.LAYERS, BT.VOCAB),
            "what": (f"Transformer MLM step: emb {BT.VOCAB}x{BT.D_MODEL} + sinusoidal PE, {BT.LAYERS} post-LN layers "
                     f"({BT.NHEAD} heads, FFN {BT.FF}, ReLU, dropout {args.dropout}), head on the {len(flat)} masked rows; "
                     f"batch {args.mlm_batch} x seq {args.mlm_seq}; Adam; float32")}
    models = (m_model, t_model)
    return mb_step, t_step, (models, mb_forward, t_forward), info


# ----------------------------------------------------------------------------- (b) the BiLSTM step

def lstm_pair(sides, args):
    import bench_lstm as BL
    mb = sides.mb
    from minibidir import functional as F
    from minibidir import optim
    rng = np.random.default_rng(0)
    B_, T_ = args.lstm_batch, args.lstm_seq
    ids = rng.integers(0, BL.VOCAB, (B_, T_))
    tags = rng.integers(0, BL.TAGS, (B_, T_))
    mb.manual_seed(0)
    m_model = BL.build_mb()                                             # built on the host
    weights = {k: np.array(v, copy=True) for k, v in m_model.state_dict().items()}
    with sides.device():
        m_model.to("cuda")
        d_ids = mb.tensor(ids, device="cuda")
    d_tags = sides.device_array(tags.reshape(-1))
    m_opt = optim.SGD(m_model.parameters(), lr=BL.LR)
    emb, lstm, head = m_model

    def mb_forward():
        out, _ = lstm(emb(d_ids))
        return F.cross_entropy(head(out).reshape(B_ * T_, BL.TAGS), d_tags)

    def mb_step():
        with sides.device():
            loss = mb_forward()
            m_opt.zero_grad()
            loss.backward()
            m_opt.step()
        return loss

    t_model = t_step = t_forward = None
    torch = sides.torch
    if torch is not None:
        t_model = torch.nn.Sequential(
            torch.nn.Embedding(BL.VOCAB, BL.EMB),
            torch.nn.LSTM(BL.EMB, BL.HIDDEN, num_layers=BL.LAYERS, bidirectional=True, batch_first=True),
            torch.nn.Linear(2 * BL.HIDDEN, BL.TAGS))
        t_model.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})       # the same weights
        t_model.to(sides.torch_device)
        t_opt = torch.optim.SGD(t_model.parameters(), lr=BL.LR)
        t_emb, t_lstm, t_head = t_model
        t_ids = torch.as_tensor(ids).to(sides.torch_device)
        t_tags = torch.as_tensor(tags.reshape(-1)).to(sides.torch_device)

        def t_forward():
            out, _ = t_lstm(t_emb(t_ids))
            return torch.nn.functional.cross_entropy(t_head(out).reshape(B_ * T_, BL.TAGS), t_tags)

        def t_step():
            loss = t_forward()
            t_opt.zero_grad(set_to_none=True)
            loss.backward()
            t_opt.step()
            return loss

    info = {"batch": B_, "seq": T_, "tokens": B_ * T_,
            "flops": lstm_step_flops(B_, T_, BL.EMB, BL.HIDDEN, BL.LAYERS, BL.TAGS),
            "what": (f"BiLSTM tagger step: Embedding({BL.VOCAB}, {BL.EMB}) -> LSTM({BL.EMB}, {BL.HIDDEN}, "
                     f"layers={BL.LAYERS}, bidirectional) -> Linear({2 * BL.HIDDEN}, {BL.TAGS}); "
                     f"batch {B_} x seq {T_}; SGD; float32")}
    return mb_step, t_step, ((m_model, t_model), mb_forward, t_forward), info


# ----------------------------------------------------------------------------- the same function on both sides

def check_same_function(sides, check):
    """One forward + backward in eval mode (dropout off): the losses and every parameter's
    gradient must agree (float32, different kernels: to 1e-3 of the gradient's scale)."""
    (m_model, t_model), mb_forward, t_forward = check
    if t_model is None:
        return "no PyTorch side to compare with"
    mb = sides.mb
    m_model.eval()
    t_model.eval()
    with sides.device():
        m_model.zero_grad()
        loss = mb_forward()
        loss.backward()
    t_model.zero_grad(set_to_none=True)
    t_loss = t_forward()
    t_loss.backward()
    l_mb, l_t = float(loss.item()), float(t_loss.item())
    if not abs(l_mb - l_t) <= 1e-3 * abs(l_t):
        raise AssertionError(f"the losses differ: minibidir {l_mb}, PyTorch {l_t}")
    t_grads = dict(t_model.named_parameters())
    worst = 0.0
    for name, p in m_model.named_parameters():
        tg = t_grads[name].grad
        g_mb = np.zeros(p.shape, np.float32) if p.grad is None else mb.to_numpy(p.grad.data)
        g_t = np.zeros(p.shape, np.float32) if tg is None else tg.detach().cpu().numpy()
        scale = float(np.abs(g_t).max()) or 1.0
        err = float(np.abs(g_mb - g_t).max()) / scale
        if err > 1e-3:
            raise AssertionError(f"the gradients of {name} differ by {err:.2e} of their largest entry")
        worst = max(worst, err)
    with sides.device():
        m_model.zero_grad()
    t_model.zero_grad(set_to_none=True)
    m_model.train()
    t_model.train()
    return f"same function: loss {l_mb:.6f} vs {l_t:.6f}; gradients agree to {worst:.1e} of their scale"


# ----------------------------------------------------------------------------- one benchmark

def run_pair(name, sides, args, make, matmul_peak):
    mb_step, t_step, check, info = make(sides, args)
    print(f"\n[{name}] {info['what']}")
    print(f"    {check_same_function(sides, check)}")
    steps, syncs, labels = {"mb": mb_step}, {"mb": sides.mb_sync}, {"mb": sides.mb_label}
    if t_step is not None:
        steps["torch"], syncs["torch"], labels["torch"] = t_step, sides.torch_sync, sides.torch_label
    times = time_alternating(steps, syncs, args.warmup, args.repeats)
    with count_autograd_ops() as ops:
        mb_step()
        sides.mb_sync()
    result = {"info": info, "sides": {}, "autograd_ops_per_step": sum(ops.values()),
              "autograd_ops_by_kind": dict(ops.most_common())}
    on_gpu = sides.mode == "cupy"
    for key in steps:
        s = summary(times[key])
        s["tflops"] = info["flops"] / s["median_s"] / 1e12
        s["tokens_per_s"] = info["tokens"] / s["median_s"]
        s["fraction_of_matmul_rate"] = s["tflops"] / matmul_peak if matmul_peak else None
        if not args.no_kernels:
            work, why = count_gpu_work(sides.torch, steps[key], syncs[key], on_gpu)
            s["gpu_work"], s["gpu_work_note"] = work, why
        result["sides"][key] = s
    print(f"    matrix-product FLOPs per step (counted): {info['flops'] / 1e9:.2f} GFLOP; "
          f"minibidir records {result['autograd_ops_per_step']} autograd ops per step")
    print(f"    {'side':28s} {'median ms':>10s} {'p10-p90 ms':>16s} {'TFLOP/s':>9s} {'% matmul':>9s} "
          f"{'tokens/s':>11s} {'kernels':>8s} {'copies+sets':>12s}")
    for key, s in result["sides"].items():
        work = s.get("gpu_work")
        note = s.get("gpu_work_note")
        kern = "-" if work is None or note else str(work["kernels"])
        cps = "-" if work is None or note else str(work["memcpy"] + work["memset"])
        frac = "-" if s["fraction_of_matmul_rate"] is None else f"{100 * s['fraction_of_matmul_rate']:.1f}%"
        print(f"    {labels[key]:28s} {s['median_s'] * 1e3:10.2f} {s['p10_s'] * 1e3:7.2f}-{s['p90_s'] * 1e3:<8.2f} "
              f"{s['tflops']:9.3f} {frac:>9s} {s['tokens_per_s']:11.0f} {kern:>8s} {cps:>12s}")
    notes = {s.get("gpu_work_note") for s in result["sides"].values()} - {None}
    for n in sorted(notes):
        print(f"    kernel count: not measured ({n})")
    if "torch" in steps:
        ratios = [a / b for a, b in zip(times["mb"], times["torch"])]
        result["ratio_median"] = statistics.median(ratios)
        print(f"    {labels['mb']} / {labels['torch']} = {result['ratio_median']:.2f}x "
              f"(median of {len(ratios)} per-repeat ratios; min {min(ratios):.2f}, max {max(ratios):.2f})")
    return result


# ----------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"                   # read when CuPy is imported
    if args.dry_run_standin:
        mode = "standin"
        print("DRY RUN on the CPU stand-in for CuPy (tiny sizes): this checks that the benchmark's code runs.\n"
              "The timings below are CPU timings of that check, NOT GPU measurements.")
    else:
        ok, desc = gpu_status()
        if not ok:
            print(f"bench_gpu: nothing was measured: {desc}.\n"
                  f"  This benchmark needs CuPy and an NVIDIA GPU ('--dry-run-standin' runs its code path on the CPU "
                  f"stand-in instead).", file=sys.stderr)
            return EXIT_OK if args.allow_missing else EXIT_NO_GPU
        mode = "cupy"
        print(f"GPU: {desc}")

    sys.path.insert(0, HERE)                            # bench_transformer, bench_lstm: the CPU benchmarks' models
    backend_env = os.environ.pop("MINIBIDIR_BACKEND", None)    # this script chooses the backends itself
    try:
        import minibidir  # noqa: F401
    except RuntimeError as e:
        print(f"bench_gpu: minibidir cannot start: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    finally:
        if backend_env is not None:
            os.environ["MINIBIDIR_BACKEND"] = backend_env
    sides = Sides(mode, not args.no_torch, args.tf32)
    print(f"numpy {np.__version__}; " + (f"torch {sides.torch.__version__} on {sides.torch_device}"
                                          if sides.torch is not None else sides.torch_note)
          + f"; TF32 {'allowed' if args.tf32 else 'off'}; {args.warmup} warm-up + {args.repeats} timed steps per side")

    results = {"mode": mode, "args": vars(args)}
    n = args.matmul_n
    rates = {}
    for lib in ("cupy", "torch"):
        if lib == "torch" and sides.torch is None:
            continue
        secs = device_matmul_rate(sides, lib, n, max(5, args.repeats // 5))
        rates[lib] = 2 * n ** 3 / secs / 1e12
    peak = max(rates.values())
    where = "the card" if mode == "cupy" else "the host CPU (dry run)"
    print(f"\n[c] float32 matmul {n}x{n} @ {n}x{n} on {where}: " +
          ", ".join(f"{'CuPy' if k == 'cupy' else 'PyTorch'} {v:.2f} TFLOP/s" for k, v in rates.items()) +
          f"  -> reference rate {peak:.2f} TFLOP/s")
    results["matmul"] = {"n": n, "tflops": rates, "reference_tflops": peak}

    try:
        results["mlm"] = run_pair("a", sides, args, mlm_pair, peak)
        results["lstm"] = run_pair("b", sides, args, lstm_pair, peak)
    except AssertionError as e:
        print(f"bench_gpu: check failed: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    print("\n[d] kernels, copies+sets: one step of each side, from PyTorch's profiler (CUPTI). Autograd ops: the "
          "minibidir Functions one step records; each launches at least one kernel forward and more backward.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
        print(f"results written to {args.json}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
