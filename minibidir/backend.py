"""Array-module selection: NumPy on the CPU, CuPy on an NVIDIA GPU, one code path.

Every op asks the arrays it receives which library they belong to
(``xp = get_array_module(x)``) and calls ``xp.exp``, ``xp.matmul``, ... on them, so the
same op runs on NumPy or CuPy arrays.  This module is the one place that imports the
array libraries, picks the default one, moves arrays between host and device, seeds the
random generators, and hides the few calls that differ between the libraries
(random numbers, scatter-add, ``erf``).

Three backends:

* ``"numpy"``  - the default, host arrays.
* ``"cupy"``   - CuPy arrays on a GPU (``MINIBIDIR_BACKEND=cupy`` or ``use_backend("cupy")``).
* ``"standin"`` - a CPU stand-in for CuPy (:mod:`minibidir.standin`) that refuses, as CuPy
  does, to mix its arrays with host NumPy arrays.  The test suite runs every op under it,
  so an op that secretly calls ``np.`` on device data fails on a machine without a GPU.
"""
from __future__ import annotations

import os
import contextlib

import numpy as np

from . import standin

__all__ = [
    "get_array_module", "use_backend", "get_backend", "array_module", "device_of",
    "to_numpy", "to_device", "cupy_available", "manual_seed", "get_rng",
    "set_default_dtype", "get_default_dtype", "get_rng_state", "set_rng_state", "random_normal", "random_uniform",
    "random_integers", "scatter_add", "erf", "tune_malloc",
]

_BACKENDS = ("numpy", "cupy", "standin")

_cupy = None            # the cupy module once imported
_cupy_checked = False


def _import_cupy():
    """Import CuPy if it is installed and sees a GPU; ``None`` otherwise."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: F401
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy = cupy
        except Exception:  # ImportError, CUDARuntimeError (no driver / no device), ...
            _cupy = None
    return _cupy


def cupy_available() -> bool:
    """True when CuPy is installed and a GPU is visible."""
    return _import_cupy() is not None


class _State:
    backend = "numpy"          # where new tensors are created
    device_backend = None      # what "cuda" means: "cupy" or "standin" (None: cupy if present)
    default_dtype = np.float32
    rng = np.random.default_rng(0)
    seed = 0


_state = _State()


def use_backend(name: str) -> None:
    """Create new tensors with ``name`` ("numpy", "cupy" or "standin").

    Choosing "cupy" or "standin" also decides what the device "cuda" means for
    ``Tensor.to("cuda")`` and ``Module.to("cuda")``.
    """
    if name not in _BACKENDS:
        raise ValueError(f"use_backend: unknown backend {name!r}; choose one of {_BACKENDS}")
    if name == "cupy" and not cupy_available():
        raise RuntimeError("use_backend('cupy'): CuPy is not installed or no GPU is visible "
                           "(install cupy-cuda12x on a machine with an NVIDIA GPU; "
                           "use_backend('standin') emulates a device on the CPU)")
    _state.backend = name
    if name != "numpy":
        _state.device_backend = name


def get_backend() -> str:
    """Name of the backend new tensors are created with."""
    return _state.backend


@contextlib.contextmanager
def backend(name: str):
    """Context manager: ``with backend("standin"): ...`` then restore the previous choice."""
    old = (_state.backend, _state.device_backend)
    use_backend(name)
    try:
        yield
    finally:
        _state.backend, _state.device_backend = old


def _module_for(name: str):
    if name == "numpy":
        return np
    if name == "standin":
        return standin
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError("CuPy is not installed or no GPU is visible")
    return cp


def array_module(name: str | None = None):
    """The array module of backend ``name`` (default: the current backend)."""
    return _module_for(name or _state.backend)


def get_array_module(x):
    """The array library ``x`` belongs to: numpy, cupy, or the stand-in (like ``cupy.get_array_module``)."""
    t = type(x)
    if t is np.ndarray:
        return np
    if t is standin.ndarray:
        return standin
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def device_of(x) -> str:
    """``"cpu"`` for host arrays, ``"cuda"`` for device (CuPy or stand-in) arrays."""
    return "cpu" if get_array_module(x) is np else "cuda"


def _device_module():
    name = _state.device_backend
    if name is None:
        if not cupy_available():
            raise RuntimeError("device 'cuda' requested but CuPy is not installed or no GPU is visible "
                               "(use_backend('standin') emulates a device on the CPU)")
        name = "cupy"
    return _module_for(name)


def to_numpy(x) -> np.ndarray:
    """A host NumPy array with the contents of ``x`` (explicit device-to-host copy)."""
    xp = get_array_module(x)
    if xp is np:
        return np.asarray(x)
    if xp is standin:
        return x.get()
    return xp.asnumpy(x)


def to_device(x, device: str):
    """Move an array to ``"cpu"`` or ``"cuda"`` (copies only when it changes place)."""
    device = str(device)
    if device.startswith("cuda"):
        xp = _device_module()
        if get_array_module(x) is xp:
            return x
        return xp.asarray(to_numpy(x))
    if device == "cpu":
        return to_numpy(x)
    raise ValueError(f"to: unknown device {device!r}; expected 'cpu' or 'cuda'")


# ----------------------------------------------------------------------------- dtypes

def set_default_dtype(dtype) -> None:
    """Floating dtype for tensors made from Python numbers (float32 unless changed)."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype}")
    _state.default_dtype = dtype.type


def get_default_dtype():
    return _state.default_dtype


# ----------------------------------------------------------------------------- random numbers

def manual_seed(seed: int) -> None:
    """Seed every generator the library draws from (NumPy's, and CuPy's when present)."""
    _state.seed = int(seed)
    _state.rng = np.random.default_rng(int(seed))
    if _cupy is not None:
        _cupy.random.seed(int(seed))


def get_rng() -> np.random.Generator:
    """The host generator behind initialisation, dropout and masking."""
    return _state.rng


def get_rng_state() -> dict:
    """The host generator's state (JSON-serialisable), for checkpoints that resume exactly."""
    return {"seed": _state.seed, "numpy": _state.rng.bit_generator.state}


def set_rng_state(state: dict) -> None:
    _state.seed = int(state.get("seed", 0))
    _state.rng.bit_generator.state = state["numpy"]     # same generator object: earlier get_rng() stays valid


def _host_or_device(xp, host_array):
    return host_array if xp is np else xp.asarray(host_array)


def random_normal(xp, shape, dtype=None, mean=0.0, std=1.0):
    """Normal samples as an ``xp`` array (on CuPy drawn on the device)."""
    dtype = dtype or _state.default_dtype
    if xp is _cupy and xp is not None:
        return xp.random.normal(mean, std, size=shape).astype(dtype, copy=False)
    return _host_or_device(xp, _state.rng.normal(mean, std, size=shape).astype(dtype, copy=False))


def random_uniform(xp, shape, dtype=None, low=0.0, high=1.0):
    """Uniform samples in [low, high) as an ``xp`` array."""
    dtype = dtype or _state.default_dtype
    if xp is _cupy and xp is not None:
        return xp.random.uniform(low, high, size=shape).astype(dtype, copy=False)
    if np.dtype(dtype) == np.float32 and low == 0.0 and high == 1.0:
        # Drawn directly in float32: one pass and a 4-byte buffer (dropout masks are hot).
        return _host_or_device(xp, _state.rng.random(shape, dtype=np.float32))
    return _host_or_device(xp, _state.rng.uniform(low, high, size=shape).astype(dtype, copy=False))


def random_integers(xp, low, high, shape):
    """Integers in [low, high) as an int64 ``xp`` array."""
    if xp is _cupy and xp is not None:
        return xp.random.randint(low, high, size=shape, dtype=np.int64)
    return _host_or_device(xp, _state.rng.integers(low, high, size=shape, dtype=np.int64))


# ----------------------------------------------------------------------------- calls that differ

def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` with repeated indices accumulated (in place).

    NumPy: ``np.add.at``; CuPy: ``cupyx.scatter_add``.  ``indices`` is anything that
    indexes the first axes of ``target`` (an integer array, or a tuple of them).
    """
    xp = get_array_module(target)
    if xp is np:
        if isinstance(indices, np.ndarray) and indices.ndim == 1 and target.ndim == 2:
            # Row scatter (embedding backward): a sort-free bincount-style path is far
            # faster than np.add.at for many rows.
            _scatter_rows(target, indices, values)
        else:
            np.add.at(target, indices, values)
    elif xp is standin:
        standin.add.at(target, indices, values)
    else:
        import cupyx
        cupyx.scatter_add(target, indices, values)


def _scatter_rows(target, rows, values):
    values = values.reshape(len(rows), -1)
    rows = np.where(rows < 0, rows + target.shape[0], rows)   # -1 and n-1 are the same row
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]]) if len(rows) else np.empty(0, np.intp)
    if len(starts) == 0:
        return
    sums = np.add.reduceat(values[order], starts, axis=0)
    target[sorted_rows[starts]] += sums.reshape((len(starts),) + target.shape[1:])


def erf(x):
    """The error function, elementwise (SciPy on the host, ``cupyx.scipy`` on the GPU)."""
    xp = get_array_module(x)
    if xp is np:
        from scipy.special import erf as _erf
        return _erf(x)
    if xp is standin:
        from scipy.special import erf as _erf
        return standin.asarray(_erf(x.get()))
    from cupyx.scipy.special import erf as _erf
    return _erf(x)


# ----------------------------------------------------------------------------- allocator

def tune_malloc(threshold_bytes: int = 1 << 30) -> bool:
    """Keep large freed NumPy buffers in the process instead of returning them to the OS.

    glibc returns big blocks (mmap) to the OS on free, so a training step that allocates
    the same large temporaries every iteration page-faults them back each time.  Raising
    the mmap and trim thresholds lets them be reused.  Returns False where glibc's
    ``mallopt`` is unavailable.  Benchmarks call it once so both sides of a comparison
    run under the same allocator settings.
    """
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, min(threshold_bytes, 1 << 25)) == 1
        ok &= libc.mallopt(M_TRIM_THRESHOLD, threshold_bytes) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False


def _init_from_env():
    name = os.environ.get("MINIBIDIR_BACKEND", "").strip().lower()
    if name:
        use_backend(name)


_init_from_env()
