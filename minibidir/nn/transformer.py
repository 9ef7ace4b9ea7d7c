"""Transformer encoder and decoder layers and their stacks (``torch.nn.Transformer*``).

The document's encoder layer (§3.2-§3.4) is two sub-layers, each wrapped in a residual
connection and a layer normalisation:

    Output = LayerNorm(x + Sublayer(x))                                   (§3.3)

    sub-layer 1: multi-head self-attention   MultiHead(x, x, x)          (§3.2)
    sub-layer 2: position-wise feed-forward  FFN(x) = max(0, x W1 + b1) W2 + b2   (§3.4)

and the encoder (§3.5) stacks ``num_layers`` such layers, each one's output the next
one's input.  The input of the first is token embeddings + positional encodings (§3.1,
see :mod:`minibidir.nn.positional`).

The classes here have PyTorch's constructor arguments, forward signatures and
state-dict names (``self_attn.in_proj_weight``, ``linear1.weight``, ``norm1.weight``,
``layers.0.…``), so ``load_state_dict(torch_module.state_dict())`` moves weights either
way.  Two arrangements of each sub-layer (``norm_first``):

    post-LN (default, the document and the original paper):  x = LayerNorm(x + Sublayer(x))
    pre-LN  (``norm_first=True``):                            x = x + Sublayer(LayerNorm(x))

Pre-LN keeps an un-normalised residual path from input to output, which trains deep stacks
without learning-rate warm-up (Xiong et al., 2020); a pre-LN stack usually ends with a final
LayerNorm (``TransformerEncoder(..., norm=LayerNorm(d_model))``).

Masks follow :class:`~minibidir.nn.MultiheadAttention` (PyTorch's convention): a boolean
``True`` means "may not attend"; a float mask is added to the attention scores (0 or -inf).
"""
from __future__ import annotations

import copy
import math

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Function, Tensor
from .activation import GELU, ReLU
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear
from .module import Module, ModuleList
from .norm import LayerNorm

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerDecoder", "generate_square_subsequent_mask", "FeedForward", "feed_forward"]


# ----------------------------------------------------------------------------- helpers

def generate_square_subsequent_mask(sz, device=None, dtype=None):
    """The causal mask for a sequence of length ``sz``: a float ``(sz, sz)`` Tensor with 0 on
    and below the diagonal and ``-inf`` above it, so position i attends to 0..i only
    (``torch.nn.Transformer.generate_square_subsequent_mask``).

    ``device``: "cpu" or "cuda" (default: the current backend); ``dtype``: a float dtype
    (default: the default dtype).
    """
    if not isinstance(sz, (int, np.integer)) or isinstance(sz, bool) or sz < 0:
        raise ValueError(f"generate_square_subsequent_mask: sz must be a non-negative integer, got {sz!r}")
    dtype = np.dtype(dtype or B.get_default_dtype())
    if dtype.kind != "f":
        raise TypeError(f"generate_square_subsequent_mask: dtype must be floating point, got {dtype}")
    mask = np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1)
    if device is None:
        xp = B.array_module()
        data = mask if xp is np else xp.asarray(mask)
    else:
        data = B.to_device(mask, device)
    return Tensor._make(data, False, None, 0)


def _get_activation_fn(activation, who):
    """"relu" -> F.relu, "gelu" -> F.gelu (exact, erf-based), a callable -> itself."""
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise ValueError(f"{who}: activation should be 'relu', 'gelu' or a callable, not {activation!r}")
    if not callable(activation):
        raise TypeError(f"{who}: activation should be 'relu', 'gelu' or a callable, "
                        f"got {type(activation).__name__}")
    return activation


def _get_clones(module, n):
    """``n`` independent deep copies of ``module`` in a ModuleList (PyTorch's ``_get_clones``):
    the copies start with identical weights and train separately."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"num_layers must be a positive integer, got {n!r}")
    return ModuleList([copy.deepcopy(module) for _ in range(n)])


def _seq_len(x, batch_first):
    if x.ndim == 2:          # unbatched (S, E)
        return x.shape[0]
    return x.shape[1] if batch_first else x.shape[0]


def _batch_first(layer):
    attn = getattr(layer, "self_attn", None)
    return bool(getattr(attn, "batch_first", False))


def _detect_is_causal_mask(mask, is_causal=None, size=None):
    """``is_causal`` when given; otherwise whether ``mask`` equals the causal mask of ``size``
    (float: -inf above the diagonal, 0 elsewhere; boolean: True above the diagonal).

    As in PyTorch this is a hint: the layers always apply ``mask`` itself when one is given.
    """
    if is_causal is not None:
        return bool(is_causal)
    if mask is None:
        return False
    a = mask.data if isinstance(mask, Tensor) else mask
    xp = B.get_array_module(a)
    sz = size if size is not None else a.shape[-2]
    if tuple(a.shape) != (sz, sz):
        return False
    upper = xp.triu(xp.ones((sz, sz), dtype=bool), 1)
    if a.dtype == np.bool_:
        return bool((a == upper).all())
    return bool(((a == -np.inf) == upper).all()) and bool((a[~upper] == 0).all())


def _finish_init(module, device):
    if device is not None:
        module.to(device)


# ----------------------------------------------------------------------------- the feed-forward sub-layer

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class FeedForward(Function):
    """The position-wise feed-forward network in one node (document §3.4), on rows X:

        A = X W1ᵀ + b1,   H = dropout(act(A)),   Y = H W2ᵀ + b2

    With act = ReLU and no dropout this is the document's FFN(x) = max(0, x W1 + b1) W2 + b2
    (its W1, W2 are ``linear1.weight``ᵀ, ``linear2.weight``ᵀ here, PyTorch's layout).
    ``act`` is "relu" or "gelu" (exact: A Φ(A)).  Dropout keeps each element with
    probability 1 - p and scales it by 1/(1-p); M is that mask (0 or 1/(1-p)).

    Backward, with G = ∂ℓ/∂Y:

        dW2 = Gᵀ H,   db2 = Σ_rows G,   dH = G W2,
        dA = dH ⊙ M ⊙ act'(A)      (ReLU: [A > 0];  GELU: Φ(A) + A φ(A)),
        dW1 = dAᵀ X,  db1 = Σ_rows dA,  dX = dA W1.

    What fusing saves over Linear, activation, Dropout, Linear as four nodes: the bias, the
    activation and the dropout run in place on one (rows, dim_feedforward) buffer, and the
    backward works in place on dH.  For ReLU only H is kept, because M ⊙ [A > 0] =
    [H > 0] / (1-p); the composed ops keep the activation's output, the dropout mask and the
    dropout's output.  The dropout draws the same random numbers, in the same order, as
    ``F.dropout``, so the fused and composed sub-layers give identical results.
    """

    def forward(self, x, w1, w2, *biases, activation="relu", p=0.0):
        xp = B.get_array_module(x)
        dt = x.dtype.type
        x2 = x.reshape(-1, x.shape[-1])
        a = x2 @ w1.T                                         # A = X W1ᵀ + b1
        if biases:
            a += biases[0]
        keep = None
        if activation == "relu":
            h = xp.maximum(a, 0, out=a)                       # in place: A is not needed again
            saved_act = None
        else:                                                 # exact GELU: A Φ(A)
            cdf = 0.5 * (1 + B.erf(a * _INV_SQRT_2))
            h = a * cdf
            saved_act = (a, cdf)
        if p > 0.0:
            if p >= 1.0:
                h[...] = 0
                keep = xp.zeros(h.shape, dtype=bool)
            else:
                keep = B.random_uniform(xp, h.shape, h.dtype) >= p      # as F.dropout draws it
                h *= keep
                h *= dt(1.0 / (1.0 - p))
        y = h @ w2.T                                          # Y = H W2ᵀ + b2
        if biases:
            y += biases[1]
        self.saved = (x2, w1, w2, h, keep, saved_act)
        self.activation, self.p, self.in_shape = activation, p, x.shape
        return y.reshape(x.shape[:-1] + (w2.shape[0],))

    def backward(self, g):
        x2, w1, w2, h, keep, saved_act = self.saved
        need = self.needs_input_grad
        g2 = g.reshape(-1, w2.shape[0])
        gw2 = g2.T @ h if need[2] else None                   # dW2 = Gᵀ H
        gb2 = g2.sum(axis=0) if len(need) > 4 and need[4] else None
        gx = gw1 = gb1 = None
        if need[0] or need[1] or (len(need) > 3 and need[3]):
            ga = g2 @ w2                                      # dH = G W2, then dA in place
            p = self.p
            if self.activation == "relu":
                ga *= h > 0                                   # M ⊙ [A > 0] = [H > 0] / (1-p)
                if 0.0 < p < 1.0:
                    ga *= ga.dtype.type(1.0 / (1.0 - p))
            else:
                if keep is not None:
                    ga *= keep
                    if p < 1.0:
                        ga *= ga.dtype.type(1.0 / (1.0 - p))
                a, cdf = saved_act
                xp = B.get_array_module(a)
                pdf = _INV_SQRT_2PI * xp.exp(-0.5 * a * a)
                ga *= cdf + a * pdf                           # GELU'(A) = Φ(A) + A φ(A)
            if need[1]:
                gw1 = ga.T @ x2                               # dW1 = dAᵀ X
            if len(need) > 3 and need[3]:
                gb1 = ga.sum(axis=0)
            if need[0]:
                gx = (ga @ w1).reshape(self.in_shape)         # dX = dA W1
        return (gx, gw1, gw2) + ((gb1, gb2) if len(need) > 3 else ())


def feed_forward(x, w1, b1, w2, b2, activation="relu", dropout=0.0, training=True):
    """``linear2(dropout(act(linear1(x))))`` as one :class:`FeedForward` node.

    ``w1`` (dim_feedforward, d_model) and ``w2`` (d_model, dim_feedforward) in PyTorch's
    Linear layout; ``b1``, ``b2`` both given or both ``None``; ``activation`` "relu" or "gelu";
    ``dropout`` applies in training only.
    """
    if activation not in ("relu", "gelu"):
        raise ValueError(f"feed_forward: activation must be 'relu' or 'gelu', got {activation!r}")
    if (b1 is None) != (b2 is None):
        raise ValueError("feed_forward: give both biases or neither")
    if x.shape[-1] != w1.shape[1] or w2.shape[1] != w1.shape[0]:
        raise ValueError(f"feed_forward: input {x.shape}, W1 {w1.shape} and W2 {w2.shape} do not chain "
                         f"(expected x (..., d), W1 (ff, d), W2 (d, ff))")
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"feed_forward: dropout must be in [0, 1], got {dropout}")
    p = dropout if training else 0.0
    biases = (b1, b2) if b1 is not None else ()
    return FeedForward.apply(x, w1, w2, *biases, activation=activation, p=p)


def _fused_activation(layer):
    """"relu" / "gelu" when the layer's feed-forward part can run as one FeedForward node."""
    if not getattr(layer, "fused_ffn", False):
        return None
    if type(layer.linear1) is not Linear or type(layer.linear2) is not Linear:
        return None
    if (layer.linear1.bias is None) != (layer.linear2.bias is None):
        return None
    act = layer.activation
    if act is F.relu or type(act) is ReLU:
        return "relu"
    if act is F.gelu or (type(act) is GELU and act.approximate == "none"):
        return "gelu"
    return None


def _feed_forward_block(layer, x):
    """linear2(dropout(activation(linear1(x)))), fused when it can be (same result)."""
    kind = _fused_activation(layer)
    if kind is None:
        return layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))
    return feed_forward(x, layer.linear1.weight, layer.linear1.bias, layer.linear2.weight,
                        layer.linear2.bias, activation=kind, dropout=layer.dropout.p,
                        training=layer.dropout.training)


# ----------------------------------------------------------------------------- layers

class TransformerEncoderLayer(Module):
    """One encoder layer: self-attention, then a position-wise feed-forward network, each in a
    residual connection with layer normalisation (document §3.2-§3.4).

    Post-LN (``norm_first=False``, the default and the document's form
    ``Output = LayerNorm(x + Sublayer(x))``)::

        x = norm1(x + dropout1(self_attn(x, x, x)))
        x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))

    Pre-LN (``norm_first=True``)::

        x = x + dropout1(self_attn(norm1(x), norm1(x), norm1(x)))
        x = x + dropout2(linear2(dropout(activation(linear1(norm2(x))))))

    With ``activation="relu"`` the feed-forward part is the document's
    ``FFN(x) = max(0, x W1 + b1) W2 + b2`` (``linear1`` holds W1ᵀ, b1; ``linear2`` W2ᵀ, b2).
    For "relu" and "gelu" it runs as one :class:`FeedForward` node (the same numbers, fewer
    passes and less memory); ``layer.fused_ffn = False`` runs the four ops one by one.

    Arguments as ``torch.nn.TransformerEncoderLayer``: ``d_model``, ``nhead``,
    ``dim_feedforward=2048``, ``dropout=0.1``, ``activation`` ("relu", "gelu" - exact erf
    GELU - or any callable, e.g. ``nn.GELU("tanh")``), ``layer_norm_eps=1e-5``,
    ``batch_first=False``, ``norm_first=False``, ``bias=True`` (False removes the biases of the
    linear layers, the attention and the layer norms), ``device``, ``dtype``.

    Parameters (PyTorch's state-dict names): ``self_attn.in_proj_weight``,
    ``self_attn.in_proj_bias``, ``self_attn.out_proj.weight``, ``self_attn.out_proj.bias``,
    ``linear1.weight``, ``linear1.bias``, ``linear2.weight``, ``linear2.bias``,
    ``norm1.weight``, ``norm1.bias``, ``norm2.weight``, ``norm2.bias``.

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: ``src`` is
    (S, N, E), (N, S, E) with ``batch_first``, or unbatched (S, E); ``src_mask`` (S, S) or
    (N·nhead, S, S); ``src_key_padding_mask`` (N, S), True at padding.  ``is_causal`` is a hint
    that ``src_mask`` is the causal mask; with ``is_causal=True`` and no ``src_mask`` the causal
    mask is applied (PyTorch raises there).  There is no inference "fast path": padded
    positions get ordinary (finite) outputs, where PyTorch's nested-tensor path gives zeros.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True, device=None,
                 dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        # the feed-forward network FFN(x) = activation(x W1 + b1) W2 + b2
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _get_activation_fn(activation, type(self).__name__)
        self.fused_ffn = True          # run the feed-forward part as one FeedForward node
        _finish_init(self, device)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        """Sub-layer 1: dropout1(MultiHead(x, x, x))."""
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        """Sub-layer 2: dropout2(linear2(dropout(activation(linear1(x))))) - with ReLU and no
        dropout, FFN(x) = max(0, x W1 + b1) W2 + b2.  One :class:`FeedForward` node for "relu"
        and "gelu" (set ``fused_ffn = False`` to run the four ops separately)."""
        return self.dropout2(_feed_forward_block(self, x))

    def extra_repr(self):
        return f"norm_first={self.norm_first}"


class TransformerDecoderLayer(Module):
    """One decoder layer: masked self-attention over the target, cross-attention from the target
    to the encoder's output (``memory``), and the feed-forward network, each in a residual
    connection with layer normalisation.

    Post-LN (default)::

        x = norm1(x + dropout1(self_attn(x, x, x, tgt_mask)))
        x = norm2(x + dropout2(multihead_attn(x, memory, memory, memory_mask)))
        x = norm3(x + dropout3(linear2(dropout(activation(linear1(x))))))

    Pre-LN (``norm_first=True``)::

        x = x + dropout1(self_attn(norm1(x), ..., tgt_mask))
        x = x + dropout2(multihead_attn(norm2(x), memory, memory, memory_mask))
        x = x + dropout3(linear2(dropout(activation(linear1(norm3(x))))))

    The queries of the cross-attention come from the target, its keys and values from the
    memory, so every target position can look at the whole source sentence while the
    self-attention (with a causal ``tgt_mask``) only looks back.

    Arguments as :class:`TransformerEncoderLayer` (PyTorch's). Parameters: the encoder layer's
    plus ``multihead_attn.*`` and ``norm3.*``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``.
    ``tgt_is_causal=True`` without ``tgt_mask`` applies the causal mask.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True, device=None,
                 dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _get_activation_fn(activation, type(self).__name__)
        self.fused_ffn = True          # run the feed-forward part as one FeedForward node
        _finish_init(self, device)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                    memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                               memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        """Sub-layer 1: dropout1(MultiHead(x, x, x)), usually with a causal mask."""
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           is_causal=is_causal, need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal=False):
        """Sub-layer 2: dropout2(MultiHead(x, memory, memory)) - cross-attention."""
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                is_causal=is_causal, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        """Sub-layer 3: dropout3(linear2(dropout(activation(linear1(x))))) (fused as in the
        encoder layer)."""
        return self.dropout3(_feed_forward_block(self, x))

    def extra_repr(self):
        return f"norm_first={self.norm_first}"


# ----------------------------------------------------------------------------- stacks

class TransformerEncoder(Module):
    """A stack of ``num_layers`` encoder layers (document §3.5), then an optional final ``norm``.

        x_0 = src,   x_l = layer_l(x_{l-1}),   output = norm(x_L)  (or x_L without a norm)

    ``TransformerEncoder(encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
    mask_check=True)``: like PyTorch, the stack holds ``num_layers`` deep copies of
    ``encoder_layer`` (``layers.0``, ``layers.1``, ...), which start with identical weights.
    ``enable_nested_tensor`` and ``mask_check`` are accepted for compatibility and have no
    effect (there is no nested-tensor fast path).

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None)``: ``is_causal=None``
    detects whether ``mask`` is the causal mask (a hint passed to the layers, as in PyTorch).
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = _get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.mask_check = mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        batch_first = _batch_first(self.layers[0])
        is_causal = _detect_is_causal_mask(mask, is_causal, _seq_len(src, batch_first))
        output = src
        for mod in self.layers:
            output = mod(output, src_mask=mask, is_causal=is_causal,
                         src_key_padding_mask=src_key_padding_mask)
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(Module):
    """A stack of ``num_layers`` decoder layers, each attending to the same ``memory``, then an
    optional final ``norm``.

    ``TransformerDecoder(decoder_layer, num_layers, norm=None)``; ``forward(tgt, memory,
    tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    tgt_is_causal=None, memory_is_causal=False)`` (PyTorch's).
    """

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        batch_first = _batch_first(self.layers[0])
        tgt_is_causal = _detect_is_causal_mask(tgt_mask, tgt_is_causal, _seq_len(tgt, batch_first))
        output = tgt
        for mod in self.layers:
            output = mod(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                         tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask,
                         tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output
