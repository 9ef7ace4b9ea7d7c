"""Scaled dot-product attention (the fused op) and nn.MultiheadAttention.

* F.scaled_dot_product_attention against torch's SDPA (values and the gradients of q, k, v
  and of a float mask), against the same computation composed from primitive minibidir
  ops, and against finite differences; masks (boolean, float, causal), batching, L != S,
  Ev != E, dropout, fully masked rows, bad inputs.
* nn.MultiheadAttention against torch.nn.MultiheadAttention holding the same weights:
  outputs, attention weights and the gradients of every parameter and input.

The core comparisons run on every backend of the ``xp_backend`` fixture (NumPy, the CPU
stand-in for CuPy that refuses host/device mixing, and CuPy when a GPU is present).
"""
import math

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import functional as F
from minibidir import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional

FWD = dict(rtol=1e-10, atol=1e-12)
GRAD = dict(rtol=1e-9, atol=1e-11)


def _dev(xp):
    return "cpu" if xp is np else "cuda"


def _mb(a, xp, requires_grad=True):
    return mb.Tensor(a.copy() if xp is np else xp.asarray(a), requires_grad=requires_grad)


def _tt(a, requires_grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad)


def _np(t):
    return mb.to_numpy(t.data if isinstance(t, mb.Tensor) else t)


def _dot(t, w):
    """sum(t * w) for a host array w, on t's device: a random weighting of the outputs."""
    return (t * mb.Tensor(w, device=t.device)).sum()


def _fully_masked_rows(allowed):
    """Boolean (..., L, 1): rows whose keys are all masked out."""
    return ~np.asarray(allowed).any(axis=-1, keepdims=True)


# ============================================================================ SDPA vs torch

def _sdpa_case(name, rng):
    """(q, k, v, kwargs for minibidir (masks as host arrays), the same kwargs for torch)."""
    N, H, L, S, E, Ev = 2, 3, 5, 5, 4, 4
    shape4 = False
    kw = {}
    if name == "plain":
        S, Ev = 6, 2
    elif name == "4d":
        shape4 = True
    elif name == "L!=S":
        S = 7
    elif name == "Ev!=E":
        Ev = 6
    elif name == "L!=S,Ev!=E,4d":
        S, Ev, shape4 = 7, 3, True
    elif name == "bool_mask":
        S = 6
        kw["attn_mask"] = rng.random((L, S)) > 0.4
        kw["attn_mask"][:, 0] = True              # no fully masked row here
    elif name == "bool_mask_4d_broadcast":
        S, shape4 = 6, True
        kw["attn_mask"] = rng.random((N, 1, L, S)) > 0.4
        kw["attn_mask"][..., 1] = True
    elif name == "float_mask":
        S = 6
        kw["attn_mask"] = rng.standard_normal((L, S))
    elif name == "float_mask_with_-inf":
        S = 6
        m = rng.standard_normal((N, L, S))
        m[rng.random((N, L, S)) < 0.3] = -np.inf
        m[..., 2] = 0.5
        kw["attn_mask"] = m
    elif name == "causal":
        kw["is_causal"] = True
    elif name == "causal_L!=S_4d":
        S, shape4 = 8, True
        kw["is_causal"] = True
    elif name == "scale":
        kw["scale"] = 0.3
    else:
        raise KeyError(name)
    lead = (N, H) if shape4 else (N,)
    q = rng.standard_normal(lead + (L, E))
    k = rng.standard_normal(lead + (S, E))
    v = rng.standard_normal(lead + (S, Ev))
    tkw = {key: (torch.tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}
    return q, k, v, kw, tkw


SDPA_CASES = ["plain", "4d", "L!=S", "Ev!=E", "L!=S,Ev!=E,4d", "bool_mask", "bool_mask_4d_broadcast",
              "float_mask", "float_mask_with_-inf", "causal", "causal_L!=S_4d", "scale"]


@pytest.mark.parametrize("case", SDPA_CASES)
def test_sdpa_matches_torch_values_and_gradients(case, xp_backend):
    xp = xp_backend
    rng = np.random.default_rng(1)
    q, k, v, kw, tkw = _sdpa_case(case, rng)
    Q, K, V = (_mb(a, xp) for a in (q, k, v))
    out = F.scaled_dot_product_attention(Q, K, V, **kw)           # host masks are moved by the op
    tq, tk, tv = (_tt(a) for a in (q, k, v))
    tout = TF.scaled_dot_product_attention(tq, tk, tv, **tkw)
    assert B.get_array_module(out.data) is xp and out.dtype == np.float64
    np.testing.assert_allclose(_np(out), tout.detach().numpy(), **FWD)
    w = rng.standard_normal(out.shape)
    _dot(out, w).backward()
    (tout * torch.tensor(w)).sum().backward()
    for name, a, t in (("q", Q, tq), ("k", K, tk), ("v", V, tv)):
        assert B.get_array_module(a.grad.data) is xp and a.grad.shape == a.shape
        np.testing.assert_allclose(_np(a.grad), t.grad.numpy(), err_msg=f"d{name}", **GRAD)


def test_sdpa_broadcasts_batch_dimensions_like_torch():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 3, 5, 4))
    k = rng.standard_normal((1, 3, 6, 4))              # broadcast over the batch
    v = rng.standard_normal((2, 1, 6, 3))              # broadcast over the heads
    Q, K, V = (_mb(a, np) for a in (q, k, v))
    tq, tk, tv = (_tt(a) for a in (q, k, v))
    out = F.scaled_dot_product_attention(Q, K, V)
    tout = TF.scaled_dot_product_attention(tq, tk, tv)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), **FWD)
    w = rng.standard_normal(out.shape)
    _dot(out, w).backward()
    (tout * torch.tensor(w)).sum().backward()
    for a, t in ((Q, tq), (K, tk), (V, tv)):
        assert a.grad.shape == a.shape
        np.testing.assert_allclose(a.grad.data, t.grad.numpy(), **GRAD)


def test_sdpa_float_mask_that_requires_grad_gets_the_score_gradient(xp_backend):
    xp = xp_backend
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    m = rng.standard_normal((4, 5))
    Q, K, V, M = (_mb(a, xp) for a in (q, k, v, m))
    tq, tk, tv, tm = (_tt(a) for a in (q, k, v, m))
    out = F.scaled_dot_product_attention(Q, K, V, attn_mask=M)
    tout = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm)
    w = rng.standard_normal(out.shape)
    _dot(out, w).backward()
    (tout * torch.tensor(w)).sum().backward()
    assert M.grad.shape == (4, 5)                      # summed over the broadcast batch
    for a, t in ((Q, tq), (K, tk), (V, tv), (M, tm)):
        np.testing.assert_allclose(_np(a.grad), t.grad.numpy(), **GRAD)


# ============================================================================ fused vs composed

def _composed(Q, K, V, allowed=None, fmask=None, causal=False, scale=None):
    """The same attention built from primitive ops (matmul, softmax, masked_fill)."""
    scale = 1 / math.sqrt(Q.shape[-1]) if scale is None else scale
    s = (Q @ F.transpose(K, -1, -2)) * scale
    if fmask is not None:
        s = s + fmask
    if allowed is not None:
        s = F.masked_fill(s, ~allowed, -np.inf)
    if causal:
        L, S = s.shape[-2:]
        s = F.masked_fill(s, np.triu(np.ones((L, S), bool), 1), -np.inf)
    p = F.softmax(s, axis=-1)
    return p @ V, p


@pytest.mark.parametrize("masking", ["none", "bool", "float", "causal", "bool+causal"])
def test_fused_sdpa_matches_composed_primitives(masking, xp_backend):
    """Values, weights and every gradient, with a loss that uses both outputs."""
    xp = xp_backend
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((2, 2, 5, 3)), rng.standard_normal((2, 2, 6, 3)), rng.standard_normal((2, 2, 6, 4))
    kw, ckw = {}, {}
    if "bool" in masking:
        allowed = rng.random((2, 1, 5, 6)) > 0.3
        allowed[..., 0] = True
        kw["attn_mask"] = ckw["allowed"] = allowed     # host masks: both paths move them
    if masking == "float":
        fmask = rng.standard_normal((5, 6))
        kw["attn_mask"] = fmask
        ckw["fmask"] = mb.Tensor(fmask, device=_dev(xp))
    if "causal" in masking:
        kw["is_causal"] = ckw["causal"] = True
    grads, results = [], []
    for fused in (True, False):
        Q, K, V = (_mb(a, xp) for a in (q, k, v))
        if fused:
            o, p = F.scaled_dot_product_attention(Q, K, V, return_weights=True, **kw)
        else:
            o, p = _composed(Q, K, V, **ckw)
        results.append((_np(o), _np(p)))
        loss = _dot(o, np.linspace(-1, 1, o.size).reshape(o.shape)) + \
            _dot(p, np.cos(np.arange(p.size)).reshape(p.shape))
        loss.backward()
        grads.append([_np(t.grad) for t in (Q, K, V)])
    np.testing.assert_allclose(results[0][0], results[1][0], **FWD)
    np.testing.assert_allclose(results[0][1], results[1][1], **FWD)
    for name, a, b in zip("qkv", grads[0], grads[1]):
        np.testing.assert_allclose(a, b, err_msg=f"d{name}", **GRAD)


def test_fused_sdpa_with_dropout_matches_composed_with_the_same_mask():
    rng = np.random.default_rng(5)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 5))
    Q, K, V = (_mb(a, np) for a in (q, k, v))
    mb.manual_seed(7)
    o, p_used = F.scaled_dot_product_attention(Q, K, V, dropout_p=0.4, return_weights=True)
    w = rng.standard_normal(o.shape)
    _dot(o, w).backward()
    # the same uniforms, drawn again: keep = u >= p, scaled by 1 / (1 - p)
    mb.manual_seed(7)
    keep = (B.random_uniform(np, (2, 4, 6), np.float64) >= 0.4) / 0.6
    Q2, K2, V2 = (_mb(a, np) for a in (q, k, v))
    o2, p2 = _composed(Q2, K2, V2)
    o2 = (p2 * mb.tensor(keep)) @ V2
    _dot(o2, w).backward()
    assert 0 < (keep == 0).mean() < 1
    np.testing.assert_allclose(p_used.data, p2.data * keep, **FWD)
    np.testing.assert_allclose(o.data, o2.data, **FWD)
    for a, b in ((Q, Q2), (K, K2), (V, V2)):
        np.testing.assert_allclose(a.grad.data, b.grad.data, **GRAD)


def test_sdpa_dropout_only_in_training():
    rng = np.random.default_rng(6)
    q, k, v = (mb.tensor(rng.standard_normal((2, 8, 4))) for _ in range(3))
    o_eval, p_eval = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False, return_weights=True)
    o_ref, p_ref = F.scaled_dot_product_attention(q, k, v, return_weights=True)
    np.testing.assert_array_equal(o_eval.data, o_ref.data)
    o_tr, p_tr = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    dropped = p_tr.data == 0
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_allclose(p_tr.data[~dropped], 2 * p_ref.data[~dropped], rtol=1e-6)
    np.testing.assert_allclose(o_tr.data, p_tr.data @ v.data, rtol=1e-6)
    _, p_all = F.scaled_dot_product_attention(q, k, v, dropout_p=1.0, return_weights=True)
    assert not p_all.data.any()


def test_sdpa_float32_stays_float32(xp_backend):
    rng = np.random.default_rng(7)
    q, k, v = (_mb(rng.standard_normal((2, 3, 5, 4)).astype(np.float32), xp_backend) for _ in range(3))
    mask = rng.standard_normal((5, 5))                         # float64 host mask
    o, p = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True, dropout_p=0.1,
                                          return_weights=True)
    assert o.dtype == np.float32 and p.dtype == np.float32
    (o.sum() + p.sum()).backward()
    assert all(t.grad.dtype == np.float32 for t in (q, k, v))


# ============================================================================ gradcheck

@pytest.mark.parametrize("case", ["plain", "bool", "float", "causal", "weights", "float_mask_grad",
                                  "broadcast", "dropout", "fully_masked_row"])
def test_sdpa_gradcheck(case):
    rng = np.random.default_rng(8)
    q, k, v = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))
    inputs = [mb.tensor(a, requires_grad=True) for a in (q, k, v)]
    kw = {}
    if case == "bool":
        kw["attn_mask"] = rng.random((3, 4)) > 0.3
        kw["attn_mask"][:, 0] = True
    elif case == "float":
        kw["attn_mask"] = rng.standard_normal((2, 3, 4))
    elif case == "causal":
        kw["is_causal"] = True
    elif case == "fully_masked_row":
        kw["attn_mask"] = np.array([[True, False, True, False], [False] * 4, [True] * 4])
    elif case == "broadcast":
        inputs[1] = mb.tensor(rng.standard_normal((1, 4, 2)), requires_grad=True)
    elif case == "float_mask_grad":
        inputs.append(mb.tensor(rng.standard_normal((3, 4)), requires_grad=True))

    def fn(q, k, v, *m):
        extra = dict(kw)
        if m:
            extra["attn_mask"] = m[0]
        if case == "dropout":
            mb.manual_seed(3)                          # the same dropout mask at every call
            extra["dropout_p"] = 0.3
        if case == "weights":
            return F.scaled_dot_product_attention(q, k, v, return_weights=True, **extra)
        return F.scaled_dot_product_attention(q, k, v, **extra)

    assert mb.gradcheck(fn, *inputs)


def test_sdpa_gradcheck_weights_only_output():
    """Only the weights reach the loss: the op gets no gradient for its first output."""
    rng = np.random.default_rng(9)
    q, k, v = (mb.tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 2), (4, 2), (4, 2)))
    assert mb.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, return_weights=True)[1] * 1.0,
                        q, k, v)


# ============================================================================ fully masked rows

def test_fully_masked_rows_give_zeros_and_finite_gradients(xp_backend):
    xp = xp_backend
    rng = np.random.default_rng(10)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    allowed = rng.random((2, 4, 5)) > 0.4
    allowed[:, :, 0] = True
    allowed[0, 1] = False                              # query 1 of batch 0 sees nothing
    allowed[1, 3] = False
    fm = np.where(allowed, 0.0, -np.inf)               # the same as a float mask
    dead = _fully_masked_rows(allowed)
    for mask in (allowed, fm):
        Q, K, V = (_mb(a, xp) for a in (q, k, v))
        o, p = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, return_weights=True)
        on, pn = _np(o), _np(p)
        assert np.isfinite(on).all() and np.isfinite(pn).all()
        assert (on[dead[..., 0]] == 0).all() and (pn[dead[..., 0]] == 0).all()
        np.testing.assert_allclose(pn.sum(-1)[~dead[..., 0]], 1.0, rtol=1e-12)
        w = rng.standard_normal(o.shape)
        (_dot(o, w) + _dot(p, rng.standard_normal(p.shape))).backward()
        for t in (Q, K, V):
            assert np.isfinite(_np(t.grad)).all()
        assert (_np(Q.grad)[dead[..., 0]] == 0).all()
        # the other rows agree with torch (which gives NaN in the dead rows)
        tq, tk, tv = (_tt(a) for a in (q, k, v))
        tout = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
        live = ~dead[..., 0]
        np.testing.assert_allclose(on[live], tout.detach().numpy()[live], **FWD)


def test_fully_masked_rows_gradients_match_torch_on_live_rows():
    rng = np.random.default_rng(11)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    allowed = rng.random((3, 5)) > 0.3
    allowed[:, 4] = True
    allowed[1] = False
    Q, K, V = (_mb(a, np) for a in (q, k, v))
    o = F.scaled_dot_product_attention(Q, K, V, attn_mask=allowed)
    w = rng.standard_normal(o.shape)
    w[1] = 0.0
    _dot(o, w).backward()
    # torch on the live rows only (dropping query 1 changes nothing for the others)
    live = [0, 2]
    tq, tk, tv = _tt(q[live]), _tt(k), _tt(v)
    tout = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(allowed[live]))
    (tout * torch.tensor(w[live])).sum().backward()
    np.testing.assert_allclose(Q.grad.data[live], tq.grad.numpy(), **GRAD)
    assert (Q.grad.data[1] == 0).all()
    np.testing.assert_allclose(K.grad.data, tk.grad.numpy(), **GRAD)
    np.testing.assert_allclose(V.grad.data, tv.grad.numpy(), **GRAD)


# ============================================================================ errors

def test_sdpa_mask_of_the_wrong_shape_raises_naming_the_shapes():
    q, k, v = mb.randn(2, 5, 4), mb.randn(2, 6, 4), mb.randn(2, 6, 4)
    for bad in (np.ones((6, 5), bool), np.ones((5,), bool), np.zeros((3, 5, 6))):
        with pytest.raises(ValueError) as e:
            F.scaled_dot_product_attention(q, k, v, attn_mask=bad)
        msg = str(e.value)
        assert "scaled_dot_product_attention" in msg and str(tuple(bad.shape)) in msg and "(5, 6)" in msg
    with pytest.raises(TypeError, match="attn_mask must be boolean or floating"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((5, 6), np.int64))


def test_sdpa_bad_shapes_and_options_raise():
    q, k, v = mb.randn(2, 5, 4), mb.randn(2, 6, 4), mb.randn(2, 6, 3)
    with pytest.raises(ValueError, match=r"query has 4 features.*key has 3"):
        F.scaled_dot_product_attention(q, mb.randn(2, 6, 3), v)
    with pytest.raises(ValueError, match=r"key has 6 positions.*value has 7"):
        F.scaled_dot_product_attention(q, k, mb.randn(2, 7, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        F.scaled_dot_product_attention(mb.randn(3, 5, 4), k, v)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.scaled_dot_product_attention(mb.randn(4), k, v)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)


# ============================================================================ MultiheadAttention

def _torch_mha(E, H, seed=0, **kw):
    torch.manual_seed(seed)
    tm = torch.nn.MultiheadAttention(E, H, dtype=torch.float64, **kw)
    with torch.no_grad():                              # torch zeroes the biases: make them count
        for name, p in tm.named_parameters():
            if "bias" in name:
                p.normal_()
    return tm.eval()


def _pair(E, H, xp, **kw):
    tm = _torch_mha(E, H, **kw)
    m = nn.MultiheadAttention(E, H, dtype=np.float64, **kw)
    m.load_state_dict(tm.state_dict())
    m.eval()
    if xp is not np:
        m.to("cuda")
    return m, tm


MHA_CASES = ["self", "self_batch_first", "cross_L!=S", "cross_kv_shared_batch_first", "kpm_bool",
             "kpm_float", "attn_bool_2d", "attn_float_2d", "attn_bool_3d", "attn_float_3d",
             "kpm+attn_bool", "causal_hint", "per_head_weights", "no_weights", "unbatched",
             "unbatched_kpm_attn3d", "kdim_vdim", "no_bias"]


def _mha_setup(case, rng):
    E, H, L, S, N = 8, 2, 5, 5, 3
    ctor = {}
    fwd = {}
    kind = "self"
    if "batch_first" in case:
        ctor["batch_first"] = True
    if case.startswith("cross") or case in ("kpm_bool", "kpm_float", "kpm+attn_bool", "attn_bool_3d",
                                             "attn_float_3d", "unbatched_kpm_attn3d", "kdim_vdim"):
        kind, S = "cross", 7
    if case == "cross_kv_shared_batch_first":
        kind = "kv_shared"
    if case == "kdim_vdim":
        ctor.update(kdim=6, vdim=3)
    if case == "no_bias":
        ctor["bias"] = False
    batched = not case.startswith("unbatched")
    if "kpm" in case:
        kpm = rng.random((N, S) if batched else (S,)) < 0.35
        kpm[..., 0] = False
        fwd["key_padding_mask"] = kpm if case != "kpm_float" else np.where(kpm, -np.inf, rng.standard_normal(kpm.shape))
    if "attn" in case:
        shape = (N * H, L, S) if "3d" in case else (L, S)
        if "unbatched" in case:
            shape = (H, L, S)
        am = rng.random(shape) < 0.3
        am[..., 1] = False
        fwd["attn_mask"] = am if "bool" in case or case == "unbatched_kpm_attn3d" else rng.standard_normal(shape)
    if case == "causal_hint":
        fwd["attn_mask"] = np.triu(np.ones((L, L), bool), 1)
        fwd["is_causal"] = True
    if case == "per_head_weights":
        fwd["average_attn_weights"] = False
    if case == "no_weights":
        fwd["need_weights"] = False
    kdim, vdim = ctor.get("kdim", E), ctor.get("vdim", E)
    if batched:
        qs, ks, vs = ((N, L, E), (N, S, kdim), (N, S, vdim)) if ctor.get("batch_first") else \
            ((L, N, E), (S, N, kdim), (S, N, vdim))
    else:
        qs, ks, vs = (L, E), (S, kdim), (S, vdim)
    return E, H, ctor, fwd, kind, qs, ks, vs


@pytest.mark.parametrize("case", MHA_CASES)
def test_mha_matches_torch(case, xp_backend):
    xp = xp_backend
    rng = np.random.default_rng(20)
    E, H, ctor, fwd, kind, qs, ks, vs = _mha_setup(case, rng)
    m, tm = _pair(E, H, xp, **ctor)
    q = rng.standard_normal(qs)
    k, v = rng.standard_normal(ks), rng.standard_normal(vs)
    if kind == "self":
        Q = _mb(q, xp)
        K = V = Q
        tq = _tt(q)
        tk = tv = tq
    elif kind == "kv_shared":
        Q, K = _mb(q, xp), _mb(k, xp)
        V = K
        tq, tk = _tt(q), _tt(k)
        tv = tk
    else:
        Q, K, V = _mb(q, xp), _mb(k, xp), _mb(v, xp)
        tq, tk, tv = _tt(q), _tt(k), _tt(v)
    tfwd = {key: (torch.tensor(val) if isinstance(val, np.ndarray) else val) for key, val in fwd.items()}
    out, w = m(Q, K, V, **fwd)                         # masks stay host arrays: the layer moves them
    tout, tw = tm(tq, tk, tv, **tfwd)
    assert B.get_array_module(out.data) is xp
    np.testing.assert_allclose(_np(out), tout.detach().numpy(), err_msg="output", **FWD)
    if fwd.get("need_weights", True):
        assert w.shape == tuple(tw.shape)
        np.testing.assert_allclose(_np(w), tw.detach().numpy(), err_msg="weights", **FWD)
    else:
        assert w is None and tw is None
    g = rng.standard_normal(out.shape)
    loss, tloss = _dot(out, g), (tout * torch.tensor(g)).sum()
    if w is not None:
        gw = rng.standard_normal(w.shape)
        loss, tloss = loss + _dot(w, gw), tloss + (tw * torch.tensor(gw)).sum()
    loss.backward()
    tloss.backward()
    tparams = dict(tm.named_parameters())
    names = [n for n, _ in m.named_parameters()]
    assert sorted(names) == sorted(tparams)
    for name, p in m.named_parameters():
        assert B.get_array_module(p.grad.data) is xp
        np.testing.assert_allclose(_np(p.grad), tparams[name].grad.numpy(), err_msg=name, **GRAD)
    for name, a, t in (("query", Q, tq), ("key", K, tk), ("value", V, tv)):
        np.testing.assert_allclose(_np(a.grad), t.grad.numpy(), err_msg=name, **GRAD)


@pytest.mark.parametrize("ctor", [{}, {"bias": False}, {"kdim": 6, "vdim": 3}, {"batch_first": True}])
def test_mha_state_dict_keys_and_shapes_equal_torch(ctor):
    tm = torch.nn.MultiheadAttention(8, 2, **ctor)
    m = nn.MultiheadAttention(8, 2, **ctor)
    sd, tsd = m.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    assert all(tuple(sd[k].shape) == tuple(tsd[k].shape) for k in sd)
    assert all(sd[k].dtype == np.float32 for k in sd)


def test_mha_initialisation_follows_torch():
    mb.manual_seed(0)
    E = 64
    m = nn.MultiheadAttention(E, 4)
    w = m.in_proj_weight.data
    bound = math.sqrt(6 / (E + 3 * E))                 # xavier on the (3E, E) matrix
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert not m.in_proj_bias.data.any() and not m.out_proj.bias.data.any()
    wo = m.out_proj.weight.data                        # kaiming uniform, a = sqrt(5): U(-1/sqrt(E), 1/sqrt(E))
    assert np.abs(wo).max() <= 1 / math.sqrt(E) and np.abs(wo).max() > 0.95 / math.sqrt(E)
    m2 = nn.MultiheadAttention(E, 4, kdim=16, vdim=32)
    b = math.sqrt(6 / (16 + E))
    assert np.abs(m2.k_proj_weight.data).max() <= b and np.abs(m2.k_proj_weight.data).max() > 0.9 * b


def test_mha_is_causal_without_a_mask_applies_the_causal_mask():
    rng = np.random.default_rng(21)
    m = nn.MultiheadAttention(8, 2, dtype=np.float64).eval()
    x = mb.tensor(rng.standard_normal((5, 2, 8)))
    a, wa = m(x, x, x, is_causal=True)
    b, wb = m(x, x, x, attn_mask=np.triu(np.ones((5, 5), bool), 1))
    np.testing.assert_allclose(a.data, b.data, **FWD)
    np.testing.assert_allclose(wa.data, wb.data, **FWD)
    assert (np.triu(wa.data[0], 1) == 0).all()


def test_mha_dropout_only_in_training_mode():
    rng = np.random.default_rng(22)
    m = nn.MultiheadAttention(8, 2, dropout=0.5, dtype=np.float64)
    x = mb.tensor(rng.standard_normal((6, 2, 8)))
    m.train()
    o1, w1 = m(x, x, x, average_attn_weights=False)
    o2, _ = m(x, x, x)
    assert not np.allclose(o1.data, o2.data)
    assert 0.3 < (w1.data == 0).mean() < 0.7           # dropped weights are returned as used
    m.eval()
    e1, we = m(x, x, x, average_attn_weights=False)
    e2, _ = m(x, x, x)
    np.testing.assert_array_equal(e1.data, e2.data)
    kept = w1.data != 0
    np.testing.assert_allclose(w1.data[kept], 2 * we.data[kept], rtol=1e-12)


def test_mha_fully_padded_sequence_gives_finite_output():
    rng = np.random.default_rng(23)
    m = nn.MultiheadAttention(8, 2, dtype=np.float64).eval()
    with mb.no_grad():
        m.out_proj.bias.data = rng.standard_normal(8)
    q = mb.tensor(rng.standard_normal((4, 2, 8)), requires_grad=True)
    kv = mb.tensor(rng.standard_normal((3, 2, 8)), requires_grad=True)
    kpm = np.array([[False, False, True], [True, True, True]])   # batch 1: every key is padding
    out, w = m(q, kv, kv, key_padding_mask=kpm)
    assert np.isfinite(out.data).all() and np.isfinite(w.data).all()
    np.testing.assert_allclose(out.data[:, 1], np.broadcast_to(m.out_proj.bias.data, (4, 8)), rtol=1e-14)
    assert not w.data[1].any()
    out.sum().backward()
    assert np.isfinite(q.grad.data).all() and np.isfinite(kv.grad.data).all()
    assert not q.grad.data[:, 1].any()


def test_mha_bad_masks_and_shapes_raise():
    m = nn.MultiheadAttention(8, 2)
    q, kv = mb.randn(5, 3, 8), mb.randn(7, 3, 8)
    with pytest.raises(ValueError, match=r"MultiheadAttention: attn_mask has shape \(7, 5\), expected \(L, S\) = \(5, 7\)"):
        m(q, kv, kv, attn_mask=np.zeros((7, 5), bool))
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 5, 7\).*\(6, 5, 7\)"):
        m(q, kv, kv, attn_mask=np.zeros((3, 5, 7), bool))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(7, 3\), expected \(N, S\) = \(3, 7\)"):
        m(q, kv, kv, key_padding_mask=np.zeros((7, 3), bool))
    with pytest.raises(TypeError, match="key_padding_mask must be boolean or floating"):
        m(q, kv, kv, key_padding_mask=np.zeros((3, 7), np.int64))
    with pytest.raises(ValueError, match="query has 6 features but embed_dim is 8"):
        m(mb.randn(5, 3, 6), kv, kv)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)


# ============================================================================ the real GPU

@pytest.mark.gpu
def test_attention_on_cupy_matches_numpy():
    if not B.cupy_available():
        pytest.skip("CuPy or a GPU is not available")
    import cupy
    rng = np.random.default_rng(30)
    q, k, v = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 6, 4)), rng.standard_normal((2, 2, 6, 3))
    allowed = rng.random((5, 6)) > 0.3
    allowed[:, 0] = True
    res = []
    for name in ("numpy", "cupy"):
        with B.backend(name):
            xp = B.array_module(name)
            Q, K, V = (_mb(a, xp) for a in (q, k, v))
            o = F.scaled_dot_product_attention(Q, K, V, attn_mask=allowed, is_causal=True)
            _dot(o, np.ones(o.shape)).backward()
            if name == "cupy":
                assert isinstance(o.data, cupy.ndarray) and isinstance(Q.grad.data, cupy.ndarray)
            res.append([_np(t) for t in (o, Q.grad, K.grad, V.grad)])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
