"""Scaled dot-product attention as one fused op with a hand-written backward.

For queries Q (..., L, E), keys K (..., S, E) and values V (..., S, Ev):

    S = Q Kᵀ · scale (+ mask),   P = softmax(S) along the last axis,   O = P V

and, with G = ∂ℓ/∂O,

    dV = Pᵀ G,   dP = G Vᵀ,   dS = P ⊙ (dP − rowsum(dP ⊙ P)),
    dQ = dS K · scale,   dK = dSᵀ Q · scale.

Two savings over composing the op from primitives: the scale is folded into Q once
(Q' = Q · scale, so dK = dSᵀ Q' needs no extra pass), and rowsum(dP ⊙ P) is computed as
rowsum(G ⊙ O), because Σ_j P_ij (G Vᵀ)_ij = Σ_d G_id (P V)_id: a sum over Ev columns
instead of S.  Softmax runs in place on the score buffer, and the backward reuses the
dP buffer for dS.

A row in which every key is masked out has no defined softmax (a plain softmax over it gives NaN, as ``torch.softmax`` and ``torch.nn.MultiheadAttention`` do).
Here its weights are defined as 0, so its output is 0 and no gradient flows through it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from ..backend import get_array_module
from ..autograd import Function, Tensor
from ._common import _t
from .shape import astype

__all__ = ["ScaledDotProductAttention", "scaled_dot_product_attention"]


class ScaledDotProductAttention(Function):
    """O = softmax(Q Kᵀ · scale + mask) V in one node (see the module docstring for the
    backward formulas).  Inputs: q, k, v and, optionally, a float mask that needs a gradient
    (dmask = dS).  Options: ``bias`` (a constant additive mask, already broadcastable to the
    scores), ``scale``, ``dropout_p`` (inverted dropout on P), ``masked`` (whether rows may be
    fully masked), ``return_weights`` (also output the weights used, after dropout)."""

    def forward(self, q, k, v, *mask, bias=None, scale=1.0, dropout_p=0.0, masked=False,
                return_weights=False):
        xp = get_array_module(q)
        dt = q.dtype.type
        qs = q * dt(scale)                                  # Q' = Q · scale, saved for dK
        s = qs @ k.swapaxes(-1, -2)                         # scores, (..., L, S)
        if bias is not None:
            s += bias
        if mask:
            s += mask[0]
        # softmax in place: subtract the row max, exponentiate, divide by the row sum
        m = s.max(axis=-1, keepdims=True)
        if masked:
            m[~xp.isfinite(m)] = 0                          # fully masked row: exp(-inf) = 0
        s -= m
        xp.exp(s, out=s)
        z = s.sum(axis=-1, keepdims=True)
        if masked:
            z[z == 0] = 1                                   # ... and 0 / 1 = 0, not NaN
        s /= z
        p = s
        if dropout_p > 0.0:
            if dropout_p >= 1.0:
                keep = xp.zeros(p.shape, dtype=p.dtype)
            else:
                keep = (B.random_uniform(xp, p.shape, p.dtype) >= dropout_p) * dt(1.0 / (1.0 - dropout_p))
            pu = p * keep                                   # the weights actually used
        else:
            keep, pu = None, p
        o = pu @ v
        self.saved = (qs, k, v, p, keep, pu, o)
        self.scale = scale
        if return_weights:
            return o, pu
        return o

    def backward(self, go, gp=None):
        qs, k, v, p, keep, pu, o = self.saved
        need = self.needs_input_grad
        need_s = need[0] or need[1] or (len(need) > 3 and need[3])
        gq = gk = gv = gm = None
        if go is not None and need[2]:
            gv = pu.swapaxes(-1, -2) @ go                   # dV = Pᵀ G
        if need_s:
            if go is not None:
                dp = go @ v.swapaxes(-1, -2)                # dP = G Vᵀ  (w.r.t. the used weights)
                r = (go * o).sum(axis=-1, keepdims=True)    # rowsum(dP ⊙ P) = rowsum(G ⊙ O)
                if gp is not None:
                    dp += gp
                    r += (gp * pu).sum(axis=-1, keepdims=True)
            else:
                dp = gp.copy()
                r = (gp * pu).sum(axis=-1, keepdims=True)
            if keep is not None:
                dp *= keep                                  # back through the dropout
            dp -= r
            dp *= p                                         # dS = P ⊙ (dP − r), in the dP buffer
            ds = dp
            if need[0]:
                gq = ds @ k                                 # dQ = dS K · scale
                gq *= qs.dtype.type(self.scale)
            if need[1]:
                gk = ds.swapaxes(-1, -2) @ qs               # dK = dSᵀ Q' (the scale is in Q')
            if len(need) > 3 and need[3]:
                gm = ds
        return (gq, gk, gv) + ((gm,) if len(need) > 3 else ())


def _mask_array(mask, xp, name):
    """A mask's raw array on the device of ``xp``."""
    a = mask.data if isinstance(mask, Tensor) else mask
    if get_array_module(a) is not xp:
        a = xp.asarray(B.to_numpy(a)) if xp is not np else B.to_numpy(a)
    if a.dtype != np.bool_ and a.dtype.kind != "f":
        raise TypeError(f"scaled_dot_product_attention: {name} must be boolean or floating point, "
                        f"got dtype {a.dtype}")
    return a


def _bool_to_bias(allowed, xp, dtype):
    """0 where ``allowed``, -inf elsewhere."""
    b = xp.zeros(allowed.shape, dtype=dtype)
    b[~allowed] = float("-inf")
    return b


def _causal_allowed(L, S, xp=None):
    """Boolean (L, S) mask, True where key j may be attended from query i (j ≤ i): the
    lower-triangular mask of ``is_causal=True`` (aligned to the top-left corner)."""
    xp = xp or B.array_module()
    return xp.arange(S)[None, :] <= xp.arange(L)[:, None]


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, training=True, return_weights=False):
    """softmax(Q Kᵀ · scale + mask) V, as ``torch.nn.functional.scaled_dot_product_attention``.

    Shapes: ``query`` (..., L, E), ``key`` (..., S, E), ``value`` (..., S, Ev); the leading
    dimensions broadcast; the output is (..., L, Ev).

    ``attn_mask`` broadcasts to the scores' shape (..., L, S): a boolean mask keeps the
    positions where it is **True** (PyTorch's SDPA convention - the opposite of
    ``nn.MultiheadAttention``'s boolean masks), a float mask is added to the scores (a float
    mask that requires grad receives one).  ``is_causal`` lets query i see keys 0..i only; it
    may be combined with ``attn_mask`` (both apply).  ``scale`` defaults to 1/√E.
    ``dropout_p`` drops attention weights (scaling the rest by 1/(1-p)) when ``training``.

    A query row whose keys are all masked gets weights 0 and output 0 (a plain softmax gives NaN there),
    and passes no gradient.  With ``return_weights=True`` the result is ``(output, weights)``,
    the weights (..., L, S) being those multiplied with V (after dropout); both outputs are
    differentiable.
    """
    q, k, v = _t(query), _t(key), _t(value)
    op = "scaled_dot_product_attention"
    for name, t in (("query", q), ("key", k), ("value", v)):
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dimensions (..., length, features), "
                             f"got shape {t.shape}")
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating point, got dtype {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{op}: query, key and value must have the same dtype, got "
                        f"{q.dtype}, {k.dtype} and {v.dtype}")
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if k.shape[-1] != E:
        raise ValueError(f"{op}: query has {E} features per position (shape {q.shape}) but key has "
                         f"{k.shape[-1]} (shape {k.shape})")
    if v.shape[-2] != S:
        raise ValueError(f"{op}: key has {S} positions (shape {k.shape}) but value has {v.shape[-2]} "
                         f"(shape {v.shape})")
    try:
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"{op}: the leading dimensions of query {q.shape}, key {k.shape} and value "
                         f"{v.shape} do not broadcast") from None
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    if scale is None:
        scale = 1.0 / math.sqrt(E) if E else 1.0
    xp = get_array_module(q.data)
    dt = q.dtype
    scores_shape = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2])) + (L, S)

    bias = None
    grad_mask = None
    if attn_mask is not None:
        m = _mask_array(attn_mask, xp, "attn_mask")
        try:
            ok = np.broadcast_shapes(tuple(m.shape), scores_shape) == scores_shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: attn_mask of shape {tuple(m.shape)} does not broadcast to the "
                             f"attention scores' shape {scores_shape} (expected (L, S) = ({L}, {S}), "
                             f"optionally with leading dimensions)")
        if m.dtype == np.bool_:
            bias = _bool_to_bias(m, xp, dt)
        elif isinstance(attn_mask, Tensor) and attn_mask.requires_grad and m is attn_mask.data:
            grad_mask = attn_mask if attn_mask.dtype == dt else astype(attn_mask, dt)
        else:
            bias = m.astype(dt, copy=False)
    if is_causal:
        cb = _bool_to_bias(_causal_allowed(L, S, xp), xp, dt)
        bias = cb if bias is None else bias + cb
    masked = bias is not None or grad_mask is not None
    p = dropout_p if training else 0.0
    extra = (grad_mask,) if grad_mask is not None else ()
    return ScaledDotProductAttention.apply(q, k, v, *extra, bias=bias, scale=float(scale), dropout_p=p,
                                           masked=masked, return_weights=return_weights)
