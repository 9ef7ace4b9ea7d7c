"""A CPU stand-in for CuPy: device arrays that refuse to mix with host NumPy arrays.

CuPy keeps its arrays on the GPU and refuses any *implicit* transfer: ``np.asarray(d)``,
a NumPy array as an operand of a device op, or a NumPy function applied to device data
all raise ``TypeError``.  Code that works on a CPU can therefore break on a GPU when an op
calls ``np.something`` where it should have called ``xp.something``.

This module imitates that contract on the CPU so the test suite can catch such bugs on
machines without a GPU: :class:`ndarray` wraps a NumPy array, and this module, used as
``xp``, offers NumPy's functions on those wrappers.  Every way of mixing a host array in is
refused, as CuPy refuses it; explicit transfers (``standin.asarray(host)``, ``d.get()``)
are allowed.  It is stricter than CuPy in one respect: NumPy functions called directly on
device arrays (``np.exp(d)``) also raise, because library code must go through ``xp``.
"""
from __future__ import annotations

import sys
import types

import numpy as np

_MIX_MSG = ("Unsupported operand: a host numpy.ndarray was mixed with a device array "
            "(device arrays accept only device arrays and Python/NumPy scalars; "
            "move it explicitly with xp.asarray)")


def _unwrap(obj):
    """Device arrays -> their NumPy storage; host arrays are refused."""
    t = type(obj)
    if t is ndarray:
        return obj._a
    if t is np.ndarray:
        raise TypeError(_MIX_MSG)
    if t is tuple or t is list:
        return t(_unwrap(o) for o in obj)
    if t is dict:
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    """NumPy results -> device arrays (0-d results too, as CuPy returns 0-d arrays)."""
    if isinstance(obj, np.ndarray):
        return ndarray(obj)
    if isinstance(obj, np.generic) and obj.dtype.kind in "biufc":
        return ndarray(np.asarray(obj))
    if type(obj) is tuple or type(obj) is list:
        return type(obj)(_wrap(o) for o in obj)
    return obj


class ndarray:
    """A 'device' array: a NumPy array that only combines with other device arrays."""

    __slots__ = ("_a", "__weakref__")
    __array_ufunc__ = None          # ndarray (op) device -> NotImplemented -> our reflected op

    def __init__(self, a):
        self._a = a

    # -- implicit conversions, refused as CuPy refuses them
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_function__(self, func, types_, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} was called on a device array; library code "
                        f"must call xp.{func.__name__} with xp = get_array_module(x)")

    # -- explicit transfer
    def get(self):
        """Copy to a host NumPy array (CuPy's ``ndarray.get``)."""
        return self._a.copy()

    # -- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: ndarray(self._a.T))

    @property
    def base(self):
        return None if self._a.base is None else ndarray(self._a.base)

    def __getattr__(self, name):           # methods: reshape, sum, astype, ...
        if name.startswith("__"):
            # Never forward protocol hooks (__array_interface__, __array_struct__, ...):
            # NumPy would use them to read the device memory implicitly.
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        return method

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __repr__(self):
        return "standin." + repr(self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    __hash__ = None


def _binary(name):
    op = getattr(np.ndarray, name)

    def f(self, other):
        return _wrap(op(self._a, _unwrap(other)))
    f.__name__ = name
    return f


def _inplace(name):
    op = getattr(np.ndarray, name)

    def f(self, other):
        op(self._a, _unwrap(other))
        return self
    f.__name__ = name
    return f


def _unary(name):
    op = getattr(np.ndarray, name)

    def f(self):
        return _wrap(op(self._a))
    f.__name__ = name
    return f


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
    setattr(ndarray, f"__r{_n}__", _binary(f"__r{_n}__"))
    setattr(ndarray, f"__i{_n}__", _inplace(f"__i{_n}__"))
for _n in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_n}__", _unary(f"__{_n}__"))


class _UFunc:
    """A NumPy ufunc lifted to device arrays, with its ``reduce``/``at``/... methods."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args, **kwargs):
        return _wrap(self._uf(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        method = getattr(self._uf, name)
        if not callable(method):
            return method

        def f(*args, **kwargs):
            return _wrap(method(*_unwrap(args), **_unwrap(kwargs)))
        return f


def _lift(func):
    def f(*args, **kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))
    f.__name__ = getattr(func, "__name__", "function")
    return f


def asarray(a, dtype=None):
    """Explicit host -> device copy (``cupy.asarray``); device arrays pass through."""
    if type(a) is ndarray:
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    return ndarray(np.array(_unwrap_lenient(a), dtype=dtype, copy=True))


def array(a, dtype=None, copy=True):
    if type(a) is ndarray:
        return ndarray(a._a.astype(dtype or a.dtype, copy=True))
    return ndarray(np.array(_unwrap_lenient(a), dtype=dtype, copy=True))


def asnumpy(a):
    """Explicit device -> host copy (``cupy.asnumpy``)."""
    return a.get() if type(a) is ndarray else np.asarray(a)


def _unwrap_lenient(obj):
    if type(obj) is ndarray:
        return obj._a
    if type(obj) in (list, tuple):
        return type(obj)(_unwrap_lenient(o) for o in obj)
    return obj


class _Namespace:
    """A NumPy submodule (``linalg``, ...) lifted to device arrays."""

    def __init__(self, mod):
        self._mod = mod

    def __getattr__(self, name):
        attr = getattr(self._mod, name)
        return _lift(attr) if callable(attr) and not isinstance(attr, type) else attr


class _Module(types.ModuleType):
    """Module-level ``__getattr__``: any NumPy name, lifted to device arrays on first use."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            attr = getattr(np, name)
        except AttributeError:
            raise AttributeError(f"module 'minibidir.standin' has no attribute {name!r}") from None
        if isinstance(attr, np.ufunc):
            lifted = _UFunc(attr)
        elif isinstance(attr, types.ModuleType):
            if name == "random":
                raise AttributeError("minibidir.standin.random: draw random numbers through "
                                     "minibidir.backend.random_normal / random_uniform / random_integers")
            lifted = _Namespace(attr)
        elif isinstance(attr, type) or not callable(attr):
            lifted = attr          # dtypes, constants, newaxis, finfo, ...
        else:
            lifted = _lift(attr)
        setattr(self, name, lifted)
        return lifted


sys.modules[__name__].__class__ = _Module
