"""Shapes, joining, indexing and reductions."""

from __future__ import annotations

import builtins
import numbers

import numpy as np

from .. import backend as B
from ..backend import get_array_module
from ..autograd import Function, Tensor
from ._common import _t, _axes, _keep, _dim


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
        sizes = [builtins.min(step, n - s) for s in range(0, n, step)]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} sum to {builtins.sum(sizes)} but axis {axis} has length {n}")
    return Split.apply(x, sizes=tuple(sizes), axis=axis)


def chunk(x, chunks, axis=0, dim=None):
    axis = _dim(axis, dim)
    n = x.shape[axis]
    return split(x, builtins.max(1, -(-n // chunks)), axis=axis)


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
        scale = 2.0 / self.denom if self.denom else float("nan")     # N == correction: nan, as PyTorch
        return scale * xc * _keep(g, self.axes, self.keepdims)


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
    s, e = start_dim % builtins.max(x.ndim, 1), end_dim % builtins.max(x.ndim, 1)
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
    if dtype.kind not in "fc":      # integer/bool results carry no gradient (as PyTorch)
        return Tensor._make(x.data.astype(dtype), False, None, 0)
    return AsType.apply(x, dtype=dtype)
