"""Positional encodings: the document's §4.2 formula and worked example, the PyTorch
tutorial's table, the modules' layouts, errors, devices, and the learned table's gradients."""
import math

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import nn

torch = pytest.importorskip("torch")


def tutorial_pe(max_len, d_model, dtype=torch.float64):
    """The PyTorch tutorial's ``PositionalEncoding`` table ("Language Modeling with nn.Transformer"),
    squeezed from (max_len, 1, d_model) to (max_len, d_model), computed in ``dtype``."""
    position = torch.arange(max_len, dtype=dtype).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=dtype) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, 1, d_model, dtype=dtype)
    pe[:, 0, 0::2] = torch.sin(position * div_term)
    pe[:, 0, 1::2] = torch.cos(position * div_term)
    return pe[:, 0, :]


# ----------------------------------------------------------------------------- the table

def test_document_worked_example_d_model_4():
    # §4.2: a sequence of length 4, d_model = 4, the first two positions.  The two frequencies
    # are 1/10000^(0/4) = 1 and 1/10000^(2/4) = 1/100.
    pe = nn.sinusoidal_positional_encoding(4, 4, dtype=np.float64).numpy()
    assert pe.shape == (4, 4) and pe.dtype == np.float64
    np.testing.assert_array_equal(pe[0], [0.0, 1.0, 0.0, 1.0])
    expected_1 = [math.sin(1), math.cos(1), math.sin(1 / 100), math.cos(1 / 100)]
    np.testing.assert_allclose(pe[1], expected_1, rtol=1e-15, atol=0)
    np.testing.assert_allclose(pe[1], [0.8414709848078965, 0.5403023058681398,
                                       0.009999833334166664, 0.9999500004166653], rtol=1e-15)
    # and positions 2, 3 by the same formula
    np.testing.assert_allclose(pe[2:], [[math.sin(p), math.cos(p), math.sin(p / 100), math.cos(p / 100)]
                                        for p in (2, 3)], rtol=1e-15, atol=1e-16)


def test_formula_element_by_element():
    max_len, d = 7, 6
    pe = nn.sinusoidal_positional_encoding(max_len, d, dtype=np.float64).numpy()
    for pos in range(max_len):
        for i in range(d // 2):
            w = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i] == pytest.approx(math.sin(w), rel=1e-14, abs=1e-15)
            assert pe[pos, 2 * i + 1] == pytest.approx(math.cos(w), rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("d_model", [4, 16, 512])
def test_table_matches_the_pytorch_tutorial(d_model):
    max_len = 5000
    ours = nn.sinusoidal_positional_encoding(max_len, d_model, dtype=np.float64).numpy()
    ref = tutorial_pe(max_len, d_model).numpy()
    # exp(-2i ln(10000)/d) vs 10000^(-2i/d) differ in the last bits; times pos <= 4999
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    # float32: our table is the float64 one rounded once
    ours32 = nn.sinusoidal_positional_encoding(max_len, d_model, dtype=np.float32).numpy()
    assert ours32.dtype == np.float32
    np.testing.assert_array_equal(ours32, ours.astype(np.float32))


def test_default_dtype_and_properties():
    pe = nn.sinusoidal_positional_encoding(100, 8)
    assert pe.dtype == np.float32 and not pe.requires_grad
    p = nn.sinusoidal_positional_encoding(100, 8, dtype=np.float64).numpy()
    assert np.abs(p).max() <= 1.0
    # each (sin, cos) pair lies on the unit circle
    np.testing.assert_allclose(p[:, 0::2] ** 2 + p[:, 1::2] ** 2, 1.0, rtol=1e-14)
    # PE(pos + k) is a rotation of PE(pos), the same for every pos (relative positions are linear)
    k, d = 3, 8
    for i in range(d // 2):
        w = 1 / 10000 ** (2 * i / d)
        rot = np.array([[math.cos(k * w), -math.sin(k * w)], [math.sin(k * w), math.cos(k * w)]])
        np.testing.assert_allclose(p[:-k, 2 * i:2 * i + 2] @ rot, p[k:, 2 * i:2 * i + 2], atol=1e-12)


def test_odd_d_model_is_supported_last_column_is_a_sine():
    pe = nn.sinusoidal_positional_encoding(10, 5, dtype=np.float64).numpy()
    assert pe.shape == (10, 5)
    pos = np.arange(10)
    np.testing.assert_allclose(pe[:, 4], np.sin(pos / 10000 ** (4 / 5)), rtol=1e-14, atol=1e-16)
    for i in range(2):
        np.testing.assert_allclose(pe[:, 2 * i], np.sin(pos / 10000 ** (2 * i / 5)), rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(pe[:, 2 * i + 1], np.cos(pos / 10000 ** (2 * i / 5)), rtol=1e-14)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError, match="positive integer"):
        nn.sinusoidal_positional_encoding(bad, 4)
    with pytest.raises(ValueError, match="d_model"):
        nn.SinusoidalPositionalEncoding(bad)


# ----------------------------------------------------------------------------- the module

def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("batch_first", [False, True])
def test_module_adds_the_table_in_either_layout_like_the_tutorial(batch_first):
    S, N, E = 9, 3, 8
    m = nn.SinusoidalPositionalEncoding(E, max_len=50, batch_first=batch_first, dtype=np.float64)
    x = _x((N, S, E) if batch_first else (S, N, E))
    xt = mb.tensor(x, requires_grad=True)
    y = m(xt)
    pe = tutorial_pe(50, E).numpy()
    ref = x + (pe[None, :S] if batch_first else pe[:S, None])        # the tutorial: x + pe[:x.size(0)]
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    y.backward(mb.tensor(np.full(y.shape, 2.0)))
    np.testing.assert_array_equal(xt.grad.numpy(), 2.0)      # d(x + PE)/dx = I


def test_module_unbatched_input_and_dtype_follow_the_input():
    m = nn.SinusoidalPositionalEncoding(6, max_len=20)
    assert m.pe.dtype == np.float32 and m.pe.shape == (20, 6)
    x = _x((5, 6))                       # float64 input, float32 table
    y = m(mb.tensor(x))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), x + nn.sinusoidal_positional_encoding(5, 6).numpy(), rtol=1e-7)
    assert m.double().pe.dtype == np.float64


def test_pe_is_a_non_persistent_buffer():
    m = nn.SinusoidalPositionalEncoding(8, max_len=30)
    assert list(m.state_dict()) == [] and [k for k, _ in m.named_buffers()] == ["pe"]
    assert list(m.parameters()) == []
    # a model's state dict is the same with or without the encoding
    class M(nn.Module):
        def __init__(self, with_pe):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            if with_pe:
                self.pos = nn.SinusoidalPositionalEncoding(8, max_len=30)
    assert list(M(True).state_dict()) == list(M(False).state_dict()) == ["emb.weight"]
    M(True).load_state_dict(M(False).state_dict())


def test_sequence_longer_than_max_len_and_bad_shapes_raise_clearly():
    m = nn.SinusoidalPositionalEncoding(8, max_len=10)
    m(mb.zeros(10, 2, 8))                        # exactly max_len is fine
    with pytest.raises(ValueError, match=r"sequence length 11 .* exceeds max_len=10"):
        m(mb.zeros(11, 2, 8))
    mbf = nn.SinusoidalPositionalEncoding(8, max_len=10, batch_first=True)
    mbf(mb.zeros(20, 10, 8))                     # batch 20 is not the sequence
    with pytest.raises(ValueError, match="exceeds max_len"):
        mbf(mb.zeros(2, 11, 8))
    with pytest.raises(ValueError, match="last dimension is 7 .* d_model is 8"):
        m(mb.zeros(3, 2, 7))
    with pytest.raises(ValueError, match="expected an input of shape"):
        m(mb.zeros(2, 3, 4, 8))


def test_dropout_applies_in_training_only():
    mb.manual_seed(0)
    m = nn.SinusoidalPositionalEncoding(16, max_len=64, dropout=0.5)
    x = mb.zeros(64, 4, 16)
    full = x.numpy() + m.pe[:64, None, :]
    y = m(x).numpy()
    dropped = y == 0
    assert 0.4 < dropped.mean() < 0.6
    np.testing.assert_allclose(y[~dropped], 2 * np.broadcast_to(full, y.shape)[~dropped], rtol=1e-6)
    m.eval()
    np.testing.assert_allclose(m(x).numpy(), np.broadcast_to(full, y.shape), rtol=0)


# ----------------------------------------------------------------------------- the learned table

@pytest.mark.parametrize("batch_first", [False, True])
def test_learned_embedding_matches_torch_embedding_with_gradients(batch_first):
    L, S, N, E = 12, 5, 3, 4
    temb = torch.nn.Embedding(L, E).double()
    m = nn.LearnedPositionalEmbedding(L, E, batch_first=batch_first)
    m.load_state_dict(temb.state_dict())
    assert list(m.state_dict()) == ["weight"] and m.weight.dtype == np.float32
    m.double()
    x = _x((N, S, E) if batch_first else (S, N, E))
    g = _x(x.shape, seed=1)
    xm = mb.tensor(x, requires_grad=True)
    y = m(xm)
    y.backward(mb.tensor(g))
    xt = torch.tensor(x, requires_grad=True)
    pos = temb(torch.arange(S))
    yt = xt + (pos[None] if batch_first else pos[:, None])
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(m.weight.grad.numpy(), temb.weight.grad.numpy(), rtol=1e-13, atol=1e-15)
    assert not m.weight.grad.numpy()[S:].any() and m.weight.grad.numpy()[:S].any()


def test_learned_embedding_gradcheck_and_position_ids():
    m = nn.LearnedPositionalEmbedding(6, 3, batch_first=True).double()
    x = mb.tensor(_x((2, 4, 3)), requires_grad=True)
    assert mb.gradcheck(lambda a, w: m(a), x, m.weight)
    ids = np.array([[3, 2, 1, 0], [5, 5, 0, 1]])                  # per-example positions, repeats
    assert mb.gradcheck(lambda a, w: m(a, position_ids=ids), x, m.weight)
    y = m(x, position_ids=ids).numpy()
    np.testing.assert_allclose(y, x.numpy() + m.weight.numpy()[ids], rtol=1e-15)
    np.testing.assert_array_equal(m.embed(np.array([1, 4])).numpy(), m.weight.numpy()[[1, 4]])


def test_learned_embedding_errors():
    m = nn.LearnedPositionalEmbedding(4, 3)
    with pytest.raises(ValueError, match=r"sequence length 5 .* exceeds max_len=4"):
        m(mb.zeros(5, 1, 3))
    with pytest.raises(IndexError, match="out of range"):
        m(mb.zeros(2, 1, 3), position_ids=np.array([[0], [4]]))
    with pytest.raises(ValueError, match="max_len"):
        nn.LearnedPositionalEmbedding(0, 3)


# ----------------------------------------------------------------------------- devices

@pytest.mark.parametrize("cls", ["sin", "learned"])
def test_positional_modules_on_the_standin_device(cls):
    mb.manual_seed(0)
    m = nn.SinusoidalPositionalEncoding(8, max_len=16) if cls == "sin" else nn.LearnedPositionalEmbedding(16, 8)
    x = _x((5, 2, 8)).astype(np.float32)
    xh = mb.tensor(x, requires_grad=True)
    ref = m(xh)
    ref.sum().backward()
    with B.backend("standin"):
        m.to("cuda")
        assert all(B.device_of(b) == "cuda" for b in m.buffers())
        xd = mb.tensor(x, device="cuda", requires_grad=True)
        y = m(xd)
        assert y.device == "cuda"
        y.sum().backward()
        np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-6)
        np.testing.assert_allclose(xd.grad.numpy(), xh.grad.numpy(), rtol=1e-6)
        table = nn.sinusoidal_positional_encoding(16, 8)
        assert table.device == "cuda"
        assert nn.sinusoidal_positional_encoding(16, 8, device="cpu").device == "cpu"
        with pytest.raises(TypeError, match="host"):
            m(mb.tensor(x, device="cpu"))        # a host input to a device module
    m.to("cpu")


@pytest.mark.gpu
def test_positional_encoding_on_the_gpu():
    if not B.cupy_available():
        pytest.skip("CuPy or a GPU is not available")
    import cupy
    m = nn.SinusoidalPositionalEncoding(32, max_len=64).to("cuda")
    lm = nn.LearnedPositionalEmbedding(64, 32).to("cuda")
    x = _x((10, 3, 32)).astype(np.float32)
    xd = mb.tensor(x, device="cuda", requires_grad=True)
    y = lm(m(xd))
    assert isinstance(y.data, cupy.ndarray)
    y.sum().backward()
    ref = x + nn.sinusoidal_positional_encoding(64, 32).numpy()[:10, None] + B.to_numpy(lm.weight.data)[:10, None]
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(B.to_numpy(lm.weight.grad.data)[:10], 3.0)
    assert not B.to_numpy(lm.weight.grad.data)[10:].any()
