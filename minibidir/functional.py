"""Differentiable ops.  Each is a :class:`~minibidir.autograd.Function` whose ``forward`` and
``backward`` sit side by side and work on raw arrays of whatever library the inputs come
from (``xp = get_array_module(x)``), so the same op runs on NumPy and CuPy.

Gradients may be returned in the broadcast shape: the engine sums them back to each
input's shape (:func:`minibidir.autograd.sum_to_shape`), so no op handles broadcasting.

Notation in docstrings: ``g`` is the gradient of the final scalar with respect to the op's
output, ``y`` the op's output.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend as B
from .backend import get_array_module
from .autograd import Function, Tensor, no_grad

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "linear",
    "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "gelu",
    "maximum", "minimum", "clip", "clamp", "where", "masked_fill",
    "concat", "cat", "stack", "split", "chunk",
    "softmax", "log_softmax", "logsumexp",
    "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "mse_loss",
    "dropout", "embedding", "layer_norm",
    "reshape", "transpose", "permute", "swapaxes", "squeeze", "unsqueeze", "expand",
    "broadcast_to", "flatten", "sum", "mean", "max", "min", "var", "getitem", "astype",
]


# ----------------------------------------------------------------------------- helpers

def _t(x, like=None):
    """Lift a number or array to a constant Tensor (on ``like``'s device, in its float dtype)."""
    if isinstance(x, Tensor):
        return x
    if like is not None:
        xp = get_array_module(like.data)
        if isinstance(x, numbers.Number):
            dt = like.dtype if like.dtype.kind in "fc" or isinstance(x, numbers.Integral) else B.get_default_dtype()
            return Tensor._make(xp.asarray(x, dtype=dt), False, None, 0)
        if get_array_module(x) is not xp and xp is not np:
            raise TypeError(f"cannot mix a host array with a tensor on device '{like.device}'")
    return Tensor(x)


def _axes(axis, ndim):
    """Normalise ``axis`` (None, int or tuple, negatives allowed) to a sorted tuple."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (list, tuple)):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,) if ndim else ()


def _keep(g, axes, keepdims):
    """Re-insert reduced axes into ``g`` so it broadcasts against the input."""
    if keepdims or g.ndim == 0 and not axes:
        return g
    shape = list(g.shape)
    for a in axes:
        shape.insert(a, 1)
    return g.reshape(shape)


def _dim(axis, dim):
    """Accept both NumPy's ``axis=`` and PyTorch's ``dim=``."""
    return dim if dim is not None else axis


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
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
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
        if a.ndim == 1:
            g2 = g2[..., None, :]
        if b.ndim == 1:
            g2 = g2[..., None]
        ga = gb = None
        if na:
            ga = g2 @ b2.swapaxes(-1, -2)
            ga = _reduce_batch(ga, a2.shape).reshape(a.shape)
        if nb:
            gb = a2.swapaxes(-1, -2) @ g2
            gb = _reduce_batch(gb, b2.shape).reshape(b.shape)
        return ga, gb


def _reduce_batch(g, shape):
    from .autograd import sum_to_shape
    return sum_to_shape(g, shape)


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


# ----------------------------------------------------------------------------- joining

class Concat(Function):
    """y = [x_1; ...; x_n] along ``axis``;  dx_i = the matching slice of g."""
    def forward(self, *xs, axis=0):
        xp = get_array_module(xs[0])
        self.axis = axis % xs[0].ndim
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, g):
        out, start = [], 0
        idx = [slice(None)] * g.ndim
        for n, need in zip(self.sizes, self.needs_input_grad):
            idx[self.axis] = slice(start, start + n)
            out.append(g[tuple(idx)] if need else None)
            start += n
        return tuple(out)


class Stack(Function):
    """y = stack(x_1..x_n) along a new ``axis``;  dx_i = g[..., i, ...]."""
    def forward(self, *xs, axis=0):
        xp = get_array_module(xs[0])
        self.axis = axis % (xs[0].ndim + 1)
        return xp.stack(xs, axis=self.axis)

    def backward(self, g):
        idx = [slice(None)] * g.ndim
        out = []
        for i, need in enumerate(self.needs_input_grad):
            idx[self.axis] = i
            out.append(g[tuple(idx)] if need else None)
        return tuple(out)


class Split(Function):
    """(y_1..y_n) = pieces of x along ``axis``;  dx = [g_1; ...; g_n] (zeros for unused pieces)."""
    def forward(self, x, sizes=(), axis=0):
        self.axis = axis % x.ndim
        self.shape, self.dtype = x.shape, x.dtype
        self.sizes = sizes
        idx = [slice(None)] * x.ndim
        out, start = [], 0
        for n in sizes:
            idx[self.axis] = slice(start, start + n)
            out.append(x[tuple(idx)])
            start += n
        return tuple(out)

    def backward(self, *gs):
        xp = get_array_module(next(g for g in gs if g is not None))
        parts = []
        for g, n in zip(gs, self.sizes):
            if g is None:
                shape = list(self.shape)
                shape[self.axis] = n
                g = xp.zeros(shape, dtype=self.dtype)
            parts.append(g)
        return xp.concatenate(parts, axis=self.axis)


def _check_same(xs, opname, axis, stack):
    ref = xs[0]
    for i, x in enumerate(xs[1:], 1):
        a, b = list(ref.shape), list(x.shape)
        if len(a) != len(b):
            raise ValueError(f"{opname}: tensors must have the same number of dimensions; "
                             f"got {tuple(a)} (0) and {tuple(b)} ({i})")
        if not stack:
            ax = axis % len(a)
            a[ax] = b[ax] = -1
        if a != b:
            raise ValueError(f"{opname}: shapes must match{'' if stack else ' except along axis %d' % axis}; "
                             f"got {ref.shape} (0) and {x.shape} ({i})")


def concat(tensors, axis=0, dim=None):
    """Join tensors along an existing axis (``torch.cat``)."""
    axis = _dim(axis, dim)
    xs = [_t(x) for x in tensors]
    if not xs:
        raise ValueError("concat: expected a non-empty list of tensors")
    _check_same(xs, "concat", axis, stack=False)
    return Concat.apply(*xs, axis=axis)


cat = concat


def stack(tensors, axis=0, dim=None):
    """Join same-shaped tensors along a new axis (``torch.stack``)."""
    axis = _dim(axis, dim)
    xs = [_t(x) for x in tensors]
    if not xs:
        raise ValueError("stack: expected a non-empty list of tensors")
    _check_same(xs, "stack", axis, stack=True)
    return Stack.apply(*xs, axis=axis)


def split(x, split_size_or_sections, axis=0, dim=None):
    """Split along ``axis`` into pieces of ``split_size`` (last may be smaller) or of the given
    sizes (``torch.split``).  One node with one backward, however many pieces."""
    axis = _dim(axis, dim)
    n = x.shape[axis]
    if isinstance(split_size_or_sections, numbers.Integral):
        step = int(split_size_or_sections)
        if step <= 0:
            raise ValueError(f"split: split size must be positive, got {step}")
        sizes = [min(step, n - s) for s in range(0, n, step)]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} sum to {sum(sizes)} but axis {axis} has length {n}")
    return Split.apply(x, sizes=tuple(sizes), axis=axis)


def chunk(x, chunks, axis=0, dim=None):
    axis = _dim(axis, dim)
    n = x.shape[axis]
    return split(x, max(1, -(-n // chunks)), axis=axis)


# ----------------------------------------------------------------------------- softmax family

def _lse(x, axis):
    """log Σ exp(x) along ``axis`` (keepdims), shifted by the max for stability."""
    xp = get_array_module(x)
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
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
            w = w * (g / self.count)
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
    tgt = target.data if isinstance(target, Tensor) else xp.asarray(target)
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


# ----------------------------------------------------------------------------- shapes

class Reshape(Function):
    """y = x viewed with a new shape;  dx = g reshaped back."""
    def forward(self, x, shape=()):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    """y = x with axes reordered;  dx = g with the inverse order."""
    def forward(self, x, axes=()):
        self.inv = tuple(np.argsort(axes))
        return x.transpose(axes)

    def backward(self, g):
        return g.transpose(self.inv)


class Expand(Function):
    """y = x broadcast to ``shape``;  dx = g summed over the copies (done by the engine)."""
    def forward(self, x, shape=()):
        return get_array_module(x).broadcast_to(x, shape)

    def backward(self, g):
        return g


class GetItem(Function):
    """y = x[index];  dx = zeros with g added at ``index`` (scatter-add when an index array
    repeats positions)."""
    def forward(self, x, index=None, advanced=False):
        self.index, self.advanced = index, advanced
        self.shape, self.dtype = x.shape, x.dtype
        return x[index]

    def backward(self, g):
        xp = get_array_module(g)
        gx = xp.zeros(self.shape, dtype=g.dtype)
        if self.advanced:
            B.scatter_add(gx, self.index, g)
        else:
            gx[self.index] = g
        return gx


class Sum(Function):
    """y = Σ x over axes;  dx = g broadcast back."""
    def forward(self, x, axis=None, keepdims=False):
        self.axes = _axes(axis, x.ndim)
        self.keepdims, self.shape = keepdims, x.shape
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        return get_array_module(g).broadcast_to(_keep(g, self.axes, self.keepdims), self.shape)


class Mean(Function):
    """y = mean of x over axes;  dx = g / N broadcast back."""
    def forward(self, x, axis=None, keepdims=False):
        self.axes = _axes(axis, x.ndim)
        self.keepdims, self.shape = keepdims, x.shape
        self.n = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        xp = get_array_module(g)
        return xp.broadcast_to(_keep(g, self.axes, self.keepdims) / self.n, self.shape)


class Amax(Function):
    """y = max of x over axes;  dx = g shared equally by the elements that attain the max
    (as ``torch.amax``).  ``largest=False`` gives the min."""
    def forward(self, x, axis=None, keepdims=False, largest=True):
        self.axes = _axes(axis, x.ndim)
        if any(x.shape[a] == 0 for a in self.axes):
            raise ValueError(f"{'max' if largest else 'min'}: cannot reduce over an empty axis "
                             f"(shape {tuple(x.shape)}, axis {axis})")
        self.keepdims = keepdims
        m = x.max(axis=self.axes, keepdims=True) if largest else x.min(axis=self.axes, keepdims=True)
        mask = x == m
        self.saved = (mask, mask.sum(axis=self.axes, keepdims=True))
        return m if keepdims else m.reshape([s for i, s in enumerate(x.shape) if i not in self.axes])

    def backward(self, g):
        mask, count = self.saved
        return mask * (_keep(g, self.axes, self.keepdims) / count)


class Var(Function):
    """y = Σ (x - μ)² / (N - correction);  dx = 2 (x - μ) g / (N - correction)."""
    def forward(self, x, axis=None, keepdims=False, correction=1):
        self.axes = _axes(axis, x.ndim)
        self.keepdims = keepdims
        n = int(np.prod([x.shape[a] for a in self.axes])) if self.axes else 1
        self.denom = n - correction
        xc = x - x.mean(axis=self.axes, keepdims=True)
        self.saved = (xc,)
        return (xc * xc).sum(axis=self.axes, keepdims=keepdims) / self.denom

    def backward(self, g):
        (xc,) = self.saved
        return (2.0 / self.denom) * xc * _keep(g, self.axes, self.keepdims)


class AsType(Function):
    """y = x cast to ``dtype``;  dx = g cast back."""
    def forward(self, x, dtype=None):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return g.astype(self.in_dtype)


def _resolve_shape(shape, size, old_shape):
    """``shape`` with a -1 filled in; a clear error when it cannot hold ``size`` elements."""
    known = 1
    for d in shape:
        if d != -1:
            known *= d
    ok = shape.count(-1) <= 1 and all(d >= -1 for d in shape)
    if ok and -1 in shape:
        ok = known != 0 and size % known == 0
        shape = tuple(size // known if d == -1 else d for d in shape) if ok else shape
    elif ok:
        ok = known == size
    if not ok:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {old_shape} ({size} elements) "
                         f"into {shape}")
    return shape


def reshape(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    shape = _resolve_shape(tuple(int(s) for s in shape), x.size, x.shape)
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


def permute(x, *axes):
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    if sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
        raise ValueError(f"permute: {tuple(axes)} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    return Permute.apply(x, axes=tuple(a % x.ndim for a in axes))


def transpose(x, dim0=None, dim1=None):
    """Swap two axes (``torch.transpose``); with no axes, reverse them all (``x.T``)."""
    if dim0 is None and dim1 is None:
        return Permute.apply(x, axes=tuple(reversed(range(x.ndim))))
    axes = list(range(x.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return Permute.apply(x, axes=tuple(axes))


swapaxes = transpose


def moveaxis(x, source, destination):
    axes = list(range(x.ndim))
    axes.insert(destination % x.ndim, axes.pop(source % x.ndim))
    return Permute.apply(x, axes=tuple(axes))


def squeeze(x, axis=None, dim=None):
    axis = _dim(axis, dim)
    if axis is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        axes = _axes(axis, x.ndim)
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in axes and s == 1))
    return reshape(x, shape)


def unsqueeze(x, axis=None, dim=None):
    axis = _dim(axis, dim)
    shape = list(x.shape)
    shape.insert(axis % (x.ndim + 1), 1)
    return reshape(x, tuple(shape))


def flatten(x, start_dim=0, end_dim=-1):
    s, e = start_dim % max(x.ndim, 1), end_dim % max(x.ndim, 1)
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


def expand(x, *shape):
    """Broadcast to ``shape`` without copying (``torch.expand``; -1 keeps a dimension)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {x.shape} to fewer dimensions {tuple(shape)}")
    shape = tuple(x.shape[i - lead] if s == -1 else int(s) for i, s in enumerate(shape))
    try:
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"expand: shape {x.shape} cannot be broadcast to {shape}") from None
    if shape == x.shape:
        return x
    return Expand.apply(x, shape=shape)


broadcast_to = expand


def _index_data(key, xp):
    """Tensors in an index become arrays; report whether the index is 'advanced'."""
    items = key if isinstance(key, tuple) else (key,)
    out, advanced = [], False
    for k in items:
        if isinstance(k, Tensor):
            k = k.data
        if isinstance(k, list):
            k = xp.asarray(k)
        if hasattr(k, "dtype") and hasattr(k, "shape") and not isinstance(k, np.generic):
            if get_array_module(k) is not xp:
                k = xp.asarray(k) if xp is not np else B.to_numpy(k)
            if k.dtype != np.bool_:
                advanced = True
        out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), advanced


def getitem(x, key):
    """``x[key]`` with basic or advanced indexing; repeated indices accumulate in backward."""
    key, advanced = _index_data(key, get_array_module(x.data))
    return GetItem.apply(x, index=key, advanced=advanced)


def sum(x, axis=None, keepdims=False, dim=None, keepdim=None):  # noqa: A001
    keepdims = keepdim if keepdim is not None else keepdims
    return Sum.apply(_t(x), axis=_dim(axis, dim), keepdims=keepdims)


def mean(x, axis=None, keepdims=False, dim=None, keepdim=None):
    keepdims = keepdim if keepdim is not None else keepdims
    return Mean.apply(_t(x), axis=_dim(axis, dim), keepdims=keepdims)


def max(x, axis=None, keepdims=False, dim=None, keepdim=None):  # noqa: A001
    """Maximum over axes (values only, like ``torch.amax``)."""
    keepdims = keepdim if keepdim is not None else keepdims
    return Amax.apply(_t(x), axis=_dim(axis, dim), keepdims=keepdims, largest=True)


def min(x, axis=None, keepdims=False, dim=None, keepdim=None):  # noqa: A001
    """Minimum over axes (values only, like ``torch.amin``)."""
    keepdims = keepdim if keepdim is not None else keepdims
    return Amax.apply(_t(x), axis=_dim(axis, dim), keepdims=keepdims, largest=False)


def var(x, axis=None, keepdims=False, correction=1, dim=None, keepdim=None, unbiased=None):
    """Variance over axes; ``correction=1`` (the unbiased estimate) by default, as PyTorch."""
    keepdims = keepdim if keepdim is not None else keepdims
    if unbiased is not None:
        correction = 1 if unbiased else 0
    return Var.apply(_t(x), axis=_dim(axis, dim), keepdims=keepdims, correction=correction)


def astype(x, dtype):
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return AsType.apply(x, dtype=dtype)


# ----------------------------------------------------------------------------- Tensor methods

def _compare(op):
    def f(self, other):
        o = other.data if isinstance(other, Tensor) else other
        return Tensor._make(op(self.data, o), False, None, 0)
    return f


def _install_tensor_methods():
    import operator
    T = Tensor
    T.__add__ = lambda a, b: Add.apply(a, _t(b, a))
    T.__radd__ = lambda a, b: Add.apply(_t(b, a), a)
    T.__sub__ = lambda a, b: Sub.apply(a, _t(b, a))
    T.__rsub__ = lambda a, b: Sub.apply(_t(b, a), a)
    T.__mul__ = lambda a, b: Mul.apply(a, _t(b, a))
    T.__rmul__ = lambda a, b: Mul.apply(_t(b, a), a)
    T.__truediv__ = lambda a, b: Div.apply(a, _t(b, a))
    T.__rtruediv__ = lambda a, b: Div.apply(_t(b, a), a)
    T.__matmul__ = lambda a, b: MatMul.apply(a, _t(b, a))
    T.__rmatmul__ = lambda a, b: MatMul.apply(_t(b, a), a)
    T.__pow__ = lambda a, p: pow(a, p)
    T.__rpow__ = lambda a, b: Pow.apply(_t(b, a), a)
    T.__neg__ = lambda a: Neg.apply(a)
    T.__pos__ = lambda a: a
    T.__abs__ = lambda a: Abs.apply(a)
    for name, op in (("lt", operator.lt), ("le", operator.le), ("gt", operator.gt),
                     ("ge", operator.ge), ("eq", operator.eq), ("ne", operator.ne)):
        setattr(T, f"__{name}__", _compare(op))
    T.__invert__ = lambda a: Tensor._make(~a.data, False, None, 0)
    T.__and__ = _compare(operator.and_)
    T.__or__ = _compare(operator.or_)
    T.__getitem__ = getitem
    T.__iter__ = lambda a: (a[i] for i in range(len(a)))

    T.reshape = reshape
    T.view = reshape
    T.transpose = transpose
    T.swapaxes = transpose
    T.permute = permute
    T.T = property(lambda a: transpose(a))
    T.mT = property(lambda a: transpose(a, -2, -1))
    T.squeeze = squeeze
    T.unsqueeze = unsqueeze
    T.expand = expand
    T.broadcast_to = expand
    T.flatten = flatten
    T.contiguous = lambda a: a
    T.sum = sum
    T.mean = mean
    T.max = max
    T.min = min
    T.amax = max
    T.amin = min
    T.var = var
    T.exp = exp
    T.log = log
    T.sqrt = sqrt
    T.abs = abs
    T.tanh = tanh
    T.sigmoid = sigmoid
    T.relu = relu
    T.softmax = softmax
    T.log_softmax = log_softmax
    T.logsumexp = logsumexp
    T.clip = clip
    T.clamp = clip
    T.masked_fill = masked_fill
    T.matmul = matmul
    T.split = split
    T.chunk = chunk
    T.pow = pow
    T.astype = astype
    T.float = lambda a: astype(a, np.float32)
    T.double = lambda a: astype(a, np.float64)
    T.long = lambda a: Tensor._make(a.data.astype(np.int64), False, None, 0)
    T.argmax = lambda a, axis=None, dim=None, keepdims=False: Tensor._make(
        a.data.argmax(axis=_dim(axis, dim), keepdims=keepdims), False, None, 0)
    T.argmin = lambda a, axis=None, dim=None, keepdims=False: Tensor._make(
        a.data.argmin(axis=_dim(axis, dim), keepdims=keepdims), False, None, 0)


_install_tensor_methods()
