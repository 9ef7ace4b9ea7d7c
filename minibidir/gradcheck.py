"""Checking analytic gradients against finite differences (float64).

For a function ``f`` of tensors, backpropagation gives the vector-Jacobian product
Jᵀv for a random output weighting ``v``.  Central differences give the same numbers
without any derivative code:

    ∂⟨v, f(x)⟩/∂x_k ≈ (⟨v, f(x + ε e_k)⟩ − ⟨v, f(x − ε e_k)⟩) / 2ε      (error O(ε²))

Small inputs are checked element by element.  Large inputs are checked along a few
random directions u (Jacobian–vector vs vector–Jacobian products):

    ⟨u, Jᵀv⟩  vs  (⟨v, f(x + εu)⟩ − ⟨v, f(x − εu)⟩) / 2ε

which costs two forward passes per direction instead of two per element.
"""
from __future__ import annotations

import numpy as np

from . import backend as B
from .autograd import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    return out if isinstance(out, (tuple, list)) else (out,)


def _weighted(outs, vs):
    """⟨v, f(x)⟩ summed over all floating outputs, as a Python float."""
    total = 0.0
    for o, v in zip(outs, vs):
        if v is not None:
            total += float((B.to_numpy(o.data).astype(np.float64) * v).sum())
    return total


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4, max_elementwise=256,
              n_directions=6, seed=0, raise_exception=True):
    """Compare the gradients of ``fn(*inputs)`` with central finite differences.

    ``inputs`` are Tensors; those with ``requires_grad=True`` are checked and must be
    float64 (float32 rounding swamps an O(ε²) difference quotient).  ``fn`` may return a
    tensor or a tuple of tensors, and must be deterministic (seed any randomness inside).
    Inputs with at most ``max_elementwise`` elements are checked element by element;
    larger ones along ``n_directions`` random directions.  An element passes when
    |analytic − numeric| ≤ atol + rtol·|numeric|.

    Returns True, or raises :class:`GradcheckError` naming the input, the worst element
    and both values (``raise_exception=False`` returns False instead).
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; gradient checks "
                            f"need float64 (use tensor(..., dtype=np.float64))")
    rng = np.random.default_rng(seed)

    # Analytic: one backward pass of <v, f(x)> gives J^T v for every input.
    for i in checked:
        inputs[i].grad = None
    outs = _outputs(fn, inputs)
    vs = [rng.standard_normal(o.shape) if o.dtype.kind == "f" else None for o in outs]
    total = None
    for o, v in zip(outs, vs):
        if v is None or not o.requires_grad:
            continue
        xp = B.get_array_module(o.data)
        vv = v if xp is np else xp.asarray(v)
        term = (o * Tensor(vv.astype(o.dtype))).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("gradcheck: no output depends on an input that requires grad")
    total.backward()
    analytic = {}
    for i in checked:
        g = inputs[i].grad
        analytic[i] = np.zeros(inputs[i].shape) if g is None else B.to_numpy(g.data).astype(np.float64)

    def f_at(i, delta):
        """⟨v, f⟩ with input i's data shifted by ``delta`` (a host array)."""
        t = inputs[i]
        orig = t.data
        xp = B.get_array_module(orig)
        t.data = orig + (delta if xp is np else xp.asarray(delta))
        try:
            with no_grad():
                return _weighted(_outputs(fn, inputs), vs)
        finally:
            t.data = orig

    for i in checked:
        shape = inputs[i].shape
        size = int(np.prod(shape))
        a = analytic[i]
        if size <= max_elementwise:
            numeric = np.zeros(shape)
            flat = numeric.reshape(-1)
            for k in range(size):
                d = np.zeros(size)
                d[k] = eps
                d = d.reshape(shape)
                flat[k] = (f_at(i, d) - f_at(i, -d)) / (2 * eps)
            err = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
            if (err > 0).any():
                k = tuple(int(j) for j in np.unravel_index(int(np.argmax(err)), shape))
                msg = (f"gradcheck: gradient of input {i} (shape {shape}) is wrong at element {k}: "
                       f"analytic {a[k]:.10g}, numeric {numeric[k]:.10g} "
                       f"(|diff| {abs(a[k] - numeric[k]):.3g}, allowed {atol + rtol * abs(numeric[k]):.3g}; "
                       f"{int((err > 0).sum())} of {size} elements fail)")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
        else:
            for j in range(n_directions):
                u = rng.standard_normal(shape)
                numeric = (f_at(i, eps * u) - f_at(i, -eps * u)) / (2 * eps)
                exact = float((a * u).sum())
                if abs(exact - numeric) > atol * np.sqrt(size) + rtol * abs(numeric):
                    msg = (f"gradcheck: gradient of input {i} (shape {shape}) is wrong along random "
                           f"direction {j}: <u, analytic> = {exact:.10g}, finite difference = "
                           f"{numeric:.10g} (|diff| {abs(exact - numeric):.3g})")
                    if raise_exception:
                        raise GradcheckError(msg)
                    return False
    return True
