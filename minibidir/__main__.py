"""The command line: ``python -m minibidir <command> [options]``.

Commands
  autograd   chapter 1's example end to end: a small network trained on a two-spiral data
             set with the autograd engine, its gradients checked against finite differences,
             the loss curve and decision regions saved as a plot.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _spirals(n_per_class, rng, noise=0.15):
    """Two interleaved spirals in the plane: (2n, 2) points and 0/1 labels."""
    t = np.sqrt(rng.random(n_per_class)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.standard_normal((2 * n_per_class, 2)) / 3
    y = np.concatenate([np.zeros(n_per_class, np.int64), np.ones(n_per_class, np.int64)])
    return x, y


def run_autograd_example(steps=1500, hidden=64, lr=0.05, seed=0, out_dir="runs", device="cpu",
                         progress=True, plot=True):
    """Train a 2-hidden-layer tanh network on two spirals with the raw Tensor API.

    Returns a dict with the final loss, the training accuracy and the gradient check result.
    """
    import minibidir as mb
    from minibidir import functional as F

    rng = np.random.default_rng(seed)
    mb.manual_seed(seed)
    x_np, y_np = _spirals(200, rng)
    x = mb.tensor(x_np.astype(np.float32), device=device)
    y = y_np if device == "cpu" else mb.tensor(y_np, device=device).data

    def init(fan_in, fan_out):
        bound = 1 / np.sqrt(fan_in)
        w = mb.tensor(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32), requires_grad=True, device=device)
        b = mb.tensor(np.zeros(fan_out, np.float32), requires_grad=True, device=device)
        return w, b

    params = [init(2, hidden), init(hidden, hidden), init(hidden, 2)]

    def forward(inp, ps):
        h = inp
        for i, (w, b) in enumerate(ps):
            h = F.linear(h, w, b)
            if i < len(ps) - 1:
                h = F.tanh(h)
        return h

    # Gradient check of the whole model in float64 on a few points: backprop == finite differences.
    ps64 = [(mb.tensor(w.numpy().astype(np.float64), requires_grad=True),
             mb.tensor(b.numpy().astype(np.float64), requires_grad=True)) for w, b in params]
    xs64 = mb.tensor(x_np[:8].astype(np.float64))
    flat = [p for wb in ps64 for p in wb]
    grad_ok = mb.gradcheck(lambda *p: F.cross_entropy(forward(xs64, list(zip(p[::2], p[1::2]))), y_np[:8]),
                           *flat)

    # Plain gradient descent with momentum, written out by hand (optimizers come in chapter 6).
    velocity = [np.zeros_like(p.numpy()) for wb in params for p in wb]
    velocity = [mb.tensor(v, device=device).data for v in velocity]
    losses = []
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="training", unit="step", leave=False)
    t0 = time.perf_counter()
    for _ in iterator:
        loss = F.cross_entropy(forward(x, params), y)
        for wb in params:
            for p in wb:
                p.grad = None
        loss.backward()
        with mb.no_grad():
            for v, p in zip(velocity, [p for wb in params for p in wb]):
                v *= 0.9
                v += p.grad.data
                p.data -= lr * v
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    with mb.no_grad():
        pred = forward(x, params).numpy().argmax(axis=1)
    acc = float((pred == y_np).mean())

    plot_path = None
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        a1.plot(losses)
        a1.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="training loss")
        g = np.linspace(-1.3, 1.3, 200)
        gx, gy = np.meshgrid(g, g)
        with mb.no_grad():
            grid = mb.tensor(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32), device=device)
            zz = F.softmax(forward(grid, params), axis=1).numpy()[:, 1].reshape(gx.shape)
        a2.contourf(gx, gy, zz, levels=20, cmap="RdBu_r", alpha=0.6)
        a2.scatter(x_np[:, 0], x_np[:, 1], c=y_np, cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.2)
        a2.set(title=f"decision regions (train accuracy {acc:.1%})", aspect="equal")
        fig.tight_layout()
        plot_path = out / "autograd_spirals.png"
        fig.savefig(plot_path, dpi=110)
        plt.close(fig)
    return {"loss": losses[-1], "accuracy": acc, "gradcheck": grad_ok, "seconds": seconds,
            "steps": steps, "plot": plot_path}


def _cmd_autograd(args):
    res = run_autograd_example(steps=args.steps, seed=args.seed, out_dir=args.out, device=args.device,
                               progress=not args.no_progress)
    print(f"gradient check of the model (float64, finite differences): {'passed' if res['gradcheck'] else 'FAILED'}")
    print(f"trained {res['steps']} steps in {res['seconds']:.1f} s: final loss {res['loss']:.4f}, "
          f"train accuracy {res['accuracy']:.1%}")
    print(f"plot saved to {res['plot']}")
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="minibidir", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="command")
    a = sub.add_parser("autograd", help="chapter 1's example: train a small net on two spirals")
    a.add_argument("--steps", type=int, default=1500, help="gradient steps (default 1500)")
    a.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    a.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    a.add_argument("--out", default="runs", help="output directory for the plot (default runs/)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_autograd)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if getattr(args, "steps", 1) <= 0:
        parser.error("--steps must be positive")
    try:
        return args.func(args)
    except RuntimeError as e:          # e.g. --device cuda without a GPU
        print(f"minibidir: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
