"""Differentiable ops.  Each is a :class:`~minibidir.autograd.Function` whose ``forward`` and
``backward`` sit side by side and work on raw arrays of whatever library the inputs come
from (``xp = get_array_module(x)``), so the same op runs on NumPy and CuPy.

Gradients may be returned in the broadcast shape: the engine sums them back to each
input's shape (:func:`minibidir.autograd.sum_to_shape`), so no op handles broadcasting.

Notation in docstrings: ``g`` is the gradient of the final scalar with respect to the op's
output, ``y`` the op's output.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ._common import _t, _axes, _keep, _dim
from .arithmetic import (Add, Sub, Mul, Div, Neg, PowScalar, Pow, MatMul, Linear,
                         add, sub, mul, div, neg, pow, matmul, linear)
from .elementwise import (Exp, Log, Sqrt, Abs, Tanh, Sigmoid, ReLU, GELU, Maximum, Minimum, Clip, Where,
                          _sigmoid, exp, log, sqrt, abs, tanh, sigmoid, relu, gelu, maximum, minimum,
                          clip, clamp, where, masked_fill)
from .shape import (Concat, Stack, Split, Reshape, Permute, Expand, GetItem, Sum, Mean, Amax, Var, AsType,
                    concat, cat, stack, split, chunk, reshape, permute, transpose, swapaxes, moveaxis,
                    squeeze, unsqueeze, flatten, expand, broadcast_to, getitem, sum, mean, max, min, var,
                    astype)
from .losses import (Softmax, LogSoftmax, LogSumExp, CrossEntropy, BCEWithLogits, MSELoss, _lse,
                     softmax, log_softmax, logsumexp, cross_entropy, nll_loss,
                     binary_cross_entropy_with_logits, mse_loss)
from .layers import Dropout, Embedding, LayerNorm, dropout, embedding, layer_norm
from .attention import ScaledDotProductAttention, scaled_dot_product_attention


__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "linear",
    "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "gelu",
    "maximum", "minimum", "clip", "clamp", "where", "masked_fill",
    "concat", "cat", "stack", "split", "chunk",
    "softmax", "log_softmax", "logsumexp",
    "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "mse_loss",
    "dropout", "embedding", "layer_norm",
    "scaled_dot_product_attention",
    "reshape", "transpose", "permute", "swapaxes", "squeeze", "unsqueeze", "expand",
    "broadcast_to", "flatten", "sum", "mean", "max", "min", "var", "getitem", "astype",
]




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
