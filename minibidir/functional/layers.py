"""Fused layer ops: dropout, embedding lookup, layer normalisation."""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from ..backend import get_array_module
from ..autograd import Function, Tensor
from ._common import _t


# ----------------------------------------------------------------------------- dropout, embedding, norm

class Dropout(Function):
    """Inverted dropout: y = x m / (1-p), m ~ Bernoulli(1-p);  dx = g m / (1-p)."""
    def forward(self, x, p=0.5):
        xp = get_array_module(x)
        if p >= 1.0:
            self.mask = xp.zeros(x.shape, dtype=x.dtype)
        else:
            keep = B.random_uniform(xp, x.shape, x.dtype) >= p
            self.mask = keep * x.dtype.type(1.0 / (1.0 - p))
        return x * self.mask

    def backward(self, g):
        return g * self.mask


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` while training, scaling the rest by 1/(1-p);
    the identity in evaluation (``training=False``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    return Dropout.apply(_t(x), p=p)


class Embedding(Function):
    """y[...] = W[ids[...]];  dW[k] = Σ of g over the positions whose id is k (scatter-add);
    the ``padding_idx`` row gets no gradient."""
    def forward(self, w, ids=None, padding_idx=None):
        self.ids, self.padding_idx = ids, padding_idx
        self.wshape = w.shape
        return w[ids]

    def backward(self, g):
        xp = get_array_module(g)
        gw = xp.zeros(self.wshape, dtype=g.dtype)
        B.scatter_add(gw, self.ids.reshape(-1), g.reshape(-1, self.wshape[1]))
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return gw


def embedding(ids, weight, padding_idx=None):
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``ids`` of any shape."""
    xp = get_array_module(weight.data)
    a = ids.data if isinstance(ids, Tensor) else ids
    if get_array_module(a) is not xp:
        a = xp.asarray(a) if xp is not np else B.to_numpy(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {a.dtype}")
    n = weight.shape[0]
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"embedding: token id {bad} is out of range for an embedding with "
                             f"{n} rows (valid ids: 0..{n - 1}); ids shape {tuple(a.shape)}")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += n
    return Embedding.apply(weight, ids=a, padding_idx=padding_idx)


class LayerNorm(Function):
    """y = (x - μ) / sqrt(σ² + ε) · γ + β over the last ``k`` axes (biased σ², as PyTorch).

    With x̂ the normalised input and r = 1/sqrt(σ² + ε):
    dx = r (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)),  ĝ = g γ;  dγ = Σ g x̂;  dβ = Σ g.
    """
    def forward(self, x, *wb, eps=1e-5, k=1):
        xp = get_array_module(x)
        axes = tuple(range(x.ndim - k, x.ndim))
        mu = x.mean(axis=axes, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=axes, keepdims=True)
        rstd = 1.0 / xp.sqrt(var + eps)
        xhat = xc * rstd
        self.saved = (xhat, rstd) + wb[:1]
        self.axes = axes
        if not wb:
            return xhat
        y = xhat * wb[0]
        if len(wb) > 1:
            y += wb[1]
        return y

    def backward(self, g):
        xhat, rstd = self.saved[:2]
        axes = self.axes
        lead = tuple(range(g.ndim - len(axes)))
        need = self.needs_input_grad
        gw = gb = None
        if len(need) > 1 and need[1]:
            gw = (g * xhat).sum(axis=lead)
        if len(need) > 2 and need[2]:
            gb = g.sum(axis=lead)
        gx = None
        if need[0]:
            gh = g * self.saved[2] if len(self.saved) > 2 else g
            gx = rstd * (gh - gh.mean(axis=axes, keepdims=True)
                         - xhat * (gh * xhat).mean(axis=axes, keepdims=True))
        return (gx,) + ((gw,) if len(need) > 1 else ()) + ((gb,) if len(need) > 2 else ())


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the trailing ``normalized_shape`` axes (``F.layer_norm``)."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape "
                         f"{normalized_shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {p.shape}, expected {normalized_shape}")
    if weight is None and bias is not None:
        weight = Tensor(get_array_module(x.data).ones(normalized_shape, dtype=x.dtype))
    args = [a for a in (weight, bias) if a is not None]
    return LayerNorm.apply(x, *args, eps=eps, k=k)
