"""Linear layer and identity."""
from __future__ import annotations

import math

from .. import backend as B
from .. import functional as F
from .module import Module, Parameter
from . import init

__all__ = ["Linear", "Identity"]


def _empty(*shape, dtype=None):
    xp = B.array_module()
    return xp.zeros(shape, dtype=dtype or B.get_default_dtype())


class Linear(Module):
    """y = x Wᵀ + b, ``weight`` of shape (out_features, in_features) as in PyTorch.
    Initialised as PyTorch does: W, b ~ U(-1/√in, 1/√in)."""

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_empty(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = Parameter(_empty(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def forward(self, x):
        return x
