"""Long short-term memory: ``LSTMCell`` (one step, composed from primitive ops, to read) and
``LSTM`` (whole sequences, one fused Function per layer and direction, to train).

The cell (Hochreiter & Schmidhuber, 1997, with the forget gate of Gers et al., 2000; the form
PyTorch uses, gate order i, f, g, o)::

    i  = σ(W_ii x + b_ii + W_hi h + b_hi)        input gate
    f  = σ(W_if x + b_if + W_hf h + b_hf)        forget gate
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)     candidate cell
    o  = σ(W_io x + b_io + W_ho h + b_ho)        output gate
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

``weight_ih`` stacks [W_ii; W_if; W_ig; W_io] into a (4H, input_size) matrix, ``weight_hh``
stacks the four (H, H) recurrent matrices into (4H, H), exactly as PyTorch lays them out, so
state dicts move between the two libraries unchanged.

Variable-length batches follow PyTorch's packed sequences: with ``lengths`` given, sequence
``b`` is read at time steps ``0 .. L_b - 1`` only.  The forward direction's final state is the
one after step ``L_b - 1``; the reverse direction *starts* at step ``L_b - 1``; outputs at
padded steps are zero.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Function, Tensor
from ..backend import get_array_module
from .linear import _empty
from .module import Module, Parameter
from . import init

__all__ = ["LSTMCell", "LSTM", "LSTMLayer", "lstm_cell", "lstm_layer_composed"]


# ----------------------------------------------------------------------------- one step, composed

def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step from primitive ops (every line is an autograd node)::

        [a_i; a_f; a_g; a_o] = W_ih x + b_ih + W_hh h + b_hh
        i, f, o = σ(a_i), σ(a_f), σ(a_o);   g = tanh(a_g)
        c' = f ⊙ c + i ⊙ g;                 h' = o ⊙ tanh(c')

    ``x`` (B, input_size), ``h`` and ``c`` (B, H); returns ``(h', c')``.
    """
    a = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    a_i, a_f, a_g, a_o = F.chunk(a, 4, axis=-1)
    i, f, g, o = F.sigmoid(a_i), F.sigmoid(a_f), F.tanh(a_g), F.sigmoid(a_o)
    c_new = f * c + i * g
    h_new = o * F.tanh(c_new)
    return h_new, c_new


def _step_masks(lengths, T, xp):
    """(T, B, 1) booleans on ``xp``'s device: True where step t < L_b (a real token)."""
    L = xp.asarray(lengths)
    return (xp.arange(T)[:, None] < L[None, :])[:, :, None]


def lstm_layer_composed(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
    """The same computation as :class:`LSTMLayer`, built from :func:`lstm_cell` over the time
    steps (hundreds of autograd nodes).  It is the readable reference the fused layer is
    tested against; ``LSTM(..., fused=False)`` uses it.

    ``x`` (T, B, input_size) time-major; ``h0``, ``c0`` (B, H); ``lengths`` host ints or None.
    Returns ``(output (T, B, H), h_n (B, H), c_n (B, H))``.
    """
    T, Bn, In = x.shape
    steps = [s.reshape(Bn, In) for s in F.split(x, 1, axis=0)] if T > 1 else [x.reshape(Bn, In)]
    masks = None
    if lengths is not None:
        masks = _step_masks(lengths, T, get_array_module(x.data))
    h, c = h0, c0
    outs = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h_new, c_new = lstm_cell(steps[t], h, c, w_ih, w_hh, b_ih, b_hh)
        if masks is None:
            h, c = h_new, c_new
            outs[t] = h
        else:                          # padded step: the state passes through unchanged
            m = masks[t]
            h = F.where(m, h_new, h)
            c = F.where(m, c_new, c)
            outs[t] = F.where(m, h_new, 0.0)
    return F.stack(outs, axis=0), h, c


# ----------------------------------------------------------------------------- one layer, fused

def _ifog(a):
    """Reorder the four gate blocks along axis 0 from PyTorch's i, f, g, o to i, f, o, g (and
    back: the map swaps the last two blocks, so it is its own inverse)."""
    xp = get_array_module(a)
    H = a.shape[0] // 4
    return xp.concatenate((a[:2 * H], a[3 * H:], a[2 * H:3 * H]), axis=0)


def _ifog_halved(a):
    """``_ifog(a)`` with the i, f, o blocks multiplied by 1/2 (exact in binary floating point)."""
    xp = get_array_module(a)
    H = a.shape[0] // 4
    out = xp.empty(a.shape, dtype=a.dtype)
    xp.multiply(a[:2 * H], 0.5, out=out[:2 * H])
    xp.multiply(a[3 * H:], 0.5, out=out[2 * H:3 * H])
    out[3 * H:] = a[2 * H:3 * H]
    return out


class LSTMLayer(Function):
    """One LSTM layer in one direction over a whole (padded) batch of sequences, as one node.

    ``LSTMLayer.apply(x, h0, c0, weight_ih, weight_hh[, bias_ih, bias_hh], lengths=None,
    reverse=False)`` with ``x`` (T, B, In) time-major, ``h0``, ``c0`` (B, H); returns
    ``(output (T, B, H), h_n (B, H), c_n (B, H))``.  The cell is :func:`lstm_cell`'s.

    Forward.  The input projection of every time step is one matrix product,
    A_x = X W_ihᵀ + b_ih + b_hh with X = x viewed as (T·B, In); then one product per step
    adds W_hh h_{t-1}.  Inside, the gates are reordered to i, f, o, g so the three sigmoids
    sit side by side, and kept gate-major ((4, T, B, H): every gate of a step is one
    contiguous (B, H) block, so the elementwise work runs on contiguous memory).  The
    sigmoid is computed as σ(a) = ½(1 + tanh(a/2)): with the i, f, o rows of the weights
    halved (exact: a power of two), one tanh over the step's four blocks yields all four
    gates.  This form never overflows (tanh saturates at ±1).

    Backward (BPTT).  Going back in time with δh = ∂L/∂h_t (from the output and from step
    t+1) and δc = ∂L/∂c_t (from step t+1)::

        δc += δh ⊙ o ⊙ (1 − tanh²c_t)
        δa_o = δh ⊙ tanh c_t ⊙ o(1−o)      δa_i = δc ⊙ g ⊙ i(1−i)
        δa_f = δc ⊙ c_{t−1} ⊙ f(1−f)       δa_g = δc ⊙ i ⊙ (1−g²)
        δh_{t−1} = δa W_hh,                 δc_{t−1} = δc ⊙ f

    (for ``reverse=True`` the recurrence runs t = T−1 .. 0, so "t−1" reads "t+1").

    The δa of all steps are kept, so the weight gradients are one matrix product each at the
    end: ∂W_ih = δAᵀ X, ∂W_hh = δAᵀ H_prev (H_prev stacks every h_{t−1}), ∂b = Σ δA, and
    ∂x = δA W_ih.

    With ``lengths`` (host ints, 1 ≤ L_b ≤ T), a step t ≥ L_b leaves sequence b's state
    unchanged (forward: the final state is the one at L_b − 1; reverse: the recurrence starts
    at L_b − 1 from h0, c0) and its output is zero; gradients follow the same masks.
    """

    def forward(self, x, h0, c0, w_ih, w_hh, *b, lengths=None, reverse=False):
        xp = get_array_module(x)
        T, Bn, In = x.shape
        H = w_hh.shape[1]
        dt = x.dtype
        # Weights in gate order i, f, o, g with the i, f, o rows halved, split by gate:
        # (4, In, H) and (4, H, H), so every product lands gate-major, one (B, H) block per gate.
        wih_s = _ifog_halved(w_ih).reshape(4, H, In).transpose(0, 2, 1)
        whh_s = xp.ascontiguousarray(_ifog_halved(w_hh).reshape(4, H, H).transpose(0, 2, 1))
        # All time steps' input projections in one (batched) matrix product; this buffer then
        # holds the pre-activations and, after each step, the gate values.
        x2 = x.reshape(T * Bn, In)                                    # (a copy if x is a strided view)
        gates = xp.matmul(x2, wih_s)                                  # (4, T*B, H)
        if b:
            gates += _ifog_halved(b[0] + b[1]).reshape(4, 1, H)
        gates = gates.reshape(4, T, Bn, H)
        hs = xp.empty((T + 1, Bn, H), dtype=dt)       # states in time order, one extra slot
        cs = xp.empty((T + 1, Bn, H), dtype=dt)       # for the initial state (first or last)
        tcs = xp.empty((T, Bn, H), dtype=dt)          # tanh(c_t)
        rec = xp.empty((4, Bn, H), dtype=dt)
        ig = xp.empty((Bn, H), dtype=dt)
        masks = None if lengths is None else _step_masks(lengths, T, xp)
        first = T if reverse else 0
        hs[first] = h0
        cs[first] = c0
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            p, n = (t + 1, t) if reverse else (t, t + 1)        # slots of h_{t-1} and h_t
            G = gates[:, t]                                    # (4, B, H): i, f, o, g
            xp.matmul(hs[p], whh_s, out=rec)                   # W_hh h_{t-1}, per gate
            G += rec
            xp.tanh(G, out=G)
            S = G[:3]
            S *= 0.5
            S += 0.5                                           # σ = ½(1 + tanh(a/2))
            c = cs[n]
            xp.multiply(G[1], cs[p], out=c)                    # f ⊙ c_{t-1}
            xp.multiply(G[0], G[3], out=ig)                    # i ⊙ g
            c += ig
            tc = tcs[t]
            xp.tanh(c, out=tc)
            xp.multiply(G[2], tc, out=hs[n])                   # o ⊙ tanh(c_t)
            if masks is not None:                              # padded: keep the old state
                m = masks[t]
                hs[n] = xp.where(m, hs[n], hs[p])
                cs[n] = xp.where(m, c, cs[p])
        self.saved = (x2, w_ih, w_hh, gates, hs, cs, tcs, masks)
        self.reverse, self.n_bias = reverse, len(b)
        out = hs[:T] if reverse else hs[1:]
        if masks is not None:
            out = out * masks
        last = 0 if reverse else T
        return out, hs[last].copy(), cs[last].copy()

    def backward(self, g_out, g_hn, g_cn):
        x2, w_ih, w_hh, gates, hs, cs, tcs, masks = self.saved
        xp = get_array_module(gates)
        _, T, Bn, H = gates.shape
        In = x2.shape[1]
        dt = gates.dtype
        reverse = self.reverse
        whh = _ifog(w_hh)                                      # (4H, H), order i, f, o, g
        dA = xp.empty((T, Bn, 4 * H), dtype=dt)                # ∂L/∂(pre-activations)
        dh = xp.zeros((Bn, H), dtype=dt) if g_hn is None else g_hn.astype(dt, copy=True)
        dc = xp.zeros((Bn, H), dtype=dt) if g_cn is None else g_cn.astype(dt, copy=True)
        if masks is not None:
            on = masks.astype(dt)                              # 1 at real steps, 0 at padding
            off = 1 - on
            if g_out is not None:
                g_out = g_out * on                             # padded outputs are constants
        tmp = xp.empty((Bn, H), dtype=dt)
        d3 = xp.empty((3, Bn, H), dtype=dt)
        D = xp.empty((4, Bn, H), dtype=dt)                     # this step's δa, gate-major
        for t in (range(T) if reverse else range(T - 1, -1, -1)):
            p = t + 1 if reverse else t                        # slot of c_{t-1}
            if g_out is not None:
                dh += g_out[t]
            if masks is not None:                              # padded rows skip the cell
                keep_h = dh * off[t]
                keep_c = dc * off[t]
                dh *= on[t]
                dc *= on[t]
            G = gates[:, t]
            i, f, o, g = G[0], G[1], G[2], G[3]
            tc = tcs[t]
            xp.multiply(tc, tc, out=tmp)                       # δc += δh o (1 - tanh²c)
            xp.subtract(1, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp
            xp.multiply(dc, g, out=D[0])                       # ∂L/∂i
            xp.multiply(dc, cs[p], out=D[1])                   # ∂L/∂f
            xp.multiply(dh, tc, out=D[2])                      # ∂L/∂o
            xp.multiply(dc, i, out=D[3])                       # ∂L/∂g
            dc *= f                                            # δc_{t-1}
            S = G[:3]                                          # through σ: s (1 - s)
            xp.subtract(1, S, out=d3)
            d3 *= S
            D[:3] *= d3
            xp.multiply(g, g, out=tmp)                         # through tanh: 1 - g²
            xp.subtract(1, tmp, out=tmp)
            D[3] *= tmp
            Dt = dA[t]
            Dt.reshape(Bn, 4, H).transpose(1, 0, 2)[...] = D   # into row layout (B, 4H)
            xp.matmul(Dt, whh, out=dh)                         # δh_{t-1}
            if masks is not None:
                dh += keep_h
                dc += keep_c
        need = self.needs_input_grad
        dA2 = dA.reshape(T * Bn, 4 * H)
        gx = gw_ih = gw_hh = None
        if need[0]:
            gx = (dA2 @ _ifog(w_ih)).reshape(T, Bn, In)
        if need[3]:
            gw_ih = _ifog(dA2.T @ x2)
        if need[4]:
            h_prev = hs[1:] if reverse else hs[:T]            # h_{t-1} for every t, stacked
            gw_hh = _ifog(dA2.T @ h_prev.reshape(T * Bn, H))
        grads = (gx, dh if need[1] else None, dc if need[2] else None, gw_ih, gw_hh)
        if self.n_bias:
            gb = _ifog(dA2.sum(axis=0)) if (need[5] or need[6]) else None
            grads += (gb if need[5] else None, gb if need[6] else None)
        return grads


# ----------------------------------------------------------------------------- modules

def _uniform_params(module, names_shapes, hidden_size, dtype):
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for name, shape in names_shapes:
        p = Parameter(_empty(*shape, dtype=dtype))
        init.uniform_(p, -bound, bound)
        setattr(module, name, p)


def _as_tensor(a, like):
    if isinstance(a, Tensor):
        return a
    xp = get_array_module(like.data)
    a = a if get_array_module(a) is xp else xp.asarray(B.to_numpy(a))
    return Tensor(a)


class LSTMCell(Module):
    """One LSTM step, composed from primitive ops (see :func:`lstm_cell`)::

        i = σ(W_ii x + b_ii + W_hi h + b_hi)     f = σ(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = σ(W_io x + b_io + W_ho h + b_ho)
        c' = f ⊙ c + i ⊙ g                       h' = o ⊙ tanh(c')

    ``forward(x, (h, c)) -> (h', c')`` with ``x`` (B, input_size) or (input_size,), ``h``, ``c``
    (B, H) or (H,); the state defaults to zeros.  Parameters as PyTorch's ``nn.LSTMCell``:
    ``weight_ih`` (4H, input_size), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,), gate
    order i, f, g, o, all initialised from U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, bias=True, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        H4 = 4 * hidden_size
        shapes = [("weight_ih", (H4, input_size)), ("weight_hh", (H4, hidden_size))]
        if bias:
            shapes += [("bias_ih", (H4,)), ("bias_hh", (H4,))]
        _uniform_params(self, shapes, hidden_size, dtype)
        if not bias:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def forward(self, input, hx=None):
        x = input
        H = self.hidden_size
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell: expected input of shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {x.shape}")
        unbatched = x.ndim == 1
        if unbatched:
            x = x.reshape(1, self.input_size)
        Bn = x.shape[0]
        if hx is None:
            z = Tensor(get_array_module(x.data).zeros((Bn, H), dtype=x.dtype))
            h, c = z, z
        else:
            h, c = (_as_tensor(a, x) for a in hx)
            want = (H,) if unbatched else (Bn, H)
            for name, s in (("h", h), ("c", c)):
                if s.shape != want:
                    raise ValueError(f"LSTMCell: expected {name} of shape {want} for input of shape "
                                     f"{input.shape}, got {s.shape}")
            if unbatched:
                h, c = h.reshape(1, H), c.reshape(1, H)
        h, c = lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if unbatched:
            h, c = h.reshape(H), c.reshape(H)
        return h, c

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """A multi-layer, optionally bidirectional LSTM over whole sequences (PyTorch's ``nn.LSTM``).

    Each layer and direction runs the cell of :class:`LSTMCell`::

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)  o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                    h_t = o_t ⊙ tanh(c_t)

    as one fused :class:`LSTMLayer` node (``fused=False``: the same recurrence composed from
    primitive ops, :func:`lstm_layer_composed`, for teaching and testing).  The reverse
    direction runs t = T-1 .. 0; layer k > 0 reads [h_fwd; h_rev] of layer k-1, after dropout
    with probability ``dropout`` in training mode (not after the last layer).

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))``:

    * ``input``: (T, B, input_size), (B, T, input_size) with ``batch_first``, or (T, input_size)
      for one unbatched sequence.
    * ``hx = (h_0, c_0)``, each (num_layers · D, B, H) (D = 2 if bidirectional), zeros if omitted.
    * ``lengths``: true length of each sequence (PyTorch's packed-sequence semantics): padded
      steps leave the state unchanged and give zero outputs; the reverse direction starts at
      each sequence's last real token.
    * ``output``: (T, B, D·H) (batch-first if asked), the last layer's hidden states;
      ``h_n``, ``c_n``: (num_layers · D, B, H), ordered layer 0 forward, layer 0 reverse,
      layer 1 forward, ...

    Parameters as PyTorch: ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H),
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,), ``..._reverse`` for the reverse direction, gate
    order i, f, g, o, all initialised from U(-1/√H, 1/√H).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, batch_first=False,
                 dropout=0.0, bias=True, dtype=None, fused=True):
        super().__init__()
        if not isinstance(num_layers, numbers.Integral) or num_layers < 1:
            raise ValueError(f"LSTM: num_layers must be a positive integer, got {num_layers!r}")
        if not isinstance(hidden_size, numbers.Integral) or hidden_size < 1:
            raise ValueError(f"LSTM: hidden_size must be a positive integer, got {hidden_size!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"LSTM: dropout must be a probability in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.batch_first = bool(bidirectional), bool(batch_first)
        self.dropout, self.bias, self.fused = float(dropout), bool(bias), bool(fused)
        D = 2 if bidirectional else 1
        H4 = 4 * hidden_size
        for k in range(num_layers):
            in_k = input_size if k == 0 else D * hidden_size
            for sfx in ["", "_reverse"][:D]:
                shapes = [(f"weight_ih_l{k}{sfx}", (H4, in_k)), (f"weight_hh_l{k}{sfx}", (H4, hidden_size))]
                if bias:
                    shapes += [(f"bias_ih_l{k}{sfx}", (H4,)), (f"bias_hh_l{k}{sfx}", (H4,))]
                _uniform_params(self, shapes, hidden_size, dtype)

    def _layer_params(self, k, reverse):
        sfx = f"l{k}" + ("_reverse" if reverse else "")
        names = ["weight_ih_", "weight_hh_"] + (["bias_ih_", "bias_hh_"] if self.bias else [])
        return [getattr(self, n + sfx) for n in names]

    def _lengths(self, lengths, T, Bn):
        """Validated host int64 lengths, or None when there is no padding."""
        if lengths is None:
            return None
        if isinstance(lengths, Tensor):
            lengths = lengths.data
        arr = B.to_numpy(lengths) if hasattr(lengths, "dtype") else np.asarray(lengths)
        if arr.ndim != 1 or arr.shape[0] != Bn:
            raise ValueError(f"LSTM: lengths must hold one length per sequence (shape ({Bn},)), "
                             f"got shape {tuple(arr.shape)}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"LSTM: lengths must be integers, got dtype {arr.dtype}")
        bad = (arr < 1) | (arr > T)
        if bad.any():
            raise ValueError(f"LSTM: lengths must lie in 1..{T} (the padded sequence length); got "
                             f"{arr[bad].tolist()} in {arr.tolist()}")
        if (arr == T).all():
            return None
        return arr.astype(np.int64)

    def forward(self, input, hx=None, lengths=None):
        x = input
        H, L, D = self.hidden_size, self.num_layers, 2 if self.bidirectional else 1
        if x.ndim not in (2, 3):
            raise ValueError(f"LSTM: expected input of 3 dimensions ({'batch, seq' if self.batch_first else 'seq, batch'}"
                             f", {self.input_size}) or 2 (seq, {self.input_size}) for one sequence; "
                             f"got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input has {x.shape[-1]} features (shape {x.shape}) but input_size "
                             f"is {self.input_size}")
        w0 = self.weight_ih_l0
        if x.dtype != w0.dtype:
            raise TypeError(f"LSTM: input dtype {x.dtype} does not match the weights' dtype {w0.dtype}")
        unbatched = x.ndim == 2
        if unbatched:
            if lengths is not None:
                raise ValueError("LSTM: lengths need a batch; got an unbatched input of shape "
                                 f"{x.shape}")
            x = x.reshape(x.shape[0], 1, x.shape[1])
        elif self.batch_first:
            x = F.transpose(x, 0, 1)
        T, Bn, _ = x.shape
        lengths = self._lengths(lengths, T, Bn)
        xp = get_array_module(x.data)

        if hx is None:
            zero = Tensor(xp.zeros((Bn, H), dtype=x.dtype))
            h0s = c0s = [zero] * (L * D)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("LSTM: hx must be a tuple (h_0, c_0)")
            want = (L * D, H) if unbatched else (L * D, Bn, H)
            h0, c0 = (_as_tensor(a, x) for a in hx)
            for name, s in (("h_0", h0), ("c_0", c0)):
                if s.shape != want:
                    raise ValueError(f"LSTM: expected {name} of shape {want} (num_layers * num_directions, "
                                     f"{'' if unbatched else 'batch, '}hidden_size) for input of shape "
                                     f"{input.shape}, got {s.shape}")
            h0s = [s.reshape(Bn, H) for s in F.split(h0, 1, axis=0)] if L * D > 1 else [h0.reshape(Bn, H)]
            c0s = [s.reshape(Bn, H) for s in F.split(c0, 1, axis=0)] if L * D > 1 else [c0.reshape(Bn, H)]

        layer_in = x
        hn, cn = [], []
        for k in range(L):
            outs = []
            for d in range(D):
                j = k * D + d
                params = self._layer_params(k, d == 1)
                if self.fused:
                    out, h, c = LSTMLayer.apply(layer_in, h0s[j], c0s[j], *params,
                                                lengths=lengths, reverse=d == 1)
                else:
                    out, h, c = lstm_layer_composed(layer_in, h0s[j], c0s[j], *params,
                                                    lengths=lengths, reverse=d == 1)
                outs.append(out)
                hn.append(h)
                cn.append(c)
            layer_in = F.concat(outs, axis=-1) if D == 2 else outs[0]
            if k < L - 1 and self.dropout > 0 and self.training:
                layer_in = F.dropout(layer_in, self.dropout, True)

        output = layer_in
        h_n, c_n = F.stack(hn, axis=0), F.stack(cn, axis=0)
        if unbatched:
            output = output.reshape(T, D * H)
            h_n, c_n = h_n.reshape(L * D, H), c_n.reshape(L * D, H)
        elif self.batch_first:
            output = F.transpose(output, 0, 1)
        return output, (h_n, c_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s
