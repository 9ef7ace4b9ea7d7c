"""Layer normalisation (one fused Function, see ``functional.LayerNorm``)."""
from __future__ import annotations

import numbers

from .. import functional as F
from .linear import _empty
from .module import Module, Parameter
from . import init

__all__ = ["LayerNorm"]


class LayerNorm(Module):
    """y = (x - μ) / sqrt(σ² + ε) · γ + β over the trailing ``normalized_shape`` axes
    (biased variance, as PyTorch).  γ = 1, β = 0 at initialisation."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(_empty(*self.normalized_shape, dtype=dtype))
            init.ones_(self.weight)
            if bias:
                self.bias = Parameter(_empty(*self.normalized_shape, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
