"""Every op of :mod:`minibidir.functional` and every Tensor method/operator, checked
forward and backward against PyTorch (float64, same inputs, random output weighting) and
by finite differences (:func:`minibidir.gradcheck`), under every backend: NumPy, the CPU
stand-in for CuPy (which refuses host/device mixing), and CuPy on a GPU (marked ``gpu``).

Most tests are one call to :func:`helpers.check_against_torch`; tolerances are float64's
(forward ~1e-10, gradients ~1e-8).  Error tests check that messages name the op and the
offending shapes.
"""
import contextlib
import warnings

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import functional as F
from minibidir import standin

from helpers import check_against_torch, check_gradcheck, random_inputs, to_backend

try:                                    # PyTorch is a test-only oracle: comparisons skip without it
    import torch
    TF = torch.nn.functional
except ImportError:
    torch = TF = None

try:
    from hypothesis import assume, given, settings, HealthCheck, strategies as st
    from hypothesis.extra import numpy as hnp
    _FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
except ImportError:                     # hypothesis is test-only too: its tests skip without it
    class _Absent:
        def __getattr__(self, name):
            return lambda *a, **k: None
    st = hnp = _Absent()

    def given(*a, **k):
        return pytest.mark.skip(reason="hypothesis is not installed")

    def _FIXTURE_OK(f):
        return f

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the test oracle) is not installed")


def T(a, requires_grad=False, xp=np):
    """A float64 (or integer/bool) tensor on backend ``xp`` from host values."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
    return mb.Tensor(to_backend(a, xp), requires_grad=requires_grad)


def tt(a, requires_grad=False):
    """A torch tensor with the same values (float64 for floating data)."""
    a = np.asarray(a)
    t = torch.from_numpy(a.copy())
    return t.requires_grad_(requires_grad) if requires_grad else t


@contextlib.contextmanager
def strict_floats():
    """Overflow, division by zero, invalid operations and any warning raise.  Underflow to
    0 (exp(-1e4)) is the intended result of a stable formula and stays quiet, as it is by
    NumPy's default."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            yield


# ============================================================================ binary arithmetic

BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 1, 4), (2, 4)),
    ((2, 4), (3, 1, 4)),
    ((), (3,)),
    ((2, 3), ()),
    ((), ()),
    ((4,), (3, 1)),
    ((1,), (2, 3)),
]

BINARY = [
    # name, functional form, the same computation written for both libraries, input options
    ("add", F.add, lambda a, b: a + b, {}),
    ("sub", F.sub, lambda a, b: a - b, {}),
    ("mul", F.mul, lambda a, b: a * b, {}),
    ("div", F.div, lambda a, b: a / b, {"nonzero": (False, True)}),
    ("pow", F.pow, lambda a, b: a ** b, {"positive": (True, False)}),
    ("maximum", F.maximum, lambda a, b: torch.maximum(a, b), {}),
    ("minimum", F.minimum, lambda a, b: torch.minimum(a, b), {}),
]
BINARY_IDS = [b[0] for b in BINARY]
OPERATORS = [b for b in BINARY if b[0] in ("add", "sub", "mul", "div", "pow")]


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name,fn,ref,opts", BINARY, ids=BINARY_IDS)
def test_binary_functional_vs_torch(xp_backend, name, fn, ref, opts, shapes):
    check_against_torch(shapes, fn, ref, xp=xp_backend, **opts)


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name,fn,ref,opts", OPERATORS, ids=[b[0] for b in OPERATORS])
def test_binary_operator_vs_torch(xp_backend, name, fn, ref, opts, shapes):
    check_against_torch(shapes, ref, ref, xp=xp_backend, **opts)


@pytest.mark.parametrize("requires_grad", [(True, False), (False, True)], ids=["const_b", "const_a"])
@pytest.mark.parametrize("name,fn,ref,opts", BINARY, ids=BINARY_IDS)
def test_binary_with_one_constant_operand(xp_backend, name, fn, ref, opts, requires_grad):
    check_against_torch([(3, 1, 4), (2, 4)], fn, ref, xp=xp_backend, requires_grad=requires_grad, **opts)


@pytest.mark.parametrize("fn,ref", [(F.maximum, lambda a, b: torch.maximum(a, b)),
                                    (F.minimum, lambda a, b: torch.minimum(a, b))],
                         ids=["maximum", "minimum"])
def test_maximum_minimum_ties_split_the_gradient(xp_backend, fn, ref):
    a = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, -1.0]])
    b = np.array([[1.0, 0.0, 3.0], [0.5, 1.0, -1.0]])
    check_against_torch(None, fn, ref, inputs=[a, b], xp=xp_backend)
    # broadcast ties: b's elements tie with a whole column of a
    check_against_torch(None, fn, ref, inputs=[np.array([[1.0, 2.0], [1.0, -2.0]]), np.array([1.0, 2.0])],
                        xp=xp_backend)
    x = T(a, True, xp_backend)
    fn(x, x).sum().backward()          # max(x, x): both halves land on x
    np.testing.assert_allclose(x.grad.numpy(), np.ones_like(a))


@pytest.mark.parametrize("p,opts", [
    (2, {}), (3, {}), (0.5, {"positive": True}), (1.5, {"positive": True}), (-1, {"nonzero": True}),
    (-2, {"nonzero": True}), (0, {}), (1, {}), (2.0, {}),
], ids=lambda v: str(v) if not isinstance(v, dict) else "")
def test_pow_scalar_exponent(xp_backend, p, opts):
    check_against_torch([(3, 4)], lambda x: F.pow(x, p), lambda x: x ** p, xp=xp_backend, **opts)
    check_against_torch([(2, 3)], lambda x: x ** p, lambda x: x ** p, xp=xp_backend, **opts)
    check_against_torch([(2, 3)], lambda x: x.pow(p), lambda x: x.pow(p), xp=xp_backend, **opts)


def test_pow_square_at_zero_has_zero_gradient(xp_backend):
    check_against_torch(None, lambda x: x ** 2, lambda x: x ** 2, inputs=[np.array([0.0, -1.0, 2.0])],
                        xp=xp_backend)


def test_pow_tensor_exponent_on_positive_base(xp_backend):
    check_against_torch([(3, 4), (3, 4)], lambda a, b: a ** b, lambda a, b: a ** b,
                        positive=(True, False), xp=xp_backend)
    check_against_torch([(2, 1, 4), (3, 1)], F.pow, lambda a, b: a ** b, positive=(True, False), xp=xp_backend)


def test_neg(xp_backend):
    check_against_torch([(3, 4)], F.neg, lambda x: -x, xp=xp_backend)
    check_against_torch([(3, 4)], lambda x: -x, lambda x: -x, xp=xp_backend)
    check_against_torch([()], lambda x: +x * 2, lambda x: +x * 2, xp=xp_backend)


# ============================================================================ reflected operators

@pytest.mark.parametrize("fn,opts", [
    (lambda x: 2 + x, {}), (lambda x: 2 - x, {}), (lambda x: 2 * x, {}),
    (lambda x: 2 / x, {"nonzero": True}), (lambda x: 2 ** x, {}), (lambda x: 2.5 ** x, {}),
    (lambda x: 0.5 - x * 3 + 1.5 / (x + 4), {}),
], ids=["radd", "rsub", "rmul", "rtruediv", "rpow", "rpow_float", "mixed"])
def test_reflected_python_scalars(xp_backend, fn, opts):
    check_against_torch([(3, 4)], fn, fn, xp=xp_backend, **opts)


def test_reflected_numpy_scalar(xp_backend):
    # A NumPy scalar on the left (np.sqrt(d) * x is common): NumPy must defer to the tensor.
    for fn, ref in ((lambda x: np.float64(2.0) * x, lambda x: 2.0 * x),
                    (lambda x: np.float64(3.0) - x, lambda x: 3.0 - x),
                    (lambda x: np.float64(2.0) ** x, lambda x: 2.0 ** x),
                    (lambda x: np.float64(1.0) / (x + 3), lambda x: 1.0 / (x + 3))):
        out, _ = check_against_torch([(2, 3)], fn, ref, xp=xp_backend)
        assert isinstance(out[0], mb.Tensor)


@needs_torch
def test_numpy_array_on_the_left_of_a_tensor():
    a = np.random.default_rng(1).standard_normal((3, 4))
    m = np.random.default_rng(2).standard_normal((5, 3))
    cases = [
        (lambda x: a + x, lambda x: torch.from_numpy(a) + x),
        (lambda x: a - x, lambda x: torch.from_numpy(a) - x),
        (lambda x: a * x, lambda x: torch.from_numpy(a) * x),
        (lambda x: a / (x + 3), lambda x: torch.from_numpy(a) / (x + 3)),
        (lambda x: m @ x, lambda x: torch.from_numpy(m) @ x),
        (lambda x: a[0] + x, lambda x: torch.from_numpy(a[0]) + x),        # broadcasting
    ]
    for fn, ref in cases:
        out, _ = check_against_torch([(3, 4)], fn, ref)
        assert isinstance(out[0], mb.Tensor)


def test_numpy_array_with_a_device_tensor_is_refused():
    with B.backend("standin"):
        x = T(np.ones((3, 4)), True, standin)
        h = np.ones((3, 4))
        for fn in (lambda: h + x, lambda: x + h, lambda: h * x, lambda: x - h, lambda: h @ x.T,
                   lambda: F.maximum(x, h)):
            with pytest.raises(TypeError, match="host.*device|device.*host"):
                fn()


def test_scalars_keep_the_tensor_dtype():
    x32 = mb.tensor(np.ones(3, np.float32), requires_grad=True)
    for y in (x32 + 2.5, 2.5 * x32, x32 / 3, 2 ** x32, x32 ** 2, 1 - x32):
        assert y.dtype == np.float32
    x64 = T(np.ones(3), True)
    for y in (x64 + 2.5, 2.5 * x64, x64 / 3, 2 ** x64, x64 ** 0.5, 1 - x64):
        assert y.dtype == np.float64


# ============================================================================ comparisons

@needs_torch
@pytest.mark.parametrize("op", ["lt", "le", "gt", "ge", "eq", "ne"])
def test_comparisons_are_not_differentiable(xp_backend, op):
    import operator
    f = getattr(operator, op)
    a = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]])
    b = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, 2.0]])
    x, y = T(a, True, xp_backend), T(b, True, xp_backend)
    for got, want in ((f(x, y), f(tt(a), tt(b))), (f(x, 1.0), f(tt(a), 1.0)),
                      (f(x, y[0]), f(tt(a), tt(b)[0]))):
        assert isinstance(got, mb.Tensor)
        assert got.dtype == np.bool_ and not got.requires_grad and got.grad_fn is None
        assert B.get_array_module(got.data) is xp_backend
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_logical_operators_on_masks(xp_backend):
    a = np.array([[1.0, -2.0], [0.5, 0.0]])
    x = T(a, True, xp_backend)
    np.testing.assert_array_equal((~(x > 0)).numpy(), ~(a > 0))
    np.testing.assert_array_equal(((x > 0) & (x < 1)).numpy(), (a > 0) & (a < 1))
    np.testing.assert_array_equal(((x > 0.7) | (x < -1)).numpy(), (a > 0.7) | (a < -1))
    assert not (~(x > 0)).requires_grad


# ============================================================================ matrix products

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((1, 3, 4), (2, 1, 4, 2)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(xp_backend, shapes):
    check_against_torch(shapes, F.matmul, torch.matmul if torch else None, xp=xp_backend)
    check_against_torch(shapes, lambda a, b: a @ b, lambda a, b: a @ b, xp=xp_backend, seed=1)
    check_against_torch(shapes, lambda a, b: a.matmul(b), lambda a, b: a.matmul(b), xp=xp_backend,
                        requires_grad=(False, True), seed=2)


@pytest.mark.parametrize("xshape", [(3, 4), (2, 3, 4), (4,), (2, 2, 1, 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear(xp_backend, xshape, bias):
    shapes = [xshape, (5, 4)] + ([(5,)] if bias else [])
    check_against_torch(shapes, F.linear, TF.linear if TF else None, xp=xp_backend)
    # frozen weights: only the input needs a gradient
    check_against_torch(shapes, F.linear, TF.linear if TF else None, xp=xp_backend,
                        requires_grad=[True] + [False] * (len(shapes) - 1), seed=3)


# ============================================================================ elementwise functions

UNARY = [
    ("exp", F.exp, lambda x: x.exp(), {}),
    ("log", F.log, lambda x: x.log(), {"positive": True}),
    ("sqrt", F.sqrt, lambda x: x.sqrt(), {"positive": True}),
    ("abs", F.abs, lambda x: x.abs(), {"nonzero": True}),
    ("tanh", F.tanh, lambda x: x.tanh(), {}),
    ("sigmoid", F.sigmoid, lambda x: x.sigmoid(), {}),
    ("relu", F.relu, lambda x: x.relu(), {"nonzero": True}),
    ("gelu", F.gelu, lambda x: TF.gelu(x), {"low": -4, "high": 4}),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"),
     {"low": -4, "high": 4}),
    ("neg", F.neg, lambda x: -x, {}),
]
UNARY_IDS = [u[0] for u in UNARY]


@pytest.mark.parametrize("shape", [(3, 4), (), (2, 3, 4), (1,)], ids=str)
@pytest.mark.parametrize("name,fn,ref,opts", UNARY, ids=UNARY_IDS)
def test_unary_vs_torch(xp_backend, name, fn, ref, opts, shape):
    check_against_torch([shape], fn, ref, xp=xp_backend, **opts)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu"])
def test_unary_tensor_methods(xp_backend, name):
    opts = dict(next(u[3] for u in UNARY if u[0] == name))
    f = lambda x: getattr(x, name)()                        # noqa: E731 - same call on both sides
    check_against_torch([(2, 5)], f, f, xp=xp_backend, **opts)


def test_abs_builtin_and_kinks_at_zero(xp_backend):
    # At 0 PyTorch's subgradients are 0 for abs and relu.
    z = [np.array([0.0, -1.5, 2.0, 0.0])]
    check_against_torch(None, lambda x: abs(x), lambda x: abs(x), inputs=z, xp=xp_backend)
    check_against_torch(None, F.relu, lambda x: x.relu(), inputs=z, xp=xp_backend)


@pytest.mark.parametrize("name,fn,ref", [
    ("sigmoid", F.sigmoid, lambda x: torch.sigmoid(x)),
    ("tanh", F.tanh, lambda x: torch.tanh(x)),
    ("gelu", F.gelu, lambda x: TF.gelu(x)),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    ("relu", F.relu, lambda x: torch.relu(x)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_activations_at_extreme_inputs(xp_backend, name, fn, ref):
    x = np.array([-1e4, -800.0, -50.0, -1.0, 0.0, 1.0, 50.0, 800.0, 1e4])
    with strict_floats():
        out, xs = check_against_torch(None, fn, ref, inputs=[x], xp=xp_backend)
    assert np.isfinite(out[0].numpy()).all() and np.isfinite(xs[0].grad.numpy()).all()


def test_sigmoid_saturates_exactly():
    x = T([-1e4, 1e4, -40.0], True)
    with strict_floats():
        y = F.sigmoid(x)
        y.sum().backward()
    np.testing.assert_array_equal(y.numpy()[:2], [0.0, 1.0])
    assert y.numpy()[2] == pytest.approx(np.exp(-40.0), rel=1e-14)      # no cancellation in 1 - e/(1+e)
    np.testing.assert_array_equal(x.grad.numpy()[:2], [0.0, 0.0])


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="gelu.*approximate"):
        F.gelu(T([1.0]), approximate="erf")


# ----------------------------------------------------------------------------- clip, where, masked_fill

@pytest.mark.parametrize("lo,hi", [(-0.5, None), (None, 0.5), (-0.5, 0.7), (-3.0, 3.0)],
                         ids=["min_only", "max_only", "both", "no_effect"])
def test_clip(xp_backend, lo, hi):
    check_against_torch([(3, 4)], lambda x: F.clip(x, lo, hi), lambda x: torch.clamp(x, lo, hi),
                        xp=xp_backend)
    check_against_torch([(3, 4)], lambda x: F.clamp(x, min=lo, max=hi), lambda x: x.clamp(min=lo, max=hi),
                        xp=xp_backend, seed=1)
    check_against_torch([(3, 4)], lambda x: x.clip(lo, hi), lambda x: x.clip(lo, hi), xp=xp_backend, seed=2)


def test_clip_at_the_bounds_passes_the_gradient(xp_backend):
    x = np.array([-0.5, 0.5, -1.0, 1.0, 0.0])
    check_against_torch(None, lambda t: F.clip(t, -0.5, 0.5), lambda t: torch.clamp(t, -0.5, 0.5),
                        inputs=[x], xp=xp_backend)


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="clip"):
        F.clip(T([1.0]))


@needs_torch
def test_where(xp_backend):
    cond = np.array([[True], [False], [True]])
    check_against_torch([(3, 4), (4,)], lambda a, b: F.where(cond, a, b),
                        lambda a, b: torch.where(tt(cond), a, b), xp=xp_backend)
    # a Tensor condition, built from a comparison
    check_against_torch([(3, 4), (3, 4)], lambda a, b: F.where(a > b, a, b),
                        lambda a, b: torch.where(a > b, a, b), xp=xp_backend, seed=1)
    # a scalar on either side
    check_against_torch([(2, 5)], lambda a: F.where(a > 0, a, 0.0), lambda a: torch.where(a > 0, a, 0.0),
                        xp=xp_backend, seed=2)
    check_against_torch([(2, 5)], lambda a: F.where(a > 0, 1.5, a), lambda a: torch.where(a > 0, 1.5, a),
                        xp=xp_backend, seed=3)


def test_where_rejects_non_boolean_and_non_broadcasting_conditions():
    x = T(np.ones((3, 4)), True)
    with pytest.raises(TypeError, match="where.*boolean"):
        F.where(np.ones((3, 4)), x, x)
    with pytest.raises(ValueError, match=r"where.*\(2,\).*\(3, 4\)"):
        F.where(np.array([True, False]), x, x)


@needs_torch
@pytest.mark.parametrize("mshape", [(3, 1), (2, 3, 4), (4,), (1, 1, 4)], ids=str)
@pytest.mark.parametrize("value", [0.5, -1e9], ids=["0.5", "-1e9"])
def test_masked_fill(xp_backend, mshape, value):
    mask = np.random.default_rng(4).random(mshape) > 0.5
    check_against_torch([(2, 3, 4)], lambda x: F.masked_fill(x, mask, value),
                        lambda x: x.masked_fill(tt(mask), value), xp=xp_backend)
    check_against_torch([(2, 3, 4)], lambda x: x.masked_fill(T(mask, xp=xp_backend), value),
                        lambda x: x.masked_fill(tt(mask), value), xp=xp_backend, seed=1)


def test_masked_fill_with_a_tensor_mask(xp_backend):
    check_against_torch([(3, 5)], lambda x: x.masked_fill(x < 0, 0.0), lambda x: x.masked_fill(x < 0, 0.0),
                        xp=xp_backend)


def test_masked_fill_rejects_a_mask_of_the_wrong_shape():
    x = T(np.ones((2, 3, 4)), True)
    with pytest.raises(ValueError, match=r"masked_fill.*\(2, 4\).*\(2, 3, 4\)"):
        F.masked_fill(x, np.ones((2, 4), bool), 0.0)
    with pytest.raises(ValueError, match=r"masked_fill.*\(5, 2, 3, 4\).*\(2, 3, 4\)"):
        F.masked_fill(x, np.ones((5, 2, 3, 4), bool), 0.0)      # would broadcast x itself
    with pytest.raises(TypeError, match="masked_fill.*boolean.*float64"):
        F.masked_fill(x, np.ones((2, 3, 4)), 0.0)


# ============================================================================ joining and splitting

@pytest.mark.parametrize("shapes,axis", [
    ([(2, 3), (4, 3), (1, 3)], 0),
    ([(2, 3), (2, 1), (2, 2)], -1),
    ([(2, 1, 4), (2, 3, 4)], 1),
    ([(5,)], 0),
], ids=["axis0", "axis-1", "axis1_3d", "single"])
def test_concat(xp_backend, shapes, axis):
    check_against_torch(shapes, lambda *xs: F.concat(xs, axis=axis), lambda *xs: torch.cat(xs, dim=axis),
                        xp=xp_backend)
    check_against_torch(shapes, lambda *xs: F.cat(list(xs), dim=axis), lambda *xs: torch.cat(xs, dim=axis),
                        xp=xp_backend, seed=1, requires_grad=[i % 2 == 0 for i in range(len(shapes))])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(xp_backend, axis):
    check_against_torch([(2, 3)] * 3, lambda *xs: F.stack(xs, axis=axis), lambda *xs: torch.stack(xs, dim=axis),
                        xp=xp_backend)
    check_against_torch([(2, 3)] * 2, lambda *xs: F.stack(xs, dim=axis), lambda *xs: torch.stack(xs, dim=axis),
                        xp=xp_backend, requires_grad=(False, True), seed=1)


@pytest.mark.parametrize("fn,ref", [
    (lambda x: F.split(x, 3), lambda x: torch.split(x, 3)),
    (lambda x: F.split(x, 7), lambda x: torch.split(x, 7)),
    (lambda x: F.split(x, [2, 5]), lambda x: torch.split(x, [2, 5])),
    (lambda x: F.split(x, [2, 3, 2])[1], lambda x: torch.split(x, [2, 3, 2])[1]),          # unused pieces
    (lambda x: F.split(x, 2)[::2], lambda x: torch.split(x, 2)[::2]),
    (lambda x: x.split(2, 1), lambda x: x.split(2, 1)),
    (lambda x: F.split(x, [1, 2], dim=-1)[0], lambda x: torch.split(x, [1, 2], dim=-1)[0]),
    (lambda x: F.chunk(x, 3), lambda x: torch.chunk(x, 3)),
    (lambda x: F.chunk(x, 4), lambda x: torch.chunk(x, 4)),
    (lambda x: x.chunk(2, 1), lambda x: x.chunk(2, 1)),
    (lambda x: F.chunk(x, 3, dim=1)[-1], lambda x: torch.chunk(x, 3, dim=1)[-1]),
], ids=["int", "int_whole", "sizes", "one_of_three", "every_other", "method_axis1", "dim_last",
        "chunk3", "chunk4", "chunk_method", "chunk_last_piece"])
def test_split_and_chunk(xp_backend, fn, ref):
    check_against_torch([(7, 3)], fn, ref, xp=xp_backend)


def test_chunk_of_six_into_four_matches_torch(xp_backend):
    check_against_torch([(6, 2)], lambda x: F.chunk(x, 4), lambda x: torch.chunk(x, 4), xp=xp_backend)


def test_split_sizes_must_add_up():
    with pytest.raises(ValueError, match=r"split.*\[2, 2\].*4.*7"):
        F.split(T(np.ones((7, 3)), True), [2, 2])
    with pytest.raises(ValueError, match="split.*positive"):
        F.split(T(np.ones((7, 3)), True), 0)


def test_concat_and_stack_name_mismatched_shapes():
    a, b = T(np.ones((2, 3)), True), T(np.ones((2, 4)), True)
    with pytest.raises(ValueError, match=r"concat.*\(2, 3\).*\(2, 4\)"):
        F.concat([a, b], axis=0)
    with pytest.raises(ValueError, match=r"concat.*dimensions.*\(2, 3\).*\(3,\)"):
        F.concat([a, T(np.ones(3))])
    with pytest.raises(ValueError, match=r"stack.*\(2, 3\).*\(2, 4\)"):
        F.stack([a, b])
    with pytest.raises(ValueError, match="concat.*non-empty"):
        F.concat([])


# ============================================================================ softmax family

@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -1), ((5,), 0)],
                         ids=str)
def test_softmax_log_softmax(xp_backend, shape, axis):
    check_against_torch([shape], lambda x: F.softmax(x, axis), lambda x: torch.softmax(x, axis),
                        xp=xp_backend, low=-5, high=5)
    check_against_torch([shape], lambda x: F.log_softmax(x, dim=axis), lambda x: torch.log_softmax(x, axis),
                        xp=xp_backend, low=-5, high=5, seed=1)
    check_against_torch([shape], lambda x: x.softmax(axis), lambda x: x.softmax(axis), xp=xp_backend, seed=2)
    check_against_torch([shape], lambda x: x.log_softmax(axis), lambda x: x.log_softmax(axis),
                        xp=xp_backend, seed=3)


@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((5,), 0)], ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp(xp_backend, shape, axis, keepdims):
    check_against_torch([shape], lambda x: F.logsumexp(x, axis, keepdims=keepdims),
                        lambda x: torch.logsumexp(x, axis, keepdim=keepdims), xp=xp_backend, low=-5, high=5)
    check_against_torch([shape], lambda x: x.logsumexp(dim=axis, keepdim=keepdims),
                        lambda x: x.logsumexp(dim=axis, keepdim=keepdims), xp=xp_backend, seed=1)


LARGE_LOGITS = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0],
                         [-1e4, -1e4 + 2.0, -1e4 + 1.0, -1e4],
                         [3.0, -2.0, 0.5, 1.0]])
NEG_INF_LOGITS = np.array([[0.0, -np.inf, 1.0, -np.inf],
                           [-np.inf, 2.0, -np.inf, -np.inf],
                           [0.5, 0.25, -1.0, 3.0]])


@pytest.mark.parametrize("logits", [LARGE_LOGITS, NEG_INF_LOGITS], ids=["pm1e4", "neg_inf"])
@pytest.mark.parametrize("fn,ref", [
    (lambda x: F.softmax(x, -1), lambda x: torch.softmax(x, -1)),
    (lambda x: F.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1)),
    (lambda x: F.logsumexp(x, -1), lambda x: torch.logsumexp(x, -1)),
    (lambda x: F.logsumexp(x, 0), lambda x: torch.logsumexp(x, 0)),
], ids=["softmax", "log_softmax", "logsumexp", "logsumexp_axis0"])
def test_softmax_family_is_stable(xp_backend, logits, fn, ref):
    with strict_floats():
        out, _ = check_against_torch(None, fn, ref, inputs=[logits], xp=xp_backend, backward=False)
        assert not np.isnan(out[0].numpy()).any()
        # log_softmax is -inf at -inf logits, where sum(out * W) would be inf - inf: weight
        # only the finite outputs (the masked ones get no gradient on either side)
        hole = np.isinf(out[0].numpy())
        out, xs = check_against_torch(None, lambda x: fn(x).masked_fill(hole, 0.0),
                                      lambda x: ref(x).masked_fill(tt(hole), 0.0), inputs=[logits], xp=xp_backend)
    assert np.isfinite(xs[0].grad.numpy()).all()


def test_logsumexp_of_an_all_neg_inf_row_is_neg_inf(xp_backend):
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0]])
    with strict_floats():
        check_against_torch(None, lambda t: F.logsumexp(t, -1), lambda t: torch.logsumexp(t, -1),
                            inputs=[x], xp=xp_backend, backward=False)


# ============================================================================ losses

def _targets(tshape, c, ignore_index, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, size=tshape).astype(np.int64)
    if ignore_index is not None and t.ndim:
        flat = t.reshape(-1)
        flat[1::3] = ignore_index          # a third ignored, never all of them
    return t


CE_SHAPES = [((5, 4), (5,)), ((4,), ()), ((3, 4, 5), (3, 5)), ((2, 3, 2, 2), (2, 2, 2))]


@pytest.mark.parametrize("shapes", CE_SHAPES, ids=lambda s: f"{s[0]}->{s[1]}")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore_index", [None, -100, 1], ids=["no_ignore", "ignore-100", "ignore1"])
def test_cross_entropy(xp_backend, shapes, reduction, label_smoothing, ignore_index):
    xshape, tshape = shapes
    c = xshape[0] if len(xshape) == 1 else xshape[1]
    target = _targets(tshape, c, ignore_index, seed=5)
    if target.ndim == 0 and target == ignore_index:
        target = np.array(2)                  # keep one valid target (all ignored is tested below)
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    if ignore_index is not None:
        kw["ignore_index"] = ignore_index
    check_against_torch([xshape], lambda x: F.cross_entropy(x, target, **kw),
                        lambda x: TF.cross_entropy(x, tt(target), **kw), xp=xp_backend, low=-3, high=3)


def test_cross_entropy_with_a_tensor_target_and_extreme_logits(xp_backend):
    target = np.array([0, 3, 1])
    with strict_floats():
        out, xs = check_against_torch(
            None, lambda x: F.cross_entropy(x, T(target, xp=xp_backend)), lambda x: TF.cross_entropy(x, tt(target)),
            inputs=[LARGE_LOGITS], xp=xp_backend)
    assert np.isfinite(out[0].numpy()).all() and np.isfinite(xs[0].grad.numpy()).all()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_all_ignored_mean_is_nan_with_zero_gradient(xp_backend, label_smoothing):
    # PyTorch: 0/0 = nan for the loss, zero gradient (no row contributes).
    target = np.array([-100, -100, -100])
    with np.errstate(invalid="ignore", divide="ignore"):
        out, xs = check_against_torch(
            [(3, 4)], lambda x: F.cross_entropy(x, target, label_smoothing=label_smoothing),
            lambda x: TF.cross_entropy(x, tt(target), label_smoothing=label_smoothing),
            xp=xp_backend, backward=False)
        assert np.isnan(out[0].item())
        out[0].backward()
    np.testing.assert_array_equal(xs[0].grad.numpy(), np.zeros((3, 4)))


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [False, True])
def test_nll_loss(xp_backend, reduction, ignore):
    target = np.array([0, 2, 2, 1, 3])
    if ignore:
        target[1] = -100
    check_against_torch([(5, 4)], lambda x: F.nll_loss(F.log_softmax(x, -1), target, reduction=reduction),
                        lambda x: TF.nll_loss(torch.log_softmax(x, -1), tt(target), reduction=reduction),
                        xp=xp_backend)


def test_cross_entropy_errors_name_the_op_and_shapes():
    x = T(np.zeros((5, 4)), True)
    with pytest.raises(IndexError, match=r"cross_entropy: target 4 is out of bounds for 4 classes"):
        F.cross_entropy(x, np.array([0, 1, 4, 2, 3]))
    with pytest.raises(IndexError, match=r"cross_entropy: target -1 is out of bounds"):
        F.cross_entropy(x, np.array([0, 1, -1, 2, 3]))
    with pytest.raises(ValueError, match=r"cross_entropy.*\(5, 4\).*\(5,\).*\(4,\)"):
        F.cross_entropy(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"cross_entropy.*\(2, 3, 4\).*\(2, 4\).*\(2, 3\)"):
        F.cross_entropy(T(np.zeros((2, 3, 4))), np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="cross_entropy.*integer.*float64"):
        F.cross_entropy(x, np.zeros(5))
    with pytest.raises(ValueError, match="cross_entropy.*reduction"):
        F.cross_entropy(x, np.zeros(5, np.int64), reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [False, True], ids=["no_pos_weight", "pos_weight"])
def test_binary_cross_entropy_with_logits(xp_backend, reduction, pos_weight):
    pw = np.array([0.5, 2.0, 3.0])

    def mb_fn(x, y):
        p = T(pw, xp=xp_backend) if pos_weight else None
        return F.binary_cross_entropy_with_logits(x, y, reduction=reduction, pos_weight=p)

    def ref(x, y):
        return TF.binary_cross_entropy_with_logits(x, y, reduction=reduction,
                                                   pos_weight=tt(pw) if pos_weight else None)

    # logits in [-4, 4); targets are soft labels in [0, 1) and receive a gradient too
    check_against_torch(None, mb_fn, ref, inputs=random_inputs([(4, 3)], low=-4, high=4) +
                        random_inputs([(4, 3)], low=0, high=1, seed=1), xp=xp_backend)
    check_against_torch(None, mb_fn, ref, requires_grad=(True, False), xp=xp_backend,
                        inputs=[np.random.default_rng(2).normal(size=(4, 3)), np.array([[0.0, 1.0, 1.0]] * 4)])


def test_binary_cross_entropy_with_logits_at_extreme_logits(xp_backend):
    x = np.array([-1e4, 1e4, -800.0, 800.0, -1e4, 1e4, 0.0])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 0.7, 0.5])
    with strict_floats():
        for reduction in ("none", "mean"):
            out, xs = check_against_torch(
                None, lambda a, b, r=reduction: F.binary_cross_entropy_with_logits(a, b, reduction=r),
                lambda a, b, r=reduction: TF.binary_cross_entropy_with_logits(a, b, reduction=r),
                inputs=[x, y], xp=xp_backend)
            assert np.isfinite(out[0].numpy()).all()
            assert np.isfinite(xs[0].grad.numpy()).all() and np.isfinite(xs[1].grad.numpy()).all()


def test_binary_cross_entropy_with_logits_shape_mismatch():
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits.*\(3,\).*\(2, 3\)"):
        F.binary_cross_entropy_with_logits(T(np.zeros((2, 3)), True), T(np.zeros(3)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(3, 4), (), (2, 1, 3)], ids=str)
def test_mse_loss(xp_backend, reduction, shape):
    check_against_torch([shape, shape], lambda a, b: F.mse_loss(a, b, reduction=reduction),
                        lambda a, b: TF.mse_loss(a, b, reduction=reduction), xp=xp_backend)
    check_against_torch([shape, shape], lambda a, b: F.mse_loss(a, b, reduction=reduction),
                        lambda a, b: TF.mse_loss(a, b, reduction=reduction), xp=xp_backend,
                        requires_grad=(True, False), seed=1)


def test_mse_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"mse_loss.*\(2, 3\).*\(3,\)"):
        F.mse_loss(T(np.zeros((2, 3)), True), T(np.zeros(3)))


# ============================================================================ dropout

@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_statistics_and_gradient(xp_backend, p):
    x = T(np.full((200, 500), 1.5), True, xp_backend)
    y = F.dropout(x, p, training=True)
    assert B.get_array_module(y.data) is xp_backend
    yv = y.numpy()
    kept = yv != 0
    n = kept.size
    frac = kept.mean()
    assert abs(frac - (1 - p)) < 6 * np.sqrt(p * (1 - p) / n)          # 6 standard errors
    np.testing.assert_allclose(yv[kept], 1.5 / (1 - p), rtol=1e-12)
    w = np.random.default_rng(0).standard_normal(x.shape)
    (y * T(w, xp=xp_backend)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), w * kept / (1 - p), rtol=1e-12)


def test_dropout_identity_cases(xp_backend):
    x = T(np.random.default_rng(0).standard_normal((4, 5)), True, xp_backend)
    for y in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0), F.dropout(x, 0.0, training=True)):
        np.testing.assert_array_equal(y.numpy(), x.numpy())
    w = np.random.default_rng(1).standard_normal((4, 5))
    (F.dropout(x, 0.7, training=False) * T(w, xp=xp_backend)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), w)


def test_dropout_with_p_one_gives_zeros(xp_backend):
    x = T(np.random.default_rng(0).standard_normal((4, 5)), True, xp_backend)
    with strict_floats():
        y = F.dropout(x, 1.0)
        (y * 3.0).sum().backward()
    np.testing.assert_array_equal(y.numpy(), np.zeros((4, 5)))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((4, 5)))


def test_dropout_is_reproducible_under_manual_seed(xp_backend):
    x = T(np.ones((30, 40)), True, xp_backend)
    mb.manual_seed(123)
    a = F.dropout(x, 0.5).numpy()
    mb.manual_seed(123)
    b = F.dropout(x, 0.5).numpy()
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_dropout_rejects_a_bad_probability():
    with pytest.raises(ValueError, match=r"dropout.*\[0, 1\].*1.5"):
        F.dropout(T([1.0]), 1.5)


def test_dropout_gradcheck_with_a_fixed_mask():
    def f(x):
        mb.manual_seed(7)                 # the same mask on every call
        return F.dropout(x, 0.4) * x
    check_gradcheck(f, [(4, 6)])


# ============================================================================ embedding

IDS = np.array([[1, 2, 1], [9, 1, 0]])


@needs_torch
@pytest.mark.parametrize("ids", [IDS, np.array([3, 3, 3, 0]), np.array(4), np.array([[[7]]])],
                         ids=["2d_repeats", "1d_repeats", "scalar", "3d"])
@pytest.mark.parametrize("padding_idx", [None, 1, -1], ids=["no_pad", "pad1", "pad-1"])
def test_embedding(xp_backend, ids, padding_idx):
    check_against_torch([(10, 4)], lambda w: F.embedding(ids, w, padding_idx=padding_idx),
                        lambda w: TF.embedding(tt(ids), w, padding_idx=padding_idx), xp=xp_backend)


def test_embedding_accepts_tensor_ids_and_accumulates_repeats(xp_backend):
    w = T(np.random.default_rng(0).standard_normal((5, 3)), True, xp_backend)
    ids = T(np.array([2, 2, 2, 4]), xp=xp_backend)
    F.embedding(ids, w).sum().backward()
    want = np.zeros((5, 3))
    want[2] = 3.0
    want[4] = 1.0
    np.testing.assert_array_equal(w.grad.numpy(), want)


def test_embedding_padding_row_gets_no_gradient(xp_backend):
    w = T(np.random.default_rng(0).standard_normal((5, 3)), True, xp_backend)
    F.embedding(np.array([0, 1, 0, 3]), w, padding_idx=0).sum().backward()
    g = w.grad.numpy()
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_array_equal(g[1], 1.0)
    np.testing.assert_array_equal(g[3], 1.0)


@pytest.mark.parametrize("bad", [10, -1, 25])
def test_embedding_out_of_range_ids(xp_backend, bad):
    w = T(np.zeros((10, 4)), True, xp_backend)
    with pytest.raises(IndexError, match=rf"embedding: token id {bad} is out of range .*10 rows"):
        F.embedding(np.array([[0, bad], [3, 4]]), w)


def test_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="embedding.*integers.*float64"):
        F.embedding(np.array([0.0, 1.0]), T(np.zeros((3, 2)), True))


# ============================================================================ layer norm

@needs_torch
@pytest.mark.parametrize("normalized_shape", [(4,), (3, 4)], ids=str)
@pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_layer_norm(xp_backend, normalized_shape, affine, eps):
    shapes = [(2, 3, 4)]
    has_w, has_b = affine in ("weight", "both"), affine in ("bias", "both")
    if has_w:
        shapes.append(normalized_shape)
    if has_b:
        shapes.append(normalized_shape)

    def split_args(args):
        x, rest = args[0], list(args[1:])
        w = rest.pop(0) if has_w else None
        b = rest.pop(0) if has_b else None
        return x, w, b

    def mb_fn(*args):
        x, w, b = split_args(args)
        return F.layer_norm(x, normalized_shape, w, b, eps=eps)

    def ref(*args):
        x, w, b = split_args(args)
        return TF.layer_norm(x, normalized_shape, w, b, eps=eps)

    check_against_torch(shapes, mb_fn, ref, xp=xp_backend)
    check_against_torch(shapes, mb_fn, ref, xp=xp_backend, requires_grad=[True] + [False] * (len(shapes) - 1),
                        seed=1)


def test_layer_norm_of_a_constant_row(xp_backend):
    # variance 0: the output is 0 (not NaN) and the gradient is finite, as PyTorch
    x = np.array([[2.0, 2.0, 2.0], [1.0, -1.0, 0.5]])
    with strict_floats():
        check_against_torch(None, lambda t: F.layer_norm(t, 3), lambda t: TF.layer_norm(t, (3,)),
                            inputs=[x], xp=xp_backend, grad_atol=1e-6)


def test_layer_norm_shape_errors():
    x = T(np.zeros((2, 3, 4)), True)
    with pytest.raises(ValueError, match=r"layer_norm.*\(2, 3, 4\).*\(3,\)"):
        F.layer_norm(x, 3)
    with pytest.raises(ValueError, match=r"layer_norm: weight.*\(3,\).*\(4,\)"):
        F.layer_norm(x, 4, weight=T(np.ones(3)))


# ============================================================================ shapes

SHAPE_CASES = [
    # id, the same call on both sides (or a separate PyTorch form), input shape
    ("reshape", lambda x: x.reshape(6, 4), None, (2, 3, 4)),
    ("reshape_tuple_-1", lambda x: x.reshape((4, -1)), None, (2, 3, 4)),
    ("reshape_-1_only", lambda x: x.reshape(-1), None, (2, 3, 4)),
    ("F.reshape", lambda x: F.reshape(x, (3, -1, 2)), lambda x: x.reshape(3, -1, 2), (2, 3, 4)),
    ("view", lambda x: x.view(2, 12), None, (2, 3, 4)),
    ("view_-1", lambda x: x.view(-1, 4), None, (2, 3, 4)),
    ("reshape_to_scalar", lambda x: x.reshape(()), None, (1, 1)),
    ("transpose", lambda x: x.transpose(0, 2), None, (2, 3, 4)),
    ("transpose_neg", lambda x: x.transpose(-1, 1), None, (2, 3, 4)),
    ("F.transpose", lambda x: F.transpose(x, 0, 1), lambda x: x.transpose(0, 1), (2, 3, 4)),
    ("F.transpose_all", lambda x: F.transpose(x), lambda x: x.permute(2, 1, 0), (2, 3, 4)),
    ("swapaxes", lambda x: x.swapaxes(0, 1), lambda x: torch.swapaxes(x, 0, 1), (2, 3, 4)),
    ("F.swapaxes", lambda x: F.swapaxes(x, 1, 2), lambda x: torch.swapaxes(x, 1, 2), (2, 3, 4)),
    ("permute", lambda x: x.permute(2, 0, 1), None, (2, 3, 4)),
    ("permute_tuple_neg", lambda x: x.permute((-1, 0, -2)), lambda x: x.permute(-1, 0, -2), (2, 3, 4)),
    ("F.permute", lambda x: F.permute(x, (1, 2, 0)), lambda x: x.permute(1, 2, 0), (2, 3, 4)),
    ("moveaxis", lambda x: F.moveaxis(x, 0, -1), lambda x: torch.movedim(x, 0, -1), (2, 3, 4)),
    ("T_2d", lambda x: x.T, None, (3, 4)),
    ("T_3d", lambda x: x.T, lambda x: x.permute(2, 1, 0), (2, 3, 4)),
    ("mT", lambda x: x.mT, None, (2, 3, 4)),
    ("squeeze_all", lambda x: x.squeeze(), None, (1, 3, 1, 4)),
    ("squeeze_0", lambda x: x.squeeze(0), None, (1, 3, 1, 4)),
    ("squeeze_-2", lambda x: x.squeeze(-2), None, (1, 3, 1, 4)),
    ("squeeze_tuple", lambda x: F.squeeze(x, (0, 2)), lambda x: x.squeeze((0, 2)), (1, 3, 1, 4)),
    ("squeeze_non_one", lambda x: x.squeeze(1), None, (1, 3, 1, 4)),
    ("squeeze_dim", lambda x: F.squeeze(x, dim=2), lambda x: x.squeeze(2), (1, 3, 1, 4)),
    ("unsqueeze_0", lambda x: x.unsqueeze(0), None, (3, 4)),
    ("unsqueeze_-1", lambda x: x.unsqueeze(-1), None, (3, 4)),
    ("unsqueeze_1", lambda x: F.unsqueeze(x, dim=1), lambda x: x.unsqueeze(1), (3, 4)),
    ("expand", lambda x: x.expand(2, 3, 4), None, (3, 1)),
    ("expand_-1", lambda x: x.expand(2, -1, 4), None, (3, 1)),
    ("expand_tuple", lambda x: F.expand(x, (5, 3, 4)), lambda x: x.expand(5, 3, 4), (1, 3, 4)),
    ("expand_same", lambda x: x.expand(3, 4), None, (3, 4)),
    ("broadcast_to", lambda x: x.broadcast_to((2, 3, 4)), lambda x: torch.broadcast_to(x, (2, 3, 4)), (3, 1)),
    ("F.broadcast_to", lambda x: F.broadcast_to(x, (4, 2, 3)), lambda x: torch.broadcast_to(x, (4, 2, 3)), (3,)),
    ("broadcast_scalar", lambda x: F.broadcast_to(x, (2, 3)), lambda x: torch.broadcast_to(x, (2, 3)), ()),
    ("flatten", lambda x: x.flatten(), None, (2, 3, 4)),
    ("flatten_1", lambda x: F.flatten(x, 1), lambda x: x.flatten(1), (2, 3, 4, 2)),
    ("flatten_1_2", lambda x: F.flatten(x, 1, 2), lambda x: x.flatten(1, 2), (2, 3, 4, 2)),
    ("flatten_0_-2", lambda x: F.flatten(x, 0, -2), lambda x: x.flatten(0, -2), (2, 3, 4, 2)),
    ("contiguous", lambda x: x.T.contiguous().reshape(-1), None, (3, 4)),
]


@pytest.mark.parametrize("name,fn,ref,shape", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_ops(xp_backend, name, fn, ref, shape):
    check_against_torch([shape], fn, ref or fn, xp=xp_backend)


def test_reshape_errors_name_the_shapes():
    x = T(np.zeros((2, 3)), True)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*6 elements.*\(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, -1\)"):
        x.reshape(4, -1)
    with pytest.raises(ValueError, match=r"reshape.*\(-1, -1\)"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match=r"expand.*\(2, 3\).*\(4, 3\)"):
        x.expand(4, 3)
    with pytest.raises(ValueError, match=r"permute.*\(0, 0\)"):
        x.permute(0, 0)


# ============================================================================ indexing

def _mixed_mask():
    return np.random.default_rng(6).standard_normal((4, 5)) > 0


GETITEM_CASES = [
    # id, minibidir key, PyTorch callable (None: the same key)
    ("int", 1, None),
    ("neg_int", -1, None),
    ("slice", slice(1, 3), None),
    ("step_slice", (slice(None), slice(None, None, 2)), None),
    ("two_ints", (1, 2), None),
    ("three_ints", (1, 2, 0), None),
    ("int_slice_int", (2, slice(1, 4), 1), None),
    ("neg_step", slice(None, None, -1), lambda x: x.flip(0)),
    ("neg_step_2", (slice(1, None), slice(None, None, -2)), lambda x: x[1:].flip(1)[:, ::2]),
    ("neg_step_bounded", (slice(None), slice(3, 0, -1)), lambda x: x[:, 1:4].flip(1)),
    ("none", None, None),
    ("none_middle", (slice(None), None), None),
    ("newaxis_int", (np.newaxis, 1), None),
    ("ellipsis", (Ellipsis, 1), None),
    ("ellipsis_middle", (1, Ellipsis, 0), None),
    ("ellipsis_none", (None, Ellipsis, None), None),
    ("bool_mask", "mask", lambda x: x[torch.from_numpy(_mixed_mask())]),
    ("bool_mask_full", "full_mask", lambda x: x[x > 0]),
    ("int_array_repeated", np.array([0, 2, 0, 0]), None),
    ("int_array_neg_repeated", np.array([-1, 3, 0, -4]), None),
    ("int_array_2d", np.array([[0, 1], [1, 1]]), None),
    ("int_list", [0, 0, 2], None),
    ("tuple_of_arrays", (np.array([0, 1, 0]), np.array([2, 2, 2])), None),
    ("tuple_of_three_arrays", (np.array([0, 0, 3]), np.array([2, 2, 1]), np.array([1, 1, 0])), None),
    ("array_then_slice", (np.array([3, 3, 1]), slice(1, 4)), None),
    ("slice_then_array", (slice(None), np.array([4, 0, 4, 4])), None),
    ("tensor_index", "tensor", None),
]


def _torch_key(key):
    if isinstance(key, np.ndarray):
        return torch.from_numpy(key)
    if isinstance(key, tuple):
        return tuple(_torch_key(k) for k in key)
    return key


@needs_torch
@pytest.mark.parametrize("name,key,ref", GETITEM_CASES, ids=[c[0] for c in GETITEM_CASES])
def test_getitem(xp_backend, name, key, ref):
    if isinstance(key, str) and key == "mask":
        key = _mixed_mask()
    if isinstance(key, str) and key == "full_mask":
        fn = lambda x: x[x > 0]                              # noqa: E731
    elif isinstance(key, str) and key == "tensor":
        fn = lambda x: x[T(np.array([2, 0, 2]), xp=xp_backend)]     # noqa: E731
        ref = lambda x: x[torch.tensor([2, 0, 2])]           # noqa: E731
    else:
        fn = lambda x: x[key]                                # noqa: E731
        fn2 = lambda x: F.getitem(x, key)                    # noqa: E731
    if ref is None:
        tk = _torch_key(key)
        ref = lambda x: x[tk]                                # noqa: E731
    check_against_torch([(4, 5, 3)], fn, ref, xp=xp_backend)
    if not isinstance(key, str):
        check_against_torch([(4, 5, 3)], fn2, ref, xp=xp_backend, seed=1)


def test_getitem_gradients_accumulate_by_hand(xp_backend):
    x = T(np.arange(4.0), True, xp_backend)
    x[np.array([1, 1, 3, 1, -1])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 3.0, 0.0, 2.0])


def test_iterating_a_tensor_gives_differentiable_rows(xp_backend):
    x = T(np.arange(6.0).reshape(3, 2), True, xp_backend)
    rows = list(x)
    assert len(rows) == 3
    (rows[0] * 2 + rows[2]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])


# ============================================================================ reductions

AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


def _dim_all(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


REDUCTIONS = [
    ("sum", lambda x, a, k: F.sum(x, axis=a, keepdims=k), lambda x, a, k: torch.sum(x, dim=a, keepdim=k)),
    ("sum_method", lambda x, a, k: x.sum(dim=a, keepdim=k), lambda x, a, k: x.sum(dim=a, keepdim=k)),
    ("mean", lambda x, a, k: F.mean(x, a, k), lambda x, a, k: torch.mean(x, dim=a, keepdim=k)),
    ("mean_method", lambda x, a, k: x.mean(axis=a, keepdims=k), lambda x, a, k: x.mean(dim=a, keepdim=k)),
    ("max", lambda x, a, k: F.max(x, axis=a, keepdims=k),
     lambda x, a, k: torch.amax(x, dim=_dim_all(a, x.ndim), keepdim=k)),
    ("amax_method", lambda x, a, k: x.amax(dim=a, keepdim=k),
     lambda x, a, k: x.amax(dim=_dim_all(a, x.ndim), keepdim=k)),
    ("min", lambda x, a, k: F.min(x, axis=a, keepdims=k),
     lambda x, a, k: torch.amin(x, dim=_dim_all(a, x.ndim), keepdim=k)),
    ("amin_method", lambda x, a, k: x.min(dim=a, keepdim=k),
     lambda x, a, k: x.amin(dim=_dim_all(a, x.ndim), keepdim=k)),
    ("var", lambda x, a, k: F.var(x, axis=a, keepdims=k), lambda x, a, k: torch.var(x, dim=a, keepdim=k)),
    ("var_correction0", lambda x, a, k: x.var(dim=a, keepdim=k, correction=0),
     lambda x, a, k: torch.var(x, dim=a, keepdim=k, correction=0)),
    ("var_unbiased_false", lambda x, a, k: F.var(x, a, k, unbiased=False),
     lambda x, a, k: torch.var(x, dim=a, keepdim=k, unbiased=False)),
]
RED_IDS = [r[0] for r in REDUCTIONS]
MAX_MIN = ("max", "amax_method", "min", "amin_method")


@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name,fn,ref", REDUCTIONS, ids=RED_IDS)
def test_reductions(xp_backend, name, fn, ref, axis, keepdims):
    check_against_torch([(3, 4, 5)], lambda x: fn(x, axis, keepdims), lambda x: ref(x, axis, keepdims),
                        xp=xp_backend)


@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name,fn,ref", [r for r in REDUCTIONS if r[0] in MAX_MIN],
                         ids=[r[0] for r in REDUCTIONS if r[0] in MAX_MIN])
def test_max_min_with_ties_split_evenly(xp_backend, name, fn, ref, axis, keepdims):
    # values from {0, 1, 2}: many ties; torch.amax/amin share the gradient equally among them
    x = np.random.default_rng(8).integers(0, 3, size=(3, 4, 5)).astype(np.float64)
    check_against_torch(None, lambda t: fn(t, axis, keepdims), lambda t: ref(t, axis, keepdims),
                        inputs=[x], xp=xp_backend)


@pytest.mark.parametrize("name,fn,ref", REDUCTIONS, ids=RED_IDS)
def test_reductions_of_small_shapes(xp_backend, name, fn, ref):
    cases = [((5,), None), ((5,), 0), ((1, 4), 1), ((4, 1), (-2,))]
    if "var" not in name or "correction0" in name or "unbiased" in name:
        cases += [((1, 4), 0), ((4, 1), (-1,))]          # one element per variance: tested below
    for shape, axis in cases:
        check_against_torch([shape], lambda x, a=axis: fn(x, a, False), lambda x, a=axis: ref(x, a, False),
                            xp=xp_backend)


def test_unbiased_variance_of_one_element_is_nan(xp_backend):
    # N - correction = 0: PyTorch gives nan for the value and the gradient (and warns); no exception
    x = T(np.array([[1.0, 2.0, 3.0]]), True, xp_backend)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = F.var(x, axis=0)
        (v * 2.0).sum().backward()
    assert np.isnan(v.numpy()).all()
    assert np.isnan(x.grad.numpy()).all()


def test_reductions_of_a_scalar(xp_backend):
    for name, fn, ref in REDUCTIONS:
        if "var" in name:
            continue                       # one element: the unbiased variance divides by 0
        check_against_torch([()], lambda x, f=fn: f(x, None, False), lambda x, r=ref: r(x, None, False),
                            xp=xp_backend)


def test_max_of_an_empty_axis_is_an_error():
    with pytest.raises(ValueError, match=r"max.*empty.*\(2, 0\)"):
        F.max(T(np.zeros((2, 0)), True), axis=1)


# ============================================================================ dtypes

def test_astype_float32_and_back(xp_backend):
    check_against_torch([(3, 4)], lambda x: x.astype(np.float32), lambda x: x.float(), xp=xp_backend,
                        fwd_rtol=1e-6, fwd_atol=1e-7)
    check_against_torch([(3, 4)], lambda x: x.float() * 2, lambda x: x.float() * 2, xp=xp_backend,
                        fwd_rtol=1e-6, fwd_atol=1e-7)
    check_against_torch([(3, 4)], lambda x: F.astype(x, np.float32).double(), lambda x: x.float().double(),
                        xp=xp_backend, fwd_rtol=1e-6, fwd_atol=1e-7)
    check_against_torch([(3, 4)], lambda x: x.astype(np.float64), lambda x: x.double(), xp=xp_backend)


def test_to_dtype_is_a_differentiable_cast(xp_backend):
    check_against_torch([(2, 3)], lambda x: x.to(np.float32), lambda x: x.to(torch.float32), xp=xp_backend,
                        fwd_rtol=1e-6, fwd_atol=1e-7)


@needs_torch
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_argmax_argmin_are_not_differentiable(xp_backend, axis):
    a = np.random.default_rng(9).standard_normal((3, 4))
    x = T(a, True, xp_backend)
    for name in ("argmax", "argmin"):
        got = getattr(x, name)(dim=axis)
        want = getattr(tt(a), name)(dim=axis)
        assert got.dtype.kind == "i" and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert x.argmax(axis=1, keepdims=True).shape == (3, 1)


def test_astype_same_dtype_is_the_tensor_itself():
    x = T(np.ones(3), True)
    assert x.astype(np.float64) is x
    assert x.double() is x


def test_astype_to_integer_is_not_differentiable(xp_backend):
    x = T(np.array([1.7, -2.2, 3.0]), True, xp_backend)
    for y in (x.astype(np.int64), x.long(), F.astype(x, np.int32)):
        assert y.dtype.kind == "i"
        assert not y.requires_grad
        np.testing.assert_array_equal(y.numpy(), [1, -2, 3])


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match=r"requires_grad.*floating.*int64.*\(3,\)"):
        mb.tensor(np.arange(3), requires_grad=True)
    x = mb.tensor(np.arange(3))
    with pytest.raises(TypeError, match="requires_grad.*int64"):
        x.requires_grad = True
    with pytest.raises(TypeError, match="requires_grad.*bool"):
        mb.tensor(np.array([True, False]), requires_grad=True)


# ============================================================================ errors and host/device mixing

def test_matmul_misaligned_shapes_name_both():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\).*3 != 4"):
        T(np.zeros((2, 3)), True) @ T(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"matmul.*\(3,\).*\(2,\)"):
        F.matmul(T(np.zeros(3)), T(np.zeros(2)))
    with pytest.raises(ValueError, match=r"matmul.*\(\).*\(2,\)"):
        F.matmul(T(np.zeros(())), T(np.zeros(2)))
    with pytest.raises(ValueError, match=r"linear.*\(2, 3\).*\(5, 4\)"):
        F.linear(T(np.zeros((2, 3))), T(np.zeros((5, 4))))


def test_matmul_batch_mismatch_names_the_op():
    with pytest.raises(ValueError, match=r"MatMul.*\(2, 3, 4\).*\(3, 4, 5\)"):
        T(np.zeros((2, 3, 4)), True) @ T(np.zeros((3, 4, 5)))


def test_add_non_broadcastable_names_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"Add.*\(2, 3\).*\(4,\)"):
        T(np.zeros((2, 3)), True) + T(np.zeros(4))
    with pytest.raises(ValueError, match=r"Mul.*\(2, 3\).*\(2,\)"):
        F.mul(T(np.zeros((2, 3))), T(np.zeros(2)))


@pytest.mark.parametrize("op", [
    lambda d, h: d + h, lambda d, h: h - d, lambda d, h: d * h, lambda d, h: F.div(d, h),
    lambda d, h: F.matmul(d, h.T), lambda d, h: F.maximum(d, h), lambda d, h: F.concat([d, h]),
    lambda d, h: F.stack([d, h]), lambda d, h: F.where(d > 0, d, h), lambda d, h: F.mse_loss(d, h),
    lambda d, h: h + d, lambda d, h: F.matmul(h, d.T),
], ids=["add", "rsub", "mul", "div", "matmul", "maximum", "concat", "stack", "where", "mse_loss",
        "host_first_add", "host_first_matmul"])
def test_standin_refuses_mixing_host_and_device_tensors(op):
    with B.backend("standin"):
        d = T(np.ones((2, 3)), True, standin)
    h = mb.Tensor(np.ones((2, 3)))                 # a host tensor
    assert d.device == "cuda" and h.device == "cpu"
    with pytest.raises(TypeError, match=r"host.*device|device.*host"):
        op(d, h)


@pytest.mark.parametrize("op", [
    lambda d, h: F.concat([h, d]), lambda d, h: F.stack([h, d]), lambda d, h: F.where(h > 0, h, d),
], ids=["concat", "stack", "where"])
def test_standin_mixing_with_the_host_tensor_first_says_host_and_device(op):
    with B.backend("standin"):
        d = T(np.ones((2, 3)), True, standin)
    h = mb.Tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"host.*device|device.*host"):
        op(d, h)


def test_standin_mixing_error_names_the_op():
    with B.backend("standin"):
        d = T(np.ones((2, 3)), True, standin)
    with pytest.raises(TypeError, match=r"^Add: cannot mix host \(NumPy\) and device arrays.*\(2, 3\)"):
        d + mb.Tensor(np.ones((2, 3)))


# ============================================================================ gradient checks (hypothesis)

UNARY_GC = [
    ("exp", F.exp, {}), ("log", F.log, {"positive": True}), ("sqrt", F.sqrt, {"positive": True}),
    ("abs", F.abs, {"nonzero": True}), ("tanh", F.tanh, {}), ("sigmoid", F.sigmoid, {}),
    ("relu", F.relu, {"nonzero": True}), ("gelu", F.gelu, {}),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), {}), ("neg", F.neg, {}),
    ("square", lambda x: x ** 2, {}), ("cube", lambda x: x ** 3, {}),
    ("pow_half", lambda x: x ** 0.5, {"positive": True}), ("recip", lambda x: 1 / x, {"nonzero": True}),
    ("clip", lambda x: F.clip(x, -1.0, 0.8), {}),
    ("softmax", lambda x: F.softmax(x, -1), {}), ("log_softmax", lambda x: F.log_softmax(x, -1), {}),
    ("logsumexp", lambda x: F.logsumexp(x, -1, keepdims=True), {}),
]
BINARY_GC = [
    ("add", F.add, {}), ("sub", F.sub, {}), ("mul", F.mul, {}), ("div", F.div, {"nonzero": (False, True)}),
    ("pow", F.pow, {"positive": (True, False)}), ("maximum", F.maximum, {}), ("minimum", F.minimum, {}),
    ("where", lambda a, b: F.where(a > 0, a, b), {"nonzero": (True, False)}),
    ("mse_none", lambda a, b: F.mse_loss(*_broadcast_pair(a, b), reduction="none"), {}),
]


def _broadcast_pair(a, b):
    shape = np.broadcast_shapes(a.shape, b.shape)
    return a.expand(shape), b.expand(shape)


shapes_0_to_3d = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
shapes_1_to_3d = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@pytest.mark.parametrize("name,fn,opts", UNARY_GC, ids=[u[0] for u in UNARY_GC])
@_FIXTURE_OK
@given(shape=shapes_0_to_3d, seed=st.integers(0, 2 ** 16))
def test_gradcheck_unary(xp_backend, name, fn, opts, shape, seed):
    if name in ("softmax", "log_softmax", "logsumexp") and not shape:
        shape = (1,)
    check_gradcheck(fn, [shape], xp=xp_backend, seed=seed, **opts)


@pytest.mark.parametrize("name,fn,opts", BINARY_GC, ids=[b[0] for b in BINARY_GC])
@_FIXTURE_OK
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       seed=st.integers(0, 2 ** 16))
def test_gradcheck_binary_broadcasting(xp_backend, name, fn, opts, shapes, seed):
    inputs = random_inputs(list(shapes.input_shapes), seed=seed, **opts)
    if name in ("maximum", "minimum"):         # finite differences must not straddle the kink a == b
        assume(np.abs(np.subtract(*inputs)).min() > 1e-5)
    check_gradcheck(fn, None, inputs=inputs, xp=xp_backend, seed=seed)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var", "var0"])
@_FIXTURE_OK
@given(data=st.data(), shape=shapes_1_to_3d, keepdims=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_gradcheck_reductions(xp_backend, name, data, shape, keepdims, seed):
    nd = len(shape)
    axis = data.draw(st.one_of(
        st.none(), st.integers(-nd, nd - 1),
        st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple)), label="axis")
    if name.startswith("var"):
        n = int(np.prod([shape[a] for a in (range(nd) if axis is None else np.atleast_1d(axis))]))
        if name == "var" and n < 2:
            shape = tuple(s + 1 for s in shape)         # the unbiased variance needs two elements
    fn = {"sum": lambda x: F.sum(x, axis, keepdims), "mean": lambda x: F.mean(x, axis, keepdims),
          "max": lambda x: F.max(x, axis, keepdims), "min": lambda x: F.min(x, axis, keepdims),
          "var": lambda x: F.var(x, axis, keepdims), "var0": lambda x: F.var(x, axis, keepdims, correction=0)}[name]
    (x,) = inputs = random_inputs([shape], seed=seed)
    if name in ("max", "min"):                  # finite differences must not straddle a tie
        assume(x.size < 2 or np.diff(np.sort(x.reshape(-1))).min() > 1e-5)
    check_gradcheck(fn, None, inputs=inputs, xp=xp_backend, seed=seed)


@_FIXTURE_OK
@given(shapes=hnp.mutually_broadcastable_shapes(signature="(m?,n),(n,p?)->(m?,p?)", max_dims=4, max_side=3),
       seed=st.integers(0, 2 ** 16))
def test_gradcheck_matmul(xp_backend, shapes, seed):
    check_gradcheck(F.matmul, list(shapes.input_shapes), xp=xp_backend, seed=seed)


# ============================================================================ gradient checks (fused ops)

def test_gradcheck_linear(xp_backend):
    check_gradcheck(F.linear, [(2, 3, 4), (5, 4), (5,)], xp=xp_backend)
    check_gradcheck(F.linear, [(3, 4), (2, 4)], xp=xp_backend)


def test_gradcheck_layer_norm(xp_backend):
    check_gradcheck(lambda x, w, b: F.layer_norm(x, (3, 4), w, b), [(2, 3, 4), (3, 4), (3, 4)], xp=xp_backend)
    check_gradcheck(lambda x: F.layer_norm(x, 5), [(3, 5)], xp=xp_backend)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_losses(xp_backend, reduction):
    target = np.array([[0, 2], [-100, 1], [3, 3]])
    check_gradcheck(lambda x: F.cross_entropy(x, target, reduction=reduction, label_smoothing=0.1),
                    [(3, 4, 2)], xp=xp_backend)
    check_gradcheck(lambda x, y: F.binary_cross_entropy_with_logits(
        x, y, reduction=reduction, pos_weight=T([2.0, 0.5, 1.0], xp=xp_backend)),
        None, inputs=[np.random.default_rng(0).normal(size=(2, 3)), np.random.default_rng(1).random((2, 3))],
        xp=xp_backend)
    check_gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [(2, 3), (2, 3)], xp=xp_backend)


def test_gradcheck_embedding_getitem_and_joins(xp_backend):
    # (the padding row's zero gradient is a convention, not a derivative: keep it out of IDS here)
    check_gradcheck(lambda w: F.embedding(IDS, w), [(10, 3)], xp=xp_backend)
    check_gradcheck(lambda w: F.embedding(IDS, w, padding_idx=4), [(10, 3)], xp=xp_backend)
    check_gradcheck(lambda x: x[np.array([0, 2, 0]), 1:][::-1], [(3, 4)], xp=xp_backend)
    check_gradcheck(lambda a, b: F.concat([a, b, a], axis=1), [(2, 3), (2, 1)], xp=xp_backend)
    check_gradcheck(lambda a, b: F.stack([a, b], axis=-1), [(2, 3), (2, 3)], xp=xp_backend)
    check_gradcheck(lambda x: F.split(x, [1, 3, 1], axis=1)[1] * 2, [(2, 5)], xp=xp_backend)
    check_gradcheck(lambda x: tuple(F.chunk(x, 2)), [(5, 2)], xp=xp_backend)
    check_gradcheck(lambda x: F.masked_fill(x, np.array([True, False, True]), -3.0), [(2, 3)], xp=xp_backend)


def test_gradcheck_large_input_uses_random_directions(xp_backend):
    # 20 * 20 = 400 elements > max_elementwise: checked along random directions
    check_gradcheck(lambda a, b: F.tanh(a @ b).sum(axis=0), [(20, 20), (20, 3)], xp=xp_backend)


def test_gradcheck_catches_a_wrong_gradient():
    class BadSquare(mb.Function):
        def forward(self, x):
            self.saved = (x,)
            return x * x

        def backward(self, g):
            return g * self.saved[0]          # should be 2 x g

    with pytest.raises(mb.GradcheckError, match="gradient of input 0"):
        check_gradcheck(lambda x: BadSquare.apply(x), [(3,)])
