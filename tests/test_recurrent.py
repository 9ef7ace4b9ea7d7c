"""LSTMCell and LSTM: matched against PyTorch with the same weights (values, every parameter
gradient, the input and initial-state gradients), packed-sequence semantics for padded
batches, the fused layer against the same recurrence composed from primitive ops, gradient
checks, state dicts, long sequences, errors, and the device stand-in."""
import math

import numpy as np
import pytest

import minibidir as mb
from minibidir import nn
from minibidir import backend as B
from minibidir.nn.recurrent import LSTMLayer, lstm_layer_composed

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ATOL = 1e-10
#: NumPy, the CPU stand-in for CuPy (refuses host/device mixing), and real CuPy (GPU only).
BACKENDS = ["numpy", "standin", pytest.param("cupy", marks=pytest.mark.gpu)]


def _device(backend):
    """The device name tensors of ``backend`` live on; skips when CuPy or a GPU is missing."""
    if backend == "cupy" and not B.cupy_available():
        pytest.skip("CuPy or a GPU is not available")
    return "cpu" if backend == "numpy" else "cuda"


def _close(got, want, what, atol=ATOL):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=atol, err_msg=what)


def _pair(input_size, hidden, seed=0, **kw):
    """A torch LSTM and a minibidir LSTM holding the same float64 weights (eval mode)."""
    torch.manual_seed(seed)
    t = torch.nn.LSTM(input_size, hidden, **kw).double().eval()
    m = nn.LSTM(input_size, hidden, **kw).double().eval()
    m.load_state_dict(t.state_dict())
    return m, t


def _torch_side(t, x, hx=None, lengths=None, wts=None):
    bf = t.batch_first
    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else tuple(torch.tensor(a, requires_grad=True) for a in hx)
    if lengths is None:
        out, (h, c) = t(xt, hxt)
    else:
        T = x.shape[1] if bf else x.shape[0]
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=bf, enforce_sorted=False)
        out_p, (h, c) = t(packed, hxt)
        out, _ = pad_packed_sequence(out_p, batch_first=bf, total_length=T)
    loss = sum((o * torch.tensor(w)).sum() for o, w in zip((out, h, c), wts) if w is not None)
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in t.named_parameters()}
    grads["input"] = xt.grad.numpy()
    if hx is not None:
        grads["h_0"], grads["c_0"] = hxt[0].grad.numpy(), hxt[1].grad.numpy()
    return [a.detach().numpy() for a in (out, h, c)], grads


def _mb_side(m, x, hx=None, lengths=None, wts=None, backend="numpy"):
    dev = _device(backend)
    with B.backend(backend):
        m.to(dev)
        xm = mb.tensor(x, requires_grad=True, device=dev)
        hxm = None if hx is None else tuple(mb.tensor(a, requires_grad=True, device=dev) for a in hx)
        for p in m.parameters():
            p.grad = None
        out, (h, c) = m(xm, hxm, lengths=lengths)
        assert out.device == dev and h.device == dev
        loss = None
        for o, w in zip((out, h, c), wts):
            if w is not None:
                term = (o * mb.tensor(w, device=dev)).sum()
                loss = term if loss is None else loss + term
        loss.backward()
        assert xm.grad.device == dev
        grads = {n: p.grad.numpy() for n, p in m.named_parameters()}
        grads["input"] = xm.grad.numpy()
        if hx is not None:
            grads["h_0"], grads["c_0"] = hxm[0].grad.numpy(), hxm[1].grad.numpy()
        vals = [a.numpy() for a in (out, h, c)]
    m.to("cpu")
    return vals, grads


def _weights(shapes, which, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) if k in which else None for s, k in zip(shapes, ("out", "h", "c"))]


def _check_against_torch(kw, T=6, Bn=3, In=5, H=4, with_hx=False, lengths=None,
                         which=("out", "h", "c"), backend="numpy", seed=0):
    m, t = _pair(In, H, seed=seed, **kw)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    rng = np.random.default_rng(seed + 10)
    x = rng.standard_normal((Bn, T, In) if kw.get("batch_first") else (T, Bn, In))
    hx = (rng.standard_normal((L * D, Bn, H)), rng.standard_normal((L * D, Bn, H))) if with_hx else None
    out_shape = (Bn, T, D * H) if kw.get("batch_first") else (T, Bn, D * H)
    wts = _weights([out_shape, (L * D, Bn, H), (L * D, Bn, H)], which)
    (to, th, tc), tg = _torch_side(t, x, hx, lengths, wts)
    (mo, mh, mc), mg = _mb_side(m, x, hx, lengths, wts, backend)
    assert mo.shape == to.shape and mh.shape == th.shape and mc.shape == tc.shape
    _close(mo, to, "output")
    _close(mh, th, "h_n")
    _close(mc, tc, "c_n")
    assert set(mg) == set(tg)
    for name in tg:
        _close(mg[name], tg[name], f"gradient of {name}")
    return mo, mg


# ----------------------------------------------------------------------------- LSTM vs torch

CONFIGS = {
    "uni": dict(),
    "bidirectional": dict(bidirectional=True),
    "2-layer-bidirectional": dict(num_layers=2, bidirectional=True),
    "3-layer-uni": dict(num_layers=3),
    "batch_first-2-layer-bi": dict(num_layers=2, bidirectional=True, batch_first=True),
    "no-bias-bi": dict(bidirectional=True, bias=False),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_lstm_matches_torch(config, backend):
    _check_against_torch(CONFIGS[config], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", ["uni", "2-layer-bidirectional", "batch_first-2-layer-bi"])
def test_lstm_with_initial_state_matches_torch(config, backend):
    _check_against_torch(CONFIGS[config], with_hx=True, backend=backend)


@pytest.mark.parametrize("which", [("out",), ("h",), ("c",), ("h", "c")])
def test_lstm_backprop_from_each_output_alone(which):
    # Gradients that enter only through h_n or c_n must reach every parameter and the input.
    _check_against_torch(CONFIGS["2-layer-bidirectional"], with_hx=True, which=which)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", ["uni", "bidirectional", "2-layer-bidirectional", "batch_first-2-layer-bi"])
def test_lstm_with_lengths_matches_packed_torch(config, backend):
    # Unsorted lengths, one equal to T, one of a single step.
    out, _ = _check_against_torch(CONFIGS[config], T=6, Bn=4, lengths=[3, 6, 1, 4], backend=backend)
    tmajor = np.swapaxes(out, 0, 1) if CONFIGS[config].get("batch_first") else out
    for b, n in enumerate([3, 6, 1, 4]):
        assert not tmajor[n:, b].any(), "padded outputs must be zero"
        assert tmajor[:n, b].all()


@pytest.mark.parametrize("which", [("out",), ("h", "c")])
def test_lstm_with_lengths_and_initial_state_matches_packed_torch(which):
    _check_against_torch(CONFIGS["2-layer-bidirectional"], T=5, Bn=4, lengths=[2, 5, 1, 3],
                         with_hx=True, which=which)


def test_padded_steps_are_ignored():
    # What sits in the padding changes nothing, and receives no gradient.
    m, _ = _pair(3, 4, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 3))
    lengths = [2, 5, 4]
    x2 = x.copy()
    for b, n in enumerate(lengths):
        x2[n:, b] = rng.standard_normal((5 - n, 3)) * 100
    res = [m(mb.tensor(a), lengths=lengths) for a in (x, x2)]
    np.testing.assert_array_equal(res[0][0].numpy(), res[1][0].numpy())
    np.testing.assert_array_equal(res[0][1][0].numpy(), res[1][1][0].numpy())
    xm = mb.tensor(x2, requires_grad=True)
    out, (h, c) = m(xm, lengths=lengths)
    (out.sum() + h.sum() + c.sum()).backward()
    g = xm.grad.numpy()
    for b, n in enumerate(lengths):
        assert not g[n:, b].any() and g[:n, b].all()


def test_full_lengths_equal_no_lengths():
    m, _ = _pair(3, 4, bidirectional=True)
    x = mb.tensor(np.random.default_rng(0).standard_normal((4, 2, 3)))
    a, (ha, ca) = m(x)
    b, (hb, cb) = m(x, lengths=np.array([4, 4]))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ha.numpy(), hb.numpy())
    np.testing.assert_array_equal(ca.numpy(), cb.numpy())


def test_unbatched_input_matches_torch():
    m, t = _pair(3, 4, num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((5, 3))
    hx = tuple(np.random.default_rng(i).standard_normal((4, 4)) for i in (1, 2))
    out, (h, c) = m(mb.tensor(x), tuple(mb.tensor(a) for a in hx))
    tout, (th, tc) = t(torch.tensor(x), tuple(torch.tensor(a) for a in hx))
    assert out.shape == (5, 8) and h.shape == (4, 4)
    _close(out.numpy(), tout.detach().numpy(), "output")
    _close(h.numpy(), th.detach().numpy(), "h_n")
    _close(c.numpy(), tc.detach().numpy(), "c_n")


def test_inter_layer_dropout_only_in_training_and_matches_torch_at_p1():
    # p = 1 zeroes the first layer's output deterministically: the second layer sees zeros.
    m, t = _pair(3, 4, num_layers=2, bidirectional=True, dropout=1.0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    m.train()
    t.train()
    out, (h, _) = m(mb.tensor(x))
    tout, (th, _) = t(torch.tensor(x))
    _close(out.numpy(), tout.detach().numpy(), "output")
    _close(h.numpy(), th.detach().numpy(), "h_n")
    m.eval()
    t.eval()
    out_eval = m(mb.tensor(x))[0].numpy()
    _close(out_eval, t(torch.tensor(x))[0].detach().numpy(), "output in eval")
    assert np.abs(out_eval - out.numpy()).max() > 1e-3
    # p = 0.5: random in training, the layer's last output unaffected by dropout in a 1-layer LSTM.
    m2 = nn.LSTM(3, 4, num_layers=2, dropout=0.5).double()
    xm = mb.tensor(x)
    mb.manual_seed(0)
    a = m2(xm)[0].numpy()
    mb.manual_seed(1)
    b = m2(xm)[0].numpy()
    assert np.abs(a - b).max() > 1e-6
    m2.eval()
    np.testing.assert_array_equal(m2(xm)[0].numpy(), m2(xm)[0].numpy())
    one = nn.LSTM(3, 4, num_layers=1, dropout=0.5).double()      # nothing between layers to drop
    np.testing.assert_array_equal(one(xm)[0].numpy(), one.eval()(xm)[0].numpy())


# ----------------------------------------------------------------------------- LSTMCell

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_cell_matches_torch(backend, bias):
    torch.manual_seed(0)
    t = torch.nn.LSTMCell(5, 4, bias=bias).double()
    m = nn.LSTMCell(5, 4, bias=bias).double()
    m.load_state_dict(t.state_dict())
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal((3, 5)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    wh, wc = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    th2, tc2 = t(tx, (th, tc))
    ((th2 * torch.tensor(wh)).sum() + (tc2 * torch.tensor(wc)).sum()).backward()
    dev = _device(backend)
    with B.backend(backend):
        m.to(dev)
        mx, mh, mc = (mb.tensor(a, requires_grad=True, device=dev) for a in (x, h, c))
        mh2, mc2 = m(mx, (mh, mc))
        assert mh2.device == dev
        ((mh2 * mb.tensor(wh, device=dev)).sum() + (mc2 * mb.tensor(wc, device=dev)).sum()).backward()
        _close(mh2.numpy(), th2.detach().numpy(), "h'")
        _close(mc2.numpy(), tc2.detach().numpy(), "c'")
        for a, b, name in ((mx, tx, "x"), (mh, th, "h"), (mc, tc, "c")):
            _close(a.grad.numpy(), b.grad.numpy(), f"gradient of {name}")
        tp = dict(t.named_parameters())
        for name, p in m.named_parameters():
            _close(p.grad.numpy(), tp[name].grad.numpy(), f"gradient of {name}")


def test_lstm_cell_default_state_and_unbatched_input_match_torch():
    torch.manual_seed(0)
    t = torch.nn.LSTMCell(3, 2).double()
    m = nn.LSTMCell(3, 2).double()
    m.load_state_dict(t.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 3))
    h, c = m(mb.tensor(x))
    th, tc = t(torch.tensor(x))
    _close(h.numpy(), th.detach().numpy(), "h'")
    _close(c.numpy(), tc.detach().numpy(), "c'")
    h1, c1 = m(mb.tensor(x[0]), (mb.tensor(x[1, :2]), mb.tensor(x[2, :2])))
    th1, tc1 = t(torch.tensor(x[0]), (torch.tensor(x[1, :2]), torch.tensor(x[2, :2])))
    assert h1.shape == (2,)
    _close(h1.numpy(), th1.detach().numpy(), "unbatched h'")
    _close(c1.numpy(), tc1.detach().numpy(), "unbatched c'")


def test_lstm_cell_step_equals_one_step_of_lstm():
    lstm = nn.LSTM(3, 4).double()
    cell = nn.LSTMCell(3, 4).double()
    cell.load_state_dict({k[:-3]: v for k, v in lstm.state_dict().items()})   # weight_ih_l0 -> weight_ih
    x = np.random.default_rng(0).standard_normal((1, 2, 3))
    out, (h, c) = lstm(mb.tensor(x))
    h2, c2 = cell(mb.tensor(x[0]))
    _close(out.numpy()[0], h2.numpy(), "output")
    _close(h.numpy()[0], h2.numpy(), "h")
    _close(c.numpy()[0], c2.numpy(), "c")


# ----------------------------------------------------------------------------- fused vs composed

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lengths", [None, [4, 1, 5]], ids=["full", "lengths"])
def test_fused_equals_composed_on_values_and_every_gradient(lengths, backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 4))
    hx = (rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2)))
    wts = _weights([(5, 3, 4), (4, 3, 2), (4, 3, 2)], ("out", "h", "c"), seed=4)
    results = []
    for fused in (True, False):
        mb.manual_seed(0)
        m = nn.LSTM(4, 2, num_layers=2, bidirectional=True, fused=fused).double()
        results.append(_mb_side(m, x, hx, lengths, wts, backend))
    (v1, g1), (v2, g2) = results
    for a, b, name in zip(v1, v2, ("output", "h_n", "c_n")):
        _close(a, b, name, atol=1e-12)
    assert set(g1) == set(g2) and len(g1) == 16 + 3
    for name in g1:
        _close(g1[name], g2[name], f"gradient of {name}", atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [3, 1, 4]], ids=["full", "lengths"])
def test_fused_layer_equals_composed_layer(reverse, lengths):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s) for s in [(4, 3, 2), (3, 3), (3, 3), (12, 2), (12, 3), (12,), (12,)]]
    wts = [rng.standard_normal(s) for s in [(4, 3, 3), (3, 3), (3, 3)]]
    res = []
    for layer in (LSTMLayer.apply, lstm_layer_composed):
        ts = [mb.tensor(a, requires_grad=True) for a in arrays]
        outs = layer(*ts, lengths=lengths, reverse=reverse)
        sum((o * mb.tensor(w)).sum() for o, w in zip(outs, wts)).backward()
        res.append(([o.numpy() for o in outs], [t.grad.numpy() for t in ts]))
    for a, b in zip(res[0][0], res[1][0]):
        _close(a, b, "values", atol=1e-12)
    for i, (a, b) in enumerate(zip(res[0][1], res[1][1])):
        _close(a, b, f"gradient of input {i}", atol=1e-12)


# ----------------------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [4, 1, 2]], ids=["full", "lengths"])
def test_fused_layer_gradcheck(lengths, reverse, backend):
    rng = np.random.default_rng(7)
    shapes = [(4, 3, 3), (3, 2), (3, 2), (8, 3), (8, 2), (8,), (8,)]
    arrays = [rng.standard_normal(s) for s in shapes]
    dev = _device(backend)
    with B.backend(backend):
        ts = [mb.tensor(a, requires_grad=True, device=dev) for a in arrays]
        assert mb.gradcheck(lambda *a: LSTMLayer.apply(*a, lengths=lengths, reverse=reverse), *ts,
                            atol=1e-7, rtol=1e-6)


def test_fused_layer_gradcheck_without_bias_and_partial_needs():
    rng = np.random.default_rng(8)
    x = mb.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    h0 = mb.tensor(rng.standard_normal((2, 3)))                      # constant state
    c0 = mb.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w_ih = mb.tensor(rng.standard_normal((12, 2)))                   # frozen weights
    w_hh = mb.tensor(rng.standard_normal((12, 3)), requires_grad=True)
    assert mb.gradcheck(lambda *a: LSTMLayer.apply(*a, reverse=True), x, h0, c0, w_ih, w_hh,
                        atol=1e-7, rtol=1e-6)
    assert h0.grad is None and w_ih.grad is None


def test_lstm_module_gradcheck():
    mb.manual_seed(2)
    m = nn.LSTM(2, 2, num_layers=2, bidirectional=True).double()
    x = mb.tensor(np.random.default_rng(9).standard_normal((3, 2, 2)), requires_grad=True)
    params = list(m.parameters())

    def f(x, *ps):
        out, (h, c) = m(x, lengths=[3, 2])
        return out, h, c

    assert mb.gradcheck(f, x, *params, atol=1e-7, rtol=1e-6)


# ----------------------------------------------------------------------------- long sequences, dtypes, engine

def test_500_step_sequence_backpropagates_and_matches_torch():
    m, t = _pair(3, 4)
    x = np.random.default_rng(0).standard_normal((500, 2, 3)) * 0.5
    wts = _weights([(500, 2, 4), (1, 2, 4), (1, 2, 4)], ("out", "h"))
    (to, th, _), tg = _torch_side(t, x, None, None, wts)
    (mo, mh, _), mg = _mb_side(m, x, None, None, wts)
    _close(mo, to, "output", atol=1e-9)
    _close(mh, th, "h_n", atol=1e-9)
    for name in tg:
        _close(mg[name], tg[name], f"gradient of {name}", atol=1e-9)


def test_500_step_composed_lstm_backpropagates_without_recursion():
    mb.manual_seed(0)
    m = nn.LSTM(2, 3, fused=False).double()
    x = mb.tensor(np.random.default_rng(0).standard_normal((500, 1, 2)), requires_grad=True)
    _, (h, _) = m(x)
    h.sum().backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all() and np.abs(g[-1]).max() > 0


def test_float32_stays_float32():
    m = nn.LSTM(5, 4, num_layers=2, bidirectional=True)
    x = mb.tensor(np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32), requires_grad=True)
    out, (h, c) = m(x, lengths=[6, 2, 3])
    assert out.dtype == h.dtype == c.dtype == np.float32
    (out.sum() + h.sum()).backward()
    assert x.grad.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in m.parameters())
    ref = nn.LSTM(5, 4, num_layers=2, bidirectional=True).double()
    ref.load_state_dict(m.state_dict())
    out64 = ref(x.double(), lengths=[6, 2, 3])[0].numpy()
    np.testing.assert_allclose(out.numpy(), out64, atol=1e-5)


def test_no_grad_and_retain_graph():
    m, _ = _pair(3, 2, bidirectional=True)
    x = mb.tensor(np.random.default_rng(0).standard_normal((4, 2, 3)), requires_grad=True)
    with mb.no_grad():
        out, _ = m(x)
    assert not out.requires_grad
    out, (h, _) = m(x, lengths=[4, 2])
    loss = out.sum() + h.sum()
    loss.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    loss.backward()                       # the saved buffers survive the first pass
    _close(x.grad.numpy(), 2 * g1, "accumulated gradient")


def test_hidden_states_feed_back_in_and_initial_state_gradient_flows():
    # Run on two halves, passing (h_n, c_n) of the first as (h_0, c_0) of the second: the same
    # values as one run, and the gradient of the second half reaches the first half's input.
    m, _ = _pair(2, 3, num_layers=2)
    x = np.random.default_rng(0).standard_normal((6, 2, 2))
    w = np.random.default_rng(1).standard_normal((3, 2, 3))
    xa, xb = mb.tensor(x[:3], requires_grad=True), mb.tensor(x[3:], requires_grad=True)
    out_a, hc = m(xa)
    out_b, _ = m(xb, hc)
    (out_b * mb.tensor(w)).sum().backward()
    xw = mb.tensor(x, requires_grad=True)
    whole, _ = m(xw)
    (whole[3:] * mb.tensor(w)).sum().backward()
    _close(np.concatenate([out_a.numpy(), out_b.numpy()]), whole.numpy(), "split run", atol=1e-13)
    _close(np.concatenate([xa.grad.numpy(), xb.grad.numpy()]), xw.grad.numpy(), "input gradient", atol=1e-13)
    assert np.abs(xa.grad.numpy()).max() > 1e-3


# ----------------------------------------------------------------------------- parameters

def test_parameter_names_shapes_and_order_match_torch():
    kw = dict(num_layers=2, bidirectional=True)
    t = torch.nn.LSTM(5, 4, **kw)
    m = nn.LSTM(5, 4, **kw)
    assert list(m.state_dict()) == list(t.state_dict())
    for k, v in m.state_dict().items():
        assert tuple(v.shape) == tuple(t.state_dict()[k].shape), k
    assert list(nn.LSTMCell(3, 2).state_dict()) == list(torch.nn.LSTMCell(3, 2).state_dict())
    assert list(nn.LSTM(3, 2, bias=False).state_dict()) == ["weight_ih_l0", "weight_hh_l0"]


def test_state_dict_round_trip_both_ways():
    kw = dict(num_layers=2, bidirectional=True)
    m = nn.LSTM(5, 4, **kw).double()
    t = torch.nn.LSTM(5, 4, **kw).double()
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    m2 = nn.LSTM(5, 4, **kw).double()
    m2.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    for k in m.state_dict():
        np.testing.assert_array_equal(m.state_dict()[k], m2.state_dict()[k])
    x = np.random.default_rng(0).standard_normal((3, 2, 5))
    _close(m2(mb.tensor(x))[0].numpy(), t(torch.tensor(x))[0].detach().numpy(), "output after round trip")


def test_initialisation_is_uniform_within_one_over_sqrt_hidden():
    mb.manual_seed(0)
    H = 64
    m = nn.LSTM(32, H, num_layers=2, bidirectional=True)
    bound = 1 / math.sqrt(H)
    allv = np.concatenate([p.numpy().ravel() for p in m.parameters()])
    assert allv.dtype == np.float32
    assert -bound <= allv.min() and allv.max() <= bound
    assert abs(allv.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert abs(allv.mean()) < 0.01 * bound
    cell = nn.LSTMCell(3, 16)
    assert all(np.abs(p.numpy()).max() <= 0.25 for p in cell.parameters())


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make,match", [
    (lambda m: m(mb.tensor(np.zeros((4, 2, 3)))), r"LSTM: input has 3 features \(shape \(4, 2, 3\)\) but input_size is 5"),
    (lambda m: m(mb.tensor(np.zeros((4, 2, 5, 1)))), r"LSTM: expected input of 3 dimensions.*got shape \(4, 2, 5, 1\)"),
    (lambda m: m(mb.tensor(np.zeros(5))), r"LSTM: expected input of 3 dimensions"),
    (lambda m: m(mb.tensor(np.zeros((4, 2, 5))), lengths=[4, 2, 1]), r"LSTM: lengths must hold one length per sequence \(shape \(2,\)\), got shape \(3,\)"),
    (lambda m: m(mb.tensor(np.zeros((4, 2, 5))), lengths=[5, 2]), r"LSTM: lengths must lie in 1\.\.4.*\[5\]"),
    (lambda m: m(mb.tensor(np.zeros((4, 2, 5))), lengths=[0, 2]), r"LSTM: lengths must lie in 1\.\.4.*\[0\]"),
    (lambda m: m(mb.tensor(np.zeros((4, 2, 5))), (mb.tensor(np.zeros((2, 2, 3))), mb.tensor(np.zeros((4, 2, 3))))),
     r"LSTM: expected h_0 of shape \(4, 2, 3\).*got \(2, 2, 3\)"),
    (lambda m: m(mb.tensor(np.zeros((4, 2, 5))), (mb.tensor(np.zeros((4, 2, 3))), mb.tensor(np.zeros((4, 3, 3))))),
     r"LSTM: expected c_0 of shape \(4, 2, 3\).*got \(4, 3, 3\)"),
    (lambda m: m(mb.tensor(np.zeros((4, 5))), lengths=[4]), r"LSTM: lengths need a batch"),
])
def test_lstm_errors_name_the_layer_and_shapes(make, match):
    m = nn.LSTM(5, 3, num_layers=2, bidirectional=True).double()
    with pytest.raises(ValueError, match=match):
        make(m)


def test_lstm_type_errors():
    m = nn.LSTM(5, 3)
    with pytest.raises(TypeError, match=r"LSTM: input dtype float64 does not match the weights' dtype float32"):
        m(mb.tensor(np.zeros((4, 2, 5))))
    with pytest.raises(TypeError, match=r"LSTM: lengths must be integers, got dtype float64"):
        m(mb.tensor(np.zeros((4, 2, 5), dtype=np.float32)), lengths=[4.0, 2.0])


def test_constructor_and_cell_errors():
    with pytest.raises(ValueError, match=r"LSTM: num_layers must be a positive integer, got 0"):
        nn.LSTM(3, 2, num_layers=0)
    with pytest.raises(ValueError, match=r"LSTM: dropout must be a probability in \[0, 1\], got 1.5"):
        nn.LSTM(3, 2, dropout=1.5)
    cell = nn.LSTMCell(3, 2).double()
    with pytest.raises(ValueError, match=r"LSTMCell: expected input of shape \(batch, 3\) or \(3,\), got \(4, 5\)"):
        cell(mb.tensor(np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"LSTMCell: expected h of shape \(4, 2\).*got \(4, 3\)"):
        cell(mb.tensor(np.zeros((4, 3))), (mb.tensor(np.zeros((4, 3))), mb.tensor(np.zeros((4, 2)))))


def test_host_input_to_a_device_lstm_is_refused():
    m = nn.LSTM(3, 2).double()
    host = mb.tensor(np.zeros((4, 2, 3)))
    with B.backend("standin"):
        m.to("cuda")
        assert m(mb.tensor(np.zeros((4, 2, 3)), device="cuda"))[0].device == "cuda"
        with pytest.raises(TypeError, match=r"LSTMLayer: cannot mix host \(NumPy\) and device arrays"):
            m(host)
    m.to("cpu")


# ----------------------------------------------------------------------------- the real GPU

@pytest.mark.gpu
def test_lstm_on_cupy_matches_numpy():
    if not B.cupy_available():
        pytest.skip("CuPy or a GPU is not available")
    import cupy
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 5))
    hx = (rng.standard_normal((4, 4, 3)), rng.standard_normal((4, 4, 3)))
    wts = _weights([(6, 4, 6), (4, 4, 3), (4, 4, 3)], ("out", "h", "c"))
    mb.manual_seed(0)
    m = nn.LSTM(5, 3, num_layers=2, bidirectional=True).double()
    v_cpu, g_cpu = _mb_side(m, x, hx, [6, 2, 5, 1], wts)
    with B.backend("cupy"):
        m.to("cuda")
        assert isinstance(m.weight_ih_l0.data, cupy.ndarray)
    v_gpu, g_gpu = _mb_side(m, x, hx, [6, 2, 5, 1], wts, backend="cupy")
    for a, b in zip(v_cpu, v_gpu):
        _close(a, b, "values", atol=1e-12)
    for name in g_cpu:
        _close(g_cpu[name], g_gpu[name], f"gradient of {name}", atol=1e-12)
