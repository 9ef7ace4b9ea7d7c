"""Positional encodings: how a Transformer learns *where* each token sits.

Self-attention treats its input as a set: permuting the tokens permutes the outputs the
same way, so without extra information "dog bites man" and "man bites dog" look alike.
The document (§3.1) therefore adds a position vector to every token embedding::

    Input Embeddings = Token Embeddings + Positional Encodings

Two kinds are provided (document §2.2: "正弦位置编码和学习的位置嵌入"):

* :class:`SinusoidalPositionalEncoding` - the fixed table of §4.2 (Vaswani et al., 2017)::

      PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
      PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

  Column ``j`` of the table is a sine when ``j`` is even and a cosine when ``j`` is odd;
  both columns of a pair ``(2i, 2i+1)`` share the frequency ``1 / 10000^(2i / d_model)``,
  where ``2i`` is the *even column index* (so the exponent of column ``j`` is
  ``(j - j % 2) / d_model``).  Frequencies fall geometrically from 1 (wavelength 2π) to
  about 1/10000 (wavelength 10000·2π).

* :class:`LearnedPositionalEmbedding` - a trainable table, one row per position
  (BERT's ``position_embeddings``: an ``Embedding`` over the positions 0, 1, 2, ...).

Both modules take the token embeddings ``x`` and return ``x + PE`` (then dropout), in the
layout of the Transformer layers: ``(seq, batch, d_model)`` by default,
``(batch, seq, d_model)`` with ``batch_first=True``, or unbatched ``(seq, d_model)``.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Tensor
from .dropout import Dropout
from .embedding import Embedding
from .module import Module

__all__ = ["sinusoidal_positional_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding"]


def _check_size(name, value, what):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: {what} must be a positive integer, got {value!r}")
    return int(value)


def _sinusoid_table(max_len, d_model):
    """The table in float64 on the host (computed exactly as the document writes it)."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]          # (max_len, 1)
    j = np.arange(d_model)
    two_i = (j - j % 2).astype(np.float64)                          # 0, 0, 2, 2, 4, 4, ...
    angle = pos / np.power(10000.0, two_i / d_model)                # pos / 10000^(2i/d_model)
    return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))     # even: sin, odd: cos


def sinusoidal_positional_encoding(max_len, d_model, dtype=None, device=None):
    """The ``(max_len, d_model)`` sinusoidal table of the document's §4.2 as a Tensor.

    ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))``,
    ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model))``.

    The angles are computed in float64 and rounded once to ``dtype`` (the default float
    dtype when ``None``).  An odd ``d_model`` is supported: the formula defines every
    column, and the last column (an even index) is a sine without its cosine partner.
    (The PyTorch tutorial's version fails for odd ``d_model``.)

    Example (``d_model = 4``, so the frequencies are 1 and 1/10000^(2/4) = 1/100)::

        PE[0] = [sin 0, cos 0, sin 0, cos 0]               = [0, 1, 0, 1]
        PE[1] = [sin 1, cos 1, sin(1/100), cos(1/100)]     ≈ [0.8415, 0.5403, 0.0100, 0.99995]
    """
    max_len = _check_size("sinusoidal_positional_encoding", max_len, "max_len")
    d_model = _check_size("sinusoidal_positional_encoding", d_model, "d_model")
    table = _sinusoid_table(max_len, d_model).astype(np.dtype(dtype or B.get_default_dtype()))
    if device is None:
        xp = B.array_module()
        data = table if xp is np else xp.asarray(table)
    else:
        data = B.to_device(table, device)
    return Tensor._make(data, False, None, 0)


def _seq_axis(x, batch_first, who):
    """The sequence axis of ``x`` for the layouts the Transformer layers use."""
    if x.ndim == 2:
        return 0                       # unbatched (seq, d_model)
    if x.ndim == 3:
        return 1 if batch_first else 0
    layout = "(batch, seq, d_model)" if batch_first else "(seq, batch, d_model)"
    raise ValueError(f"{who}: expected an input of shape {layout} or (seq, d_model), got {x.shape}")


def _check_input(x, d_model, max_len, batch_first, who):
    axis = _seq_axis(x, batch_first, who)
    if x.shape[-1] != d_model:
        raise ValueError(f"{who}: the input's last dimension is {x.shape[-1]} (shape {x.shape}) "
                         f"but d_model is {d_model}")
    seq = x.shape[axis]
    if seq > max_len:
        raise ValueError(f"{who}: sequence length {seq} (input shape {x.shape}, "
                         f"batch_first={batch_first}) exceeds max_len={max_len}; "
                         f"construct it with a larger max_len")
    return axis, seq


class SinusoidalPositionalEncoding(Module):
    """``x + PE[:seq]`` followed by dropout: the fixed sinusoidal encoding (document §4.2).

    ``SinusoidalPositionalEncoding(d_model, max_len=5000, dropout=0.0, batch_first=False)``

    Input ``x``: ``(seq, batch, d_model)``, or ``(batch, seq, d_model)`` with
    ``batch_first=True``, or unbatched ``(seq, d_model)``; ``seq <= max_len``.

    The table is a buffer named ``pe`` of shape ``(max_len, d_model)``, so ``to("cuda")``
    and ``to(np.float64)`` move and cast it with the model.  It is **non-persistent**: it is
    a fixed function of ``(max_len, d_model)`` with nothing to learn, so it is left out of
    ``state_dict()``.  A model's state dict then holds only trained weights, and it is the
    same whether or not the model uses this module, or which ``max_len`` it was built with.
    (The PyTorch tutorial registers a persistent ``pe`` of shape ``(max_len, 1, d_model)``;
    to load one of its checkpoints, drop that key or pass ``strict=False``.)
    The encoding has no parameters; gradients flow to ``x`` unchanged.

    The table is built in ``dtype`` (the default float dtype, float32, when ``None``) from
    float64 angles.  ``.double()`` casts that float32 table, keeping its rounding (as PyTorch
    casts a buffer); pass ``dtype=np.float64`` for a table exact in float64.  An input of
    another float dtype gets the table cast to its dtype.
    """

    def __init__(self, d_model, max_len=5000, dropout=0.0, batch_first=False, dtype=None):
        super().__init__()
        self.d_model = _check_size("SinusoidalPositionalEncoding", d_model, "d_model")
        self.max_len = _check_size("SinusoidalPositionalEncoding", max_len, "max_len")
        self.batch_first = bool(batch_first)
        self.dropout = Dropout(dropout)
        pe = sinusoidal_positional_encoding(self.max_len, self.d_model, dtype=dtype)
        self.register_buffer("pe", pe.data, persistent=False)

    def encoding(self, seq_len, like=None):
        """``PE[:seq_len]`` as a constant Tensor shaped to add to an input of ``like``'s layout
        (``(seq, 1, d_model)`` for sequence-first 3-D inputs), in ``like``'s dtype."""
        pe = self.pe[:seq_len]
        if like is not None:
            if pe.dtype != like.dtype and like.dtype.kind == "f":
                pe = pe.astype(like.dtype)
            if like.ndim == 3 and not self.batch_first:
                pe = pe[:, None, :]
        return Tensor._make(pe, False, None, 0)

    def forward(self, x):
        _, seq = _check_input(x, self.d_model, self.max_len, self.batch_first, "SinusoidalPositionalEncoding")
        return self.dropout(x + self.encoding(seq, like=x))

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}, batch_first={self.batch_first}"


class LearnedPositionalEmbedding(Embedding):
    """``x + E[positions]`` followed by dropout, with a trainable table ``E`` of shape
    ``(max_len, d_model)``: BERT's ``position_embeddings``.

    ``LearnedPositionalEmbedding(max_len, d_model, dropout=0.0, batch_first=False)``

    It *is* an :class:`~minibidir.nn.Embedding` over the positions 0 .. max_len-1, so its
    state dict holds one key, ``weight`` (BERT's ``embeddings.position_embeddings.weight``
    when it is assigned as ``position_embeddings``), initialised N(0, 1) as
    ``torch.nn.Embedding``.

    ``forward(x, position_ids=None)``: ``x`` in the same layouts as
    :class:`SinusoidalPositionalEncoding`; by default position ``p`` of the sequence gets row
    ``p``.  ``position_ids`` (integers) picks other rows; their embeddings, of shape
    ``position_ids.shape + (d_model,)``, must broadcast against ``x``.
    Call :meth:`embed` to look up rows without adding them to anything.
    """

    def __init__(self, max_len, d_model, dropout=0.0, batch_first=False, dtype=None):
        max_len = _check_size("LearnedPositionalEmbedding", max_len, "max_len")
        d_model = _check_size("LearnedPositionalEmbedding", d_model, "d_model")
        super().__init__(max_len, d_model, dtype=dtype)
        self.max_len, self.d_model = max_len, d_model
        self.batch_first = bool(batch_first)
        self.dropout = Dropout(dropout)

    def embed(self, position_ids):
        """The rows ``weight[position_ids]`` (``Embedding.forward``)."""
        return F.embedding(position_ids, self.weight)

    def forward(self, x, position_ids=None):
        _, seq = _check_input(x, self.d_model, self.max_len, self.batch_first, "LearnedPositionalEmbedding")
        if position_ids is None:
            pe = self.weight[:seq]                              # (seq, d_model), a basic slice
            if x.ndim == 3 and not self.batch_first:
                pe = pe.reshape(seq, 1, self.d_model)
        else:
            pe = self.embed(position_ids)
        return self.dropout(x + pe)

    def extra_repr(self):
        return f"max_len={self.max_len}, d_model={self.d_model}, batch_first={self.batch_first}"
