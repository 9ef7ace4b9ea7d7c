"""Module system and the basic layers, matched against PyTorch with the same weights."""
import copy

import numpy as np
import pytest

import minibidir as mb
from minibidir import nn
from minibidir import backend as B

torch = pytest.importorskip("torch")


def _compare_module(mb_mod, t_mod, inputs, int_inputs=False, atol=1e-12):
    """Load torch's weights into the minibidir module, then compare outputs and the gradients of
    every parameter (and of float inputs) for a random output weighting."""
    t_mod = t_mod.double().eval()
    mb_mod.double().eval()
    mb_mod.load_state_dict(t_mod.state_dict())
    rng = np.random.default_rng(0)
    if int_inputs:
        mb_in, t_in = [mb.tensor(a) for a in inputs], [torch.tensor(a) for a in inputs]
    else:
        mb_in = [mb.tensor(a, requires_grad=True) for a in inputs]
        t_in = [torch.tensor(a, requires_grad=True) for a in inputs]
    y = mb_mod(*mb_in)
    ty = t_mod(*t_in)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=atol)
    w = rng.standard_normal(y.shape)
    (y * mb.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    t_params = dict(t_mod.named_parameters())
    for name, p in mb_mod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), t_params[name].grad.numpy(), rtol=1e-10, atol=atol,
                                   err_msg=f"gradient of {name}")
    if not int_inputs:
        for a, b in zip(mb_in, t_in):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=atol)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
def test_linear_matches_torch(shape, bias):
    x = np.random.default_rng(1).standard_normal(shape)
    _compare_module(nn.Linear(4, 3, bias=bias), torch.nn.Linear(4, 3, bias=bias), [x])


def test_embedding_matches_torch_with_padding_and_repeats():
    ids = np.array([[1, 2, 0, 2], [4, 0, 0, 3]])
    _compare_module(nn.Embedding(6, 5, padding_idx=0), torch.nn.Embedding(6, 5, padding_idx=0), [ids], int_inputs=True)


@pytest.mark.parametrize("shape,affine,bias", [(8, True, True), ((3, 8), True, True), (8, False, False), (8, True, False)])
def test_layer_norm_matches_torch(shape, affine, bias):
    x = np.random.default_rng(2).standard_normal((4, 3, 8)) * 3 + 1
    _compare_module(nn.LayerNorm(shape, elementwise_affine=affine, bias=bias),
                    torch.nn.LayerNorm(shape, elementwise_affine=affine, bias=bias), [x])


def test_sequential_mlp_matches_torch():
    x = np.random.default_rng(3).standard_normal((6, 4))
    m = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 2))
    t = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                            torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    _compare_module(m, t, [x])


def test_state_dict_round_trip_both_ways():
    t = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3), nn.LayerNorm(3))
    assert list(m.state_dict()) == list(t.state_dict())
    for k, v in m.state_dict().items():
        assert tuple(v.shape) == tuple(t.state_dict()[k].shape), k
    # minibidir -> torch -> minibidir: a plain dict of arrays in both directions.
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    m2 = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3), nn.LayerNorm(3))
    m2.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    for k in m.state_dict():
        np.testing.assert_array_equal(m.state_dict()[k], m2.state_dict()[k])


def test_load_state_dict_errors_list_the_keys_and_shapes():
    m = nn.Linear(4, 3)
    with pytest.raises(KeyError, match=r"missing keys \['bias'\].*unexpected keys \['b'\]"):
        m.load_state_dict({"weight": np.zeros((3, 4)), "b": np.zeros(3)})
    with pytest.raises(ValueError, match=r"weight: shape \(4, 3\) in the checkpoint, \(3, 4\) in the model"):
        m.load_state_dict({"weight": np.zeros((4, 3)), "bias": np.zeros(3)})
    before = m.weight.numpy().copy()
    with pytest.raises(ValueError):
        m.load_state_dict({"weight": np.ones((3, 4)), "bias": np.zeros(5)})
    np.testing.assert_array_equal(m.weight.numpy(), before)       # nothing half-loaded
    missing, unexpected = m.load_state_dict({"weight": np.ones((3, 4))}, strict=False)
    assert missing == ["bias"] and unexpected == []


def test_module_registration_traversal_and_modes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
            self.head = nn.Linear(3, 1, bias=False)
            self.register_buffer("table", np.arange(3.0))
            self.register_buffer("cache", np.zeros(2), persistent=False)
            self.scale = 2.0
    n = Net()
    assert [k for k, _ in n.named_parameters()] == ["enc.0.weight", "enc.0.bias", "head.weight"]
    assert list(n.state_dict()) == ["table", "enc.0.weight", "enc.0.bias", "head.weight"]
    assert [k for k, _ in n.named_buffers()] == ["table", "cache"]
    assert len(list(n.children())) == 2 and len(list(n.modules())) == 5
    n.eval()
    assert not any(m.training for m in n.modules())
    n.train()
    assert all(m.training for m in n.modules())
    assert "(head): Linear(in_features=3, out_features=1, bias=False)" in repr(n)
    with pytest.raises(TypeError, match="is a parameter"):
        n.head.weight = np.zeros((1, 3))
    c = copy.deepcopy(n)
    assert c.head.weight is not n.head.weight
    np.testing.assert_array_equal(c.head.weight.numpy(), n.head.weight.numpy())


def test_zero_grad_and_requires_grad():
    m = nn.Linear(3, 2)
    m(mb.tensor(np.ones((1, 3), np.float32))).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad()
    assert m.weight.grad is None
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_dropout_module_follows_train_and_eval():
    d = nn.Dropout(0.5)
    x = mb.ones(1000)
    mb.manual_seed(0)
    y = d(x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    d.eval()
    assert d(x) is x


def test_default_initialisation_matches_torchs_distributions():
    mb.manual_seed(0)
    lin = nn.Linear(100, 50)
    bound = 1 / np.sqrt(100)
    w = lin.weight.numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.005          # std of U(-b, b) is b/√3
    e = nn.Embedding(1000, 16, padding_idx=3).weight.numpy()
    assert abs(e.std() - 1) < 0.03 and not e[3].any()


def test_module_to_standin_device_and_back():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    ref = m(mb.tensor(x)).numpy()
    with B.backend("standin"):
        m.to("cuda")
        assert all(p.device == "cuda" for p in m.parameters())
        out = m(mb.tensor(x, device="cuda"))
        assert out.device == "cuda"
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
        with pytest.raises(TypeError, match="host"):
            m(mb.tensor(x, device="cpu"))      # a host input to a device model
        assert mb.tensor(x).device == "cuda"       # host arrays follow the selected backend
    m.to("cpu")
    assert all(p.device == "cpu" for p in m.parameters())


def test_module_dtype_cast():
    m = nn.Linear(2, 2).double()
    assert m.weight.dtype == np.float64
    assert m.float().weight.dtype == np.float32
