"""Transformer encoder/decoder layers and stacks against ``torch.nn`` (float64, eval mode):
outputs and the gradients of every parameter and input, for post-LN and pre-LN, ReLU and GELU,
both layouts, padding and causal masks; state-dict names; deep-copied stacks; devices.

PyTorch's inference "fast path" (fused kernels and, in ``TransformerEncoder``, nested tensors
that return zeros at padded positions) is switched off for the oracle comparisons with
``torch.backends.mha.set_fastpath_enabled(False)`` (inputs that require grad switch it off
too).  One test runs it on purpose, under ``no_grad``, and compares the non-padded positions.
"""
import copy

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import nn
from minibidir.nn.transformer import _detect_is_causal_mask

torch = pytest.importorskip("torch")

D, H, FF = 8, 2, 12          # d_model, heads, feed-forward width
S, T, N = 5, 4, 3            # source length, target length, batch


@pytest.fixture(autouse=True)
def no_torch_fastpath():
    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    yield
    torch.backends.mha.set_fastpath_enabled(old)


# ----------------------------------------------------------------------------- helpers

def _randomize(tmod, seed=0):
    """Random weights everywhere (biases and norm affines too, so none hides at 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tmod.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            is_norm_gain = name.endswith(("norm1.weight", "norm2.weight", "norm3.weight")) or name == "norm.weight"
            p.copy_(1 + 0.2 * r if is_norm_gain else 0.4 * r)
    return tmod


def _pair(t_factory, m_factory, seed=0):
    """A torch module (float64, random weights, eval) and the minibidir one holding its weights."""
    torch.manual_seed(seed)
    tmod = _randomize(t_factory().double(), seed).eval()
    mmod = m_factory().double().eval()
    assert list(mmod.state_dict()) == list(tmod.state_dict()), "state-dict names or order differ"
    mmod.load_state_dict(tmod.state_dict())
    return tmod, mmod


def _host(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _layout(seq, batch_first):
    return (N, seq, D) if batch_first else (seq, N, D)


def _padding(length):
    """(N, length) boolean, True at padding: example n has its last n positions padded."""
    m = np.zeros((N, length), dtype=bool)
    for n in range(N):
        if n:
            m[n, length - n:] = True
    return m


def _compare(tmod, mmod, t_call, m_call, inputs, *, xp=np, rtol=1e-9, atol=1e-11, keep=None):
    """Run both modules on the same float64 ``inputs`` (dict of host arrays), backpropagate the
    same random weighting of the output, and compare the output, every input gradient and
    every parameter gradient.  ``keep``: a boolean mask of output positions to compare
    (default all)."""
    tin = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    min_ = {k: mb.tensor(v if xp is np else xp.asarray(v), requires_grad=True) for k, v in inputs.items()}
    tout = t_call(tmod, tin)
    mout = m_call(mmod, min_)
    assert mout.shape == tuple(tout.shape) and mout.dtype == np.float64
    assert B.get_array_module(mout.data) is xp
    w = _host(mout.shape, 99)
    if keep is not None:
        w = w * keep
    (tout * torch.tensor(w)).sum().backward()
    (mout * mb.tensor(w if xp is np else xp.asarray(w))).sum().backward()
    got, want = mout.numpy(), tout.detach().numpy()
    if keep is not None:
        got, want = got * keep, want * keep
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg="output")
    for k in inputs:
        np.testing.assert_allclose(min_[k].grad.numpy(), tin[k].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {k}")
    tgrads = {k: p.grad for k, p in tmod.named_parameters()}
    mparams = dict(mmod.named_parameters())
    assert set(mparams) == set(tgrads)
    for k, p in mparams.items():
        assert tgrads[k] is not None and p.grad is not None, f"no gradient for {k}"
        assert B.get_array_module(p.grad.data) is xp
        np.testing.assert_allclose(p.grad.numpy(), tgrads[k].numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of parameter {k}")
    return mout


def _masks(kind, length, torch_side):
    """(attn_mask, key_padding_mask) for mask kind 'none' | 'padding' | 'causal' | 'both'."""
    am = kpm = None
    if kind in ("causal", "both"):
        am = (torch.nn.Transformer.generate_square_subsequent_mask(length, dtype=torch.float64)
              if torch_side else nn.generate_square_subsequent_mask(length, dtype=np.float64))
    if kind in ("padding", "both"):
        p = _padding(length)
        # torch warns when a boolean padding mask meets a float attn_mask: give it the float form
        kpm = (torch.zeros(p.shape, dtype=torch.float64).masked_fill(torch.tensor(p), float("-inf"))
               if torch_side and am is not None else torch.tensor(p) if torch_side else p)
    return am, kpm


# ----------------------------------------------------------------------------- the encoder layer

ENC_KW = dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1)


@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first, masks):
    kw = dict(ENC_KW, activation=activation, batch_first=batch_first, norm_first=norm_first)
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoderLayer(**kw), lambda: nn.TransformerEncoderLayer(**kw))
    t_am, t_kpm = _masks(masks, S, True)
    m_am, m_kpm = _masks(masks, S, False)
    _compare(tmod, mmod,
             lambda m, i: m(i["src"], src_mask=t_am, src_key_padding_mask=t_kpm, is_causal=t_am is not None),
             lambda m, i: m(i["src"], src_mask=m_am, src_key_padding_mask=m_kpm, is_causal=m_am is not None),
             {"src": _host(_layout(S, batch_first), 1)})


def test_encoder_layer_without_bias_and_with_a_callable_activation():
    kw = dict(ENC_KW, bias=False)
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoderLayer(**kw, activation=torch.nn.GELU("tanh")),
                       lambda: nn.TransformerEncoderLayer(**kw, activation=nn.GELU("tanh")))
    assert not any("bias" in k for k in mmod.state_dict())
    _compare(tmod, mmod, lambda m, i: m(i["src"]), lambda m, i: m(i["src"]), {"src": _host((S, N, D), 2)})
    kw = dict(ENC_KW, activation=lambda x: x.tanh())
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoderLayer(**kw), lambda: nn.TransformerEncoderLayer(**kw))
    _compare(tmod, mmod, lambda m, i: m(i["src"]), lambda m, i: m(i["src"]), {"src": _host((S, N, D), 3)})


def test_encoder_layer_unbatched_input_and_3d_attn_mask():
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoderLayer(**ENC_KW),
                       lambda: nn.TransformerEncoderLayer(**ENC_KW))
    _compare(tmod, mmod, lambda m, i: m(i["src"]), lambda m, i: m(i["src"]), {"src": _host((S, D), 4)})
    am = _host((N * H, S, S), 5)                  # a float mask per (example, head)
    _compare(tmod, mmod, lambda m, i: m(i["src"], src_mask=torch.tensor(am)),
             lambda m, i: m(i["src"], src_mask=am), {"src": _host((S, N, D), 6)})


def test_encoder_layer_is_the_documents_formulas():
    """Post-LN with ReLU: LayerNorm(x + MultiHead(x)), then LayerNorm(y + FFN(y)) with
    FFN(y) = max(0, y W1 + b1) W2 + b2, written out with primitive ops."""
    mb.manual_seed(3)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0).double().eval()
    x = mb.tensor(_host((S, N, D), 7))
    sa = layer.self_attn(x, x, x, need_weights=False)[0]
    y = mb.F.layer_norm(x + sa, D, layer.norm1.weight, layer.norm1.bias)
    W1, b1, W2, b2 = (t.numpy() for t in (layer.linear1.weight, layer.linear1.bias,
                                          layer.linear2.weight, layer.linear2.bias))
    ffn = np.maximum(0, y.numpy() @ W1.T + b1) @ W2.T + b2
    z = y.numpy() + ffn
    mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
    want = (z - mu) / np.sqrt(var + 1e-5) * layer.norm2.weight.numpy() + layer.norm2.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-12, atol=1e-12)


def test_encoder_layer_gradcheck():
    mb.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation="gelu").double().eval()
    x = mb.tensor(_host((3, 2, 4), 8), requires_grad=True)
    params = list(layer.parameters())
    kpm = np.array([[False, False, True], [False, False, False]])
    assert mb.gradcheck(lambda a, *ps: layer(a, src_key_padding_mask=kpm), x, *params)


# ----------------------------------------------------------------------------- the fused feed-forward node

def _ffn_params(bias, seed=0, device=None):
    rng = np.random.default_rng(seed)
    w1, w2 = rng.standard_normal((FF, D)) * 0.4, rng.standard_normal((D, FF)) * 0.4
    b1, b2 = (rng.standard_normal(FF) * 0.4, rng.standard_normal(D) * 0.4) if bias else (None, None)
    return [None if a is None else mb.tensor(a, requires_grad=True, device=device) for a in (w1, b1, w2, b2)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_fused_feed_forward_equals_the_composed_ops(activation, p, bias, xp_backend):
    """FeedForward (one node) against Linear, activation, Dropout, Linear as four nodes: the same
    random draws, bit-for-bit the same output and gradients of x, W1, b1, W2, b2 - on every
    backend (NumPy, the stand-in device, CuPy when present)."""
    from minibidir.nn.transformer import feed_forward
    act = mb.F.relu if activation == "relu" else mb.F.gelu
    dev = "cpu" if xp_backend is np else "cuda"
    x0 = _host((S, N, D), 20)
    g = _host((S, N, D), 21)
    results = []
    for fused in (True, False):
        mb.manual_seed(5)
        x = mb.tensor(x0, requires_grad=True, device=dev)
        w1, b1, w2, b2 = _ffn_params(bias, device=dev)
        if fused:
            y = feed_forward(x, w1, b1, w2, b2, activation=activation, dropout=p)
        else:
            y = mb.F.linear(mb.F.dropout(act(mb.F.linear(x, w1, b1)), p), w2, b2)
        y.backward(mb.tensor(g, device=dev))
        assert B.get_array_module(y.data) is xp_backend and B.get_array_module(x.grad.data) is xp_backend
        results.append([y] + [t.grad for t in (x, w1, b1, w2, b2) if t is not None])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    if p == 1.0:
        assert not results[0][1].numpy().any()        # everything dropped: no gradient reaches x
    else:
        assert results[0][1].numpy().any()


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_fused_feed_forward_gradcheck(activation):
    from minibidir.nn.transformer import feed_forward
    x = mb.tensor(_host((3, 2, D), 22), requires_grad=True)
    w1, b1, w2, b2 = _ffn_params(True, seed=1)

    def f(x, w1, b1, w2, b2):
        mb.manual_seed(7)                              # the same dropout mask at every evaluation
        return feed_forward(x, w1, b1, w2, b2, activation=activation, dropout=0.3)
    assert mb.gradcheck(f, x, w1, b1, w2, b2)


def test_layer_runs_the_fused_node_and_matches_the_composed_path_in_training():
    for cls, args in ((nn.TransformerEncoderLayer, 1), (nn.TransformerDecoderLayer, 2)):
        mb.manual_seed(0)
        layer = cls(D, H, FF, dropout=0.2, activation="relu").double()
        inputs = [_host((S, N, D), 23 + i) for i in range(args)]
        outs = []
        for fused in (True, False):
            layer.fused_ffn = fused
            layer.zero_grad()
            mb.manual_seed(11)
            xs = [mb.tensor(a, requires_grad=True) for a in inputs]
            y = layer(*xs)
            y.backward(mb.tensor(_host(y.shape, 30)))
            outs.append([y.numpy()] + [t.grad.numpy() for t in xs] + [p.grad.numpy() for p in layer.parameters()])
        for a, b in zip(*outs):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    layer = nn.TransformerEncoderLayer(D, H, FF)
    x = mb.tensor(_host((S, N, D), 31).astype(np.float32), requires_grad=True)
    layer.eval()
    assert type(layer._ff_block(x).grad_fn).__name__ == "FeedForward"
    assert type(nn.TransformerEncoderLayer(D, H, FF, activation=nn.GELU("tanh")).eval()._ff_block(x)
                .grad_fn).__name__ == "Linear"        # other activations: the composed ops


# ----------------------------------------------------------------------------- the decoder layer

@pytest.mark.parametrize("masks", ["none", "all"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first, activation, batch_first, masks):
    kw = dict(ENC_KW, activation=activation, batch_first=batch_first, norm_first=norm_first)
    tmod, mmod = _pair(lambda: torch.nn.TransformerDecoderLayer(**kw), lambda: nn.TransformerDecoderLayer(**kw))
    if masks == "all":
        t_am, t_tkpm = _masks("both", T, True)
        m_am, m_tkpm = _masks("both", T, False)
        mkpm = _padding(S)
        mm = np.zeros((T, S), dtype=bool)
        mm[0, 1] = mm[2, 0] = True                    # a few forbidden (query, memory) pairs
        targs = dict(tgt_mask=t_am, tgt_key_padding_mask=t_tkpm, memory_mask=torch.tensor(mm),
                     memory_key_padding_mask=torch.tensor(mkpm), tgt_is_causal=True)
        margs = dict(tgt_mask=m_am, tgt_key_padding_mask=m_tkpm, memory_mask=mm,
                     memory_key_padding_mask=mkpm, tgt_is_causal=True)
    else:
        targs = margs = {}
    _compare(tmod, mmod, lambda m, i: m(i["tgt"], i["memory"], **targs),
             lambda m, i: m(i["tgt"], i["memory"], **margs),
             {"tgt": _host(_layout(T, batch_first), 1), "memory": _host(_layout(S, batch_first), 2)})


def test_decoder_layer_state_dict_names():
    layer = nn.TransformerDecoderLayer(D, H, FF)
    tl = torch.nn.TransformerDecoderLayer(D, H, FF)
    assert list(layer.state_dict()) == list(tl.state_dict())
    for k in ("self_attn.in_proj_weight", "multihead_attn.in_proj_weight", "multihead_attn.out_proj.bias",
              "linear1.weight", "linear2.weight", "norm1.weight", "norm2.weight", "norm3.bias"):
        assert k in layer.state_dict()
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in tl.state_dict().items()}


# ----------------------------------------------------------------------------- stacks

@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_matches_torch(norm_first, batch_first, final_norm):
    kw = dict(ENC_KW, batch_first=batch_first, norm_first=norm_first, activation="gelu")

    def t_factory():
        return torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**kw), 2,
                                           norm=torch.nn.LayerNorm(D) if final_norm else None,
                                           enable_nested_tensor=False)

    def m_factory():
        return nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), 2,
                                     norm=nn.LayerNorm(D) if final_norm else None)

    tmod, mmod = _pair(t_factory, m_factory)
    keys = list(mmod.state_dict())
    assert keys[0] == "layers.0.self_attn.in_proj_weight" and "layers.1.norm2.bias" in keys
    assert ("norm.weight" in keys) == final_norm
    t_am, t_kpm = _masks("both", S, True)
    m_am, m_kpm = _masks("both", S, False)
    _compare(tmod, mmod, lambda m, i: m(i["src"], mask=t_am, src_key_padding_mask=t_kpm),
             lambda m, i: m(i["src"], mask=m_am, src_key_padding_mask=m_kpm),
             {"src": _host(_layout(S, batch_first), 3)})


@pytest.mark.parametrize("final_norm", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_matches_torch(norm_first, batch_first, final_norm):
    kw = dict(ENC_KW, batch_first=batch_first, norm_first=norm_first)
    tmod, mmod = _pair(
        lambda: torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**kw), 2,
                                            norm=torch.nn.LayerNorm(D) if final_norm else None),
        lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(**kw), 2,
                                      norm=nn.LayerNorm(D) if final_norm else None))
    assert ("norm.bias" in mmod.state_dict()) == final_norm
    t_am, t_kpm = _masks("both", T, True)
    m_am, m_kpm = _masks("both", T, False)
    mkpm = _padding(S)
    _compare(tmod, mmod,
             lambda m, i: m(i["tgt"], i["memory"], tgt_mask=t_am, tgt_key_padding_mask=t_kpm,
                            memory_key_padding_mask=torch.tensor(mkpm)),
             lambda m, i: m(i["tgt"], i["memory"], tgt_mask=m_am, tgt_key_padding_mask=m_kpm,
                            memory_key_padding_mask=mkpm),
             {"tgt": _host(_layout(T, batch_first), 5), "memory": _host(_layout(S, batch_first), 6)})


def test_encoder_decoder_end_to_end_gradients_reach_the_source():
    """memory = encoder(src); out = decoder(tgt, memory): the source gets its gradient through
    every layer's cross-attention."""
    ekw = dict(ENC_KW, norm_first=True)
    tenc, menc = _pair(lambda: torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**ekw), 2,
                                                           norm=torch.nn.LayerNorm(D), enable_nested_tensor=False),
                       lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(**ekw), 2, norm=nn.LayerNorm(D)))
    tdec, mdec = _pair(lambda: torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**ENC_KW), 2),
                       lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(**ENC_KW), 2), seed=1)
    both_t = torch.nn.ModuleDict({"enc": tenc, "dec": tdec})
    both_m = nn.ModuleDict({"enc": menc, "dec": mdec})
    t_am = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    m_am = nn.generate_square_subsequent_mask(T, dtype=np.float64)
    _compare(both_t, both_m, lambda m, i: m["dec"](i["tgt"], m["enc"](i["src"]), tgt_mask=t_am),
             lambda m, i: m["dec"](i["tgt"], m["enc"](i["src"]), tgt_mask=m_am),
             {"src": _host((S, N, D), 7), "tgt": _host((T, N, D), 8)})


def test_stack_layers_are_independent_deep_copies():
    mb.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF)
    enc = nn.TransformerEncoder(layer, 3)
    assert len(enc.layers) == 3 and enc.num_layers == 3
    assert all(lay is not layer for lay in enc.layers)
    w = [lay.linear1.weight for lay in enc.layers]
    assert len({id(p) for p in w} | {id(layer.linear1.weight)}) == 4
    for p in w:                                   # identical copies of the template's weights
        np.testing.assert_array_equal(p.numpy(), layer.linear1.weight.numpy())
    enc.layers[0].linear1.weight.data[0, 0] += 1.0
    assert enc.layers[1].linear1.weight.numpy()[0, 0] == layer.linear1.weight.numpy()[0, 0]
    assert len(list(enc.parameters())) == 3 * len(list(layer.parameters()))
    # copy.deepcopy of any Module gives an equal, unshared module
    c = copy.deepcopy(enc)
    for (k, a), (k2, b) in zip(enc.state_dict().items(), c.state_dict().items()):
        assert k == k2 and a is not b
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="num_layers"):
        nn.TransformerEncoder(layer, 0)


# ----------------------------------------------------------------------------- masks and hints

def test_generate_square_subsequent_mask_matches_torch():
    for sz in (1, 4, 7):
        want = torch.nn.Transformer.generate_square_subsequent_mask(sz).numpy()
        got = nn.generate_square_subsequent_mask(sz)
        assert got.dtype == np.float32 and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), want)
    m = nn.generate_square_subsequent_mask(3, dtype=np.float64).numpy()
    assert m.dtype == np.float64 and np.isneginf(m[0, 1]) and m[1, 0] == 0 and m[2, 2] == 0
    with pytest.raises(ValueError, match="non-negative"):
        nn.generate_square_subsequent_mask(-1)


def test_causal_hint_detection_and_is_causal_without_a_mask():
    causal = nn.generate_square_subsequent_mask(4)
    assert _detect_is_causal_mask(causal, None, 4)
    assert _detect_is_causal_mask(np.triu(np.ones((4, 4), bool), 1), None, 4)
    assert not _detect_is_causal_mask(causal, None, 5)
    assert not _detect_is_causal_mask(np.zeros((4, 4)), None, 4)
    assert not _detect_is_causal_mask(None, None, 4)
    assert _detect_is_causal_mask(None, True, 4) and not _detect_is_causal_mask(causal, False, 4)
    # is_causal=True with no mask applies the causal mask (PyTorch raises instead)
    mb.manual_seed(1)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0).double()
    x = mb.tensor(_host((S, N, D), 9))
    a = layer(x, is_causal=True).numpy()
    b = layer(x, src_mask=nn.generate_square_subsequent_mask(S, dtype=np.float64)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    assert not np.allclose(a, layer(x).numpy())
    # causality: changing the last position leaves the earlier outputs unchanged
    x2 = x.numpy().copy()
    x2[-1] += 1.0
    c = layer(mb.tensor(x2), is_causal=True).numpy()
    np.testing.assert_allclose(c[:-1], a[:-1], rtol=1e-13, atol=1e-14)
    dec = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0).double()
    mem = mb.tensor(_host((S, N, D), 10))
    tgt = mb.tensor(_host((T, N, D), 11))
    np.testing.assert_allclose(
        dec(tgt, mem, tgt_is_causal=True).numpy(),
        dec(tgt, mem, tgt_mask=nn.generate_square_subsequent_mask(T, dtype=np.float64)).numpy(), rtol=1e-13)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_torch_fastpath_zeroes_padding_we_compare_only_real_positions():
    """Under no_grad in eval mode PyTorch's TransformerEncoder turns the batch into a nested
    tensor and returns 0 at padded positions; minibidir computes them like any position.  The
    real positions agree."""
    torch.backends.mha.set_fastpath_enabled(True)
    kw = dict(ENC_KW, batch_first=True)
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**kw), 2),
                       lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), 2))
    x = _host((N, S, D), 12)
    pad = _padding(S)
    with torch.no_grad():
        want = tmod(torch.tensor(x), src_key_padding_mask=torch.tensor(pad)).numpy()
    with mb.no_grad():
        got = mmod(mb.tensor(x), src_key_padding_mask=pad).numpy()
    assert (want[pad] == 0).all()                  # the fast path ran
    assert np.isfinite(got).all() and (got[pad] != 0).all()
    np.testing.assert_allclose(got[~pad], want[~pad], rtol=1e-9, atol=1e-11)


# ----------------------------------------------------------------------------- modes and errors

def test_dropout_is_active_in_training_mode_only():
    mb.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.3).double()
    x = mb.tensor(_host((S, N, D), 13))
    a, b = layer(x).numpy(), layer(x).numpy()
    assert not np.allclose(a, b)                   # training: two dropout draws
    layer.eval()
    e1, e2 = layer(x).numpy(), layer(x).numpy()
    np.testing.assert_array_equal(e1, e2)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0).double()
    ref.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(e1, ref(x).numpy(), rtol=1e-14)   # dropout=0 in training == eval


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="activation should be 'relu', 'gelu' or a callable"):
        nn.TransformerEncoderLayer(D, H, activation="swish")
    with pytest.raises(TypeError, match="activation"):
        nn.TransformerDecoderLayer(D, H, activation=3)
    with pytest.raises(ValueError, match="divisible"):
        nn.TransformerEncoderLayer(10, 3)
    layer = nn.TransformerEncoderLayer(D, H, FF)
    with pytest.raises(ValueError, match="embed_dim"):
        layer(mb.zeros(S, N, D + 1))


def test_default_construction_and_repr():
    layer = nn.TransformerEncoderLayer(16, 4)
    assert layer.linear1.weight.shape == (2048, 16) and layer.dropout.p == 0.1
    assert layer.norm1.eps == 1e-5 and not layer.norm_first and layer.self_attn.batch_first is False
    assert layer.linear1.weight.dtype == np.float32
    assert "TransformerEncoderLayer" in repr(nn.TransformerEncoder(layer, 2))
    d64 = nn.TransformerDecoderLayer(16, 4, 32, dtype=np.float64)
    assert all(p.dtype == np.float64 for p in d64.parameters())


# ----------------------------------------------------------------------------- devices

def test_encoder_stack_and_decoder_on_the_standin_device():
    """The same computation with every parameter, input and mask on the stand-in device
    (which refuses any host array): values and gradients equal PyTorch's."""
    kw = dict(ENC_KW, batch_first=True, norm_first=True)
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**kw), 2,
                                                           norm=torch.nn.LayerNorm(D), enable_nested_tensor=False),
                       lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), 2, norm=nn.LayerNorm(D)))
    tdec, mdec = _pair(lambda: torch.nn.TransformerDecoderLayer(**ENC_KW),
                       lambda: nn.TransformerDecoderLayer(**ENC_KW))
    t_am = torch.nn.Transformer.generate_square_subsequent_mask(S, dtype=torch.float64)
    pad = _padding(S)
    t_tm = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    with B.backend("standin"):
        from minibidir import standin
        mmod.to("cuda")
        mdec.to("cuda")
        assert all(p.device == "cuda" for p in mmod.parameters())
        m_am = nn.generate_square_subsequent_mask(S, dtype=np.float64)
        m_pad = mb.tensor(pad, device="cuda")
        assert m_am.device == "cuda"
        assert nn.generate_square_subsequent_mask(S, device="cpu").device == "cpu"
        t_pad = torch.zeros(pad.shape, dtype=torch.float64).masked_fill(torch.tensor(pad), float("-inf"))
        _compare(tmod, mmod, lambda m, i: m(i["src"], mask=t_am, src_key_padding_mask=t_pad),
                 lambda m, i: m(i["src"], mask=m_am, src_key_padding_mask=m_pad),
                 {"src": _host((N, S, D), 14)}, xp=standin)
        m_tm = nn.generate_square_subsequent_mask(T, dtype=np.float64)
        _compare(tdec, mdec, lambda m, i: m(i["tgt"], i["memory"], tgt_mask=t_tm),
                 lambda m, i: m(i["tgt"], i["memory"], tgt_mask=m_tm, tgt_is_causal=True),
                 {"tgt": _host((T, N, D), 15), "memory": _host((S, N, D), 16)}, xp=standin)
        # a deep copy of a device module stays on the device
        enc2 = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw).to("cuda"), 2)
        assert all(p.device == "cuda" for p in enc2.parameters())
        with pytest.raises(TypeError, match="host"):
            mmod(mb.tensor(_host((N, S, D), 17), device="cpu"))     # a host input to a device model


@pytest.mark.gpu
def test_transformer_on_the_gpu():
    if not B.cupy_available():
        pytest.skip("CuPy or a GPU is not available")
    import cupy
    kw = dict(ENC_KW, batch_first=True)
    tmod, mmod = _pair(lambda: torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**kw), 2,
                                                           enable_nested_tensor=False),
                       lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), 2))
    tdec, mdec = _pair(lambda: torch.nn.TransformerDecoderLayer(**kw), lambda: nn.TransformerDecoderLayer(**kw))
    pad = _padding(S)
    t_tm = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    with B.backend("cupy"):
        mmod.to("cuda")
        mdec.to("cuda")
        _compare(tmod, mmod, lambda m, i: m(i["src"], src_key_padding_mask=torch.tensor(pad)),
                 lambda m, i: m(i["src"], src_key_padding_mask=mb.tensor(pad, device="cuda")),
                 {"src": _host((N, S, D), 18)}, xp=cupy, rtol=1e-8, atol=1e-10)
        m_tm = nn.generate_square_subsequent_mask(T, dtype=np.float64)
        assert isinstance(m_tm.data, cupy.ndarray)
        _compare(tdec, mdec, lambda m, i: m(i["tgt"], i["memory"], tgt_mask=t_tm),
                 lambda m, i: m(i["tgt"], i["memory"], tgt_mask=m_tm),
                 {"tgt": _host((N, T, D), 19), "memory": _host((N, S, D), 20)}, xp=cupy, rtol=1e-8, atol=1e-10)
