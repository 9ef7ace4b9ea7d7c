"""Experiment 1 · 单向不行，那就双向: the cloze test on real text.

Hide one word of a passage and ask a model to fill it in.  A left-to-right reader at the gap
has seen only the words *before* it; a right-to-left reader only the words *after* it; a
bidirectional reader both.  The documents' claim, measured::

    window   x = (x_{c-C}, ..., x_{c-1}, [MASK], x_{c+1}, ..., x_{c+C})      (W = 2C + 1 tokens)
    target   y = the hidden word x_c
    left     h = →h_c  of a reader of x_{c-C} .. x_{c-1}, [MASK]            (left context only)
    right    h = ←h_c  of a reader of [MASK], x_{c+1} .. x_{c+C}            (right context only)
    both     h = [→h_c; ←h_c]  or  one unmasked self-attention stack at c    (both sides)
    p(y | x) = softmax(W_o h + b_o)            over a vocabulary of the K most frequent tokens

The seven models (:data:`MODELS`), all with the same embedding size and output layer form:

========================  =======  ==========================================================
name                      reads    representation at the gap
========================  =======  ==========================================================
``lstm-left``             left     LSTM over x_{c-C} .. x_{c-1}, [MASK]: its final state
``lstm-right``            right    LSTM over x_{c+C} .. x_{c+1}, [MASK] (right to left)
``bilstm``                both     :class:`~minibidir.models.BiLSTMEncoder` over the window,
                                   its output at c: [→h_c; ←h_c]
``tf-left``               left     Transformer stack with the causal mask, output at c
``tf-right``              right    Transformer stack with the anti-causal mask, output at c
``tf-two-tower``          both     :class:`~minibidir.models.BiTransformerEncoder`
                                   ``mode="two_tower"`` (the two masked towers, concatenated
                                   and projected), output at c
``tf-full``               both     ``BiTransformerEncoder(mode="full")``: no mask, output at c
========================  =======  ==========================================================

Equal parameter budgets.  Every model is matched to one budget, the total parameter count of
``tf-full`` (embeddings + encoder + output layer): the causal and anti-causal towers have
exactly its architecture; the two towers of ``tf-two-tower`` get the widest width
:meth:`~minibidir.models.BiTransformerEncoder.tower_width_for_budget` allows (``project=True``,
so its output layer is the same size); the LSTMs' hidden sizes are solved for
(:func:`lstm_hidden_for_budget`).  The table reports every count; they agree within a few
per cent.

Vocabulary and targets.  Text is lower-cased and cut by :func:`tokenize` into words,
numbers and punctuation.  The vocabulary is the ``vocab_size`` most frequent training tokens
plus ``[PAD]``, ``[UNK]``, ``[MASK]`` and ``[SEP]`` (between documents); everything else is
``[UNK]``.  **Targets are words only**: a position is a cloze item when its token is an
in-vocabulary word (letters); ``[UNK]``, numbers and punctuation are never hidden (they stay
as context) and are neither trained on nor scored.  Accuracy is top-1 over those items.

Corpora (``data=``, :func:`load_corpus`):

* ``"stdlib"`` (the default, offline): English that ships with every Python installation -
  the docstrings of the standard library's modules, classes and functions, read from the
  source files with :mod:`ast` (nothing is imported, so no module runs), the Python reference
  manual's topic texts behind ``help()`` (:mod:`pydoc_data.topics`), and the Zen of Python
  (decoded from ``this.py``'s source; importing ``this`` would print it).  About half a million
  tokens; the exact text follows the Python version.  Documents are split 90/10 into
  train/eval with a fixed seed (:func:`minibidir.data.split_indices`, seed 0).
* ``"wikitext2"``: WikiText-2 through :mod:`minibidir.data` (mirror, cache or download); the
  *valid* split (217k tokens) is the training text and the *test* split the evaluation text
  (the 2M-token train split would take hours on two cores, and the two small splits are the
  ones the data mirror holds).  Article headings are dropped, ``<unk>`` is ``[UNK]``, ``@-@``
  is ``-``.
* ``"tiny_shakespeare"``: the speeches, split 90/10 into train/eval (seed 0).

The default stays ``"stdlib"`` even where a data mirror is present, so that the command gives
the same table with or without one.

Training.  Adam, a linear warm-up over the first 5% of the steps and a cosine decay, gradient
clipping at norm 1, mini-batches of 256 items, cross-entropy of the hidden word.  The LSTMs use
a learning rate of 1e-2 and PyTorch's initialisation (embeddings N(0, 1)); the Transformers
(post-LN layers as in the documents, learned positional embeddings) 5e-3, with embeddings and
positions drawn from N(0, 0.1²) as BERT does: with N(0, 1) embeddings and sinusoidal positions
they learned far more slowly in a budget of a few hundred steps.

Settings: :data:`QUICK` (tests, seconds), :data:`DEMO` (``python -m minibidir demo``: four
models, about a minute of CPU time), :data:`FULL` (``python -m minibidir cloze``: all seven
models).  :func:`run_cloze` trains the models and returns the results, a Markdown table and the
path of a bar chart.  Everything is seeded: :func:`minibidir.manual_seed` before each model
is built, a NumPy generator of the same seed for subsampling and shuffling.
"""
from __future__ import annotations

import ast
import codecs
import functools
import json
import math
import os
import re
import sys
import sysconfig
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend as B
from .. import functional as F
from .. import nn, optim
from ..autograd import no_grad
from ..backend import manual_seed
from ..models.bidirectional import BiLSTMEncoder, BiTransformerEncoder, anticausal_mask, causal_mask

try:                                   # progress bars are a nicety, never a requirement
    from tqdm.auto import tqdm as _tqdm
except ImportError:                    # pragma: no cover
    _tqdm = None

__all__ = ["SPECIALS", "PAD_ID", "UNK_ID", "MASK_ID", "SEP_ID", "MODELS", "CORPORA", "QUICK", "DEMO",
           "FULL", "tokenize", "stdlib_documents", "Corpus", "load_corpus", "Vocab", "ClozeSet",
           "make_cloze_set", "ClozeModel", "count_parameters", "lstm_params", "lstm_hidden_for_budget",
           "plan_models", "build_model", "train_model", "evaluate", "run_cloze", "format_table",
           "plot_results"]

SPECIALS = ("[PAD]", "[UNK]", "[MASK]", "[SEP]")
PAD_ID, UNK_ID, MASK_ID, SEP_ID = range(4)

#: name -> (family, which context it reads)
MODELS = {
    "lstm-left": ("lstm", "left"),
    "lstm-right": ("lstm", "right"),
    "bilstm": ("lstm", "both"),
    "tf-left": ("transformer", "left"),
    "tf-right": ("transformer", "right"),
    "tf-two-tower": ("transformer", "both"),
    "tf-full": ("transformer", "both"),
}

CORPORA = ("stdlib", "wikitext2", "tiny_shakespeare")

#: The full experiment (``python -m minibidir cloze``): all seven models.
FULL = dict(
    data="stdlib", models=tuple(MODELS), context=5, vocab_size=2000, min_count=2,
    max_train=None, max_eval=10000,
    embed_dim=96, d_model=96, nhead=4, num_layers=2, dim_feedforward=256, dropout=0.1,
    positional="learned", norm_first=False, tf_init_std=0.1,
    batch_size=256, epochs=3, lr_lstm=1e-2, lr_transformer=5e-3, warmup=0.05, clip=1.0,
    seed=0, blas_threads=1,
)

#: ``python -m minibidir demo``: one unidirectional and one bidirectional model of each family,
#: sized so that the whole command takes about a minute of CPU time (one thread).
DEMO = dict(FULL, models=("lstm-left", "bilstm", "tf-left", "tf-full"), context=4, vocab_size=1000,
            max_train=80000, max_eval=5000, embed_dim=64, d_model=64, dim_feedforward=128, dropout=0.0,
            epochs=2)

#: A setting small enough for the test suite (a few seconds).
QUICK = dict(DEMO, models=("lstm-left", "bilstm"), vocab_size=500, max_train=30000, max_eval=2000,
             embed_dim=48, d_model=48, dim_feedforward=96, nhead=2, num_layers=1)


# ============================================================================ text

_TOKEN = re.compile(r"<unk>|[^\W\d_]+(?:'[^\W\d_]+)*|\d+|_+|([^\w\s])\1*")


def tokenize(text):
    """Lower-case ``text`` and cut it into tokens: words (letters, with inner apostrophes:
    ``don't``), numbers, and punctuation (a run of one repeated mark is one token: ``---``).
    ``<unk>`` (WikiText's unknown-word marker) stays one token.

    >>> tokenize("Return the sum of x_1 and *y*, don't round.")
    ['return', 'the', 'sum', 'of', 'x', '_', '1', 'and', '*', 'y', '*', ',', "don't", 'round', '.']
    """
    return [m.group(0) for m in _TOKEN.finditer(text.lower())]


def _is_word(token):
    return token[:1].isalpha()


# ============================================================================ corpora

def _prose(doc):
    """A docstring without its interactive examples (``>>>`` and ``...`` lines)."""
    return "\n".join(ln for ln in doc.splitlines() if not ln.lstrip().startswith((">>>", "... ")))


def _docstrings(source):
    """The docstrings of a module's source: the module's, then its classes' and functions'
    (breadth first)."""
    tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                out.append(_prose(doc))
    return out


_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}


def _stdlib_files(root):
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
        files += [os.path.join(d, n) for n in sorted(names) if n.endswith(".py")]
    return sorted(files)


def _zen_of_python(root):
    """The Zen of Python, decoded from the ROT13 string in ``this.py`` (read, not imported)."""
    try:
        tree = ast.parse(Path(root, "this.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str) and len(node.value.value) > 200:
            return codecs.decode(node.value.value, "rot13")
    return None


#: Modules whose import runs no code with visible effects; used only where the standard
#: library ships without its ``.py`` sources.
_SAFE_MODULES = ("abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar", "cmath",
                 "codecs", "collections", "concurrent.futures", "configparser", "contextlib", "copy",
                 "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions",
                 "functools", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http",
                 "inspect", "io", "ipaddress", "itertools", "json", "logging", "math", "mimetypes",
                 "numbers", "operator", "os", "pathlib", "pickle", "pprint", "queue", "random", "re",
                 "sched", "secrets", "shlex", "shutil", "socket", "sqlite3", "statistics", "string",
                 "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time",
                 "timeit", "tokenize", "traceback", "types", "typing", "unittest", "urllib.parse",
                 "uuid", "warnings", "weakref", "xml.etree.ElementTree", "zipfile", "zlib")


def _imported_docstrings():
    import importlib
    import inspect
    docs = []
    for name in _SAFE_MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:                                  # noqa: BLE001 - any failure: skip it
            continue
        parts = [inspect.getdoc(mod) or ""]
        for _, obj in sorted(vars(mod).items()):
            own = getattr(obj, "__module__", None) == mod.__name__
            if own and (inspect.isclass(obj) or inspect.isfunction(obj)):
                parts.append(inspect.getdoc(obj) or "")
        docs.append(_prose("\n\n".join(p for p in parts if p)))
    return docs


@functools.lru_cache(maxsize=1)
def stdlib_documents():
    """The offline corpus: a tuple of documents (strings) that ship with Python itself.

    * one document per standard-library source file: the docstrings of the module and its
      classes and functions, read with :mod:`ast` (no module is imported, so nothing runs:
      not ``antigravity``, not ``this``, not ``tkinter``); the test suites and ``idlelib``'s
      tests are skipped, interactive examples (``>>>``) dropped;
    * one document per topic of the reference manual behind ``help()``
      (:mod:`pydoc_data.topics`, a plain dictionary of strings);
    * the Zen of Python, decoded from ``this.py``'s source.

    Where the sources are missing (some distributions ship byte code only), the docstrings of a
    list of side-effect-free modules are read after importing them instead.
    """
    root = sysconfig.get_paths()["stdlib"]
    docs = []
    for path in _stdlib_files(root):
        try:
            with open(path, encoding="utf-8") as fh:
                parts = _docstrings(fh.read())
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            continue
        if parts:
            docs.append("\n\n".join(parts))
    if sum(len(d) for d in docs) < 200_000:             # byte-code-only installation
        docs += _imported_docstrings()
    try:
        from pydoc_data.topics import topics
        docs += [topics[k] for k in sorted(topics)]
    except ImportError:                                   # pragma: no cover - stripped installs
        pass
    zen = _zen_of_python(root)
    if zen:
        docs.append(zen)
    return tuple(d for d in docs if d.strip())


@dataclass
class Corpus:
    """Tokenised training and evaluation documents of one corpus (lists of token lists)."""
    name: str
    description: str
    train: list
    eval: list

    @property
    def num_tokens(self):
        return {"train": sum(map(len, self.train)), "eval": sum(map(len, self.eval))}


def _split_documents(docs, seed=0, fraction=0.9):
    from .. import data
    train_idx, eval_idx = data.split_indices(len(docs), seed=seed, fractions=(fraction, 1 - fraction))
    return [docs[i] for i in train_idx], [docs[i] for i in eval_idx]


def _wikitext_articles(lines):
    """WikiText lines -> token lists, one per article (a top-level heading `` = T = `` starts
    one); headings are dropped, ``@-@``/``@,@``/``@.@`` rejoined."""
    articles, cur = [], []
    for line in lines:
        s = line.strip()
        if s.startswith("=") and s.endswith("="):
            if not s.startswith("= ="):                 # a new article
                if cur:
                    articles.append(cur)
                cur = []
            continue
        if s:
            s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
            cur += tokenize(s)
    if cur:
        articles.append(cur)
    return articles


@functools.lru_cache(maxsize=4)
def _load_corpus(name):
    from .. import data
    if name == "stdlib":
        docs = [tokenize(d) for d in stdlib_documents()]
        train, ev = _split_documents([d for d in docs if d])
        desc = (f"Python {sys.version_info.major}.{sys.version_info.minor} standard-library docstrings, "
                f"help() topics and the Zen of Python; documents split 90/10 (seed 0)")
        return Corpus(name, desc, train, ev)
    if name == "wikitext2":
        train = _wikitext_articles(data.read_wikitext("valid"))
        ev = _wikitext_articles(data.read_wikitext("test"))
        return Corpus(name, "WikiText-2: valid split for training, test split for evaluation", train, ev)
    if name == "tiny_shakespeare":
        text = data.read_tiny_shakespeare()
        speeches = [tokenize(s) for s in re.split(r"\n\s*\n", text) if s.strip()]
        train, ev = _split_documents(speeches)
        return Corpus(name, "tiny-shakespeare: speeches split 90/10 (seed 0)", train, ev)
    raise ValueError(f"cloze: unknown corpus {name!r}; choose one of {CORPORA}")


def load_corpus(name="stdlib"):
    """The :class:`Corpus` called ``name`` (one of :data:`CORPORA`), tokenised by :func:`tokenize`.
    ``wikitext2`` and ``tiny_shakespeare`` come through :mod:`minibidir.data` (mirror first)."""
    return _load_corpus(name)


# ============================================================================ vocabulary and items

class Vocab:
    """The ``size`` most frequent training tokens (seen at least ``min_count`` times; ties
    alphabetical) after the four specials ``[PAD] [UNK] [MASK] [SEP]``.  ``is_word[i]`` is True
    for the ids that can be cloze targets (words: tokens that start with a letter)."""

    def __init__(self, documents, size, min_count=1):
        counts = Counter(t for doc in documents for t in doc)
        counts.pop("<unk>", None)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))[:size]
        self.itos = list(SPECIALS) + kept
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.is_word = np.array([False] * len(SPECIALS) + [_is_word(t) for t in kept])
        self.counts = np.array([0] * len(SPECIALS) + [counts[t] for t in kept], dtype=np.int64)

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens):
        get = self.stoi.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int64, count=len(tokens))

    def stream(self, documents):
        """All documents as one id array, ``[SEP]`` between documents."""
        parts = []
        for doc in documents:
            parts.append(self.encode(doc))
            parts.append(np.array([SEP_ID], dtype=np.int64))
        return np.concatenate(parts[:-1]) if parts else np.zeros(0, np.int64)


@dataclass
class ClozeSet:
    """Cloze items: ``windows`` (N, 2C+1) token ids with ``[MASK]`` at the centre (``[PAD]`` past
    the ends of the text), ``targets`` (N,) the hidden words' ids, ``positions`` (N,) where the
    centres are in the text."""
    windows: np.ndarray
    targets: np.ndarray
    positions: np.ndarray
    context: int

    def __len__(self):
        return len(self.targets)


def make_cloze_set(stream, vocab, context, limit=None, rng=None):
    """Every position of ``stream`` whose token is an in-vocabulary word becomes an item (a
    seeded random subset of ``limit`` items when given, kept in text order)."""
    C = int(context)
    pos = np.flatnonzero(vocab.is_word[stream])
    if limit is not None and limit < len(pos):
        rng = rng if rng is not None else np.random.default_rng(0)
        pos = np.sort(rng.choice(pos, size=int(limit), replace=False))
    padded = np.concatenate([np.full(C, PAD_ID, np.int64), stream, np.full(C, PAD_ID, np.int64)])
    windows = padded[pos[:, None] + np.arange(2 * C + 1)[None, :]]
    targets = windows[:, C].copy()
    windows[:, C] = MASK_ID
    return ClozeSet(windows, targets, pos, C)


# ============================================================================ models

class ClozeModel(nn.Module):
    """Embeddings, one of the seven encoders of :data:`MODELS`, dropout, and a linear output
    layer over the vocabulary.  ``forward(windows)`` takes (B, 2C+1) ids with ``[MASK]`` at the
    centre C and returns (B, V) logits for the hidden word.

    ``width`` is the LSTM hidden size (per direction) for the LSTMs, ``d_model`` for the
    Transformers (the two-tower model's towers are narrower: ``tower_d_model``).
    """

    def __init__(self, name, vocab_size, context, embed_dim, width, nhead=4, num_layers=2,
                 dim_feedforward=512, dropout=0.1, tower=None, positional="learned", norm_first=False,
                 tf_init_std=0.1):
        super().__init__()
        if name not in MODELS:
            raise ValueError(f"ClozeModel: unknown model {name!r}; choose from {list(MODELS)}")
        self.name, self.context = name, int(context)
        self.family, self.reads = MODELS[name]
        W = 2 * self.context + 1
        self.embedding = nn.Embedding(vocab_size, embed_dim)          # N(0, 1), as PyTorch
        if self.family == "lstm":
            if name == "bilstm":
                self.encoder = BiLSTMEncoder(embed_dim, width, batch_first=True)
                out = 2 * width
            else:
                self.encoder = nn.LSTM(embed_dim, width, batch_first=True)
                out = width
        else:
            if embed_dim != width:
                raise ValueError(f"ClozeModel: the Transformers add positional encodings to the "
                                 f"embeddings, so embed_dim ({embed_dim}) must equal d_model ({width})")
            if tf_init_std is not None:            # BERT-like small embeddings
                nn.init.normal_(self.embedding.weight, 0.0, tf_init_std)
            if positional == "learned":
                self.positions = nn.LearnedPositionalEmbedding(W, width, batch_first=True)
                if tf_init_std is not None:
                    nn.init.normal_(self.positions.weight, 0.0, tf_init_std)
            elif positional == "sinusoidal":
                self.positions = nn.SinusoidalPositionalEncoding(width, max_len=W, batch_first=True)
            else:
                raise ValueError(f"ClozeModel: positional must be 'learned' or 'sinusoidal', got {positional!r}")
            kw = dict(dim_feedforward=dim_feedforward, dropout=dropout, batch_first=True, norm_first=norm_first)
            if name in ("tf-left", "tf-right"):
                self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, nhead, **kw), num_layers)
            elif name == "tf-full":
                self.encoder = BiTransformerEncoder(width, nhead, num_layers, mode="full", **kw)
            else:
                tw, tff = tower or BiTransformerEncoder.tower_width_for_budget(
                    width, nhead, num_layers, dim_feedforward, project=True)
                self.encoder = BiTransformerEncoder(width, nhead, num_layers, mode="two_tower", tower_d_model=tw,
                                                    tower_dim_feedforward=tff, project=True, **kw)
            out = width
            if norm_first:                       # pre-LN stacks end without a norm: add the final one
                self.final_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(out, vocab_size)

    def represent(self, windows):
        """(B, H) the representation of the gap (before dropout and the output layer)."""
        C = self.context
        xp = B.get_array_module(windows)
        if self.family == "lstm":
            if self.name == "lstm-left":         # x_{c-C} .. x_{c-1}, [MASK], read left to right
                _, (h, _) = self.encoder(self.embedding(xp.ascontiguousarray(windows[:, :C + 1])))
                return h[0]
            if self.name == "lstm-right":        # x_{c+C} .. x_{c+1}, [MASK], read right to left
                _, (h, _) = self.encoder(self.embedding(xp.ascontiguousarray(windows[:, C:][:, ::-1])))
                return h[0]
            out, _ = self.encoder(self.embedding(windows))          # [→h_t; ←h_t] at every t
            return out[:, C]
        x = self.positions(self.embedding(windows))
        if self.name == "tf-left":
            h = self.encoder(x, mask=causal_mask(x.shape[1], B.get_array_module(x.data)))
        elif self.name == "tf-right":
            h = self.encoder(x, mask=anticausal_mask(x.shape[1], B.get_array_module(x.data)), is_causal=False)
        else:
            h = self.encoder(x)
        h = h[:, C]
        return self.final_norm(h) if hasattr(self, "final_norm") else h

    def forward(self, windows):
        return self.head(self.dropout(self.represent(windows)))

    def extra_repr(self):
        return f"{self.name!r}, context={self.context}"


def count_parameters(module):
    """The number of trainable numbers in ``module``."""
    return int(sum(int(p.data.size) for p in module.parameters()))


def lstm_params(input_size, hidden, directions=1):
    """Parameters of a one-layer LSTM: per direction 4H·(input + H) weights and 8H biases."""
    return directions * (4 * hidden * (input_size + hidden) + 8 * hidden)


def _lstm_total(vocab_size, embed_dim, hidden, directions):
    out = directions * hidden
    return vocab_size * embed_dim + lstm_params(embed_dim, hidden, directions) + (out + 1) * vocab_size


def lstm_hidden_for_budget(budget, vocab_size, embed_dim, directions=1):
    """The hidden size (per direction) whose cloze LSTM (embeddings, LSTM, output layer) has the
    parameter count closest to ``budget``."""
    best, h = None, 1
    while True:
        n = _lstm_total(vocab_size, embed_dim, h, directions)
        if best is None or abs(n - budget) < abs(best[1] - budget):
            best = (h, n)
        if n > budget:
            return best[0]
        h += 1


def plan_models(cfg, vocab_size):
    """``{name: {"width": ..., "tower": (w, ff) or None}}`` for the models of ``cfg``, every one
    matched to the parameter budget of ``tf-full`` (see the module docstring)."""
    e, d = cfg["embed_dim"], cfg["d_model"]
    full = build_model("tf-full", cfg, vocab_size, {"tf-full": {"width": d, "tower": None}})
    budget = count_parameters(full)
    plan = {}
    for name in cfg["models"]:
        family, reads = MODELS[name]
        if family == "lstm":
            dirs = 2 if reads == "both" else 1
            plan[name] = {"width": lstm_hidden_for_budget(budget, vocab_size, e, dirs), "tower": None}
        elif name == "tf-two-tower":
            plan[name] = {"width": d, "tower": BiTransformerEncoder.tower_width_for_budget(
                d, cfg["nhead"], cfg["num_layers"], cfg["dim_feedforward"], project=True)}
        else:
            plan[name] = {"width": d, "tower": None}
    return plan, budget


def build_model(name, cfg, vocab_size, plan=None):
    """A :class:`ClozeModel` for ``name`` under the settings ``cfg`` (widths from
    :func:`plan_models`)."""
    plan = plan or plan_models(dict(cfg, models=(name,)), vocab_size)[0]
    p = plan[name]
    return ClozeModel(name, vocab_size, cfg["context"], cfg["embed_dim"], p["width"], cfg["nhead"],
                      cfg["num_layers"], cfg["dim_feedforward"], cfg["dropout"], tower=p["tower"],
                      positional=cfg["positional"], norm_first=cfg["norm_first"], tf_init_std=cfg["tf_init_std"])


# ============================================================================ training and evaluation

def _to(device, a):
    return a if device == "cpu" else B.to_device(a, device)


def train_model(model, items, cfg, device="cpu", bar=None):
    """Adam with a linear warm-up and cosine decay, gradient clipping, ``cfg["epochs"]`` passes
    over ``items`` in a seeded random order.  Returns the mean training loss of each epoch."""
    rng = np.random.default_rng(cfg["seed"])
    params = list(model.parameters())
    opt = optim.Adam(params, lr=cfg["lr_" + model.family])
    bs = cfg["batch_size"]
    steps_per_epoch = math.ceil(len(items) / bs)
    total = steps_per_epoch * cfg["epochs"]
    sched = optim.WarmupCosine(opt, int(cfg["warmup"] * total), total, min_factor=0.05)
    targets = _to(device, items.targets)
    losses = []
    model.train()
    for epoch in range(cfg["epochs"]):
        order = rng.permutation(len(items))
        run, n = 0.0, 0
        for k in range(steps_per_epoch):
            idx = np.sort(order[k * bs:(k + 1) * bs])
            logits = model(_to(device, items.windows[idx]))
            loss = F.cross_entropy(logits, targets[_to(device, idx)])
            opt.zero_grad()
            loss.backward()
            if cfg["clip"]:
                optim.clip_grad_norm_(params, cfg["clip"])
            opt.step()
            sched.step()
            run += loss.item() * len(idx)
            n += len(idx)
            if bar is not None:
                bar.update(1)
                if k % 20 == 0:
                    bar.set_postfix(model=model.name, epoch=f"{epoch + 1}/{cfg['epochs']}", loss=f"{run / n:.3f}",
                                    refresh=False)
        losses.append(run / max(n, 1))
    return losses


def evaluate(model, items, device="cpu", batch_size=1000):
    """Top-1 and top-5 accuracy and mean cross-entropy on ``items`` (eval mode, no gradients)."""
    model.eval()
    correct = top5 = 0
    loss = 0.0
    with no_grad():
        for s in range(0, len(items), batch_size):
            w = items.windows[s:s + batch_size]
            y = items.targets[s:s + batch_size]
            logits = model(_to(device, w))
            loss += float(F.cross_entropy(logits, _to(device, y), reduction="sum").item())
            z = B.to_numpy(logits.data)
            k = min(5, z.shape[1])
            best5 = np.argpartition(-z, k - 1, axis=1)[:, :k]
            correct += int((z.argmax(axis=1) == y).sum())
            top5 += int((best5 == y[:, None]).any(axis=1).sum())
    n = max(len(items), 1)
    model.train()
    return {"accuracy": correct / n, "top5": top5 / n, "loss": loss / n, "items": len(items)}


# ============================================================================ the experiment

def _settings(quick, overrides):
    cfg = dict(QUICK if quick else FULL)
    for k, v in (overrides or {}).items():
        if v is None and k not in ("max_train", "max_eval", "blas_threads"):
            continue                                   # "not given" on the command line
        if k not in FULL:
            raise ValueError(f"run_cloze: unknown setting {k!r}; known: {sorted(FULL)}")
        cfg[k] = v
    cfg["models"] = tuple(cfg["models"])
    bad = [m for m in cfg["models"] if m not in MODELS]
    if bad or not cfg["models"]:
        raise ValueError(f"run_cloze: unknown models {bad}; choose from {list(MODELS)}")
    if cfg["data"] not in CORPORA:
        raise ValueError(f"run_cloze: unknown corpus {cfg['data']!r}; choose one of {CORPORA}")
    for k in ("context", "vocab_size", "epochs", "batch_size", "embed_dim", "d_model", "nhead", "num_layers"):
        if int(cfg[k]) < 1:
            raise ValueError(f"run_cloze: {k} must be a positive integer, got {cfg[k]!r}")
    return cfg


def run_cloze(models=None, data=None, epochs=None, seed=None, quick=False, device="cpu", out_dir="runs",
              progress=True, plot_name="cloze.png", settings=None, log=None, on_model=None):
    """Train and evaluate cloze models; return the results.

    ``models``: names from :data:`MODELS` (default: those of the setting); ``data``: one of
    :data:`CORPORA`; ``epochs``, ``seed``: override the setting (:data:`FULL`, or
    :data:`QUICK` with ``quick=True``); ``settings``: any other overrides (e.g.
    ``{"context": 4, "max_train": 20000}`` or ``dict(DEMO)``); ``device``: ``"cpu"`` or
    ``"cuda"`` (the backend's device: CuPy, or the stand-in); ``out_dir``: where the bar chart
    (``plot_name``; None for no plot) is written; ``progress``: a tqdm bar over all training
    steps; ``log``: a function that receives progress lines (default: none); ``on_model``: a
    function called after each model with the results so far (e.g. to save them as they come).

    Returns a dict: ``config``, ``corpus`` (name, description, token counts, vocabulary size,
    train/eval items), ``budget`` (the parameter count every model is matched to), ``models``
    (per model: name, family, reads, width, tower width, params, accuracy, top5, loss, train
    loss per epoch, train seconds), ``baseline`` (accuracy of always guessing the most
    frequent training target), ``table`` (Markdown) and ``plot`` (the PNG's path or None).
    """
    over = dict(settings or {})
    for k, v in (("models", models), ("data", data), ("epochs", epochs), ("seed", seed)):
        if v is not None:
            over[k] = v
    cfg = _settings(quick, over)
    say = log or (lambda msg: None)
    device = str(device)
    if device not in ("cpu", "cuda"):
        raise ValueError(f"run_cloze: device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        B.to_device(np.zeros(1, np.float32), "cuda")   # fails now, clearly, when there is no device
    before = _blas_threads(cfg["blas_threads"]) if cfg["blas_threads"] else None
    try:
        return _run(cfg, device, out_dir, progress, plot_name, say, on_model)
    finally:
        if before:
            _blas_threads(before)


def _blas_threads(n):
    """Set OpenBLAS's thread count (see :func:`minibidir.experiments.pos_tagging.blas_threads`);
    None where that is not possible."""
    try:
        from .pos_tagging import blas_threads
    except ImportError:                                   # pragma: no cover
        return None
    return blas_threads(n)


def _run(cfg, device, out_dir, progress, plot_name, say, on_model):
    t0 = time.perf_counter()
    say(f"reading the {cfg['data']} corpus ...")
    corpus = load_corpus(cfg["data"])
    vocab = Vocab(corpus.train, cfg["vocab_size"], cfg["min_count"])
    rng = np.random.default_rng(cfg["seed"])
    train = make_cloze_set(vocab.stream(corpus.train), vocab, cfg["context"], cfg["max_train"], rng)
    ev = make_cloze_set(vocab.stream(corpus.eval), vocab, cfg["context"], cfg["max_eval"],
                        np.random.default_rng(0))        # the same evaluation items for every seed
    V = len(vocab)
    counts = np.bincount(train.targets, minlength=V)
    guess = int(counts.argmax())
    baseline = {"word": vocab.itos[guess], "accuracy": float((ev.targets == guess).mean()) if len(ev) else 0.0}
    say(f"corpus {corpus.name}: {corpus.num_tokens['train']:,} train / {corpus.num_tokens['eval']:,} eval tokens; "
        f"vocabulary {V:,}; {len(train):,} train / {len(ev):,} eval items ({time.perf_counter() - t0:.1f} s)")
    plan, budget = plan_models(cfg, V)

    steps = math.ceil(len(train) / cfg["batch_size"]) * cfg["epochs"] * len(cfg["models"])
    bar = None
    if progress and _tqdm is not None:
        bar = _tqdm(total=steps, desc="training", unit="step", dynamic_ncols=True, leave=False)
        if say is print:                                  # print above the bar, not through it
            say = _tqdm.write
    rows = []

    def partial():
        return {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                "device": device,
                "corpus": {"name": corpus.name, "description": corpus.description, "tokens": corpus.num_tokens,
                           "vocab_size": V, "train_items": len(train), "eval_items": len(ev)},
                "budget": budget, "models": list(rows), "baseline": baseline,
                "seconds": time.perf_counter() - t0}

    try:
        for name in cfg["models"]:
            manual_seed(cfg["seed"])
            model = build_model(name, cfg, V, plan)
            if device != "cpu":
                model.to(device)
            t = time.perf_counter()
            losses = train_model(model, train, cfg, device, bar)
            secs = time.perf_counter() - t
            res = evaluate(model, ev, device)
            family, reads = MODELS[name]
            rows.append({"model": name, "family": family, "reads": reads, "width": plan[name]["width"],
                         "tower": plan[name]["tower"], "params": count_parameters(model),
                         "encoder_params": count_parameters(model.encoder), **res,
                         "train_loss": losses, "train_seconds": secs})
            msg = (f"{name:13s} reads {reads:5s}  params {rows[-1]['params']:,}  accuracy {res['accuracy']:.1%}"
                   f"  top-5 {res['top5']:.1%}  ({secs:.0f} s)")
            say(msg)
            if on_model is not None:
                on_model(partial())
    finally:
        if bar is not None:
            bar.close()
    result = partial()
    result["table"] = format_table(result)
    result["plot"] = None
    if plot_name:
        result["plot"] = str(plot_results(result, Path(out_dir) / plot_name))
    return result


def format_table(result):
    """A Markdown table of :func:`run_cloze`'s result: model, what it reads, width, parameters
    (and their difference from the budget), accuracy, top-5 accuracy, loss, training time."""
    budget = result["budget"]
    lines = ["| model | reads | width | params (vs budget) | accuracy | top-5 | eval loss | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        width = f"{r['width']}" + (f" (towers {r['tower'][0]})" if r["tower"] else "")
        rel = (r["params"] - budget) / budget
        lines.append(f"| {r['model']} | {r['reads']} | {width} | {r['params']:,} ({rel:+.1%}) "
                     f"| **{r['accuracy']:.1%}** | {r['top5']:.1%} | {r['loss']:.3f} | {r['train_seconds']:.0f} s |")
    b = result["baseline"]
    lines.append(f"| baseline: always {b['word']!r} | - | - | 0 | {b['accuracy']:.1%} | - | - | - |")
    c = result["corpus"]
    lines.append("")
    lines.append(f"{c['name']}: {c['train_items']:,} training and {c['eval_items']:,} evaluation items "
                 f"(vocabulary {c['vocab_size']:,}, context {result['config']['context']} words each side, "
                 f"{result['config']['epochs']} epochs, seed {result['config']['seed']}).")
    return "\n".join(lines)


_COLORS = {"left": "#4C72B0", "right": "#DD8452", "both": "#55A868"}


def plot_results(result, path):
    """A bar chart of the models' accuracies (coloured by the context they read), the baseline
    as a dashed line; written to ``path`` (PNG).  Returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = result["models"]
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 3, 4.2))
    x = np.arange(len(rows))
    acc = [100 * r["accuracy"] for r in rows]
    bars = ax.bar(x, acc, color=[_COLORS[r["reads"]] for r in rows], edgecolor="black", linewidth=0.5,
                  hatch=None)
    for b, r in zip(bars, rows):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.5, f"{100 * r['accuracy']:.1f}%",
                ha="center", va="bottom", fontsize=9)
        ax.text(b.get_x() + b.get_width() / 2, 1.0, f"{r['params'] / 1e6:.2f}M\nparams", ha="center",
                va="bottom", fontsize=7, color="white")
    ax.axhline(100 * result["baseline"]["accuracy"], color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(x)
    ax.set_xticklabels([r["model"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("cloze accuracy on held-out text (%)")
    ax.set_ylim(0, max(acc + [1]) * 1.18)
    c = result["corpus"]
    ax.set_title(f"Fill in the hidden word: left, right or both sides ({c['name']}, "
                 f"{c['eval_items']:,} items)", fontsize=10)
    handles = [Patch(color=_COLORS[k], label=f"reads {k}") for k in ("left", "right", "both")
               if any(r["reads"] == k for r in rows)]
    handles.append(plt.Line2D([], [], color="gray", linestyle="--", label="most frequent word"))
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_json(result, path):
    """Write a :func:`run_cloze` result to ``path`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    return path
