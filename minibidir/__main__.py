"""The command line: ``python -m minibidir <command> [options]``.

Commands
  demo       the main example, offline: fill in a hidden word of real English text (the
             documentation that ships with Python) from its left context only, or from both
             sides; trains a left-to-right LSTM, a BiLSTM, a causal Transformer and a full
             (unmasked) one at equal parameter budgets, prints the accuracy table and saves
             the bar chart (runs/demo_cloze.png).  About a minute on two CPU cores.
  cloze      experiment 1 in full: the seven cloze models (LSTM and Transformer; left, right,
             two-tower and full bidirectional) on the stdlib text, WikiText-2 or
             tiny-shakespeare; table, plot (runs/cloze.png) and optionally the results as JSON.
  pos        experiment 2: part-of-speech tagging on UD English EWT with a unidirectional and a
             bidirectional LSTM, words only or words + characters, at equal parameter budgets;
             the accuracy table beside published figures, optionally the results as JSON.
  seq2seq    experiment 3: character-level lemmatisation on UD English EWT (studies -> study,
             went -> go): a left-to-right vs a bidirectional LSTM encoder with the same attention
             decoder, the aligned BiLSTMDecoder, and a Seq2SeqBiTransformer decoded greedily, by
             beam search and by beam search + right-to-left reranking; table, bar chart
             (runs/seq2seq.png) and optionally the results as JSON.
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


# ----------------------------------------------------------------------------- experiment 1: cloze

def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _model_list(text):
    from .experiments.cloze import MODELS
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(bad) or repr(text)}; "
                                         f"choose from {', '.join(MODELS)}")
    return tuple(names)


def _run_cloze_command(args, plot_name, settings, json_path=None):
    from .backend import tune_malloc
    from .experiments import cloze
    tune_malloc()
    progress = not args.no_progress
    t0 = time.perf_counter()
    save = (lambda partial: cloze.save_json(partial, json_path)) if json_path else None   # results as they come
    res = cloze.run_cloze(data=args.data, epochs=args.epochs, seed=args.seed, quick=args.quick,
                          device=args.device, out_dir=args.out, progress=progress, plot_name=plot_name,
                          settings=settings, log=print, on_model=save)
    print()
    print(res["table"])
    print()
    by = {r["model"]: r["accuracy"] for r in res["models"]}
    for uni, bi, family in (("lstm-left", "bilstm", "LSTM"), ("tf-left", "tf-full", "Transformer"),
                            ("tf-left", "tf-two-tower", "Transformer (two towers)")):
        if uni in by and bi in by:
            print(f"{family}: left context only {100 * by[uni]:.1f}% -> both sides {100 * by[bi]:.1f}% "
                  f"({100 * (by[bi] - by[uni]):+.1f} points)")
    print(f"plot saved to {res['plot']}  ({time.perf_counter() - t0:.0f} s in all)")
    return res


def _cmd_demo(args):
    from .experiments import cloze
    settings = None if args.quick else dict(cloze.DEMO)
    _run_cloze_command(args, "demo_cloze.png", settings)
    return 0


def _cmd_cloze(args):
    settings = {"context": args.context, "vocab_size": args.vocab_size, "max_train": args.max_train,
                "max_eval": args.max_eval}
    settings = {k: v for k, v in settings.items() if v is not None}
    if args.models:
        settings["models"] = args.models
    res = _run_cloze_command(args, "cloze.png", settings, args.json)
    if args.json:
        from .experiments.cloze import save_json
        print(f"results saved to {save_json(res, args.json)}")
    return 0


# ----------------------------------------------------------------------------- experiments 2 and 3

_UD_TREEBANKS = ["ud_english_ewt"]          # the registered UD treebanks with train/dev/test splits


def _name_list(text, known, what):
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or repr(text)}; "
                                         f"choose from {', '.join(known)}")
    return tuple(names)


def _pos_variant_list(text):
    from .experiments.pos_tagging import VARIANTS
    return _name_list(text, VARIANTS, "variant(s)")


def _seq2seq_model_list(text):
    from .experiments.seq2seq import MODELS
    return _name_list(text, MODELS, "model(s)")


def _cmd_pos(args):
    from .backend import tune_malloc
    from .experiments import pos_tagging
    tune_malloc()
    settings = {"dataset": args.data}
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("train_limit", args.max_train)):
        if value is not None:
            settings[key] = value
    progress = not args.no_progress
    variants = args.variants or tuple(pos_tagging.VARIANTS)
    out = pos_tagging.compare(settings, quick=args.quick, variants=variants, match_params=not args.no_match_params,
                              progress=progress, log=None if progress else print)
    print()
    print(out["table"])
    by = {r["variant"]: r["test_acc"] for r in out["results"]}
    for uni, bi, what in (("uni-word", "bi-word", "words"), ("uni-char", "bi-char", "words + characters")):
        if uni in by and bi in by:
            print(f"{what}: left-to-right {100 * by[uni]:.2f}% -> bidirectional {100 * by[bi]:.2f}% "
                  f"({100 * (by[bi] - by[uni]):+.2f} points)")
    if args.json:
        import json
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump([pos_tagging._jsonable(r) for r in out["results"]], fh, indent=1)
        print(f"results saved to {path}")
    return 0


def _cmd_seq2seq(args):
    from .backend import tune_malloc
    from .experiments import seq2seq
    tune_malloc()
    settings = {"dataset": args.data}
    for key, value in (("epochs", args.epochs), ("seed", args.seed), ("models", args.models),
                       ("train_limit", args.max_train), ("beam_size", args.beam_size)):
        if value is not None:
            settings[key] = value
    if args.demo:
        settings = dict(seq2seq.DEMO, **settings)
    progress = not args.no_progress
    t0 = time.perf_counter()
    res = seq2seq.run(settings, quick=args.quick, device=args.device, progress=progress,
                      log=None if progress else print)
    print()
    print(res["table"])
    print()
    rows = {(r["model"], r["decoding"]): r for r in res["rows"]}
    uni, bi = rows.get(("uni-lstm", "greedy")), rows.get(("bi-lstm", "greedy"))
    if uni and bi:
        print(f"encoder: left-to-right {100 * uni['test']['type_em']:.2f}% -> bidirectional "
              f"{100 * bi['test']['type_em']:.2f}% exact match "
              f"({100 * (bi['test']['type_em'] - uni['test']['type_em']):+.2f} points; unseen types "
              f"{100 * (bi['test']['unseen_em'] - uni['test']['unseen_em']):+.2f})")
    seq2seq.plot_results(res, Path(args.out) / "seq2seq.png")
    if args.json:
        print(f"results saved to {seq2seq.save_json(res, args.json)}")
    print(f"plot saved to {Path(args.out) / 'seq2seq.png'}  ({time.perf_counter() - t0:.0f} s in all)")
    return 0


def _add_common(a, default_epochs, plot):
    a.add_argument("--data", choices=["stdlib", "wikitext2", "tiny_shakespeare"], default="stdlib",
                   help="text to train and evaluate on (default stdlib: Python's own documentation, offline; "
                        "the others come from the data mirror or cache, or are downloaded)")
    a.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    a.add_argument("--epochs", type=_positive_int, default=None, help=f"passes over the training items "
                                                                      f"(default {default_epochs})")
    a.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    a.add_argument("--out", default="runs", help=f"output directory for the plot (default runs/, file {plot})")
    a.add_argument("--quick", action="store_true", help="a tiny setting (two LSTMs, seconds), for tests")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")


def _command_summary(sub):
    """One usage line per command, for the top-level help."""
    import textwrap
    lines = ["commands and their options:"]
    for name, sp in sub.choices.items():
        usage = " ".join(sp.format_usage().split())[len("usage: "):]
        lines.append(textwrap.fill(usage, width=96, initial_indent="  ",
                                   subsequent_indent=" " * (len(f"minibidir {name} ") + 2)))
    lines.append("")
    lines.append("python -m minibidir COMMAND --help describes each option.")
    return "\n".join(lines)


def build_parser():
    from .experiments.cloze import DEMO, FULL
    p = argparse.ArgumentParser(prog="minibidir", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="command")

    d = sub.add_parser("demo", help="the main example: uni- vs bidirectional cloze on Python's own docs, "
                                    "about a minute",
                       description="Fill in a hidden word from its left context only (LSTM, causal "
                                   "Transformer) or from both sides (BiLSTM, full Transformer), at equal "
                                   "parameter budgets; prints the accuracy table, saves a bar chart.")
    _add_common(d, DEMO["epochs"], "demo_cloze.png")
    d.set_defaults(func=_cmd_demo)

    c = sub.add_parser("cloze", help="experiment 1 in full: seven cloze models, left / right / both sides",
                       description="Cloze on real text: predict a hidden word from its left context, its "
                                   "right context, or both, with LSTMs and Transformers (causal, anti-causal, "
                                   "two-tower, full) at equal parameter budgets.")
    _add_common(c, FULL["epochs"], "cloze.png")
    c.add_argument("--models", type=_model_list, default=None,
                   help="comma-separated, from lstm-left, lstm-right, bilstm, tf-left, tf-right, tf-two-tower, "
                        "tf-full (default: all)")
    c.add_argument("--context", type=_positive_int, default=None,
                   help=f"words of context on each side of the gap (default {FULL['context']})")
    c.add_argument("--vocab-size", type=_positive_int, default=None,
                   help=f"the most frequent tokens kept, the rest are [UNK] (default {FULL['vocab_size']})")
    c.add_argument("--max-train", type=_positive_int, default=None,
                   help="use at most this many training items (default: all)")
    c.add_argument("--max-eval", type=_positive_int, default=None,
                   help=f"evaluate on at most this many items (default {FULL['max_eval']})")
    c.add_argument("--json", default=None, help="also write the results to this JSON file (updated after "
                                                  "each model)")
    c.set_defaults(func=_cmd_cloze)

    from .experiments import pos_tagging as _pos, seq2seq as _s2s
    ps = sub.add_parser("pos", help="experiment 2: POS tagging on UD English EWT, uni- vs bidirectional LSTM",
                        description="Universal POS tagging on UD English EWT with a left-to-right and a "
                                    "bidirectional LSTM, words only or words + characters, at equal parameter "
                                    "budgets (python -m minibidir.experiments.pos_tagging has every setting).")
    ps.add_argument("--data", choices=_UD_TREEBANKS, default="ud_english_ewt",
                    help="treebank (default ud_english_ewt; from the data mirror or cache, or downloaded)")
    ps.add_argument("--variants", type=_pos_variant_list, default=None,
                    help="comma-separated, from " + ", ".join(_pos.VARIANTS) + " (default: all)")
    ps.add_argument("--epochs", type=_positive_int, default=None,
                    help=f"passes over the training sentences (default {_pos.FULL['epochs']}; quick "
                         f"{_pos.QUICK['epochs']})")
    ps.add_argument("--seed", type=int, default=None, help=f"random seed (default {_pos.FULL['seed']})")
    ps.add_argument("--max-train", type=_positive_int, default=None,
                    help="use at most this many training sentences (default: all)")
    ps.add_argument("--quick", action="store_true", help="a small setting (seconds), for tests")
    ps.add_argument("--no-match-params", action="store_true",
                    help="give the unidirectional LSTMs the bidirectional ones' hidden size")
    ps.add_argument("--json", default=None, help="also write the results (a list) to this JSON file")
    ps.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    ps.set_defaults(func=_cmd_pos)

    s2 = sub.add_parser("seq2seq", help="experiment 3: lemmatisation on UD English EWT, uni- vs bidirectional "
                                        "encoders and decoders",
                        description="Character-level lemmatisation (word form + UPOS tag -> lemma) on UD English "
                                    "EWT: a left-to-right vs a bidirectional LSTM encoder with the same attention "
                                    "decoder, an aligned BiLSTMDecoder, and a Seq2SeqBiTransformer decoded "
                                    "greedily, by beam search and by beam search + right-to-left reranking "
                                    "(python -m minibidir.experiments.seq2seq has every setting).")
    s2.add_argument("--data", choices=_UD_TREEBANKS, default="ud_english_ewt",
                    help="treebank (default ud_english_ewt; from the data mirror or cache, or downloaded)")
    s2.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    s2.add_argument("--models", type=_seq2seq_model_list, default=None,
                    help="comma-separated, from " + ", ".join(_s2s.MODELS) + " (default: all)")
    s2.add_argument("--epochs", type=_positive_int, default=None,
                    help=f"passes over the training types (default {_s2s.FULL['epochs']}; demo "
                         f"{_s2s.DEMO['epochs']}; quick {_s2s.QUICK['epochs']})")
    s2.add_argument("--seed", type=int, default=None, help=f"random seed (default {_s2s.FULL['seed']})")
    s2.add_argument("--max-train", type=_positive_int, default=None,
                    help="use at most this many training types (default: all)")
    s2.add_argument("--beam-size", type=_positive_int, default=None,
                    help=f"beam width of the Transformer's beam search (default {_s2s.FULL['beam_size']})")
    size = s2.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a tiny setting (seconds), for tests")
    size.add_argument("--demo", action="store_true", help="the notebook's setting (a few minutes)")
    s2.add_argument("--out", default="runs", help="output directory for the plot (default runs/, file seq2seq.png)")
    s2.add_argument("--json", default=None, help="also write the results to this JSON file")
    s2.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    s2.set_defaults(func=_cmd_seq2seq)

    a = sub.add_parser("autograd", help="chapter 1's example: train a small net on two spirals")
    a.add_argument("--steps", type=int, default=1500, help="gradient steps (default 1500)")
    a.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    a.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default cpu)")
    a.add_argument("--out", default="runs", help="output directory for the plot (default runs/)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_autograd)
    p.epilog = _command_summary(sub)
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
    except RuntimeError as e:          # e.g. --device cuda without a GPU, a data set not available
        print(f"minibidir: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minibidir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
