"""The backend: array-module selection, the CPU stand-in for CuPy, device moves, the
library calls that differ between NumPy and CuPy."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import standin
from minibidir import functional as F


# ----------------------------------------------------------------------------- the stand-in contract

def test_standin_refuses_every_implicit_host_device_mix():
    d = standin.asarray(np.arange(6.0).reshape(2, 3))
    h = np.ones(3)
    cases = {
        "device + host": lambda: d + h,
        "host + device": lambda: h + d,
        "np.asarray(device)": lambda: np.asarray(d),
        "np.exp(device)": lambda: np.exp(d),
        "np.sum(device)": lambda: np.sum(d),
        "xp.exp(host)": lambda: standin.exp(h),
        "host index": lambda: d[np.array([0])],
        "store host": lambda: d.__setitem__(0, h),
    }
    for name, case in cases.items():
        with pytest.raises(TypeError):
            case()
            pytest.fail(f"{name} was allowed")


def test_standin_computes_like_numpy():
    a = np.random.default_rng(0).standard_normal((3, 4))
    d = standin.asarray(a)
    np.testing.assert_array_equal((standin.exp(d) @ d.T).get(), np.exp(a) @ a.T)
    np.testing.assert_array_equal(d.sum(axis=0).get(), a.sum(axis=0))
    assert isinstance(d.max(), standin.ndarray)          # 0-d results stay on the device, as in CuPy
    assert float(d.max()) == a.max()
    assert d.dtype == standin.float64 and isinstance(d, standin.ndarray)


def test_get_array_module_and_device_of():
    assert B.get_array_module(np.ones(2)) is np
    assert B.get_array_module(standin.ones(2)) is standin
    assert B.device_of(np.ones(2)) == "cpu" and B.device_of(standin.ones(2)) == "cuda"


def test_an_op_mixing_host_and_device_tensors_names_the_op():
    with B.backend("standin"):
        dev = mb.tensor(np.ones((2, 2)), device="cuda")
    host = mb.tensor(np.ones((2, 2)))
    assert dev.device == "cuda" and host.device == "cpu"
    with pytest.raises(TypeError, match=r"Add: cannot mix host \(NumPy\) and device arrays"):
        dev + host


def test_tensor_to_moves_between_host_and_standin_device():
    x = mb.tensor(np.arange(4.0))
    with B.backend("standin"):
        d = x.to("cuda")
        assert d.device == "cuda" and isinstance(d.data, standin.ndarray)
        back = (d * 2).to("cpu")
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.numpy(), np.arange(4.0) * 2)


def test_new_tensors_follow_the_selected_backend():
    with B.backend("standin"):
        assert mb.tensor([1.0, 2.0]).device == "cuda"
        assert mb.zeros(3).device == "cuda"
        assert mb.randn(3).device == "cuda"
    assert mb.tensor([1.0]).device == "cpu"


def test_standin_and_numpy_draw_the_same_random_numbers():
    mb.manual_seed(7)
    a = mb.randn(5).numpy()
    mb.manual_seed(7)
    with B.backend("standin"):
        b = mb.randn(5).numpy()
    np.testing.assert_array_equal(a, b)


def test_unknown_backend_and_device():
    with pytest.raises(ValueError, match="unknown backend"):
        mb.use_backend("tpu")
    with pytest.raises(ValueError, match="unknown device"):
        mb.tensor([1.0]).to("npu")


def test_cuda_without_cupy_gives_a_clear_error():
    if B.cupy_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy is not installed or no GPU"):
        mb.use_backend("cupy")


def test_backend_environment_variable():
    code = "import minibidir as mb; print(mb.get_backend(), mb.tensor([1.0]).device)"
    env = dict(os.environ, MINIBIDIR_BACKEND="standin")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["standin", "cuda"]


# ----------------------------------------------------------------------------- differing calls

@pytest.mark.parametrize("name", ["numpy", "standin"])
def test_scatter_add_accumulates_repeated_indices(name):
    xp = B.array_module(name)
    target = xp.zeros((4, 2))
    idx = xp.asarray(np.array([0, 2, 0, -1, 3]))
    vals = xp.asarray(np.arange(10.0).reshape(5, 2))
    B.scatter_add(target, idx, vals)
    expected = np.zeros((4, 2))
    np.add.at(expected, np.array([0, 2, 0, -1, 3]), np.arange(10.0).reshape(5, 2))
    np.testing.assert_array_equal(B.to_numpy(target), expected)


def test_scatter_add_general_index():
    target = np.zeros((3, 3))
    B.scatter_add(target, (np.array([0, 0, 1]), np.array([1, 1, 2])), np.array([1.0, 2.0, 3.0]))
    assert target[0, 1] == 3.0 and target[1, 2] == 3.0 and target.sum() == 6.0


@pytest.mark.parametrize("name", ["numpy", "standin"])
def test_erf_matches_math_erf(name):
    xs = np.linspace(-4, 4, 33)
    got = B.to_numpy(B.erf(B.array_module(name).asarray(xs)))
    np.testing.assert_allclose(got, [math.erf(v) for v in xs], rtol=1e-15, atol=1e-16)


def test_random_helpers_shapes_dtypes_and_ranges():
    u = B.random_uniform(np, (1000,), np.float32, 2.0, 3.0)
    assert u.dtype == np.float32 and 2.0 <= u.min() and u.max() < 3.0
    n = B.random_normal(np, (20000,), np.float64)
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05
    k = B.random_integers(np, 0, 5, (1000,))
    assert k.dtype == np.int64 and set(np.unique(k)) == {0, 1, 2, 3, 4}


def test_tune_malloc_runs():
    assert isinstance(B.tune_malloc(), bool)


# ----------------------------------------------------------------------------- the real GPU

@pytest.mark.gpu
def test_cupy_backend_runs_an_op_and_its_gradient():
    if not B.cupy_available():
        pytest.skip("CuPy or a GPU is not available")
    import cupy
    x = mb.tensor(np.linspace(-1, 1, 8), requires_grad=True, device="cuda")
    assert isinstance(x.data, cupy.ndarray)
    y = F.gelu(x).sum()
    y.backward()
    assert isinstance(x.grad.data, cupy.ndarray)
    assert mb.gradcheck(lambda a: F.gelu(a) * a, x)


def test_creation_functions_honour_an_explicit_cpu_device():
    with B.backend("standin"):
        for t in (mb.zeros(2, device="cpu"), mb.ones(2, device="cpu"), mb.randn(2, device="cpu"),
                  mb.rand(2, device="cpu"), mb.arange(3, device="cpu"), mb.full((2,), 1.0, device="cpu")):
            assert t.device == "cpu"
        assert mb.zeros(2).device == "cuda"
