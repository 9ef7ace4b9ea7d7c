"""Test helpers: compare an op with PyTorch (forward and gradients), gradient-check it.

``check_against_torch`` follows tinygrad's ``helper_test_op``: build random float64
inputs, run the op in minibidir and in PyTorch on the same values, compare the outputs,
then backpropagate the same *random* output weighting W on both sides (the gradient of
sum(out * W); a plain sum would give every output the same weight and hide errors such as
swapped or transposed gradients) and compare every input's gradient.  Forward and
gradient tolerances are separate.  PyTorch is a test-only oracle: tests that need it
skip when it is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B


def _per_input(flag, n):
    """A bool (or number) for every input, or one per input already."""
    if isinstance(flag, (list, tuple)):
        if len(flag) != n:
            raise ValueError(f"expected {n} per-input flags, got {len(flag)}")
        return list(flag)
    return [flag] * n


def random_inputs(shapes, *, low=-2.0, high=2.0, positive=False, nonzero=False, seed=0):
    """Host float64 arrays of the given shapes, uniform in [low, high).

    ``positive``: values in [0.5, 0.5 + (high - low) / 2) instead (for log, sqrt, pow).
    ``nonzero``: values at least 0.5 away from 0 (denominators, |x| near its kink).
    Both may be a bool per input.
    """
    rng = np.random.default_rng(seed)
    pos = _per_input(positive, len(shapes))
    nz = _per_input(nonzero, len(shapes))
    out = []
    for shape, p, z in zip(shapes, pos, nz):
        a = rng.uniform(low, high, size=shape)
        if p:
            a = 0.5 + np.abs(a - low) / 2
        elif z:
            a = np.where(a >= 0, a + 0.5, a - 0.5)
        out.append(np.asarray(a, dtype=np.float64))
    return out


def to_backend(a, xp):
    """A host array moved to backend ``xp`` (explicit host-to-device copy)."""
    return a if xp is np else xp.asarray(a)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _assert_close(got, want, atol, rtol, what):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, PyTorch gives {want.shape}"
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)


def check_against_torch(shapes, mb_fn, torch_fn, *, fwd_atol=1e-10, fwd_rtol=1e-7,
                        grad_atol=1e-8, grad_rtol=1e-6, low=-2.0, high=2.0, xp=np,
                        positive=False, nonzero=False, inputs=None, requires_grad=True,
                        seed=0, backward=True):
    """Compare ``mb_fn(*tensors)`` with ``torch_fn(*torch_tensors)``, forward and backward.

    shapes:        input shapes (ignored when ``inputs`` gives the host arrays directly).
    mb_fn:         takes minibidir Tensors (on backend ``xp``), returns a Tensor or a tuple.
    torch_fn:      the same computation on torch tensors (float64, same values).
    xp:            the array module the inputs are created on (``numpy``, the stand-in, cupy).
    requires_grad: bool, or one per input (False: a constant operand).
    backward:      False to compare the forward pass only.

    Outputs must live on the same backend as the inputs and be float64 where PyTorch's
    are; gradients must have the inputs' shapes, dtype and backend.  Returns the
    minibidir outputs and input tensors for further checks.
    """
    torch = pytest.importorskip("torch")
    host = [np.asarray(a, dtype=np.float64) for a in inputs] if inputs is not None else \
        random_inputs(shapes, low=low, high=high, positive=positive, nonzero=nonzero, seed=seed)
    rg = _per_input(requires_grad, len(host))

    xs = [mb.Tensor(to_backend(a.copy(), xp), requires_grad=r) for a, r in zip(host, rg)]
    ts = [torch.tensor(a.copy(), dtype=torch.float64, requires_grad=r) for a, r in zip(host, rg)]
    outs = _as_tuple(mb_fn(*xs))
    touts = _as_tuple(torch_fn(*ts))
    assert len(outs) == len(touts), f"{len(outs)} outputs, PyTorch gives {len(touts)}"

    for k, (o, t) in enumerate(zip(outs, touts)):
        assert isinstance(o, mb.Tensor), f"output {k} is a {type(o).__name__}, not a Tensor"
        assert B.get_array_module(o.data) is xp, \
            f"output {k} lives on {B.get_array_module(o.data).__name__}, inputs on {xp.__name__}"
        want = t.detach().numpy()
        assert o.dtype == want.dtype, f"output {k}: dtype {o.dtype}, PyTorch gives {want.dtype}"
        _assert_close(mb.to_numpy(o.data), want, fwd_atol, fwd_rtol, f"forward output {k}")

    if not backward or not any(rg):
        return outs, xs

    # Backpropagate sum(out * W) with a random W per (floating, differentiable) output.
    rng = np.random.default_rng(seed + 1000)
    total = ttotal = None
    for o, t in zip(outs, touts):
        if not t.requires_grad:
            assert not o.requires_grad, "output requires grad where PyTorch's does not"
            continue
        assert o.requires_grad, "output does not require grad where PyTorch's does"
        w = rng.standard_normal(o.shape)
        term = (o * mb.Tensor(to_backend(w, xp))).sum()
        tterm = (t * torch.tensor(w, dtype=torch.float64)).sum()
        total = term if total is None else total + term
        ttotal = tterm if ttotal is None else ttotal + tterm
    if total is None:
        return outs, xs
    total.backward()
    ttotal.backward()

    for i, (x, t, r) in enumerate(zip(xs, ts, rg)):
        if not r:
            assert x.grad is None, f"constant input {i} received a gradient"
            continue
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        if x.grad is None:
            got = np.zeros(x.shape)
        else:
            assert B.get_array_module(x.grad.data) is xp, f"gradient of input {i} left the backend"
            assert x.grad.dtype == np.float64, f"gradient of input {i} has dtype {x.grad.dtype}"
            got = mb.to_numpy(x.grad.data)
        _assert_close(got, want, grad_atol, grad_rtol, f"gradient of input {i}")
    return outs, xs


def check_gradcheck(fn, shapes, *, low=-2.0, high=2.0, positive=False, nonzero=False,
                    inputs=None, requires_grad=True, xp=np, seed=0, eps=1e-6, atol=1e-6,
                    rtol=1e-4, **kwargs):
    """Run :func:`minibidir.gradcheck` on float64 inputs (random, or the given host arrays)."""
    host = [np.asarray(a, dtype=np.float64) for a in inputs] if inputs is not None else \
        random_inputs(shapes, low=low, high=high, positive=positive, nonzero=nonzero, seed=seed)
    rg = _per_input(requires_grad, len(host))
    xs = [mb.Tensor(to_backend(a, xp), requires_grad=r) for a, r in zip(host, rg)]
    assert mb.gradcheck(fn, *xs, eps=eps, atol=atol, rtol=rtol, seed=seed, **kwargs)
    return xs
