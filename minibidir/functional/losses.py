"""Softmax, log-softmax, log-sum-exp, and the losses built on them."""

from __future__ import annotations


import numpy as np

from .. import backend as B
from ..backend import get_array_module
from ..autograd import Function, Tensor
from ._common import _t, _dim
from .elementwise import _sigmoid, masked_fill
from .shape import moveaxis, getitem


# ----------------------------------------------------------------------------- softmax family

def _lse(x, axis):
    """log Σ exp(x) along ``axis`` (keepdims), shifted by the max for stability."""
    xp = get_array_module(x)
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):      # an all -inf row: log 0 = -inf, as PyTorch (no warning)
        return m + xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """y_i = e^{x_i} / Σ_j e^{x_j};  dx = y (g - Σ g y)."""
    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        self.saved = (e,)
        self.axis = axis
        return e

    def backward(self, g):
        y = self.saved[0]
        gy = g * y
        return gy - y * gy.sum(axis=self.axis, keepdims=True)


class LogSoftmax(Function):
    """y = x - log Σ e^x;  dx = g - softmax(x) Σ g."""
    def forward(self, x, axis=-1):
        y = x - _lse(x, axis)
        self.saved = (y,)
        self.axis = axis
        return y

    def backward(self, g):
        xp = get_array_module(g)
        return g - xp.exp(self.saved[0]) * g.sum(axis=self.axis, keepdims=True)


class LogSumExp(Function):
    """y = log Σ e^x along axis;  dx = g softmax(x)."""
    def forward(self, x, axis=-1, keepdims=False):
        y = _lse(x, axis)
        self.saved = (x, y)
        self.axis, self.keepdims = axis, keepdims
        return y if keepdims else y.squeeze(axis=axis)

    def backward(self, g):
        x, y = self.saved
        xp = get_array_module(x)
        if not self.keepdims:
            g = xp.expand_dims(g, self.axis)
        return g * xp.exp(x - y)


def softmax(x, axis=-1, dim=None):
    return Softmax.apply(_t(x), axis=_dim(axis, dim))


def log_softmax(x, axis=-1, dim=None):
    return LogSoftmax.apply(_t(x), axis=_dim(axis, dim))


def logsumexp(x, axis=-1, keepdims=False, dim=None, keepdim=None):
    keepdims = keepdim if keepdim is not None else keepdims
    return LogSumExp.apply(_t(x), axis=_dim(axis, dim), keepdims=keepdims)


# ----------------------------------------------------------------------------- losses

_REDUCTIONS = ("none", "mean", "sum")


class CrossEntropy(Function):
    """Softmax cross-entropy in one node, on rows of logits (N, C) with class ids (N,).

    loss_i = (1-ε)(-log p_{i,y_i}) + ε · mean_c(-log p_{i,c}),  p = softmax(x_i);
    rows whose target is ``ignore_index`` contribute nothing and are not counted by
    the mean.  dx_i = w_i (p_i - (1-ε) onehot(y_i) - ε/C).
    """
    def forward(self, x, target=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        xp = get_array_module(x)
        n, c = x.shape
        valid = target != ignore_index
        t = xp.where(valid, target, 0)
        logp = x - _lse(x, 1)
        rows = xp.arange(n)
        nll = -logp[rows, t]
        eps = label_smoothing
        loss = (1 - eps) * nll
        if eps:
            loss = loss - eps * logp.mean(axis=1)
        loss = xp.where(valid, loss, 0)
        self.saved = (logp, t, valid)
        self.eps, self.reduction = eps, reduction
        if reduction == "none":
            return loss
        total = loss.sum()
        if reduction == "sum":
            return total
        self.count = valid.sum().astype(x.dtype)
        return total / self.count

    def backward(self, g):
        logp, t, valid = self.saved
        xp = get_array_module(logp)
        n, c = logp.shape
        grad = xp.exp(logp)
        grad[xp.arange(n), t] -= (1 - self.eps)
        if self.eps:
            grad -= self.eps / c
        w = valid.astype(logp.dtype)
        if self.reduction == "none":
            w = w * g
        elif self.reduction == "mean":
            w = w * (g / xp.maximum(self.count, 1))    # all rows ignored: w = 0, gradient 0 (as PyTorch)
        else:
            w = w * g
        grad *= w[:, None]
        return grad


def cross_entropy(input, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's ``F.cross_entropy`` with class-index targets.

    ``input``: logits (C,), (N, C) or (N, C, d1, ...); ``target``: ids (), (N,) or (N, d1, ...).
    """
    x = _t(input)
    tgt = target.data if isinstance(target, Tensor) else target
    xp = get_array_module(x.data)
    if get_array_module(tgt) is not xp:
        tgt = xp.asarray(tgt) if xp is not np else B.to_numpy(tgt)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if tgt.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class ids, got dtype {tgt.dtype}")
    c = x.shape[0] if x.ndim == 1 else x.shape[1] if x.ndim >= 2 else None
    expected = x.shape[1:] if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    if x.ndim == 1:
        expected = ()
    if c is None or tuple(tgt.shape) != tuple(expected):
        raise ValueError(f"cross_entropy: logits of shape {x.shape} need targets of shape "
                         f"{tuple(expected) if c is not None else '?'}, got {tuple(tgt.shape)}")
    bad = (tgt != ignore_index) & ((tgt < 0) | (tgt >= c))
    if bool(bad.any()):
        v = int(tgt[bad].reshape(-1)[0])
        raise IndexError(f"cross_entropy: target {v} is out of bounds for {c} classes "
                         f"(valid: 0..{c - 1}, or ignore_index={ignore_index})")
    out_shape = tuple(tgt.shape)
    if x.ndim == 1:
        x2, t2 = x.reshape(1, c), tgt.reshape(1)
    elif x.ndim == 2:
        x2, t2 = x, tgt
    else:
        x2 = moveaxis(x, 1, -1).reshape(-1, c)
        t2 = tgt.reshape(-1)
    loss = CrossEntropy.apply(x2, target=t2, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=label_smoothing)
    if reduction == "none":
        loss = loss.reshape(out_shape)
    return loss


def nll_loss(log_probs, target, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities (N, C) at class ids (N,)."""
    xp = get_array_module(log_probs.data)
    tgt = target.data if isinstance(target, Tensor) else target
    if get_array_module(tgt) is not xp:      # a list, or ids on the other device: move them, as cross_entropy does
        tgt = xp.asarray(tgt) if xp is not np else B.to_numpy(tgt)
    valid = tgt != ignore_index
    t = xp.where(valid, tgt, 0)
    picked = -getitem(log_probs, (xp.arange(len(t)), t))
    picked = masked_fill(picked, ~valid, 0.0)
    if reduction == "none":
        return picked
    total = picked.sum()
    return total if reduction == "sum" else total / float(valid.sum())


class BCEWithLogits(Function):
    """l = (1-y) x + w · softplus(-x),  w = 1 + (p-1) y  (p = pos_weight, 1 by default);
    stable for any x.  dx = (1-y) - w σ(-x),  dy = -x + (p-1) softplus(-x)."""
    def forward(self, x, y, reduction="mean", pos_weight=None):
        xp = get_array_module(x)
        sp = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))      # softplus(-x)
        w = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        loss = (1 - y) * x + w * sp
        self.saved = (x, y, sp)
        self.pos_weight, self.reduction = pos_weight, reduction
        self.n = loss.size
        if reduction == "none":
            return loss
        return loss.sum() if reduction == "sum" else loss.mean()

    def backward(self, g):
        x, y, sp = self.saved
        p = self.pos_weight
        w = 1 if p is None else 1 + (p - 1) * y
        if self.reduction == "mean":
            g = g / self.n
        gx = g * ((1 - y) - w * _sigmoid(-x))
        gy = None
        if self.needs_input_grad[1]:
            gy = g * (-x + (0 if p is None else (p - 1) * sp))
        return gx, gy


def binary_cross_entropy_with_logits(input, target, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable node (``F.binary_cross_entropy_with_logits``)."""
    x = _t(input)
    y = _t(target, x)
    if x.shape != y.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape {y.shape} must match "
                         f"input shape {x.shape}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: bad reduction {reduction!r}")
    pw = pos_weight.data if isinstance(pos_weight, Tensor) else pos_weight
    return BCEWithLogits.apply(x, y, reduction=reduction, pos_weight=pw)


class MSELoss(Function):
    """l = mean((a - b)^2);  da = 2 (a - b) g / N, db = -da."""
    def forward(self, a, b, reduction="mean"):
        d = a - b
        self.saved = (d,)
        self.reduction = reduction
        sq = d * d
        if reduction == "none":
            return sq
        return sq.sum() if reduction == "sum" else sq.mean()

    def backward(self, g):
        (d,) = self.saved
        scale = 2.0 / d.size if self.reduction == "mean" else 2.0
        ga = (g * scale) * d
        return ga, (-ga if self.needs_input_grad[1] else None)


def mse_loss(input, target, reduction="mean"):
    a = _t(input)
    b = _t(target, a)
    if a.shape != b.shape:
        raise ValueError(f"mse_loss: input shape {a.shape} and target shape {b.shape} differ")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse_loss: bad reduction {reduction!r}")
    return MSELoss.apply(a, b, reduction=reduction)
