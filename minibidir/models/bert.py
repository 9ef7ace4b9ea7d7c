"""BERT: a bidirectional Transformer encoder with a masked-language-model head and a
sequence-classification head (document 002, §4 and §5), plus its left-to-right twin.

The encoder turns token ids X = (x_1, ..., x_n) into vectors H = (h_1, ..., h_n):

    e_i = LayerNorm(W_tok[x_i] + W_seg[s_i] + W_pos[i])             (embeddings)
    h   = LayerNorm(h + MultiHead(h, h, h))                          (each layer: attention,
    h   = LayerNorm(h + GELU(h W_1ᵀ + b_1) W_2ᵀ + b_2)                then feed-forward; post-LN)

Every position attends to every other one (left *and* right context): that is what makes it
bidirectional.  With ``BertConfig(causal=True)`` every self-attention is causally masked, so
position i sees 1..i only: a left-to-right model with exactly the same parameters, for
comparing "单向" (one direction) with "双向" (both directions).

Two heads, the formulas of document 002:

* §4.1 masked language model, for a masked position i:
  P(x_i | X∖x_i) = softmax(W_c h_i + b_c).  As in BERT, h_i first passes a transform
  (dense, activation, layer norm), and W_c is the word-embedding matrix itself (tied), so
  W_c h_i scores h_i against every token's embedding.
* §4.2 classification: P(y | X) = softmax(W_d h_[CLS] + b_d).  Hugging Face's BERT (and this
  class by default) feeds W_d the *pooled* vector tanh(W_p h_[CLS] + b_p); ``pooling="cls"``
  applies W_d to h_[CLS] directly, the document's formula as written.

Module and parameter names mirror Hugging Face's ``transformers`` BERT, so ``state_dict()``
keys are the same (``embeddings.word_embeddings.weight``,
``encoder.layer.0.attention.self.query.weight``, ``cls.predictions.transform.dense.weight``,
``bert.`` in front of the encoder in the head models, ...) and a pretrained checkpoint loads
with a plain dict of arrays (see :mod:`minibidir.models.pretrained`).

Hot paths are single Functions: the scaled dot-product attention, layer norm, and the
feed-forward block (:class:`BertFeedForward`).  The masked-LM head can score only the rows
that carry a label (``masked_positions``), which skips ~85% of the vocabulary projection.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Function, Tensor, is_grad_enabled
from ..nn import init
from ..nn.dropout import Dropout
from ..nn.embedding import Embedding
from ..nn.linear import Linear
from ..nn.module import Module, ModuleList, Parameter
from ..nn.norm import LayerNorm

__all__ = ["BertConfig", "BertPreTrainedModel", "BertModel", "BertForMaskedLM",
           "BertForSequenceClassification", "BertFeedForward", "bert_feed_forward",
           "next_token_labels"]


# ----------------------------------------------------------------------------- configuration

#: ``hidden_act`` values (Hugging Face's names) -> the activation computed.
_ACTIVATIONS = {
    "gelu": "gelu",                 # exact: x Φ(x) = x/2 (1 + erf(x/√2))
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",        # x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder (Hugging Face's ``BertConfig`` names and defaults,
    which are BERT-base's).

    ``hidden_act``: "gelu" (exact, erf), "gelu_new" / "gelu_pytorch_tanh" (tanh
    approximation) or "relu".  ``causal``: mask every self-attention left-to-right (the
    unidirectional twin; everything else, parameters included, is identical).
    ``classifier_dropout``: dropout before the classification layer (None: ``hidden_dropout_prob``).
    """
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    classifier_dropout: float | None = None
    causal: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"BertConfig: {name} must be a positive integer, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; "
                             f"choose one of {sorted(_ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"BertConfig: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig: pad_token_id {self.pad_token_id} is outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def activation(self):
        """What ``hidden_act`` computes: "gelu" (exact), "gelu_tanh" or "relu"."""
        return _ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_dict(cls, d):
        """From a dict such as a Hugging Face ``config.json``: known keys are read, others
        ignored.  HF's ``is_decoder`` maps to ``causal``; relative position embeddings and
        cross-attention are refused (this model has neither)."""
        d = dict(d)
        kind = d.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise NotImplementedError(f"BertConfig: position_embedding_type {kind!r} is not supported "
                                      f"(only 'absolute')")
        if d.get("add_cross_attention"):
            raise NotImplementedError("BertConfig: add_cross_attention (an encoder-decoder BERT) is not supported")
        if "causal" not in d and "is_decoder" in d:
            d["causal"] = bool(d["is_decoder"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, path):
        """Read ``config.json`` (a file, or a checkpoint directory holding one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path):
        """Write a ``config.json`` that both this class and Hugging Face's ``BertConfig`` read."""
        d = self.to_dict()
        d.update(model_type="bert", is_decoder=self.causal)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(d, f, indent=2, sort_keys=True)


# ----------------------------------------------------------------------------- the feed-forward block

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# erf(x) ≈ x P(x²) / Q(x²) on [-4, 4] (±1 outside, to float32 precision): the rational
# approximation of Eigen / XLA's single-precision erf, within 5e-7 of the exact value.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
_CHUNK = 1 << 15        # elements per block: the block's temporaries stay in the CPU cache


def _gelu_cdf_f32(a, h_out, cdf_out=None):
    """Exact GELU on a NumPy float32 array: h = a Φ(a), Φ(a) = (1 + erf(a/√2)) / 2.

    SciPy's erf works in float64 (~10 ns an element, slower than the two matrix products
    around it); this evaluates the float32 rational approximation in cache-sized blocks.
    ``h_out`` may be ``a`` itself (in place); ``cdf_out`` receives Φ(a) when given.
    """
    f = np.float32
    flat, hflat = a.reshape(-1), h_out.reshape(-1)
    cflat = cdf_out.reshape(-1) if cdf_out is not None else None
    n = flat.size
    m = min(n, _CHUNK)
    u, u2, p, q = (np.empty(m, dtype=np.float32) for _ in range(4))
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        k = e - s
        x = flat[s:e]
        uu, vv, pp, qq = u[:k], u2[:k], p[:k], q[:k]
        np.multiply(x, f(_INV_SQRT_2), out=uu)
        np.clip(uu, f(-4.0), f(4.0), out=uu)
        np.multiply(uu, uu, out=vv)
        np.multiply(vv, f(_ERF_P[0]), out=pp)
        pp += f(_ERF_P[1])
        for c in _ERF_P[2:]:
            pp *= vv
            pp += f(c)
        pp *= uu
        np.multiply(vv, f(_ERF_Q[0]), out=qq)
        qq += f(_ERF_Q[1])
        for c in _ERF_Q[2:]:
            qq *= vv
            qq += f(c)
        pp /= qq                                   # erf(a/√2)
        pp += f(1.0)
        pp *= f(0.5)                               # Φ(a)
        if cflat is not None:
            cflat[s:e] = pp
        np.multiply(x, pp, out=hflat[s:e])         # a Φ(a)
    return h_out


def _activation_forward(a, kind, save):
    """h = act(a); returns (h, what the backward needs).  Works in place on ``a`` when nothing
    is saved (inference)."""
    xp = B.get_array_module(a)
    if kind == "relu":
        h = xp.maximum(a, 0, out=a if not save else None)
        return h, None
    if kind == "gelu":
        if xp is np and a.dtype == np.float32:
            cdf = np.empty_like(a) if save else None
            h = _gelu_cdf_f32(a, a if not save else np.empty_like(a), cdf)
        else:
            cdf = 0.5 * (1 + B.erf(a * _INV_SQRT_2))
            h = a * cdf
        return h, ((a, cdf) if save else None)
    # tanh approximation: t = tanh(√(2/π)(a + 0.044715 a³)),  h = a (1 + t) / 2
    t = xp.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a * a * a))
    h = 0.5 * a * (1 + t)
    return h, ((a, t) if save else None)


def _activation_backward(dh, h, kind, aux):
    """dh *= act'(a), in place."""
    xp = B.get_array_module(dh)
    if kind == "relu":
        dh *= h > 0
    elif kind == "gelu":                          # Φ(a) + a φ(a)
        a, cdf = aux
        pdf = xp.exp(-0.5 * a * a)
        pdf *= a.dtype.type(_INV_SQRT_2PI)
        pdf *= a
        pdf += cdf
        dh *= pdf
    else:                                         # (1 + t)/2 + a (1 - t²)/2 · √(2/π)(1 + 3·0.044715 a²)
        a, t = aux
        d = 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * (_SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a))
        dh *= d
    return dh


class BertFeedForward(Function):
    """BERT's feed-forward block in one node (``intermediate.dense``, the activation,
    ``output.dense``), on rows X:

        A = X W1ᵀ + b1,   H = act(A),   Y = H W2ᵀ + b2

    Backward, with G = ∂ℓ/∂Y:

        dW2 = Gᵀ H,  db2 = Σ_rows G,  dA = (G W2) ⊙ act'(A),
        dW1 = dAᵀ X, db1 = Σ_rows dA,  dX = dA W1

    with act'(A) = Φ(A) + A φ(A) for the exact GELU, [A > 0] for ReLU.  Fusing keeps the
    (rows, intermediate_size) buffers in place and, in float32 on the CPU, evaluates the erf in
    cache-sized blocks.  Options: ``activation`` ("gelu", "gelu_tanh", "relu"), ``save``
    (keep what backward needs; False under ``no_grad``, which then works in place).
    """

    def forward(self, x, w1, b1, w2, b2, activation="gelu", save=True):
        x2 = x.reshape(-1, x.shape[-1])
        a = x2 @ w1.T
        a += b1
        h, aux = _activation_forward(a, activation, save)
        y = h @ w2.T
        y += b2
        if save:
            self.saved = (x2, w1, w2, h, aux)
        self.activation, self.in_shape = activation, x.shape
        return y.reshape(x.shape[:-1] + (w2.shape[0],))

    def backward(self, g):
        x2, w1, w2, h, aux = self.saved
        need = self.needs_input_grad
        g2 = g.reshape(-1, w2.shape[0])
        gw2 = g2.T @ h if need[3] else None
        gb2 = g2.sum(axis=0) if need[4] else None
        gx = gw1 = gb1 = None
        if need[0] or need[1] or need[2]:
            da = _activation_backward(g2 @ w2, h, self.activation, aux)
            if need[1]:
                gw1 = da.T @ x2
            if need[2]:
                gb1 = da.sum(axis=0)
            if need[0]:
                gx = (da @ w1).reshape(self.in_shape)
        return gx, gw1, gb1, gw2, gb2


def bert_feed_forward(x, w1, b1, w2, b2, activation="gelu"):
    """act(x W1ᵀ + b1) W2ᵀ + b2 as one :class:`BertFeedForward` node (Linear layouts:
    ``w1`` (intermediate, hidden), ``w2`` (hidden, intermediate))."""
    if activation not in ("gelu", "gelu_tanh", "relu"):
        raise ValueError(f"bert_feed_forward: activation must be 'gelu', 'gelu_tanh' or 'relu', got {activation!r}")
    if x.shape[-1] != w1.shape[1] or w2.shape[1] != w1.shape[0]:
        raise ValueError(f"bert_feed_forward: input {x.shape}, W1 {w1.shape} and W2 {w2.shape} do not chain "
                         f"(expected x (..., d), W1 (ff, d), W2 (d, ff))")
    args = (x, w1, b1, w2, b2)
    save = is_grad_enabled() and any(t.requires_grad for t in args)
    return BertFeedForward.apply(*args, activation=activation, save=save)


def _activate(x, kind):
    """The activation as a primitive op (the un-fused path)."""
    if kind == "relu":
        return F.relu(x)
    return F.gelu(x, approximate="tanh" if kind == "gelu_tanh" else "none")


# ----------------------------------------------------------------------------- inputs

def _as_array(x, xp):
    """The raw array of ``x`` (a Tensor, an array of either library, a list) on ``xp``'s device."""
    a = x.data if isinstance(x, Tensor) else x
    if not hasattr(a, "dtype"):
        a = np.asarray(a)
    if B.get_array_module(a) is not xp:
        a = xp.asarray(B.to_numpy(a)) if xp is not np else B.to_numpy(a)
    return a


def _index_array(x, xp, who, name):
    """Integer ids (NumPy/CuPy array, list or Tensor) as an ``xp`` array."""
    a = _as_array(x, xp)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{who}: {name} must hold integers, got dtype {a.dtype}")
    return a


def _check_range(a, n, who, name, what):
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{who}: {name} contains {bad}, outside 0..{n - 1} ({what} = {n}); "
                             f"{name} has shape {tuple(a.shape)}")


def _mask_array(m, xp, who, shape):
    """An attention mask (1 = a real token, 0 = padding; any dtype) as a boolean ``xp`` array."""
    a = _as_array(m, xp)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{who}: attention_mask has shape {tuple(a.shape)}, expected (batch, length) = "
                         f"{tuple(shape)} like input_ids")
    return a != 0


# ----------------------------------------------------------------------------- the encoder

class BertEmbeddings(Module):
    """e = dropout(LayerNorm(W_tok[x] + W_seg[s] + W_pos[i])): token, segment (token type) and
    learned position embeddings, summed.  ``word_embeddings`` row ``pad_token_id`` starts at 0
    and gets no gradient."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        who = "BertEmbeddings"
        xp = B.get_array_module(self.word_embeddings.weight.data)
        ids = _index_array(input_ids, xp, who, "input_ids")
        if ids.ndim != 2:
            raise ValueError(f"{who}: input_ids must be (batch, length), got shape {tuple(ids.shape)}")
        n, T = ids.shape
        _check_range(ids, self.word_embeddings.num_embeddings, who, "input_ids", "vocab_size")
        if position_ids is None:
            if T > self.position_embeddings.num_embeddings:
                raise ValueError(f"{who}: sequence length {T} exceeds max_position_embeddings "
                                 f"({self.position_embeddings.num_embeddings})")
            pos = xp.arange(T)[None, :]
        else:
            pos = _index_array(position_ids, xp, who, "position_ids")
            _check_range(pos, self.position_embeddings.num_embeddings, who, "position_ids",
                         "max_position_embeddings")
        if token_type_ids is None:
            tt = xp.zeros((1, 1), dtype=np.int64)           # segment 0 everywhere (broadcast)
        else:
            tt = _index_array(token_type_ids, xp, who, "token_type_ids")
            _check_range(tt, self.token_type_embeddings.num_embeddings, who, "token_type_ids",
                         "type_vocab_size")
        for name, a in (("position_ids", pos), ("token_type_ids", tt)):
            try:
                ok = np.broadcast_shapes(tuple(a.shape), (n, T)) == (n, T)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{who}: {name} of shape {tuple(a.shape)} does not match input_ids {(n, T)}")
        x = self.word_embeddings(ids) + self.token_type_embeddings(tt)   # Hugging Face's order
        x = x + self.position_embeddings(pos)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(Module):
    """Multi-head scaled dot-product self-attention with separate ``query``, ``key``, ``value``
    projections (Hugging Face's layout); the heads run in one fused attention op."""

    def __init__(self, config):
        super().__init__()
        H = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_dim
        self.query = Linear(H, H)
        self.key = Linear(H, H)
        self.value = Linear(H, H)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, x, key_mask=None, causal=False):
        n, T, H = x.shape
        h, d = self.num_attention_heads, self.attention_head_size

        def heads(t):                                       # (n, T, H) -> (n, h, T, d)
            return F.permute(F.reshape(t, n, T, h, d), 0, 2, 1, 3)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout.p,
                                           is_causal=causal, training=self.training)
        return F.reshape(F.permute(o, 0, 2, 1, 3), n, T, H)


class BertSelfOutput(Module):
    """LayerNorm(x + dropout(dense(attention)))."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(Module):
    """Sub-layer 1: ``self`` (the attention) and ``output`` (projection, residual, norm)."""

    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, key_mask=None, causal=False):
        return self.output(self.self(x, key_mask, causal), x)


class BertIntermediate(Module):
    """act(dense(x)): the widening half of the feed-forward block."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.activation = config.activation

    def forward(self, x):
        return _activate(self.dense(x), self.activation)


class BertOutput(Module):
    """LayerNorm(x + dropout(dense(h))): the narrowing half, residual and norm."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertLayer(Module):
    """One post-LN encoder layer:

        a = LayerNorm(x + dropout(MultiHead(x, x, x) W_oᵀ + b_o))
        y = LayerNorm(a + dropout(act(a W_1ᵀ + b_1) W_2ᵀ + b_2))

    The feed-forward part runs as one :class:`BertFeedForward` node (``fused_ffn = False``:
    as ``intermediate`` then ``output``, primitive ops, same result)."""

    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)
        self.fused_ffn = True

    def forward(self, x, key_mask=None, causal=False):
        a = self.attention(x, key_mask, causal)
        if not self.fused_ffn:
            return self.output(self.intermediate(a), a)
        w1, w2 = self.intermediate.dense, self.output.dense
        h = bert_feed_forward(a, w1.weight, w1.bias, w2.weight, w2.bias, self.intermediate.activation)
        return self.output.LayerNorm(self.output.dropout(h) + a)


class BertEncoder(Module):
    """``num_hidden_layers`` layers, ``layer.0``, ``layer.1``, ..."""

    def __init__(self, config):
        super().__init__()
        self.layer = ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, key_mask=None, causal=False):
        for layer in self.layer:
            x = layer(x, key_mask, causal)
        return x


class BertPooler(Module):
    """pooled = tanh(W_p h_[CLS] + b_p): the first position's vector through a dense layer."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden):
        return F.tanh(self.dense(hidden[:, 0]))


# ----------------------------------------------------------------------------- models

class _InitState:
    enabled = True       # switched off while a checkpoint is loaded (its values replace the draws)


_init_state = _InitState()


def _init_module(m, std):
    """BERT's initialisation of one module's own parameters (not its children's)."""
    if isinstance(m, Linear):
        init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            init.zeros_(m.bias)
    elif isinstance(m, Embedding):
        init.normal_(m.weight, 0.0, std)
        if m.padding_idx is not None:
            m.weight.data[m.padding_idx] = 0
    elif isinstance(m, LayerNorm):
        if m.weight is not None:
            init.ones_(m.weight)
        if m.bias is not None:
            init.zeros_(m.bias)
    elif isinstance(m, BertLMPredictionHead):
        init.zeros_(m.bias)


class BertPreTrainedModel(Module):
    """Shared by the BERT models: the config, Hugging Face's initialisation, loading."""

    def init_weights(self, module=None):
        """Initialise ``module`` (default: the whole model) for training from scratch as BERT
        does: Linear and Embedding weights ~ N(0, initializer_range²), biases 0, the padding
        row 0, LayerNorm γ = 1, β = 0, the masked-LM bias 0."""
        if not _init_state.enabled:
            return self
        std = self.config.initializer_range
        for m in (module or self).modules():
            _init_module(m, std)
        return self

    def num_parameters(self):
        """Number of trainable numbers (a tied weight counted once)."""
        return int(sum(p.size for p in self.parameters()))

    @classmethod
    def from_pretrained(cls, path, dtype=np.float32, strict=True, device=None, **kwargs):
        """Load a Hugging Face BERT checkpoint directory (see
        :func:`minibidir.models.pretrained.load_hf_bert`); the model is in eval mode."""
        from .pretrained import load_hf_bert
        model, _ = load_hf_bert(path, dtype=dtype, model_class=cls, strict=strict, device=device, **kwargs)
        return model


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, ``num_hidden_layers`` post-LN layers, and (unless
    ``add_pooling_layer=False``) the pooler.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None)``:
    ``input_ids`` (batch, length) integer array or Tensor; ``attention_mask`` (batch, length),
    1 for real tokens and 0 for padding (padded keys get no attention); ``token_type_ids``
    the segment of each token (default 0); ``position_ids`` default 0..length-1.  Returns
    ``(sequence_output, pooled_output)``: (batch, length, hidden) and (batch, hidden) =
    tanh(W_p h_[CLS] + b_p), or ``None`` without a pooler.

    With ``config.causal`` the self-attention is masked left-to-right.  A query whose keys are
    all masked (a sequence that is all padding) gets attention output 0.
    """

    def __init__(self, config, add_pooling_layer=True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        key_mask = None
        if attention_mask is not None:
            xp = B.get_array_module(x.data)
            n, T = x.shape[:2]
            key_mask = _mask_array(attention_mask, xp, type(self).__name__, (n, T)).reshape(n, 1, 1, T)
        seq = self.encoder(x, key_mask, self.config.causal)
        pooled = self.pooler(seq) if self.pooler is not None else None
        return seq, pooled

    def extra_repr(self):
        return "causal=True" if self.config.causal else ""


class _TiedDecoder(Module):
    """The vocabulary projection W_c h + b_c, holding the word-embedding matrix itself as its
    weight (one shared Parameter) and the prediction head's bias.  It exists so that the state
    dict carries Hugging Face's ``cls.predictions.decoder.weight`` / ``.bias`` names."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = weight
        self.bias = bias

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        v, h = self.weight.shape
        return f"in_features={h}, out_features={v}, tied to the word embeddings"


class BertPredictionHeadTransform(Module):
    """LayerNorm(act(dense(h))): BERT's transform before the vocabulary projection."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = config.activation
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h):
        return self.LayerNorm(_activate(self.dense(h), self.activation))


class BertLMPredictionHead(Module):
    """scores = W_c transform(h) + b_c, W_c the (tied) word embeddings, b_c = ``bias``."""

    def __init__(self, config, word_embeddings_weight):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = Parameter(B.array_module().zeros(config.vocab_size, dtype=word_embeddings_weight.dtype))
        self.decoder = _TiedDecoder(word_embeddings_weight, self.bias)

    def forward(self, h):
        return self.decoder(self.transform(h))


class BertOnlyMLMHead(Module):
    def __init__(self, config, word_embeddings_weight):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings_weight)

    def forward(self, h):
        return self.predictions(h)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-language-model head (document 002 §4.1):

        P(x_i | X∖x_i) = softmax(W_c h̃_i + b_c),   h̃_i = LayerNorm(GELU(W_t h_i + b_t))

    with W_c the word-embedding matrix (tied: one Parameter, trained by both uses).

    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
    labels=None, masked_positions=None)``:

    * ``masked_positions=None``: logits for every position, (batch, length, vocab_size);
    * ``masked_positions`` a boolean (batch, length) array: logits only for the True positions,
      (count, vocab_size) in row-major order.  The head (transform and vocabulary projection)
      then runs on those rows only, e.g. ``masked_positions=labels != -100``: the loss is the
      same and, with 15% of the tokens masked, the training step is about 2.4x cheaper.

    ``labels`` (batch, length), the original token at masked positions and -100 elsewhere
    (ignored), or already gathered to (count,) with ``masked_positions``: then the result is
    ``(loss, logits)`` with the mean cross-entropy over the labelled positions.

    With ``config.causal`` this is the left-to-right twin: label position t with token t+1
    (:func:`next_token_labels`) and it is a left-to-right language model of the same size.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.init_weights(self.cls)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                labels=None, masked_positions=None):
        who = type(self).__name__
        seq, _ = self.bert(input_ids, attention_mask, token_type_ids, position_ids)
        n, T, H = seq.shape
        xp = B.get_array_module(seq.data)
        tgt = None
        if labels is not None:
            tgt = _index_array(labels, xp, who, "labels")
        if masked_positions is None:
            logits = self.cls(seq)
            if tgt is None:
                return logits
            if tuple(tgt.shape) != (n, T):
                raise ValueError(f"{who}: labels have shape {tuple(tgt.shape)}, expected {(n, T)}")
            loss = F.cross_entropy(F.reshape(logits, n * T, -1), tgt.reshape(-1), ignore_index=-100)
            return loss, logits
        sel = _as_array(masked_positions, xp)
        if sel.dtype != np.bool_ or tuple(sel.shape) != (n, T):
            raise ValueError(f"{who}: masked_positions must be a boolean array of shape {(n, T)}, got "
                             f"{sel.dtype} {tuple(sel.shape)}")
        rows = xp.flatnonzero(sel.reshape(-1))
        logits = self.cls(F.reshape(seq, n * T, H)[rows])         # gather first, then the head
        if tgt is None:
            return logits
        if tuple(tgt.shape) == (n, T):
            tgt = tgt.reshape(-1)[rows]
        elif tuple(tgt.shape) != (rows.shape[0],):
            raise ValueError(f"{who}: labels have shape {tuple(tgt.shape)}, expected {(n, T)} or the "
                             f"{int(rows.shape[0])} masked positions")
        return F.cross_entropy(logits, tgt, ignore_index=-100), logits


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT with a classifier on the [CLS] position (document 002 §4.2):

        P(y | X) = softmax(W_d v + b_d),   v = tanh(W_p h_[CLS] + b_p)  (pooling="pooler")
                                           v = h_[CLS]                  (pooling="cls")

    "pooler" is Hugging Face's ``BertForSequenceClassification`` (and BERT's); "cls" is the
    document's formula as written (the model then has no pooler).  Dropout
    (``classifier_dropout`` or ``hidden_dropout_prob``) is applied to v in training.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
    labels=None)`` returns logits (batch, num_labels), or ``(loss, logits)`` with ``labels``:
    cross-entropy for integer labels, mean squared error when ``num_labels == 1``, and
    binary cross-entropy with logits for float (batch, num_labels) multi-label targets.
    """

    def __init__(self, config, num_labels=2, pooling="pooler"):
        super().__init__()
        if pooling not in ("pooler", "cls"):
            raise ValueError(f"BertForSequenceClassification: pooling must be 'pooler' or 'cls', got {pooling!r}")
        if not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"BertForSequenceClassification: num_labels must be a positive integer, "
                             f"got {num_labels!r}")
        self.config = config
        self.num_labels = int(num_labels)
        self.pooling = pooling
        self.bert = BertModel(config, add_pooling_layer=pooling == "pooler")
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = Linear(config.hidden_size, self.num_labels)
        self.init_weights(self.classifier)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None):
        who = type(self).__name__
        seq, pooled = self.bert(input_ids, attention_mask, token_type_ids, position_ids)
        v = pooled if self.pooling == "pooler" else seq[:, 0]
        logits = self.classifier(self.dropout(v))
        if labels is None:
            return logits
        xp = B.get_array_module(logits.data)
        y = _as_array(labels, xp)
        n = logits.shape[0]
        if self.num_labels == 1:
            y = y.reshape(n, 1).astype(logits.dtype)
            return F.mse_loss(logits, y), logits
        if y.dtype.kind in "iu":
            if tuple(y.shape) != (n,):
                raise ValueError(f"{who}: integer labels must have shape ({n},), got {tuple(y.shape)}")
            return F.cross_entropy(logits, y), logits
        if tuple(y.shape) != tuple(logits.shape):
            raise ValueError(f"{who}: float (multi-label) targets must have shape {logits.shape}, "
                             f"got {tuple(y.shape)}")
        return F.binary_cross_entropy_with_logits(logits, y.astype(logits.dtype)), logits


# ----------------------------------------------------------------------------- the left-to-right twin

def next_token_labels(input_ids, attention_mask=None, ignore_index=-100):
    """Labels for a left-to-right language model: position t is labelled with token t+1.

    The last position, and positions whose next token is padding, get ``ignore_index``.
    With a causal :class:`BertForMaskedLM` this trains P(x_{t+1} | x_1..x_t) - the
    unidirectional counterpart of the masked-LM objective P(x_i | X∖x_i).  (A masked LM needs
    no such shift: its label sits at the masked position itself.)
    """
    raw = input_ids.data if isinstance(input_ids, Tensor) else input_ids
    xp = B.get_array_module(raw)
    ids = _as_array(raw, xp)
    labels = xp.full(ids.shape, ignore_index, dtype=np.int64)
    labels[:, :-1] = ids[:, 1:]
    if attention_mask is not None:
        m = _as_array(attention_mask, xp)
        nxt = xp.zeros(ids.shape, dtype=bool)
        nxt[:, :-1] = m[:, 1:] != 0
        labels[~nxt] = ignore_index
    return labels
