"""Helpers shared by the op modules: lifting constants, normalising axes."""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from ..backend import get_array_module
from ..autograd import Tensor


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
        if hasattr(x, "shape") and get_array_module(x) is not xp:
            # Keep it where it is: the op then refuses the mix with an error naming itself.
            return Tensor._make(x, False, None, 0)
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
