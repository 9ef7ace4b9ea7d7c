"""Weight initialisation, in place, drawing from the library's seeded generator
(``minibidir.manual_seed``).  Names and formulas follow ``torch.nn.init``."""
from __future__ import annotations

import math

from .. import backend as B

__all__ = ["uniform_", "normal_", "zeros_", "ones_", "constant_", "xavier_uniform_",
           "xavier_normal_", "kaiming_uniform_", "fan_in_and_fan_out"]


def _fill(t, values):
    xp = B.get_array_module(t.data)
    t.data = values if B.get_array_module(values) is xp else xp.asarray(B.to_numpy(values))
    return t


def fan_in_and_fan_out(t):
    """fan_in = shape[1] · receptive field, fan_out = shape[0] · receptive field."""
    if t.ndim < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dimensions, got shape {t.shape}")
    rf = 1
    for s in t.shape[2:]:
        rf *= s
    return t.shape[1] * rf, t.shape[0] * rf


def uniform_(t, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    return _fill(t, B.random_uniform(B.get_array_module(t.data), t.shape, t.dtype, a, b))


def normal_(t, mean=0.0, std=1.0):
    """Fill with N(mean, std²)."""
    return _fill(t, B.random_normal(B.get_array_module(t.data), t.shape, t.dtype, mean, std))


def constant_(t, value):
    t.data = B.get_array_module(t.data).full(t.shape, value, dtype=t.dtype)
    return t


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def xavier_uniform_(t, gain=1.0):
    """U(-a, a) with a = gain · sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio, 2010)."""
    fi, fo = fan_in_and_fan_out(t)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return uniform_(t, -a, a)


def xavier_normal_(t, gain=1.0):
    fi, fo = fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def kaiming_uniform_(t, a=0.0):
    """U(-b, b) with b = sqrt(6 / ((1 + a²) fan_in)); ``a = √5`` gives PyTorch's Linear default
    U(-1/√fan_in, 1/√fan_in)."""
    fi, _ = fan_in_and_fan_out(t)
    bound = math.sqrt(6.0 / ((1 + a * a) * fi))
    return uniform_(t, -bound, bound)
