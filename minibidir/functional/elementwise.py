"""Elementwise functions: exp, log, tanh, sigmoid, ReLU, GELU, max/min, clip, where."""

from __future__ import annotations

import math

import numpy as np

from .. import backend as B
from ..backend import get_array_module
from ..autograd import Function, Tensor
from ._common import _t


# ----------------------------------------------------------------------------- elementwise

class Exp(Function):
    """y = e^x;  dx = g y."""
    def forward(self, x):
        y = get_array_module(x).exp(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        return g * self.saved[0]


class Log(Function):
    """y = ln x;  dx = g / x."""
    def forward(self, x):
        self.saved = (x,)
        return get_array_module(x).log(x)

    def backward(self, g):
        return g / self.saved[0]


class Sqrt(Function):
    """y = sqrt(x);  dx = g / (2 y)."""
    def forward(self, x):
        y = get_array_module(x).sqrt(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        return g / (2 * self.saved[0])


class Abs(Function):
    """y = |x|;  dx = g sign(x) (0 at 0, as PyTorch)."""
    def forward(self, x):
        self.saved = (x,)
        return get_array_module(x).abs(x)

    def backward(self, g):
        return g * get_array_module(g).sign(self.saved[0])


class Tanh(Function):
    """y = tanh x;  dx = g (1 - y^2)."""
    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        y = self.saved[0]
        return g * (1 - y * y)


def _sigmoid(x):
    """Overflow-free logistic: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) for x < 0 (same value)."""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dx = g y (1 - y)."""
    def forward(self, x):
        y = _sigmoid(x)
        self.saved = (y,)
        return y

    def backward(self, g):
        y = self.saved[0]
        return g * y * (1 - y)


class ReLU(Function):
    """y = max(0, x);  dx = g [x > 0]."""
    def forward(self, x):
        y = get_array_module(x).maximum(x, 0)
        self.saved = (y,)
        return y

    def backward(self, g):
        return g * (self.saved[0] > 0)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(Function):
    """Exact: y = x Φ(x) = x/2 (1 + erf(x/√2)),  dx = g (Φ(x) + x φ(x)).
    Tanh approximation: y = x/2 (1 + tanh(√(2/π)(x + 0.044715 x^3)))."""
    def forward(self, x, approximate="none"):
        xp = get_array_module(x)
        self.approximate = approximate
        self.saved = (x,)
        if approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            self.saved = (x, t)
            return 0.5 * x * (1 + t)
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        cdf = 0.5 * (1 + B.erf(x * _INV_SQRT_2))
        self.saved = (x, cdf)
        return x * cdf

    def backward(self, g):
        xp = get_array_module(g)
        if self.approximate == "tanh":
            x, t = self.saved
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        x, cdf = self.saved
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return g * (cdf + x * pdf)


class Maximum(Function):
    """y = max(a, b) elementwise; ties split the gradient in half (as PyTorch)."""
    def forward(self, a, b):
        self.saved = (a, b)
        return get_array_module(a).maximum(a, b)

    def backward(self, g):
        a, b = self.saved
        wa = (a > b) + 0.5 * (a == b)
        return g * wa, g * (1 - wa)


class Minimum(Function):
    """y = min(a, b) elementwise; ties split the gradient in half (as PyTorch)."""
    def forward(self, a, b):
        self.saved = (a, b)
        return get_array_module(a).minimum(a, b)

    def backward(self, g):
        a, b = self.saved
        wa = (a < b) + 0.5 * (a == b)
        return g * wa, g * (1 - wa)


class Clip(Function):
    """y = min(max(x, lo), hi);  dx = g where lo <= x <= hi, else 0 (as ``torch.clamp``)."""
    def forward(self, x, lo=None, hi=None):
        if lo is None and hi is None:
            raise ValueError("clip: at least one of min and max must be given")
        xp = get_array_module(x)
        self.saved = (x,)
        self.lo, self.hi = lo, hi
        return xp.clip(x, lo, hi)

    def backward(self, g):
        (x,) = self.saved
        keep = True
        if self.lo is not None:
            keep = x >= self.lo
        if self.hi is not None:
            keep = keep & (x <= self.hi) if self.lo is not None else x <= self.hi
        return g * keep


class Where(Function):
    """y = a where cond else b;  da = g [cond], db = g [not cond]."""
    def forward(self, a, b, cond=None):
        xp = get_array_module(a)
        self.cond = cond
        return xp.where(cond, a, b)

    def backward(self, g):
        xp = get_array_module(g)
        na, nb = self.needs_input_grad
        zero = xp.zeros((), dtype=g.dtype)
        return (xp.where(self.cond, g, zero) if na else None,
                xp.where(self.cond, zero, g) if nb else None)


def exp(x):
    return Exp.apply(_t(x))


def log(x):
    return Log.apply(_t(x))


def sqrt(x):
    return Sqrt.apply(_t(x))


def abs(x):  # noqa: A001 - PyTorch's name
    return Abs.apply(_t(x))


def tanh(x):
    return Tanh.apply(_t(x))


def sigmoid(x):
    return Sigmoid.apply(_t(x))


def relu(x):
    return ReLU.apply(_t(x))


def gelu(x, approximate="none"):
    """GELU, exact (erf) by default or ``approximate="tanh"`` (as ``torch.nn.functional.gelu``)."""
    return GELU.apply(_t(x), approximate=approximate)


def maximum(a, b):
    a = _t(a)
    return Maximum.apply(a, _t(b, a))


def minimum(a, b):
    a = _t(a)
    return Minimum.apply(a, _t(b, a))


def clip(x, min=None, max=None):  # noqa: A002 - PyTorch's names
    return Clip.apply(_t(x), lo=min, hi=max)


clamp = clip


def _cond_array(cond, like, opname):
    c = cond.data if isinstance(cond, Tensor) else cond
    xp = get_array_module(like.data)
    if get_array_module(c) is not xp:
        c = xp.asarray(c) if xp is not np else B.to_numpy(c)
    if c.dtype != np.bool_:
        raise TypeError(f"{opname}: the mask must be boolean, got dtype {c.dtype}")
    return c


def where(cond, a, b):
    """Elementwise choice: ``a`` where ``cond`` is true, else ``b`` (``torch.where``)."""
    ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else _t(a)
    a, b = _t(a, ref), _t(b, ref)
    c = _cond_array(cond, ref, "where")
    try:
        np.broadcast_shapes(tuple(c.shape), a.shape, b.shape)
    except ValueError:
        raise ValueError(f"where: condition of shape {tuple(c.shape)} does not broadcast with "
                         f"inputs of shapes {a.shape} and {b.shape}") from None
    return Where.apply(a, b, cond=c)


def masked_fill(x, mask, value):
    """``value`` where ``mask`` is true, else ``x``; the mask must broadcast to ``x``'s shape."""
    x = _t(x)
    m = _cond_array(mask, x, "masked_fill")
    try:
        if np.broadcast_shapes(tuple(m.shape), x.shape) != x.shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"masked_fill: mask of shape {tuple(m.shape)} cannot be broadcast to the "
                         f"input's shape {x.shape}") from None
    return Where.apply(_t(value, x), x, cond=m)
