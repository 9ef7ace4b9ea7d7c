"""The bidirectional encoders, decoders and attention of "单向不行，那就双向" (§4 formulas, §5
listings), under the listings' names and signatures.

Notation: →h_t is the state of a left-to-right reader at position t, ←h_t that of a
right-to-left reader; [a; b] is concatenation along the feature axis.

* :class:`BiLSTMEncoder` (§4.1.1, §5.1.1):  →h_t = LSTM(→h_{t−1}, x_t),  ←h_t = LSTM(←h_{t+1}, x_t),
  h_t = [→h_t; ←h_t].
* :class:`BiTransformerEncoder` (§4.1.2, §5.1.2): the listing's one unmasked self-attention
  stack (``mode="full"``: every position sees both sides), or the formulas' two towers
  (``mode="two_tower"``): →h_t = Transformer(→h_{t−1}, x_t) as a causally masked stack,
  ←h_t = Transformer(←h_{t+1}, x_t) as an anti-causally masked one, h_t = [→h_t; ←h_t].
* :class:`BiLSTMDecoder` (§4.2.1, §5.2.1): →s_t = LSTM(→s_{t−1}, [h_t; c_t]),
  ←s_t = LSTM(←s_{t+1}, [h_t; c_t]), s_t = [→s_t; ←s_t], with a non-circular reading of c_t
  (see the class).
* :class:`BiTransformerDecoder` (§4.2.2, §5.2.2): a left-to-right and a right-to-left decoder
  over the target with cross-attention to the encoder's memory, outputs concatenated; or the
  listing's one unmasked decoder (``mode="full"``).
* :func:`bi_self_attention`, :func:`bi_cross_attention` (§5.3): the listings,
  softmax(Q Kᵀ / √d_k) V; :func:`bidirectional_self_attention` and
  :func:`bidirectional_cross_attention` (§4.3): the formulas for a_t and c_t.
* :class:`Seq2SeqBiTransformer`: embeddings, a bidirectional encoder, a left-to-right and a
  right-to-left decoder with their output heads, trained jointly; generation by left-to-right
  beam search, reranked by the sum of both directions' log-probabilities
  (:mod:`minibidir.models.beam`).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Tensor, no_grad
from ..nn import init
from ..nn.embedding import Embedding
from ..nn.linear import Linear
from ..nn.module import Module
from ..nn.positional import SinusoidalPositionalEncoding
from ..nn.recurrent import LSTM, LSTMCell
from ..nn.transformer import (TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                              TransformerEncoderLayer)
from .beam import beam_search, greedy_search, rerank

__all__ = ["BiLSTMEncoder", "BiTransformerEncoder", "BiLSTMDecoder", "BiTransformerDecoder",
           "Seq2SeqBiTransformer", "bi_self_attention", "bi_cross_attention", "attention_composed",
           "bidirectional_self_attention", "bidirectional_cross_attention", "split_directions",
           "causal_mask", "anticausal_mask", "count_parameters", "encoder_layer_parameters"]


# ----------------------------------------------------------------------------- helpers

def split_directions(h):
    """(→h, ←h): the two halves of the last axis of a bidirectional output h = [→h; ←h]."""
    n = h.shape[-1]
    if n % 2:
        raise ValueError(f"split_directions: the last axis of a bidirectional output must have an even "
                         f"size [→h; ←h], got shape {h.shape}")
    a, b = F.split(h, n // 2, axis=-1)
    return a, b


def causal_mask(size, xp=None):
    """Boolean (size, size) mask for ``nn.MultiheadAttention`` / the Transformer layers,
    **True where attention is forbidden** (key j > query i): position i reads 0..i, as a
    left-to-right reader."""
    xp = xp or B.array_module()
    return xp.triu(xp.ones((size, size), dtype=bool), 1)


def anticausal_mask(size, xp=None):
    """Boolean (size, size) mask, True where key j < query i is forbidden: position i reads
    i..size-1, as a right-to-left reader (the transpose of :func:`causal_mask`)."""
    xp = xp or B.array_module()
    return xp.tril(xp.ones((size, size), dtype=bool), -1)


def _check_keep_mask(who, attn_mask):
    """Refuse the one mask that is certainly a convention mix-up.

    These functions take :func:`~minibidir.functional.scaled_dot_product_attention`'s masks,
    where a boolean True means *may attend*; :func:`causal_mask` and :func:`anticausal_mask`
    follow ``nn.MultiheadAttention`` (True = *forbidden*).  Passed here unnegated, a causal mask
    would let every position read only the strict future (and the last one nothing): a silent
    wrong answer, so it is an error.  (To mean exactly that, pass a float mask.)
    """
    if attn_mask is None:
        return
    m = attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask
    if getattr(m, "dtype", None) != bool or m.ndim < 2 or m.shape[-1] != m.shape[-2] or m.shape[-1] < 2:
        return
    n = m.shape[-1]
    xp = B.get_array_module(m)
    for name, forbidden in (("causal_mask", causal_mask(n, xp)), ("anticausal_mask", anticausal_mask(n, xp))):
        if bool(xp.all(m == forbidden)):
            raise ValueError(
                f"{who}: attn_mask of shape {tuple(m.shape)} equals {name}({n}), which marks the "
                f"FORBIDDEN pairs (nn.MultiheadAttention's convention); here a boolean mask marks the "
                f"pairs that MAY attend (scaled_dot_product_attention's convention). Pass "
                f"~{name}({n}) instead")


def count_parameters(module):
    """The number of trainable numbers in ``module``."""
    return int(sum(int(np.prod(p.shape)) for p in module.parameters()))


def encoder_layer_parameters(d_model, dim_feedforward):
    """Parameters of one ``TransformerEncoderLayer(d_model, nhead, dim_feedforward)`` (with biases):
    attention 4d² + 4d, feed-forward 2·d·f + d + f, two layer norms 4d; in all
    4d² + 2df + 9d + f (independent of the number of heads)."""
    d, f = d_model, dim_feedforward
    return 4 * d * d + 2 * d * f + 9 * d + f


def _check_positive_int(who, name, v):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{who}: {name} must be a positive integer, got {v!r}")
    return int(v)


def _seq_axis(x, batch_first):
    return 1 if (batch_first and x.ndim == 3) else 0


# ----------------------------------------------------------------------------- attention (§4.3, §5.3)

def attention_composed(query, key, value):
    """The listings of §5.3 line by line, from primitive ops (to read; the library's
    :func:`bi_self_attention` runs the same computation as one fused op)::

        d_k = query.size(-1)
        scores = query @ key.transpose(-2, -1) / sqrt(d_k)
        p_attn = softmax(scores, dim=-1)
        return p_attn @ value
    """
    d_k = query.shape[-1]
    scores = F.matmul(query, F.transpose(key, -2, -1)) / math.sqrt(d_k)
    p_attn = F.softmax(scores, axis=-1)
    return F.matmul(p_attn, value)


def bi_self_attention(query, key, value, attn_mask=None):
    """The listing of §5.3.1: Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V, with d_k the size of
    the last axis of ``query``.  Shapes (..., L, d_k), (..., S, d_k), (..., S, d_v) ->
    (..., L, d_v); one fused :func:`~minibidir.functional.scaled_dot_product_attention` node.

    ``attn_mask`` (not in the listing) follows that op: a boolean mask keeps the pairs where it
    is True; a float mask is added to the scores.  The listing calls this "bidirectional" because
    with no mask every query sees keys on both sides of it.
    """
    _check_keep_mask("bi_self_attention", attn_mask)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)


def bi_cross_attention(query, key, value, attn_mask=None):
    """The listing of §5.3.2: the same computation as :func:`bi_self_attention`,
    softmax(Q Kᵀ / √d_k) V, with the queries from the decoder and the keys and values from
    the encoder's output (the listings of §5.3.1 and §5.3.2 are identical)."""
    _check_keep_mask("bi_cross_attention", attn_mask)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)


def _check_pair(who, s, h):
    if s.shape[-1] != h.shape[-1]:
        raise ValueError(f"{who}: decoder states of shape {s.shape} and encoder outputs of shape "
                         f"{h.shape} must have the same feature size (dot-product attention)")


def bidirectional_self_attention(s_fwd, s_bwd, h_fwd, h_bwd, attn_mask=None):
    """§4.3.1, each direction of the decoder attending to the same direction of the encoder::

        →a_t = Attention(→s_t, →h, →h),   ←a_t = Attention(←s_t, ←h, ←h),   a_t = [→a_t; ←a_t]

    ``s_fwd``, ``s_bwd`` (..., L, d) decoder states; ``h_fwd``, ``h_bwd`` (..., S, d) encoder
    outputs (e.g. :func:`split_directions` of a :class:`BiLSTMEncoder`'s output, moved to
    batch-first).  Returns (..., L, 2·d_v).  ``attn_mask`` as :func:`bi_self_attention`, applied
    to both directions.
    """
    _check_pair("bidirectional_self_attention", s_fwd, h_fwd)
    _check_pair("bidirectional_self_attention", s_bwd, h_bwd)
    _check_keep_mask("bidirectional_self_attention", attn_mask)
    a_f = F.scaled_dot_product_attention(s_fwd, h_fwd, h_fwd, attn_mask=attn_mask)
    a_b = F.scaled_dot_product_attention(s_bwd, h_bwd, h_bwd, attn_mask=attn_mask)
    return F.concat([a_f, a_b], axis=-1)


def bidirectional_cross_attention(s_fwd, s_bwd, h_fwd, h_bwd, attn_mask=None):
    """§4.3.2, each direction of the decoder attending to the *opposite* direction of the encoder::

        →c_t = Attention(→s_t, ←h, ←h),   ←c_t = Attention(←s_t, →h, →h),   c_t = [→c_t; ←c_t]

    Arguments and shapes as :func:`bidirectional_self_attention`.
    """
    _check_pair("bidirectional_cross_attention", s_fwd, h_bwd)
    _check_pair("bidirectional_cross_attention", s_bwd, h_fwd)
    _check_keep_mask("bidirectional_cross_attention", attn_mask)
    c_f = F.scaled_dot_product_attention(s_fwd, h_bwd, h_bwd, attn_mask=attn_mask)
    c_b = F.scaled_dot_product_attention(s_bwd, h_fwd, h_fwd, attn_mask=attn_mask)
    return F.concat([c_f, c_b], axis=-1)


# ----------------------------------------------------------------------------- encoders (§4.1, §5.1)

class BiLSTMEncoder(Module):
    """The bidirectional LSTM encoder of §4.1.1 / §5.1.1::

        →h_t = LSTM(→h_{t−1}, x_t)     (t = 1 .. T)
        ←h_t = LSTM(←h_{t+1}, x_t)     (t = T .. 1)
        h_t  = [→h_t; ←h_t]

    ``BiLSTMEncoder(input_size, hidden_size)`` holds ``self.lstm = nn.LSTM(input_size,
    hidden_size, bidirectional=True)`` as the listing does, so its state-dict keys are the
    listing's (``lstm.weight_ih_l0``, ..., ``lstm.bias_hh_l0_reverse``) and a PyTorch
    checkpoint of the listing loads unchanged.  Beyond the listing: ``num_layers``,
    ``dropout`` (between layers), ``batch_first`` (inputs and outputs (B, T, ·)), ``dtype``.

    ``forward(input, lengths=None, hx=None) -> (output, hidden)``:

    * ``input``: (T, B, input_size) time-first as the listing (or (B, T, input_size) with
      ``batch_first``, or one unbatched sequence (T, input_size));
    * ``lengths``: the true length of each sequence of a padded batch; padded steps give zero
      outputs and the backward direction starts at each sequence's last real token
      (PyTorch's packed sequences);
    * ``output``: (T, B, 2·hidden_size), h_t = [→h_t; ←h_t] at every step;
    * ``hidden``: (2·num_layers, B, hidden_size), the final states: →h_T (index 0) and ←h_1
      (index 1) for the first layer, then the next layer's (the listing's ``hidden``).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, batch_first=False, dropout=0.0, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.batch_first = bool(batch_first)
        self.lstm = LSTM(input_size, hidden_size, num_layers=num_layers, bidirectional=True,
                         batch_first=batch_first, dropout=dropout, dtype=dtype)

    def forward(self, input, lengths=None, hx=None):
        output, (hidden, cell) = self.lstm(input, hx, lengths=lengths)
        return output, hidden

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + (", batch_first=True" if self.batch_first else "")


class BiTransformerEncoder(Module):
    """The bidirectional Transformer encoder of §4.1.2 / §5.1.2, in the two readings the
    document gives.

    ``mode="full"`` (the listing): one stack of ``num_layers`` unmasked self-attention layers,
    ``nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model, nhead), num_layers)``.  Every
    position attends to every other, so h_t depends on x_1 .. x_T: "bidirectional" in one
    tower.  State-dict keys are the listing's (``transformer_encoder.layers.0.self_attn...``).

    ``mode="two_tower"`` (the formulas)::

        →h_t = Transformer(→h_{t−1}, x_t):  a stack whose self-attention is causally masked, so
                                            →h_t depends on x_1 .. x_t only
        ←h_t = Transformer(←h_{t+1}, x_t):  a stack with the anti-causal mask, so ←h_t depends on
                                            x_t .. x_T only
        h_t  = [→h_t; ←h_t]

    The towers are ``forward_encoder`` and ``backward_encoder`` (each an
    ``nn.TransformerEncoder`` of width ``tower_d_model``, default ``d_model``).  Reading
    "Transformer(→h_{t−1}, x_t)" as a masked stack is what makes it computable in parallel:
    →h_t sees exactly what an LSTM's →h_t sees.  The anti-causal mask on the sequence equals the
    causal mask on the reversed sequence (attention has no notion of order besides the mask;
    positional encodings, if any, are added by the caller before this module).

    Width and parameter budget.  Each tower has width ``tower_d_model`` and feed-forward width
    ``tower_dim_feedforward`` (default: ``dim_feedforward`` scaled by tower_d_model / d_model).
    The output is 2·tower_d_model wide (the formula's concatenation), or ``d_model`` with
    ``project=True`` (a Linear(2·tower_d_model, d_model) ``out_proj``).  When tower_d_model ≠
    d_model each tower first maps the input with a Linear(d_model, tower_d_model)
    (``forward_in_proj``, ``backward_in_proj``).  Two towers of full width have twice the
    parameters of the full encoder; :meth:`tower_width_for_budget` picks the widest towers
    (a multiple of ``nhead``) whose total does not exceed the full encoder's, for comparisons at
    equal budget.

    Arguments (``dim_feedforward``, ``dropout``, ``activation``, ``layer_norm_eps``,
    ``batch_first``, ``norm_first``, ``dtype``) are those of ``nn.TransformerEncoderLayer``
    (PyTorch's defaults: 2048, 0.1, "relu", 1e-5, False, False).

    ``forward(src, mask=None, src_key_padding_mask=None)``: ``src`` (S, N, d_model) (or
    (N, S, d_model) with ``batch_first``); ``src_key_padding_mask`` (N, S), True at padding;
    ``mask`` (full mode only) an attention mask as ``nn.TransformerEncoder``'s.  Returns
    (S, N, d_model) in full mode, (S, N, 2·tower_d_model) (or d_model with ``project``) in
    two-tower mode.
    """

    MODES = ("full", "two_tower")

    def __init__(self, d_model, nhead, num_layers, mode="full", dim_feedforward=2048, dropout=0.1,
                 activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False,
                 tower_d_model=None, tower_dim_feedforward=None, project=False, dtype=None):
        super().__init__()
        who = "BiTransformerEncoder"
        if mode not in self.MODES:
            raise ValueError(f"{who}: mode must be one of {self.MODES}, got {mode!r}")
        self.d_model = _check_positive_int(who, "d_model", d_model)
        self.nhead = _check_positive_int(who, "nhead", nhead)
        self.num_layers = _check_positive_int(who, "num_layers", num_layers)
        self.mode, self.batch_first = mode, bool(batch_first)
        kw = dict(dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
                  batch_first=batch_first, norm_first=norm_first, dtype=dtype)
        if mode == "full":
            if tower_d_model is not None or tower_dim_feedforward is not None or project:
                raise ValueError(f"{who}: tower_d_model, tower_dim_feedforward and project apply to "
                                 f"mode='two_tower' only")
            self.tower_d_model = d_model
            encoder_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, **kw)
            self.transformer_encoder = TransformerEncoder(encoder_layer, num_layers)
            self.output_size = d_model
            return
        w = d_model if tower_d_model is None else _check_positive_int(who, "tower_d_model", tower_d_model)
        if w % nhead:
            raise ValueError(f"{who}: tower_d_model ({w}) must be divisible by nhead ({nhead})")
        ff = tower_dim_feedforward
        if ff is None:
            ff = max(1, int(round(dim_feedforward * w / d_model)))
        self.tower_d_model, self.tower_dim_feedforward, self.project = w, ff, bool(project)
        if w != d_model:
            self.forward_in_proj = Linear(d_model, w, dtype=dtype)
            self.backward_in_proj = Linear(d_model, w, dtype=dtype)
        self.forward_encoder = TransformerEncoder(TransformerEncoderLayer(w, nhead, ff, **kw), num_layers)
        self.backward_encoder = TransformerEncoder(TransformerEncoderLayer(w, nhead, ff, **kw), num_layers)
        if project:
            self.out_proj = Linear(2 * w, d_model, dtype=dtype)
        self.output_size = d_model if project else 2 * w

    @staticmethod
    def tower_width_for_budget(d_model, nhead, num_layers, dim_feedforward=2048, project=False):
        """``(tower_d_model, tower_dim_feedforward)``: the widest two-tower configuration (width a
        multiple of ``nhead``, feed-forward scaled in proportion) whose parameter count does not
        exceed that of ``mode="full"`` with the same arguments (counting the input projections
        and, with ``project``, the output projection)."""
        budget = num_layers * encoder_layer_parameters(d_model, dim_feedforward)
        best = None
        for w in range(nhead, d_model + 1, nhead):
            ff = max(1, int(round(dim_feedforward * w / d_model)))
            n = 2 * num_layers * encoder_layer_parameters(w, ff)
            if w != d_model:
                n += 2 * (d_model * w + w)
            if project:
                n += 2 * w * d_model + d_model
            if n <= budget:
                best = (w, ff)
        if best is None:
            raise ValueError(f"BiTransformerEncoder.tower_width_for_budget: no tower width fits the budget "
                             f"of {budget} parameters")
        return best

    def _directional_masks(self, src):
        S = src.shape[_seq_axis(src, self.batch_first)]
        xp = B.get_array_module(src.data)
        return causal_mask(S, xp), anticausal_mask(S, xp)

    def forward_directions(self, src, src_key_padding_mask=None):
        """Two-tower mode: ``(→h, ←h)``, each (S, N, tower_d_model), before concatenation."""
        if self.mode != "two_tower":
            raise ValueError("BiTransformerEncoder.forward_directions: only mode='two_tower' has separate "
                             "directions (mode='full' mixes both sides in every layer)")
        fwd_mask, bwd_mask = self._directional_masks(src)
        x_f = self.forward_in_proj(src) if self.tower_d_model != self.d_model else src
        x_b = self.backward_in_proj(src) if self.tower_d_model != self.d_model else src
        h_f = self.forward_encoder(x_f, mask=fwd_mask, src_key_padding_mask=src_key_padding_mask, is_causal=True)
        h_b = self.backward_encoder(x_b, mask=bwd_mask, src_key_padding_mask=src_key_padding_mask,
                                    is_causal=False)
        return h_f, h_b

    def forward(self, src, mask=None, src_key_padding_mask=None):
        if src.ndim < 2 or src.shape[-1] != self.d_model:
            raise ValueError(f"BiTransformerEncoder: expected src of shape (S, N, {self.d_model})"
                             f"{' (batch first: (N, S, ' + str(self.d_model) + '))' if self.batch_first else ''}, "
                             f"got {src.shape}")
        if self.mode == "full":
            return self.transformer_encoder(src, mask=mask, src_key_padding_mask=src_key_padding_mask)
        if mask is not None:
            raise ValueError("BiTransformerEncoder: mode='two_tower' builds its own causal and anti-causal "
                             "masks; pass src_key_padding_mask for padding")
        h = F.concat(list(self.forward_directions(src, src_key_padding_mask)), axis=-1)
        return self.out_proj(h) if self.project else h

    def extra_repr(self):
        s = f"d_model={self.d_model}, nhead={self.nhead}, num_layers={self.num_layers}, mode={self.mode!r}"
        if self.mode == "two_tower":
            s += f", tower_d_model={self.tower_d_model}, project={self.project}"
        return s


# ----------------------------------------------------------------------------- decoders (§4.2, §5.2)

class BiLSTMDecoder(Module):
    """The bidirectional LSTM decoder of §4.2.1 / §5.2.1, with attention, in a reading that is
    computable and trains.

    The formulas, read literally, are circular: →s_t = LSTM(→s_{t−1}, [h_t; c_t]) needs the
    context c_t, and c_t = [Attention(→s_t, ·); Attention(←s_t, ·)] (§4.3) needs s_t.  The
    listing does something else again (it concatenates a previous output with a context from an
    undefined ``attention`` and runs ``nn.LSTM`` over the result).  This class reads the decoder
    as a *sequence transducer* whose output t is aligned with encoder position t (target length =
    source length: tagging, per-position transduction), and gives each direction the context
    computed from its own *previous* state (Bahdanau-style)::

        →q_t = W_q→ →s_{t−1}                        ←q_t = W_q← ←s_{t+1}
        →c_t = softmax(→q_t mᵀ / √E) m              ←c_t = softmax(←q_t mᵀ / √E) m
        (→s_t, →z_t) = LSTMCell→([h_t; →c_t],       (←s_t, ←z_t) = LSTMCell←([h_t; ←c_t],
                                 (→s_{t−1}, →z_{t−1}))                     (←s_{t+1}, ←z_{t+1}))
        s_t = [→s_t; ←s_t]                          y_t = W_o s_t + b_o

    for t = 1 .. T (forward) and t = T .. 1 (backward).  h_t ∈ R^E is the encoder's output at
    position t (E = ``input_size``, default 2·hidden_size: a :class:`BiLSTMEncoder` of the same
    hidden size), m = (m_1 .. m_S) the attended memory (default: h itself), →z_t / ←z_t the
    LSTM cell states (PyTorch's c; here c is the context), W_q→, W_q← ∈ R^{E×H} learned query
    maps (Luong's "general" score sᵀ W h, scaled by 1/√E: the decoder state has H features and
    the encoder's outputs E).  The input of each direction's cell is exactly the formula's [h_t; c_t]; c_t is
    that direction's own context.  Initial states →s_0, ←s_{T+1} (and cells) are zero, or taken
    from ``hidden`` (e.g. the encoder's final states).

    The recurrence runs step by step from :class:`~minibidir.nn.LSTMCell` and the fused
    attention op (correctness over speed: about 20 autograd nodes per step and direction).

    Parameters: ``cell_fwd``, ``cell_bwd`` (LSTMCell(2E, H), PyTorch's ``nn.LSTMCell`` layout),
    ``query_fwd``, ``query_bwd`` (Linear(H, E, bias=False)), ``out`` (Linear(2H, output_size), the
    listing's ``out``).

    ``forward(input, hidden=None, encoder_outputs=None, lengths=None, memory_lengths=None,
    need_weights=False) -> (output, hidden)``:

    * ``input``: h, (T, B, E) (or (B, T, E) with ``batch_first``), the aligned encoder outputs;
    * ``hidden``: None (zeros), a Tensor (2, B, H) of initial hidden states (→s_0 at index 0,
      ←s_{T+1} at index 1; the cells start at zero; for a multi-layer encoder pass its last
      layer's ``hidden[-2:]``), or a tuple ``(h_0, c_0)`` of two such tensors;
    * ``encoder_outputs``: the memory m, (S, B, E) (default: ``input``);
    * ``lengths``: true lengths of the sequences of ``input`` (padded steps leave the state
      unchanged and give zero states; the backward direction starts at the last real step); when
      the memory is ``input``, they also mask padded keys;
    * ``memory_lengths``: true lengths of ``encoder_outputs`` when it is given separately;
    * ``output``: (T, B, output_size) (batch first with ``batch_first``), y_t = W_o s_t + b_o
      (at padded steps s_t = 0, so y_t = b_o);
    * ``hidden``: (2, B, H), →s at the last real step and ←s_1;
    * with ``need_weights=True`` also ``(w_fwd, w_bwd)``, the attention weights, each (B, T, S).
    """

    def __init__(self, hidden_size, output_size, input_size=None, batch_first=False, dtype=None):
        super().__init__()
        who = "BiLSTMDecoder"
        self.hidden_size = _check_positive_int(who, "hidden_size", hidden_size)
        self.output_size = _check_positive_int(who, "output_size", output_size)
        self.input_size = 2 * hidden_size if input_size is None else _check_positive_int(who, "input_size", input_size)
        self.batch_first = bool(batch_first)
        E, H = self.input_size, self.hidden_size
        self.cell_fwd = LSTMCell(2 * E, H, dtype=dtype)
        self.cell_bwd = LSTMCell(2 * E, H, dtype=dtype)
        self.query_fwd = Linear(H, E, bias=False, dtype=dtype)
        self.query_bwd = Linear(H, E, bias=False, dtype=dtype)
        self.out = Linear(2 * H, output_size, dtype=dtype)

    @staticmethod
    def _host_lengths(lengths, n, T, who):
        if lengths is None:
            return None
        a = lengths.data if isinstance(lengths, Tensor) else lengths
        a = B.to_numpy(a) if hasattr(a, "dtype") else np.asarray(a)
        if a.ndim != 1 or a.shape[0] != n or a.dtype.kind not in "iu":
            raise ValueError(f"BiLSTMDecoder: {who} must be {n} integers (one per sequence), got "
                             f"{a.dtype} array of shape {tuple(a.shape)}")
        if (a < 1).any() or (a > T).any():
            raise ValueError(f"BiLSTMDecoder: {who} must lie in 1..{T}, got {a.tolist()}")
        return a.astype(np.int64)

    def _initial(self, hidden, Bn, like):
        H = self.hidden_size
        xp = B.get_array_module(like.data)
        zero = Tensor(xp.zeros((Bn, H), dtype=like.dtype))
        if hidden is None:
            return (zero, zero), (zero, zero)
        h0, c0 = hidden if isinstance(hidden, (tuple, list)) else (hidden, None)
        for name, s in (("hidden", h0), ("cell", c0)):
            if s is not None and tuple(s.shape) != (2, Bn, H):
                raise ValueError(f"BiLSTMDecoder: initial {name} must have shape (2, {Bn}, {H}) "
                                 f"(forward, backward), got {tuple(s.shape)}")
        hf, hb = (h0[0], h0[1])
        cf, cb = (c0[0], c0[1]) if c0 is not None else (zero, zero)
        return (hf, cf), (hb, cb)

    def _direction(self, steps, mem, key_mask, state, cell, query, order, masks):
        """Run one direction over ``order``; returns the per-step states, the final state and the
        attention weights (B, 1, S) per step."""
        h, c = state
        T = len(steps)
        outs, weights = [None] * T, [None] * T
        Bn = steps[0].shape[0]
        for t in order:
            q = query(h).reshape(Bn, 1, self.input_size)
            ctx, w = F.scaled_dot_product_attention(q, mem, mem, attn_mask=key_mask, return_weights=True)
            x = F.concat([steps[t], ctx.reshape(Bn, self.input_size)], axis=-1)     # [h_t; c_t]
            h_new, c_new = cell(x, (h, c))
            if masks is None:
                h, c = h_new, c_new
                outs[t] = h
            else:                       # padded step: the state passes through unchanged
                m = masks[t]
                h = F.where(m, h_new, h)
                c = F.where(m, c_new, c)
                outs[t] = F.where(m, h_new, 0.0)
            weights[t] = w
        return outs, h, weights

    def forward(self, input, hidden=None, encoder_outputs=None, lengths=None, memory_lengths=None,
                need_weights=False):
        x = input
        E = self.input_size
        if x.ndim != 3 or x.shape[-1] != E:
            raise ValueError(f"BiLSTMDecoder: expected input of shape "
                             f"({'B, T' if self.batch_first else 'T, B'}, {E}), got {x.shape}")
        if self.batch_first:
            x = F.transpose(x, 0, 1)
        T, Bn, _ = x.shape
        mem = x if encoder_outputs is None else encoder_outputs
        if mem is not x and self.batch_first:
            mem = F.transpose(mem, 0, 1)
        if mem.ndim != 3 or mem.shape[1] != Bn or mem.shape[2] != E:
            raise ValueError(f"BiLSTMDecoder: encoder_outputs must have shape (S, {Bn}, {E}) "
                             f"(batch first: ({Bn}, S, {E})), got {encoder_outputs.shape}")
        S = mem.shape[0]
        xp = B.get_array_module(x.data)
        lens = self._host_lengths(lengths, Bn, T, "lengths")
        if encoder_outputs is None:
            mlens = lens
        else:
            mlens = self._host_lengths(memory_lengths, Bn, S, "memory_lengths")
        key_mask = None
        if mlens is not None:           # SDPA convention: True = may attend; (B, 1, S)
            key_mask = xp.asarray(np.arange(S)[None, None, :] < mlens[:, None, None])
        masks = None
        if lens is not None:
            masks = xp.asarray((np.arange(T)[:, None] < lens[None, :])[:, :, None])   # (T, B, 1)
        mem_b = F.transpose(mem, 0, 1)                                             # (B, S, E)
        steps = [s.reshape(Bn, E) for s in F.split(x, 1, axis=0)] if T > 1 else [x.reshape(Bn, E)]
        init_f, init_b = self._initial(hidden, Bn, x)
        out_f, hf, w_f = self._direction(steps, mem_b, key_mask, init_f, self.cell_fwd, self.query_fwd,
                                         range(T), masks)
        out_b, hb, w_b = self._direction(steps, mem_b, key_mask, init_b, self.cell_bwd, self.query_bwd,
                                         range(T - 1, -1, -1), masks)
        s = F.concat([F.stack(out_f, axis=0), F.stack(out_b, axis=0)], axis=-1)          # s_t = [→s_t; ←s_t]
        y = self.out(s)
        if self.batch_first:
            y = F.transpose(y, 0, 1)
        h_n = F.stack([hf, hb], axis=0)
        if not need_weights:
            return y, h_n
        wf = F.concat(w_f, axis=1)
        wb = F.concat(w_b, axis=1)
        return y, h_n, (wf, wb)

    def extra_repr(self):
        return f"{self.hidden_size}, {self.output_size}, input_size={self.input_size}"


class BiTransformerDecoder(Module):
    """The bidirectional Transformer decoder of §4.2.2 / §5.2.2.

    ``mode="two_tower"`` (default; the formulas)::

        →s_t = Transformer(→s_{t−1}, ·):  a decoder stack whose self-attention over the target is
                                          causal (position t reads tgt_1 .. tgt_t) and whose
                                          cross-attention reads the whole memory
        ←s_t = Transformer(←s_{t+1}, ·):  the same with the anti-causal mask (t reads tgt_t .. tgt_T)
        s_t  = [→s_t; ←s_t]

    The decoders are ``forward_decoder`` and ``backward_decoder`` (each an
    ``nn.TransformerDecoder``).  Output (T, N, 2·d_model), or d_model with ``project=True``
    (an ``out_proj`` Linear(2·d_model, d_model)).  The formula's [h_t; c_t] is what a Transformer
    decoder layer computes inside: its cross-attention is c_t = Attention(s, h, h) over the
    encoder's outputs h (the memory).

    ``mode="full"``: the listing, one ``nn.TransformerDecoder`` (``transformer_decoder``) with
    no target mask, so every position reads the whole target (as written it cannot generate: a
    position would read the tokens it is to predict; it suits tasks where the whole target
    sequence is an input, e.g. refinement or tagging).

    For generation, a right-to-left state cannot see a future that is not yet generated;
    :class:`Seq2SeqBiTransformer` decodes left to right and uses the right-to-left decoder to
    rescore complete hypotheses.  There it feeds the right-to-left decoder the *reversed* target
    (``r2l(..., reversed_input=True)``: a causal mask over the reversed sequence, which is the
    anti-causal mask of the original order), so positional encodings count from the end of the
    sentence, as a right-to-left reader would.

    ``forward(tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    memory_mask=None, tgt_mask=None)``: ``tgt`` (T, N, d_model), ``memory`` (S, N, d_model)
    (batch first with ``batch_first``); ``tgt_mask`` only in full mode.  Other arguments as
    ``nn.TransformerDecoderLayer`` (PyTorch's defaults).
    """

    MODES = ("two_tower", "full")

    def __init__(self, d_model, nhead, num_layers, mode="two_tower", dim_feedforward=2048, dropout=0.1,
                 activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False,
                 project=False, dtype=None):
        super().__init__()
        who = "BiTransformerDecoder"
        if mode not in self.MODES:
            raise ValueError(f"{who}: mode must be one of {self.MODES}, got {mode!r}")
        self.d_model = _check_positive_int(who, "d_model", d_model)
        self.nhead = _check_positive_int(who, "nhead", nhead)
        self.num_layers = _check_positive_int(who, "num_layers", num_layers)
        self.mode, self.batch_first, self.project = mode, bool(batch_first), bool(project)
        kw = dict(dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
                  batch_first=batch_first, norm_first=norm_first, dtype=dtype)
        if mode == "full":
            if project:
                raise ValueError(f"{who}: project applies to mode='two_tower' only")
            self.transformer_decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, dim_feedforward,
                                                                                  **kw), num_layers)
            self.output_size = d_model
            return
        self.forward_decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, dim_feedforward, **kw),
                                                  num_layers)
        self.backward_decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, dim_feedforward, **kw),
                                                   num_layers)
        if project:
            self.out_proj = Linear(2 * d_model, d_model, dtype=dtype)
        self.output_size = d_model if project else 2 * d_model

    def _two_tower(self, who):
        if self.mode != "two_tower":
            raise ValueError(f"BiTransformerDecoder.{who}: only mode='two_tower' has separate directions")

    def _len(self, tgt):
        return tgt.shape[_seq_axis(tgt, self.batch_first)]

    def l2r(self, tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None, memory_mask=None):
        """→s: the left-to-right decoder, position t reading tgt_1 .. tgt_t (causal mask)."""
        self._two_tower("l2r")
        mask = causal_mask(self._len(tgt), B.get_array_module(tgt.data))
        return self.forward_decoder(tgt, memory, tgt_mask=mask, memory_mask=memory_mask,
                                    tgt_key_padding_mask=tgt_key_padding_mask,
                                    memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=True)

    def r2l(self, tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None, memory_mask=None,
            reversed_input=False):
        """←s: the right-to-left decoder.  ``reversed_input=False``: ``tgt`` in the original order,
        position t reading tgt_t .. tgt_T (anti-causal mask).  ``reversed_input=True``: ``tgt``
        already reversed (its first position is the last token), read with the causal mask; the
        output is then in reversed order too."""
        self._two_tower("r2l")
        T, xp = self._len(tgt), B.get_array_module(tgt.data)
        mask = causal_mask(T, xp) if reversed_input else anticausal_mask(T, xp)
        return self.backward_decoder(tgt, memory, tgt_mask=mask, memory_mask=memory_mask,
                                     tgt_key_padding_mask=tgt_key_padding_mask,
                                     memory_key_padding_mask=memory_key_padding_mask,
                                     tgt_is_causal=bool(reversed_input))

    def forward_directions(self, tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None,
                           memory_mask=None):
        """``(→s, ←s)`` before concatenation (two-tower mode)."""
        kw = dict(tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                  memory_mask=memory_mask)
        return self.l2r(tgt, memory, **kw), self.r2l(tgt, memory, **kw)

    def forward(self, tgt, memory, tgt_key_padding_mask=None, memory_key_padding_mask=None, memory_mask=None,
                tgt_mask=None):
        if tgt.ndim < 2 or tgt.shape[-1] != self.d_model or memory.shape[-1] != self.d_model:
            raise ValueError(f"BiTransformerDecoder: tgt and memory must have {self.d_model} features, got "
                             f"shapes {tgt.shape} and {memory.shape}")
        if self.mode == "full":
            return self.transformer_decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                                            tgt_key_padding_mask=tgt_key_padding_mask,
                                            memory_key_padding_mask=memory_key_padding_mask)
        if tgt_mask is not None:
            raise ValueError("BiTransformerDecoder: mode='two_tower' builds its own causal and anti-causal "
                             "masks; pass tgt_key_padding_mask for padding")
        s = F.concat(list(self.forward_directions(tgt, memory, tgt_key_padding_mask, memory_key_padding_mask,
                                                  memory_mask)), axis=-1)
        return self.out_proj(s) if self.project else s

    def extra_repr(self):
        return f"d_model={self.d_model}, nhead={self.nhead}, num_layers={self.num_layers}, mode={self.mode!r}"


# ----------------------------------------------------------------------------- seq2seq with two target directions

class Seq2SeqBiTransformer(Module):
    """A translation model with a bidirectional encoder and target-bidirectional decoders.

    Source x = (x_1 .. x_S), target y = (y_1 .. y_n).  The encoder is a
    :class:`BiTransformerEncoder` (``mode="full"``) over embeddings · √d + sinusoidal positions.
    The decoder is a :class:`BiTransformerDecoder` whose two directions are two models of the
    same target, each with its own embedding and output head:

    * left to right (``l2r_embed``, ``forward_decoder``, ``l2r_head``): reads [BOS, y_1 .. y_n],
      predicts [y_1 .. y_n, EOS]: p(y_t | y_<t, x);
    * right to left (``r2l_embed``, ``backward_decoder``, ``r2l_head``): reads the reversed
      target [BOS, y_n .. y_1], predicts [y_n .. y_1, EOS]: p(y_t | y_>t, x) (positions count
      from the end; its EOS marks the start of the sentence).

    :meth:`forward` returns both directions' mean token cross-entropies (train on their sum).
    Generation (:meth:`translate`): left-to-right beam search, then the n-best list reranked by
    log p_L2R(y|x) + w · log p_R2L(y|x) (:func:`~minibidir.models.beam.rerank`).  Call
    ``eval()`` before generating (dropout is active in training mode).

    Token ids: ``pad_id`` (0), ``bos_id`` (1), ``eos_id`` (2) by default, shared by both
    vocabularies.  Batches of ids are (N, S) integer arrays padded with ``pad_id`` (or lists of
    lists).
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=64, nhead=4, num_encoder_layers=2,
                 num_decoder_layers=2, dim_feedforward=256, dropout=0.1, max_len=512, pad_id=0, bos_id=1,
                 eos_id=2, dtype=None):
        super().__init__()
        self.src_vocab_size, self.tgt_vocab_size, self.d_model = src_vocab_size, tgt_vocab_size, d_model
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.src_embed = Embedding(src_vocab_size, d_model, padding_idx=pad_id, dtype=dtype)
        self.l2r_embed = Embedding(tgt_vocab_size, d_model, padding_idx=pad_id, dtype=dtype)
        self.r2l_embed = Embedding(tgt_vocab_size, d_model, padding_idx=pad_id, dtype=dtype)
        # Embeddings are scaled by sqrt(d_model) in forward, so start them at std d_model^-1/2
        # (as fairseq and tensor2tensor do): scaled, they then have unit size, like the
        # positional encoding, instead of drowning it (N(0, 1) would make them sqrt(d) times larger).
        for emb in (self.src_embed, self.l2r_embed, self.r2l_embed):
            init.normal_(emb.weight, 0.0, d_model ** -0.5)
            emb.weight.data[pad_id] = 0
        self.pos = SinusoidalPositionalEncoding(d_model, max_len, dropout=dropout, batch_first=True, dtype=dtype)
        self.encoder = BiTransformerEncoder(d_model, nhead, num_encoder_layers, mode="full",
                                            dim_feedforward=dim_feedforward, dropout=dropout, batch_first=True,
                                            dtype=dtype)
        self.decoder = BiTransformerDecoder(d_model, nhead, num_decoder_layers, mode="two_tower",
                                            dim_feedforward=dim_feedforward, dropout=dropout, batch_first=True,
                                            dtype=dtype)
        self.l2r_head = Linear(d_model, tgt_vocab_size, dtype=dtype)
        self.r2l_head = Linear(d_model, tgt_vocab_size, dtype=dtype)

    # -- ids
    def _ids(self, ids, who):
        """(N, L) host int64 ids from an array, a Tensor or a list of lists (padded here)."""
        if isinstance(ids, Tensor):
            ids = ids.data
        if hasattr(ids, "dtype"):
            a = B.to_numpy(ids)
            if a.ndim == 1:
                a = a[None, :]
        else:
            ids = list(ids)
            if ids and isinstance(ids[0], (numbers.Integral, np.integer)):
                ids = [ids]                                   # one sentence
            rows = [[int(t) for t in r] for r in ids]
            L = max((len(r) for r in rows), default=0)
            a = np.full((len(rows), max(L, 1)), self.pad_id, dtype=np.int64)
            for i, r in enumerate(rows):
                a[i, :len(r)] = r
        if a.ndim != 2 or a.dtype.kind not in "iu":
            raise ValueError(f"Seq2SeqBiTransformer: {who} must be integer ids of shape (N, L), got "
                             f"{a.dtype} of shape {a.shape}")
        return a.astype(np.int64)

    def _device(self, a):
        xp = B.get_array_module(self.l2r_head.weight.data)
        return a if xp is np else xp.asarray(a)

    def _embed(self, emb, ids):
        x = emb(self._device(ids)) * math.sqrt(self.d_model)
        return self.pos(x)

    def _target_io(self, y, reverse):
        """Decoder inputs, gold outputs (pad -> -100) and input padding mask for targets ``y``
        (N, T) padded with pad_id: [BOS, y] -> [y, EOS], or the reversed [BOS, y_n..y_1] -> [y_n..y_1, EOS]."""
        N, T = y.shape
        lens = (y != self.pad_id).sum(axis=1)
        inp = np.full((N, T + 1), self.pad_id, dtype=np.int64)
        gold = np.full((N, T + 1), -100, dtype=np.int64)
        inp[:, 0] = self.bos_id
        for i in range(N):
            n = int(lens[i])
            row = y[i, :n][::-1] if reverse else y[i, :n]
            inp[i, 1:n + 1] = row
            gold[i, :n] = row
            gold[i, n] = self.eos_id
        pad = np.arange(T + 1)[None, :] > lens[:, None]
        return inp, gold, pad

    # -- the model
    def encode(self, src):
        """``(memory (N, S, d), src_key_padding_mask (N, S))`` for source ids ``src``."""
        src = self._ids(src, "src")
        pad = src == self.pad_id
        memory = self.encoder(self._embed(self.src_embed, src), src_key_padding_mask=self._device(pad))
        return memory, pad

    def decode_logits(self, memory, src_pad, tgt_in, tgt_pad, direction):
        """Logits (N, T, V) of one direction for decoder inputs ``tgt_in`` (N, T) (the reversed
        order for ``direction="r2l"``)."""
        kw = dict(tgt_key_padding_mask=self._device(tgt_pad), memory_key_padding_mask=self._device(src_pad))
        if direction == "l2r":
            s = self.decoder.l2r(self._embed(self.l2r_embed, tgt_in), memory, **kw)
            return self.l2r_head(s)
        if direction == "r2l":
            s = self.decoder.r2l(self._embed(self.r2l_embed, tgt_in), memory, reversed_input=True, **kw)
            return self.r2l_head(s)
        raise ValueError(f"Seq2SeqBiTransformer: direction must be 'l2r' or 'r2l', got {direction!r}")

    def forward(self, src, tgt):
        """``(loss_l2r, loss_r2l)``: the mean token cross-entropy of each direction on targets
        ``tgt`` (N, T) (no BOS/EOS; padded with pad_id), EOS included."""
        memory, src_pad = self.encode(src)
        y = self._ids(tgt, "tgt")
        losses = []
        for direction in ("l2r", "r2l"):
            inp, gold, pad = self._target_io(y, reverse=direction == "r2l")
            logits = self.decode_logits(memory, src_pad, inp, pad, direction)
            V = logits.shape[-1]
            losses.append(F.cross_entropy(logits.reshape(-1, V), self._device(gold.reshape(-1))))
        return tuple(losses)

    def _one_source(self, src):
        src = self._ids(src, "src")
        if src.shape[0] != 1:
            raise ValueError(f"Seq2SeqBiTransformer: expected one source sentence, got {src.shape[0]}")
        return src

    def score(self, src, hyps, direction="l2r"):
        """log p(y + EOS | x) under one direction, for each hypothesis y (a token sequence without
        BOS/EOS) of one source sentence ``src``: a host float64 array (len(hyps),)."""
        src = self._one_source(src)
        hyps = [tuple(int(t) for t in h) for h in hyps]
        if not hyps:
            return np.zeros(0)
        with no_grad():
            memory, src_pad = self.encode(src)
            k = len(hyps)
            y = self._ids([list(h) for h in hyps], "hyps") if max(len(h) for h in hyps) else \
                np.full((k, 1), self.pad_id, dtype=np.int64)
            inp, gold, pad = self._target_io(y, reverse=direction == "r2l")
            mem = F.concat([memory] * k, axis=0) if k > 1 else memory
            logits = self.decode_logits(mem, np.repeat(src_pad, k, axis=0), inp, pad, direction)
            lp = B.to_numpy(F.log_softmax(logits, axis=-1).data).astype(np.float64)
        ok = gold >= 0
        picked = np.take_along_axis(lp, np.where(ok, gold, 0)[:, :, None], axis=2)[:, :, 0]
        return (picked * ok).sum(axis=1)

    def step_fn(self, src, direction="l2r"):
        """A step function for :mod:`~minibidir.models.beam`: prefixes (in the direction's own
        reading order) -> log p(next token | prefix, x), a host array (len(prefixes), V), with
        the padding and start tokens set to -inf (they are never generated; the other entries are
        the model's log-probabilities, not renormalised, so a hypothesis' summed step scores equal
        :meth:`score`).  The encoder runs once; the decoder reruns over each whole prefix (no cache)."""
        src = self._one_source(src)
        with no_grad():
            memory, src_pad = self.encode(src)

        def step(prefixes):
            k = len(prefixes)
            L = max(len(p) for p in prefixes) + 1
            inp = np.full((k, L), self.pad_id, dtype=np.int64)
            inp[:, 0] = self.bos_id
            last = np.zeros(k, dtype=np.int64)
            for i, p in enumerate(prefixes):
                inp[i, 1:len(p) + 1] = p
                last[i] = len(p)
            pad = np.arange(L)[None, :] > last[:, None]
            with no_grad():
                mem = F.concat([memory] * k, axis=0) if k > 1 else memory
                logits = self.decode_logits(mem, np.repeat(src_pad, k, axis=0), inp, pad, direction)
                lp = B.to_numpy(F.log_softmax(logits, axis=-1).data).astype(np.float64)
            lp = lp[np.arange(k), last]
            lp[:, [self.pad_id, self.bos_id]] = -np.inf       # never generated (not renormalised)
            return lp
        return step

    def translate(self, src, beam_size=4, n_best=None, max_len=50, rerank_weight=1.0):
        """The n-best list of one source sentence: left-to-right beam search (``beam_size``,
        ``max_len`` tokens), reranked by log p_L2R + ``rerank_weight`` · log p_R2L
        (``rerank_weight=None``: not reranked).  A list of :class:`~minibidir.models.beam.Hypothesis`,
        best first; ``hyp.components`` holds both directions' log-probabilities after reranking."""
        nbest = beam_search(self.step_fn(src, "l2r"), self.eos_id, beam_size=beam_size, max_len=max_len,
                            n_best=n_best)
        if rerank_weight is None:
            return nbest
        return rerank(nbest, lambda hyps: self.score(src, hyps, "r2l"), weight=rerank_weight)

    def greedy(self, src, max_len=50):
        """Greedy left-to-right decoding of one source sentence (a Hypothesis)."""
        return greedy_search(self.step_fn(src, "l2r"), self.eos_id, max_len=max_len)
