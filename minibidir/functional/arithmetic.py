"""Arithmetic and matrix products: y = a ± b, a·b, a/b, aᵇ, a @ b, x Wᵀ + b."""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import get_array_module
from ..autograd import Function, sum_to_shape
from ._common import _t


# ----------------------------------------------------------------------------- arithmetic

class Add(Function):
    """y = a + b;  da = g, db = g."""
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    """y = a - b;  da = g, db = -g."""
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs_input_grad[1] else None)


class Mul(Function):
    """y = a * b;  da = g b, db = g a."""
    def forward(self, a, b):
        self.saved = (a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        na, nb = self.needs_input_grad
        return (g * b if na else None), (g * a if nb else None)


class Div(Function):
    """y = a / b;  da = g / b, db = -g a / b^2."""
    def forward(self, a, b):
        self.saved = (a, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        na, nb = self.needs_input_grad
        ga = g / b if na else None
        gb = -g * a / (b * b) if nb else None
        return ga, gb


class Neg(Function):
    """y = -x;  dx = -g."""
    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class PowScalar(Function):
    """y = x^p for a constant p;  dx = g p x^(p-1)."""
    def forward(self, x, p):
        self.saved = (x,)
        self.p = p
        return x ** p

    def backward(self, g):
        (x,) = self.saved
        p = self.p
        if p == 2:
            return g * (2 * x)
        return g * (p * x ** (p - 1))


class Pow(Function):
    """y = a^b;  da = g b a^(b-1), db = g y ln a."""
    def forward(self, a, b):
        y = a ** b
        self.saved = (a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved
        xp = get_array_module(a)
        na, nb = self.needs_input_grad
        ga = g * b * a ** (b - 1) if na else None
        gb = None
        if nb:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * y * xp.log(xp.where(a > 0, a, 1))   # d/db is 0 where a <= 0 (as PyTorch's a=0 case)
        return ga, gb


class MatMul(Function):
    """y = a @ b (batched, broadcasting);  da = g b^T, db = a^T g."""
    def forward(self, a, b):
        ka = a.shape[-1] if a.ndim else None            # a 0-d operand gets the message below
        kb = (b.shape[0] if b.ndim == 1 else b.shape[-2]) if b.ndim else None
        if a.ndim == 0 or b.ndim == 0 or ka != kb:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not aligned "
                             f"(inner dimensions {ka if a.ndim else '-'} != {kb if b.ndim else '-'})")
        self.saved = (a, b)
        return a @ b

    def backward(self, g):
        a, b = self.saved
        na, nb = self.needs_input_grad
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:             # first: for 1-D @ 1-D, g is 0-d and has no column axis yet
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if na:
            ga = g2 @ b2.swapaxes(-1, -2)
            ga = sum_to_shape(ga, a2.shape).reshape(a.shape)
        if nb:
            gb = a2.swapaxes(-1, -2) @ g2
            gb = sum_to_shape(gb, b2.shape).reshape(b.shape)
        return ga, gb


class Linear(Function):
    """y = x W^T + b in one node (PyTorch's ``F.linear``): one matrix product for all
    leading dimensions.  dx = g W, dW = g^T x, db = sum of g over rows."""
    def forward(self, x, w, *b):
        if x.shape[-1] != w.shape[1]:
            raise ValueError(f"linear: input has {x.shape[-1]} features (shape {tuple(x.shape)}) "
                             f"but the weight expects {w.shape[1]} (weight shape {tuple(w.shape)})")
        self.saved = (x, w)
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ w.T
        if b:
            y += b[0]
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g):
        x, w = self.saved
        g2 = g.reshape(-1, w.shape[0])
        need = self.needs_input_grad
        gx = (g2 @ w).reshape(x.shape) if need[0] else None
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if need[1] else None
        if len(need) == 3:
            return gx, gw, (g2.sum(axis=0) if need[2] else None)
        return gx, gw


def add(a, b):
    a = _t(a)
    return Add.apply(a, _t(b, a))


def sub(a, b):
    a = _t(a)
    return Sub.apply(a, _t(b, a))


def mul(a, b):
    a = _t(a)
    return Mul.apply(a, _t(b, a))


def div(a, b):
    a = _t(a)
    return Div.apply(a, _t(b, a))


def neg(x):
    return Neg.apply(x)


def pow(x, p):
    """``x ** p``; a constant exponent uses the cheaper PowScalar."""
    x = _t(x)
    if isinstance(p, numbers.Number):
        return PowScalar.apply(x, p=p)
    return Pow.apply(x, _t(p, x))


def matmul(a, b):
    a = _t(a)
    return MatMul.apply(a, _t(b, a))


def linear(x, weight, bias=None):
    """y = x W^T + b with ``weight`` of shape (out_features, in_features), as PyTorch."""
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
