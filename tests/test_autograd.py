"""The engine itself: graph order, accumulation, freeing, modes, errors, the Tensor API."""
import gc
import math
import weakref

import numpy as np
import pytest

import minibidir as mb
from minibidir import functional as F
from minibidir.autograd import Function, sum_to_shape


def t64(a, requires_grad=True):
    return mb.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# ----------------------------------------------------------------------------- graph order

def test_diamond_accumulates_both_paths():
    # y = x*x + exp(x): x feeds two branches that meet again; dy/dx = 2x + e^x.
    x = t64([0.3, -1.2, 2.0])
    y = (x * x + x.exp()).sum()
    y.backward()
    xv = x.data
    np.testing.assert_allclose(x.grad.data, 2 * xv + np.exp(xv), rtol=1e-14)


def test_shared_subexpression_used_three_times():
    x = t64([1.5])
    h = x.tanh()                       # one node, three consumers
    y = (h * h * h).sum()              # d/dx tanh(x)^3 = 3 tanh^2 (1 - tanh^2)
    y.backward()
    th = math.tanh(1.5)
    assert x.grad.item() == pytest.approx(3 * th ** 2 * (1 - th ** 2), rel=1e-14)


def test_deep_chain_of_20000_ops_backpropagates_without_recursion():
    x = t64([1.0])
    y = x
    n = 20000
    for _ in range(n):
        y = y * 1.0001
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0001 ** n, rel=1e-9)


def test_gradients_accumulate_across_backward_calls():
    x = t64([2.0, 3.0])
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 3)


def test_gradient_shared_between_leaves_is_not_aliased():
    # Add passes the same array to both inputs; editing one leaf's .grad must not change the other's.
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    (a + b).sum().backward()
    a.grad.data = a.grad.data * 10
    np.testing.assert_allclose(b.grad.data, [1.0, 1.0])


def test_multi_output_op_with_an_unused_output():
    x = t64(np.arange(6.0))
    p, q, r = F.split(x, 2)
    (q * 3).sum().backward()            # p and r never reach the loss
    np.testing.assert_allclose(x.grad.data, [0, 0, 3, 3, 0, 0])


def test_retain_grad_keeps_an_intermediate_gradient():
    x = t64([0.5, 1.0])
    h = x * 2
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.data, 2 * h.data)
    np.testing.assert_allclose(x.grad.data, 8 * x.data)


def test_sum_to_shape_is_the_inverse_of_broadcasting():
    g = np.ones((2, 3, 4))
    np.testing.assert_array_equal(sum_to_shape(g, (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(sum_to_shape(g, (4,)), np.full((4,), 6.0))
    np.testing.assert_array_equal(sum_to_shape(g, ()), np.array(24.0))
    assert sum_to_shape(g, (2, 3, 4)) is g


def test_broadcast_gradient_is_reduced_by_the_engine():
    x = t64(np.ones((3, 4)))
    b = t64(np.arange(4.0))
    ((x + b) ** 2).sum().backward()
    np.testing.assert_allclose(b.grad.data, (2 * (1 + np.arange(4.0))) * 3)


# ----------------------------------------------------------------------------- freeing

def test_intermediates_are_freed_after_backward():
    x = t64(np.random.default_rng(0).standard_normal(1000))
    h1 = x.exp()
    h2 = h1 * 2.0
    loss = h2.tanh().sum()
    refs = [weakref.ref(h1), weakref.ref(h2), weakref.ref(h1.data), weakref.ref(h2.data)]
    del h1, h2
    gc.collect()
    assert all(r() is not None for r in refs), "the graph keeps intermediates alive before backward"
    loss.backward()
    gc.collect()
    assert all(r() is None for r in refs), "intermediates survived backward"


def test_retain_graph_keeps_them_and_allows_a_second_backward():
    x = t64([1.0, 2.0])
    loss = (x.exp() * x).sum()
    loss.backward(retain_graph=True)
    g1 = x.grad.data.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.data, 2 * g1)


def test_second_backward_without_retain_graph_raises():
    x = t64([1.0, 2.0])
    loss = (x.exp() * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()


# ----------------------------------------------------------------------------- modes

def test_no_grad_records_nothing_and_enable_grad_restores():
    x = t64([1.0])
    with mb.no_grad():
        y = x * 2
        assert not y.requires_grad and y.grad_fn is None
        with mb.enable_grad():
            z = x * 2
        assert z.requires_grad
    assert (x * 2).requires_grad


def test_no_grad_as_decorator():
    @mb.no_grad()
    def f(a):
        return a * 2
    assert not f(t64([1.0])).requires_grad
    assert mb.is_grad_enabled()


def test_detect_anomaly_names_the_forward_op():
    x = t64([-1.0, 2.0])
    with mb.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"Log\.forward.*1 NaN"):
            with np.errstate(invalid="ignore"):
                x.log()


def test_detect_anomaly_names_the_backward_op():
    x = t64([0.0, 1.0])
    with mb.detect_anomaly():
        y = x.sqrt().sum()        # finite forward; d sqrt/dx = inf at 0
        with pytest.raises(FloatingPointError, match=r"Sqrt\.backward.*inf"):
            with np.errstate(divide="ignore"):
                y.backward()


def test_anomaly_mode_off_lets_nan_through():
    x = t64([-1.0])
    with np.errstate(invalid="ignore"):
        assert np.isnan(x.log().item())


# ----------------------------------------------------------------------------- errors

def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        mb.tensor(np.array([1, 2]), requires_grad=True)


def test_backward_on_non_scalar_needs_a_gradient():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"scalar outputs \(got shape \(2,\)\)"):
        (x * 2).backward()
    y = x * 2
    y.backward(mb.tensor(np.array([1.0, 10.0])))
    np.testing.assert_allclose(x.grad.data, [2.0, 20.0])


def test_backward_gradient_of_wrong_shape():
    x = t64([1.0, 2.0])
    with pytest.raises(ValueError, match=r"grad has shape \(3,\).*\(2,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_a_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mb.tensor([1.0]).backward()


def test_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"Mul.*\(2, 3\).*\(4,\)"):
        t64(np.ones((2, 3))) * t64(np.ones(4))


def test_item_of_a_multi_element_tensor():
    with pytest.raises(ValueError, match="one-element"):
        t64([1.0, 2.0]).item()


# ----------------------------------------------------------------------------- custom Function

class Cube(Function):
    """y = x^3, dy/dx = 3x^2."""
    def forward(self, x):
        self.saved = (x,)
        return x ** 3

    def backward(self, g):
        (x,) = self.saved
        return g * 3 * x * x


class WrongCube(Cube):
    def backward(self, g):
        (x,) = self.saved
        return g * 2 * x * x        # wrong factor


def test_user_function_passes_gradcheck():
    assert mb.gradcheck(lambda a: Cube.apply(a), t64(np.linspace(-1, 1, 7)))


def test_gradcheck_catches_a_wrong_backward_elementwise():
    with pytest.raises(mb.GradcheckError, match=r"input 0 .*analytic.*numeric"):
        mb.gradcheck(lambda a: WrongCube.apply(a), t64(np.linspace(0.5, 1, 5)))


def test_gradcheck_catches_a_wrong_backward_by_projection():
    x = t64(np.random.default_rng(1).standard_normal((30, 20)))   # 600 > max_elementwise
    with pytest.raises(mb.GradcheckError, match="random direction"):
        mb.gradcheck(lambda a: WrongCube.apply(a), x)
    assert mb.gradcheck(lambda a: Cube.apply(a), x)


def test_gradcheck_demands_float64():
    with pytest.raises(TypeError, match="float64"):
        mb.gradcheck(lambda a: a * 2, mb.tensor(np.ones(3, np.float32), requires_grad=True))


def test_gradcheck_multi_output_function():
    x = t64(np.random.default_rng(2).standard_normal(6))
    assert mb.gradcheck(lambda a: F.split(a.tanh(), [2, 4]), x)


# ----------------------------------------------------------------------------- Tensor API

def test_dtypes_follow_pytorch_rules():
    assert mb.tensor([1.0, 2.0]).dtype == np.float32          # Python floats -> default dtype
    assert mb.tensor(np.ones(2)).dtype == np.float64          # arrays keep theirs
    assert mb.tensor([1, 2]).dtype.kind == "i"
    x = mb.tensor([1.0], requires_grad=True)
    assert (x * 2.5).dtype == np.float32                      # scalars do not promote
    mb.set_default_dtype(np.float64)
    try:
        assert mb.tensor([1.0]).dtype == np.float64
    finally:
        mb.set_default_dtype(np.float32)


def test_detach_item_numpy_and_repr():
    x = t64([[1.0, 2.0]])
    y = (x * 3).detach()
    assert y.grad_fn is None and not y.requires_grad
    assert mb.tensor([4.5]).item() == 4.5
    assert isinstance(x.numpy(), np.ndarray)
    assert "requires_grad=True" in repr(x) and "grad_fn" in repr(x * 2)


def test_comparisons_are_not_differentiable():
    x = t64([1.0, 2.0, 3.0])
    m = x > 1.5
    assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.data, [False, True, True])


def test_manual_seed_reproduces_random_tensors():
    mb.manual_seed(123)
    a = mb.randn(4, 5).numpy()
    mb.manual_seed(123)
    b = mb.randn(4, 5).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32


def test_creation_functions():
    assert mb.zeros(2, 3).shape == (2, 3) and mb.ones((4,)).numpy().sum() == 4
    assert mb.full((2,), 7.0).numpy().tolist() == [7.0, 7.0]
    assert mb.arange(5).numpy().tolist() == [0, 1, 2, 3, 4]
    assert mb.rand(100).numpy().min() >= 0


def test_leaf_gradient_from_a_broadcast_is_a_writable_array():
    x = t64(np.ones((3, 4)))
    x.sum().backward()                  # Sum's backward broadcasts a scalar
    x.grad.data *= 0.5                  # must not raise "assignment destination is read-only"
    np.testing.assert_array_equal(x.grad.data, np.full((3, 4), 0.5))


def test_residual_connection_through_an_intermediate():
    # c + f(c) with c an intermediate: the gradient through f must reach c before c passes
    # its gradient on (a topological-order bug once dropped it).
    x = mb.tensor(0.5, requires_grad=True, dtype=np.float64)
    n = x * 2
    (n + F.tanh(n)).backward()
    assert x.grad.item() == pytest.approx(2 * (1 + (1 - math.tanh(1.0) ** 2)), rel=1e-14)
    x.grad = None
    n = x * 2
    (F.tanh(n) + n).backward()
    assert x.grad.item() == pytest.approx(2 * (1 + (1 - math.tanh(1.0) ** 2)), rel=1e-14)


def test_stacked_residual_blocks_match_gradcheck():
    rng = np.random.default_rng(4)
    w1, w2 = t64(rng.standard_normal((4, 4)) * 0.5), t64(rng.standard_normal((4, 4)) * 0.5)
    x = t64(rng.standard_normal((3, 4)))

    def net(x, w1, w2):
        h = x + F.tanh(x @ w1)          # residual block 1
        h = h + F.tanh(h @ w2)          # residual block 2
        return F.layer_norm(h + h * h, 4)
    assert mb.gradcheck(net, x, w1, w2)


def test_to_device_is_differentiable():
    from minibidir import backend as B
    x = t64([1.0, 2.0])
    with B.backend("standin"):
        y = x.to("cuda")
        assert y.device == "cuda" and y.grad_fn is not None
        (y * y).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_tensor_copies_and_from_numpy_shares():
    a = np.ones(3)
    t, s = mb.tensor(a), mb.from_numpy(a)
    a[0] = 7.0
    assert t.numpy()[0] == 1.0 and s.numpy()[0] == 7.0


def test_gradient_of_a_0d_leaf_is_an_array():
    w = mb.tensor(np.array(1.5), requires_grad=True)
    (w * w).backward()
    assert isinstance(w.grad.data, np.ndarray) and w.grad.data.shape == () and w.grad.item() == 3.0
