"""The document's bidirectional models (§4 formulas, §5 listings): each matched against the
listing written in PyTorch where one exists (same weights through state dicts, float64, values
and the gradients of every parameter and input), each formula checked directly (direction
halves, independence of the future / past by perturbation), gradient checks, training on toy
tasks, beam search and reranking, and the stand-in device.

PyTorch is a test oracle only.  Its inference fast path is switched off for the Transformer
comparisons.
"""
import math

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import functional as F
from minibidir import nn
from minibidir import optim
from minibidir.models import (BiLSTMDecoder, BiLSTMEncoder, BiTransformerDecoder, BiTransformerEncoder,
                              Hypothesis, Seq2SeqBiTransformer, beam_search, bi_cross_attention,
                              bi_self_attention, bidirectional_cross_attention, bidirectional_self_attention,
                              greedy_search, rerank)
from minibidir.models.bidirectional import (anticausal_mask, attention_composed, causal_mask, count_parameters,
                                            encoder_layer_parameters, split_directions)
from minibidir.nn.recurrent import lstm_cell

torch = pytest.importorskip("torch")
tnn = torch.nn
TF = torch.nn.functional


@pytest.fixture(autouse=True)
def no_torch_fastpath():
    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    yield
    torch.backends.mha.set_fastpath_enabled(old)


# ----------------------------------------------------------------------------- the listings, in PyTorch

class TorchBiLSTMEncoder(tnn.Module):                     # §5.1.1 as printed
    def __init__(self, input_size, hidden_size):
        super(TorchBiLSTMEncoder, self).__init__()
        self.hidden_size = hidden_size
        self.lstm = tnn.LSTM(input_size, hidden_size, bidirectional=True)

    def forward(self, input):
        output, (hidden, cell) = self.lstm(input)
        return output, hidden


class TorchBiTransformerEncoder(tnn.Module):              # §5.1.2 as printed (plus dim_feedforward)
    def __init__(self, d_model, nhead, num_layers, dim_feedforward=2048):
        super(TorchBiTransformerEncoder, self).__init__()
        encoder_layer = tnn.TransformerEncoderLayer(d_model, nhead, dim_feedforward)
        self.transformer_encoder = tnn.TransformerEncoder(encoder_layer, num_layers, enable_nested_tensor=False)

    def forward(self, src):
        output = self.transformer_encoder(src)
        return output


class TorchBiTransformerDecoder(tnn.Module):              # §5.2.2 as printed (plus dim_feedforward)
    def __init__(self, d_model, nhead, num_layers, dim_feedforward=2048):
        super(TorchBiTransformerDecoder, self).__init__()
        decoder_layer = tnn.TransformerDecoderLayer(d_model, nhead, dim_feedforward)
        self.transformer_decoder = tnn.TransformerDecoder(decoder_layer, num_layers)

    def forward(self, tgt, memory):
        output = self.transformer_decoder(tgt, memory)
        return output


def torch_bi_self_attention(query, key, value):           # §5.3.1 as printed
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    p_attn = TF.softmax(scores, dim=-1)
    return torch.matmul(p_attn, value)


def torch_bi_cross_attention(query, key, value):          # §5.3.2 as printed
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    p_attn = TF.softmax(scores, dim=-1)
    return torch.matmul(p_attn, value)


class TorchBiLSTMDecoderReading(tnn.Module):
    """The reading implemented by BiLSTMDecoder, written independently in PyTorch."""

    def __init__(self, H, O, E):
        super().__init__()
        self.cell_fwd = tnn.LSTMCell(2 * E, H)
        self.cell_bwd = tnn.LSTMCell(2 * E, H)
        self.query_fwd = tnn.Linear(H, E, bias=False)
        self.query_bwd = tnn.Linear(H, E, bias=False)
        self.out = tnn.Linear(2 * H, O)

    def forward(self, h, mem, h0):
        T, _, E = h.shape
        m = mem.transpose(0, 1)                                         # (N, S, E)

        def run(cell, query, s, order):
            c = torch.zeros_like(s)
            outs = [None] * T
            for t in order:
                q = query(s)[:, None, :]                               # (N, 1, E)
                w = torch.softmax(q @ m.transpose(1, 2) / math.sqrt(E), dim=-1)
                ctx = (w @ m)[:, 0]
                s, c = cell(torch.cat([h[t], ctx], dim=-1), (s, c))
                outs[t] = s
            return torch.stack(outs), s
        sf, hf = run(self.cell_fwd, self.query_fwd, h0[0], range(T))
        sb, hb = run(self.cell_bwd, self.query_bwd, h0[1], range(T - 1, -1, -1))
        return self.out(torch.cat([sf, sb], dim=-1)), torch.stack([hf, hb])


# ----------------------------------------------------------------------------- helpers

def _host(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _randomize(tmod, seed=0, scale=0.4):
    """Random weights everywhere (layer-norm gains near 1), so no bias hides at 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tmod.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.copy_(1 + 0.2 * r if ".norm" in name and name.endswith("weight") else scale * r)
    return tmod


def _pair(tmod, mmod, seed=0):
    """torch module (float64, random weights, eval) and the minibidir one holding its weights;
    asserts the state-dict keys are the same, in the same order."""
    tmod = _randomize(tmod.double(), seed).eval()
    mmod = mmod.double().eval()
    assert list(mmod.state_dict()) == list(tmod.state_dict())
    mmod.load_state_dict(tmod.state_dict())
    return tmod, mmod


def _close(got, want, what, rtol=1e-9, atol=1e-10):
    got = mb.to_numpy(got.data if isinstance(got, mb.Tensor) else got)
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def _backprop_both(m_outs, t_outs, seed=1):
    """Backpropagate the same random weighting of the outputs on both sides."""
    rng = np.random.default_rng(seed)
    tot = ttot = None
    for o, t in zip(m_outs, t_outs):
        w = rng.standard_normal(tuple(t.shape))
        a = (o * mb.tensor(w)).sum()
        b = (t * torch.tensor(w)).sum()
        tot = a if tot is None else tot + a
        ttot = b if ttot is None else ttot + b
    tot.backward()
    ttot.backward()


def _compare_param_grads(tmod, mmod, rtol=1e-8, atol=1e-10):
    tgrads = dict(tmod.named_parameters())
    n = 0
    for name, p in mmod.named_parameters():
        tg = tgrads[name].grad
        assert p.grad is not None and tg is not None, f"no gradient for {name}"
        _close(p.grad, tg, f"gradient of {name}", rtol=rtol, atol=atol)
        n += 1
    assert n == len(tgrads)


def _inputs(*host):
    return [mb.tensor(h, requires_grad=True) for h in host], \
           [torch.tensor(h, requires_grad=True) for h in host]


# ============================================================================= attention (§4.3, §5.3)

@pytest.mark.parametrize("fn,tfn", [(bi_self_attention, torch_bi_self_attention),
                                    (bi_cross_attention, torch_bi_cross_attention)])
@pytest.mark.parametrize("shapes", [((5, 4), (5, 4), (5, 4)),                      # self: L = S
                                    ((2, 3, 4), (2, 6, 4), (2, 6, 5)),             # cross: L ≠ S, d_v ≠ d_k
                                    ((2, 1, 3, 4), (1, 3, 6, 4), (1, 3, 6, 2))])   # broadcast leading dims
def test_bi_attention_listings_match_pytorch(fn, tfn, shapes):
    host = [_host(s, i) for i, s in enumerate(shapes)]
    ms, ts = _inputs(*host)
    out, tout = fn(*ms), tfn(*ts)
    _close(out, tout, "output")
    _backprop_both([out], [tout])
    for i, (m, t) in enumerate(zip(ms, ts)):
        _close(m.grad, t.grad, f"gradient of input {i}", rtol=1e-8)
    # the same computation composed from primitive ops, line by line as printed
    ms2 = [mb.tensor(h, requires_grad=True) for h in host]
    out2 = attention_composed(*ms2)
    _close(out2, tout, "composed output")
    _backprop_both([out2], [tfn(*[torch.tensor(h, requires_grad=True) for h in host])])
    for i, (a, b) in enumerate(zip(ms2, ms)):
        _close(a.grad, b.grad.data, f"composed vs fused gradient {i}", rtol=1e-9)


def test_bi_attention_gradcheck_and_mask():
    q, k, v = (mb.tensor(_host(s, i), requires_grad=True) for i, s in enumerate([(2, 3, 4), (2, 5, 4), (2, 5, 3)]))
    assert mb.gradcheck(bi_cross_attention, q, k, v)
    keep = np.array([True, True, True, False, False])           # SDPA convention: True = may attend
    out = bi_cross_attention(q, k, v, attn_mask=keep)
    want = bi_cross_attention(q, k[:, :3], v[:, :3])
    _close(out, want.data, "masked keys are ignored")


def test_bidirectional_self_and_cross_attention_formulas_match_pytorch():
    """a_t = [Attn(→s_t, →h, →h); Attn(←s_t, ←h, ←h)],  c_t = [Attn(→s_t, ←h, ←h); Attn(←s_t, →h, →h)]."""
    N, L, S, d = 2, 3, 5, 4
    host = [_host((N, L, d), 1), _host((N, L, d), 2), _host((N, S, d), 3), _host((N, S, d), 4)]
    for fn, pairs in ((bidirectional_self_attention, ((0, 2), (1, 3))),
                      (bidirectional_cross_attention, ((0, 3), (1, 2)))):
        ms, ts = _inputs(*host)
        out = fn(*ms)
        tout = torch.cat([torch_bi_self_attention(ts[i], ts[j], ts[j]) for i, j in pairs], dim=-1)
        assert out.shape == (N, L, 2 * d)
        _close(out, tout, fn.__name__)
        _backprop_both([out], [tout])
        for i, (m, t) in enumerate(zip(ms, ts)):
            _close(m.grad, t.grad, f"{fn.__name__}: gradient of input {i}", rtol=1e-8)
        ms = [mb.tensor(h, requires_grad=True) for h in host]
        assert mb.gradcheck(fn, *ms)
    # self pairs like with like, cross pairs opposite directions: they differ, and swapping the
    # encoder's directions turns one into the other
    m = [mb.tensor(h) for h in host]
    a = bidirectional_self_attention(*m).numpy()
    c = bidirectional_cross_attention(*m).numpy()
    assert not np.allclose(a, c)
    np.testing.assert_allclose(bidirectional_cross_attention(m[0], m[1], m[3], m[2]).numpy(), a, rtol=1e-14)
    with pytest.raises(ValueError, match="same feature size"):
        bidirectional_self_attention(m[0], m[1], mb.tensor(_host((N, S, d + 1), 5)), m[3])


# ============================================================================= BiLSTMEncoder (§4.1.1, §5.1.1)

def test_bilstm_encoder_matches_the_listing_in_pytorch():
    T, N, I, H = 6, 3, 5, 4
    tmod, mmod = _pair(TorchBiLSTMEncoder(I, H), BiLSTMEncoder(I, H))
    assert list(mmod.state_dict()) == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                                       "lstm.bias_hh_l0", "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse",
                                       "lstm.bias_ih_l0_reverse", "lstm.bias_hh_l0_reverse"]
    (x,), (tx,) = _inputs(_host((T, N, I), 1))
    out, hid = mmod(x)
    tout, thid = tmod(tx)
    assert out.shape == (T, N, 2 * H) and hid.shape == (2, N, H)
    _close(out, tout, "output")
    _close(hid, thid, "hidden")
    _backprop_both([out, hid], [tout, thid])
    _close(x.grad, tx.grad, "input gradient", rtol=1e-8)
    _compare_param_grads(tmod, mmod)


def test_bilstm_encoder_lengths_and_batch_first_match_packed_sequences():
    T, N, I, H = 6, 4, 3, 5
    lengths = [6, 2, 4, 1]
    tmod, mmod = _pair(TorchBiLSTMEncoder(I, H), BiLSTMEncoder(I, H, batch_first=True))
    xh = _host((N, T, I), 2)
    (x,), (tx,) = _inputs(xh)
    out, hid = mmod(x, lengths=lengths)
    packed = tnn.utils.rnn.pack_padded_sequence(tx.transpose(0, 1), torch.tensor(lengths), enforce_sorted=False)
    tp, (thid, _) = tmod.lstm(packed)
    tout, _ = tnn.utils.rnn.pad_packed_sequence(tp, total_length=T)
    tout = tout.transpose(0, 1)
    assert out.shape == (N, T, 2 * H)
    _close(out, tout, "output (batch first, padded)")
    _close(hid, thid, "hidden")
    _backprop_both([out, hid], [tout, thid])
    _close(x.grad, tx.grad, "input gradient", rtol=1e-8)
    _compare_param_grads(tmod, mmod)


def test_bilstm_encoder_reproduces_the_formulas_step_by_step():
    """→h_t = LSTM(→h_{t−1}, x_t), ←h_t = LSTM(←h_{t+1}, x_t), h_t = [→h_t; ←h_t], written as loops
    over the cell."""
    T, N, I, H = 5, 2, 3, 4
    enc = BiLSTMEncoder(I, H).double()
    x = mb.tensor(_host((T, N, I), 3))
    out, hid = enc(x)
    l = enc.lstm
    z = mb.tensor(np.zeros((N, H)))
    h, c, fwd = z, z, []
    for t in range(T):
        h, c = lstm_cell(x[t], h, c, l.weight_ih_l0, l.weight_hh_l0, l.bias_ih_l0, l.bias_hh_l0)
        fwd.append(h.numpy())
    h, c, bwd = z, z, [None] * T
    for t in reversed(range(T)):
        h, c = lstm_cell(x[t], h, c, l.weight_ih_l0_reverse, l.weight_hh_l0_reverse, l.bias_ih_l0_reverse,
                         l.bias_hh_l0_reverse)
        bwd[t] = h.numpy()
    h_f, h_b = split_directions(out)
    np.testing.assert_allclose(h_f.numpy(), np.stack(fwd), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_b.numpy(), np.stack(bwd), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hid.numpy()[0], fwd[-1], rtol=1e-12)      # →h_T
    np.testing.assert_allclose(hid.numpy()[1], bwd[0], rtol=1e-12)       # ←h_1
    # the forward half at t does not depend on x after t; the backward half not on x before t
    x2 = x.numpy().copy()
    x2[3] += 1.0
    o2 = enc(mb.tensor(x2))[0].numpy()
    np.testing.assert_array_equal(o2[:3, :, :H], out.numpy()[:3, :, :H])
    np.testing.assert_array_equal(o2[4:, :, H:], out.numpy()[4:, :, H:])
    assert not np.allclose(o2[3:, :, :H], out.numpy()[3:, :, :H])
    assert not np.allclose(o2[:4, :, H:], out.numpy()[:4, :, H:])


def test_bilstm_encoder_gradcheck():
    enc = BiLSTMEncoder(3, 2).double()
    x = mb.tensor(_host((4, 2, 3), 4), requires_grad=True)
    params = list(enc.parameters())

    def f(x, *ps):
        out, hid = enc(x, lengths=[4, 2])
        return out, hid
    assert mb.gradcheck(f, x, *params)


# ============================================================================= BiTransformerEncoder (§4.1.2, §5.1.2)

D, NH, FF = 8, 2, 12


def test_bitransformer_encoder_full_mode_matches_the_listing_in_pytorch():
    S, N = 5, 3
    tmod, mmod = _pair(TorchBiTransformerEncoder(D, NH, 2, FF), BiTransformerEncoder(D, NH, 2, dim_feedforward=FF))
    assert list(mmod.state_dict())[0] == "transformer_encoder.layers.0.self_attn.in_proj_weight"
    (x,), (tx,) = _inputs(_host((S, N, D), 5))
    out, tout = mmod(x), tmod(tx)
    assert out.shape == (S, N, D)
    _close(out, tout, "output")
    _backprop_both([out], [tout])
    _close(x.grad, tx.grad, "input gradient", rtol=1e-8)
    _compare_param_grads(tmod, mmod)
    # full mode: every output position depends on every input position (both sides)
    x2 = x.numpy().copy()
    x2[2] += 1.0
    diff = np.abs(mmod(mb.tensor(x2)).numpy() - out.numpy()).max(axis=(1, 2))
    assert (diff > 1e-6).all()


def test_bitransformer_encoder_full_mode_with_padding_matches_pytorch():
    S, N = 5, 2
    tmod, mmod = _pair(TorchBiTransformerEncoder(D, NH, 2, FF), BiTransformerEncoder(D, NH, 2, dim_feedforward=FF))
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    (x,), (tx,) = _inputs(_host((S, N, D), 6))
    out = mmod(x, src_key_padding_mask=pad)
    tout = tmod.transformer_encoder(tx, src_key_padding_mask=torch.tensor(pad))
    _close(out, tout, "output with padding")


def _two_tower_reference(enc, x):
    """Two-tower output recomputed from the towers: the forward tower with a causal mask, the
    backward tower run causally on the time-reversed sequence and reversed back."""
    xt = mb.tensor(x)
    S = x.shape[0]
    fmask = nn.generate_square_subsequent_mask(S, dtype=np.float64)
    h_f = enc.forward_encoder(xt, mask=fmask).numpy()
    h_b = enc.backward_encoder(mb.tensor(x[::-1].copy()), mask=fmask).numpy()[::-1]
    return np.concatenate([h_f, h_b], axis=-1)


def test_two_tower_encoder_directions_see_only_their_side():
    S, N = 6, 2
    enc = BiTransformerEncoder(D, NH, 2, mode="two_tower", dim_feedforward=FF, dropout=0.0).double().eval()
    x = _host((S, N, D), 7)
    out = enc(mb.tensor(x)).numpy()
    assert out.shape == (S, N, 2 * D)
    np.testing.assert_allclose(out, _two_tower_reference(enc, x), rtol=1e-10, atol=1e-12)
    for j in range(S):                           # perturb token j
        x2 = x.copy()
        x2[j] += _host((N, D), 100 + j)
        o2 = enc(mb.tensor(x2)).numpy()
        fwd_same = np.abs(o2[:, :, :D] - out[:, :, :D]).max(axis=(1, 2)) == 0
        bwd_same = np.abs(o2[:, :, D:] - out[:, :, D:]).max(axis=(1, 2)) == 0
        # →h_t depends on x_1..x_t only: unchanged exactly for t < j, changed for t ≥ j
        np.testing.assert_array_equal(fwd_same, np.arange(S) < j)
        # ←h_t depends on x_t..x_T only: unchanged exactly for t > j, changed for t ≤ j
        np.testing.assert_array_equal(bwd_same, np.arange(S) > j)


def test_two_tower_encoder_padding_projection_and_budget():
    S, N = 5, 2
    enc = BiTransformerEncoder(D, NH, 1, mode="two_tower", dim_feedforward=FF, dropout=0.0).double().eval()
    x = _host((S, N, D), 8)
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    out = enc(mb.tensor(x), src_key_padding_mask=pad).numpy()
    alone = enc(mb.tensor(x[:3, 1:2].copy())).numpy()
    np.testing.assert_allclose(out[:3, 1:2], alone, rtol=1e-10, atol=1e-12)   # padding is invisible
    assert np.isfinite(out).all()
    # batch-first, narrower towers and an output projection
    e2 = BiTransformerEncoder(D, NH, 1, mode="two_tower", dim_feedforward=FF, batch_first=True,
                              tower_d_model=4, project=True).double()
    assert e2.forward_in_proj.weight.shape == (4, D) and e2.tower_dim_feedforward == 6
    assert e2(mb.tensor(_host((N, S, D), 9))).shape == (N, S, D) and e2.output_size == D
    # budgets: full-width towers double the parameters; the budget helper fits under the full encoder
    d, nh, L, ff = 64, 4, 2, 256
    full = count_parameters(BiTransformerEncoder(d, nh, L, dim_feedforward=ff))
    assert full == L * encoder_layer_parameters(d, ff)
    wide = count_parameters(BiTransformerEncoder(d, nh, L, mode="two_tower", dim_feedforward=ff))
    assert wide == 2 * full
    w, f = BiTransformerEncoder.tower_width_for_budget(d, nh, L, ff)
    fair = count_parameters(BiTransformerEncoder(d, nh, L, mode="two_tower", dim_feedforward=ff,
                                                 tower_d_model=w, tower_dim_feedforward=f))
    assert (w, f) == (40, 160) and 0.8 * full <= fair <= full
    assert fair + 1 > 0 and BiTransformerEncoder.tower_width_for_budget(d, nh, L, ff, project=True)[0] <= w
    with pytest.raises(ValueError, match="two_tower"):
        enc(mb.tensor(x), mask=nn.generate_square_subsequent_mask(S, dtype=np.float64))
    with pytest.raises(ValueError, match="mode must be one of"):
        BiTransformerEncoder(D, NH, 1, mode="both")
    with pytest.raises(ValueError, match="forward_directions"):
        BiTransformerEncoder(D, NH, 1).forward_directions(mb.tensor(x))


@pytest.mark.parametrize("mode", ["full", "two_tower"])
def test_bitransformer_encoder_gradcheck(mode):
    enc = BiTransformerEncoder(4, 2, 1, mode=mode, dim_feedforward=6, dropout=0.0).double()
    x = mb.tensor(_host((3, 2, 4), 10), requires_grad=True)
    params = list(enc.parameters())
    assert mb.gradcheck(lambda x, *ps: enc(x), x, *params, rtol=1e-4, atol=1e-6)


# ============================================================================= BiLSTMDecoder (§4.2.1, §5.2.1)

def test_bilstm_decoder_matches_its_reading_written_in_pytorch():
    T, S, N, H, O = 4, 5, 3, 3, 6
    E = 2 * H
    tmod, mmod = _pair(TorchBiLSTMDecoderReading(H, O, E), BiLSTMDecoder(H, O))
    h, mem, h0 = _host((T, N, E), 11), _host((S, N, E), 12), _host((2, N, H), 13)
    (mh, mm, mh0), (th, tm, th0) = _inputs(h, mem, h0)
    y, hn = mmod(mh, mh0, mm)
    ty, thn = tmod(th, tm, th0)
    assert y.shape == (T, N, O) and hn.shape == (2, N, H)
    _close(y, ty, "output")
    _close(hn, thn, "final states")
    _backprop_both([y, hn], [ty, thn])
    for name, a, b in (("h", mh, th), ("memory", mm, tm), ("hidden", mh0, th0)):
        _close(a.grad, b.grad, f"gradient of {name}", rtol=1e-8)
    _compare_param_grads(tmod, mmod)


def test_bilstm_decoder_directions_and_lengths():
    T, N, H, O = 5, 3, 3, 4
    dec = BiLSTMDecoder(H, O, batch_first=True).double()
    h = _host((N, T, 2 * H), 14)
    _, _, (wf, wb) = dec(mb.tensor(h), need_weights=True)
    assert wf.shape == (N, T, T) and np.allclose(wf.numpy().sum(-1), 1) and np.allclose(wb.numpy().sum(-1), 1)
    # each sequence of a padded batch gives what it gives alone (memory = input: padded keys are masked)
    lengths = [5, 2, 3]
    yp, hp = dec(mb.tensor(h), lengths=lengths)
    for b, n in enumerate(lengths):
        ya, ha = dec(mb.tensor(h[b:b + 1, :n].copy()))
        np.testing.assert_allclose(yp.numpy()[b, :n], ya.numpy()[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hp.numpy()[:, b], ha.numpy()[:, 0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(yp.numpy()[b, n:], np.broadcast_to(dec.out.bias.numpy(), (T - n, O)),
                                   rtol=1e-12)                      # padded steps: s_t = 0, y_t = b_o
    # a separate memory with its own lengths
    mem = _host((N, 7, 2 * H), 15)
    ym, _ = dec(mb.tensor(h), encoder_outputs=mb.tensor(mem), memory_lengths=[7, 3, 1])
    ya, _ = dec(mb.tensor(h[2:3].copy()), encoder_outputs=mb.tensor(mem[2:3, :1].copy()))
    np.testing.assert_allclose(ym.numpy()[2], ya.numpy()[0], rtol=1e-10, atol=1e-12)
    # the forward state at t depends on h (the aligned input) up to t only through the recurrence, but
    # attention reads all of the memory: with a separate, fixed memory the causal structure is exact
    s_full = _states(dec, h, mem)
    h2 = h.copy()
    h2[:, 2] += 1.0
    s_pert = _states(dec, h2, mem)
    np.testing.assert_array_equal(s_pert[:, :2, :H], s_full[:, :2, :H])     # →s_t, t < 2
    np.testing.assert_array_equal(s_pert[:, 3:, H:], s_full[:, 3:, H:])     # ←s_t, t > 2
    with pytest.raises(ValueError, match="initial hidden must have shape"):
        dec(mb.tensor(h), hidden=mb.tensor(np.zeros((1, N, H))))
    with pytest.raises(ValueError, match="lengths must lie in"):
        dec(mb.tensor(h), lengths=[6, 1, 1])


def _states(dec, h, mem):
    """s_t = [→s_t; ←s_t] of a batch-first decoder, read back from its output layer's input."""
    captured = {}
    orig = dec.out.forward

    def spy(x):
        captured["s"] = x.numpy()
        return orig(x)
    dec.out.forward = spy
    try:
        dec(mb.tensor(h), encoder_outputs=mb.tensor(mem))
    finally:
        del dec.out.forward
    return np.swapaxes(captured["s"], 0, 1)        # time-first inside -> (N, T, 2H)


def test_bilstm_decoder_gradcheck():
    dec = BiLSTMDecoder(2, 3).double()
    h = mb.tensor(_host((3, 2, 4), 16), requires_grad=True)
    h0 = mb.tensor(_host((2, 2, 2), 17), requires_grad=True)
    params = list(dec.parameters())
    assert mb.gradcheck(lambda h, h0, *ps: dec(h, h0, lengths=[3, 2]), h, h0, *params)


def test_bilstm_encoder_decoder_trains_on_a_task_that_needs_both_sides():
    """y_t = (x_{t−1} + x_{t+1}) mod V (x_0 = x_{T+1} = 0): each label depends on both neighbours."""
    V, T, N, H = 5, 6, 32, 16
    rng = np.random.default_rng(0)
    emb = nn.Embedding(V, 8)
    enc = BiLSTMEncoder(8, H)
    dec = BiLSTMDecoder(H, V)
    params = list(emb.parameters()) + list(enc.parameters()) + list(dec.parameters())
    opt = optim.Adam(params, lr=0.02)

    def batch():
        x = rng.integers(0, V, size=(T, N))
        xp = np.pad(x, ((1, 1), (0, 0)))
        return x, (xp[:-2] + xp[2:]) % V

    losses = []
    for step in range(250):
        x, y = batch()
        out, hid = enc(emb(x))
        logits, _ = dec(out, hid)
        loss = mb.F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert first > 1.4                         # ≈ ln 5 at the start
    assert last < 0.25 * first, (first, last)
    x, y = batch()
    with mb.no_grad():
        out, hid = enc(emb(x))
        acc = (dec(out, hid)[0].numpy().argmax(-1) == y).mean()
    assert acc > 0.9


# ============================================================================= BiTransformerDecoder (§4.2.2, §5.2.2)

def test_bitransformer_decoder_full_mode_matches_the_listing_in_pytorch():
    T, S, N = 4, 5, 3
    tmod, mmod = _pair(TorchBiTransformerDecoder(D, NH, 2, FF),
                       BiTransformerDecoder(D, NH, 2, mode="full", dim_feedforward=FF))
    (t, m), (tt, tm) = _inputs(_host((T, N, D), 18), _host((S, N, D), 19))
    out, tout = mmod(t, m), tmod(tt, tm)
    _close(out, tout, "output")
    _backprop_both([out], [tout])
    _close(t.grad, tt.grad, "tgt gradient", rtol=1e-8)
    _close(m.grad, tm.grad, "memory gradient", rtol=1e-8)
    _compare_param_grads(tmod, mmod)


def test_bitransformer_decoder_two_directions_match_pytorch_decoders_with_masks():
    T, S, N = 5, 4, 2
    mmod = BiTransformerDecoder(D, NH, 2, dim_feedforward=FF).double().eval()
    tf = _randomize(tnn.TransformerDecoder(tnn.TransformerDecoderLayer(D, NH, FF), 2).double(), 1).eval()
    tb = _randomize(tnn.TransformerDecoder(tnn.TransformerDecoderLayer(D, NH, FF), 2).double(), 2).eval()
    sd = {f"forward_decoder.{k}": v for k, v in tf.state_dict().items()}
    sd.update({f"backward_decoder.{k}": v for k, v in tb.state_dict().items()})
    assert set(sd) == set(mmod.state_dict())
    mmod.load_state_dict(sd)
    (t, m), (tt, tm) = _inputs(_host((T, N, D), 20), _host((S, N, D), 21))
    out = mmod(t, m)
    assert out.shape == (T, N, 2 * D)
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    tout = torch.cat([tf(tt, tm, tgt_mask=causal), tb(tt, tm, tgt_mask=causal.T)], dim=-1)
    _close(out, tout, "[→s; ←s]")
    _backprop_both([out], [tout])
    _close(t.grad, tt.grad, "tgt gradient", rtol=1e-8)
    _close(m.grad, tm.grad, "memory gradient", rtol=1e-8)
    tgrads = {f"forward_decoder.{k}": p.grad for k, p in tf.named_parameters()}
    tgrads.update({f"backward_decoder.{k}": p.grad for k, p in tb.named_parameters()})
    for name, p in mmod.named_parameters():
        _close(p.grad, tgrads[name], f"gradient of {name}", rtol=1e-8)


def test_bitransformer_decoder_directions_are_independent_of_the_other_side():
    T, S, N = 6, 4, 2
    dec = BiTransformerDecoder(D, NH, 2, dim_feedforward=FF, dropout=0.0).double().eval()
    tgt, mem = _host((T, N, D), 22), _host((S, N, D), 23)
    out = dec(mb.tensor(tgt), mb.tensor(mem)).numpy()
    for j in range(T):
        t2 = tgt.copy()
        t2[j] += _host((N, D), 200 + j)
        o2 = dec(mb.tensor(t2), mb.tensor(mem)).numpy()
        fwd_same = np.abs(o2[:, :, :D] - out[:, :, :D]).max(axis=(1, 2)) == 0
        bwd_same = np.abs(o2[:, :, D:] - out[:, :, D:]).max(axis=(1, 2)) == 0
        np.testing.assert_array_equal(fwd_same, np.arange(T) < j)     # L2R at t: independent of tgt after t
        np.testing.assert_array_equal(bwd_same, np.arange(T) > j)     # R2L at t: independent of tgt before t
    # both halves read the whole memory
    m2 = mem.copy()
    m2[-1] += 1.0
    assert (np.abs(dec(mb.tensor(tgt), mb.tensor(m2)).numpy() - out).max(axis=(1, 2)) > 1e-8).all()
    # the anti-causal mask on the sequence = the causal mask on the reversed sequence
    rev = dec.r2l(mb.tensor(tgt[::-1].copy()), mb.tensor(mem), reversed_input=True).numpy()[::-1]
    np.testing.assert_allclose(rev, out[:, :, D:], rtol=1e-10, atol=1e-12)
    proj = BiTransformerDecoder(D, NH, 1, dim_feedforward=FF, project=True).double()
    assert proj(mb.tensor(tgt), mb.tensor(mem)).shape == (T, N, D)
    with pytest.raises(ValueError, match="two_tower"):
        dec(mb.tensor(tgt), mb.tensor(mem), tgt_mask=causal_mask(T))


@pytest.mark.parametrize("mode", ["two_tower", "full"])
def test_bitransformer_decoder_gradcheck(mode):
    dec = BiTransformerDecoder(4, 2, 1, mode=mode, dim_feedforward=6, dropout=0.0).double()
    t = mb.tensor(_host((3, 2, 4), 24), requires_grad=True)
    m = mb.tensor(_host((2, 2, 4), 25), requires_grad=True)
    params = list(dec.parameters())
    assert mb.gradcheck(lambda t, m, *ps: dec(t, m), t, m, *params)


def test_masks():
    np.testing.assert_array_equal(causal_mask(3), [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(anticausal_mask(3), causal_mask(3).T)


# ============================================================================= beam search and reranking

def _markov_step_fn(V, eos, seed):
    """A fixed random model of the next token given the last token and the prefix length."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((8, V + 1, V)) * 2.0
    calls = []

    def step(prefixes):
        calls.append(len(prefixes))
        rows = []
        for p in prefixes:
            z = table[min(len(p), 7), p[-1] if p else V]
            rows.append(z - np.log(np.exp(z).sum()))
        return np.array(rows)
    return step, calls


def _sequence_logprob(step, tokens, eos):
    s, prefix = 0.0, ()
    for tok in list(tokens) + [eos]:
        s += step([prefix])[0][tok]
        prefix = prefix + (tok,) if tok != eos else prefix
    return s


@pytest.mark.parametrize("seed", range(6))
def test_beam_of_one_is_greedy_and_nbest_is_sorted(seed):
    V, eos = 6, 0
    step, _ = _markov_step_fn(V, eos, seed)
    g = greedy_search(step, eos, max_len=10)
    b = beam_search(step, eos, beam_size=1, max_len=10)
    assert len(b) == 1 and b[0].tokens == g.tokens and b[0].finished == g.finished
    assert b[0].score == pytest.approx(g.score, abs=1e-12)
    nbest = beam_search(step, eos, beam_size=5, max_len=10, n_best=5)
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True) and len({h.tokens for h in nbest}) == len(nbest)
    for h in nbest:                                 # the score is log p(y, EOS) under the model
        assert h.score == pytest.approx(_sequence_logprob(step, h.tokens, eos), abs=1e-10)


def test_a_beam_wider_than_the_search_space_is_exhaustive_search():
    """Every sequence of at most 4 tokens over 3 symbols (plus EOS) scored by brute force: a beam
    that never prunes must return exactly the best n of them, in order (its early stop is safe)."""
    import itertools
    V, eos, max_len = 4, 0, 4
    for seed in range(3):
        step, _ = _markov_step_fn(V, eos, seed)
        every = [seq for n in range(max_len) for seq in itertools.product(range(1, V), repeat=n)]
        brute = sorted(((_sequence_logprob(step, seq, eos), seq) for seq in every), key=lambda p: -p[0])
        nbest = beam_search(step, eos, beam_size=3 ** max_len, max_len=max_len, n_best=6)
        assert [h.tokens for h in nbest] == [seq for _, seq in brute[:6]]
        np.testing.assert_allclose([h.score for h in nbest], [sc for sc, _ in brute[:6]], rtol=1e-12)
        assert all(h.finished for h in nbest)


def test_beam_finds_what_greedy_misses():
    # greedy takes "a" (0.6) but every continuation after "a" is uncertain; "b" (0.4) then EOS is sure
    V, eos, a, b_, c = 5, 0, 1, 2, 3
    lp = np.log

    def step(prefixes):
        out = []
        for p in prefixes:
            row = np.full(V, 1e-9)
            if p == ():
                row[[a, b_]] = [0.6, 0.4]
            elif p == (a,):
                row[[b_, c, 4]] = [0.34, 0.33, 0.33]
            elif p == (b_,):
                row[eos] = 1.0
            else:
                row[eos] = 1.0
            out.append(lp(row / row.sum()))
        return np.array(out)
    g = greedy_search(step, eos, max_len=5)
    assert g.tokens == (a, b_)
    best = beam_search(step, eos, beam_size=2, max_len=5, n_best=2)
    assert best[0].tokens == (b_,) and best[0].score == pytest.approx(lp(0.4), abs=1e-6)
    assert best[1].tokens == (a, b_)
    # max_len cuts hypotheses off: unfinished ones are flagged
    cut = beam_search(step, eos, beam_size=1, max_len=1)
    assert cut[0].tokens == (a,) and not cut[0].finished


def test_beam_never_chooses_a_banned_token():
    def step(prefixes):                             # token 1 is banned (log-prob -inf)
        return np.log(np.array([[0.5, 0.0, 0.5]] * len(prefixes)))
    with np.errstate(divide="ignore"):
        nbest = beam_search(step, 0, beam_size=3, max_len=3, n_best=3)
    assert [h.tokens for h in nbest] == [(), (2,), (2, 2)]
    np.testing.assert_allclose([h.score for h in nbest], np.log([0.5, 0.25, 0.125]))


def test_rerank_by_a_right_to_left_scorer_changes_the_order_as_expected():
    nbest = [Hypothesis((5, 6, 7), -1.0), Hypothesis((5, 6, 8), -1.2), Hypothesis((5, 9), -2.0)]
    r2l = {(5, 6, 7): -4.0, (5, 6, 8): -0.5, (5, 9): -0.3}
    seen = []

    def scorer(hyps):
        seen.append(list(hyps))
        return [r2l[h] for h in hyps]
    out = rerank(nbest, scorer)
    assert seen == [[(5, 6, 7), (5, 6, 8), (5, 9)]]          # one batched call
    assert [h.tokens for h in out] == [(5, 6, 8), (5, 9), (5, 6, 7)]   # -1.7, -2.3, -5.0
    assert [h.score for h in out] == pytest.approx([-1.7, -2.3, -5.0])
    assert out[0].components == {"l2r": -1.2, "r2l": -0.5}
    assert [h.tokens for h in rerank(nbest, scorer, weight=0.0)] == [h.tokens for h in nbest]
    weak = rerank(nbest, scorer, weight=0.01)                 # a weak R2L vote keeps the L2R order
    assert [h.tokens for h in weak] == [(5, 6, 7), (5, 6, 8), (5, 9)]
    half = rerank(nbest, scorer, weight=0.1)                  # -1.25 vs -1.40: it flips the close pair only
    assert [h.tokens for h in half] == [(5, 6, 8), (5, 6, 7), (5, 9)]
    again = rerank(out, scorer, weight=1.0)                   # reranking twice uses the original L2R score
    assert [h.score for h in again] == pytest.approx([h.score for h in out])
    assert rerank([], scorer) == []


# ============================================================================= the seq2seq model

def _reverse_task(rng, n, V, lo=3, hi=7):
    """Target = the source reversed (tokens 3..V-1; 0, 1, 2 are pad, BOS, EOS)."""
    src = []
    for _ in range(n):
        L = int(rng.integers(lo, hi))
        src.append(list(rng.integers(3, V, size=L)))
    return src, [s[::-1] for s in src]


def test_seq2seq_trains_and_scores_are_consistent_with_beam_search():
    V = 10
    mb.manual_seed(0)
    model = Seq2SeqBiTransformer(V, V, d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                                 dim_feedforward=64, dropout=0.0)
    opt = optim.Adam(model.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    losses = []
    for step in range(250):
        src, tgt = _reverse_task(rng, 32, V)
        l2r, r2l = model(src, tgt)
        loss = l2r + r2l
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append((l2r.item(), r2l.item()))
    first, last = np.mean(losses[:5], axis=0), np.mean(losses[-5:], axis=0)
    assert (last < 0.5 * first).all(), (first, last)         # both directions learn
    model.double().eval()
    src = [4, 7, 5, 9]
    nbest = model.translate(src, beam_size=3, max_len=8, rerank_weight=None)
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)
    # beam scores = teacher-forced log p_L2R(y, EOS | x)
    np.testing.assert_allclose(model.score(src, [h.tokens for h in nbest], "l2r"), scores, rtol=1e-9, atol=1e-9)
    # R2L teacher-forced score = the sum of its own step-by-step log-probs over the reversed hypothesis
    r2l_step = model.step_fn(src, "r2l")
    for h in nbest:
        want = _sequence_logprob(r2l_step, h.tokens[::-1], model.eos_id)
        assert model.score(src, [h.tokens], "r2l")[0] == pytest.approx(want, abs=1e-9)
    # reranked: combined = l2r + r2l, sorted, the same hypotheses
    rr = model.translate(src, beam_size=3, max_len=8)
    assert sorted(h.tokens for h in rr) == sorted(h.tokens for h in nbest)
    for h in rr:
        assert h.score == pytest.approx(h.components["l2r"] + h.components["r2l"], abs=1e-12)
    assert [h.score for h in rr] == sorted((h.score for h in rr), reverse=True)
    g = model.greedy(src, max_len=8)
    b1 = model.translate(src, beam_size=1, max_len=8, rerank_weight=None)[0]
    assert g.tokens == b1.tokens and g.score == pytest.approx(b1.score, abs=1e-12)
    assert all(t not in (model.pad_id, model.bos_id) for h in nbest for t in h.tokens)


def test_seq2seq_padding_is_invisible_and_targets_are_shifted():
    V = 9
    model = Seq2SeqBiTransformer(V, V, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                 dim_feedforward=16, dropout=0.0).double().eval()
    inp, gold, pad = model._target_io(np.array([[5, 6, 7], [8, 0, 0]]), reverse=False)
    np.testing.assert_array_equal(pad, [[False] * 4, [False, False, True, True]])
    np.testing.assert_array_equal(inp, [[1, 5, 6, 7], [1, 8, 0, 0]])
    np.testing.assert_array_equal(gold, [[5, 6, 7, 2], [8, 2, -100, -100]])
    inp, gold, _ = model._target_io(np.array([[5, 6, 7], [8, 0, 0]]), reverse=True)
    np.testing.assert_array_equal(inp, [[1, 7, 6, 5], [1, 8, 0, 0]])
    np.testing.assert_array_equal(gold, [[7, 6, 5, 2], [8, 2, -100, -100]])
    # scoring several hypotheses at once (padded) = scoring each alone
    hyps = [(3, 4, 5), (6,), ()]
    for d in ("l2r", "r2l"):
        together = model.score([3, 4], hyps, d)
        alone = [model.score([3, 4], [h], d)[0] for h in hyps]
        np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12)


# ============================================================================= the stand-in device

def test_models_on_the_standin_device_match_the_host():
    from minibidir import standin
    enc = BiLSTMEncoder(3, 4).double()
    tenc = BiTransformerEncoder(D, NH, 1, dim_feedforward=FF, dropout=0.0).double()
    ttow = BiTransformerEncoder(D, NH, 1, mode="two_tower", dim_feedforward=FF, dropout=0.0).double()
    dec = BiLSTMDecoder(4, 5).double()
    tdec = BiTransformerDecoder(D, NH, 1, dim_feedforward=FF, dropout=0.0).double()
    x, s, tg = _host((5, 2, 3), 30), _host((5, 2, D), 31), _host((4, 2, D), 32)
    pad = np.array([[False] * 5, [False, False, False, True, True]])

    def run(on_device):
        dev = "cuda" if on_device else "cpu"
        res = []
        xi = mb.tensor(x, requires_grad=True, device=dev)
        o, h = enc(xi, lengths=[5, 3])
        y, _ = dec(o, h, lengths=[5, 3])
        si = mb.tensor(s, requires_grad=True, device=dev)
        e1 = tenc(si, src_key_padding_mask=mb.tensor(pad, device=dev))
        e2 = ttow(si, src_key_padding_mask=mb.tensor(pad, device=dev))
        d2 = tdec(mb.tensor(tg, device=dev), e1, memory_key_padding_mask=mb.tensor(pad, device=dev))
        a = bidirectional_cross_attention(*split_directions(F_t(d2)), *split_directions(F_t(e2)))
        outs = [o, y, e1, e2, d2, a]
        if on_device:
            assert all(B.get_array_module(t.data) is standin for t in outs)
        sum(((t * t).sum() for t in outs), mb.tensor(0.0, device=dev, dtype=np.float64)).backward()
        res = [mb.to_numpy(t.data) for t in outs] + [mb.to_numpy(xi.grad.data), mb.to_numpy(si.grad.data)]
        res += [mb.to_numpy(p.grad.data) for m in (enc, dec, tenc, ttow, tdec) for p in m.parameters()]
        for m in (enc, dec, tenc, ttow, tdec):
            m.zero_grad()
        return res

    host = run(False)
    with B.backend("standin"):
        for m in (enc, dec, tenc, ttow, tdec):
            m.to("cuda")
        dev = run(True)
    for m in (enc, dec, tenc, ttow, tdec):
        m.to("cpu")
    assert len(host) == len(dev)
    for i, (a, b) in enumerate(zip(host, dev)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13, err_msg=f"result {i}")


def F_t(x):
    """(T, N, E) -> (N, T, E): time-first module outputs into the attention functions' layout."""
    return mb.F.transpose(x, 0, 1)


def test_seq2seq_on_the_standin_device():
    V = 8
    model = Seq2SeqBiTransformer(V, V, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                 dim_feedforward=16, dropout=0.0).double().eval()
    src = [3, 4, 5]
    host_nbest = model.translate(src, beam_size=2, max_len=4)
    host_loss = [l.item() for l in model([src], [[5, 4]])]
    with B.backend("standin"):
        model.to("cuda")
        dev_nbest = model.translate(src, beam_size=2, max_len=4)
        dev_loss = [l.item() for l in model([src], [[5, 4]])]
    model.to("cpu")
    assert [h.tokens for h in dev_nbest] == [h.tokens for h in host_nbest]
    assert [h.score for h in dev_nbest] == pytest.approx([h.score for h in host_nbest], abs=1e-10)
    assert dev_loss == pytest.approx(host_loss, abs=1e-12)


@pytest.mark.parametrize("fn", ["bi_self_attention", "bi_cross_attention"])
@pytest.mark.parametrize("mask_fn", [causal_mask, anticausal_mask])
def test_attention_functions_refuse_a_forbidden_convention_mask(fn, mask_fn):
    # causal_mask marks FORBIDDEN pairs (nn.MultiheadAttention); these functions take SDPA's
    # "True = may attend" masks.  The unnegated mask is refused with a message naming the fix;
    # the negated one is accepted and equals the causal computation.
    import minibidir.models.bidirectional as bd
    rng = np.random.default_rng(0)
    q, k, v = (mb.tensor(rng.standard_normal((2, 4, 3))) for _ in range(3))
    with pytest.raises(ValueError, match=rf"{fn}: attn_mask of shape \(4, 4\) equals {mask_fn.__name__}\(4\).*~{mask_fn.__name__}\(4\)"):
        getattr(bd, fn)(q, k, v, attn_mask=mask_fn(4))
    out = getattr(bd, fn)(q, k, v, attn_mask=~mask_fn(4))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mb.tensor(~mask_fn(4)))
    np.testing.assert_allclose(out.numpy(), ref.numpy())


def test_bidirectional_attention_pair_refuses_a_forbidden_convention_mask():
    from minibidir.models.bidirectional import bidirectional_cross_attention, bidirectional_self_attention
    rng = np.random.default_rng(1)
    s_f, s_b, h_f, h_b = (mb.tensor(rng.standard_normal((3, 3))) for _ in range(4))
    for fn in (bidirectional_self_attention, bidirectional_cross_attention):
        with pytest.raises(ValueError, match=fn.__name__):
            fn(s_f, s_b, h_f, h_b, attn_mask=causal_mask(3))
        fn(s_f, s_b, h_f, h_b, attn_mask=~causal_mask(3))
